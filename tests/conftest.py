"""Shared test setup: one CPU thread for torch (fast, reproducible on small machines) and small corpora."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import pg_url_or_reason  # noqa: E402

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


def _tree_hash(path: Path) -> str:
    """sha256 of everything a write could change at `path`: each entry's type, name, bytes, link or device."""
    h = hashlib.sha256()

    def visit(p: Path, name: str) -> None:
        st = os.lstat(p)
        h.update(f"{name}\0{stat.S_IFMT(st.st_mode)}\0".encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(p).encode())
        elif stat.S_ISDIR(st.st_mode):
            for child in sorted(p.iterdir()):
                visit(child, f"{name}/{child.name}")
        elif stat.S_ISREG(st.st_mode):
            h.update(p.read_bytes())
        else:  # a device node or FIFO: which one it is
            h.update(f"{st.st_rdev}:{st.st_ino}".encode())

    visit(Path(path), ".")
    return h.hexdigest()


@pytest.fixture(scope="session")
def tree_hash():
    """A function: tree_hash(path) -> a sha256 of the file, directory tree, symlink or device at path, to check
    that a refused write changed nothing."""
    return _tree_hash


# --- vector corpora, tiny trained models and PostgreSQL (engine, indexer and index CLI tests) ----------------
def _vector_docs(n: int = 120, dim: int = 16, seed: int = 0, clusters: int = 4, prefix: str = "v") -> list[dict]:
    """`n` seeded vectors around `clusters` centres: {"id", "vector", "label", "title", "rank"} (the last
    two are payload)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).normal(size=(clusters, dim)) * 3  # the same centres for every seed
    docs = []
    for i in range(n):
        c = i % clusters
        vec = centres[c] + rng.normal(size=dim)
        docs.append({"id": f"{prefix}{i}", "vector": [round(float(x), 4) for x in vec], "label": f"c{c}",
                     "title": f"item {prefix}{i}", "rank": i})
    return docs


@pytest.fixture(scope="session")
def vector_docs():
    """A function: vector_docs(n=120, dim=16, seed=0, clusters=4, prefix="v") -> list of {"id", "vector",
    "label", "title", "rank"} dicts."""
    return _vector_docs


@pytest.fixture(scope="session")
def fit_tiny_model():
    """A function: fit_tiny_model(records_or_path, bits=16, seed=0) -> a fast-trained autoencoder Model
    (one hidden layer of 32, 2 epochs, CPU), not yet saved."""
    def fit(source, bits: int = 16, seed: int = 0):
        from semhash.corpus import Batch, Corpus
        from semhash.engine import _batch_from_dicts
        from semhash.hashers.ae import AutoencoderHasher
        from semhash.hashers.train import TrainConfig
        from semhash.model import Model

        data = source if isinstance(source, Batch) else (
            _batch_from_dicts(source) if isinstance(source, list) else Corpus(source).read_all())
        hasher = AutoencoderHasher(bits=bits, hidden=[32],
                                   train_config=TrainConfig(epochs=2, device="cpu", seed=seed))
        return Model.fit(data, hasher, progress=False)
    return fit


@pytest.fixture(scope="session")
def pg_url():
    """The PostgreSQL URL of SEMHASH_TEST_PG_URL; the test is skipped (with the reason) when it is unset or
    unreachable. Tests must use a unique namespace (or schema) and drop what they create."""
    url, reason = pg_url_or_reason()
    if url is None:
        pytest.skip(reason)
    return url


def _make_unrelated(tmp_path: Path, what: str) -> Path:
    """A path holding something semhash must not replace: dir, dir-with-manifest, file, fifo, symlink, device."""
    if what == "dir":
        (tmp_path / "project").mkdir()
        (tmp_path / "project" / "notes.txt").write_text("mine")
        (tmp_path / "project" / "src").mkdir()
        (tmp_path / "project" / "src" / "main.py").write_text("print('hi')\n")
        return tmp_path / "project"
    if what == "dir-with-manifest":
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "manifest.json").write_text(json.dumps({"format": 1, "name": "not semhash"}))
        return tmp_path / "other"
    if what == "file":
        (tmp_path / "data.bin").write_bytes(b"\x00precious")
        return tmp_path / "data.bin"
    if what == "fifo":
        os.mkfifo(tmp_path / "pipe")
        return tmp_path / "pipe"
    if what == "symlink":
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        return tmp_path / "link"
    assert what == "device"
    return Path("/dev/null")


@pytest.fixture(scope="session")
def make_unrelated():
    """A function: make_unrelated(tmp_path, what) -> a path holding something semhash did not write."""
    return _make_unrelated
