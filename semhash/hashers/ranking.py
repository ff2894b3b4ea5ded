"""The `rank` hasher: ITQ's projection, fine-tuned so that the codes rank each item's nearest neighbours.

ITQ keeps as much of the features' variance as sign() allows; the autoencoder's diffusion targets reward
clusters. Neither asks for what re-ranking needs: that an item's exact nearest neighbours (by cosine on
the features) come first. This hasher starts from ITQ and fine-tunes the projection by distillation of
the neighbours (semhash.hashers.distill). Only the projection is kept, so the hasher is a LinearHasher
like ITQ at inference (no torch). Dense features only.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import ConfigError, ModelError
from .baselines import Features, ITQHasher
from .distill import LOSSES, Distill, candidates, nearest  # noqa: F401  (candidates, nearest: re-exported)


class RankHasher(ITQHasher):
    """ITQ fine-tuned by listwise distillation of the exact cosine neighbours (see the module)."""

    name = "rank"

    def __init__(self, bits: int = 32, seed: int = 0, pca_method: str = "auto", iterations: int = 50,
                 epochs: int = 8, lr: float = 1e-3, temperature: float = 0.05, anchors: int = 20_000,
                 near: int = 50, middle: int = 50, far: int = 50, depth: int = 500, batch_size: int = 256,
                 device: str = "auto", threads: int = 0, loss: str = "topk"):
        super().__init__(bits, seed, pca_method, iterations)
        checks = [(isinstance(epochs, (int, np.integer)) and epochs >= 0, f"epochs must be >= 0, got {epochs!r}"),
                  (lr > 0 and temperature > 0, f"lr and temperature must be > 0, got {lr} and {temperature}"),
                  (min(anchors, near, batch_size) >= 1 and min(middle, far) >= 0 and depth > near,
                   "anchors, near and batch_size must be >= 1, middle and far >= 0, depth > near"),
                  (loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"rank hasher: {message}")
        self.epochs, self.lr, self.temperature = int(epochs), float(lr), float(temperature)
        self.anchors, self.near, self.middle, self.far = int(anchors), int(near), int(middle), int(far)
        self.depth, self.batch_size, self.device, self.threads = int(depth), int(batch_size), device, int(threads)
        self.loss = loss

    def settings(self) -> dict:
        return {**super().settings(), "epochs": self.epochs, "lr": self.lr, "temperature": self.temperature,
                "anchors": self.anchors, "near": self.near, "middle": self.middle, "far": self.far,
                "depth": self.depth, "batch_size": self.batch_size, "device": self.device, "threads": self.threads,
                "loss": self.loss}

    def _fit_projection(self, X: Features) -> np.ndarray:
        import scipy.sparse as sp

        if sp.issparse(X):
            raise ModelError("the rank hasher needs dense vectors (embeddings, images), not sparse TF-IDF rows; "
                             "use --hasher itq or ae for texts")
        W = super()._fit_projection(X)
        if not self.epochs:
            return W
        import torch

        from .distill import finetune
        from .train import cpu_threads, pick_device

        start = time.perf_counter()
        s = Distill(self.epochs, self.lr, self.temperature, self.anchors, self.near, self.middle, self.far,
                    self.depth, self.batch_size, self.loss)
        with cpu_threads(self.threads):
            torch.manual_seed(self.seed)
            device = pick_device(self.device)
            Xt = torch.from_numpy(np.asarray(X, np.float32)).to(device)
            mu = torch.from_numpy(self.mean.astype(np.float32)).to(device)
            proj = torch.nn.Parameter(torch.from_numpy(W.astype(np.float32)).to(device))
            losses = finetune(X, lambda rows: (Xt[rows] - mu) @ proj, [proj], s, self.seed, device)
            W = proj.detach().cpu().numpy().astype(np.float64)
        self.history.update(rank_loss=[round(x, 6) for x in losses],
                            rank_seconds=round(time.perf_counter() - start, 3), rank_anchors=min(self.anchors, len(X)))
        return W

