"""Multi-index hashing over a bucket table's distinct codes: the pigeonhole guarantee, each bucket once."""
from __future__ import annotations

import numpy as np
import pytest

from semhash.codes import popcount, to_keys
from semhash.mih import MultiIndex, substring_count


def distinct_keys(rng, n, bits, flip=0.05):
    """Sorted distinct keys of clustered codes (a few centres with sparse flips)."""
    centres = rng.integers(0, 256, size=(6, bits // 8), dtype=np.uint8)
    bitsm = np.unpackbits(centres[rng.integers(0, 6, n)], axis=1) ^ (rng.random((n, bits)) < flip)
    return np.unique(to_keys(np.packbits(bitsm, axis=1)))


def test_two_substrings_cover_the_code():
    assert substring_count(64, 10 ** 6) == 2
    mih = MultiIndex(np.arange(10, dtype=np.uint64), 48)
    assert mih.m == 2 and mih.widths == [24, 24] and sum(mih.widths) == 48
    assert [mih.searched(level) for level in range(4)] == [1, 3, 5, 7]
    assert mih.level_probes(0) == 2 and mih.level_probes(1) == 2 * 24


@pytest.mark.parametrize("bits,max_level", [(32, 0), (32, 2), (64, 1), (64, 3)])
def test_radius_mode_finds_every_bucket_within_the_searched_radius_once(bits, max_level):
    """Pigeonhole: after levels 0..L every code within m(L+1)-1 of the query is found, each exactly once,
    with its true distance; nothing farther than the radius asked for comes back."""
    rng = np.random.default_rng(bits + max_level)
    keys = distinct_keys(rng, 3000, bits)
    mih = MultiIndex(keys, bits)
    queries = np.r_[keys[rng.choice(len(keys), 10, replace=False)], to_keys(
        rng.integers(0, 256, size=(5, bits // 8), dtype=np.uint8))]
    radius = mih.searched(max_level)
    q, b, d, searched = mih.search(queries, None, np.ones(len(keys), np.int64), max_level, radius)
    assert (searched == radius).all()
    for i, qk in enumerate(queries):
        truth = popcount(keys ^ qk).astype(np.int64)
        want = set(np.flatnonzero(truth <= radius).tolist())
        got = b[q == i].tolist()
        assert len(got) == len(set(got)), "a bucket came back twice"
        assert set(got) == want
        assert (d[q == i] == truth[b[q == i]]).all()


def test_knn_mode_stops_each_query_once_it_holds_k_items():
    rng = np.random.default_rng(3)
    keys = distinct_keys(rng, 4000, 64)
    sizes = rng.integers(1, 5, size=len(keys))
    mih = MultiIndex(keys, 64)
    queries = keys[rng.choice(len(keys), 20, replace=False)]
    q, b, d, searched = mih.search(queries, 10, sizes, 3)
    for i in range(len(queries)):
        mine = q == i
        assert (d[mine] <= searched[i]).all()
        truth = popcount(keys ^ queries[i]).astype(np.int64)
        # complete within its searched radius, up to the distance where its items reach k (farther
        # buckets are never among its first k), and either k items there or every level was run
        items_within = np.array([sizes[truth <= r].sum() for r in range(65)])
        reach_k = int(np.argmax(items_within >= 10)) if (items_within >= 10).any() else 64
        assert set(b[mine].tolist()) == set(np.flatnonzero(truth <= min(searched[i], reach_k)).tolist())
        assert sizes[b[mine]].sum() >= 10 or searched[i] == mih.searched(3)
        if searched[i] > mih.searched(0):  # it went on only because the level before held fewer than k
            previous = searched[i] - mih.m
            assert sizes[np.flatnonzero(truth <= previous)].sum() < 10
