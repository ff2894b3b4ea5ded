"""The query module: exact bucket first, then the Hamming ball by bit flips, then an exact FAISS fill.

Semantics (for every strategy, so the caller gets the same answer whichever runs):
- radius mode (`k=None`): every stored item within Hamming distance `radius` (inclusive), each once.
- k-nearest mode: the ball grows by one bit at a time (distance 0, 1, 2, ...) until it holds `k`
  items or reaches `radius`; queries still short of `k` are filled with the exact nearest items
  from the FAISS index, marked `filled`. The result is the exact k nearest either way.
- order: by distance, then by row id (the order items were first indexed); ties are thus
  deterministic, and the first k by that order are returned.
- `searched_radius`: the largest distance up to which every stored item was examined.

Strategies: "ball" enumerates sum_{i<=r} C(bits, i) probe codes per query against the bucket
table (vectorized over the whole batch); "scan" asks FAISS for an exhaustive Hamming search.
"auto" picks by a cost model: probes cost about PROBE_COST item-scans each.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ann import BinaryANN
from .buckets import BucketTable, code_keys
from .codes import ball_size, flip_masks
from .errors import ConfigError

PROBE_COST = 60          # one bucket probe costs about this many FAISS item comparisons
PROBE_BLOCK = 1 << 21    # probes materialized at once (memory bound: ~16 bytes each)
STRATEGIES = ("auto", "ball", "scan")


@dataclass
class Result:
    """The answer to one query: row ids in order, their distances, which came from the FAISS fill."""

    row_ids: np.ndarray
    distances: np.ndarray
    filled: np.ndarray
    searched_radius: int
    strategy: str


class Searcher:
    def __init__(self, buckets: BucketTable, ann: BinaryANN, bits: int):
        self.buckets, self.ann, self.bits = buckets, ann, bits
        self._masks: dict[int, np.ndarray] = {}

    def masks(self, d: int) -> np.ndarray:
        if d not in self._masks:
            self._masks[d] = flip_masks(self.bits, d)
        return self._masks[d]

    def plan(self, k: int | None, radius: int, strategy: str = "auto") -> tuple[str, int]:
        """(strategy, ball radius): how far the bit-flip ball goes before the scan takes over."""
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if strategy == "scan" or self.bits > 64:
            if strategy == "ball":
                raise ConfigError("the ball strategy needs codes of at most 64 bits")
            return "scan", -1
        if strategy == "ball":
            return "ball", radius
        n = max(1, len(self.buckets))
        r = -1
        while r < radius and ball_size(self.bits, r + 1) * PROBE_COST <= n:
            r += 1
        if r < 0 or (k is None and r < radius):
            return "scan", -1
        return "ball", r

    def search(self, codes: np.ndarray, k: int | None = 10, radius: int = 2, strategy: str = "auto") -> list[Result]:
        """Answer a batch of packed query codes (n, bits // 8)."""
        if radius < 0 or radius > self.bits:
            raise ConfigError(f"radius must be between 0 and the code length ({self.bits}), got {radius}")
        if k is not None and k < 1:
            raise ConfigError(f"k must be at least 1 (or None for every item within the radius), got {k}")
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        nq = len(codes)
        name, ball_r = self.plan(k, radius, strategy)
        if name == "scan":
            if k is None:
                return self._scan_radius(codes, radius)
            # a scan examines every item: the whole code space is searched, nothing is a fill
            results = [Result(*_empty(), searched_radius=self.bits, strategy="scan") for _ in range(nq)]
            self._fill(codes, np.arange(nq), results, k)
            return results
        qidx, rows, dists, searched = self._ball(codes, k, ball_r)
        results = _split(nq, qidx, rows, dists, k, searched, "ball")
        if k is not None:
            short = np.flatnonzero([len(r.row_ids) < k for r in results])
            if len(short) and len(self.ann):
                self._fill(codes, short, results, k)
        return results

    def _ball(self, codes: np.ndarray, k: int | None, radius: int):
        keys = code_keys(codes)
        nq = len(keys)
        counts = np.zeros(nq, dtype=np.int64)
        searched = np.full(nq, -1, dtype=np.int64)
        active = np.arange(nq)
        parts_q, parts_r, parts_d = [], [], []
        for d in range(radius + 1):
            masks = self.masks(d)
            step = max(1, PROBE_BLOCK // len(masks))
            for start in range(0, len(active), step):
                chunk = active[start:start + step]
                probes = keys[chunk, None] ^ masks[None, :]
                rows, owner = self.buckets.gather(self.buckets.find(probes))
                if len(rows):
                    q = chunk[owner // len(masks)]
                    parts_q.append(q)
                    parts_r.append(rows)
                    parts_d.append(np.full(len(rows), d, dtype=np.int32))
                    counts += np.bincount(q, minlength=nq)
            searched[active] = d
            if k is not None:
                active = active[counts[active] < k]
                if not len(active):
                    break
        if not parts_q:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32), searched
        return np.concatenate(parts_q), np.concatenate(parts_r), np.concatenate(parts_d), searched

    def _scan_radius(self, codes: np.ndarray, radius: int) -> list[Result]:
        lims, d, ids = self.ann.range_search(codes, radius)
        q = np.repeat(np.arange(len(codes)), np.diff(lims))
        return _split(len(codes), q, ids, d, None, np.full(len(codes), radius), "scan")

    def _fill(self, codes: np.ndarray, which: np.ndarray, results: list[Result], k: int) -> None:
        """Replace the answers of queries `which` by the exact k nearest (ties by row id) from FAISS."""
        sub = codes[which]
        kk = min(k, len(self.ann))
        if kk == 0:
            return
        # Ask FAISS for more than k: where the extra neighbours lie strictly beyond the k-th distance,
        # every tie at the boundary is already in hand and is ordered by row id here. Only queries
        # whose ties run past the extra ones need a second, range-search pass.
        wide = min(len(self.ann), 2 * kk)
        dw, iw = self.ann.search(sub, wide)
        kth = dw[:, kk - 1]
        ties_cut = (dw[:, wide - 1] == kth) & (wide < len(self.ann))
        keep = dw <= kth[:, None]
        q = np.repeat(np.arange(len(sub)), keep.sum(axis=1))
        ids, d = iw[keep], dw[keep]
        if ties_cut.any():
            again = np.flatnonzero(ties_cut)
            lims, d2, ids2 = self.ann.range_search(sub[again], kth[again])
            q2 = np.repeat(again, np.diff(lims))
            drop = np.isin(q, again)
            q, ids, d = np.r_[q[~drop], q2], np.r_[ids[~drop], ids2], np.r_[d[~drop], d2]
        exact = _split(len(sub), q, ids, d, k, kth, "scan")
        for j, qi in enumerate(which):
            old = results[qi]
            res = exact[j]
            res.filled = res.distances > old.searched_radius
            res.searched_radius = old.searched_radius
            res.strategy = old.strategy if old.strategy == "scan" else f"{old.strategy}+fill"
            results[qi] = res


def _empty():
    return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, bool)


def _sort_triples(q: np.ndarray, rows: np.ndarray, dists: np.ndarray):
    """Sort (query, distance, row id) triples. Packed into one uint64 key when they fit (one sort
    of one array is several times faster than a three-key lexsort); lexsort otherwise."""
    if not len(q):
        return q, rows, dists
    rb = max(1, int(rows.max()).bit_length())
    db = max(1, int(dists.max()).bit_length())
    qb = max(1, int(q.max()).bit_length())
    if rows.min() >= 0 and rb + db + qb <= 64:
        key = (q.astype(np.uint64) << np.uint64(db + rb)) | (dists.astype(np.uint64) << np.uint64(rb)) \
            | rows.astype(np.uint64)
        key.sort()
        mask = (np.uint64(1) << np.uint64(rb)) - np.uint64(1)
        dmask = (np.uint64(1) << np.uint64(db)) - np.uint64(1)
        return ((key >> np.uint64(db + rb)).astype(np.int64), (key & mask).astype(np.int64),
                ((key >> np.uint64(rb)) & dmask).astype(np.int32))
    order = np.lexsort((rows, dists, q))
    return q[order], rows[order], dists[order]


def _split(nq: int, q: np.ndarray, rows: np.ndarray, dists: np.ndarray, k: int | None,
           searched: np.ndarray, strategy: str) -> list[Result]:
    """Group flat (query, row, distance) triples per query, ordered by (distance, row id), first k kept."""
    q, rows, dists = _sort_triples(q, rows, dists)
    bounds = np.searchsorted(q, np.arange(nq + 1))
    out = []
    for i in range(nq):
        a, b = bounds[i], bounds[i + 1]
        if k is not None:
            b = min(b, a + k)
        out.append(Result(rows[a:b].astype(np.int64), dists[a:b].astype(np.int32), np.zeros(b - a, bool),
                          int(searched[i]), strategy))
    return out
