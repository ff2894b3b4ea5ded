"""Distributed training: `torchrun --nproc-per-node 2 -m semhash.cli train` (gloo, two CPU processes) trains one
model, written once by rank 0, whose codes are as good as one process's."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semhash.corpus import Corpus
from semhash.model import Model

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
pytestmark = pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")


def label_precision(model_dir: Path, corpus: Path, k: int = 10) -> float:
    """Share of each item's k nearest codes (Hamming, ties by row) that carry its label."""
    batch = Corpus(corpus).read_all()
    codes = np.unpackbits(Model.load(model_dir).encode(batch), axis=1).astype(np.int16)
    labels = np.array([lab[0] for lab in batch.labels])
    dist = (codes[:, None, :] != codes[None, :, :]).sum(axis=2)
    np.fill_diagonal(dist, 10 ** 6)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())


def test_two_processes_train_one_model_as_good_as_one_process(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 32)) * 0.8  # overlapping clusters: precision@10 about 0.84, not 1
    labels = rng.integers(0, 10, 1200)
    vectors = centres[labels] + rng.normal(size=(1200, 32))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"v{i}", "vector": v.round(4).tolist(), "label": str(lab)}) + "\n"
                              for i, (v, lab) in enumerate(zip(vectors, labels))))
    options = ["--bits", "16", "--hidden", "32", "--epochs", "6", "-q"]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    two = subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "semhash.cli", "train",
                          str(corpus), "-o", str(tmp_path / "two"), *options],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    summary = [json.loads(line) for line in two.stdout.splitlines() if line.startswith("{")]
    assert len(summary) == 1 and summary[0]["model"] == str(tmp_path / "two")  # rank 0 alone reports
    one = subprocess.run([sys.executable, "-m", "semhash.cli", "train", str(corpus), "-o", str(tmp_path / "one"),
                          *options], capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "one", "two"]  # one model each
    p_two, p_one = label_precision(tmp_path / "two", corpus), label_precision(tmp_path / "one", corpus)
    # the stated tolerance: within 0.05 of one process's precision@10 (measured 0.8410 against 0.8424)
    assert p_two > 0.75 and abs(p_two - p_one) < 0.05, (p_two, p_one)
    history = Model.load(tmp_path / "two").hasher.history
    assert history["epochs_run"] >= 1


def test_index_refuses_to_run_as_several_processes(tmp_path, monkeypatch):
    from helpers import run

    (tmp_path / "c.jsonl").write_text('{"id": "a", "vector": [1.0, 2.0]}\n')
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = run("index", tmp_path / "c.jsonl", "-o", tmp_path / "idx", "--hasher", "itq", "--bits", "8")
    assert result.exit_code == 1 and result.output.startswith("Error: semhash index runs as one process")
    assert not (tmp_path / "idx").exists()
