"""AutoencoderHasher: the Hasher built on the binary autoencoder and its trainer."""
from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from .. import distributed
from ..errors import ConfigError, ModelError
from .autoencoder import AEConfig, BinaryAutoencoder
from .base import Features, Hasher
from .train import TrainConfig, cpu_threads, pick_device, predict_logits, train

WEIGHTS_FILE = "model.pt"
LAYOUT = 2  # checkpoints: 2 stores the first layer's weight (input_dim, width) (autoencoder.InputLayer)
FIRST_WEIGHT = "encoder.0.weight"
MIN_DIFFUSION_ROWS = 10  # fewer training rows: no graph worth diffusing over, the term is skipped
# epochs of neighbour distillation after training (TrainConfig.rank_epochs None), per output of the autoencoder:
# other real vectors, such as sentence embeddings, whose users re-rank candidates by the vectors themselves
# (chosen on validation splits: README, "Measured results"); images and texts, whose codes follow their kind, none
RANK_EPOCHS = {"real": 8}
MIN_RANK_ROWS = 20  # fewer training rows: too few neighbours to distil, the default skips it
# texts (the "distribution" output), unless told otherwise: a linear decoder that rebuilds only the most
# frequent words. As good as the mirrored decoder over the whole vocabulary on the Debian descriptions, in a
# fraction of the time (README, "How the defaults were chosen").
TEXT_DECODER: list[int] = []
TEXT_TARGET_WORDS = 2000


def input_scale(X: Features) -> float:
    """A factor that brings the mean absolute nonzero input to about 1.

    Without it, sparse TF-IDF rows (entries around 0.05) give the first layer such small outputs
    that the training noise drowns the code and the model learns to ignore it."""
    values = X.data if sp.issparse(X) else np.asarray(X[:10000]).ravel()
    values = np.abs(values[values != 0])
    return float(1.0 / values.mean()) if len(values) else 1.0


def frequent_columns(X: Features, k: int) -> list[int] | None:
    """The k columns (words) non-zero in the most rows, sorted; None (every column) for k = 0 or k at
    least the width. Ties go to the lower column."""
    if not k or k >= X.shape[1]:
        return None
    df = X.getnnz(axis=0) if sp.issparse(X) else np.count_nonzero(np.asarray(X), axis=0)
    return sorted(np.argsort(-df, kind="stable")[:k].tolist())


MAX_LAYERS, MAX_WIDTH = 8, 65_536  # a width of 10^8 would ask for tens of GB before the first batch


