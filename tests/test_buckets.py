"""The bucket table (code -> row ids) against a plain dict-of-lists oracle."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from semhash.buckets import BucketTable, code_keys
from semhash.codes import to_keys


def random_table(seed: int, n: int, bits: int, distinct: int):
    """Row ids (shuffled, not contiguous) and codes drawn from `distinct` values: many duplicates."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, size=(distinct, bits // 8), dtype=np.uint8)
    pool[0] = 0xFF  # the largest key (all ones)
    pool[-1] = 0    # key 0
    codes = pool[rng.integers(0, distinct, size=n)]
    row_ids = rng.permutation(np.arange(n, dtype=np.int64) * 3 + 7)
    return row_ids, codes


def oracle(row_ids, codes) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for rid, key in zip(row_ids.tolist(), code_keys(codes).tolist()):
        out[key].append(rid)
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("seed,n,bits,distinct", [(0, 500, 16, 40), (1, 2000, 32, 300), (2, 300, 64, 5),
                                                  (3, 1, 8, 1), (4, 200, 8, 256)])
def test_build_matches_oracle(seed, n, bits, distinct):
    row_ids, codes = random_table(seed, n, bits, distinct)
    table = BucketTable.build(row_ids, codes)
    expected = oracle(row_ids, codes)

    assert len(table) == n
    assert table.n_buckets == len(expected)
    assert table.keys.dtype == np.uint64 and table.offsets.dtype == np.int64 and table.row_ids.dtype == np.int64
    assert table.keys.tolist() == sorted(expected)  # sorted, distinct
    assert table.offsets[0] == 0 and table.offsets[-1] == n
    for i, key in enumerate(table.keys.tolist()):
        bucket = table.row_ids[table.offsets[i]:table.offsets[i + 1]].tolist()
        assert bucket == expected[key]  # ascending within a bucket
    assert sorted(table.row_ids.tolist()) == sorted(row_ids.tolist())


