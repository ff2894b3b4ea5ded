"""scripts/bench_quality.py's embed dataset on small data: sentence embeddings read from a cache (random unit
vectors here, so nothing is embedded), every seed scored and timed, and a stale cache refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench_quality.py"
SAMPLE = ROOT / "data" / "debian-sample.jsonl"


def run(tmp_path, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), "--datasets", "embed", "--debian-corpus", str(SAMPLE),
                           "--methods", "itq", "--bits", "16", "--repeat", "1", "-q", *args],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)


def cache(tmp_path, rows: int) -> Path:
    X = np.random.default_rng(0).standard_normal((rows, 24)).astype(np.float32)
    path = tmp_path / "emb.npy"
    np.save(path, X / np.linalg.norm(X, axis=1, keepdims=True))
    return path


def test_embed_dataset_scores_and_times_every_seed(tmp_path):
    out = tmp_path / "report.json"
    done = run(tmp_path, "--embed-cache", str(cache(tmp_path, 500)), "--embed-limit", "400",
               "--embed-queries", "40", "--seeds", "0,1", "--out-json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "### embed: 360 database items, 40 queries" in done.stdout
    assert "| semhash itq, 16 bits (Engine.query_batch, rerank) |" in done.stdout
    assert "| sign of each dimension, 24 bits (numpy) |" in done.stdout
    reports = json.loads(out.read_text())["datasets"]["embed"]["reports"]
    assert len(reports) == 2
    for r in reports:
        speeds = r["queries_per_second"]
        assert set(speeds) == {"itq 16", "sign", "exact"}
        assert min(speeds["itq 16"]["qps 100"], speeds["sign"]["qps 1000"], speeds["exact"]["qps"]) > 0
        assert 0 <= r["results"][0]["metrics"]["recall_at_10_rerank_100"] <= 1


def test_a_cache_longer_than_the_corpus_is_refused(tmp_path):
    rows = sum(1 for _ in SAMPLE.open(encoding="utf-8")) + 10
    done = run(tmp_path, "--embed-cache", str(cache(tmp_path, rows)), "--embed-limit", str(rows), "--no-speed")
    assert done.returncode == 1
    assert f"holds {rows - 10} records, the embeddings {rows}: a stale --embed-cache?" in done.stderr


def test_tune_picks_the_value_with_the_best_validation_score(tmp_path):
    out = tmp_path / "report.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(SCRIPT), "--datasets", "debian", "--debian-corpus", str(SAMPLE),
                           "--methods", "ae", "--bits", "8", "--epochs", "1", "--debian-queries", "300",
                           "--tune", "diffusion_time=3,30", "--tune-by", "precision", "--tune-queries", "300",
                           "-q", "--out-json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    tuned = json.loads(out.read_text())["datasets"]["debian"]["reports"][0]["tuned"]
    assert tuned["option"] == "diffusion_time" and tuned["by"] == "validation P@k"
    scores = tuned["validation"]
    assert set(scores) == {"3", "30"}  # JSON keys
    assert str(tuned["value"]) == max(scores, key=lambda v: scores[v]["precision"])
    assert all(s["score"] == s["precision"] and 0 < s["map"] <= 1 for s in scores.values())
    assert "tuned on a validation split of the database (validation P@100): seed 0: diffusion_time=" in done.stdout
