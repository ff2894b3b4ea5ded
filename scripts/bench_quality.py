#!/usr/bin/env python3
"""Code quality of every method at every code length, on Fashion-MNIST, the Debian descriptions and their
sentence embeddings: the README's quality tables, from the raw data, in one command.

    python scripts/bench_quality.py                          # fmnist and debian, ae,itq,pca,lsh at 16,32,64 bits
    python scripts/bench_quality.py --datasets fmnist --bits 32 --methods ae,itq --out-json fm32.json
    python scripts/bench_quality.py --datasets embed --bits 32,64 --methods ae,itq --seeds 0,1,2 \
        --debian-corpus debian.jsonl --embed-cache emb21k.npy

Datasets (relevance = same label; every method is scored on the same split, with the same seed):

- fmnist: Fashion-MNIST read by scripts/prepare_fashion_mnist.py's loader (the Debian package
  dataset-fashion-mnist in /usr/share/datasets/fashion-mnist, else its cache or download); pixels scaled
  to [0, 1]; the 60,000 training images are the database, the 10,000 test images the queries.
- debian: the Debian package descriptions corpus, built from `apt-cache dumpavail` and the English
  translation indices by `scripts/make_debian_sample.py --limit 0 --min-section-size 200` (label = Section,
  the package name kept out of the text, exact duplicate descriptions dropped, sections with at least 200
  packages); 2,000 queries drawn from it by a seeded split (`semhash.evalrun.split_queries`), the rest is
  the database; TF-IDF features fitted on the database. The long descriptions need the translation
  indices: `sudo apt-get update -o Acquire::Languages=en` first (the script refuses without them), or
  give a corpus built earlier with --debian-corpus FILE.
- embed: the first --embed-limit (21,000) records of that Debian corpus, embedded with all-MiniLM-L6-v2
  (the extra semhash[embed]; about 400 s on two cores, cached to --embed-cache as .npy) and hashed as
  vectors; --embed-queries (1,000) queries drawn by the seeded split, the rest is the database. Besides the
  quality metrics (label = Section), this dataset reports queries/s on the same split: semhash's re-rank
  path (an index with keep_features, Engine.query_batch(k=10, rerank=True, candidates=100 | 1,000), the
  candidates by Hamming distance, then with asymmetric=True),
  plain numpy rescoring of the sign codes' Hamming top 100 | 1,000, and an exact cosine scan
  (scripts/bench_recall.py's timers, best of --repeat).

Everything goes through `semhash.evalrun.run_evaluation`, the driver of `semhash eval`. Prints one
markdown table per dataset on stdout (progress on stderr) and writes all figures, curves and timings as
JSON to --out-json after each dataset.

Protocol: with --seeds 0,1,2 every method runs once per seed (the hashers' seeds, and for Debian the query
split too) and the table gives mean ± std over the seeds. A setting may be chosen per seed with --tune
NAME=V1,V2,... (an autoencoder option, e.g. diffusion_time=10,30,100): each value is scored on a
validation split drawn from the database (--tune-queries items, a seed of its own; never the reported
queries), and the value with the best --tune-by score (validation mAP + P@k by default; mAP or P@k alone)
is used for that seed's reported run; --tune-by recall scores the asymmetric neighbour recall@10
re-ranking 100 instead (dense features). Neighbour recall (R@10, and
re-ranking the codes' top 100 and 1,000 by cosine; A@10 and A@10/N the same with the codes ranked by
their asymmetric score against the query's logits) is scored for every code, with the sign of every
centred feature dimension as the reference (dense features).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

from semhash.corpus import Corpus  # noqa: E402
from semhash.errors import SemhashError  # noqa: E402
from semhash.evalrun import (NEIGHBOUR_CANDIDATES, batch_from_arrays, format_table, parse_bits,  # noqa: E402
                             parse_methods, run_evaluation, split_queries)

DATASETS = ("fmnist", "debian", "embed")
TRANSLATIONS = "/var/lib/apt/lists/*Translation-en*"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_fmnist(root: str | None):
    from prepare_fashion_mnist import load_fashion_mnist

    d = load_fashion_mnist(root)
    scale = np.float32(255.0)
    db = batch_from_arrays(d["train_x"].astype(np.float32) / scale, d["train_y"], prefix="train-")
    queries = batch_from_arrays(d["test_x"].astype(np.float32) / scale, d["test_y"], prefix="test-")
    return db, queries, {"source": "Fashion-MNIST (train = database, test = queries)"}


def build_debian(path: Path) -> str:
    """Run make_debian_sample.py for the full corpus into `path`; returns its summary (stderr)."""
    if not [p for p in glob.glob(TRANSLATIONS) if not p.endswith(".diff")]:
        sys.exit(f"error: no English translation indices ({TRANSLATIONS}), so the corpus would lack the long "
                 "descriptions: run `sudo apt-get update -o Acquire::Languages=en` first, or pass --debian-corpus "
                 "FILE with a corpus built earlier")
    cmd = [sys.executable, str(SCRIPTS / "make_debian_sample.py"), "--limit", "0", "--min-section-size", "200",
           "-o", str(path)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{res.stderr}")
    return res.stderr.strip()


def debian_corpus(arg: str | None, tmp: str, say) -> tuple[Path, dict]:
    """The Debian corpus file (--debian-corpus, built there if missing) and its description."""
    path = Path(arg) if arg else Path(tmp) / "debian-all.jsonl"
    info = {"source": "Debian package descriptions (make_debian_sample.py --limit 0 --min-section-size 200)",
            "corpus": str(path)}
    if not path.exists():
        info["built"] = build_debian(path)
        say(info["built"])
    return path, info


def load_embed(path: Path, limit: int, cache: str | None):
    """The first `limit` Debian descriptions as all-MiniLM-L6-v2 embeddings (bench_recall.embeddings: the
    same rows and cache), labelled by Section, as one vector Batch."""
    from bench_recall import embeddings

    X = embeddings(str(path), limit, cache)
    records = Corpus(path).read_all()
    if len(records) < len(X):
        raise SemhashError(f"{path} holds {len(records)} records, the embeddings {len(X)}: a stale --embed-cache?")
    labels = [r[0] for r in records.labels[:len(X)]]
    return batch_from_arrays(X, labels, ids=records.ids[:len(X)]), {
        "source": f"the first {len(X):,} Debian descriptions, all-MiniLM-L6-v2 embeddings", "corpus": str(path),
        "embed_cache": cache}


def embed_speed(db, queries, fitted: dict, repeat: int, say) -> dict:
    """Queries/s on one split: semhash's re-rank path for each hasher that run_evaluation fitted on it (an
    Engine indexing the database with its features kept), numpy's sign-code rescoring, an exact scan."""
    from bench_recall import exact_qps, numpy_sign_qps, semhash_qps
    from semhash.engine import Engine
    from semhash.model import Model

    q = np.asarray(queries.vectors, np.float32)
    X = np.asarray(db.vectors, np.float32)
    out, work = {}, Path(tempfile.mkdtemp(prefix="semhash-qps-"))
    try:
        for key, hasher in fitted.items():
            if key == "featurizer":
                continue
            name = f"{key[0]} {key[1]}"
            out[name] = semhash_qps(Engine(Model(fitted["featurizer"], hasher, {"trained_on": len(db)})), q, work,
                                    repeat, X)
            say(f"  {name} bits: " + ", ".join(f"{k} {v:,.0f}" for k, v in out[name].items()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["sign"] = numpy_sign_qps(q, X, repeat)
    out["exact"] = {"qps": exact_qps(q, X, repeat)}
    return out


def speed_table(speeds: list[dict], sign_bits: int) -> str:
    """Markdown: queries/s (mean ± std over the seeds) of each path at 100 and 1,000 candidates."""
    def cell(values):
        return f"{np.mean(values):,.0f} ± {np.std(values):,.0f}" if len(values) > 1 else f"{values[0]:,.0f}"

    lines = ["| path | q/s re-rank 100 | q/s re-rank 1,000 |", "|---|---:|---:|"]
    for key in speeds[0]:
        if key == "exact":
            lines.append(f"| exact cosine scan (numpy) | {cell([s[key]['qps'] for s in speeds])} (whole database) | |")
            continue
        for asym in ("", "asym ") if key != "sign" else ("",):
            name = (f"sign of each dimension, {sign_bits} bits (numpy)" if key == "sign"
                    else f"semhash {key.split()[0]}, {key.split()[1]} bits (Engine.query_batch, rerank"
                         + (", asymmetric)" if asym else ")"))
            lines.append(f"| {name} | {cell([s[key][f'qps {asym}100'] for s in speeds])} | "
                         f"{cell([s[key][f'qps {asym}1000'] for s in speeds])} |")
    return "\n".join(lines)


def parse_tune(spec: str | None) -> tuple[str, list] | None:
    """"name=v1,v2,..." -> (name, [values]) with numbers parsed; None when not given."""
    if not spec:
        return None
    name, _, values = spec.partition("=")
    vals = [float(v) if any(c in v for c in ".e") else int(v) for v in values.split(",") if v.strip()]
    if not name.strip() or not vals:
        raise SemhashError(f"--tune takes NAME=V1,V2,..., got {spec!r}")
    return name.strip(), vals


TUNE_BY = {"map": "validation mAP", "precision": "validation P@k", "both": "validation mAP + P@k",
           "recall": "validation A@10/100"}
RECALL_KEY = "recall_at_10_asym_rerank_100"  # --tune-by recall: the asymmetric recall@10 re-ranking 100


def tune(db, name: str, values: list, seed: int, n_val: int, ae_options: dict, bits, say, k: int = 100,
         by: str = "both") -> tuple:
    """The value of ae option `name` whose autoencoder scores best on a validation split of the database, by
    mAP, P@k, their sum or the asymmetric neighbour recall@10 re-ranking 100 (`by`; each the mean over
    `bits`): (best value, {value: {"map", "precision"[, "recall"], "score"}})."""
    train, val = split_queries(db, n_val, seed + 10_000, "the database")
    scores = {}
    for v in values:
        rep = run_evaluation(train, val, methods=("ae",), bits=bits, k=k, seed=seed, knn_ceiling=False,
                             neighbour_k=10 if by == "recall" else None, ae_options={**ae_options, name: v}, log=None)
        mean = {key: float(np.mean([r["metrics"][col] for r in rep["results"]]))
                for key, col in (("map", "map"), ("precision", f"precision_at_{k}"), ("recall", RECALL_KEY))
                if by == "recall" or key != "recall"}
        scores[v] = {**mean, "score": mean["map"] + mean["precision"] if by == "both" else mean[by]}
        say(f"  tune seed {seed}: {name}={v}: validation mAP {mean['map']:.4f}, P@{k} {mean['precision']:.4f}"
            + (f", A@10/100 {mean['recall']:.4f}" if by == "recall" else ""))
    return max(values, key=lambda v: scores[v]["score"]), scores


def aggregate_table(reports: list[dict]) -> str:
    """One markdown table, mean ± std over the seeds' reports (same methods and bits in each)."""
    k, nk = reports[0]["settings"]["k"], reports[0]["settings"].get("neighbour_k")
    recall = [f"recall_at_{nk}{a}" + (f"_rerank_{n}" if n else "") for a in ("", "_asym")
              for n in NEIGHBOUR_CANDIDATES] if nk else []
    cols = ["map", f"precision_at_{k}"] + recall
    names = ["mAP", f"P@{k}"] + [f"{a}@{nk}" + (f"/{n}" if n else "") for a in ("R", "A")
                                 for n in NEIGHBOUR_CANDIDATES] * bool(nk)

    def cell(values):
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"

    lines = ["| method | bits | " + " | ".join(names) + " | train-s |",
             "|---|---:|" + "---:|" * (len(names) + 1)]
    for i, res in enumerate(reports[0]["results"]):
        per = [r["results"][i] for r in reports]
        lines.append(f"| {res['method']} | {res['bits']} | " + " | ".join(cell([p["metrics"].get(c) for p in per])
                                                                         for c in cols)
                     + f" | {np.mean([p['train_seconds'] for p in per]):.1f} |")
    if reports[0].get("sign_reference") and recall:
        sign = [r["sign_reference"]["metrics"] for r in reports]
        lines.append(f"| sign | {reports[0]['sign_reference']['bits']} | - | - | "
                     + " | ".join(cell([m.get(c) for m in sign]) for c in recall) + " | - |")
    if reports[0].get("feature_knn"):
        lines.append("| float-knn | - | - | " + cell([r["feature_knn"]["precision"] for r in reports]) + " | "
                     + " | ".join("-" for _ in recall) + (" | " if recall else "") + "- |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="fmnist,debian", help="comma-separated: fmnist, debian, embed")
    ap.add_argument("--bits", default="16,32,64", help="comma-separated code lengths")
    ap.add_argument("--methods", default="ae,itq,pca,lsh", help="comma-separated: ae, itq, pca, lsh")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (of the Debian query split and of every "
                                                 "hasher); the table gives mean ± std over them")
    ap.add_argument("--tune", default=None, metavar="NAME=V1,V2,...",
                    help="choose this autoencoder option per seed on a validation split of the database")
    ap.add_argument("--ae", action="append", default=[], metavar="NAME=VALUE",
                    help="an autoencoder option (semhash train's, or a TrainConfig field such as n_neighbors; the "
                         "value read as JSON); repeatable")
    ap.add_argument("--tune-queries", type=int, default=2000, help="validation queries for --tune")
    ap.add_argument("--tune-by", choices=sorted(TUNE_BY), default="both",
                    help="--tune's criterion: validation mAP, P@k, both (their sum; the default), or recall "
                         "(asymmetric neighbour recall@10 re-ranking 100, for vectors)")
    ap.add_argument("-k", type=int, default=100, help="precision@k cut-off")
    ap.add_argument("--epochs", type=int, default=None, help="autoencoder epochs (default: the trainer's)")
    ap.add_argument("--device", default=None, help="autoencoder device: auto, cpu, cuda, mps (default: auto)")
    ap.add_argument("--out-json", default="bench-quality.json", help="JSON report (written after each dataset)")
    ap.add_argument("--fmnist-root", default=None, help="folder with the Fashion-MNIST IDX files")
    ap.add_argument("--debian-corpus", default=None,
                    help="the Debian corpus JSONL: used if it exists, else built there (default: a temporary file)")
    ap.add_argument("--debian-queries", type=int, default=2000, help="queries drawn from the Debian corpus")
    ap.add_argument("--embed-limit", type=int, default=21_000, help="embed: the first N Debian records")
    ap.add_argument("--embed-queries", type=int, default=1000, help="embed: queries drawn from them")
    ap.add_argument("--embed-cache", default=None, help="embed: the embeddings' .npy cache (read, else written)")
    ap.add_argument("--repeat", type=int, default=3, help="embed: timed runs of each query batch (the best is kept)")
    ap.add_argument("--no-speed", action="store_true", help="embed: skip the queries/s measurements")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)

    try:
        datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
        for d in datasets:
            if d not in DATASETS:
                raise SemhashError(f"unknown dataset {d!r}; choose from: {', '.join(DATASETS)}")
        methods, bits = parse_methods(args.methods), parse_bits(args.bits)
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        tuning = parse_tune(args.tune)
        if not seeds:
            raise SemhashError("--seeds needs at least one seed")
    except (SemhashError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    say = (lambda _m: None) if args.quiet else log
    import torch

    out = {"format": 1, "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
           "datasets": {}}
    ae_options = {"epochs": args.epochs, "device": args.device}
    ae_options.update({k: json.loads(v) for k, v in (o.split("=", 1) for o in args.ae)})
    with tempfile.TemporaryDirectory(prefix="semhash-bench-") as tmp:
        for name in datasets:
            started = time.perf_counter()
            say(f"== {name}")
            if name == "fmnist":
                db, queries, info = load_fmnist(args.fmnist_root)
                query_count = None
            elif name == "debian":
                path, info = debian_corpus(args.debian_corpus, tmp, say)
                db, queries, query_count = Corpus(path).read_all(), None, args.debian_queries
            else:
                path, _ = debian_corpus(args.debian_corpus, tmp, say)
                try:
                    db, info = load_embed(path, args.embed_limit, args.embed_cache)
                except SemhashError as e:
                    print(f"error: {name}: {e}", file=sys.stderr)
                    return 1
                queries, query_count = None, args.embed_queries
            reports, speeds = [], []
            for seed in seeds:
                options, chosen = dict(ae_options), None
                try:
                    if tuning and "ae" in methods:
                        base = db if query_count is None else split_queries(db, query_count, seed, str(name))[0]
                        value, scores = tune(base, *tuning, seed, args.tune_queries, ae_options, bits, say, k=args.k,
                                             by=args.tune_by)
                        options[tuning[0]] = value
                        chosen = {"option": tuning[0], "value": value, "by": TUNE_BY[args.tune_by], "validation": scores}
                        say(f"  seed {seed}: {tuning[0]}={value} chosen on the validation split")
                    timed = name == "embed" and not args.no_speed
                    fitted = {} if timed else None  # the hashers, kept for the timings
                    report = run_evaluation(db, queries, query_count=query_count, methods=methods, bits=bits,
                                            k=args.k, seed=seed, ae_options=options, name=name, log=say,
                                            progress=not args.quiet, fitted=fitted)
                except SemhashError as e:
                    print(f"error: {name}: {e}", file=sys.stderr)
                    return 1
                report["dataset"].update(info)
                report["tuned"] = chosen
                if timed:
                    split_db, split_q = split_queries(db, query_count, seed, name)  # run_evaluation's split
                    report["queries_per_second"] = embed_speed(split_db, split_q, fitted, args.repeat, say)
                    speeds.append(report["queries_per_second"])
                reports.append(report)
                if len(seeds) > 1:
                    print(f"\n#### {name}, seed {seed}\n\n{format_table(report, markdown=True)}", flush=True)
            wall = round(time.perf_counter() - started, 1)
            out["datasets"][name] = {"seeds": seeds, "wall_seconds": wall, "reports": reports}
            Path(args.out_json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
            ds = reports[0]["dataset"]
            ceiling = reports[0]["feature_knn"]
            print(f"\n### {name}: {ds['database']:,} database items, {ds['queries']:,} queries, {ds['labels']} labels, "
                  f"{ds['feature_dim']:,} feature dimensions; seeds {', '.join(map(str, seeds))}; "
                  f"{wall:.0f} s in all\n")
            print(aggregate_table(reports) if len(seeds) > 1 else format_table(reports[0], markdown=True))
            if speeds:
                print(f"\nqueries/s, all {reports[0]['dataset']['queries']:,} queries at once, k = 10, best of {args.repeat}:\n")
                print(speed_table(speeds, reports[0]["sign_reference"]["bits"]))
            if tuning:
                print(f"\ntuned on a validation split of the database ({TUNE_BY[args.tune_by].replace('@k', f'@{args.k}')}): "
                      + ", ".join(f"seed {s}: {r['tuned']['option']}={r['tuned']['value']}" for s, r in zip(seeds, reports)
                                  if r["tuned"]))
            print(f"\nfloat-knn: exact kNN on the features ({ceiling['metric']}); sign: one bit per centred feature "
                  f"dimension; random: a random ranking. Ties at equal Hamming distance by index"
                  f"{'; mean ± std over the seeds' if len(seeds) > 1 else '; (avg): expected over tie orderings'}.",
                  flush=True)
    say(f"Wrote {args.out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
