"""Diffusion codes: target bits for the autoencoder's code layer, from the training rows' k-NN graph.

Reconstruction teaches the code what an item contains; ranking a whole database by Hamming
distance needs more: items of one kind (one class of clothing, one Debian section) should share
most of their bits, however far apart their raw pixels or words. The k-NN graph of the training
set knows which items are alike, and a random walk on it spreads that knowledge: after t steps
the walk has mixed within a cluster but not yet across clusters. Diffusion-map coordinates (the
top eigenvectors of the graph's normalized adjacency, each scaled by its eigenvalue to the power
t) embed exactly that, and ITQ turns them into balanced bits. The autoencoder learns to predict
these bits from an item's features, which carries them to items outside the training set
(a query), something the graph itself cannot do. No labels are used.

Cost on 60,000 rows, two cores: the k-NN graph (about 4 s, see neighbors.py) plus a sparse
single-precision eigensolve of 64 vectors (about 9 s on the Debian descriptions' graph).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import ArpackNoConvergence, eigsh

from ..errors import ModelError
from .baselines import itq_rotation

EIGENVECTORS = 64  # diffusion coordinates computed (at least `bits`)
ITQ_ITERATIONS = 50
MIN_COMPONENT = 0.01  # share of the graph's nodes a component needs to get diffusion coordinates


class Walk(NamedTuple):
    """The graph and walk settings a TrainConfig leaves at None: neighbours per item in the k-NN graph,
    random-walk steps, the power of the shared-neighbour edge weights (normalized_adjacency), the view the
    graph is built in (neighbors.principal_view: principal dimensions, the power the features are raised
    to first, the whitening exponent), the weight of that view's coordinates beside the diffusion ones
    in the targets (diffusion_codes' mix), and the weight of the target term in the loss (TrainConfig's
    diffusion)."""
    n_neighbors: int
    time: float
    shared: float
    dims: int = 64
    power: float = 1.0
    whiten: float = 0.0
    mix: float = 1.0
    weight: float = 0.3


# measured (README, "How the autoencoder learns" and "Measured results"), per output of the autoencoder:
# texts ("distribution") need a short walk on the plain 10-NN graph in 32 principal dimensions (their LSA
# neighbour graph is noisy: a long walk blurs sections together, shared-neighbour weights did not help, and
# 32 dimensions gave the codes a better validation mAP than 64 for every seed); images and other inputs in
# [0, 1] ("unit") a long walk on the 20-NN graph whose edges weigh (1 + neighbours shared) ** 2, which keeps
# the walk inside dense clusters, built in the square roots of the pixels, 128 principal dimensions half
# whitened (its neighbours share their item's class more often); other real vectors ("real", such as sentence
# embeddings), whose users want each item's nearest neighbours rather than its class, a long walk on the plain
# 10-NN graph of a half-whitened 128-dimensional view, with that view weighing five times the diffusion
# coordinates in the targets. The target term weighs 1 for texts (0.3 otherwise): chosen on validation splits of
# the Debian descriptions, where 1 beat 0.3 on validation mAP + P@100 for every seed at 16, 32 and 64 bits
WALKS = {"distribution": Walk(10, 10.0, 0.0, dims=32, weight=1.0),
         "unit": Walk(20, 300.0, 2.0, dims=128, power=0.5, whiten=0.5),
         "real": Walk(10, 300.0, 0.0, dims=128, whiten=0.5, mix=5.0)}


def default_walk(output_type: str) -> Walk:
    """The graph and walk settings for this kind of data (WALKS; "real" for an output not listed)."""
    return WALKS.get(output_type, WALKS["real"])


def normalized_adjacency(neighbors: np.ndarray, shared: float = 0.0) -> tuple[sp.csr_matrix, np.ndarray]:
    """D^-1/2 W D^-1/2 of the symmetrized k-NN graph, and D^-1/2 (the degrees' inverse roots).

    shared = 0: every edge weighs 1. shared > 0: an edge i-j weighs (1 + s_ij) ** shared, s_ij the number
    of neighbours i and j have in common (shared-nearest-neighbour weights): an edge inside a dense cluster
    is backed by many common neighbours, a stray edge between two clusters by few, so the walk crosses
    between clusters less often."""
    n, k = neighbors.shape
    rows = np.repeat(np.arange(n), k)
    A = sp.csr_matrix((np.ones(n * k), (rows, neighbors.ravel())), shape=(n, n))
    W = ((A + A.T) > 0).astype(np.float64)
    if shared > 0:
        common = (A @ A.T).multiply(W)  # shared neighbours, on the graph's edges only
        W = (W + common).tocsr()
        W.data **= shared
    inv_root = 1.0 / np.sqrt(np.maximum(np.asarray(W.sum(axis=1)).ravel(), 1.0))
    D = sp.diags(inv_root)
    return (D @ W @ D).tocsr(), inv_root


def main_components(A: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(bool (n,), int (kept nodes,)): the nodes of the graph's components that hold at least
    MIN_COMPONENT of the nodes (and always the largest), and which of those components each kept node
    is in, numbered from 0 by size, largest first. A k-NN graph often has a few tiny components, families
    of near-copies (9 of 11 to 39 nodes beside one of 59,395 in the Debian descriptions); each would take
    an eigenvalue-1 coordinate of full weight, and so a whole code bit, to tell its handful of items apart."""
    count, label = connected_components(A, directed=False)
    sizes = np.bincount(label, minlength=count)
    big = sizes >= MIN_COMPONENT * A.shape[0]
    big[np.argmax(sizes)] = True
    rank = np.full(count, -1)
    rank[np.argsort(-sizes, kind="stable")[:big.sum()]] = np.arange(big.sum())
    keep = big[label]
    return keep, rank[label[keep]]


def diffusion_embedding(neighbors: np.ndarray, dims: int, time: float, seed: int = 0,
                        shared: float = 0.0) -> np.ndarray:
    """(n, dims) diffusion-map coordinates of the graph: the random walk's leading non-trivial
    eigenvectors, each scaled by eigenvalue**time (time = 0: all scaled alike).

    Eigenvalue 1 comes once per component; its eigenvectors are any basis of the components' indicators,
    so they are replaced by the indicators themselves (all but the largest component's: with it they
    would span the constant, stationary vector), and the other eigenvectors follow. The nodes of tiny
    components (main_components) are left out of the solve and get zero coordinates: their codes come
    from the mixed-in view."""
    n = neighbors.shape[0]
    A, inv_root = normalized_adjacency(neighbors, shared)
    keep, component = main_components(A)
    if not keep.all():
        A, inv_root = A[keep][:, keep].tocsr(), inv_root[keep]
    m, c = A.shape[0], int(component.max()) + 1
    dims = max(1, min(dims, n - 2))
    solve = max(0, min(dims - (c - 1), m - c - 1))  # eigenvectors wanted besides eigenvalue 1's
    if solve and m <= 2 * (solve + c) + 50:  # small graphs: a dense solve is cheaper and always converges
        vals, vecs = np.linalg.eigh(A.toarray())
    elif solve:
        # single precision: the same subspace as double (cosines 1.0 at tol 1e-4 on the Debian graph), in
        # half the time (9 s against 20 s on two cores)
        v0 = np.random.default_rng(seed).standard_normal(m).astype(np.float32)
        try:
            vals, vecs = eigsh(A.astype(np.float32), k=solve + c, which="LA", tol=1e-4, v0=v0)
        except ArpackNoConvergence as e:
            if len(e.eigenvalues) <= c:
                raise ModelError("the diffusion term's eigensolver did not converge on this corpus's "
                                 "neighbour graph; train without it (--diffusion 0)") from None
            vals, vecs = e.eigenvalues, e.eigenvectors  # the ones that converged
    else:
        vals, vecs = np.ones(c), np.zeros((m, c))
    order = np.argsort(-vals.astype(np.float64))[c:c + solve]  # past eigenvalue 1's c vectors
    vals, vecs = vals[order].astype(np.float64), vecs[:, order].astype(np.float64) * inv_root[:, None]
    indicators = (component[:, None] == np.arange(1, c)[None, :]).astype(np.float64)
    vals, vecs = np.concatenate([np.ones(c - 1), vals]), np.hstack([indicators, vecs])  # random-walk eigenvectors
    if not keep.all():
        full = np.zeros((n, vecs.shape[1]))
        full[keep] = vecs
        vecs = full
    vals, vecs = vals[:dims], vecs[:, :dims]
    vecs = vecs / np.maximum(vecs.std(axis=0), 1e-12)
    return (vecs * np.clip(vals, 0.0, None) ** time).astype(np.float64)


def _unit_rms(Y: np.ndarray) -> np.ndarray:
    return Y / max(float(np.sqrt((Y ** 2).sum(axis=1).mean())), 1e-12)


def diffusion_codes(neighbors: np.ndarray, bits: int, time: float, seed: int = 0, view: np.ndarray | None = None,
                    mix: float = 0.0, shared: float = 0.0) -> np.ndarray:
    """(n, bits) bool: the diffusion embedding's top `bits` principal directions, rotated by ITQ
    and thresholded at zero (balanced, decorrelated bits that keep the embedding's distances).

    shared: the graph's edge weights (normalized_adjacency).
    view, mix: the rows' own coordinates (principal_view), weighted by mix against the diffusion
    coordinates (both scaled to unit mean square norm) and embedded beside them: the fine,
    within-cluster detail that a long walk has smoothed away."""
    Y = _unit_rms(diffusion_embedding(neighbors, max(EIGENVECTORS, bits), time, seed, shared))
    if view is not None and mix > 0:
        Y = np.hstack([Y, mix * _unit_rms(np.asarray(view, dtype=np.float64))])
    Y -= Y.mean(axis=0)
    _, _, Vt = np.linalg.svd(Y, full_matrices=False)
    Z = Y @ Vt[:bits].T
    if Z.shape[1] < bits:  # fewer rows than bits: pad with copies (degenerate, tiny training sets)
        Z = np.tile(Z, (1, -(-bits // max(1, Z.shape[1]))))[:, :bits]
    R, _ = itq_rotation(Z, ITQ_ITERATIONS, np.random.default_rng(seed))
    return (Z @ R) > 0
