"""Peak memory and time of `semhash query` at its limits: huge radius answers, huge k, a huge query file.

    python scripts/bench_limits.py [--workdir /tmp/semhash-limits] [--items 50000] [--big-k-queries 100]

Builds (once, in --workdir) a 64-bit ITQ index of --items clustered 64-d vectors, then runs each case as
its own process under /usr/bin/time -v, output to a file:
  - `-k 0 --radius 32` for 100 queries (on these codes, nearly every item for each query);
  - `-k 1000000` for --big-k-queries queries (k beyond the collection: every item, ranked);
  - a 100,000-line query file at `-k 10`.
Prints a table: hits, output bytes, wall seconds, peak RSS. Run on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def clustered(rng: np.random.Generator, n: int, dim: int = 64, centres: int = 50) -> np.ndarray:
    c = rng.normal(size=(centres, dim)) * 3
    return (c[rng.integers(0, centres, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def write_jsonl(path: Path, vectors: np.ndarray, prefix: str) -> None:
    with open(path, "w") as fh:
        for i, v in enumerate(vectors):
            fh.write(json.dumps({"id": f"{prefix}{i}", "vector": v.round(4).tolist()}) + "\n")


def timed(args: list[str], out: Path) -> tuple[float, int, int]:
    """(wall seconds, peak RSS bytes, exit status) of `semhash ARGS > out`."""
    with open(out, "wb") as fh:
        t = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "semhash.cli", *args], stdout=fh,
                           stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)[1]) * 1024
    if p.returncode:
        print(p.stderr[-2000:], file=sys.stderr)
    return wall, rss, p.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/semhash-limits")
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--big-k-queries", type=int, default=100)
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    index = work / "index"
    if not index.exists():
        write_jsonl(work / "corpus.jsonl", clustered(rng, args.items), "v")
        subprocess.run([sys.executable, "-m", "semhash.cli", "index", str(work / "corpus.jsonl"), "-o", str(index),
                        "--hasher", "itq", "--bits", "64", "-q"], check=True)
    queries = clustered(np.random.default_rng(1), 100_000)
    write_jsonl(work / "q100.jsonl", queries[:100], "q")
    write_jsonl(work / "qbig.jsonl", queries[:args.big_k_queries], "q")
    write_jsonl(work / "q100k.jsonl", queries, "q")
    cases = [("-k 0 --radius 32, 100 queries", ["q100.jsonl", "-k", "0", "--radius", "32"]),
             (f"-k 1000000, {args.big_k_queries:,} queries", ["qbig.jsonl", "-k", "1000000"]),
             ("100,000-line query file, -k 10", ["q100k.jsonl", "-k", "10"])]
    print(f"64-bit ITQ index of {args.items:,} clustered vectors\n")
    print("| case | hits | output MB | seconds | peak RSS MB | exit |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (qfile, *opts) in cases:
        out = work / "answer.jsonl"
        wall, rss, status = timed(["query", str(work / qfile), "-i", str(index), *opts], out)
        hits = 0
        with open(out) as fh:
            for line in fh:
                hits += line.count('"distance"')
        print(f"| {name} | {hits:,} | {out.stat().st_size / 1e6:,.0f} | {wall:,.1f} | {rss / 2 ** 20:,.0f} | "
              f"{status} |", flush=True)
        out.unlink()


if __name__ == "__main__":
    main()
