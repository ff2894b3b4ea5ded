"""Training options: one description (TrainingOptions) behind the CLI's options, Engine.train and eval."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from semhash.cli import main
from semhash.corpus import Batch
from semhash.engine import Engine
from semhash.errors import ConfigError
from semhash.evalrun import make_hasher
from semhash.hashers.options import TrainingOptions

CLI_ONLY = {"corpus", "output", "quiet", "model_dir", "db_url", "keep_features", "force"}


def cli_training_params(command: str) -> dict:
    return {p.name: p for p in main.commands[command].params if p.name not in CLI_ONLY}


@pytest.mark.parametrize("command", ["train", "index"])
def test_the_cli_training_options_are_the_training_options_with_the_same_defaults(command):
    params = cli_training_params(command)
    fields = {f.name: f for f in dataclasses.fields(TrainingOptions)}
    assert set(params) == set(fields)
    defaults = TrainingOptions()
    for name, p in params.items():
        want = getattr(defaults, name)
        got = TrainingOptions(hidden=p.default).widths() if name == "hidden" else p.default
        assert got == (list(want) if name == "hidden" else want), name


def test_engine_train_takes_every_training_option(vector_docs, write_jsonl, tmp_path):
    docs = vector_docs(80, seed=2)
    batch = Batch(ids=[d["id"] for d in docs], vectors=np.array([d["vector"] for d in docs], np.float32))
    options = dict(bits=16, hasher="ae", epochs=2, batch_size=16, lr=2e-3, noise=3.0, hidden=[24, 12],
                   neighbors=0.1, temperature=0.5, diffusion=0.2, diffusion_time=7.0, corruption=0.1,
                   input_noise=0.05, sparsity=0.2, sparsity_target=0.4, contractive=0.01, variational=0.1,
                   rank_epochs=2, device="cpu", seed=3,
                   threads=1, max_features=50, standardize=True, train_sample=60, featurizer="tfidf")
    assert set(options) == {f.name for f in dataclasses.fields(TrainingOptions)}
    engine = Engine.train(write_jsonl(tmp_path / "c.jsonl", docs), progress=False, **options)
    assert engine.model.info["trained_on"] == 60  # a sample of the 80 records
    h = engine.model.hasher
    cfg = h.train_config
    assert (h.bits, h.hidden) == (16, [24, 12])
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.noise, cfg.neighbors, cfg.temperature, cfg.diffusion,
            cfg.diffusion_time, cfg.device, cfg.seed, cfg.threads) == (2, 16, 2e-3, 3.0, 0.1, 0.5, 0.2, 7.0,
                                                                        "cpu", 3, 1)
    assert (cfg.corruption, cfg.input_noise, cfg.sparsity, cfg.sparsity_target, cfg.contractive,
            cfg.variational, cfg.rank_epochs) == (0.1, 0.05, 0.2, 0.4, 0.01, 0.1, 2)
    assert len(h.history["rank"]["loss"]) == 2
    assert engine.model.featurizer.standardize is True and engine.model.featurizer.mean is not None
    assert Engine.train(batch, progress=False, bits=8, hasher="itq").model.bits == 8
    with pytest.raises(ConfigError, match="unknown training option epoch; the options are: bits, hasher"):
        Engine.train(batch, epoch=3)
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        Engine.train(batch, epochs=0)
    with pytest.raises(ConfigError, match="--train-sample must be 0 .every record. or a positive count, got -1"):
        Engine.train(tmp_path / "c.jsonl", hasher="itq", train_sample=-1)


def test_eval_builds_its_hashers_from_the_same_options():
    h = make_hasher("ae", 16, seed=4, ae_options={"epochs": 3, "hidden": [8], "balance": 0.5, "dropout": 0.1})
    assert (h.bits, h.hidden, h.dropout) == (16, [8], 0.1)
    assert (h.train_config.epochs, h.train_config.seed, h.train_config.balance) == (3, 4, 0.5)
    assert make_hasher("lsh", 24, seed=2).bits == 24
    with pytest.raises(ConfigError, match="--hidden must be comma-separated integers"):
        TrainingOptions(hidden="8,x").widths()