@pytest.mark.parametrize("seed,bits", [(0, 16), (1, 32), (2, 64)])
def test_find_gather_lookup_match_oracle(seed, bits):
    row_ids, codes = random_table(seed, 800, bits, 60)
    table = BucketTable.build(row_ids, codes)
    expected = oracle(row_ids, codes)
    rng = np.random.default_rng(seed + 100)
    present = rng.choice(np.array(sorted(expected), dtype=np.uint64), size=40)
    absent = to_keys(rng.integers(0, 256, size=(40, bits // 8), dtype=np.uint8))
    probes = rng.permutation(np.concatenate([present, absent, present[:5]]))  # repeats too

    found = table.find(probes)
    assert found.shape == probes.shape
    for p, f in zip(probes.tolist(), found.tolist()):
        if p in expected:
            assert f >= 0 and int(table.keys[f]) == p
        else:
            assert f == -1

    rows, owner = table.gather(found)
    assert len(rows) == len(owner) == sum(len(expected.get(p, [])) for p in probes.tolist())
    for j, p in enumerate(probes.tolist()):
        assert rows[owner == j].tolist() == expected.get(p, [])
    assert np.all(np.diff(owner) >= 0)  # grouped in probe order

    buckets = table.lookup(probes)
    assert len(buckets) == len(probes)
    for p, b in zip(probes.tolist(), buckets):
        assert b.tolist() == expected.get(p, [])


def test_find_any_shape():
    row_ids, codes = random_table(5, 100, 16, 10)
    table = BucketTable.build(row_ids, codes)
    absent = np.uint64(1 << 20)  # wider than any 16-bit key
    probes = np.concatenate([table.keys[:3], [absent]]).astype(np.uint64).reshape(2, 2)
    found = table.find(probes)
    assert found.shape == (2, 2)
    assert found.tolist() == [[0, 1], [2, -1]]


def test_long_codes_grouped_by_the_whole_code():
    """128-bit codes: one bucket per distinct whole code, in code order, even where the first 64 bits
    agree; keys are the first 64 bits (for ordering), the distinct codes come back whole."""
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, size=(50, 16), dtype=np.uint8)  # 128 bits
    codes[10:20, :8] = codes[0, :8]  # same first 64 bits, different tails
    codes[30] = codes[0]             # and one exact duplicate
    table = BucketTable.build(np.arange(50), codes)
    assert table.n_buckets == 49
    distinct = table.distinct_codes()
    order = sorted(range(49), key=lambda i: distinct[i].tobytes())
    assert order == list(range(49))  # bucket order is code order
    for b in range(49):
        rows = table.row_ids[table.offsets[b]:table.offsets[b + 1]]
        assert all(codes[r].tobytes() == distinct[b].tobytes() for r in rows)
        assert rows.tolist() == sorted(rows.tolist())
    assert np.array_equal(table.keys, to_keys(distinct[:, :8]))
    same = int(np.flatnonzero((distinct == codes[0]).all(axis=1))[0])
    assert table.row_ids[table.offsets[same]:table.offsets[same + 1]].tolist() == [0, 30]


def test_empty_table():
    table = BucketTable.build(np.zeros(0, np.int64), np.zeros((0, 4), np.uint8))
    assert len(table) == 0 and table.n_buckets == 0
    assert table.offsets.tolist() == [0]
    probes = np.array([0, 1, 2**64 - 1], dtype=np.uint64)
    assert table.find(probes).tolist() == [-1, -1, -1]
    rows, owner = table.gather(table.find(probes))
    assert rows.size == 0 and owner.size == 0
    assert [b.size for b in table.lookup(probes)] == [0, 0, 0]
    assert table.sizes().size == 0
    stats = table.stats()
    assert stats["distinct_codes"] == 0 and stats["largest_bucket"] == 0
    # the same keys as a non-empty table's stats (info output has one shape)
    full = BucketTable.build(np.arange(3), np.zeros((3, 4), np.uint8)).stats()
    assert set(stats) == set(full)


def test_stats_and_nbytes():
    row_ids, codes = random_table(7, 1000, 32, 50)
    table = BucketTable.build(row_ids, codes)
    expected = oracle(row_ids, codes)
    sizes = sorted(len(v) for v in expected.values())
    stats = table.stats()
    assert stats["distinct_codes"] == len(expected)
    assert stats["largest_bucket"] == max(sizes) == stats["items_per_bucket"]["max"]
    assert stats["items_per_bucket"]["mean"] == pytest.approx(1000 / len(expected), abs=1e-3)
    assert stats["items_per_bucket"]["p50"] == pytest.approx(float(np.percentile(sizes, 50)))
    assert sorted(table.sizes().tolist()) == sizes
    # three flat arrays: 8 bytes per distinct key, 8 per offset (distinct + 1), 8 per row id
    assert table.nbytes() == 8 * len(expected) + 8 * (len(expected) + 1) + 8 * 1000
    assert stats["bytes"] == table.nbytes()
    assert stats["bytes_per_item"] == round(table.nbytes() / 1000, 2)


def test_from_keys_matches_build():
    row_ids, codes = random_table(9, 300, 64, 30)
    a = BucketTable.build(row_ids, codes)
    b = BucketTable.from_keys(row_ids, to_keys(codes))
    for x, y in ((a.keys, b.keys), (a.offsets, b.offsets), (a.row_ids, b.row_ids)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_find_hits_filter_has_no_false_negatives(bits):
    """The bit filter in front of the binary search may let misses through, never drop a hit:
    many keys (a filter of many words), probes near and far, against np.isin."""
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 256, size=(30000, bits // 8), dtype=np.uint8)
    table = BucketTable.build(np.arange(len(codes)), codes)
    keys = to_keys(codes)
    probes = np.concatenate([keys ^ np.uint64(1), keys, to_keys(rng.integers(0, 256, (30000, bits // 8), np.uint8))])
    where, idx = table.find_hits(probes)
    expected = np.flatnonzero(np.isin(probes, table.keys))
    assert where.tolist() == expected.tolist()
    assert np.array_equal(table.keys[idx], probes[where])
    rows, sizes = table.expand(idx)
    assert len(rows) == sizes.sum() and sizes.min() >= 1


def test_probe_grid_equals_find_hits_and_hash_is_xor_linear():
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, size=(5000, 4), dtype=np.uint8)
    codes[2500:] = codes[:2500] ^ np.uint8(1)  # near neighbours, so the grid has hits
    table = BucketTable.build(np.arange(len(codes)), codes)
    queries = to_keys(codes[rng.choice(len(codes), 50)])
    masks = np.concatenate([np.zeros(1, np.uint64), np.uint64(1) << np.arange(32, dtype=np.uint64)])
    grid = (queries[:, None] ^ masks[None, :]).ravel()
    assert [a.tolist() for a in table.probe(queries, masks)] == [a.tolist() for a in table.find_hits(grid)]
    _, hash_ = table._get_filter()
    a, b = to_keys(codes[:100]), to_keys(codes[100:200])
    assert np.array_equal(hash_(a ^ b), hash_(a) ^ hash_(b))
