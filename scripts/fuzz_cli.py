"""Generated bad inputs against the CLI: every failure must be `Error: …` with exit code 1, never a
traceback, never the internal-error guard (exit 2), never a partial output, never a change to a good
index or model that the command touched.

    python scripts/fuzz_cli.py [--cases 1000] [--seed 0] [--real]

By default the commands run in process (click's CliRunner: fast); `--real` runs each as a separate
`python -m semhash.cli` process, as a user would (about a second a case for the imports). Prints a
table by category; the exit status is 1 when any case misbehaved.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from semhash.fsutil import MANIFEST_FIELDS, directory_checksum

os.environ.setdefault("OMP_NUM_THREADS", "1")


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(path).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


# --- bad inputs, by category --------------------------------------------------------------------------------
def corpus_line(rng: random.Random) -> tuple[str, str]:
    """(category, one JSONL line that must be refused)."""
    kind = rng.choice(["bigint", "nesting", "surrogate", "float", "shape"])
    if kind == "bigint":
        digits = rng.choice([20, 400, 5000, 20000])
        where = rng.choice(['{"id": %s, "text": "a"}', '{"id": "x", "text": "a", "n": %s}',
                            '{"id": "x", "vector": [1, %s]}'])
        return "big integers", where % ("9" * digits)
    if kind == "nesting":
        depth = rng.choice([33, 100, 2000, 50000])
        return "deep nesting", '{"id": "x", "text": "a", "p": %s}' % ("[" * depth + "]" * depth)
    if kind == "surrogate":
        s = rng.choice(["\\udfff", "\\ud800", "a\\udc00b"])
        where = rng.choice(['{"id": "%s", "text": "a"}', '{"id": "x", "text": "%s"}', '{"id": "x", "text": "a", "label": "%s"}',
                            '{"id": "x", "text": "a", "%s": 1}', '{"id": "x", "text": "a", "p": {"k": ["%s"]}}'])
        return "lone surrogates", where % s
    if kind == "float":
        v = rng.choice(["1e39", "-4e38", "1e400", "NaN", "Infinity"])
        return "vector values", '{"id": "x", "vector": [%s, 0]}' % v
    return "record shape", rng.choice(['[1, 2]', '"text"', '{"id": "x"}', '{"id": true, "text": "a"}',
                                       '{"id": "x", "vector": []}', '{"id": "x", "vector": "1,2"}',
                                       '{"id": "x", "text": 5}', '{"id": "x", "text": "a", "labels": "l"}',
                                       '{"id": "a\\u0000b", "text": "a"}'])


def npz_file(rng: random.Random, path: Path) -> str:
    kind = rng.choice(["notzip", "truncated", "empty", "ids0d", "labels2d", "member"])
    if kind == "notzip":
        path.write_bytes(b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(40)))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind in ("truncated", "member"):
        np.savez(path, vectors=np.random.default_rng(0).normal(size=(200, 8)))
        data = bytearray(path.read_bytes())
        if kind == "truncated":
            data = data[:rng.randrange(10, len(data) - 1)]
        else:
            for _ in range(20):
                data[rng.randrange(60, len(data) - 30)] ^= 0xFF
        path.write_bytes(bytes(data))
    elif kind == "ids0d":
        np.savez(path, vectors=np.ones((3, 8)), ids=np.array("x"))
    else:
        np.savez(path, vectors=np.ones((3, 8)), labels=np.ones((3, 2)))
    return "npz files"


def manifest_change(rng: random.Random, manifest: dict, which: str):
    kind = rng.choice(["list", "string", "number", "null", "true", "field", "missing", "nested"])
    if kind == "list":
        return [manifest]
    if kind == "string":
        return "manifest"
    if kind == "number":
        return 3
    if kind == "null":
        return None
    if kind == "true":
        return True
    if kind == "nested":
        return "[" * 100_000 + "]" * 100_000  # written as is
    fields = MANIFEST_FIELDS[which]  # the fields semhash reads; the others may hold anything
    key = rng.choice(sorted(fields))
    if kind == "missing":
        return {k: v for k, v in manifest.items() if k != key}
    wrong = [v for v in ("x", [], {}, True, None, 1.5) if not isinstance(v, fields[key]) or isinstance(v, bool)]
    return {**manifest, key: rng.choice(wrong)}


def store_damage(rng: random.Random, db: Path) -> None:
    """Damage the SQLite store of an index: a value of the wrong type or shape in a row or the meta table,
    a missing table, or bytes that are not a database."""
    kind = rng.choice(["code", "meta", "payload", "labels", "log", "table", "garbage", "truncated"])
    if kind == "garbage":
        db.write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
        return
    if kind == "truncated":
        db.write_bytes(db.read_bytes()[:rng.randrange(100, 4000)])
        return
    statement = {
        "code": rng.choice(["UPDATE semhash_items SET code = 'x' WHERE row_id = 1",
                            "UPDATE semhash_items SET code = 1e300 WHERE row_id = 2",
                            "UPDATE semhash_items SET code = -5",
                            "UPDATE semhash_items SET code = x'00ff' WHERE row_id = 3"]),
        "meta": "UPDATE semhash_meta SET value = %s WHERE key = '%s'" % (
            rng.choice(["'x'", "NULL", "'-3'", "'99999999999999999999999'", "'1.5'"]),
            rng.choice(["version", "bits", "next_row_id", "log_floor", "schema_version"])),
        "payload": "UPDATE semhash_items SET payload = %s" % rng.choice(["'{bad'", "'[1]'", "'5'", "'null'"]),
        "labels": "UPDATE semhash_items SET labels = %s" % rng.choice(["'{bad'", "'{}'", "'5'", "'[[1]]'"]),
        "log": "INSERT INTO semhash_log VALUES (%s)" % rng.choice(["'x', 1, 2", "999, -5, 10**9", "2, 'a', 'b'"]),
        "table": "DROP TABLE %s" % rng.choice(["semhash_items", "semhash_meta", "semhash_log", "semhash_features"]),
    }[kind]
    with sqlite3.connect(db) as conn:
        try:
            conn.execute(statement)
        except sqlite3.Error:  # e.g. a Python expression that SQL does not take: damage something else
            conn.execute("UPDATE semhash_meta SET value = 'x' WHERE key = 'version'")


def model_damage(rng: random.Random, model: Path) -> None:
    """Change a model's settings: an extra or null key in the hasher's settings or training config, or
    in the featurizer's file (the checksum then updated, as if someone had edited it and re-signed)."""
    manifest_path = model / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    key = rng.choice(["bogus", None])
    if rng.random() < 0.5:
        section = manifest["hasher"]
        if "train" in section and rng.random() < 0.6:
            section = section["train"]
        name = key or rng.choice(sorted(section))
        section[name] = None if key is None else rng.choice([1, "x", None, [1]])
    else:
        path = model / "featurizer" / "featurizer.json"
        feat = json.loads(path.read_text())
        name = key or rng.choice(sorted(feat))
        feat[name] = None if key is None else rng.choice([1, "x", None, {"a": 1}])
        path.write_text(json.dumps(feat))
        manifest["checksum"] = directory_checksum(model, skip=("manifest.json",))
    manifest_path.write_text(json.dumps(manifest))


