"""The `rank` hasher: ITQ's projection, fine-tuned so that the codes rank each item's nearest neighbours.

ITQ keeps as much of the features' variance as sign() allows; the autoencoder's diffusion targets reward
clusters. Neither asks for what re-ranking needs: that an item's exact nearest neighbours (by cosine on
the features) come first. This hasher starts from ITQ and fine-tunes the projection by listwise
distillation: for an anchor row and candidates drawn from its exact neighbours (the nearest, some
farther, some at random), the softmax of the features' cosines at a low temperature is the teacher,
and the softmax of the asymmetric score (the anchor's logits against the candidates' relaxed codes,
tanh(beta * logits); semhash.asymmetric) the student. Only the projection is kept, so the hasher is
a LinearHasher like ITQ at inference (no torch). Dense features only.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import ConfigError, ModelError
from ..vectors import unit_rows
from .baselines import Features, ITQHasher

NEIGHBOUR_BLOCK = 1 << 24   # (anchor, row) similarities computed at once when finding the neighbours


class RankHasher(ITQHasher):
    """ITQ fine-tuned by listwise distillation of the exact cosine neighbours (see the module)."""

    name = "rank"

    def __init__(self, bits: int = 32, seed: int = 0, pca_method: str = "auto", iterations: int = 50,
                 epochs: int = 4, lr: float = 3e-4, temperature: float = 0.05, anchors: int = 20_000,
                 near: int = 50, middle: int = 50, far: int = 50, depth: int = 500, batch_size: int = 256,
                 device: str = "auto", threads: int = 0):
        super().__init__(bits, seed, pca_method, iterations)
        checks = [(isinstance(epochs, (int, np.integer)) and epochs >= 0, f"epochs must be >= 0, got {epochs!r}"),
                  (lr > 0 and temperature > 0, f"lr and temperature must be > 0, got {lr} and {temperature}"),
                  (min(anchors, near, batch_size) >= 1 and min(middle, far) >= 0 and depth > near,
                   "anchors, near and batch_size must be >= 1, middle and far >= 0, depth > near")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"rank hasher: {message}")
        self.epochs, self.lr, self.temperature = int(epochs), float(lr), float(temperature)
        self.anchors, self.near, self.middle, self.far = int(anchors), int(near), int(middle), int(far)
        self.depth, self.batch_size, self.device, self.threads = int(depth), int(batch_size), device, int(threads)

    def settings(self) -> dict:
        return {**super().settings(), "epochs": self.epochs, "lr": self.lr, "temperature": self.temperature,
                "anchors": self.anchors, "near": self.near, "middle": self.middle, "far": self.far,
                "depth": self.depth, "batch_size": self.batch_size, "device": self.device, "threads": self.threads}

    def _fit_projection(self, X: Features) -> np.ndarray:
        import scipy.sparse as sp

        if sp.issparse(X):
            raise ModelError("the rank hasher needs dense vectors (embeddings, images), not sparse TF-IDF rows; "
                             "use --hasher itq or ae for texts")
        W = super()._fit_projection(X)
        if not self.epochs:
            return W
        start = time.perf_counter()
        rng = np.random.default_rng([self.seed, 2])
        unit = unit_rows(X)
        anchors = rng.choice(len(unit), min(self.anchors, len(unit)), replace=False)
        ranked = nearest(unit, anchors, min(self.depth, len(unit) - 1))
        W, losses = _finetune(unit, np.asarray(X, np.float32), self.mean.astype(np.float32), W.astype(np.float32),
                              anchors, ranked, self, rng)
        self.history.update(rank_loss=[round(x, 6) for x in losses],
                            rank_seconds=round(time.perf_counter() - start, 3), rank_anchors=len(anchors))
        return W


def nearest(unit: np.ndarray, anchors: np.ndarray, depth: int) -> np.ndarray:
    """(len(anchors), depth): each anchor's `depth` nearest other rows of `unit` by cosine, nearest first."""
    out = np.zeros((len(anchors), depth), np.int64)
    step = max(1, NEIGHBOUR_BLOCK // max(1, len(unit)))
    for a in range(0, len(anchors), step):
        rows = anchors[a:a + step]
        sims = unit[rows] @ unit.T
        sims[np.arange(len(rows)), rows] = -np.inf  # not itself
        part = np.argpartition(-sims, depth - 1, axis=1)[:, :depth]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        out[a:a + step] = np.take_along_axis(part, order, 1)
    return out


def _finetune(unit, X, mean, W, anchors, ranked, h: RankHasher, rng) -> tuple[np.ndarray, list[float]]:
    """Adam on the projection W (dim, bits) against the listwise distillation loss; (W, loss per epoch)."""
    import torch

    from .train import cpu_threads, pick_device

    with cpu_threads(h.threads):
        torch.manual_seed(h.seed)
        device = pick_device(h.device)
        Xt, Ut = torch.from_numpy(X).to(device), torch.from_numpy(unit).to(device)
        mu = torch.from_numpy(mean).to(device)
        proj = torch.nn.Parameter(torch.from_numpy(W).to(device))
        scale = float(np.abs((X[anchors[:1000]] - mean) @ W).mean()) or 1.0
        beta = torch.nn.Parameter(torch.tensor(1.0 / scale, device=device))  # sharpness of the relaxed codes
        tau = torch.nn.Parameter(torch.tensor(0.1, device=device))            # the student's temperature
        opt = torch.optim.Adam([proj, beta, tau], lr=h.lr)
        near = min(h.near, ranked.shape[1])
        losses = []
        for _ in range(h.epochs):
            order, total = rng.permutation(len(anchors)), 0.0
            for s in range(0, len(order), h.batch_size):
                pick = order[s:s + h.batch_size]
                cand = candidates(ranked[pick], near, h.middle, h.far, len(X), rng)
                a = torch.from_numpy(anchors[pick]).to(device)
                c = torch.from_numpy(cand).to(device)
                teacher = torch.softmax(torch.einsum("bd,bcd->bc", Ut[a], Ut[c]) / h.temperature, dim=1)
                za = (Xt[a] - mu) @ proj                              # (b, bits): the anchors' logits
                zc = (Xt[c] - mu) @ proj                              # (b, c, bits)
                score = torch.einsum("bk,bck->bc", za, torch.tanh(zc * beta)) * beta / za.shape[1]
                loss = -(teacher * torch.log_softmax(score / tau.abs().clamp(min=1e-3), dim=1)).sum(1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(pick)
            losses.append(total / len(order))
        return proj.detach().cpu().numpy().astype(np.float64), losses


def candidates(ranked: np.ndarray, near: int, middle: int, far: int, n: int, rng) -> np.ndarray:
    """(b, near + middle + far) row indices for each anchor: its `near` nearest, `middle` drawn from the
    rest of its ranked neighbours, `far` drawn from every row."""
    b = len(ranked)
    parts = [ranked[:, :near]]
    if middle and ranked.shape[1] > near:
        parts.append(np.take_along_axis(ranked, rng.integers(near, ranked.shape[1], (b, middle)), 1))
    if far:
        parts.append(rng.integers(0, n, (b, far)))
    return np.concatenate(parts, axis=1)
