"""Diffusion codes: the autoencoder's target bits from the k-NN graph (semhash.hashers.diffusion)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from semhash.errors import ConfigError
from semhash.hashers.ae import MIN_DIFFUSION_ROWS, AutoencoderHasher
from semhash.hashers.autoencoder import target_loss
from semhash.hashers.diffusion import diffusion_codes, diffusion_embedding, normalized_adjacency
from semhash.hashers.neighbors import knn_graph, principal_view
from semhash.hashers.train import TrainConfig


def blobs(n_per=60, k=4, dim=16, spread=0.3, seed=0):
    """k well separated Gaussian clusters; returns (X, labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)) * 4
    X = np.vstack([c + spread * rng.standard_normal((n_per, dim)) for c in centres]).astype(np.float32)
    return X, np.repeat(np.arange(k), n_per)


def test_normalized_adjacency_is_symmetric_with_unit_top_eigenvalue():
    X, _ = blobs()
    A, inv_root = normalized_adjacency(knn_graph(X, k=5, dims=8))
    assert abs(A - A.T).max() < 1e-12
    top = np.linalg.eigvalsh(A.toarray())[-1]
    assert top == pytest.approx(1.0, abs=1e-9)
    assert (inv_root > 0).all()


def test_shared_neighbour_weights_count_common_neighbours_on_the_graphs_edges():
    # 0-1-2 a triangle, 3 tied to 2 only: edge 0-1 has one common neighbour (2), edge 2-3 none
    graph = np.array([[1, 2], [0, 2], [0, 1], [2, 2]])
    plain, _ = normalized_adjacency(graph)
    A, inv_root = normalized_adjacency(graph, shared=2.0)
    W = A.toarray() / np.outer(inv_root, inv_root)  # undo the degree normalization
    assert abs(A - A.T).max() < 1e-12 and np.linalg.eigvalsh(A.toarray())[-1] == pytest.approx(1.0)
    assert W[0, 1] == pytest.approx(4.0)  # (1 + 1 shared) ** 2
    assert W[2, 3] == pytest.approx(1.0)  # (1 + 0) ** 2
    assert W[0, 3] == 0 and W[1, 3] == 0  # sharing neighbour 2 makes no edge where the graph has none
    assert np.array_equal(A.toarray() > 0, plain.toarray() > 0)
    assert np.array_equal(normalized_adjacency(graph, shared=0.0)[0].toarray(), plain.toarray())


def test_shared_neighbour_weights_keep_the_walk_inside_its_clique():
    # the one edge between the cliques has no common neighbours, so it weighs least: the slowest mode
    # (the cliques' split) gets an eigenvalue closer to 1 and dominates the diffusion coordinates more
    graph = two_cliques()
    gap = [1 - np.sort(np.linalg.eigvalsh(normalized_adjacency(graph, s)[0].toarray()))[-2] for s in (0.0, 2.0)]
    assert gap[1] < gap[0] / 10
    codes = diffusion_codes(graph, bits=1, time=10, shared=2.0)
    assert len(set(codes[:10, 0])) == 1 and len(set(codes[10:, 0])) == 1 and codes[0, 0] != codes[10, 0]


