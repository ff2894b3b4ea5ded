"""Oracle tests for the searcher (in the style of FAISS's test_binary_hashindex.py).

Every strategy ("ball", "scan", "auto") is compared against brute-force Hamming distances
(`semhash.codes.hamming`) over random and clustered codes at 16, 32 and 64 bits, with row ids that
are a random permutation, so that ordering by row id differs from insertion order.
"""
from __future__ import annotations

import numpy as np
import pytest

from semhash.buckets import BucketTable
from semhash.codes import ball_size, hamming
from semhash.errors import ConfigError
from semhash.search import PROBE_COST, Searcher

STRATEGIES = ("ball", "mih", "scan", "auto")
BITS = (16, 32, 64)
N_ITEMS = 400
N_QUERIES = 24


# --- data ------------------------------------------------------------------------------------
def random_codes(rng, n, bits):
    return rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)


def clustered_codes(rng, n, bits, n_centers=4, flip_p=None):
    """Items = a random center XOR sparse random flips: uneven buckets, many exact duplicates and ties."""
    centers = np.unpackbits(random_codes(rng, n_centers, bits), axis=1)
    which = rng.integers(0, n_centers, size=n)
    p = flip_p if flip_p is not None else 1.5 / bits  # about 1.5 flipped bits per item
    flips = rng.random((n, bits)) < p
    return np.packbits(centers[which] ^ flips, axis=1)


