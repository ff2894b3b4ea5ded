"""semhash.evaluate: Hamming ranking metrics (three tie policies), radius metrics, kNN ceiling, diagnostics."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp

from semhash.codes import pack
from semhash.errors import ConfigError
from semhash.evaluate import (
    code_diagnostics,
    evaluate_hamming,
    feature_knn_precision,
    hamming_distances,
    iter_distance_blocks,
    tie_averaged_average_precision,
    tie_averaged_precision_at_k,
)


def codes_at(distances, bits=8) -> np.ndarray:
    """Packed codes whose Hamming distances from the all-zero code are `distances` (the first d bits set)."""
    b = np.zeros((len(distances), bits), dtype=np.uint8)
    for i, d in enumerate(distances):
        b[i, :d] = 1
    return pack(b)


def zero_query(n=1, bits=8) -> np.ndarray:
    return np.zeros((n, bits // 8), dtype=np.uint8)


def brute_force_tie_average(distances, relevant, ks):
    """Mean AP and precision@k over every ordering of the tied items (all permutations of each group)."""
    distances, relevant = np.asarray(distances), np.asarray(relevant, dtype=bool)
    groups = [np.flatnonzero(distances == h) for h in np.unique(distances)]
    aps, precisions = [], []
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        r = relevant[np.concatenate(perms)]
        pos = np.flatnonzero(r)
        aps.append(np.mean(np.arange(1, len(pos) + 1) / (pos + 1)))
        precisions.append([r[:k].mean() for k in ks])
    return float(np.mean(aps)), np.mean(precisions, axis=0), len(aps)


# --- Hamming distances ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 24, 64, 128, 264])
def test_hamming_distances_match_brute_force(bits):
    rng = np.random.default_rng(bits)
    q = rng.integers(0, 256, (7, bits // 8), dtype=np.uint8)
    db = rng.integers(0, 256, (33, bits // 8), dtype=np.uint8)
    expected = (np.unpackbits(q, axis=1)[:, None, :] != np.unpackbits(db, axis=1)[None, :, :]).sum(axis=2)
    d = hamming_distances(q, db)
    assert np.array_equal(d, expected)
    assert d.dtype == (np.uint8 if bits <= 255 else np.uint16)
    blocks = list(iter_distance_blocks(q, db, block_size=3))
    assert [start for start, _ in blocks] == [0, 3, 6]
    assert np.array_equal(np.concatenate([b for _, b in blocks]), expected)


def test_hamming_distances_errors():
    with pytest.raises(ConfigError, match="query codes have 16 bits, the database's 8"):
        hamming_distances(np.zeros((1, 2), np.uint8), np.zeros((1, 1), np.uint8))
    with pytest.raises(ConfigError, match="packed codes, a 2-D uint8 array"):
        hamming_distances(np.zeros((1, 8)), np.zeros((1, 1), np.uint8))


# --- ranking with the deterministic tie policy: hand-computed -------------------------------------------------------

HAND_DIST = [1, 0, 1, 2, 0]
HAND_LABELS = ["a", "b", "a", "b", "a"]  # the query's label is "a": items 0, 2 and 4 are relevant


def hand_eval(**kw):
    return evaluate_hamming(zero_query(), codes_at(HAND_DIST), ["a"], HAND_LABELS, **kw)


def test_precision_and_ap_with_index_ties():
    # ranking by (distance, index): item 1 (d0, -), 4 (d0, +), 0 (d1, +), 2 (d1, +), 3 (d2, -)
    ev = hand_eval(k=[1, 2, 3, 4, 5, 9])
    assert ev.ks == (1, 2, 3, 4, 5, 9)
    np.testing.assert_allclose(ev.precision_at_k[0], [0, 1 / 2, 2 / 3, 3 / 4, 3 / 5, 3 / 5])  # k=9 capped at 5
    ap = (1 / 2 + 2 / 3 + 3 / 4) / 3
    assert math.isclose(ev.average_precision[0], ap)
    assert math.isclose(ev.mean_average_precision(), ap)
    assert math.isclose(ev.precision(3), 2 / 3) and math.isclose(ev.precision(), 0.0)
    assert ev.counts[0].tolist() == [2, 2, 1, 0, 0, 0, 0, 0, 0]
    assert ev.relevant_counts[0].tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0]
    # the other way round: database index order decides, so reversing the database changes the value
    rev = evaluate_hamming(zero_query(), codes_at(HAND_DIST[::-1]), ["a"], HAND_LABELS[::-1], k=1)
    assert rev.precision_at_k[0, 0] == 1.0  # item 4 (relevant, distance 0) now comes first


def test_tie_averaged_values_by_hand():
    ev = hand_eval(k=[1, 2, 3])
    # P@1: half of the distance-0 group is relevant; P@2 covers that group whole; P@3 adds one of two relevant
    np.testing.assert_allclose(ev.precision_at_k_tie_avg[0], [1 / 2, 1 / 2, 2 / 3])
    # AP: group 0 alone gives (1/2)(1 + 1/2) = 3/4 in expectation; group 1 (both relevant, after 2 items,
    # 1 relevant) gives 2/3 + 3/4 whatever the order
    assert math.isclose(ev.average_precision_tie_avg[0], (3 / 4 + 2 / 3 + 3 / 4) / 3)
    assert math.isclose(ev.mean_average_precision("average"), ev.average_precision_tie_avg[0])
    assert math.isclose(ev.precision(2, "average"), 1 / 2)


@pytest.mark.parametrize("seed", range(6))
def test_tie_averaged_matches_every_permutation(seed):
    rng = np.random.default_rng(seed)
    n = 9
    distances = rng.integers(0, 4, n)
    labels = rng.integers(0, 2, n)
    if not (labels == 0).any():
        labels[0] = 0
    ks = [1, 2, 3, 5, 9]
    ap, precisions, orderings = brute_force_tie_average(distances, labels == 0, ks)
    assert orderings > 1
    ev = evaluate_hamming(zero_query(), codes_at(distances), [0], labels, k=ks)
    assert math.isclose(ev.average_precision_tie_avg[0], ap, rel_tol=1e-12)
    np.testing.assert_allclose(ev.precision_at_k_tie_avg[0], precisions, rtol=1e-12)


def test_tie_averaged_large_group_against_monte_carlo():
    # a tied group of 300 items, 40 relevant (distance 1), after 100 tied items, 30 relevant (distance 0)
    counts = np.array([[100, 300, 0]])
    rel = np.array([[30, 40, 0]])
    exact = tie_averaged_average_precision(counts, rel)[0]
    rng = np.random.default_rng(0)
    head = np.r_[np.ones(30, bool), np.zeros(70, bool)]
    group = np.r_[np.ones(40, bool), np.zeros(260, bool)]
    aps = []
    for _ in range(4000):
        r = np.r_[rng.permutation(head), rng.permutation(group)]
        pos = np.flatnonzero(r)
        aps.append(np.mean(np.arange(1, len(pos) + 1) / (pos + 1)))
    assert abs(np.mean(aps) - exact) < 4 * np.std(aps) / np.sqrt(len(aps)) + 1e-12
    assert math.isclose(tie_averaged_precision_at_k(counts, rel, 200)[0], (30 + 100 * 40 / 300) / 200)


def test_confidence_tie_break():
    # query 0x00 with logits: bit 0 confident (|5|), the others barely (|1|)
    logits = -np.array([[5.0, 1, 1, 1, 1, 1, 1, 1]])
    db = pack(np.array([[1, 0, 0, 0, 0, 0, 0, 0],     # differs in the confident bit: cost 5, relevant
                        [0, 1, 0, 0, 0, 0, 0, 0],     # differs in a weak bit: cost 1, not relevant
                        [0, 1, 0, 0, 0, 0, 0, 0],     # same code, same cost: index order after item 1
                        [0, 0, 0, 0, 0, 0, 0, 0]]))   # distance 0, relevant
    ev = evaluate_hamming(zero_query(), db, [1], [1, 0, 0, 1], k=[1, 2, 3], query_logits=logits)
    np.testing.assert_allclose(ev.precision_at_k[0], [1, 1, 2 / 3])  # index ties: 3, 0, 1, 2
    np.testing.assert_allclose(ev.precision_at_k_confidence[0], [1, 1 / 2, 1 / 3])  # confidence: 3, 1, 2, 0
    assert math.isclose(ev.average_precision_confidence[0], (1 + 2 / 4) / 2)
    assert math.isclose(ev.mean_average_precision("confidence"), (1 + 2 / 4) / 2)
    assert "map_confidence" in ev.summary() and "precision_at_1_confidence" in ev.summary()
    with pytest.raises(ConfigError, match="needs the queries' logits"):
        hand_eval().mean_average_precision("confidence")
    with pytest.raises(ConfigError, match=r"query logits must have shape \(1, 8\)"):
        evaluate_hamming(zero_query(), db, [1], [1, 0, 0, 1], query_logits=np.zeros((1, 16)))


def test_queries_without_relevant_items_and_label_types():
    db = codes_at([0, 1, 2, 3])
    q = zero_query(2)
    ev = evaluate_hamming(q, db, ["x", "missing"], ["x", "y", "x", "y"], k=2)
    assert math.isclose(ev.average_precision[0], (1 + 2 / 3) / 2)
    assert np.isnan(ev.average_precision[1]) and np.isnan(ev.average_precision_tie_avg[1])
    assert math.isclose(ev.mean_average_precision(), (1 + 2 / 3) / 2)  # the query without relevant items is left out
    assert math.isclose(ev.precision(2), (0.5 + 0.0) / 2)  # but it counts in precision@k
    assert ev.summary()["queries_without_relevant"] == 1
    as_ints = evaluate_hamming(q, db, [7, 99], [7, 8, 7, 8], k=2)
    assert np.allclose(as_ints.precision_at_k, ev.precision_at_k)
    assert np.allclose(as_ints.average_precision, ev.average_precision, equal_nan=True)


def test_blocks_and_random_data_agree_with_a_direct_ranking():
    rng = np.random.default_rng(3)
    bits, nq, ndb = 16, 25, 400
    q = rng.integers(0, 256, (nq, 2), dtype=np.uint8)
    db = rng.integers(0, 256, (ndb, 2), dtype=np.uint8)
    db[::4] = db[1]  # many exact duplicates
    ql, dl = rng.integers(0, 3, nq), rng.integers(0, 3, ndb)
    ev = evaluate_hamming(q, db, ql, dl, k=[1, 10, 50])
    small_blocks = evaluate_hamming(q, db, ql, dl, k=[1, 10, 50], block_size=4)
    assert np.array_equal(ev.precision_at_k, small_blocks.precision_at_k)
    assert np.array_equal(ev.average_precision, small_blocks.average_precision)
    dist = hamming_distances(q, db)
    for i in range(nq):
        order = np.lexsort((np.arange(ndb), dist[i]))
        r = dl[order] == ql[i]
        pos = np.flatnonzero(r)
        assert math.isclose(ev.average_precision[i], np.mean(np.arange(1, len(pos) + 1) / (pos + 1)))
        assert np.allclose(ev.precision_at_k[i], [r[:k].mean() for k in (1, 10, 50)])
    assert ev.counts.sum(axis=1).tolist() == [ndb] * nq
    assert bits + 1 == ev.counts.shape[1]


# --- radius metrics ---------------------------------------------------------------------------------------------------

def test_radius_precision_recall_with_an_empty_ball():
    db = codes_at([0, 1, 2, 3, 5])
    labels = ["a", "b", "a", "a", "b"]
    q = pack(np.array([[0] * 8, [1, 1, 1, 1, 1, 1, 1, 1]]))  # the second query is 3 bits from everything
    ev = evaluate_hamming(q, db, ["a", "a"], labels)
    r2 = ev.radius(2)
    # query 0: items 0, 1, 2 within 2, of which 2 relevant (of 3 relevant): precision 2/3, recall 2/3
    # query 1: nothing within 2 (distances 8, 7, 6, 5, 3): empty ball, precision 0, recall 0
    assert r2["radius"] == 2
    assert math.isclose(r2["precision"], (2 / 3 + 0) / 2)
    assert math.isclose(r2["precision_nonempty"], 2 / 3)
    assert math.isclose(r2["recall"], (2 / 3 + 0) / 2)
    assert r2["empty_fraction"] == 0.5 and r2["mean_retrieved"] == 1.5
    r0 = ev.radius(0)
    assert (r0["precision"], r0["recall"], r0["empty_fraction"]) == (0.5, pytest.approx(1 / 6), 0.5)
    curve = ev.radius_curve()
    assert curve["radius"].tolist() == list(range(9))
    assert math.isclose(curve["recall"][-1], 1.0) and math.isclose(curve["precision"][-1], 3 / 5)
    assert ev.radius(20) == ev.radius(8) | {"radius": 20}
    s = ev.summary(radius=2)
    assert s["radius2_precision"] == r2["precision"] and s["radius2_empty_fraction"] == 0.5
    with pytest.raises(ConfigError, match="radius must be >= 0"):
        ev.radius(-1)


def test_evaluate_errors():
    db = codes_at([0, 1])
    with pytest.raises(ConfigError, match="need one label per item"):
        evaluate_hamming(zero_query(), db, ["a"], ["a"])
    with pytest.raises(ConfigError, match="k must be one or more positive integers"):
        evaluate_hamming(zero_query(), db, ["a"], ["a", "b"], k=0)
    with pytest.raises(ConfigError, match="the database is empty"):
        evaluate_hamming(zero_query(), db[:0], ["a"], [])
    ev = evaluate_hamming(zero_query(), db, ["a"], ["a", "b"], k=1)
    with pytest.raises(ConfigError, match="precision@5 was not computed"):
        ev.precision(5)
    with pytest.raises(ConfigError, match="unknown tie policy 'best'"):
        ev.precision(1, "best")


# --- the float-feature ceiling ----------------------------------------------------------------------------------------

def test_feature_knn_precision_dense_and_sparse():
    db = np.array([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.8, 0.2], [0, 0, 3]])
    labels = ["x", "x", "y", "y", "z"]
    q = np.array([[2.0, 0.1, 0], [0, 0, 1]])
    # cosine: query 0's two nearest are items 0, 1 (both x); query 1's are 4 (z), then 3 (y)
    assert math.isclose(feature_knn_precision(q, db, ["x", "z"], labels, k=2), (1.0 + 0.5) / 2)
    assert math.isclose(feature_knn_precision(sp.csr_matrix(q), sp.csr_matrix(db), ["x", "z"], labels, k=2), 0.75)
    assert math.isclose(feature_knn_precision(q, sp.csr_matrix(db), ["x", "z"], labels, k=2, block_size=1), 0.75)
    # euclidean: query 0 = (2, .1, 0) is nearest to items 0 and 1; query 1 = (0, 0, 1) to item 3 then 2
    assert math.isclose(feature_knn_precision(q, db, ["x", "z"], labels, k=2, metric="euclidean"), 0.5)
    assert math.isclose(feature_knn_precision(sp.csr_matrix(q), sp.csr_matrix(db), ["x", "z"], labels, k=2,
                                              metric="euclidean"), 0.5)
    assert math.isclose(feature_knn_precision(q, db, ["x", "z"], labels, k=50), (2 / 5 + 1 / 5) / 2)  # k capped
    with pytest.raises(ConfigError, match="unknown metric"):
        feature_knn_precision(q, db, ["x", "z"], labels, metric="manhattan")
    with pytest.raises(ConfigError, match="query features have 2 dimensions"):
        feature_knn_precision(q[:, :2], db, ["x", "z"], labels)


# --- code diagnostics -------------------------------------------------------------------------------------------------

def test_code_diagnostics_on_hand_made_codes():
    codes = np.array([[0x00], [0x00], [0xFF], [0x0F]], dtype=np.uint8)
    d = code_diagnostics(codes)
    # bits 0-3 are (0, 0, 1, 0): a quarter set; bits 4-7 are (0, 0, 1, 1): half set
    assert (d["items"], d["bits"]) == (4, 8)
    assert (d["bit_ones_min"], d["bit_ones_max"], d["bit_ones_mean"]) == (0.25, 0.5, 0.375)
    # 6 + 6 pairs of identical bits (correlation 1), 16 pairs across: .125 / (sqrt(.1875) * .5) = 1/sqrt(3)
    assert math.isclose(d["mean_abs_bit_correlation"], (12 + 16 / math.sqrt(3)) / 28)
    assert (d["distinct_codes"], d["largest_bucket"], d["largest_bucket_share"]) == (3, 2, 0.5)
    assert math.isclose(d["items_per_bucket_mean"], 4 / 3)
    assert (d["items_per_bucket_p50"], d["items_per_bucket_max"]) == (1.0, 2)
    assert math.isclose(d["items_per_bucket_p90"], 1.8)  # sizes 1, 1, 2: linear interpolation


def test_code_diagnostics_constant_bits_and_wide_codes():
    codes = pack(np.array([[1, 0] + [0] * 70, [1, 1] + [0] * 70, [1, 0] + [0] * 70]))  # 72 bits, mostly constant
    d = code_diagnostics(codes)
    assert d["bits"] == 72 and d["bit_ones_max"] == 1.0 and d["bit_ones_min"] == 0.0
    assert d["mean_abs_bit_correlation"] == 0.0  # constant bits count as uncorrelated
    assert (d["distinct_codes"], d["largest_bucket"]) == (2, 2)
    with pytest.raises(ConfigError, match="no codes"):
        code_diagnostics(np.zeros((0, 1), np.uint8))


def test_neighbour_recall_against_brute_force():
    from semhash.evaluate import neighbour_recall, sign_codes

    rng = np.random.default_rng(3)
    db, q = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(20, 16)).astype(np.float32)
    db_codes, q_codes = sign_codes(db), sign_codes(q)
    got = neighbour_recall(q, db, q_codes, db_codes, k=10, candidates=(None, 50, 300))
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (db / np.linalg.norm(db, axis=1, keepdims=True)).T
    ham = np.unpackbits(q_codes[:, None, :] ^ db_codes[None, :, :], axis=2).sum(axis=2)
    want = {}
    for name, n in (("codes", None), ("rerank 50", 50), ("rerank 300", 300)):
        hits = 0
        for i in range(20):
            truth = set(np.argsort(-cos[i])[:10].tolist())
            by_code = np.argsort(ham[i], kind="stable")
            top = by_code[:10] if n is None else sorted(by_code[:n], key=lambda j: -cos[i, j])[:10]
            hits += len(truth & set(np.asarray(top).tolist()))
        want[name] = hits / 200
    assert got == pytest.approx(want)
    assert got["rerank 300"] == 1.0  # re-ranking every item is the exact answer
    assert got["codes"] <= got["rerank 50"] <= 1.0
