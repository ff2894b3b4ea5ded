"""semhash.hashers: the binary autoencoder, its training loop, penalties and the AutoencoderHasher."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from semhash.codes import unpack
from semhash.errors import ConfigError, ModelError
from semhash.hashers import hasher_class
from semhash.hashers.ae import AutoencoderHasher
from semhash.hashers.autoencoder import (OUTPUT_TYPES, AEConfig, BinaryAutoencoder, balance_penalty,
                                         decorrelation_penalty, reconstruction_loss)
from semhash.hashers.train import TrainConfig, pick_device, train


def small_cfg(**kw) -> TrainConfig:
    base = dict(epochs=4, batch_size=32, seed=0, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def data(n=200, dim=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, dim)).astype(np.float32)


def fit(X, bits=8, seed=0, output_type="real", **cfg) -> AutoencoderHasher:
    h = AutoencoderHasher(bits=bits, hidden=[32], train_config=small_cfg(seed=seed, **cfg))
    return h.fit(X, output_type=output_type, progress=False)


# --- the module --------------------------------------------------------------------------------

@pytest.mark.parametrize("output_type", OUTPUT_TYPES)
def test_output_shapes(output_type):
    torch.manual_seed(0)
    model = BinaryAutoencoder(AEConfig(input_dim=20, bits=16, hidden=[24, 12], output_type=output_type))
    x = torch.rand(5, 20)
    out, logits, code = model(x)
    assert out.shape == (5, 20)
    assert logits.shape == (5, 16) and code.shape == (5, 16)
    assert ((code >= 0) & (code <= 1)).all()
    assert torch.allclose(code, torch.sigmoid(logits))  # no noise: eval is the default for noise_std 0
    assert model.code_logits(x).shape == (5, 16)
    loss = reconstruction_loss(out, x, output_type)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0


def test_bad_output_type():
    with pytest.raises(ValueError, match="output_type must be one of"):
        BinaryAutoencoder(AEConfig(input_dim=4, output_type="gaussian"))


def test_reconstruction_losses_by_hand():
    x = torch.tensor([[0.0, 1.0]])
    out = torch.tensor([[0.0, 0.0]])
    assert torch.isclose(reconstruction_loss(out, x, "real"), torch.tensor(1.0))
    assert torch.isclose(reconstruction_loss(out, x, "unit"), torch.tensor(2 * np.log(2.0), dtype=torch.float32))
    # distribution: the target puts all weight on term 1, the softmax gives it 1/2
    assert torch.isclose(reconstruction_loss(out, torch.tensor([[0.0, 3.0]]), "distribution"),
                         torch.tensor(np.log(2.0), dtype=torch.float32))


def test_noise_only_in_training_mode():
    torch.manual_seed(0)
    model = BinaryAutoencoder(AEConfig(input_dim=10, bits=8, hidden=[16]))
    x = torch.rand(6, 10)
    model.noise_std = 3.0
    model.eval()
    a, b = model(x), model(x)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    model.train()
    (_, l1, c1), (_, l2, c2) = model(x), model(x)
    assert torch.equal(l1, l2)           # the logits themselves are noise-free
    assert not torch.equal(c1, c2)       # the code activations carry the noise
    assert not torch.allclose(c1, torch.sigmoid(l1))
    model.noise_std = 0.0
    (o1, _, c1), (o2, _, c2) = model(x), model(x)
    assert torch.equal(c1, c2) and torch.equal(o1, o2)


# --- penalties ---------------------------------------------------------------------------------

def test_balance_penalty():
    balanced = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert balance_penalty(balanced).item() == 0.0
    assert balance_penalty(torch.full((4, 3), 0.5)).item() == 0.0
    assert balance_penalty(torch.ones(4, 3)).item() == pytest.approx(0.25)
    assert balance_penalty(torch.zeros(4, 3)).item() == pytest.approx(0.25)
    # one bit always on, one balanced: mean of (0.5^2, 0)
    assert balance_penalty(torch.tensor([[1.0, 0.0], [1.0, 1.0]])).item() == pytest.approx(0.125)


def test_decorrelation_penalty():
    independent = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    assert decorrelation_penalty(independent).item() == pytest.approx(0.0, abs=1e-6)
    same = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    assert decorrelation_penalty(same).item() == pytest.approx(1.0, abs=1e-4)
    opposite = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert decorrelation_penalty(opposite).item() == pytest.approx(1.0, abs=1e-4)
    # three bits, only bits 0 and 1 equal: 2 of the 6 off-diagonal entries are 1
    three = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    assert decorrelation_penalty(three).item() == pytest.approx(2 / 6, abs=1e-4)
    # a constant bit does not blow up
    assert torch.isfinite(decorrelation_penalty(torch.ones(4, 3)))


# --- training ----------------------------------------------------------------------------------

def test_loss_falls_on_tiny_data():
    h = fit(data(), epochs=5)
    hist = h.history
    assert hist["epochs_run"] == 5 and len(hist["train_loss"]) == 5
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist["device"] == "cpu"
    assert hist["noise"] == pytest.approx([4 / 3, 8 / 3, 4.0, 4.0, 4.0])  # ramped over 3 epochs
    assert hist["best_val_loss"] is not None and np.isfinite(hist["best_val_loss"])
    assert len(hist["val_loss"]) == 5


def test_train_on_sparse_distribution_features():
    rng = np.random.default_rng(0)
    X = sp.random(120, 40, density=0.1, format="csr", dtype=np.float32, random_state=0)
    X = X + sp.csr_matrix((np.ones(120, np.float32), (np.arange(120), rng.integers(0, 40, 120))), shape=(120, 40))
    h = AutoencoderHasher(bits=16, hidden=[32], decoder_hidden=[32], train_config=small_cfg(epochs=3))
    h.fit(sp.csr_matrix(X), output_type="distribution", progress=False)
    assert h.encode(X).shape == (120, 2)
    assert h.history["train_loss"][-1] < h.history["train_loss"][0]


def test_texts_default_to_a_linear_decoder_over_the_frequent_words_and_larger_batches():
    from semhash.hashers.ae import TEXT_TARGET_WORDS
    from semhash.hashers.train import auto_batch_size

    X = sp.random(300, 40, density=0.2, format="csr", dtype=np.float32, random_state=1)
    text = fit(X, bits=8, output_type="distribution", epochs=1)
    assert text.model.cfg.decoder_hidden == [] and len(text.model.decoder) == 0
    assert text.describe()["decoder_hidden"] == []
    assert text.model.cfg.target_columns is None  # 40 words: fewer than TEXT_TARGET_WORDS, so all of them
    wide = sp.random(300, TEXT_TARGET_WORDS + 50, density=0.01, format="csr", dtype=np.float32, random_state=1)
    assert len(fit(wide, bits=8, output_type="distribution", epochs=1).model.cfg.target_columns) == TEXT_TARGET_WORDS
    given = AutoencoderHasher(bits=8, hidden=[16], decoder_hidden=[16], target_words=0, train_config=small_cfg(epochs=1))
    given.fit(wide, output_type="distribution", progress=False)
    assert given.model.cfg.decoder_hidden == [16] and given.model.cfg.target_columns is None
    dense = fit(data(), output_type="real", epochs=1)  # other outputs: the mirrored decoder, every column
    assert dense.model.cfg.decoder_hidden is None and dense.model.cfg.target_columns is None
    assert [auto_batch_size(n, "distribution") for n in (100, 20_000, 53_000)] == [32, 400, 1024]
    assert [auto_batch_size(n) for n in (100, 20_000, 53_000)] == [32, 200, 256]


def test_early_stopping():
    # a learning rate of ~0 cannot improve the validation loss after the first judged epoch
    h = fit(data(), epochs=20, lr=1e-12, patience=2, noise_ramp=0)
    assert h.history["stopped_early"] is True
    assert h.history["epochs_run"] == 3


def test_deterministic_on_cpu():
    X = data()
    a, b = fit(X, seed=3), fit(X, seed=3)
    assert np.array_equal(a.logits(X), b.logits(X))
    assert np.array_equal(a.encode(X), b.encode(X))
    assert a.history["train_loss"] == b.history["train_loss"]
    c = fit(X, seed=4)
    assert not np.array_equal(a.logits(X), c.logits(X))


def test_train_seeds_its_own_randomness():
    """train() draws batches and noise from cfg.seed, whatever the global torch RNG state was."""
    X = data(100, 16)
    torch.manual_seed(0)
    m1 = BinaryAutoencoder(AEConfig(input_dim=16, bits=8, hidden=[16]))
    m2 = BinaryAutoencoder(AEConfig(input_dim=16, bits=8, hidden=[16]))
    m2.load_state_dict(m1.state_dict())
    cfg = small_cfg(epochs=2, noise_ramp=0, seed=7)
    torch.manual_seed(123)
    h1 = train(m1, X, cfg, progress=False)
    torch.manual_seed(456)
    h2 = train(m2, X, cfg, progress=False)
    assert h1["train_loss"] == h2["train_loss"]
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert not m1.training  # left in eval mode


def test_codes_shape_and_meaning():
    X = data(50, 64)
    h = fit(X, bits=16, epochs=2)
    codes = h.encode(X)
    assert codes.shape == (50, 2) and codes.dtype == np.uint8
    assert np.array_equal(unpack(codes, 16), (h.logits(X) > 0).astype(np.uint8))
    assert h.logits(X).dtype == np.float32


def test_save_load_identical(tmp_path):
    X = data()
    h = fit(X, bits=16, epochs=2)
    h.save(tmp_path)
    g = AutoencoderHasher.load(tmp_path)
    assert (g.bits, g.hidden, g.dropout) == (16, [32], 0.0)
    assert g.train_config == h.train_config
    assert g.history["train_loss"] == h.history["train_loss"]
    assert not g.model.training
    assert np.array_equal(g.logits(X), h.logits(X))
    assert np.array_equal(g.encode(X), h.encode(X))
    assert g.describe() == h.describe() == {"name": "ae", "bits": 16, "hidden": [32],
                                            "train": h.train_config.to_dict(), "output_type": "real"}


def test_hasher_errors(tmp_path):
    h = AutoencoderHasher(bits=8, hidden=[8])
    with pytest.raises(ModelError, match="not trained yet"):
        h.logits(data(2, 4))
    with pytest.raises(ModelError, match="not trained yet"):
        h.save(tmp_path)
    with pytest.raises(ModelError, match="cannot load the autoencoder from"):
        AutoencoderHasher.load(tmp_path)
    for damaged in (b"garbage", b""):  # not a checkpoint, or an empty file: ModelError, not a raw pickle error
        (tmp_path / "model.pt").write_bytes(damaged)
        with pytest.raises(ModelError, match="cannot load the autoencoder from"):
            AutoencoderHasher.load(tmp_path)
    trained = fit(data(30, 6), epochs=1)
    with pytest.raises(ModelError, match="features have 7 dimensions, the model expects 6"):
        trained.logits(data(3, 7))
    with pytest.raises(ConfigError, match="bits must be a positive multiple of 8"):
        AutoencoderHasher(bits=12)
    assert hasher_class("ae") is AutoencoderHasher
    with pytest.raises(ConfigError, match="unknown hasher 'nope'; choose one of: ae, itq, pca, lsh"):
        hasher_class("nope")


# --- configuration and devices -----------------------------------------------------------------

@pytest.mark.parametrize("kw,msg", [
    (dict(epochs=0), "epochs must be at least 1"),
    (dict(batch_size=-1), "batch size must be at least 1 (or 0 for automatic)"),
    (dict(lr=0), "learning rate must be positive"),
    (dict(lr=-1e-3), "learning rate must be positive"),
    (dict(noise=-1), "noise must be >= 0"),
    (dict(noise_ramp=-1), "noise ramp must be >= 0"),
    (dict(balance=-0.1), "penalty weights must be >= 0"),
    (dict(decorrelation=-0.1), "penalty weights must be >= 0"),
    (dict(val_fraction=1.0), "validation fraction must be in [0, 1)"),
    (dict(val_fraction=-0.1), "validation fraction must be in [0, 1)"),
    (dict(patience=0), "patience must be at least 1"),
    (dict(device="tpu"), "device must be auto, cpu, cuda or mps, got 'tpu'"),
])
def test_train_config_validation(kw, msg):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kw)
    assert str(e.value) == msg


def test_train_config_accepts_cuda_index():
    assert TrainConfig(device="cuda:1").device == "cuda:1"
    assert TrainConfig().to_dict()["epochs"] is None  # automatic: 30, texts 10
    assert TrainConfig(epochs=12).to_dict()["epochs"] == 12


def test_pick_device_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError) as e:
            pick_device(name)
        assert str(e.value) == "--device cuda was asked for, but no CUDA GPU is available; use --device cpu or auto"
    assert pick_device("cpu") == torch.device("cpu")
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        assert pick_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="Apple MPS is not available"):
            pick_device("mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_train_on_cuda_without_cuda_fails_before_training():
    model = BinaryAutoencoder(AEConfig(input_dim=4, bits=8, hidden=[4]))
    with pytest.raises(ConfigError, match="no CUDA GPU is available"):
        train(model, data(10, 4), TrainConfig(device="cuda"), progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_train_on_gpu():
    X = data(300, 64)
    h = AutoencoderHasher(bits=16, hidden=[64], train_config=TrainConfig(epochs=3, batch_size=64, device="cuda"))
    h.fit(X, output_type="unit", progress=False)
    assert h.history["device"].startswith("cuda")
    assert next(h.model.parameters()).device.type == "cpu"  # moved back for inference and saving
    codes = h.encode(X)
    assert codes.shape == (300, 2) and codes.dtype == np.uint8
    assert all(np.isfinite(h.history["train_loss"]))
    assert len(np.unique(codes, axis=0)) > 1


# --- the neighbour term ------------------------------------------------------------------------

def test_knn_graph_matches_brute_force_in_the_principal_subspace():
    from semhash.hashers.baselines import column_mean, principal_components, project
    from semhash.hashers.neighbors import knn_graph

    X = data(n=300, dim=20, seed=3)
    graph = knn_graph(X, k=5, dims=8)
    assert graph.shape == (300, 5) and graph.dtype == np.int64
    mean = column_mean(X)
    Y = project(X, mean, principal_components(X, mean, 8))
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    sim = Y @ Y.T
    np.fill_diagonal(sim, -np.inf)
    want = np.argsort(-sim, axis=1, kind="stable")[:, :5]
    assert (graph != np.arange(300)[:, None]).all()  # never its own neighbour
    # the same neighbour sets (float32 vs float64 may swap near-equal similarities at the boundary)
    agree = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(graph.tolist(), want.tolist())])
    assert agree > 0.97
    # sparse input gives the same graph as dense (up to float rounding at the boundary)
    sparse = knn_graph(sp.csr_matrix(X), k=5, dims=8)
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(sparse.tolist(), graph.tolist())]) > 0.97


def test_the_exact_knn_never_makes_a_row_its_own_neighbour_even_among_copies():
    from semhash.ann import knn_inner_product

    rng = np.random.default_rng(0)
    Y = rng.standard_normal((50, 6)).astype(np.float32)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)  # unit rows (as the principal view's): a copy is the nearest
    Y = np.vstack([Y, Y[:10], Y[:10]])  # rows 0-9 have two exact copies each: ties with the row itself
    got = knn_inner_product(Y, 4)
    assert got.shape == (70, 4) and got.dtype == np.int64
    assert (got != np.arange(70)[:, None]).all()
    sim = Y @ Y.T
    np.fill_diagonal(sim, -np.inf)
    want = np.sort(sim, axis=1)[:, ::-1][:, :4]
    assert np.allclose(np.take_along_axis(sim, got, axis=1), want, atol=1e-4)  # the same similarities
    assert {50, 60} <= set(got[0].tolist())  # row 0's copies are its nearest


def test_neighbour_loss_pulls_neighbours_together():
    from semhash.hashers.autoencoder import neighbor_loss

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, generator=gen)
    assert neighbor_loss(z, z, 0.3) < neighbor_loss(z, torch.randn(16, 8, generator=gen), 0.3)


def test_training_with_the_neighbour_term_is_deterministic():
    X = data(n=200)
    a, b = fit(X, neighbors=0.5, n_neighbors=5), fit(X, neighbors=0.5, n_neighbors=5)
    assert np.array_equal(a.encode(X), b.encode(X))
    assert a.history["epochs_run"] == 4
    with pytest.raises(ConfigError, match="penalty weights must be >= 0"):
        TrainConfig(neighbors=-1)


def test_threads_auto_counts_the_idle_cores_and_training_restores_torch(monkeypatch):
    import semhash.hashers.train as train_mod

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert train_mod.auto_threads() == 3  # the user's word first
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(train_mod.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(train_mod.time, "sleep", lambda s: None)
    samples = iter([(1000, 10_000), (1000 + 325, 10_000 + 1000)])  # others kept 2.6 of 8 cores busy
    monkeypatch.setattr(train_mod, "_cpu_jiffies", lambda: next(samples))
    assert train_mod.auto_threads() == 5
    samples = iter([(0, 0), (1000, 1000)])  # every core busy
    monkeypatch.setattr(train_mod, "_cpu_jiffies", lambda: next(samples))
    assert train_mod.auto_threads() == 1  # at least one
    monkeypatch.setattr(train_mod, "_cpu_jiffies", lambda: None)
    assert train_mod.auto_threads() == 8  # nothing to read: every core
    before = torch.get_num_threads()
    with train_mod.cpu_threads(3) as n:
        assert n == 3 and torch.get_num_threads() == 3
    assert torch.get_num_threads() == before


def test_fit_records_its_threads():
    from semhash.hashers.ae import AutoencoderHasher
    from semhash.hashers.train import TrainConfig

    X = np.random.default_rng(0).random((60, 12)).astype(np.float32)
    h = AutoencoderHasher(bits=8, hidden=[8], train_config=TrainConfig(epochs=1, device="cpu", threads=1))
    before = torch.get_num_threads()
    h.fit(X, progress=False)
    assert h.history["threads"] == 1 and torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="threads must be from 0"):
        TrainConfig(threads=-1)


def test_sparse_rows_give_the_same_codes_loss_and_gradients_as_dense_rows():
    """Texts train from sparse rows (rows_to_tensor on the CPU): the first layer and the "distribution" loss
    then follow the non-zeros, with the values of the dense computation."""
    from semhash.hashers.train import rows_to_tensor

    torch.manual_seed(0)
    X = sp.random(64, 500, density=0.03, format="csr", dtype=np.float32, random_state=0)
    model = BinaryAutoencoder(AEConfig(input_dim=500, bits=16, hidden=[32], output_type="distribution",
                                       input_scale=3.0))
    sparse = rows_to_tensor(X, np.arange(64), torch.device("cpu"))
    dense = torch.from_numpy(X.toarray())
    assert sparse.is_sparse and not dense.is_sparse
    grads = []
    for x in (sparse, dense):
        model.zero_grad()
        logits = model.code_logits(x)
        loss = reconstruction_loss(model.decode(torch.sigmoid(logits)), x, "distribution")
        loss.backward()
        grads.append((logits.detach(), loss.item(), model.encoder[0].weight.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    assert grads[0][1] == pytest.approx(grads[1][1], rel=1e-6)
    assert torch.allclose(grads[0][2], grads[1][2], atol=1e-7)


def test_the_first_layer_gives_an_empty_sparse_row_its_bias_as_a_dense_zero_row_does():
    torch.manual_seed(0)
    model = BinaryAutoencoder(AEConfig(input_dim=30, bits=8, hidden=[16], output_type="distribution"))
    dense = torch.rand(5, 30) * (torch.rand(5, 30) < 0.3)
    dense[0] = dense[3] = 0.0  # empty rows first and inside: embedding_bag's offsets must place them
    got, want = model.code_logits(dense.to_sparse().coalesce()), model.code_logits(dense)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got[0], model.code_logits(torch.zeros(1, 30))[0], atol=1e-6)


def test_a_checkpoint_with_the_old_first_layer_layout_loads_with_the_same_codes(tmp_path):
    """Models saved before InputLayer held the first weight as nn.Linear's (width, input_dim), with no
    "layout" key: the loader turns it."""
    from semhash.hashers.ae import FIRST_WEIGHT, WEIGHTS_FILE

    X = data(n=100, dim=20)
    h = fit(X, bits=8, epochs=1)
    h.save(tmp_path)
    ck = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    assert ck["layout"] == 2 and ck["state_dict"][FIRST_WEIGHT].shape == (20, 32)
    del ck["layout"]
    ck["state_dict"][FIRST_WEIGHT] = ck["state_dict"][FIRST_WEIGHT].T.contiguous()
    torch.save(ck, tmp_path / WEIGHTS_FILE)
    assert np.array_equal(AutoencoderHasher.load(tmp_path).encode(X), h.encode(X))


# --- the decoder's width and target (fast text training) ----------------------------------------

def test_frequent_columns_are_the_words_in_most_rows_sorted():
    from semhash.hashers.ae import frequent_columns

    X = sp.csr_matrix(np.array([[1, 0, 2, 0, 1], [0, 0, 3, 0, 1], [1, 0, 1, 5, 0]], dtype=np.float32))
    assert frequent_columns(X, 2) == [0, 2]  # df 2, 0, 3, 1, 2: column 2, then 0 before 4 (a tie)
    assert frequent_columns(X.toarray(), 3) == [0, 2, 4]
    assert frequent_columns(X, 0) is None and frequent_columns(X, 5) is None and frequent_columns(X, 9) is None


def test_a_target_of_some_columns_is_the_same_for_sparse_and_dense_rows():
    torch.manual_seed(0)
    cols = [1, 4, 5, 9]
    model = BinaryAutoencoder(AEConfig(input_dim=12, bits=8, hidden=[16], output_type="distribution",
                                       target_columns=cols))
    dense = torch.rand(6, 12) * (torch.rand(6, 12) < 0.4)
    assert torch.equal(model.target(dense), dense[:, cols])
    sparse = model.target(dense.to_sparse().coalesce())
    assert sparse.shape == (6, 4) and torch.equal(sparse.to_dense(), dense[:, cols])
    out = model(dense)[0]
    assert out.shape == (6, 4)
    assert torch.isclose(reconstruction_loss(out, sparse, "distribution"),
                         reconstruction_loss(out, dense[:, cols], "distribution"))


def test_a_linear_decoder_and_a_word_target_train_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((300, 40)) < 0.15) * rng.random((300, 40)), dtype=np.float32)
    h = AutoencoderHasher(bits=8, hidden=[16], train_config=small_cfg(), decoder_hidden=[], target_words=10)
    h.fit(X, output_type="distribution", progress=False)
    assert h.model.to_output.in_features == 8 and h.model.to_output.out_features == 10
    assert len(h.model.decoder) == 0
    assert h.describe()["decoder_hidden"] == [] and h.describe()["target_words"] == 10
    h.save(tmp_path)
    g = AutoencoderHasher.load(tmp_path)
    assert g.model.cfg.target_columns == h.model.cfg.target_columns and g.model.cfg.decoder_hidden == []
    assert np.array_equal(g.encode(X), h.encode(X))


@pytest.mark.parametrize("kw, msg", [({"decoder_hidden": [0]}, "decoder layers"),
                                     ({"target_words": -1}, "target_words"), ({"target_words": 2.5}, "target_words")])
def test_decoder_options_are_checked(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        AutoencoderHasher(bits=8, **kw)