def make_data(kind, bits, seed):
    rng = np.random.default_rng(seed)
    make = random_codes if kind == "random" else clustered_codes
    codes = make(rng, N_ITEMS + N_QUERIES, bits)
    items, queries = codes[:N_ITEMS], codes[N_ITEMS:]
    if kind == "clustered":
        queries[:4] = items[rng.choice(N_ITEMS, 4, replace=False)]  # queries that hit a stored code exactly
    else:
        # random 64-bit codes are far apart: also ask for near-copies of stored items so small radii hit
        flips = np.unpackbits(items[rng.choice(N_ITEMS, N_QUERIES // 2, replace=False)], axis=1)
        flips ^= (rng.random(flips.shape) < 1.0 / bits)
        queries[: N_QUERIES // 2] = np.packbits(flips, axis=1)
    row_ids = rng.permutation(N_ITEMS * 3)[:N_ITEMS].astype(np.int64) + 5  # not 0..n-1, not sorted
    return row_ids, items, queries


def make_searcher(row_ids, codes, bits):
    return Searcher(BucketTable.build(row_ids, codes), bits)


_CACHE: dict = {}


def dataset(kind, bits, seed=0):
    key = (kind, bits, seed)
    if key not in _CACHE:
        row_ids, items, queries = make_data(kind, bits, seed + bits)
        _CACHE[key] = (row_ids, items, queries, make_searcher(row_ids, items, bits),
                       hamming(queries, items))
    return _CACHE[key]


# --- brute force -------------------------------------------------------------------------------
def brute(dist_row: np.ndarray, row_ids: np.ndarray, codes: np.ndarray):
    """(row ids, distances) of every item, ordered by (distance, code as an unsigned integer, row id)."""
    byte_keys = tuple(codes[:, j] for j in reversed(range(codes.shape[1])))  # the code, most significant first
    order = np.lexsort((row_ids,) + byte_keys + (dist_row,))
    return row_ids[order], dist_row[order]


def brute_radius(dist_row, row_ids, codes, r):
    rows, d = brute(dist_row, row_ids, codes)
    keep = d <= r
    return rows[keep], d[keep]


def pairs(res):
    return list(zip(res.row_ids.tolist(), res.distances.tolist()))


def check_result_shape(res):
    assert res.row_ids.dtype == np.int64 and res.distances.dtype == np.int32 and res.filled.dtype == bool
    assert len(res.row_ids) == len(res.distances) == len(res.filled)
    assert len(set(res.row_ids.tolist())) == len(res.row_ids), "duplicate hits"
    assert np.all(np.diff(res.distances) >= 0), "not ordered by distance"


CASES = [(kind, bits) for kind in ("random", "clustered") for bits in BITS]


# --- radius mode -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,bits", CASES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_radius_mode_matches_brute_force(kind, bits, strategy):
    row_ids, items, queries, searcher, dist = dataset(kind, bits)
    prev = None
    total_hits = []
    for r in range(4):
        results = searcher.search(queries, k=None, radius=r, strategy=strategy)
        assert len(results) == len(queries)
        for qi, res in enumerate(results):
            check_result_shape(res)
            want_rows, want_d = brute_radius(dist[qi], row_ids, items, r)
            assert res.row_ids.tolist() == want_rows.tolist(), (kind, bits, strategy, r, qi)
            assert res.distances.tolist() == want_d.tolist()
            assert res.searched_radius == r
            assert not res.filled.any()
            if prev is not None:
                before = prev[qi]
                assert len(res.row_ids) >= len(before.row_ids)  # never fewer hits as r grows
                # the answer at r - 1 is the answer at r cut at distance r - 1: a prefix
                n = len(before.row_ids)
                assert pairs(res)[:n] == pairs(before)
                assert (res.distances[n:] == r).all()
        total_hits.append(sum(len(x.row_ids) for x in results))
        prev = results
    assert total_hits[-1] > 0  # the data make the test meaningful: something is found


# --- kNN mode ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,bits", CASES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_knn_mode_matches_brute_force(kind, bits, strategy):
    row_ids, items, queries, searcher, dist = dataset(kind, bits)
    for k in (1, 10, 100):
        for radius in (0, 1, 2):
            results = searcher.search(queries, k=k, radius=radius, strategy=strategy)
            assert len(results) == len(queries)
            for qi, res in enumerate(results):
                check_result_shape(res)
                want_rows, want_d = brute(dist[qi], row_ids, items)
                assert len(res.row_ids) == k
                # the true k smallest distances ...
                assert res.distances.tolist() == np.sort(dist[qi])[:k].tolist(), (kind, bits, strategy, k, radius)
                # ... and the first k (distance, row id) pairs, ties broken by code, then row id
                assert res.row_ids.tolist() == want_rows[:k].tolist()
                # the fill is exactly what lies beyond the completely searched radius
                assert res.filled.tolist() == (res.distances > res.searched_radius).tolist()
                if res.strategy == "scan":  # a scan examines everything: nothing is a fill
                    assert res.searched_radius == bits and not res.filled.any()
                elif res.strategy.startswith("mih"):  # MIH's reach is set by its levels, not the radius
                    assert -1 <= res.searched_radius <= bits
                else:
                    assert -1 <= res.searched_radius <= radius
                # every item up to searched_radius was examined: nothing closer was missed
                if res.searched_radius >= 0:
                    inside = int((dist[qi] <= res.searched_radius).sum())
                    assert int((res.distances <= res.searched_radius).sum()) == min(k, inside)


@pytest.mark.parametrize("kind,bits", CASES)
def test_ball_knn_stops_at_k(kind, bits):
    """The ball grows one bit at a time and stops once k items are found (or at the radius)."""
    row_ids, items, queries, searcher, dist = dataset(kind, bits)
    k, radius = 10, 3
    for qi, res in enumerate(searcher.search(queries, k=k, radius=radius, strategy="ball")):
        counts = [(dist[qi] <= d).sum() for d in range(radius + 1)]
        reached = [d for d in range(radius + 1) if counts[d] >= k]
        expected = reached[0] if reached else radius
        assert res.searched_radius == expected
        assert res.strategy == ("ball" if reached else "ball+fill")
        assert res.filled.any() == (not reached)


@pytest.mark.parametrize("kind,bits", CASES)
def test_strategies_agree(kind, bits):
    _, _, queries, searcher, _ = dataset(kind, bits)
    for k, radius in [(None, 0), (None, 2), (None, 3), (1, 0), (10, 1), (100, 2), (7, 3)]:
        answers = {s: searcher.search(queries, k=k, radius=radius, strategy=s) for s in STRATEGIES}
        for qi in range(len(queries)):
            ref = pairs(answers["scan"][qi])
            for s in ("ball", "auto"):
                assert pairs(answers[s][qi]) == ref, (kind, bits, k, radius, s, qi)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_single_query_batch_equals_batched(strategy):
    row_ids, items, queries, searcher, dist = dataset("clustered", 32)
    batched = searcher.search(queries, k=10, radius=2, strategy=strategy)
    for qi in (0, 5, len(queries) - 1):
        one = searcher.search(queries[qi:qi + 1], k=10, radius=2, strategy=strategy)
        assert len(one) == 1
        assert pairs(one[0]) == pairs(batched[qi])
        assert one[0].filled.tolist() == batched[qi].filled.tolist()
        assert one[0].searched_radius == batched[qi].searched_radius
        within = searcher.search(queries[qi:qi + 1], k=None, radius=2, strategy=strategy)
        want_rows, _ = brute_radius(dist[qi], row_ids, items, 2)
        assert within[0].row_ids.tolist() == want_rows.tolist()


@pytest.mark.parametrize("kind", ["random", "clustered"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_full_radius_returns_everything_sorted(kind, strategy):
    bits = 16
    rng = np.random.default_rng(7)
    n = 150
    codes = random_codes(rng, n, bits) if kind == "random" else clustered_codes(rng, n, bits)
    row_ids = rng.permutation(1000)[:n].astype(np.int64)
    searcher = make_searcher(row_ids, codes, bits)
    queries = np.r_[codes[:2], random_codes(rng, 2, bits)]
    dist = hamming(queries, codes)
    for qi, res in enumerate(searcher.search(queries, k=None, radius=bits, strategy=strategy)):
        want_rows, want_d = brute(dist[qi], row_ids, codes)
        assert len(res.row_ids) == n
        assert res.row_ids.tolist() == want_rows.tolist()
        assert res.distances.tolist() == want_d.tolist()
        assert res.searched_radius == bits


# --- edge cases --------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [16, 64])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_empty_index(bits, strategy):
    searcher = make_searcher(np.zeros(0, np.int64), np.zeros((0, bits // 8), np.uint8), bits)
    queries = random_codes(np.random.default_rng(1), 3, bits)
    for k in (None, 1, 10):
        results = searcher.search(queries, k=k, radius=2, strategy=strategy)
        assert len(results) == 3
        for res in results:
            assert len(res.row_ids) == len(res.distances) == len(res.filled) == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_k_larger_than_the_collection(strategy):
    bits = 32
    rng = np.random.default_rng(3)
    codes = clustered_codes(rng, 25, bits)
    row_ids = rng.permutation(100)[:25].astype(np.int64)
    searcher = make_searcher(row_ids, codes, bits)
    queries = np.r_[codes[:1], random_codes(rng, 2, bits)]
    dist = hamming(queries, codes)
    for radius in (0, 2):
        for qi, res in enumerate(searcher.search(queries, k=1000, radius=radius, strategy=strategy)):
            check_result_shape(res)
            want_rows, want_d = brute(dist[qi], row_ids, codes)
            assert res.row_ids.tolist() == want_rows.tolist()
            assert res.distances.tolist() == want_d.tolist()
            assert res.filled.tolist() == (res.distances > res.searched_radius).tolist()


def test_128_bit_codes_scan_only():
    bits = 128
    row_ids, items, queries = make_data("clustered", bits, seed=11)
    searcher = make_searcher(row_ids, items, bits)
    dist = hamming(queries, items)
    assert searcher.plan(10, 2) == ("scan", -1)
    assert searcher.plan(None, 2) == ("scan", -1)
    for strategy in ("scan", "auto"):
        for qi, res in enumerate(searcher.search(queries, k=None, radius=3, strategy=strategy)):
            want_rows, want_d = brute_radius(dist[qi], row_ids, items, 3)
            assert res.row_ids.tolist() == want_rows.tolist() and res.distances.tolist() == want_d.tolist()
            assert res.strategy == "scan"
        for qi, res in enumerate(searcher.search(queries, k=10, radius=2, strategy=strategy)):
            want_rows, want_d = brute(dist[qi], row_ids, items)
            assert pairs(res) == list(zip(want_rows[:10].tolist(), want_d[:10].tolist()))
    with pytest.raises(ConfigError) as e:
        searcher.search(queries, k=10, radius=2, strategy="ball")
    assert str(e.value) == "the ball strategy needs codes of at most 64 bits"
    with pytest.raises(ConfigError) as e:
        searcher.plan(None, 1, "ball")
    assert str(e.value) == "the ball strategy needs codes of at most 64 bits"


@pytest.mark.parametrize("kwargs,message", [
    ({"k": 10, "radius": -1}, "radius must be between 0 and the code length (16), got -1"),
    ({"k": None, "radius": 17}, "radius must be between 0 and the code length (16), got 17"),
    ({"k": 0, "radius": 2}, "k must be at least 1 (or None for every item within the radius), got 0"),
    ({"k": -3, "radius": 2}, "k must be at least 1 (or None for every item within the radius), got -3"),
    ({"k": 10, "radius": 2, "strategy": "fast"}, "strategy must be one of auto, ball, mih, scan, got 'fast'"),
])
def test_errors(kwargs, message):
    _, _, queries, searcher, _ = dataset("random", 16)
    with pytest.raises(ConfigError) as e:
        searcher.search(queries, **kwargs)
    assert str(e.value) == message


def test_plan_error_for_unknown_strategy():
    _, _, _, searcher, _ = dataset("random", 16)
    with pytest.raises(ConfigError) as e:
        searcher.plan(10, 2, "BALL")
    assert str(e.value) == "strategy must be one of auto, ball, mih, scan, got 'BALL'"


# --- the cost model ------------------------------------------------------------------------------
def test_plan_small_collection():
    _, _, queries, searcher, _ = dataset("random", 16)  # 400 items
    assert len(searcher.buckets) == N_ITEMS
    # radius mode with a large radius: the ball would cost far more than scanning 400 items
    assert searcher.plan(None, 8) == ("scan", -1)
    assert searcher.plan(None, 16) == ("scan", -1)
    # explicit strategies are obeyed
    assert searcher.plan(None, 8, "ball") == ("ball", 8)
    assert searcher.plan(10, 2, "scan") == ("scan", -1)
    # kNN: the ball goes as far as it is cheaper (r = 0 costs PROBE_COST <= 400), then the fill
    assert ball_size(16, 0) * PROBE_COST <= N_ITEMS < ball_size(16, 1) * PROBE_COST
    assert searcher.plan(10, 2) == ("ball", 0)
    results = searcher.search(queries[:3], k=10, radius=2)
    assert all(r.strategy in ("ball", "ball+fill") for r in results)
    results = searcher.search(queries[:3], k=None, radius=8)
    assert all(r.strategy == "scan" for r in results)


def test_plan_tiny_collection():
    rng = np.random.default_rng(5)
    searcher = make_searcher(np.arange(10, dtype=np.int64), random_codes(rng, 10, 16), 16)
    assert searcher.plan(None, 4) == ("scan", -1)
    assert searcher.plan(10, 2) == ("scan", -1)  # not even one probe pays off
    assert searcher.plan(None, 0) == ("scan", -1)


def test_plan_big_collection():
    rng = np.random.default_rng(6)
    n = 200_000
    codes = random_codes(rng, n, 24)
    row_ids = rng.permutation(n).astype(np.int64)
    searcher = Searcher(BucketTable.build(row_ids, codes), 24)  # the plan looks at the bucket table only
    d = searcher.buckets.n_buckets  # a scan compares distinct codes, so they set the price
    assert ball_size(24, 3) * PROBE_COST <= d < ball_size(24, 4) * PROBE_COST
    assert searcher.plan(None, 2) == ("ball", 2)
    assert searcher.plan(10, 2) == ("ball", 2)
    assert searcher.plan(None, 3) == ("ball", 3)
    assert searcher.plan(None, 4) == ("scan", -1)  # radius 4 would cost more than a scan
    assert searcher.plan(10, 8) == ("ball", 3)     # kNN: the ball up to 3, then the scan fill
    queries = codes[:3]
    dist = hamming(queries, codes)
    for qi, res in enumerate(searcher.search(queries, k=None, radius=2)):
        assert res.strategy == "ball"
        want_rows, want_d = brute_radius(dist[qi], row_ids, codes, 2)
        assert res.row_ids.tolist() == want_rows.tolist() and res.distances.tolist() == want_d.tolist()


def test_plan_counts_distinct_codes_not_items():
    """200,000 items in at most 65,536 16-bit codes: the scan is priced by the codes it compares."""
    rng = np.random.default_rng(6)
    codes = random_codes(rng, 200_000, 16)
    searcher = Searcher(BucketTable.build(np.arange(200_000), codes), 16)
    d = searcher.buckets.n_buckets
    assert d <= 65_536 and ball_size(16, 3) * PROBE_COST <= d < ball_size(16, 4) * PROBE_COST
    assert searcher.plan(None, 3) == ("ball", 3)
    assert searcher.plan(None, 4) == ("scan", -1)


@pytest.mark.parametrize("bits", BITS)
def test_ball_in_small_probe_blocks(monkeypatch, bits):
    """With a tiny PROBE_BLOCK the batch is probed in many chunks; the answer must not change."""
    import semhash.search as search_mod

    row_ids, items, queries, searcher, dist = dataset("clustered", bits)
    ref_r = searcher.search(queries, k=None, radius=2, strategy="ball")
    ref_k = searcher.search(queries, k=10, radius=2, strategy="ball")
    monkeypatch.setattr(search_mod, "PROBE_BLOCK", 7)
    for qi, res in enumerate(searcher.search(queries, k=None, radius=2, strategy="ball")):
        assert pairs(res) == pairs(ref_r[qi])
        want_rows, _ = brute_radius(dist[qi], row_ids, items, 2)
        assert res.row_ids.tolist() == want_rows.tolist()
    for qi, res in enumerate(searcher.search(queries, k=10, radius=2, strategy="ball")):
        assert pairs(res) == pairs(ref_k[qi])
        assert res.searched_radius == ref_k[qi].searched_radius
        assert res.filled.tolist() == ref_k[qi].filled.tolist()


def test_auto_picks_multi_index_hashing_for_long_codes_and_answers_exactly():
    """64-bit codes, enough items: auto answers k-nearest by MIH (the ball would stop at a small
    radius and leave most queries to the scan), and the answer is the brute-force one."""
    import semhash.search as search_mod

    rng = np.random.default_rng(12)
    n = search_mod.MIH_MIN_CODES * 3 // 2
    codes = clustered_codes(rng, n, 64, n_centers=40, flip_p=3 / 64)
    row_ids = rng.permutation(n * 2)[:n].astype(np.int64)
    searcher = make_searcher(row_ids, codes, 64)
    assert searcher.buckets.n_buckets >= search_mod.MIH_MIN_CODES
    name, level = searcher.plan(10, 2)
    assert name == "mih" and level >= 1
    queries = np.packbits(np.unpackbits(codes[:12], axis=1) ^ (rng.random((12, 64)) < 0.05), axis=1)
    dist = hamming(queries, codes)
    results = searcher.search(queries, k=10, radius=2)
    for qi, res in enumerate(results):
        want_rows, want_d = brute(dist[qi], row_ids, codes)
        assert res.strategy in ("ball", "mih", "mih+fill")  # a small ball goes first
        assert res.row_ids.tolist() == want_rows[:10].tolist() and res.distances.tolist() == want_d[:10].tolist()
        if res.strategy != "ball":
            assert res.searched_radius >= searcher.multi_index.searched(0)
        assert res.filled.tolist() == (res.distances > res.searched_radius).tolist()
    assert searcher.multi_index.m == 2  # two 32-bit substrings
    assert searcher.multi_index.widths == [32, 32]


# --- skewed buckets ------------------------------------------------------------------------------
def skewed_data(bits, seed=21):
    """120,000 items, half of them in three buckets of 30,000, 20,000 and 10,000 (as empty texts or
    one dominant class put them), the rest clustered; queries on, next to and far from the big codes."""
    rng = np.random.default_rng(seed)
    big = random_codes(rng, 3, bits)
    items = np.concatenate([np.repeat(big, [30_000, 20_000, 10_000], axis=0),
                            clustered_codes(rng, 60_000, bits, n_centers=30, flip_p=2 / bits)])
    flip_one = np.unpackbits(big, axis=1)
    flip_one[:, 3] ^= 1
    queries = np.concatenate([big, np.packbits(flip_one, axis=1), items[rng.choice(len(items), 6)],
                              random_codes(rng, 4, bits)])
    row_ids = rng.permutation(len(items) * 2)[:len(items)].astype(np.int64)
    return row_ids, items, queries


@pytest.mark.parametrize("bits", (32, 64))
def test_skewed_buckets_match_brute_force_with_bounded_work(monkeypatch, bits):
    import semhash.search as search_mod

    row_ids, items, queries = skewed_data(bits)
    searcher = make_searcher(row_ids, items, bits)
    assert searcher.buckets.sizes().max() == 30_000
    dist = hamming(queries, items)
    expanded = []
    want = [brute(dist[qi], row_ids, items) for qi in range(len(queries))]
    real = search_mod.concat_ranges
    monkeypatch.setattr(search_mod, "concat_ranges", lambda s, n: expanded.append(int(np.sum(n))) or real(s, n))
    for strategy in STRATEGIES:
        for k in (1, 10, 100):
            expanded.clear()
            results = searcher.search(queries, k=k, radius=2, strategy=strategy)
            # a k-nearest query takes at most k items, however large the buckets it touches (twice
            # k where the ball falls short of k and the fill answers it again)
            assert sum(expanded) <= 2 * len(queries) * k, (strategy, k, expanded)
            for qi, res in enumerate(results):
                want_rows, want_d = want[qi]
                assert res.row_ids.tolist() == want_rows[:k].tolist(), (strategy, k, qi)
                assert res.distances.tolist() == want_d[:k].tolist()
                assert res.filled.tolist() == (res.distances > res.searched_radius).tolist()
        for qi, res in enumerate(searcher.search(queries[:8], k=None, radius=2, strategy=strategy)):
            want_rows, want_d = want[qi]
            assert res.row_ids.tolist() == want_rows[want_d <= 2].tolist(), (strategy, qi)
            assert res.distances.tolist() == want_d[want_d <= 2].tolist()


# --- the pivot fill ------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", (40, 64))
def test_pivot_range_search_matches_brute_force(bits):
    """Every code within each query's own tau, each once, whatever the pivots; queries whose lists hold
    more than max_codes codes are left out, and the rest are still exact."""
    from semhash.buckets import code_keys
    from semhash.pivots import PivotIndex

    rng = np.random.default_rng(bits)
    keys = np.unique(code_keys(clustered_codes(rng, 3000, bits, n_centers=12, flip_p=3 / bits)))
    queries = np.concatenate([keys[:5], code_keys(clustered_codes(rng, 15, bits, n_centers=3, flip_p=0.1))])
    tau = rng.integers(0, bits // 3, size=len(queries))
    want = [set(np.flatnonzero(np.unpackbits((keys ^ q).view(np.uint8)).reshape(-1, 64).sum(1) <= t).tolist())
            for q, t in zip(queries, tau)]
    for n_pivots, band in ((1, 2), (7, 1), (60, 2), (60, 65)):
        index = PivotIndex(keys, bits, n_pivots=n_pivots, band=band)
        cell_sizes = np.diff(index.cell_offsets)
        assert cell_sizes.sum() == len(keys) and len(index.pivots) == n_pivots
        q, b, d, over = index.range_search(queries, tau)
        assert len(over) == 0 and np.all(np.diff(q) >= 0)
        for i in range(len(queries)):
            got = b[q == i]
            assert len(set(got.tolist())) == len(got) and set(got.tolist()) == want[i], (n_pivots, i)
            assert np.array_equal(d[q == i], np.unpackbits((keys[got] ^ queries[i]).view(np.uint8))
                                  .reshape(-1, 64).sum(1))
        # the codes of the lists (a pivot's codes at distances band * j .. band * j + band - 1 from it)
        # that each query must scan, by the triangle inequality
        p = np.unpackbits((queries[:, None] ^ index.pivots[None, :]).view(np.uint8), axis=-1) \
            .reshape(len(queries), n_pivots, 64).sum(-1).astype(int)
        tau = tau.astype(int)
        sizes = cell_sizes.reshape(n_pivots, -1)
        listed = np.array([sum(sizes[j, int(max(p[i, j] - tau[i], index.lo[j])) // band:
                                     int(min(p[i, j] + tau[i], index.hi[j])) // band + 1].sum()
                               for j in range(n_pivots) if max(p[i, j] - tau[i], index.lo[j]) <=
                               min(p[i, j] + tau[i], index.hi[j]))
                           for i in range(len(queries))])
        assert all(listed[i] >= len(want[i]) for i in range(len(queries)))
        limit = int(np.median(listed))
        q, b, d, over = index.range_search(queries, tau, max_codes=limit)
        assert over.tolist() == np.flatnonzero(listed > limit).tolist()
        for i in range(len(queries)):
            assert set(b[q == i].tolist()) == (set() if i in over else want[i])


@pytest.mark.parametrize("bits", (48, 64))
@pytest.mark.parametrize("scan_share", (2, 10**9))
def test_the_pivot_fill_answers_as_brute_force(monkeypatch, bits, scan_share):
    """The fill through pivots (every collection size here; with scan_share 10**9 no query's lists
    are cheap enough, so each falls back to the scan) gives the brute-force k nearest, skewed
    buckets included."""
    import semhash.pivots
    import semhash.search as search_mod

    monkeypatch.setattr(search_mod, "PIVOT_MIN_CODES", 0)
    monkeypatch.setattr(search_mod, "PIVOT_SCAN_SHARE", scan_share)
    calls = []
    real = semhash.pivots.PivotIndex.range_search
    monkeypatch.setattr(semhash.pivots.PivotIndex, "range_search",
                        lambda self, *a, **kw: calls.append(1) or real(self, *a, **kw))
    rng = np.random.default_rng(bits + scan_share % 7)
    items = np.concatenate([np.repeat(random_codes(rng, 2, bits), [900, 400], axis=0),
                            clustered_codes(rng, 2500, bits, n_centers=25, flip_p=3 / bits)])
    queries = np.concatenate([items[:3], clustered_codes(rng, 12, bits, n_centers=4, flip_p=0.15),
                              random_codes(rng, 5, bits)])
    row_ids = rng.permutation(len(items) * 2)[:len(items)].astype(np.int64)
    searcher = make_searcher(row_ids, items, bits)
    dist = hamming(queries, items)
    for strategy in ("ball", "mih", "auto"):
        for k in (1, 10, 150):
            results = searcher.search(queries, k=k, radius=1, strategy=strategy)
            assert any(r.strategy.endswith("+fill") for r in results)
            for qi, res in enumerate(results):
                want_rows, want_d = brute(dist[qi], row_ids, items)
                assert res.row_ids.tolist() == want_rows[:k].tolist(), (strategy, k, qi)
                assert res.distances.tolist() == want_d[:k].tolist()
                assert res.filled.tolist() == (res.distances > res.searched_radius).tolist()
    assert calls


def test_k_beyond_every_item_and_beyond_int64():
    """k larger than the collection (even past int64) is every item, in order, with no overflow; the
    fill's scan is asked in blocks, and the answer does not change with the block size."""
    import semhash.search as search_mod

    row_ids, items, queries, searcher, dist = dataset("clustered", 32)
    for k in (len(items), 10 ** 6, 2 ** 63, 10 ** 30):
        for qi, res in enumerate(searcher.search(queries[:5], k=k, radius=2)):
            want_rows, want_d = brute(dist[qi], row_ids, items)
            assert res.row_ids.tolist() == want_rows.tolist() and res.distances.tolist() == want_d.tolist()
    ref = searcher.search(queries, k=50, radius=32, strategy="scan")
    old = search_mod.FILL_BLOCK
    try:
        search_mod.FILL_BLOCK = 150  # one query per FAISS call
        again = searcher.search(queries, k=50, radius=32, strategy="scan")
    finally:
        search_mod.FILL_BLOCK = old
    assert [pairs(r) for r in again] == [pairs(r) for r in ref]
