"""Query throughput and memory through the public API (`Engine.query_batch`, query encoding and the
store's payload look-up included) against FAISS's IndexBinaryFlat on the same codes.

    python scripts/bench_engine.py fmnist --model fm-model-32 --data fashion-mnist [--items 1000000]
    python scripts/bench_engine.py skewed [--items 1000000]

- fmnist: the Fashion-MNIST training images repeated with pixel noise (Gaussian, std --noise,
  clipped to [0, 1]) up to --items, indexed with the given model; queries = the 10,000 test images;
  k = 100.
- skewed: --items 64-d vectors drawn from 40,000 Gaussian prototypes with Zipf frequencies, a
  quarter of them all-zero (as texts with no known word are), hashed by ITQ at 32 bits (at most
  40,001 distinct codes, one bucket holding ~25 % of the items); queries = 10,000 more draws; k = 10.

Answers hold their hits as arrays (`Answer.ids`, `.distances`); the `Hit` objects are made on first
use of `Answer.hits`, timed separately. Prints the indexing time, the query rates and their ratio, whether every answer's distances equal
the flat scan's, and the resident memory after loading the index and its peak while querying (the
kernel's high-water mark, reset after the load).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from semhash.corpus import records_from_strings
from semhash.engine import Engine


def rss_mb(field: str = "VmRSS") -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS


def write_fmnist(path: Path, data: Path, n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    base = np.load(data / "train.npz")["vectors"]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, base.shape[1]))
    for start in range(0, n, 50_000):
        idx = np.arange(start, min(n, start + 50_000)) % len(base)
        block = base[idx] + rng.normal(0, noise, (len(idx), base.shape[1])).astype(np.float32)
        out[start:start + len(idx)] = np.clip(block, 0, 1)
    out.flush()
    return np.load(data / "test.npz")["vectors"]


def skewed_vectors(n: int, rng: np.random.Generator, protos: np.ndarray, weights: np.ndarray) -> np.ndarray:
    which = rng.choice(len(protos), size=n, p=weights)
    out = protos[which]
    out[rng.random(n) < 0.25] = 0.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=["fmnist", "skewed"])
    ap.add_argument("--model", help="model directory (fmnist)")
    ap.add_argument("--data", help="folder with train.npz and test.npz (fmnist)")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("-k", type=int, default=None, help="default: 100 for fmnist, 10 for skewed")
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="keep the corpus and index here (default: a temporary folder)")
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="semhash-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus, index_dir = work / f"{args.dataset}-{args.items}.npy", work / f"{args.dataset}-{args.items}-index"
    k = args.k or (100 if args.dataset == "fmnist" else 10)

    if args.dataset == "fmnist":
        if not corpus.exists():
            queries = write_fmnist(corpus, Path(args.data), args.items, args.noise, rng)
        else:
            queries = np.load(Path(args.data) / "test.npz")["vectors"]
        queries = queries[:args.queries]
        engine = Engine.from_model(args.model)
    else:
        protos = rng.normal(0, 1, (40_000, 64)).astype(np.float32)
        weights = 1.0 / np.arange(1, 40_001) ** 1.1
        weights /= weights.sum()
        if not corpus.exists():
            np.save(corpus, skewed_vectors(args.items, rng, protos, weights))
        queries = skewed_vectors(args.queries, np.random.default_rng(args.seed + 1), protos, weights)
        engine = Engine.train(str(corpus), bits=32, hasher="itq", progress=False)
    if not index_dir.exists():
        t = time.perf_counter()
        engine.index(str(corpus), index_dir, progress=False)
        print(f"indexed {args.items:,} items in {time.perf_counter() - t:.1f} s")
    engine.close()
    del engine

    engine = Engine.load(index_dir)
    info = engine.info()
    print(f"{info['items']:,} items, {info['buckets']['distinct_codes']:,} distinct codes, largest bucket "
          f"{info['buckets']['largest_bucket']:,}")
    engine.query_batch(queries[:10], k=k)  # builds the search structures
    loaded = rss_mb()
    reset_peak()
    t = time.perf_counter()
    answers = engine.query_batch(queries, k=k)
    t_engine = time.perf_counter() - t
    peak = rss_mb("VmHWM")
    t = time.perf_counter()
    for a in answers:
        a.hits  # noqa: B018 (made on first use: timed apart, as a caller that wants objects pays it)
    t_hits = time.perf_counter() - t

    row_ids, codes = engine.store.all_codes()
    flat = faiss.IndexBinaryFlat(engine.model.bits)
    flat.add(codes)
    qcodes = engine.model.encode(records_from_strings(queries))
    t = time.perf_counter()
    dist, _ = flat.search(qcodes, k)
    t_flat = time.perf_counter() - t
    agree = all(np.array_equal(a.distances, dist[i]) and [h.distance for h in a.hits] == dist[i].tolist()
                for i, a in enumerate(answers))
    nq = len(queries)
    print("| what | queries/s | µs/query | agrees with brute force |")
    print("|---|---:|---:|---|")
    print(f"| Engine.query_batch, k={k} (encoding and payloads included) | {nq / t_engine:,.0f} | "
          f"{t_engine / nq * 1e6:,.1f} | {agree} |")
    print(f"| the same, then every answer's `hits` made into Hit objects | {nq / (t_engine + t_hits):,.0f} | "
          f"{(t_engine + t_hits) / nq * 1e6:,.1f} | {agree} |")
    print(f"| FAISS IndexBinaryFlat, k={k}, on the same codes | {nq / t_flat:,.0f} | {t_flat / nq * 1e6:,.1f} | - |")
    print(f"ratio {t_flat / t_engine:.1f}x ({t_flat / (t_engine + t_hits):.1f}x with Hit objects); RSS after load {loaded:,.0f} MB, peak while querying {peak:,.0f} MB "
          f"(+{peak - loaded:,.0f} MB)")
    engine.close()
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
