"""A large labelled text corpus for scale tests, made by recombining the sentences of a smaller one.

    python scripts/make_debian_sample.py --limit 0 --min-section-size 200 -o debian.jsonl
    python scripts/make_text_corpus.py debian.jsonl -n 2000000 -o texts-2m.jsonl [--seed 0]

Each generated document takes one record of the source at random, keeps its label (the Debian section),
and is made of 1 to 4 sentences: the first from that record, the others from random records of the same
label, so that documents of one label share vocabulary as real ones do. Ids are "g0", "g1", ...
Written as JSONL a block at a time (memory: the source corpus, not the output).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict

import numpy as np

SENTENCE = re.compile(r"(?<=[.!?])\s+")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="a JSONL corpus with 'text' and 'label'")
    ap.add_argument("-n", type=int, required=True, help="documents to write")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sentences: list[list[str]] = []
    labels: list[str] = []
    by_label: dict[str, list[int]] = defaultdict(list)
    with open(args.source, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            parts = [s for s in SENTENCE.split(rec["text"].replace("\n", " ")) if s.strip()]
            if parts:
                by_label[str(rec.get("label", ""))].append(len(sentences))
                labels.append(str(rec.get("label", "")))
                sentences.append(parts)
    members = {k: np.asarray(v) for k, v in by_label.items()}
    rng = np.random.default_rng(args.seed)
    with open(args.out, "w", encoding="utf-8") as out:
        for start in range(0, args.n, 100_000):
            m = min(args.n, start + 100_000) - start
            firsts = rng.integers(0, len(sentences), m)
            counts = rng.integers(1, 5, m)
            lines = []
            for j, (first, count) in enumerate(zip(firsts.tolist(), counts.tolist())):
                label = labels[first]
                own = sentences[first]
                parts = [own[rng.integers(len(own))]]
                for other in rng.choice(members[label], count - 1).tolist():
                    parts.append(sentences[other][rng.integers(len(sentences[other]))])
                lines.append(json.dumps({"id": f"g{start + j}", "text": " ".join(parts), "label": label}))
            out.write("\n".join(lines) + "\n")
            print(f"{start + m:,} documents", file=sys.stderr)


if __name__ == "__main__":
    main()
