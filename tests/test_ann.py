"""The FAISS binary index wrapper against brute-force Hamming distances (semhash.codes.hamming)."""
from __future__ import annotations

import numpy as np
import pytest

from semhash.ann import BinaryANN
from semhash.codes import hamming
from semhash.errors import IndexError_


def make(seed: int, n: int, bits: int):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
    codes[n // 2: n // 2 + 10] = codes[0]  # duplicates: ties at distance 0
    row_ids = rng.permutation(n).astype(np.int64) * 5 + 11  # arbitrary, not positions
    queries = rng.integers(0, 256, size=(12, bits // 8), dtype=np.uint8)
    queries[0] = codes[0]
    queries[1] = codes[3]
    return row_ids, codes, queries


def brute(row_ids, codes, queries):
    """(n_queries, n) distances, and the row ids, from codes.hamming."""
    return hamming(queries, codes), row_ids


def check_knn(ann, row_ids, codes, queries, k):
    d, ids = ann.search(queries, k)
    full, _ = brute(row_ids, codes, queries)
    code_of = dict(zip(row_ids.tolist(), map(bytes, codes)))
    assert d.shape == ids.shape == (len(queries), min(k, len(codes)))
    for q in range(len(queries)):
        expected = np.sort(full[q])[:d.shape[1]]
        assert d[q].tolist() == expected.tolist()  # the exact k smallest distances
        for dist, rid in zip(d[q].tolist(), ids[q].tolist()):  # and each id is at its reported distance
            assert int(hamming(queries[q:q + 1], np.frombuffer(code_of[rid], np.uint8)[None])[0, 0]) == dist


@pytest.mark.parametrize("bits", [8, 16, 64, 128])
def test_search_matches_brute_force(bits):
    row_ids, codes, queries = make(bits, 400, bits)
    ann = BinaryANN.build(bits, row_ids, codes)
    assert len(ann) == 400
    for k in (1, 5, 50):
        check_knn(ann, row_ids, codes, queries, k)


def test_search_k_larger_than_index_and_empty_index():
    row_ids, codes, queries = make(0, 7, 16)
    ann = BinaryANN.build(16, row_ids, codes)
    check_knn(ann, row_ids, codes, queries, 100)
    empty = BinaryANN(16)
    d, ids = empty.search(queries, 5)
    assert len(empty) == 0 and (ids == -1).all() and len(d) == len(queries)


def ranges_as_dict(lims, d, ids, nq):
    assert lims.shape == (nq + 1,) and lims[0] == 0 and lims[-1] == len(d) == len(ids)
    return [dict(zip(ids[lims[i]:lims[i + 1]].tolist(), d[lims[i]:lims[i + 1]].tolist())) for i in range(nq)]


def expected_ranges(row_ids, codes, queries, radii):
    full, _ = brute(row_ids, codes, queries)
    return [{int(r): int(full[q, j]) for j, r in enumerate(row_ids) if full[q, j] <= radii[q]}
            for q in range(len(queries))]


@pytest.mark.parametrize("bits,radius", [(16, 0), (16, 1), (16, 4), (32, 12), (64, 28), (16, 16)])
def test_range_search_scalar_radius_is_inclusive(bits, radius):
    row_ids, codes, queries = make(radius, 500, bits)
    ann = BinaryANN.build(bits, row_ids, codes)
    lims, d, ids = ann.range_search(queries, radius)
    got = ranges_as_dict(lims, d, ids, len(queries))
    want = expected_ranges(row_ids, codes, queries, [radius] * len(queries))
    assert got == want
    assert sum(map(len, want)) > 0
    if radius < bits:  # something lies exactly on the boundary: it must be included
        full, _ = brute(row_ids, codes, queries)
        if (full == radius).any():
            assert radius in d.tolist()
    for q in range(len(queries)):  # each item once per query
        seg = ids[lims[q]:lims[q + 1]]
        assert len(seg) == len(set(seg.tolist()))
    if radius == 0:
        assert set(got[0]) >= {int(r) for r in row_ids[np.all(codes == codes[0], axis=1)]}


def test_range_search_per_query_radii():
    bits = 16
    row_ids, codes, queries = make(3, 600, bits)
    ann = BinaryANN.build(bits, row_ids, codes)
    radii = np.array([0, 3, 1, 5, 3, 0, 2, 6, 4, 1, 3, 2])
    lims, d, ids = ann.range_search(queries, radii)
    got = ranges_as_dict(lims, d, ids, len(queries))
    assert got == expected_ranges(row_ids, codes, queries, radii)
    # the same as one call per query with a scalar radius
    for q in range(len(queries)):
        l1, d1, i1 = ann.range_search(queries[q:q + 1], int(radii[q]))
        assert dict(zip(i1.tolist(), d1.tolist())) == got[q]


def test_range_search_empty_inputs():
    row_ids, codes, queries = make(4, 50, 16)
    lims, d, ids = BinaryANN(16).range_search(queries, 3)
    assert lims.tolist() == [0] * (len(queries) + 1) and d.size == 0 and ids.size == 0
    ann = BinaryANN.build(16, row_ids, codes)
    lims, d, ids = ann.range_search(np.zeros((0, 2), np.uint8), 3)
    assert lims.tolist() == [0] and d.size == 0


def test_remove():
    bits = 32
    row_ids, codes, queries = make(5, 300, bits)
    ann = BinaryANN.build(bits, row_ids, codes)
    gone = row_ids[::3]
    assert ann.remove(np.concatenate([gone, [-5, 10**9]])) == len(gone)  # unknown ids are not counted
    assert ann.remove(np.zeros(0, np.int64)) == 0
    keep = np.ones(len(row_ids), bool)
    keep[::3] = False
    assert len(ann) == keep.sum()
    ids, cs = ann.contents()
    order = np.argsort(row_ids[keep])
    np.testing.assert_array_equal(ids, row_ids[keep][order])
    np.testing.assert_array_equal(cs, codes[keep][order])
    check_knn(ann, row_ids[keep], codes[keep], queries, 10)
    lims, d, i = ann.range_search(queries, 10)
    assert ranges_as_dict(lims, d, i, len(queries)) == expected_ranges(row_ids[keep], codes[keep], queries,
                                                                        [10] * len(queries))
    assert not set(i.tolist()) & set(gone.tolist())


def test_contents_returns_what_was_added():
    bits = 24
    row_ids, codes, _ = make(6, 100, bits)
    ann = BinaryANN(bits)
    ann.add(row_ids[:60], codes[:60])
    ann.add(row_ids[60:], codes[60:])
    ann.add(np.zeros(0, np.int64), np.zeros((0, 3), np.uint8))  # a no-op
    ids, cs = ann.contents()
    order = np.argsort(row_ids)
    np.testing.assert_array_equal(ids, row_ids[order])
    np.testing.assert_array_equal(cs, codes[order])
    assert cs.dtype == np.uint8 and cs.shape == (100, 3)
    ids, cs = BinaryANN(bits).contents()
    assert ids.shape == (0,) and cs.shape == (0, 3)


def test_save_load_round_trip(tmp_path):
    bits = 32
    row_ids, codes, queries = make(7, 500, bits)
    ann = BinaryANN.build(bits, row_ids, codes)
    ann.remove(row_ids[:20])
    ann.save(tmp_path / "faiss.index")
    loaded = BinaryANN.load(tmp_path / "faiss.index", bits)
    assert len(loaded) == len(ann) == 480
    for a, b in zip(ann.search(queries, 15), loaded.search(queries, 15)):
        np.testing.assert_array_equal(a, b)
    for r in (2, 9, np.arange(len(queries)) % 11):
        for a, b in zip(ann.range_search(queries, r), loaded.range_search(queries, r)):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(ann.contents(), loaded.contents()):  # a loaded index can list its contents
        np.testing.assert_array_equal(a, b)
    # and it stays usable: add and remove after loading
    loaded.add(np.array([10**6], np.int64), codes[:1])
    assert loaded.remove(np.array([10**6, int(row_ids[30])])) == 2
    assert len(loaded) == 479


def test_load_refuses_wrong_width_and_garbage(tmp_path):
    row_ids, codes, _ = make(8, 10, 16)
    BinaryANN.build(16, row_ids, codes).save(tmp_path / "faiss.index")
    with pytest.raises(IndexError_, match="16-bit codes, expected 32"):
        BinaryANN.load(tmp_path / "faiss.index", 32)
    (tmp_path / "bad.index").write_bytes(b"not a faiss index")
    with pytest.raises(IndexError_, match="semhash rebuild"):
        BinaryANN.load(tmp_path / "bad.index", 16)
