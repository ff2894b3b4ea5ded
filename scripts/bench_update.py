"""Time incremental updates: single-item add and delete through the Python API, a 10,000-item batch
upsert, and the same single add and delete through the CLI, on indexes of several sizes, on SQLite
and on PostgreSQL.

    python scripts/bench_update.py [--sizes 10000,1000000] [--backends sqlite,postgresql] [--ops 300]

The items are synthetic clustered 32-d vectors hashed to 32 bits by ITQ (trained on 20,000 of them);
the index is built with Engine.add in batches of 100,000. The batch rates are over five batches of
10,000 new items, then five replacing 10,000 items. Each single-item operation is timed alone
(time.perf_counter around Engine.add / Engine.remove, the store transaction and the in-memory delta
included); p50 and p99 are over --ops operations. PostgreSQL runs in a throw-away namespace that is
dropped afterwards. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
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
DIM, BITS = 32, 32


def vectors(rng: np.random.Generator, n: int, centers: np.ndarray) -> np.ndarray:
    which = rng.integers(0, len(centers), n)
    return (centers[which] + rng.normal(scale=0.6, size=(n, DIM))).astype(np.float32)


def batch(prefix: str, start: int, X: np.ndarray) -> Batch:
    ids = [f"{prefix}{i}" for i in range(start, start + len(X))]
    return Batch(ids=ids, vectors=X, labels=[() for _ in ids], payloads=[{} for _ in ids])


def pct(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1000, q))


def cli(*args: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "semhash.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"semhash {' '.join(args)} failed: {done.stderr}")
    return time.perf_counter() - t0


def run(size: int, backend: str, ops: int, pg_url: str, work: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(64, DIM))
    engine = Engine.train(batch("t", 0, vectors(rng, 20_000, centers)), bits=BITS, hasher="itq", progress=False)
    directory = work / f"{backend}-{size}"
    namespace = f"bu{uuid.uuid4().hex[:10]}"
    first = work / f"first-{backend}-{size}.jsonl"
    X0 = vectors(rng, min(size, 10_000), centers)
    first.write_text("".join(json.dumps({"id": f"i{i}", "vector": x.tolist()}) + "\n" for i, x in enumerate(X0)))
    db_url = pg_url if backend == "postgresql" else None
    t0 = time.perf_counter()
    engine.index(first, directory, db_url=db_url, namespace=namespace if db_url else None, progress=False)
    for start in range(len(X0), size, 100_000):
        engine.add(batch("i", start, vectors(rng, min(100_000, size - start), centers)))
    build = time.perf_counter() - t0
    assert len(engine.live) == size
    out = {"size": size, "backend": backend, "build_s": build}
    try:
        adds, deletes = [], []
        for j in range(ops):
            b = batch("new", j, vectors(rng, 1, centers))
            t = time.perf_counter()
            engine.add(b)
            adds.append(time.perf_counter() - t)
        victims = rng.choice(size, size=ops, replace=False)
        for v in victims:
            t = time.perf_counter()
            assert engine.remove([f"i{v}"]) == 1
            deletes.append(time.perf_counter() - t)
        out.update(add_p50=pct(adds, 50), add_p99=pct(adds, 99), del_p50=pct(deletes, 50), del_p99=pct(deletes, 99))
        B, R = 10_000, 5  # five batches of each kind: SQLite's checkpoints fall on some of them
        new = [batch(f"bulk{r}-", 0, vectors(rng, B, centers)) for r in range(R)]
        t = time.perf_counter()
        assert all(engine.add(b).added == B for b in new)
        out["batch_new_per_s"] = B * R / (time.perf_counter() - t)
        again = [batch("bulk0-", 0, vectors(rng, B, centers)) for _ in range(R)]
        t = time.perf_counter()
        assert all(engine.add(b).replaced == B for b in again)
        out["batch_replace_per_s"] = B * R / (time.perf_counter() - t)
        engine.close()
        one = work / "one.jsonl"
        one.write_text(json.dumps({"id": "cli-one", "vector": vectors(rng, 1, centers)[0].tolist()}) + "\n")
        out["cli_add_s"] = cli("index", str(one), "-o", str(directory), "-q")
        out["cli_del_s"] = cli("delete", str(directory), "cli-one")
    finally:
        engine.close()
        if db_url:
            Store(db_url, None, namespace=namespace, create=False).drop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,1000000")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--ops", type=int, default=300)
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-update-") as tmp:
        for backend in args.backends.split(","):
            for size in map(int, args.sizes.split(",")):
                r = run(size, backend, args.ops, args.pg_url, Path(tmp))
                rows.append(r)
                print(f"# {backend} {size:,}: built in {r['build_s']:.1f} s", file=sys.stderr, flush=True)
    print("| store | items | add p50 / p99 (ms) | delete p50 / p99 (ms) | 10k batch: new / replace (items/s) "
          "| CLI add / delete (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backend']} | {r['size']:,} | {r['add_p50']:.2f} / {r['add_p99']:.2f} "
              f"| {r['del_p50']:.2f} / {r['del_p99']:.2f} | {r['batch_new_per_s']:,.0f} / "
              f"{r['batch_replace_per_s']:,.0f} | {r['cli_add_s']:.2f} / {r['cli_del_s']:.2f} |")
    for backend in args.backends.split(","):
        by = {r["size"]: r for r in rows if r["backend"] == backend}
        if len(by) >= 2:
            lo, hi = by[min(by)], by[max(by)]
            print(f"{backend}: p50 at {max(by):,} / at {min(by):,}: add x{hi['add_p50'] / lo['add_p50']:.2f}, "
                  f"delete x{hi['del_p50'] / lo['del_p50']:.2f}")


if __name__ == "__main__":
    main()
