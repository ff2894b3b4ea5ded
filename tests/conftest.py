"""Shared test setup: one CPU thread for torch (fast, reproducible on small machines) and small corpora."""
from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

TOPICS = {
    "space": "rocket orbit planet star galaxy astronaut launch telescope comet moon".split(),
    "cooking": "recipe flour butter oven sugar bake dough pepper garlic onion".split(),
    "sports": "football goal referee stadium league striker match coach team penalty".split(),
}


def _topic_docs(n: int = 60, seed: int = 0, words_per_doc: int = 8) -> list[dict]:
    """`n` seeded documents, each drawn from one topic's word list: {"id", "text", "label"}."""
    rng = np.random.default_rng(seed)
    names = sorted(TOPICS)
    docs = []
    for i in range(n):
        topic = names[i % len(names)]
        words = rng.choice(TOPICS[topic], size=words_per_doc, replace=True)
        docs.append({"id": f"doc{i}", "text": " ".join(words), "label": topic})
    return docs


@pytest.fixture(scope="session")
def topic_docs():
    """A function: topic_docs(n=60, seed=0) -> list of {"id", "text", "label"} dicts."""
    return _topic_docs


@pytest.fixture(scope="session")
def write_jsonl():
    """A function: write_jsonl(path, records) writes one JSON object per line and returns the path."""
    def write(path, records):
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return path
    return write