def two_cliques(size=10):
    """The k-NN lists of two cliques of `size` nodes joined by one edge (0 -- size)."""
    nodes = np.arange(2 * size)
    graph = np.array([[j for j in nodes if j // size == i // size and j != i] for i in nodes])
    graph[0, -1] = size
    return graph


def test_first_coordinate_splits_two_joined_cliques():
    graph = two_cliques()
    Y = diffusion_embedding(graph, dims=3, time=10)
    assert Y.shape == (20, 3)
    first = np.sign(Y[:, 0])
    assert len(set(first[:10])) == 1 and len(set(first[10:])) == 1 and first[0] != first[10]
    codes = diffusion_codes(graph, bits=1, time=10)
    # each clique shares one bit value, and the two cliques' values differ
    assert len(set(codes[:10, 0].tolist())) == 1 and len(set(codes[10:, 0].tolist())) == 1
    assert codes[0, 0] != codes[10, 0]


def test_components_give_their_indicators_and_tiny_ones_are_left_out():
    """Two cliques of 150 nodes, one of 3 (1% of 303 is 3.03: tiny). Eigenvalue 1 comes three times; the
    coordinates hold the big cliques' split (exactly, whatever basis the solver returned) and never spend
    one on the tiny clique, whose nodes get zero coordinates."""
    sizes = [150, 150, 3]
    starts = np.cumsum([0] + sizes)
    graph = []
    for s0, size in zip(starts, sizes):
        for i in range(size):  # each node's 2 nearest on a ring inside its clique (k = 2)
            graph.append([s0 + (i + 1) % size, s0 + (i - 1) % size])
    graph = np.array(graph)
    Y = diffusion_embedding(graph, dims=8, time=10)
    assert Y.shape == (303, 8)
    assert np.allclose(Y[300:], 0.0)  # the tiny clique
    first = Y[:, 0]  # eigenvalue 1: the indicator of the second clique, full weight
    assert np.ptp(first[:150]) < 1e-9 and np.ptp(first[150:300]) < 1e-9 and abs(first[0] - first[150]) > 1.0
    for col in Y[:, 1:].T:  # the rest vary inside the big cliques
        assert col[:300].std() > 1e-3
    codes = diffusion_codes(graph, bits=1, time=10)
    assert codes[0, 0] != codes[150, 0] and len(set(codes[:150, 0])) == 1 and len(set(codes[150:300, 0])) == 1


def test_time_shrinks_the_minor_coordinates():
    X, _ = blobs(spread=2.0)
    graph = knn_graph(X, k=5, dims=8)
    short, long = diffusion_embedding(graph, 8, 0.0), diffusion_embedding(graph, 8, 50.0)
    assert np.allclose(short.std(axis=0), 1.0)  # time 0: every coordinate at unit variance
    ratio = long.std(axis=0)
    assert (np.diff(ratio) <= 1e-9).all() and ratio[-1] < ratio[0]  # eigenvalue**time, decreasing


def test_codes_follow_the_clusters_and_are_balanced():
    X, labels = blobs()
    graph = knn_graph(X, k=5, dims=8)
    codes = diffusion_codes(graph, bits=8, time=10, seed=0)
    assert codes.shape == (len(X), 8) and codes.dtype == bool
    assert np.array_equal(codes, diffusion_codes(graph, bits=8, time=10, seed=0))  # seeded
    d = (codes[:, None, :] != codes[None, :, :]).sum(axis=2)
    same = labels[:, None] == labels[None, :]
    assert d[same].mean() < 0.25 * d[~same].mean()  # bits shared within a cluster, not across
    balance = codes.mean(axis=0)
    assert ((balance > 0.1) & (balance < 0.9)).all()


def test_mixing_in_the_rows_own_coordinates_keeps_their_distances():
    X = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)  # one blob, no clusters
    graph = knn_graph(X, k=5, dims=8)
    view = principal_view(X, 8)
    plain = diffusion_codes(graph, bits=16, time=30)
    mixed = diffusion_codes(graph, bits=16, time=30, view=view, mix=1.0)
    upper = np.triu_indices(len(X), 1)
    own = np.linalg.norm(view[:, None, :] - view[None, :, :], axis=2)[upper]

    def agreement(codes):
        return np.corrcoef((codes[:, None, :] != codes[None, :, :]).sum(axis=2)[upper], own)[0, 1]

    assert agreement(mixed) > agreement(plain) + 0.1
    assert np.array_equal(plain, diffusion_codes(graph, bits=16, time=30, view=view, mix=0.0))


@pytest.mark.parametrize("n,bits", [(3, 8), (12, 32), (40, 64)])
def test_tiny_graphs(n, bits):
    X = np.random.default_rng(0).random((n, 6)).astype(np.float32)
    codes = diffusion_codes(knn_graph(X, k=3, dims=4), bits=bits, time=5)
    assert codes.shape == (n, bits)


def test_target_loss_by_hand():
    logits = torch.tensor([[2.0, -1.0]])
    target = torch.tensor([[1.0, 0.0]])
    expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
    assert target_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert target_loss(logits, 1 - target) > target_loss(logits, target)


def _fit(X, seed=0, **cfg):
    tc = TrainConfig(**{"epochs": 6, "batch_size": 32, "seed": seed, "device": "cpu", "n_neighbors": 5, **cfg})
    return AutoencoderHasher(bits=8, hidden=[32], train_config=tc).fit(X, output_type="real", progress=False)


def test_the_diffusion_term_makes_the_codes_follow_the_clusters():
    """Over three seeds, the share of each item's 20 nearest codes in its own cluster. After 6 epochs it
    moved with every change of the eigensolver (0.56-0.93 with the term, 0.37-0.50 without); after 12 it
    is 0.93-0.97 with and 0.25 without."""
    X, labels = blobs(spread=1.5)
    X = X - X.min()  # keep the inputs in a range the small model reconstructs easily

    def cluster_purity(h):
        codes = h.encode(X)
        d = np.unpackbits(codes[:, None, :] ^ codes[None, :, :], axis=2).sum(axis=2).astype(float)
        np.fill_diagonal(d, np.inf)
        nearest = np.argsort(d, axis=1, kind="stable")[:, :20]
        return (labels[nearest] == labels[:, None]).mean()

    with_term = [cluster_purity(_fit(X, seed, diffusion=3.0, diffusion_time=10, epochs=12)) for seed in range(3)]
    without = [cluster_purity(_fit(X, seed, diffusion=0.0, epochs=12)) for seed in range(3)]
    assert np.mean(with_term) > np.mean(without) + 0.25, (with_term, without)
    assert all(w > wo + 0.15 for w, wo in zip(with_term, without)), (with_term, without)
    assert np.mean(with_term) > 0.75, with_term
    with_term = _fit(X, diffusion=3.0, diffusion_time=10)
    assert np.array_equal(with_term.encode(X), _fit(X, diffusion=3.0, diffusion_time=10).encode(X))


def test_tiny_training_sets_skip_the_diffusion_term():
    X = np.random.default_rng(0).random((MIN_DIFFUSION_ROWS - 1, 6)).astype(np.float32)
    assert _fit(X).encode(X).shape == (len(X), 1)


@pytest.mark.parametrize("kw", [dict(diffusion=-1), dict(diffusion_time=-1), dict(diffusion_mix=-0.5),
                                dict(shared_neighbors=-1), dict(n_neighbors=0), dict(n_neighbors=2.5),
                                dict(graph_dims=0), dict(graph_power=0), dict(graph_power=2), dict(graph_whiten=-1)])
def test_config_validation(kw):
    with pytest.raises(ConfigError):
        TrainConfig(**kw)


def test_default_walk_depends_on_the_data_type():
    from semhash.hashers.diffusion import default_walk

    # texts: a short walk on the plain 10-NN graph, the target term weighing 1
    assert default_walk("distribution") == (10, 10.0, 0.0, 32, 1.0, 0.0, 1.0, 1.0)
    assert default_walk("unit") == (20, 300.0, 2.0, 128, 0.5, 0.5, 1.0, 0.3)  # images: a long one, shared-neighbour
    # weights, in a half-whitened view of the pixels' square roots
    # other vectors (embeddings): the plain graph, a half-whitened view weighing 5 times the diffusion coordinates
    assert default_walk("real") == (10, 300.0, 0.0, 128, 1.0, 0.5, 5.0, 0.3)
    tc = TrainConfig()
    assert tc.diffusion_time is None and tc.n_neighbors is None and tc.shared_neighbors is None


def test_walk_settings_given_replace_the_defaults(monkeypatch):
    import semhash.hashers.diffusion as diffusion
    from semhash.hashers import neighbors

    seen = {}
    real_graph, real_codes, real_view = neighbors.knn_graph, diffusion.diffusion_codes, neighbors.principal_view
    monkeypatch.setattr(neighbors, "knn_graph", lambda X, k, **kw: seen.update(k=k) or real_graph(X, k, **kw))
    monkeypatch.setattr(diffusion, "diffusion_codes", lambda g, bits, time, **kw: seen.update(
        time=time, shared=kw["shared"], mix=kw["mix"]) or real_codes(g, bits, time, **kw))
    monkeypatch.setattr(neighbors, "principal_view", lambda X, dims, **kw: seen.update(
        view=(dims, kw["power"], kw["whiten"])) or real_view(X, dims, **kw))
    X = np.random.default_rng(0).random((120, 8)).astype(np.float32)
    tc = TrainConfig(epochs=1, device="cpu", diffusion=0.3)
    AutoencoderHasher(bits=8, hidden=[16], train_config=tc).fit(X, output_type="unit", progress=False)
    assert seen == {"k": 20, "time": 300.0, "shared": 2.0, "mix": 1.0, "view": (128, 0.5, 0.5)}
    _fit(X, diffusion=0.3, n_neighbors=7, diffusion_time=5, shared_neighbors=0, graph_dims=4, graph_power=0.25,
         graph_whiten=1.0, diffusion_mix=0.5)
    assert seen == {"k": 7, "time": 5, "shared": 0, "mix": 0.5, "view": (4, 0.25, 1.0)}


def test_the_graph_view_takes_roots_and_whitens():
    X = np.random.default_rng(2).random((200, 6)).astype(np.float32) * np.float32([1, 1, 1, 1, 0.1, 0.01])
    plain, rooted = principal_view(X, 6), principal_view(X, 6, power=0.5)
    assert np.allclose(np.linalg.norm(rooted, axis=1), 1, atol=1e-5)
    assert np.allclose(rooted, principal_view(np.sqrt(X), 6), atol=1e-5)  # the roots, then the same view
    assert not np.allclose(plain, rooted, atol=1e-3)
    spread = lambda V: V.std(axis=0) / V.std(axis=0).max()  # noqa: E731
    # whitening evens out the principal coordinates' spreads (before the rows are scaled to unit length)
    assert spread(principal_view(X, 6, whiten=1.0)).min() > 2 * spread(plain).min()
    assert np.allclose(principal_view(X, 6, whiten=0.0), plain)
    with pytest.raises(ConfigError, match="needs features >= 0"):
        principal_view(X - 0.5, 6, power=0.5)
