"""Neighbour recall on sentence embeddings: how much of the exact float top-10 a binary code keeps, and how fast.

    python scripts/bench_recall.py debian.jsonl [--limit 21000] [--queries 1000] [--bits 32,64] [--seeds 0,1,2]
                                   [--cache emb.npy]

Embeds the first --limit texts with all-MiniLM-L6-v2 (semhash[embed]; cached to --cache as .npy), splits
off --queries seeded queries, and for each code reports recall@10 of the exact cosine top-10 (the code's
Hamming ranking alone, and re-ranking its top 100 and top 1,000 by cosine, as vector databases rescore
binary candidates), with its bits per item:
  - the autoencoder (semhash's default hasher) and ITQ trained on the database embeddings, at each of --bits;
  - the vector databases' reference: the sign of each of the 384 dimensions.
And queries/s, on the same queries (all at once, the best of --repeat runs):
  - semhash's re-rank path for each hasher: an index of the database built with keep_features, then
    Engine.query_batch(queries, k=10, rerank=True, candidates=N), which encodes the queries, searches the
    codes, reads the candidates' kept features from the store and rescores them;
  - plain numpy on the sign codes: Hamming distances to every database code, the top N, rescored by
    cosine on float vectors held in memory;
  - an exact float cosine scan of the whole database.
Prints markdown tables: the mean and spread over --seeds (query splits and hasher seeds).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from semhash.corpus import Batch
from semhash.embedding import EmbeddingFeaturizer
from semhash.engine import Engine
from semhash.evaluate import hamming_distances, neighbour_recall, sign_codes

CANDIDATES = (None, 100, 1000)
K = 10


def embeddings(path: str, limit: int, cache: str | None) -> np.ndarray:
    """The first `limit` texts of the JSONL corpus `path`, embedded; a cache of at least that many rows (the
    same corpus, embedded earlier) is read instead, and a new embedding is saved to it."""
    if cache and Path(cache).exists():
        X = np.load(cache, mmap_mode="r")
        if len(X) >= limit:
            return np.array(X[:limit])
        print(f"{cache} holds {len(X)} rows, fewer than {limit}: embedding again", flush=True)
    with open(path, encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for _, line in zip(range(limit), fh)]
    f = EmbeddingFeaturizer("all-MiniLM-L6-v2")
    f.progress = True
    batch = Batch(ids=[str(i) for i in range(len(texts))], texts=texts)
    X = f.fit(batch).transform(batch)
    if cache:
        np.save(cache, X)
    return X


def _batch(X: np.ndarray, prefix: str) -> Batch:
    return Batch(ids=[f"{prefix}{i}" for i in range(len(X))], vectors=np.ascontiguousarray(X, np.float32))


def best_time(fn, repeat: int) -> float:
    fn()  # warm: the store's pages, the search structures
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def semhash_qps(engine: Engine, q: np.ndarray, work: Path, repeat: int, db: np.ndarray) -> dict:
    """Queries/s of Engine.query_batch with re-ranking of 100 and 1,000 candidates, on a fresh index: the
    candidates by Hamming distance ("qps N"), then by asymmetric score ("qps asym N")."""
    index, corpus = work / f"index-{time.monotonic_ns()}", work / "db.npy"
    if not corpus.exists():
        np.save(corpus, db)
    engine.index(corpus, index, progress=False, keep_features=True)
    qb = _batch(q, "q")
    out = {}
    for n in CANDIDATES[1:]:
        out[f"qps {n}"] = len(q) / best_time(lambda: engine.query_batch(qb, k=K, rerank=True, candidates=n), repeat)
    for n in CANDIDATES[1:]:
        out[f"qps asym {n}"] = len(q) / best_time(
            lambda: engine.query_batch(qb, k=K, rerank=True, candidates=n, asymmetric=True), repeat)
    engine.close()
    shutil.rmtree(index, ignore_errors=True)
    return out


def numpy_sign_qps(q: np.ndarray, db: np.ndarray, repeat: int, block: int = 100) -> dict:
    """Queries/s of plain numpy: sign codes' Hamming top N, rescored by cosine on the float vectors in memory."""
    qc, dc = sign_codes(q), sign_codes(db)
    D = db / np.linalg.norm(db, axis=1, keepdims=True)

    def run(n: int) -> None:
        n = min(n, len(db))  # a database smaller than the candidates: every item is one
        for s in range(0, len(q), block):
            h = hamming_distances(qc[s:s + block], dc)
            cand = np.argpartition(h, n - 1, axis=1)[:, :n]
            qq = q[s:s + block] / np.linalg.norm(q[s:s + block], axis=1, keepdims=True)
            sims = np.einsum("qcd,qd->qc", D[cand], qq)
            np.take_along_axis(cand, np.argsort(-sims, axis=1)[:, :K], axis=1)
    return {f"qps {n}": len(q) / best_time(lambda: run(n), repeat) for n in CANDIDATES[1:]}


