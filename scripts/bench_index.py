"""Indexing throughput on Fashion-MNIST (all 70,000 items) with a model trained beforehand.

    python scripts/prepare_fashion_mnist.py -o fashion-mnist
    semhash train fashion-mnist/train.npz -o fmnist-model --bits 32
    python scripts/bench_index.py --model fmnist-model --data fashion-mnist [--pg-url URL]

Times `Engine.index` (read + encode + store, one transaction per batch, + the search structures in memory)
into a SQLite index and, when --pg-url is given, into PostgreSQL; prints items/s and bytes per item.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from semhash.engine import Engine
from semhash.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model directory (semhash train)")
    ap.add_argument("--data", required=True, help="folder with train.npz and test.npz")
    ap.add_argument("--pg-url", default=None, help="also index into this PostgreSQL database")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="semhash-bench-"))
    parts = [np.load(Path(args.data) / f"{s}.npz") for s in ("train", "test")]
    corpus = work / "all.npz"
    np.savez(corpus, vectors=np.concatenate([p["vectors"] for p in parts]),
             ids=np.concatenate([p["ids"] for p in parts]), labels=np.concatenate([p["labels"] for p in parts]))
    rows = []
    targets = [("sqlite", None)] + ([("postgresql", args.pg_url)] if args.pg_url else [])
    for name, url in targets:
        engine = Engine.from_model(args.model)
        namespace = f"bench_{uuid.uuid4().hex[:8]}"
        t = time.perf_counter()
        stats = engine.index(str(corpus), work / f"index-{name}", db_url=url, progress=False,
                             namespace=namespace)
        secs = time.perf_counter() - t
        info = engine.info()
        rows.append((name, stats.written, secs, stats.written / secs, info["bytes_per_item"]["memory"],
                     info["bytes_per_item"]["disk"], info["buckets"]["bytes_per_item"]))
        engine.close()
        if url:
            Store(url, None, namespace=namespace, create=False).drop()
    print("| store | items | seconds | items/s | bytes/item in memory | bytes/item on disk | of which buckets |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:,} | {r[2]:.2f} | {r[3]:,.0f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.1f} |")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
