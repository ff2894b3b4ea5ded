"""Are a model's codes really binary? Saturation, bit balance and distinct codes on a corpus.

    python scripts/code_stats.py MODEL_DIR CORPUS

Prints: the share of code-unit activations (sigmoid of the logits) within 0.1 of 0 or 1, the
smallest and largest share of items with each bit set, and the number of distinct codes.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from semhash.codes import pack
from semhash.corpus import Corpus
from semhash.model import Model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("corpus")
    args = ap.parse_args()
    model = Model.load(args.model)
    logits = np.concatenate([model.logits(b) for b in Corpus(args.corpus).batches()])
    act = 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))
    on = (logits > 0).mean(axis=0)
    codes = pack(logits > 0)
    distinct = len(np.unique(codes, axis=0))
    print(json.dumps({
        "items": len(logits), "bits": logits.shape[1],
        "saturated_within_0.1": round(float(((act < 0.1) | (act > 0.9)).mean()), 4),
        "bit_on_share_min": round(float(on.min()), 4), "bit_on_share_max": round(float(on.max()), 4),
        "distinct_codes": int(distinct),
    }))


if __name__ == "__main__":
    main()
