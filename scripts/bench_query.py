"""Query throughput: semhash's Searcher against FAISS binary indexes, on clustered codes.

    semhash encode fashion-mnist/train.npz -m fm-model-32 --format npy -o codes32.npy   # and a 64-bit model
    python scripts/bench_query.py --codes codes32.npy --codes codes64.npy [--items 1000000] [--queries 10000]

The database is the real codes replicated with random bit flips (each replica flips each bit with
probability --flip), so buckets are as uneven as in real use; queries are other real codes with
flips. For each code length it times, in one run:
- radius mode (every item within distance r): semhash vs FAISS IndexBinaryHash(nflip=r);
- k-nearest mode (exact, ties by code then row id): semhash vs FAISS IndexBinaryFlat;
- k-nearest latency at 10,000 items vs the full size (each the median of --repeats timings, taken in
  turn);
and checks the answers against brute force (FAISS's flat range search, with ties sorted): all of
semhash's k-nearest distances, and the first 200 queries' full radius answers of both methods.
"""
from __future__ import annotations

import argparse
import sys
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


def _flat(results):
    results.row_ids  # noqa: B018 (builds the flat arrays)
    return results


def skewed_codes(bits: int, n: int, n_codes: int, rng: np.random.Generator) -> np.ndarray:
    """`n_codes` distinct random codes with Zipf-like frequencies, the largest bucket about a quarter of
    the items (as empty texts under ITQ put them): the skewed case of the search issue."""
    base = np.unique(rng.integers(0, 256, size=(n_codes, bits // 8), dtype=np.uint8), axis=0)
    weights = 1.0 / np.arange(1, len(base) + 1) ** 1.1
    weights[0] = weights.sum() / 3  # one bucket of ~25 %
    return base[rng.choice(len(base), size=n, p=weights / weights.sum())]


def run(codes: np.ndarray, n: int, nq: int, k: int, r: int, flip: float, seed: int, radius_mode: bool = True,
        label: str = "", repeats: int = 3) -> list[tuple]:
    rng = np.random.default_rng(seed)
    bits = codes.shape[1] * 8
    split = len(codes) * 6 // 7
    db = replicate(codes[:split], n, flip, rng)
    queries = replicate(codes[split:], nq, flip, rng)
    ids = np.arange(n, dtype=np.int64)
    faiss.omp_set_num_threads(1)
    searcher = Searcher(BucketTable.build(ids, db), bits)
    searcher.build()  # as FAISS's indexes below are built before their timings
    flat = faiss.IndexBinaryFlat(bits)
    flat.add(db)
    hashidx = faiss.IndexBinaryHash(bits, min(bits, 32) if bits <= 32 else 32)
    hashidx.add(db)
    hashidx.nflip = r
    rows = []
    bits_label = f"{bits}{label}"
    print(f"{bits_label}: {n:,} items, {len(np.unique(db, axis=0)):,} distinct codes", file=sys.stderr, flush=True)
    if radius_mode:
        rows += radius_rows(searcher, flat, hashidx, db, queries, r, bits_label)

    # k-nearest mode: the flat arrays of every answer are built in the timing; the full size and 10,000
    # items are timed in turn, `repeats` times each, and the medians kept (this machine's speed drifts
    # by tens of percent within minutes, which a single pair of timings takes for growth)
    small = Searcher(BucketTable.build(ids[:10000], db[:10000]), bits)
    small.build()
    t_full, t_few = [], []
    for _ in range(repeats):
        res, t = timed(lambda: _flat(searcher.search(queries, k=k, radius=bits)))
        t_full.append(t)
        t_few.append(timed(lambda: _flat(small.search(queries, k=k, radius=bits)))[1])
    t_ours, t_small = float(np.median(t_full)), float(np.median(t_few))
    (dflat, _), t_flat = timed(flat.search, queries, k)
    ok = all(np.array_equal(x.distances, dflat[j]) for j, x in enumerate(res))
    strategies = {x.strategy for x in res}
    rows.append((bits_label, f"kNN k={k}", "semhash", nq / t_ours, t_ours / nq * 1e6, ok, ",".join(sorted(strategies))))
    rows.append((bits_label, f"kNN k={k}", "FAISS IndexBinaryFlat", nq / t_flat, t_flat / nq * 1e6, True,
                 f"semhash {t_flat / t_ours:.1f}x"))
    rows.append((bits_label, f"kNN k={k}", "semhash @10k items", nq / t_small, t_small / nq * 1e6, True,
                 f"latency x{t_ours / t_small:.2f} from 10k to {n:,}"))
    return rows


def radius_rows(searcher, flat, hashidx, db, queries, r, bits_label) -> list[tuple]:
    """Radius mode: semhash's answer streams query by query, each expanded inside the timing (the first
    200 kept for the check); FAISS's IndexBinaryHash returns its flat arrays."""
    nq = len(queries)
    kept, total = [], 0

    def stream():
        nonlocal total
        for i, x in enumerate(searcher.search(queries, k=None, radius=r)):
            total += len(x.row_ids)
            if i < 200:
                kept.append(x)

    _, t_ours = timed(stream)
    (hl, hd, hi), t_hash = timed(hashidx.range_search, queries, r + 1)
    check = brute_radius(flat, queries[:200], r, code_keys(db))
    ok = all(list(zip(x.distances.tolist(), x.row_ids.tolist())) == c for x, c in zip(kept, check))
    hits = total / nq
    found = [sorted(zip(hd[hl[j]:hl[j + 1]].astype(int).tolist(), hi[hl[j]:hl[j + 1]].tolist()))
             for j in range(200)]
    missed = sum(len(c) - len(f) for f, c in zip(found, check))
    hash_ok = found == [sorted(c) for c in check] or f"no: missed {missed} of {sum(map(len, check))} hits (first 200 queries)"
    return [(bits_label, f"radius r={r}", "semhash", nq / t_ours, t_ours / nq * 1e6, ok, f"{hits:.0f} hits/query"),
            (bits_label, f"radius r={r}", f"FAISS IndexBinaryHash nflip={r}", nq / t_hash, t_hash / nq * 1e6,
             hash_ok, f"semhash {t_hash / t_ours:.1f}x")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codes", action="append", default=[], help="packed codes .npy (semhash encode --format npy)")
    ap.add_argument("--skewed", type=int, action="append", default=[], metavar="BITS",
                    help="also a synthetic skewed set at this code length: 50,000 distinct codes, Zipf sizes")
    ap.add_argument("--skewed-k", type=int, default=10)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("-k", type=int, default=100)
    ap.add_argument("--radius", type=int, default=2)
    ap.add_argument("--flip", type=float, default=0.02, help="per-bit flip probability of a replica")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="k-nearest timings per size (medians reported)")
    args = ap.parse_args()
    print("| bits | mode | method | queries/s | µs/query | agrees with brute force | notes |")
    print("|---|---|---|---|---|---|---|")
    for path in args.codes:
        emit(run(np.load(path), args.items, args.queries, args.k, args.radius, args.flip, args.seed,
                 repeats=args.repeats))
    for bits in args.skewed:
        # radius mode is left out: a quarter of the items share one code, so answers run to 10^9 hits
        codes = skewed_codes(bits, 7 * 50_000, 50_000, np.random.default_rng(args.seed))
        emit(run(codes, args.items, args.queries, args.skewed_k, args.radius, 0.0, args.seed, radius_mode=False,
                 label=" skewed", repeats=args.repeats))


def emit(rows: list[tuple]) -> None:
    for b, mode, method, qps, us, ok, note in rows:
        print(f"| {b} | {mode} | {method} | {qps:,.0f} | {us:,.1f} | {ok} | {note} |", flush=True)


if __name__ == "__main__":
    main()
