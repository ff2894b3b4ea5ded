"""semhash.hashers.baselines: LSH, PCA-sign and ITQ behind the Hasher interface, dense and sparse."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from semhash.cli import main
from semhash.corpus import Batch
from semhash.errors import ConfigError, ModelError
from semhash.hashers import HASHERS, hasher_class
from semhash.hashers.baselines import (
    STATE_FILE,
    ITQHasher,
    LSHHasher,
    PCAHasher,
    covariance,
    itq_rotation,
    principal_components,
    project,
)
from semhash.model import Model

BASELINES = [LSHHasher, PCAHasher, ITQHasher]


def sparse_data(n=300, dim=40, seed=0) -> np.ndarray:
    """Dense float32 data with about 70% zeros (so that its CSR copy is genuinely sparse)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)) * rng.uniform(0.5, 3.0, size=dim)  # unequal variances: distinct eigenvalues
    x[rng.random((n, dim)) < 0.7] = 0.0
    return x.astype(np.float32)


def two_clusters(n=200, dim=10, seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    centres = np.zeros((2, dim))
    centres[1, 3] = 20.0  # far apart along one axis, unit noise elsewhere
    return (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


@pytest.fixture(scope="module")
def X():
    return sparse_data()


@pytest.mark.parametrize("cls", BASELINES)
def test_shapes_dtype_and_determinism(cls, X):
    h = cls(bits=16, seed=3).fit(X)
    logits = h.logits(X)
    assert logits.shape == (300, 16) and logits.dtype == np.float32
    codes = h.encode(X)
    assert codes.shape == (300, 2) and codes.dtype == np.uint8
    assert np.array_equal(codes, np.packbits(logits > 0, axis=1))
    again = cls(bits=16, seed=3).fit(X)
    assert np.array_equal(again.logits(X), logits)
    assert h.history["trained_on"] == 300 and isinstance(h.history["seconds"], float)
    assert h.describe()["name"] == cls.name and h.describe()["bits"] == 16 and h.describe()["seed"] == 3
    # roughly balanced bits on centred data
    ones = (logits > 0).mean(axis=0)
    assert ones.min() > 0.2 and ones.max() < 0.8


@pytest.mark.parametrize("cls", [LSHHasher, ITQHasher])
def test_seed_changes_random_choices(cls, X):
    assert not np.array_equal(cls(bits=16, seed=0).fit(X).encode(X), cls(bits=16, seed=1).fit(X).encode(X))


@pytest.mark.parametrize("cls", BASELINES)
def test_save_load_round_trip(cls, X, tmp_path):
    h = cls(bits=16, seed=2).fit(X)
    h.save(tmp_path)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["name"] == cls.name and state["bits"] == 16
    for f in ("mean.npy", "projection.npy"):
        np.load(tmp_path / f, allow_pickle=False)  # plain arrays, no pickle
    g = cls.load(tmp_path)
    assert np.array_equal(g.logits(X), h.logits(X))
    assert np.array_equal(g.encode(X), h.encode(X))
    assert g.describe() == h.describe()
    assert g.history == json.loads(json.dumps(h.history))


@pytest.mark.parametrize("cls", BASELINES)
def test_sparse_input_matches_dense(cls, X):
    Xs = sp.csr_matrix(X)
    dense, sparse = cls(bits=16, seed=1).fit(X), cls(bits=16, seed=1).fit(Xs)
    assert np.allclose(dense.mean, sparse.mean)
    assert np.allclose(dense.projection, sparse.projection, atol=1e-8)
    np.testing.assert_allclose(sparse.logits(Xs), dense.logits(X), atol=1e-4)
    assert np.array_equal(sparse.encode(Xs), dense.encode(X))
    assert np.array_equal(dense.encode(Xs), dense.encode(X))  # a dense-fitted hasher takes sparse rows too


def test_sparse_projection_does_not_densify(monkeypatch, X):
    Xs = sp.csr_matrix(X)
    mean, W = X.mean(axis=0, dtype=np.float64), np.random.default_rng(0).normal(size=(40, 8))
    monkeypatch.setattr(sp.csr_matrix, "toarray", lambda self, *a, **k: pytest.fail("densified"))
    np.testing.assert_allclose(project(Xs, mean, W), (X - mean) @ W, atol=1e-9)
    h = PCAHasher(bits=8, pca_method="randomized").fit(Xs)
    assert h.logits(Xs).shape == (300, 8)


def test_chunked_dense_covariance_and_projection(monkeypatch, X):
    import semhash.hashers.baselines as bl

    monkeypatch.setattr(bl, "CHUNK_ELEMENTS", 40 * 7)  # 7 rows a chunk
    mean = X.mean(axis=0, dtype=np.float64)
    np.testing.assert_allclose(covariance(X, mean), np.cov(X.astype(np.float64), rowvar=False, bias=True),
                               atol=1e-10)
    W = np.random.default_rng(0).normal(size=(40, 5))
    np.testing.assert_allclose(project(X, mean, W), (X - mean) @ W, atol=1e-9)


def test_principal_components_exact_and_randomized():
    rng = np.random.default_rng(5)
    basis, _ = np.linalg.qr(rng.normal(size=(60, 60)))
    scales = np.r_[40.0 / np.sqrt(2.0) ** np.arange(8), np.full(52, 0.3)]  # variances halve, then a gap
    X = (rng.normal(size=(1000, 60)) * scales) @ basis.T + 7.0
    mean = X.mean(axis=0)
    exact = principal_components(X, mean, 8, method="covariance")
    assert np.allclose(exact.T @ exact, np.eye(8), atol=1e-10)
    assert np.allclose(np.abs(exact.T @ basis[:, :8]), np.eye(8), atol=0.1)  # the true directions, in order
    rand = principal_components(sp.csr_matrix(X), mean, 8, seed=0, method="randomized")
    assert np.allclose(np.abs(np.sum(exact * rand, axis=0)), 1.0, atol=1e-6)
    assert np.allclose(rand, exact, atol=1e-3)  # same signs too: the largest entry of each is positive
    with pytest.raises(ConfigError, match="unknown PCA method"):
        principal_components(X, mean, 8, method="magic")
    with pytest.raises(ConfigError, match="70 bits need at least 70 feature dimensions"):
        principal_components(X, mean, 70)


def test_itq_rotation_is_orthogonal_and_loss_falls(X):
    h = ITQHasher(bits=16, seed=0, iterations=30).fit(X)
    R = h.rotation
    assert R.shape == (16, 16)
    assert np.allclose(R.T @ R, np.eye(16), atol=1e-10) and np.allclose(R @ R.T, np.eye(16), atol=1e-10)
    loss = np.array(h.quantization_loss)
    assert len(loss) == 31 and np.all(np.diff(loss) <= 1e-9 * loss[0])
    assert loss[-1] < 0.95 * loss[0]
    assert h.history["quantization_loss"] == [round(x, 6) for x in h.quantization_loss]
    pca = PCAHasher(bits=16, seed=0).fit(X)
    assert np.allclose(h.projection, pca.projection @ R)  # ITQ = PCA directions, rotated
    # ITQ loses less to quantization than plain PCA-sign on the same projections
    V = project(X, pca.mean, pca.projection)
    _, pca_loss = itq_rotation(V, 0, np.random.default_rng(0))
    assert loss[-1] < np.square(np.where(V > 0, 1, -1) - V).sum() / len(V)
    assert len(pca_loss) == 1


def test_itq_rotation_on_its_own():
    V = np.random.default_rng(1).normal(size=(500, 8))
    R, losses = itq_rotation(V, 20, np.random.default_rng(2))
    assert np.allclose(R.T @ R, np.eye(8), atol=1e-10)
    B = np.where(V @ R > 0, 1.0, -1.0)
    assert np.isclose(losses[-1], np.square(B - V @ R).sum() / 500)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(losses))


def test_pca_sign_separates_two_clusters():
    X, labels = two_clusters()
    h = PCAHasher(bits=8).fit(X)
    first_bit = (h.logits(X)[:, 0] > 0).astype(int)
    assert np.array_equal(first_bit, labels) or np.array_equal(first_bit, 1 - labels)
    for hasher in (h, ITQHasher(bits=8).fit(X)):  # codes are nearer within a cluster than across
        bits = np.unpackbits(hasher.encode(X), axis=1).astype(int)
        dist = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
        same = labels[:, None] == labels[None, :]
        assert dist[same].mean() + 1.0 < dist[~same].mean()


def test_errors(tmp_path, X):
    with pytest.raises(ModelError, match="the lsh hasher is not fitted yet"):
        LSHHasher(bits=8).logits(X)
    with pytest.raises(ModelError, match="the pca hasher is not fitted yet"):
        PCAHasher(bits=8).save(tmp_path)
    with pytest.raises(ModelError, match="features have 7 dimensions, the model expects 40"):
        LSHHasher(bits=8).fit(X).logits(X[:, :7])
    with pytest.raises(ModelError, match="at least 2 training items"):
        LSHHasher(bits=8).fit(X[:1])
    with pytest.raises(ModelError, match="NaN or infinite"):
        LSHHasher(bits=8).fit(np.full((3, 2), np.nan))
    with pytest.raises(ModelError, match="2-D"):
        LSHHasher(bits=8).fit(np.zeros(5))
    with pytest.raises(ConfigError, match="bits must be a positive multiple of 8"):
        ITQHasher(bits=12)
    with pytest.raises(ConfigError, match="seed must be from 0 to 4294967295"):
        LSHHasher(bits=8, seed=-1)
    with pytest.raises(ConfigError, match="ITQ iterations"):
        ITQHasher(bits=8, iterations=-5)
    with pytest.raises(ConfigError, match="48 bits need at least 48 feature dimensions"):
        ITQHasher(bits=48).fit(X)
    with pytest.raises(ModelError, match="cannot load the itq hasher from"):
        ITQHasher.load(tmp_path)  # nothing there
    PCAHasher(bits=8).fit(X).save(tmp_path)
    with pytest.raises(ModelError, match="it holds a 'pca' hasher"):
        ITQHasher.load(tmp_path)
    np.save(tmp_path / "projection.npy", np.zeros((40, 16)))
    with pytest.raises(ModelError, match="do not fit 8 bits"):
        PCAHasher.load(tmp_path)


def test_registry():
    assert HASHERS == ("ae", "itq", "pca", "lsh", "rank")
    assert hasher_class("lsh") is LSHHasher and hasher_class("pca") is PCAHasher
    assert hasher_class("itq") is ITQHasher


def test_model_with_a_baseline_saves_and_loads(tmp_path, vector_docs):
    docs = vector_docs(120, dim=16)
    batch = Batch(ids=[d["id"] for d in docs], vectors=np.array([d["vector"] for d in docs], dtype=np.float32),
                  labels=[(d["label"],) for d in docs], payloads=[{} for _ in docs])
    model = Model.fit(batch, ITQHasher(bits=8, seed=4), progress=False)
    model.save(tmp_path / "m")
    loaded = Model.load(tmp_path / "m")
    assert isinstance(loaded.hasher, ITQHasher)
    assert loaded.info["hasher"] == {"name": "itq", "bits": 8, "seed": 4, "pca_method": "auto", "iterations": 50}
    assert len(loaded.info["history"]["quantization_loss"]) == 51
    assert np.array_equal(loaded.encode(batch), model.encode(batch))


@pytest.mark.parametrize("name", ["itq", "lsh"])
def test_cli_train_and_index_with_a_baseline(name, tmp_path, topic_docs, write_jsonl):
    corpus = write_jsonl(tmp_path / "docs.jsonl", topic_docs(60, seed=1))
    runner = CliRunner()
    result = runner.invoke(main, ["train", str(corpus), "--hasher", name, "--bits", "16", "--seed", "3",
                                  "--epochs", "999", "-q", "-o", str(tmp_path / "m")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["bits"] == 16 and summary["items"] == 60
    model = Model.load(tmp_path / "m")
    assert model.info["hasher"]["name"] == name and model.info["hasher"]["seed"] == 3
    result = runner.invoke(main, ["index", str(corpus), "--hasher", name, "--bits", "16", "-q",
                                  "-o", str(tmp_path / "idx")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"] == 60
    result = runner.invoke(main, ["train", str(corpus), "--hasher", "nope"])
    assert result.exit_code == 1 and "'nope' is not one of 'ae', 'itq', 'pca', 'lsh'" in result.output


def test_cli_help_lists_the_hashers():
    result = CliRunner().invoke(main, ["train", "--help"])
    assert "[ae|itq|pca|lsh|rank]" in result.output and "iterative quantization" in result.output


def test_history_records_the_fitting_time(monkeypatch):
    """seconds is the clock's difference across the fit, rounded to milliseconds."""
    import semhash.hashers.baselines as baselines

    ticks = iter([100.0, 101.2346])
    monkeypatch.setattr(baselines.time, "perf_counter", lambda: next(ticks))
    h = baselines.ITQHasher(bits=8, seed=0).fit(np.random.default_rng(0).normal(size=(50, 12)).astype(np.float32))
    assert h.history["seconds"] == 1.235