def exact_qps(q: np.ndarray, db: np.ndarray, repeat: int, block: int = 100) -> float:
    D = db / np.linalg.norm(db, axis=1, keepdims=True)

    def run() -> None:
        for s in range(0, len(q), block):
            qq = q[s:s + block] / np.linalg.norm(q[s:s + block], axis=1, keepdims=True)
            np.argpartition(-(qq @ D.T), K - 1, axis=1)[:, :K]
    return len(q) / best_time(run, repeat)


def cell(runs: list[dict], key: str, fmt: str = ".4f") -> str:
    v = np.array([r[key] for r in runs if key in r])
    if not len(v):
        return "-"
    return f"{v.mean():{fmt}} ± {v.std():{fmt}}" if len(v) > 1 else f"{v[0]:{fmt}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("--limit", type=int, default=21_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--bits", default="32,64")
    ap.add_argument("--methods", default="ae,itq")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each query batch (the best is kept)")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--ae", action="append", default=[], metavar="NAME=VALUE",
                    help="a training option of the autoencoder (TrainConfig's, e.g. diffusion_time=10; values read as JSON); "
                         "repeatable")
    args = ap.parse_args()
    ae_options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.ae)}  # 20 an int, 0.5 a float
    X = embeddings(args.corpus, args.limit, args.cache)
    bits = [int(b) for b in args.bits.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, list[dict]] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-recall-"))
    try:
        for seed in seeds:
            order = np.random.default_rng(seed).permutation(len(X))
            q, db = X[order[:args.queries]], X[order[args.queries:]]
            dbb = _batch(db, "d")
            (work / "db.npy").unlink(missing_ok=True)  # this seed's database
            for b in bits:
                for name in args.methods.split(","):
                    engine = Engine.train(dbb, progress=False, hasher=name, bits=b, seed=seed,
                                          **(ae_options if name == "ae" else {}))
                    r = neighbour_recall(q, db, engine.model.encode(_batch(q, "q")), engine.model.encode(dbb),
                                         k=K, candidates=CANDIDATES)
                    r.update(semhash_qps(engine, q, work, args.repeat, db))
                    results.setdefault(f"semhash {name}, {b} bits", []).append(r)
            r = neighbour_recall(q, db, sign_codes(q), sign_codes(db), k=K, candidates=CANDIDATES)
            r.update(numpy_sign_qps(q, db, args.repeat))
            results.setdefault(f"sign of each dimension (numpy), {X.shape[1]} bits", []).append(r)
            results.setdefault("exact cosine scan (numpy)", []).append({"qps exact": exact_qps(q, db, args.repeat)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(X) - args.queries:,} database texts, {args.queries} queries, all-MiniLM-L6-v2 embeddings; "
          f"recall@{K} of the exact cosine top-{K}, and queries/s (all queries at once, best of {args.repeat}); "
          f"mean ± std over {len(seeds)} seeds\n")
    print("| method | bytes/item | Hamming top-10 | re-rank 100 | re-rank 1,000 | q/s re-rank 100 | q/s re-rank 1,000 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        if name.startswith("exact"):
            print(f"| {name} | {X.shape[1] * 4} | 1 | - | - | {cell(runs, 'qps exact', '.0f')} (whole database) | |")
            continue
        nbytes = int(name.split(", ")[1].split()[0]) // 8
        print(f"| {name} | {nbytes} | {cell(runs, 'codes')} | {cell(runs, 'rerank 100')} | {cell(runs, 'rerank 1000')} "
              f"| {cell(runs, 'qps 100', '.0f')} | {cell(runs, 'qps 1000', '.0f')} |")


if __name__ == "__main__":
    main()
