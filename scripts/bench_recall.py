"""Neighbour recall on sentence embeddings: how much of the exact float top-10 a binary code keeps.

    python scripts/bench_recall.py debian.jsonl [--limit 10000] [--queries 500] [--bits 32] [--seeds 0,1,2]
                                   [--cache emb.npy]

Embeds the first --limit texts with all-MiniLM-L6-v2 (semhash[embed]; cached to --cache as .npy), splits
off --queries seeded queries, and for each code reports recall@10 of the exact cosine top-10 (the code's
Hamming ranking alone, and re-ranking its top 100 and top 1,000 by cosine, as vector databases rescore
binary candidates), with its bits per item:
  - the autoencoder (semhash's default hasher) and ITQ trained on the database embeddings, at --bits;
  - the vector databases' reference: the sign of each of the 384 dimensions.
Prints one markdown table, the mean and spread over --seeds (query splits and hasher seeds).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from semhash.corpus import Batch
from semhash.embedding import EmbeddingFeaturizer
from semhash.evaluate import neighbour_recall, sign_codes
from semhash.hashers.options import TrainingOptions

CANDIDATES = (None, 100, 1000)


def embeddings(path: str, limit: int, cache: str | None) -> np.ndarray:
    if cache and Path(cache).exists():
        return np.load(cache)
    with open(path, encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for _, line in zip(range(limit), fh)]
    f = EmbeddingFeaturizer("all-MiniLM-L6-v2")
    f.progress = True
    batch = Batch(ids=[str(i) for i in range(len(texts))], texts=texts)
    X = f.fit(batch).transform(batch)
    if cache:
        np.save(cache, X)
    return X


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("--limit", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cache", default=None)
    args = ap.parse_args()
    X = embeddings(args.corpus, args.limit, args.cache)
    results: dict[str, list[dict]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        order = np.random.default_rng(seed).permutation(len(X))
        q, db = X[order[:args.queries]], X[order[args.queries:]]
        for name in ("ae", "itq"):
            h = TrainingOptions(hasher=name, bits=args.bits, seed=seed).make_hasher()
            h.fit(db, output_type="real", progress=False)
            results.setdefault(f"{name}, {args.bits} bits", []).append(
                neighbour_recall(q, db, h.encode(q), h.encode(db), k=10, candidates=CANDIDATES))
        results.setdefault(f"sign, {X.shape[1]} bits", []).append(
            neighbour_recall(q, db, sign_codes(q), sign_codes(db), k=10, candidates=CANDIDATES))
    seeds = len(args.seeds.split(","))
    print(f"{len(X) - args.queries:,} database texts, {args.queries} queries, all-MiniLM-L6-v2 embeddings; "
          f"recall@10 of the exact cosine top-10, mean ± std over {seeds} seeds\n")
    print("| code | bits/item | Hamming only | re-rank top 100 | re-rank top 1,000 |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        cells = []
        for key in ("codes", "rerank 100", "rerank 1000"):
            v = np.array([r[key] for r in runs])
            cells.append(f"{v.mean():.4f} ± {v.std():.4f}")
        print(f"| {name} | {name.split(', ')[1].split()[0]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