class AutoencoderHasher(Hasher):
    name = "ae"

    def __init__(self, bits: int = 32, hidden: list[int] | None = None, train_config: TrainConfig | None = None,
                 dropout: float = 0.0, decoder_hidden: list[int] | None = None, target_words: int | None = None):
        super().__init__(bits)
        self.hidden = list(hidden) if hidden is not None else [256]
        if not 1 <= len(self.hidden) <= MAX_LAYERS or not all(
                isinstance(w, int) and 1 <= w <= MAX_WIDTH for w in self.hidden):
            raise ConfigError(f"hidden layers must be 1 to {MAX_LAYERS} widths from 1 to {MAX_WIDTH:,}, "
                              f"got {self.hidden}")
        self.decoder_hidden = None if decoder_hidden is None else list(decoder_hidden)
        if self.decoder_hidden is not None and (len(self.decoder_hidden) > MAX_LAYERS or not all(
                isinstance(w, int) and 1 <= w <= MAX_WIDTH for w in self.decoder_hidden)):
            raise ConfigError(f"decoder layers must be 0 to {MAX_LAYERS} widths from 1 to {MAX_WIDTH:,}, "
                              f"got {self.decoder_hidden}")
        if target_words is not None and (
                not isinstance(target_words, int) or isinstance(target_words, bool) or target_words < 0):
            raise ConfigError(f"target_words must be 0 (every word) or a positive count, got {target_words!r}")
        self.target_words = target_words
        self.dropout = dropout
        self.train_config = train_config or TrainConfig()
        self.model: BinaryAutoencoder | None = None
        self.history: dict = {}

    def fit(self, X: Features, output_type: str = "real", progress: bool = True) -> "AutoencoderHasher":
        with cpu_threads(self.train_config.threads) as threads:
            self._fit(X, output_type, progress)
        self.history["threads"] = threads
        return self

    def decoder_for(self, output_type: str) -> tuple[list[int] | None, int]:
        """(decoder widths, words rebuilt) for this output: the ones given, else the text defaults for texts
        (TEXT_DECODER, TEXT_TARGET_WORDS), the mirrored decoder over every column otherwise."""
        text = output_type == "distribution"
        decoder = self.decoder_hidden if self.decoder_hidden is not None else (list(TEXT_DECODER) if text else None)
        words = self.target_words if self.target_words is not None else (TEXT_TARGET_WORDS if text else 0)
        return decoder, words if text else 0

    def _fit(self, X: Features, output_type: str, progress: bool) -> None:
        decoder, words = self.decoder_for(output_type)
        cfg = AEConfig(input_dim=X.shape[1], bits=self.bits, hidden=self.hidden, output_type=output_type,
                       dropout=self.dropout, input_scale=input_scale(X), decoder_hidden=decoder,
                       target_columns=frequent_columns(X, words))
        torch.manual_seed(self.train_config.seed)  # weight init is part of what the seed fixes
        self.model = BinaryAutoencoder(cfg)
        graph = targets = None
        tc = self.train_config
        use_diffusion = (tc.diffusion is None or tc.diffusion > 0) and X.shape[0] >= MIN_DIFFUSION_ROWS
        shared = distributed.active()
        if shared and tc.neighbors:
            raise ConfigError("the neighbour term (--neighbors) does not work with distributed training yet; "
                              "train on one process, or without it")
        if shared and tc.contractive:
            raise ConfigError("the contractive term (--contractive) does not work with distributed training yet; "
                              "train on one process, or without it")
        if shared and tc.rank_epochs:
            raise ConfigError("the neighbour distillation (rank_epochs) does not work with distributed training yet; "
                              "train on one process, or without it")
        rank_epochs = tc.rank_epochs
        if rank_epochs is None:  # the default for the data: never where it cannot run
            dense_enough = not sp.issparse(X) and X.shape[0] >= MIN_RANK_ROWS and not shared
            rank_epochs = RANK_EPOCHS.get(output_type, 0) if dense_enough else 0
        if rank_epochs and sp.issparse(X):
            raise ConfigError("rank_epochs distils the exact cosine neighbours of dense vectors (embeddings, "
                              "images), not of sparse TF-IDF rows")
        if tc.input_noise and sp.issparse(X):
            raise ConfigError("--input-noise adds Gaussian noise to dense vectors; for sparse (text) features use "
                              "--corruption, which drops a share of each row's words")
        if (tc.neighbors or use_diffusion) and distributed.rank() == 0:  # once, then shared with the others
            from .neighbors import knn_graph, principal_view
            if progress:
                print(f"neighbour graph of {X.shape[0]:,} rows" + (" and its diffusion codes" if use_diffusion else "")
                      + " ...", file=sys.stderr, flush=True)
            from .diffusion import default_walk, diffusion_codes
            walk = default_walk(output_type)._replace(  # the settings given, the defaults for this data otherwise
                **{k: v for k, v in (("n_neighbors", tc.n_neighbors), ("time", tc.diffusion_time),
                                     ("shared", tc.shared_neighbors), ("dims", tc.graph_dims),
                                     ("power", tc.graph_power), ("whiten", tc.graph_whiten),
                                     ("mix", tc.diffusion_mix)) if v is not None})
            view = principal_view(X, walk.dims, seed=tc.seed, power=walk.power, whiten=walk.whiten)
            graph = knn_graph(X, walk.n_neighbors, seed=tc.seed, view=view, device=pick_device(tc.device))
            if use_diffusion:
                targets = diffusion_codes(graph, self.bits, walk.time, seed=tc.seed, view=view,
                                          mix=walk.mix, shared=walk.shared)
        if shared and use_diffusion:
            targets = distributed.share(targets, np.float32)
        self.history = train(self.model, X, tc, progress=progress, neighbors=graph, targets=targets)
        if rank_epochs:
            self.history["rank"] = self._distill(X, rank_epochs, progress)
        self.model.to("cpu")  # inference and saving happen on the CPU unless asked otherwise

    def _distill(self, X: Features, epochs: int, progress: bool) -> dict:
        """`epochs` (TrainConfig.rank_epochs, or RANK_EPOCHS) of distillation of the exact cosine neighbours
        into the encoder (semhash.hashers.distill), after training: the encoder and code layer move, the
        decoder is left as it is (inference never uses it). The model stays in eval mode: no noise, no dropout."""
        from .distill import Distill, finetune

        tc, model = self.train_config, self.model
        device = next(model.parameters()).device
        if progress:
            print(f"distilling the neighbours of {X.shape[0]:,} rows ({epochs} epochs) ...",
                  file=sys.stderr, flush=True)
        started = time.perf_counter()
        model.eval()
        Xt = torch.from_numpy(np.asarray(X, np.float32)).to(device)
        params = [*model.encoder.parameters(), *model.to_code.parameters()]
        settings = Distill(epochs=epochs, lr=tc.rank_lr, temperature=tc.rank_temperature, loss=tc.rank_loss)
        losses = finetune(X, lambda rows: model.code_logits(Xt[rows]), params, settings, tc.seed, device)
        return {"loss": [round(x, 6) for x in losses], "seconds": round(time.perf_counter() - started, 3)}

    def logits(self, X: Features) -> np.ndarray:
        if self.model is None:
            raise ModelError("the autoencoder is not trained yet")
        if X.shape[1] != self.model.cfg.input_dim:
            raise ModelError(f"features have {X.shape[1]} dimensions, the model expects {self.model.cfg.input_dim}")
        return predict_logits(self.model, X)

    def save(self, directory: Path) -> None:
        if self.model is None:
            raise ModelError("the autoencoder is not trained yet")
        checkpoint = {
            "config": self.model.cfg.to_dict(),
            "train": self.train_config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "layout": LAYOUT,
            "history": self.history,
        }
        torch.save(checkpoint, Path(directory) / WEIGHTS_FILE)

    @classmethod
    def load(cls, directory: Path) -> "AutoencoderHasher":
        path = Path(directory) / WEIGHTS_FILE
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
            cfg = AEConfig(**ck["config"])
            model = BinaryAutoencoder(cfg)
            state = ck["state_dict"]
            if ck.get("layout", 1) < 2:  # the first layer was an nn.Linear: weight (width, input_dim)
                state = {**state, FIRST_WEIGHT: state[FIRST_WEIGHT].T.contiguous()}
            model.load_state_dict(state)
            # an extra, missing or mistyped training option in the file is damage too, not a crash
            h = cls(bits=cfg.bits, hidden=cfg.hidden, train_config=TrainConfig(**ck["train"]), dropout=cfg.dropout)
        except (OSError, KeyError, TypeError, RuntimeError, ValueError, EOFError, AttributeError, ConfigError,
                pickle.UnpicklingError) as e:
            raise ModelError(f"cannot load the autoencoder from {path} ({e})") from None
        model.eval()
        h.model, h.history = model, ck.get("history", {})
        return h

    def describe(self) -> dict:
        d = super().describe()
        d.update(hidden=self.hidden, train=self.train_config.to_dict())
        if self.model is not None:
            cfg = self.model.cfg
            d["output_type"] = cfg.output_type
            if cfg.decoder_hidden is not None:  # otherwise the encoder's widths, mirrored
                d["decoder_hidden"] = cfg.decoder_hidden
            if cfg.target_columns is not None:  # otherwise every input column
                d["target_words"] = len(cfg.target_columns)
        return d
