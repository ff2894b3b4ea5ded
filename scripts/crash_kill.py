"""Crash safety: kill -9 a writing process at random moments, then check the index after each kill.

    python scripts/crash_kill.py [--kills 100] [--backend sqlite|postgresql] [--pg-url URL] [--seed 0]

A child process opens the index and writes batches through the Python API, each one transaction:
even batches add 40 new items and replace 5 earlier ones (Engine.add), odd batches delete 10 earlier
items (Engine.remove). After each commit it appends the batch number to a progress file. The parent
kills it with SIGKILL a random time (up to --max-delay) after it has opened the index, then opens the index and checks that:
- it opens and answers (a k=1 query of a stored item finds an item at distance 0);
- it holds exactly the items of the batches committed before the kill: batches 0..m, where m is the
  last batch the child reported or the one after it (committed, killed before it could report), with
  each item's code that of its latest vector;
- once it has been opened, the directory holds only the index's own entries (no temporary files).
The next child goes on from the committed state. Exit status 1 if any check failed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from semhash.corpus import Batch
from semhash.engine import Engine
from semhash.store import Store

DEFAULT_PG = os.environ.get("SEMHASH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DIM, BITS, ADD, REPLACE, DELETE = 16, 16, 40, 5, 10
ENTRIES = {"manifest.json", "model", "items.db"}

CHILD = """
import sys
sys.path.insert(0, {scripts!r})
from crash_kill import batch_ops
from semhash.engine import Engine
engine = Engine.load({index!r})
progress = open({progress!r}, "a")
open({ready!r}, "w").close()
for i in range({start}, 10**9):
    kind, payload = batch_ops(i)
    if kind == "add":
        engine.add(payload)
    else:
        engine.remove(payload)
    progress.write(f"{{i}}\\n")
    progress.flush()
