"""Autoencoder variants against ITQ on Fashion-MNIST, one variant per run: the ablation table of the README.

    python scripts/prepare_fashion_mnist.py -o fashion-mnist
    python scripts/ablate_ae.py fashion-mnist --bits 32                                   # the defaults
    python scripts/ablate_ae.py fashion-mnist --bits 32 neighbors=0.1 temperature=0       # a variant
    python scripts/ablate_ae.py fashion-mnist --bits 32 --method itq                      # the baseline

Database = the 60,000 training images, queries = the 10,000 test images, relevance = same class,
ranking by Hamming distance (semhash.evaluate; ties by database index, and tie-averaged). KEY=VALUE
arguments override TrainConfig fields (epochs, noise, balance, decorrelation, neighbors,
n_neighbors, temperature, ...) or the encoder (hidden=512,256, dropout=0.1). Prints one JSON line
and appends it to --log.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from semhash.evaluate import code_diagnostics, evaluate_hamming
from semhash.evalrun import make_hasher
from semhash.hashers.train import TrainConfig


def build(method: str, bits: int, overrides: list[str], seed: int):
    """The hasher, through the same factory as `semhash eval` (KEY=VALUE strings typed here)."""
    defaults = TrainConfig()
    options = {}
    for item in overrides:
        key, value = item.split("=", 1)
        if key == "hidden":
            options[key] = [int(x) for x in value.split(",")]
        elif hasattr(defaults, key):
            default = getattr(defaults, key)
            options[key] = float(value) if default is None else type(default)(value)
        else:
            options[key] = float(value)  # dropout
    return make_hasher(method, bits, seed=seed, ae_options=options)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="folder with train.npz and test.npz (prepare_fashion_mnist.py)")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE training settings")
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--method", default="ae", help="ae, itq, pca or lsh")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the figures depend on it: float sums)")
    ap.add_argument("--log", type=Path, default=Path("ablate_ae.jsonl"))
    args = ap.parse_intermixed_args()
    torch.set_num_threads(args.threads)
    train, test = np.load(args.data / "train.npz"), np.load(args.data / "test.npz")
    X, Q = train["vectors"].astype(np.float32), test["vectors"].astype(np.float32)
    hasher = build(args.method, args.bits, args.overrides, args.seed)
    started = time.time()
    hasher.fit(X, "unit", progress=False)
    seconds = time.time() - started
    ev = evaluate_hamming(hasher.encode(Q), hasher.encode(X), test["labels"], train["labels"], k=100,
                          query_logits=hasher.logits(Q))
    row = {"method": args.method, "bits": args.bits, "settings": args.overrides, "train_seconds": round(seconds, 1),
           "map": round(ev.mean_average_precision("index"), 4),
           "map_tie_avg": round(ev.mean_average_precision("average"), 4),
           "precision_at_100": round(ev.precision(100, "index"), 4),
           "precision_at_100_tie_avg": round(ev.precision(100, "average"), 4),
           "distinct_codes": code_diagnostics(hasher.encode(X))["distinct_codes"]}
    if ev.average_precision_confidence is not None:  # ties broken by the query's per-bit confidence
        row.update(map_confidence=round(ev.mean_average_precision("confidence"), 4),
                   precision_at_100_confidence=round(ev.precision(100, "confidence"), 4))
    if getattr(hasher, "history", None):
        row["epochs_run"] = hasher.history.get("epochs_run")
    print(json.dumps(row))
    with open(args.log, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
