"""Pivot filtering: exact Hamming range search over the distinct codes by the triangle inequality.

Each distinct code is filed under its nearest of C *pivots* (a seeded sample of the codes), in the
list of its band of distances t to that pivot (BAND distances a list); each pivot knows the least
and the greatest distance of its codes, [lo, hi]. A query at distance p from a pivot is at least
|p - t| from every code filed there at t (the triangle inequality of the Hamming distance), so the
codes within tau of the query all lie in the lists of distances [max(p - tau, lo), min(p + tau, hi)].
The codes are stored list after list, a pivot's lists in order of distance, so those lists are one
run of memory per pivot; a compiled loop (kernels.pivot_range) scans the runs and verifies every code
with its full distance, so the answer is exact whatever the pivots.

This serves the k-nearest search's fill: the queries whose k-th neighbour lies beyond what the ball
and multi-index hashing searched are the ones in sparse regions, where substrings of clustered codes
say little and the alternative is a scan of every distinct code. On 1M replicated 64-bit
Fashion-MNIST codes (594,000 distinct, 1,024 pivots), such a query scans about 24,000 codes at tau = 7,
under 2 ns each. FAISS's range search over the same lists (an IndexBinaryIVF fed these lists) cost
about twice that and took a third of the fill's time in preparing its probe lists: the fill of the
1,731 such queries of 10,000 went from 0.35 to 0.16 s.
"""
from __future__ import annotations

import numpy as np

from .ann import nearest_codes

PIVOTS_PER_ROOT = 4 / 3    # pivots = 4/3 sqrt(distinct codes), clamped to [MIN_PIVOTS, MAX_PIVOTS]: 1,024 at
MIN_PIVOTS, MAX_PIVOTS = 16, 4096  # 594,000 codes, where 256-4,096 pivots and bands of 1, 2, 4, 65 were tried
BAND = 2                   # a pivot's codes are filed in lists by their distance to it, BAND distances a list


class PivotIndex:
    def __init__(self, keys: np.ndarray, bits: int, n_pivots: int | None = None, seed: int = 0,
                 band: int = BAND):
        """keys: the distinct codes (uint64, a code in the low `bits` <= 64 bits)."""
        self.bits, self.band = bits, band
        n = len(keys)
        c = n_pivots or int(np.clip(PIVOTS_PER_ROOT * np.sqrt(n), MIN_PIVOTS, MAX_PIVOTS))
        c = max(1, min(c, n))
        pick = np.sort(np.random.default_rng(seed).choice(n, c, replace=False)) if n else np.zeros(0, np.int64)
        self.pivots = np.ascontiguousarray(keys[pick], dtype=np.uint64)
        codes = _as_bytes(keys)
        dist, near = nearest_codes(_as_bytes(self.pivots), codes) if n else (np.zeros(0, np.int64),) * 2
        self.n_bands = bits // band + 1
        cell = near * self.n_bands + dist // band   # list = (pivot, band of distances to it)
        self.cell_offsets = np.r_[0, np.cumsum(np.bincount(cell, minlength=c * self.n_bands))].astype(np.int64)
        self.lo = np.full(c, bits + 1, np.int64)
        self.hi = np.full(c, -1, np.int64)  # an empty list: lo > hi, never probed
        np.minimum.at(self.lo, near, dist)
        np.maximum.at(self.hi, near, dist)
        # the codes by list, a pivot's lists in order of distance: its lists of distances [a, b] are one run
        order = np.argsort(cell, kind="stable")
        self.codes = np.ascontiguousarray(keys[order], dtype=np.uint64)
        self.ids = order.astype(np.int32 if n < 2 ** 31 else np.int64)
        self.range_search(self.pivots[:0], np.zeros(0, np.int64))  # loads (or compiles) the scan now, not at a query

    def nbytes(self) -> int:
        return (self.pivots.nbytes + self.cell_offsets.nbytes + self.lo.nbytes * 2 + self.codes.nbytes
                + self.ids.nbytes)

    def range_search(self, qkeys: np.ndarray, tau: np.ndarray, max_codes: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every code within tau[i] of query i (inclusive): (query, code index, distance), by query, and
        the queries left out because their lists hold more than `max_codes` codes."""
        from .kernels import pivot_range

        qkeys = np.ascontiguousarray(qkeys, np.uint64)
        tau = np.ascontiguousarray(tau, np.int64)
        q, b, d, over = pivot_range(qkeys, tau, self.pivots, self.lo, self.hi, self.band, self.n_bands,
                                    self.cell_offsets, self.codes, self.ids,
                                    np.iinfo(np.int64).max if max_codes is None else max_codes)
        return q, b, d, np.flatnonzero(over)


def _as_bytes(keys: np.ndarray) -> np.ndarray:
    """uint64 keys as 8 packed bytes each: Hamming distances between keys are those between these rows."""
    return np.ascontiguousarray(np.asarray(keys, np.uint64)).view(np.uint8).reshape(-1, 8)
