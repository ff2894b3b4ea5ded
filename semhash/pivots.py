"""Pivot filtering: exact Hamming range search over the distinct codes by the triangle inequality.

Each distinct code is filed under its nearest of C *pivots* (a seeded sample of the codes), in the
list of its band of distances t to that pivot (BAND distances a list); each pivot knows the least
and the greatest distance of its codes, [lo, hi]. A query at distance p from a pivot is at least
|p - t| from every code filed there at t (the triangle inequality of the Hamming distance), so the
codes within tau of the query all lie in the lists of distances [max(p - tau, lo), min(p + tau, hi)].
FAISS scans those lists (ann.ListScan) and every code is verified with its full distance, so the
answer is exact whatever the pivots.

This serves the k-nearest search's fill: the queries whose k-th neighbour lies beyond what the ball
and multi-index hashing searched are the ones in sparse regions, where substrings of clustered codes
say little and the alternative is a scan of every distinct code. On 1M replicated 64-bit
Fashion-MNIST codes (594,000 distinct, 1,024 pivots), such a query scans some tens of thousands of
codes at tau = 7, and the fill took a third of the scan's time or less (scripts/bench_query.py).
"""
from __future__ import annotations

import numpy as np

from .ann import ListScan, nearest_codes
from .codes import concat_ranges, popcount

PIVOTS_PER_ROOT = 4 / 3    # pivots = 4/3 sqrt(distinct codes), clamped to [MIN_PIVOTS, MAX_PIVOTS]: 1,024 at
MIN_PIVOTS, MAX_PIVOTS = 16, 4096  # 594,000 codes, where 256-4,096 pivots and bands of 1, 2, 4, 65 were tried
PAIR_BLOCK = 1 << 21       # (query, pivot) pairs computed at once
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
        self.cell_sizes = np.bincount(cell, minlength=c * self.n_bands)
        self.lo = np.full(c, bits + 1, np.int64)
        self.hi = np.full(c, -1, np.int64)  # an empty list: lo > hi, never probed
        np.minimum.at(self.lo, near, dist)
        np.maximum.at(self.hi, near, dist)
        self.lists = ListScan(codes, cell, c * self.n_bands)

    def nbytes(self) -> int:
        return self.pivots.nbytes + self.cell_sizes.nbytes + self.lo.nbytes * 2 + self.lists.nbytes()

    def range_search(self, qkeys: np.ndarray, tau: np.ndarray, max_codes: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every code within tau[i] of query i (inclusive): (query, code index, distance), by query, and
        the queries left out because their lists hold more than `max_codes` codes."""
        qkeys, tau = np.asarray(qkeys, np.uint64), np.asarray(tau, np.int64)
        out_q, out_b, out_d, over = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], []
        step = max(1, PAIR_BLOCK // len(self.pivots))
        for a in range(0, len(qkeys), step):
            p = popcount(qkeys[a:a + step, None] ^ self.pivots[None, :]).astype(np.int64)
            t = tau[a:a + step, None]
            first = np.maximum(p - t, self.lo)  # the distances to the pivot that may hold a code within t
            last = np.minimum(p + t, self.hi)
            q, pivot = np.nonzero(last >= first)
            first, last = first[q, pivot] // self.band, last[q, pivot] // self.band
            n = last - first + 1
            cells = concat_ranges(pivot * self.n_bands + first, n)
            owner = np.repeat(q, n)
            size = self.cell_sizes[cells]
            full = size > 0
            cells, owner, size = cells[full], owner[full], size[full]
            ok = np.ones(len(p), bool)
            if max_codes is not None:
                ok = np.bincount(owner, weights=size, minlength=len(p)) <= max_codes
                over.append(a + np.flatnonzero(~ok))
            for value in np.unique(t[ok]):  # FAISS takes one radius per call
                which = np.flatnonzero(ok & (t[:, 0] == value))
                keep = np.isin(owner, which)  # owner is sorted: rows of `which`, in order
                lims, d, ids = self.lists.range_search(_as_bytes(qkeys[a + which]), int(value),
                                                       _probe_matrix(owner[keep], cells[keep], which))
                out_q.append(a + np.repeat(which, np.diff(lims)))
                out_b.append(ids)
                out_d.append(d.astype(np.int64))
        q, b, d = np.concatenate(out_q), np.concatenate(out_b), np.concatenate(out_d)
        order = np.argsort(q, kind="stable")
        over = np.concatenate(over) if over else np.zeros(0, np.int64)
        return q[order], b[order], d[order], over


def _probe_matrix(owner: np.ndarray, cells: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The cells of each of `rows` (owner: each cell's row, sorted), left-aligned, padded with -1."""
    pos = np.searchsorted(rows, owner)
    counts = np.bincount(pos, minlength=len(rows))
    out = np.full((len(rows), int(counts.max()) if len(counts) else 0), -1, np.int64)
    out[pos, np.arange(len(pos)) - (np.cumsum(counts) - counts)[pos]] = cells
    return out


def _as_bytes(keys: np.ndarray) -> np.ndarray:
    """uint64 keys as 8 packed bytes each: Hamming distances between keys are those between these rows."""
    return np.ascontiguousarray(np.asarray(keys, np.uint64)).view(np.uint8).reshape(-1, 8)