def option_case(rng: random.Random) -> tuple[str, list[str]]:
    kind = rng.choice(["k", "radius", "seed", "lr", "hidden", "bits", "epochs", "threads", "diffusion"])
    if kind == "k" and rng.random() < 0.3:  # valid: more than every item is every item
        return "huge -k", ["query", "QUERIES", "-i", "INDEX", "-k", rng.choice([str(2 ** 63), str(2 ** 64 + 1)])]
    if kind == "k":
        return "query options", ["query", "QUERIES", "-i", "INDEX", "-k", rng.choice(["-1", "x", "1e3", "0x10"])]
    if kind == "radius":
        return "query options", ["query", "QUERIES", "-i", "INDEX", "--radius",
                                 rng.choice(["-1", "17", "999", "x", str(2 ** 63)])]
    value = {"seed": ["-1", str(2 ** 64), "x"], "lr": ["inf", "nan", "-1", "0"], "hidden": ["0", "99999999", "a,b", "-5"],
             "bits": ["0", "7", "2048", "-8"], "epochs": ["0", "-1", str(10 ** 9)], "threads": ["-1", "5000"],
             "diffusion": ["nan", "inf", "-1"]}[kind]
    return "training options", ["train", "CORPUS", "-o", "OUT", f"--{kind}", rng.choice(value), "--epochs", "1", "-q"] \
        if kind != "epochs" else ["train", "CORPUS", "-o", "OUT", "--epochs", rng.choice(value), "-q"]


