"""The autoencoder family as options of the one autoencoder: denoising, sparse, contractive, variational, deeper."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from semhash.errors import ConfigError
from semhash.evalrun import make_hasher
from semhash.hashers.ae import AutoencoderHasher
from semhash.hashers.autoencoder import (AEConfig, BinaryAutoencoder, bernoulli_kl, contractive_penalty, corrupt,
                                         jacobian_norm, sparsity_penalty)
from semhash.hashers.train import TrainConfig, rows_to_tensor

FAMILY = dict(corruption=0.2, input_noise=0.1, sparsity=0.5, sparsity_target=0.4, contractive=0.05, variational=0.1)


def data(n=240, dim=24, seed=0) -> np.ndarray:
    """Four seeded clusters in `dim` dimensions."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(4, dim)) * 2
    return (centres[np.arange(n) % 4] + rng.normal(size=(n, dim))).astype(np.float32)


def fit(X, hidden=(16,), bits=8, output_type="real", **cfg) -> AutoencoderHasher:
    base = dict(epochs=4, batch_size=32, seed=0, device="cpu", diffusion=0.0)
    base.update(cfg)
    h = AutoencoderHasher(bits=bits, hidden=list(hidden), train_config=TrainConfig(**base))
    return h.fit(X, output_type=output_type, progress=False)


def code_activations(h: AutoencoderHasher, X) -> torch.Tensor:
    with torch.no_grad():
        return torch.sigmoid(torch.from_numpy(h.logits(X)))


# --- options ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,option", [
    (dict(corruption=1.0), "corruption (--corruption)"), (dict(corruption=-0.1), "corruption (--corruption)"),
    (dict(input_noise=-1.0), "input_noise (--input-noise)"), (dict(sparsity=-1.0), "sparsity (--sparsity)"),
    (dict(sparsity_target=0.0), "sparsity_target (--sparsity-target)"),
    (dict(sparsity_target=1.0), "sparsity_target (--sparsity-target)"),
    (dict(contractive=-0.5), "contractive (--contractive)"), (dict(variational=-0.1), "variational (--variational)"),
])
def test_bad_values_are_refused_naming_the_option(kw, option):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kw)
    assert str(e.value).startswith(option) and str(list(kw.values())[0]) in str(e.value)


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_non_finite_values_are_refused(name):
    with pytest.raises(ConfigError, match=f"{name} must be a finite number, got nan"):
        TrainConfig(**{name: float("nan")})


def test_the_options_pass_through_eval_and_the_training_options():
    h = make_hasher("ae", 16, seed=2, ae_options=dict(FAMILY, epochs=2))
    assert {k: getattr(h.train_config, k) for k in FAMILY} == FAMILY
    with pytest.raises(ConfigError, match="sparsity_target"):
        make_hasher("ae", 16, ae_options={"sparsity_target": 2.0})


