"""Distillation of the exact cosine neighbours into a code's logits (torch).

Re-ranking needs an item's exact nearest neighbours among its candidates, which neither ITQ's variance
nor the autoencoder's diffusion targets ask for. For an anchor row and candidates drawn from its exact
neighbours (the nearest, some farther, some at random), the student is the asymmetric score of each
candidate (the anchor's logits against the candidates' relaxed codes, tanh(beta * logits);
semhash.asymmetric). Two losses: "topk" (the default) asks that each of the anchor's 10 nearest outscore
the candidates from rank 50 on, what recall@10 after re-ranking needs, and leaves the order among the 10
and the ranks between free; "soft" (the rank hasher's first loss) fits the softmax of the features'
cosines at a low temperature, every candidate's order included. `finetune` runs Adam on whatever
parameters produce the logits: ITQ's projection (the rank hasher) or the autoencoder's encoder
(TrainConfig.rank_epochs). Dense features only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np

from ..vectors import unit_rows

if TYPE_CHECKING:  # torch is imported by finetune alone: the rank hasher's inference is numpy only
    import torch

NEIGHBOUR_BLOCK = 1 << 24   # (anchor, row) similarities computed at once when finding the neighbours


LOSSES = ("soft", "topk")


class Distill(NamedTuple):
    """The fine-tune's settings: epochs over the anchors, Adam's learning rate, the teacher's temperature,
    anchors drawn, candidates per anchor (its `near` nearest, `middle` from the rest of its `depth` nearest,
    `far` at random), anchors per batch; the loss ("soft": the softmax of the cosines as the teacher;
    "topk": each of the anchor's `positives` nearest against the candidates from rank `negatives_from` on,
    the ones between left out), and those two ranks."""
    epochs: int = 4
    lr: float = 3e-4
    temperature: float = 0.05
    anchors: int = 20_000
    near: int = 50
    middle: int = 50
    far: int = 50
    depth: int = 500
    batch_size: int = 256
    loss: str = "topk"
    positives: int = 10
    negatives_from: int = 50


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


def finetune(X: np.ndarray, logits_of: Callable[[torch.Tensor], torch.Tensor], params: list, s: Distill,
             seed: int, device: torch.device) -> list[float]:
    """Adam on `params` (in place) against the listwise distillation loss; the loss of each epoch.

    X: the dense training rows (n, dim); logits_of: (rows on `device`, m) int64 -> (m, bits) logits."""
    import torch

    rng = np.random.default_rng([seed, 2])
    unit = unit_rows(np.asarray(X, np.float32)).astype(np.float32)
    n = len(unit)
    anchors = rng.choice(n, min(s.anchors, n), replace=False)
    ranked = nearest(unit, anchors, min(s.depth, n - 1))
    Ut = torch.from_numpy(unit).to(device)
    with torch.no_grad():
        first = logits_of(torch.from_numpy(anchors[:1000]).to(device))
    beta = torch.nn.Parameter(torch.tensor(1.0 / (float(first.abs().mean()) or 1.0), device=device))  # sharpness
    tau = torch.nn.Parameter(torch.tensor(0.1, device=device))                                       # the student's
    opt = torch.optim.Adam([*params, beta, tau], lr=s.lr)                                            # temperature
    near, losses = min(s.near, ranked.shape[1]), []
    positives = max(1, min(s.positives, near - 1))
    negatives_from = min(max(s.negatives_from, positives), near)
    for _ in range(s.epochs):
        order, total = rng.permutation(len(anchors)), 0.0
        for start in range(0, len(order), s.batch_size):
            pick = order[start:start + s.batch_size]
            a = torch.from_numpy(anchors[pick]).to(device)
            c = torch.from_numpy(candidates(ranked[pick], near, s.middle, s.far, n, rng)).to(device)
            za = logits_of(a)                                          # (b, bits): the anchors' logits
            zc = logits_of(c.reshape(-1)).reshape(*c.shape, -1)        # (b, c, bits)
            score = torch.einsum("bk,bck->bc", za, torch.tanh(zc * beta)) * beta / za.shape[1]
            score = score / tau.abs().clamp(min=1e-3)
            if s.loss == "topk":
                loss = topk_loss(score, positives, negatives_from)
            else:
                teacher = torch.softmax(torch.einsum("bd,bcd->bc", Ut[a], Ut[c]) / s.temperature, dim=1)
                loss = -(teacher * torch.log_softmax(score, dim=1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(pick)
        losses.append(total / len(order))
    return losses


def topk_loss(score, positives: int, negatives_from: int):
    """Each of the first `positives` candidates (the anchor's nearest) against the candidates from
    `negatives_from` on: the mean over anchors and positives of -log softmax of the positive among itself
    and those negatives. Asks for what recall@k after re-ranking needs, that the true top k outscore the
    rest, and not for their order among themselves."""
    import torch

    pos, neg = score[:, :positives], score[:, negatives_from:]
    both = torch.cat([pos.unsqueeze(2), neg.unsqueeze(1).expand(-1, positives, -1)], dim=2)
    return (torch.logsumexp(both, dim=2) - pos).mean()