def output_case(rng: random.Random, work: Path) -> tuple[str, list[str], Path]:
    kind = rng.choice(["dir", "file", "device", "cwd", "underfile", "proc", "sys", "toolong"])
    target = {"dir": work / "project", "file": work / "notes.txt", "device": Path("/dev/null"), "cwd": Path("."),
              "underfile": work / "notes.txt" / "sub", "proc": Path("/proc/semhash-fuzz"),
              "sys": Path("/sys/semhash-fuzz"), "toolong": work / ("x" * 300)}[kind]
    cmd = rng.choice([["train", "CORPUS", "--hasher", "itq", "--bits", "8", "-q", "-o", str(target)],
                      ["encode", "CORPUS", "-m", "MODEL", "-o", str(target)],
                      ["index", "CORPUS", "-m", "MODEL", "-q", "-o", str(target)],
                      ["eval", "CORPUS", "--methods", "itq", "--bits", "8", "--query-count", "20", "-q",
                       "--json", str(target)]])
    return "output paths", cmd, target


# --- running ---------------------------------------------------------------------------------------------------
def invoke(args: list[str], cwd: Path, real: bool) -> tuple[int, str, str]:
    if real:
        p = subprocess.run([sys.executable, "-m", "semhash.cli", *args], cwd=cwd, capture_output=True, text=True,
                           timeout=300)
        return p.returncode, p.stdout, p.stderr
    from click.testing import CliRunner

    from semhash.cli import main
    old = os.getcwd()
    os.chdir(cwd)
    try:
        r = CliRunner().invoke(main, args)
    finally:
        os.chdir(old)
    err = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        import traceback
        err += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(r.exception))
    return r.exit_code, r.stdout, err


