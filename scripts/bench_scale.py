"""Exact k-nearest search from 10^5 to 10^7 items: latency against FAISS's flat scan, and memory.

    semhash encode fashion-mnist/train.npz -m fm-model-32 --format npy -o codes32.npy   # and 64 bits
    python scripts/bench_scale.py --codes codes32.npy --codes codes64.npy [--sizes 100000,1000000,10000000]

The database at each size is the real codes (six sevenths of them) replicated with random bit flips
(each bit with probability --flip); queries are the other seventh, flipped the same way. For each
code length and size it reports semhash's k-nearest latency (the answers' flat arrays built inside
the timing), IndexBinaryFlat's on the same codes (on --flat-queries queries: a flat scan of 10^7
items takes ~10 ms a query), whether every distance list agrees with the scan's, the bytes per item
of semhash's search structures (bucket table, scan over distinct codes, bit filter, multi-index
tables, as built by the queries) and the process's peak RSS so far (VmHWM).
"""
from __future__ import annotations

import argparse
import sys
import time

import faiss
import numpy as np

from semhash.buckets import BucketTable
from semhash.search import Searcher


def replicate(base: np.ndarray, n: int, flip: float, rng: np.random.Generator) -> np.ndarray:
    bits = base.shape[1] * 8
    out = np.empty((n, base.shape[1]), np.uint8)
    for start in range(0, n, 1_000_000):
        m = min(n, start + 1_000_000) - start
        noise = np.packbits(rng.random((m, bits), dtype=np.float32) < flip, axis=1)
        out[start:start + m] = base[rng.integers(0, len(base), m)] ^ noise
    return out


def peak_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codes", action="append", required=True)
    ap.add_argument("--sizes", default="100000,1000000,10000000")
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--flat-queries", type=int, default=1_000)
    ap.add_argument("-k", type=int, default=100)
    ap.add_argument("--flip", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    print("| bits | items | distinct codes | semhash µs/query | flat µs/query | ratio | agrees | strategies "
          "| search B/item | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---|---|---:|---:|", flush=True)
    for path in args.codes:
        codes = np.load(path)
        bits = codes.shape[1] * 8
        rng = np.random.default_rng(args.seed)
        split = len(codes) * 6 // 7
        queries = replicate(codes[split:], args.queries, args.flip, rng)
        db = replicate(codes[:split], max(sizes), args.flip, rng)
        first = None
        for n in sizes:
            t = time.perf_counter()
            searcher = Searcher(BucketTable.build(np.arange(n, dtype=np.int64), db[:n]), bits)
            searcher.build()  # as the flat index is built before its timing
            build = time.perf_counter() - t
            t = time.perf_counter()
            res = searcher.search(queries, k=args.k, radius=bits)
            res.row_ids  # noqa: B018 (the flat arrays are built inside the timing)
            ours = (time.perf_counter() - t) / len(queries)
            flat = faiss.IndexBinaryFlat(bits)
            flat.add(db[:n])
            fq = queries[:args.flat_queries]
            t = time.perf_counter()
            dflat, _ = flat.search(fq, args.k)
            theirs = (time.perf_counter() - t) / len(fq)
            agree = np.array_equal(res.distances.reshape(len(queries), -1)[:len(fq)], dflat)
            strategies = ",".join(f"{s} {c}" for s, c in zip(*np.unique(res.strategies, return_counts=True)))
            first = first or ours
            print(f"| {bits} | {n:,} | {searcher.buckets.n_buckets:,} | {ours * 1e6:,.1f} | {theirs * 1e6:,.1f} | "
                  f"{theirs / ours:.1f}x | {agree} | {strategies} | {searcher.nbytes() / n:.1f} | {peak_mb():,.0f} |",
                  flush=True)
            print(f"  {bits} bits, {n:,} items: structures built in {build:.1f} s; latency x{ours / first:.2f} "
                  f"of the smallest size", file=sys.stderr, flush=True)
            del searcher, flat, res


if __name__ == "__main__":
    main()
