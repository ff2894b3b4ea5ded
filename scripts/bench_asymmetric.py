#!/usr/bin/env python3
"""What the asymmetric search costs as the database grows: LiveIndex.asymmetric against the Hamming
k-nearest search (LiveIndex.search), on the same codes and queries.

    python scripts/bench_asymmetric.py --vectors emb21k.npy [--bits 64] [--sizes 20000,200000,1000000]

The hasher (ITQ, or --hasher rank) is fitted on the vectors after the first --queries rows, which are the
queries (their logits are the asymmetric weights). A database of each size is those items' codes
replicated with random bit flips (each replica flips each bit with probability --flip), as
bench_query.py does. For each size and each k in --ks it prints the median of --repeats timings of all
queries at once, as queries/s, and their ratio. Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from semhash.hashers import hasher_class
from semhash.live import LiveIndex


def replicate(base: np.ndarray, n: int, flip: float, rng: np.random.Generator) -> np.ndarray:
    bits = base.shape[1] * 8
    out = base[rng.integers(0, len(base), n)]
    return out ^ np.packbits(rng.random((n, bits), dtype=np.float32) < flip, axis=1)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", required=True, help=".npy of float vectors (e.g. bench_recall.py's embedding cache)")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--hasher", default="itq", help="itq or rank")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--sizes", default="20000,200000,1000000")
    ap.add_argument("--ks", default="100,1000")
    ap.add_argument("--flip", type=float, default=0.02)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    X = np.load(args.vectors).astype(np.float32)
    Q, D = X[:args.queries], X[args.queries:]
    hasher = hasher_class(args.hasher)(bits=args.bits, seed=args.seed).fit(D)
    weights = np.asarray(hasher.logits(Q), np.float32)
    qcodes, base = np.packbits(weights > 0, axis=1), hasher.encode(D)
    rng = np.random.default_rng(args.seed)
    print(f"{args.hasher}, {args.bits} bits, {len(Q):,} queries at once, median of {args.repeats}\n")
    print("| items | distinct codes | k | Hamming q/s | asymmetric q/s | asymmetric / Hamming |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        codes = base[:size] if size <= len(base) else np.concatenate([base, replicate(base, size - len(base),
                                                                                      args.flip, rng)])
        live = LiveIndex(args.bits, np.arange(len(codes)), codes)
        live.searcher.build()
        for k in (int(x) for x in args.ks.split(",")):
            live.search(qcodes, k=k)  # warm: structures built on first use
            ham = median_seconds(lambda: live.search(qcodes, k=k), args.repeats)
            asym = median_seconds(lambda: live.asymmetric(qcodes, weights, k), args.repeats)
            print(f"| {len(codes):,} | {live.base.n_buckets:,} | {k:,} | {len(Q) / ham:,.0f} | {len(Q) / asym:,.0f} | "
                  f"{ham / asym:.2f} |", flush=True)


if __name__ == "__main__":
    main()
