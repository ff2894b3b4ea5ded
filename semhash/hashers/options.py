"""Training options: the one description of how a model is trained, for the CLI, Engine.train and eval.

`TrainingOptions` holds every option `semhash train` / `semhash index` take (the hasher and its code
length, the autoencoder's training, the featurizer's settings), with the defaults all of them use;
`make_hasher` builds the untrained hasher they describe. The baselines use only bits and seed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from ..errors import ConfigError
from . import HASHERS, hasher_class
from .base import Hasher


@dataclass
class TrainingOptions:
    bits: int = 32
    hasher: str = "ae"
    epochs: int | None = None    # None: 30, texts 10 (semhash.hashers.train.auto_epochs)
    batch_size: int = 0          # 0: about 100 steps an epoch, 32 to 256 items a batch (texts: 50, to 1,024)
    lr: float = 1e-3
    noise: float = 4.0
    hidden: Sequence[int] | str = (256,)   # encoder widths (the decoder mirrors them; texts: linear); "512,256" as text
    neighbors: float = 0.0
    temperature: float = 0.3
    diffusion: float | None = None  # None: 1 for texts, 0.3 otherwise (semhash.hashers.diffusion.WALKS)
    diffusion_time: float | None = None
    corruption: float = 0.0      # the autoencoder family: see semhash.hashers.train.TrainConfig
    input_noise: float = 0.0
    sparsity: float = 0.0
    sparsity_target: float = 0.5
    contractive: float = 0.0
    variational: float = 0.0
    rank_epochs: int | None = None  # None: 8 for real vectors, 0 for texts and images (hashers.ae.RANK_EPOCHS)
    device: str = "auto"
    seed: int = 0
    threads: int = 0
    max_features: int = 10000    # texts: vocabulary size
    standardize: bool = False    # vectors: standardize before hashing
    train_sample: int = 100_000  # records drawn (seeded, uniform) from the corpus to fit on; 0: every record
    featurizer: str = "tfidf"    # texts: "tfidf", or "embed:MODEL" (sentence embeddings, semhash[embed])

    @classmethod
    def of(cls, **options) -> "TrainingOptions":
        """From keyword options; an unknown name is a ConfigError listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown training option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                              f"the options are: {', '.join(f.name for f in dataclasses.fields(cls))}")
        return cls(**{k: v for k, v in options.items() if v is not None or k in ("diffusion", "diffusion_time")})

    def widths(self) -> list[int]:
        """The hidden layer widths (from a list, or from text such as "512,256")."""
        hidden = self.hidden
        if isinstance(hidden, str):
            try:
                widths = [int(w) for w in hidden.split(",") if w.strip()]
            except ValueError:
                raise ConfigError(f"--hidden must be comma-separated integers, got {hidden!r}") from None
            if not widths or min(widths) < 1:
                raise ConfigError(f"--hidden needs at least one positive width, got {hidden!r}")
            return widths
        return list(hidden)

    def read_sample(self, corpus, progress: bool = False):
        """(The records to fit on, the corpus's record count): a seeded uniform sample of `train_sample`
        records of a Corpus, read in one validating pass (semhash.corpus.Corpus.sample)."""
        if not isinstance(self.train_sample, int) or isinstance(self.train_sample, bool) or self.train_sample < 0:
            raise ConfigError(f"--train-sample must be 0 (every record) or a positive count, got {self.train_sample}")
        return corpus.sample(self.train_sample, seed=self.seed, progress=progress)

    def feature_options(self) -> dict:
        return {"max_features": self.max_features, "standardize": self.standardize, "featurizer": self.featurizer}

    def make_hasher(self, **more) -> Hasher:
        """The untrained hasher these options describe. `more`: further TrainConfig fields (balance,
        patience, ...) or autoencoder settings (dropout), for experiments."""
        if not isinstance(self.featurizer, str) or not (
                self.featurizer == "tfidf" or (self.featurizer.startswith("embed:") and len(self.featurizer) > 6)):
            raise ConfigError(f"--featurizer must be tfidf or embed:MODEL (a sentence-transformers name or directory), "
                              f"got {self.featurizer!r}")
        if self.hasher not in HASHERS:
            raise ConfigError(f"unknown hasher {self.hasher!r}; choose one of: {', '.join(HASHERS)}")
        cls = hasher_class(self.hasher)
        if self.hasher != "ae":
            return cls(bits=self.bits, seed=self.seed)
        from .train import TrainConfig

        train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, noise=self.noise,
                          device=self.device, seed=self.seed, neighbors=self.neighbors, temperature=self.temperature,
                          diffusion=self.diffusion, diffusion_time=self.diffusion_time, threads=self.threads,
                          corruption=self.corruption, input_noise=self.input_noise, sparsity=self.sparsity,
                          sparsity_target=self.sparsity_target, contractive=self.contractive,
                          variational=self.variational, rank_epochs=self.rank_epochs,
                          **{k: v for k, v in more.items() if k in train_fields})
        try:
            return cls(bits=self.bits, hidden=self.widths(), train_config=cfg,
                       **{k: v for k, v in more.items() if k not in train_fields})
        except TypeError as e:
            raise ConfigError(f"unknown autoencoder option ({e})") from None
