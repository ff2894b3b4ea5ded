"""The FAISS scan over distinct codes (CodeScan) against brute-force Hamming distances (codes.hamming)."""
from __future__ import annotations

import numpy as np
import pytest

from semhash.ann import CodeScan
from semhash.codes import hamming


def make(seed: int, n: int, bits: int):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, size=(12, bits // 8), dtype=np.uint8)
    queries[0] = codes[0]
    queries[1] = codes[3]
    return codes, queries


@pytest.mark.parametrize("bits", [8, 16, 64, 128])
def test_search_gives_the_exact_k_smallest_distances(bits):
    codes, queries = make(bits, 300, bits)
    scan = CodeScan(codes, bits)
    assert len(scan) == 300 and scan.nbytes() == 300 * bits // 8
    full = hamming(queries, codes)
    for k in (1, 7, 300):
        d, idx = scan.search(queries, k)
        assert d.shape == idx.shape == (len(queries), k)
        for q in range(len(queries)):
            assert d[q].tolist() == np.sort(full[q])[:k].tolist()
            assert [int(full[q, i]) for i in idx[q]] == d[q].tolist()  # each id is a position at its distance


@pytest.mark.parametrize("bits,radius", [(8, 0), (16, 3), (64, 20), (128, 60)])
def test_range_search_is_inclusive_and_complete(bits, radius):
    codes, queries = make(bits + radius, 200, bits)
    lims, d, idx = CodeScan(codes, bits).range_search(queries, radius)
    full = hamming(queries, codes)
    for q in range(len(queries)):
        got = dict(zip(idx[lims[q]:lims[q + 1]].tolist(), d[lims[q]:lims[q + 1]].tolist()))
        assert got == {i: int(full[q, i]) for i in np.flatnonzero(full[q] <= radius)}


def test_range_search_with_a_radius_per_query_keeps_query_order():
    codes, queries = make(5, 150, 16)
    radii = np.arange(len(queries)) % 5
    scan = CodeScan(codes, 16)
    lims, d, idx = scan.range_search(queries, radii)
    for q in range(len(queries)):
        one = scan.range_search(queries[q:q + 1], int(radii[q]))
        assert sorted(idx[lims[q]:lims[q + 1]].tolist()) == sorted(one[2].tolist())


def test_empty_scan_and_empty_queries():
    codes, queries = make(1, 10, 16)
    lims, d, idx = CodeScan(np.zeros((0, 2), np.uint8), 16).range_search(queries, 3)
    assert lims.tolist() == [0] * (len(queries) + 1) and len(d) == len(idx) == 0
    lims, d, idx = CodeScan(codes, 16).range_search(np.zeros((0, 2), np.uint8), 3)
    assert lims.tolist() == [0] and len(d) == 0