"""


def vector(i: int, j: int) -> np.ndarray:
    return np.random.default_rng([i, j]).normal(size=DIM).astype(np.float32)


def batch_ops(i: int):
    """What batch i does: ("add", Batch) adds items b{i}-0.. and replaces REPLACE items of earlier
    batches; ("delete", ids) removes DELETE items of earlier batches. Deterministic in i."""
    rng = random.Random(i)
    if i % 2 == 0:
        ids = [f"b{i}-{j}" for j in range(ADD)]
        vecs = [vector(i, j) for j in range(ADD)]
        for r in range(REPLACE if i >= 2 else 0):
            src = rng.randrange(0, i, 2)
            ids.append(f"b{src}-{rng.randrange(ADD)}")
            vecs.append(vector(i, 1000 + r))
        ids, vecs = list(dict(zip(ids, vecs)).keys()), list(dict(zip(ids, vecs)).values())
        return "add", Batch(ids=ids, vectors=np.stack(vecs), labels=[() for _ in ids], payloads=[{} for _ in ids])
    ids = [f"b{src}-{rng.randrange(ADD)}" for src in (rng.randrange(0, i, 2) for _ in range(DELETE))]
    return "delete", ids


_replayed: dict = {"m": -1, "state": {}}


def expected(m: int) -> dict[str, np.ndarray]:
    """The items (id -> latest vector) after batches 0..m (replayed once, forward, as m grows)."""
    if m < _replayed["m"]:
        _replayed.update(m=-1, state={})
    state = _replayed["state"]
    for i in range(_replayed["m"] + 1, m + 1):
        apply_batch(state, i)
    _replayed["m"] = m
    return dict(state)


def apply_batch(state: dict[str, np.ndarray], i: int) -> None:
    kind, payload = batch_ops(i)
    if kind == "add":
        state.update(zip(payload.ids, payload.vectors))
    else:
        for e in payload:
            state.pop(e, None)


def check(index: Path, model, committed: int) -> tuple[bool, str, int]:
    """Whether the index holds exactly batches 0..committed or 0..committed+1; which one it holds."""
    engine = Engine.load(index)
    try:
        items = engine.store.fetch(engine.store.all_codes()[0])
        got = {it.ext_id: it.code for it in items}
        for m in (committed, committed + 1):
            want = expected(committed)
            if m > committed:  # one batch past the reported one (the replay stays at the reported one)
                apply_batch(want, m)
            if set(got) != set(want):
                continue
            ids = sorted(want)
            codes = model.encode(Batch(ids=ids, vectors=np.stack([want[e] for e in ids]))) if ids else []
            if any(got[e] != bytes(c) for e, c in zip(ids, codes)):
                return False, f"codes differ from the batches 0..{m}", m
            if len(engine.live) != len(want):
                return False, f"the search holds {len(engine.live)} items, the store {len(want)}", m
            if ids:
                hit = engine.query(want[ids[0]].tolist(), k=1, radius=0)
                if not hit or hit[0].distance != 0:
                    return False, "a stored item is not found at distance 0", m
            return True, "", m
        return False, f"{len(got)} items, neither batches 0..{committed} nor 0..{committed + 1}", committed
    finally:
        engine.close()


def run(kills: int, backend: str, pg_url: str, seed: int, work: Path, max_delay: float = 0.3) -> list[dict]:
    rng = random.Random(seed)
    index = work / "idx"
    namespace = f"ck{uuid.uuid4().hex[:10]}"
    db_url = pg_url if backend == "postgresql" else None
    first = work / "first.jsonl"
    kind, b0 = batch_ops(0)
    first.write_text("".join(json.dumps({"id": e, "vector": v.tolist()}) + "\n" for e, v in zip(b0.ids, b0.vectors)))
    train = Batch(ids=[str(i) for i in range(500)], vectors=np.stack([vector(10**6, j) for j in range(500)]))
    engine = Engine.train(train, bits=BITS, hasher="itq", progress=False)
    engine.index(first, index, db_url=db_url, namespace=namespace if db_url else None, progress=False)
    engine.close()
    with Engine.load(index) as opened:
        model = opened.model
    progress = work / "progress.txt"
    progress.write_text("0\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    results, committed = [], 0
    try:
        for kill in range(kills):
            ready = work / "ready"
            ready.unlink(missing_ok=True)
            code = CHILD.format(scripts=str(Path(__file__).parent), index=str(index), progress=str(progress),
                                start=committed + 1, ready=str(ready))
            child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
            while not ready.exists() and child.poll() is None:  # it has opened the index: writes begin
                time.sleep(0.005)
            delay = rng.uniform(0.0, max_delay)
            time.sleep(delay)
            if child.poll() is not None:
                results.append({"kill": kill, "ok": False, "why": f"the writer died: {child.stderr.read()[-300:]!r}"})
                break
            child.send_signal(signal.SIGKILL)
            child.wait()
            reported = int(progress.read_text().split()[-1])
            ok, why, held = check(index, model, reported)
            left = sorted(p.name for p in index.iterdir() if p.name not in ENTRIES)
            left += [p.name for p in work.iterdir() if p.name.startswith(".")]
            if left:
                ok, why = False, f"left behind: {left}"
            results.append({"kill": kill, "delay": delay, "reported": reported, "held": held, "ok": ok, "why": why})
            if not ok:
                break
            committed = held
            progress.write_text(f"{committed}\n")
    finally:
        if db_url:
            Store(db_url, None, namespace=namespace, create=False).drop()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-delay", type=float, default=0.3,
                    help="Longest wait, once the writer has opened the index, before the kill (seconds).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="crash-kill-") as tmp:
        results = run(args.kills, args.backend, args.pg_url, args.seed, Path(tmp), args.max_delay)
    bad = [r for r in results if not r["ok"]]
    mid = sum(1 for r in results if r["ok"] and r["held"] == r["reported"] + 1)
    batches = max((r.get("held", 0) for r in results), default=0)
    print(f"{args.backend}: {len(results)} kills, {len(results) - len(bad)} left the index as committed "
          f"({mid} after a commit the writer had not yet reported), {batches} batches committed in all, "
          f"{len(bad)} failed")
    for r in bad:
        print(f"  kill {r['kill']}: {r['why']}")
    sys.exit(1 if bad or len(results) < args.kills else 0)


if __name__ == "__main__":
    main()
