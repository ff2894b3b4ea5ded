"""Indexing throughput on Fashion-MNIST (all 70,000 items, or a larger .npy) with a model trained beforehand.

    python scripts/prepare_fashion_mnist.py -o fashion-mnist
    semhash train fashion-mnist/train.npz -o fmnist-model --bits 32
    python scripts/bench_index.py --model fmnist-model --data fashion-mnist [--pg-url URL]
    python scripts/bench_index.py --model fmnist-model --data fashion-mnist --npy fm1m.npy --cli

Times `Engine.index` (validate + read + encode + store, one transaction per batch, + the search structures in
memory) into a SQLite index and, when --pg-url is given, into PostgreSQL; prints items/s and bytes per item
(on disk: the index directory after closing). `--npy FILE`: index that array instead (e.g. 1,000,000 rows;
`--make-npy N` writes one from the training images, repeated with pixel noise). `--cli`: also run
`semhash index FILE -m MODEL` under /usr/bin/time -v and print its wall time and peak RSS.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
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
    ap.add_argument("--npy", default=None, help="index this .npy of vectors instead of Fashion-MNIST's 70,000")
    ap.add_argument("--make-npy", type=int, default=0, help="first write --npy with this many noisy training images")
    ap.add_argument("--cli", action="store_true", help="also time `semhash index` under /usr/bin/time -v")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="semhash-bench-"))
    if args.npy:
        corpus = Path(args.npy)
        if args.make_npy:
            make_npy(corpus, np.load(Path(args.data) / "train.npz")["vectors"], args.make_npy)
    else:
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
        engine.close()
        disk = sum(f.stat().st_size for f in (work / f"index-{name}").rglob("*") if f.is_file())
        rows.append((name, stats.written, secs, stats.written / secs, info["bytes_per_item"]["memory"],
                     disk / stats.written, info["buckets"]["bytes_per_item"]))
        if url:
            Store(url, None, namespace=namespace, create=False).drop()
    print("| store | items | seconds | items/s | bytes/item in memory | bytes/item on disk (closed) | of which buckets |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:,} | {r[2]:.2f} | {r[3]:,.0f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.1f} |")
    if args.cli:
        p = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "semhash.cli", "index", str(corpus), "-m",
                            args.model, "-o", str(work / "index-cli"), "-q"], capture_output=True, text=True)
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", p.stderr)[1]
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)[1]) / 1024
        print(f"\n`semhash index {corpus.name} -m MODEL` (SQLite; start-up included): exit {p.returncode}, "
              f"wall {wall}, peak RSS {rss:,.0f} MB")
    shutil.rmtree(work)


def make_npy(path: Path, base: np.ndarray, n: int) -> None:
    """`n` rows of `base` repeated in order, each with Gaussian pixel noise (sd 0.02), written a block at a time."""
    rng = np.random.default_rng(0)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, base.shape[1]))
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        out[start:stop] = base[np.arange(start, stop) % len(base)] + rng.normal(0, 0.02, (stop - start,
                                                                                          base.shape[1]))
    out.flush()


if __name__ == "__main__":
    main()