def main_() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", action="store_true", help="run each case as its own process")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="semhash-fuzz-"))
    good = work / "good"
    good.mkdir()
    vecs = np.random.default_rng(0).normal(size=(300, 32)).astype(np.float32)
    (good / "corpus.jsonl").write_text("".join(json.dumps({"id": f"v{i}", "vector": v.round(4).tolist(),
                                                           "label": f"c{i % 3}"}) + "\n" for i, v in enumerate(vecs)))
    (good / "queries.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "vector": v.round(4).tolist()}) + "\n"
                                                for i, v in enumerate(vecs[:5])))
    assert invoke(["train", "corpus.jsonl", "--hasher", "itq", "--bits", "16", "-q", "-o", "model"], good, False)[0] == 0
    assert invoke(["index", "corpus.jsonl", "-m", "model", "-q", "-o", "index"], good, False)[0] == 0
    assert invoke(["train", "corpus.jsonl", "--bits", "8", "--hidden", "16", "--epochs", "1", "-q", "-o", "ae-model"],
                  good, False)[0] == 0
    model_digest, index_digest = tree_digest(good / "model"), tree_digest(good / "index")
    good_codes = {m: invoke(["encode", "queries.jsonl", "-m", m], good, False)[1] for m in ("model", "ae-model")}
    stats: dict[str, Counter] = defaultdict(Counter)
    bad_examples: list[str] = []
    for n in range(args.cases):
        case = work / f"case{n}"
        case.mkdir()
        shutil.copytree(good / "model", case / "model")
        shutil.copytree(good / "ae-model", case / "ae-model")
        shutil.copytree(good / "index", case / "index")
        for name in ("corpus.jsonl", "queries.jsonl"):
            shutil.copy(good / name, case / name)
        roll = rng.random()
        target = None
        if roll < 0.35:
            category, line = corpus_line(rng)
            (case / "bad.jsonl").write_text((case / "corpus.jsonl").read_text().splitlines()[0] + "\n" + line + "\n",
                                           encoding="utf-8")
            cmd = rng.choice([["index", "bad.jsonl", "-i" if False else "-o", "index", "-q"],
                              ["query", "bad.jsonl", "-i", "index"], ["encode", "bad.jsonl", "-m", "model"],
                              ["train", "bad.jsonl", "--hasher", "itq", "--bits", "8", "-q", "-o", "new-model"]])
        elif roll < 0.5:
            category = npz_file(rng, case / "bad.npz")
            cmd = rng.choice([["index", "bad.npz", "-o", "index", "-q"], ["encode", "bad.npz", "-m", "model"],
                              ["train", "bad.npz", "--hasher", "itq", "--bits", "8", "-q", "-o", "new-model"]])
        elif roll < 0.57:
            which = rng.choice(["index", "model"])
            category = f"{which} manifests"
            path = case / which / "manifest.json"
            changed = manifest_change(rng, json.loads(path.read_text()), which)
            path.write_text(changed if isinstance(changed, str) and changed.startswith("[[") else json.dumps(changed))
            cmd = (rng.choice([["info", "index"], ["query", "queries.jsonl", "-i", "index"], ["rebuild", "index"],
                               ["delete", "index", "v1"], ["index", "corpus.jsonl", "-o", "index", "-q"]])
                   if which == "index" else rng.choice([["encode", "corpus.jsonl", "-m", "model"],
                                                        ["index", "corpus.jsonl", "-m", "model", "-o", "idx2", "-q"]]))
        elif roll < 0.67:
            category = "store rows"
            store_damage(rng, case / "index" / "items.db")
            cmd = rng.choice([["info", "index"], ["query", "queries.jsonl", "-i", "index"], ["rebuild", "index"],
                              ["delete", "index", "v1"], ["index", "corpus.jsonl", "-o", "index", "-q"]])
        elif roll < 0.75:
            category = "model files"
            which = rng.choice(["model", "ae-model"])
            model_damage(rng, case / which)
            cmd = rng.choice([["encode", "queries.jsonl", "-m", which],
                              ["index", "corpus.jsonl", "-m", which, "-o", "idx2", "-q"]])
        elif roll < 0.87:
            category, cmd = option_case(rng)
        else:
            category, cmd, target = output_case(rng, case)
            (case / "project").mkdir()
            (case / "project" / "keep.txt").write_text("mine")
            (case / "notes.txt").write_text("mine")
        cmd = [{"CORPUS": "corpus.jsonl", "QUERIES": "queries.jsonl", "INDEX": "index", "OUT": "new-model",
                "MODEL": "model"}.get(a, a) for a in cmd]
        before = {p: tree_digest(case / p) for p in ("project",) if (case / p).exists()}
        notes = (case / "notes.txt").read_bytes() if (case / "notes.txt").exists() else None
        touched_good = category not in ("index manifests", "model manifests", "store rows", "model files")
        # a damaged value that the command does not read may go unnoticed: success is allowed there
        may_succeed = category in ("store rows", "model files", "huge -k")
        code, out, err = invoke(cmd, case, args.real)
        s = stats[category]
        s["cases"] += 1
        s[f"exit {code}"] += 1
        problems = []
        if "Traceback" in err:
            problems.append("traceback")
        if code == 2 and "internal error" in err:
            problems.append("internal error")
        if code == 0:
            if not may_succeed:
                problems.append("accepted")
            elif category == "huge -k" and [len(json.loads(line)["hits"]) for line in out.splitlines()] != [300] * 5:
                problems.append("wrong answer")
            elif category == "model files" and cmd[0] == "encode" and out != good_codes[cmd[3]]:
                problems.append("wrong answer")  # a setting it accepted changed the codes
        elif not err.startswith("Error: ") and "\nError: " not in err:
            problems.append("no Error: line")
        if code != 0 and out.strip():
            problems.append("partial output")
        if touched_good and (tree_digest(case / "model") != model_digest or tree_digest(case / "index") != index_digest):
            problems.append("changed a good index or model")
        if code != 0 and ((case / "new-model").exists() or (case / "idx2").exists()):
            problems.append("partial output")
        if before and tree_digest(case / "project") != before["project"]:
            problems.append("changed a directory it did not write")
        if notes is not None and (not (case / "notes.txt").is_file() or (case / "notes.txt").read_bytes() != notes):
            problems.append("changed a file it did not write")
        if target == Path("/dev/null") and not Path("/dev/null").is_char_device():
            problems.append("replaced /dev/null")
        for p in problems:
            s[p] += 1
        if problems and len(bad_examples) < 20:
            bad_examples.append(f"{category}: {' '.join(cmd)[:120]} -> exit {code}: {problems}: {err.strip()[-200:]}")
        shutil.rmtree(case, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    cols = ["cases", "exit 1", "exit 2", "exit 0", "traceback", "internal error", "accepted", "wrong answer",
            "no Error: line",
            "partial output", "changed a good index or model", "changed a directory it did not write",
            "changed a file it did not write"]
    print("| category | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    total = Counter()
    for category in sorted(stats):
        total.update(stats[category])
        print(f"| {category} | " + " | ".join(str(stats[category][c]) for c in cols) + " |")
    print("| **all** | " + " | ".join(str(total[c]) for c in cols) + " |")
    for line in bad_examples:
        print("  " + line, file=sys.stderr)
    bad = sum(total[c] for c in cols[4:])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main_())
