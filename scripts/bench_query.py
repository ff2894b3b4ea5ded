"""Query throughput: semhash's Searcher against FAISS binary indexes, on clustered codes.

    semhash encode fashion-mnist/train.npz -m fm-model-32 --format npy -o codes32.npy   # and a 64-bit model
    python scripts/bench_query.py --codes codes32.npy --codes codes64.npy [--items 1000000] [--queries 10000]

The database is the real codes replicated with random bit flips (each replica flips each bit with
probability --flip), so buckets are as uneven as in real use; queries are other real codes with
flips. For each code length it times, in one run:
- radius mode (every item within distance r): semhash vs FAISS IndexBinaryHash(nflip=r);
- k-nearest mode (exact, ties by code then row id): semhash vs FAISS IndexBinaryFlat;
- k-nearest latency at 10,000 items vs the full size;
and checks the answers against brute force (FAISS's flat range search, with ties sorted): all of
semhash's k-nearest distances, and the first 200 queries' full radius answers of both methods.
"""
from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from semhash.buckets import BucketTable, code_keys
from semhash.search import Searcher


def replicate(base: np.ndarray, n: int, flip: float, rng: np.random.Generator) -> np.ndarray:
    bits = base.shape[1] * 8
    out = base[rng.integers(0, len(base), n)]
    noise = np.packbits(rng.random((n, bits), dtype=np.float32) < flip, axis=1)
    return out ^ noise


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def brute_radius(flat, q, r, keys):
    """FAISS's exhaustive range search, each answer ordered as semhash documents: (distance, code, row id)."""
    lims, d, i = flat.range_search(q, r + 1)
    out = []
    for j in range(len(q)):
        dj, ij = d[lims[j]:lims[j + 1]].astype(int), i[lims[j]:lims[j + 1]]
        out.append([(dist, int(row)) for dist, _, row in sorted(zip(dj.tolist(), keys[ij].tolist(), ij.tolist()))])
    return out


def run(codes: np.ndarray, n: int, nq: int, k: int, r: int, flip: float, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    bits = codes.shape[1] * 8
    split = len(codes) * 6 // 7
    db = replicate(codes[:split], n, flip, rng)
    queries = replicate(codes[split:], nq, flip, rng)
    ids = np.arange(n, dtype=np.int64)
    faiss.omp_set_num_threads(1)
    searcher = Searcher(BucketTable.build(ids, db), bits)
    flat = faiss.IndexBinaryFlat(bits)
    flat.add(db)
    hashidx = faiss.IndexBinaryHash(bits, min(bits, 32) if bits <= 32 else 32)
    hashidx.add(db)
    hashidx.nflip = r
    rows = []

    # radius mode
    res, t_ours = timed(searcher.search, queries, k=None, radius=r)
    (hl, hd, hi), t_hash = timed(hashidx.range_search, queries, r + 1)
    check = brute_radius(flat, queries[:200], r, code_keys(db))
    ok = all(list(zip(x.distances.tolist(), x.row_ids.tolist())) == c for x, c in zip(res[:200], check))
    hits = np.mean([len(x.row_ids) for x in res])
    found = [sorted(zip(hd[hl[j]:hl[j + 1]].astype(int).tolist(), hi[hl[j]:hl[j + 1]].tolist()))
             for j in range(200)]
    missed = sum(len(c) - len(f) for f, c in zip(found, check))
    hash_ok = found == [sorted(c) for c in check] or f"no: missed {missed} of {sum(map(len, check))} hits (first 200 queries)"
    rows.append((bits, f"radius r={r}", "semhash", nq / t_ours, t_ours / nq * 1e6, ok, f"{hits:.0f} hits/query"))
    rows.append((bits, f"radius r={r}", f"FAISS IndexBinaryHash nflip={r}", nq / t_hash, t_hash / nq * 1e6,
                 hash_ok, ""))

    # k-nearest mode
    res, t_ours = timed(searcher.search, queries, k=k, radius=bits)
    (dflat, _), t_flat = timed(flat.search, queries, k)
    ok = all(np.array_equal(x.distances, dflat[j]) for j, x in enumerate(res))
    strategies = {x.strategy for x in res}
    rows.append((bits, f"kNN k={k}", "semhash", nq / t_ours, t_ours / nq * 1e6, ok, ",".join(sorted(strategies))))
    rows.append((bits, f"kNN k={k}", "FAISS IndexBinaryFlat", nq / t_flat, t_flat / nq * 1e6, True, ""))

    # latency growth with collection size
    small = Searcher(BucketTable.build(ids[:10000], db[:10000]), bits)
    _, t_small = timed(small.search, queries, k=k, radius=bits)
    rows.append((bits, f"kNN k={k}", "semhash @10k items", nq / t_small, t_small / nq * 1e6, True,
                 f"latency x{t_ours / t_small:.2f} from 10k to {n:,}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codes", action="append", required=True, help="packed codes .npy (semhash encode --format npy)")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("-k", type=int, default=100)
    ap.add_argument("--radius", type=int, default=2)
    ap.add_argument("--flip", type=float, default=0.02, help="per-bit flip probability of a replica")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    for path in args.codes:
        rows += run(np.load(path), args.items, args.queries, args.k, args.radius, args.flip, args.seed)
    print("| bits | mode | method | queries/s | µs/query | agrees with brute force | notes |")
    print("|---|---|---|---|---|---|---|")
    for b, mode, method, qps, us, ok, note in rows:
        print(f"| {b} | {mode} | {method} | {qps:,.0f} | {us:,.1f} | {ok} | {note} |")


if __name__ == "__main__":
    main()