def test_input_noise_on_sparse_features_is_refused():
    X = sp.random(60, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
    with pytest.raises(ConfigError, match="--input-noise adds Gaussian noise to dense vectors; .* use --corruption"):
        fit(X, output_type="distribution", input_noise=0.1)


# --- the pieces ---------------------------------------------------------------------------------------------

def test_corrupt_masks_a_share_and_adds_noise():
    torch.manual_seed(0)
    x = torch.ones(200, 50)
    masked = corrupt(x, share=0.3)
    assert set(masked.unique().tolist()) == {0.0, 1.0}
    assert abs(float((masked == 0).float().mean()) - 0.3) < 0.03
    noisy = corrupt(x, noise_std=0.5)
    assert abs(float((noisy - x).std()) - 0.5) < 0.03
    assert corrupt(x) is x
    s = torch.eye(100).to_sparse().coalesce()  # word dropout drops stored entries, the rest stay as they were
    dropped = corrupt(s, share=0.5)
    assert dropped.is_sparse and 30 < dropped._nnz() < 70 and torch.all(dropped.values() == 1)


def test_sparsity_penalty_is_zero_at_the_target_only():
    at = torch.full((10, 4), 0.3)
    assert float(sparsity_penalty(at, 0.3)) == pytest.approx(0.0, abs=1e-6)
    assert float(sparsity_penalty(at, 0.5)) == pytest.approx(0.5 * np.log(0.5 / 0.3) + 0.5 * np.log(0.5 / 0.7))


def test_bernoulli_kl_is_zero_at_one_half_and_log_two_when_saturated():
    assert float(bernoulli_kl(torch.zeros(5, 8))) == pytest.approx(0.0, abs=1e-7)
    assert float(bernoulli_kl(torch.full((5, 8), 100.0))) == pytest.approx(np.log(2), abs=1e-6)


def test_contractive_penalty_estimates_the_jacobian_norm():
    torch.manual_seed(0)
    model = BinaryAutoencoder(AEConfig(input_dim=12, bits=8, hidden=[10])).eval()
    x = torch.randn(40, 12)
    exact = jacobian_norm(model, x)
    estimate = np.mean([contractive_penalty(model, x, probes=50).item() for _ in range(4)])
    assert exact > 0 and estimate == pytest.approx(exact, rel=0.1)


# --- each variant trains, and does what it should ----------------------------------------------------------------

def test_defaults_are_the_model_of_before():
    X = data()
    a, b = fit(X), fit(X, **{k: 0.0 for k in FAMILY if k != "sparsity_target"}, sparsity_target=0.5)
    assert np.array_equal(a.logits(X), b.logits(X))


def test_denoising_corrupts_in_training_only():
    X = data()
    h = fit(X, corruption=0.3, input_noise=0.2)
    assert h.history["train_loss"][-1] < h.history["train_loss"][0]
    assert not np.array_equal(h.logits(X), fit(X).logits(X))  # training saw other inputs
    assert np.array_equal(h.logits(X), h.logits(X))  # encoding is not corrupted


def test_sparse_moves_mean_activations_toward_the_target():
    X = data()
    target = 0.2
    plain = dict(balance=0.0, noise=0.0, lr=1e-2, epochs=6)  # no noise: the codes trained are the codes measured
    without = code_activations(fit(X, **plain), X).mean(dim=0)
    with_ = code_activations(fit(X, **plain, sparsity=1.0, sparsity_target=target), X).mean(dim=0)
    assert float((without - target).abs().mean()) > 0.2
    assert float((with_ - target).abs().mean()) < 0.4 * float((without - target).abs().mean())


def test_contractive_lowers_the_jacobian_norm():
    X = data()
    x = rows_to_tensor(X, np.arange(64), torch.device("cpu"))
    without, with_ = fit(X, noise=0.0, lr=1e-2), fit(X, noise=0.0, lr=1e-2, contractive=1.0)
    assert np.isfinite(with_.history["train_loss"]).all()
    assert jacobian_norm(with_.model, x) < 0.5 * jacobian_norm(without.model, x)


def test_variational_codes_are_stochastic_in_training_and_deterministic_when_encoding():
    X = data()
    h = fit(X, noise=0.0, variational=0.1)
    assert h.model.stochastic
    assert h.history["train_loss"][-1] < h.history["train_loss"][0]
    x = torch.from_numpy(X[:64])
    h.model.train()
    torch.manual_seed(1)
    _, logits, code1 = h.model(x)
    _, _, code2 = h.model(x)
    assert set(code1.detach().unique().tolist()) <= {0.0, 1.0} and not torch.equal(code1, code2)
    code1.sum().backward()  # the straight-through gradient reaches the encoder
    assert h.model.to_code.weight.grad is not None and h.model.to_code.weight.grad.abs().sum() > 0
    h.model.eval()
    assert np.array_equal(h.encode(X), h.encode(X))
    assert not fit(X, noise=0.0).model.stochastic


def test_text_features_train_with_every_option_but_input_noise():
    rng = np.random.default_rng(0)
    X = sp.random(150, 40, density=0.1, format="csr", dtype=np.float32, random_state=0)
    X = sp.csr_matrix(X + sp.csr_matrix((np.ones(150, np.float32), (np.arange(150), rng.integers(0, 40, 150))),
                                        shape=(150, 40)))
    options = {k: v for k, v in FAMILY.items() if k != "input_noise"}
    h = fit(X, bits=16, output_type="distribution", epochs=3, **options)
    assert np.isfinite(h.history["train_loss"]).all() and h.encode(X).shape == (150, 2)


def test_save_load_with_every_option_and_a_deeper_encoder(tmp_path):
    X = data()
    h = fit(X, hidden=(24, 16, 12), bits=16, epochs=3, **FAMILY)
    h.save(tmp_path)
    g = AutoencoderHasher.load(tmp_path)
    assert g.hidden == [24, 16, 12] and len(g.model.encoder) == len(h.model.encoder) == 6
    assert g.train_config == h.train_config
    assert {k: getattr(g.train_config, k) for k in FAMILY} == FAMILY
    assert np.array_equal(g.logits(X), h.logits(X)) and np.array_equal(g.encode(X), h.encode(X))


# --- the command line ----------------------------------------------------------------------------------------

def test_the_cli_trains_with_the_options_and_refuses_bad_ones(tmp_path, topic_docs, write_jsonl):
    from click.testing import CliRunner

    from semhash.cli import main
    from semhash.model import Model

    corpus = write_jsonl(tmp_path / "docs.jsonl", topic_docs(40, seed=6))
    fast = ["--epochs", "2", "--bits", "16", "--hidden", "32,16", "--device", "cpu", "-q"]
    options = ["--corruption", "0.2", "--sparsity", "0.5", "--sparsity-target", "0.4", "--contractive", "0.05",
               "--variational", "0.1"]
    result = CliRunner().invoke(main, ["train", str(corpus), *fast, "-o", str(tmp_path / "m"), *options])
    assert result.exit_code == 0, result.output
    cfg = Model.load(tmp_path / "m").hasher.train_config
    assert (cfg.corruption, cfg.input_noise, cfg.sparsity, cfg.sparsity_target, cfg.contractive,
            cfg.variational) == (0.2, 0.0, 0.5, 0.4, 0.05, 0.1)
    bad = CliRunner().invoke(main, ["train", str(corpus), *fast, "-o", str(tmp_path / "m2"), "--sparsity-target", "1"])
    assert bad.exit_code == 1 and bad.stderr == ("Error: sparsity_target (--sparsity-target) is a mean activation: "
                                                 "strictly between 0 and 1; got 1.0\n")
    texts = CliRunner().invoke(main, ["train", str(corpus), *fast, "-o", str(tmp_path / "m3"), "--input-noise", "0.1"])
    assert texts.exit_code == 1 and "for sparse (text) features use --corruption" in texts.stderr


def test_eval_passes_the_options_to_the_autoencoder(tmp_path, topic_docs, write_jsonl, monkeypatch):
    from click.testing import CliRunner

    import semhash.evalrun
    from semhash.cli import main

    seen = {}

    def fake_run(*args, ae_options=None, **kwargs):
        seen.update(ae_options)
        raise ConfigError("stop here")
    monkeypatch.setattr(semhash.evalrun, "run_evaluation", fake_run)
    corpus = write_jsonl(tmp_path / "docs.jsonl", topic_docs(40, seed=6))
    result = CliRunner().invoke(main, ["eval", str(corpus), "-q", "--query-count", "5", "--variational", "0.2",
                                       "--corruption", "0.1"])
    assert result.exit_code == 1 and result.stderr == "Error: stop here\n"
    assert (seen["variational"], seen["corruption"], seen["sparsity"]) == (0.2, 0.1, None)  # None: the default


# --- neighbour distillation after training (rank_epochs) ---------------------------------------------------

def test_rank_epochs_move_the_encoder_alone_and_lower_the_distillation_loss():
    X = data(n=400)
    plain, tuned = fit(X, epochs=3, rank_epochs=0), fit(X, epochs=3, rank_epochs=6, rank_lr=3e-3)
    assert "rank" not in plain.history
    losses = tuned.history["rank"]["loss"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    before, after = plain.model.state_dict(), tuned.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {k for k in before if k.startswith(("encoder.", "to_code."))}  # the decoder is left alone
    assert not tuned.model.training and np.array_equal(tuned.encode(X), tuned.encode(X))


def test_rank_epochs_on_sparse_features_and_bad_values_are_refused():
    X = sp.random(60, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
    with pytest.raises(ConfigError, match="rank_epochs distils the exact cosine neighbours of dense vectors"):
        fit(X, output_type="distribution", rank_epochs=1)
    for kw in (dict(rank_epochs=-1), dict(rank_epochs=1.5), dict(rank_lr=0.0), dict(rank_temperature=-1.0)):
        with pytest.raises(ConfigError, match="rank_"):
            TrainConfig(**kw)


def test_real_vectors_distil_by_default_images_and_texts_do_not():
    from semhash.hashers.ae import RANK_EPOCHS

    X = data(n=200)
    assert len(fit(X, epochs=2).history["rank"]["loss"]) == RANK_EPOCHS["real"]
    assert "rank" not in fit(1 / (1 + np.exp(-X)), epochs=2, output_type="unit").history
    texts = sp.random(60, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
    assert "rank" not in fit(texts, epochs=2, output_type="distribution").history
    assert "rank" not in fit(X[:10], epochs=2).history  # too few rows to distil
