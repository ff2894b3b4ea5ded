"""The query module: exact bucket first, then the Hamming ball by bit flips, then an exact scan fill.

Semantics (for every strategy, so the caller gets the same answer whichever runs):
- radius mode (`k=None`): every stored item within Hamming distance `radius` (inclusive), each once.
- k-nearest mode: the ball grows by one bit at a time (distance 0, 1, 2, ...) until it holds `k`
  items or reaches the planned radius; queries still short of `k` are filled with the exact nearest
  items from a scan of the distinct codes, marked `filled`. The result is the exact k nearest.
- order: by distance; ties by code (as an unsigned integer: the bucket table's order), then by row
  id (the order items were first indexed). Deterministic, and the first k by that order are
  returned.
- `searched_radius`: the largest distance up to which every stored item was examined.

Everything works on *buckets* (query, distance, bucket) until the last step: one sort of those
triples orders every answer, since bucket order is code order and a bucket's items are already in
row-id order. In k-nearest mode only the first k items of each query are then taken, as slices of
the ordered buckets, so the work and memory of a query are bounded by k however large its buckets.

Strategies: "ball" enumerates sum_{i<=r} C(bits, i) probe codes per query against the bucket table
(vectorized over the whole batch); "mih" is multi-index hashing (mih.py); "scan" asks FAISS for an
exhaustive Hamming search of the distinct codes. "auto" picks by a cost model: a probe costs about
PROBE_COST code comparisons of the scan, and the scan one per distinct code.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .ann import CodeScan
from .buckets import BucketTable, code_keys, concat_ranges
from .codes import ball_size, flip_masks
from .errors import ConfigError
from .mih import MultiIndex
from .pivots import PivotIndex

PROBE_COST = 60          # one bucket probe costs about this many FAISS code comparisons
PROBE_BLOCK = 1 << 21    # probes materialized at once (memory bound: ~16 bytes each)
FILL_BLOCK = 1 << 22     # (query, code) pairs a scan returns at once (12 bytes each)
MIH_MIN_CODES = 20_000   # below this a scan is as cheap as building substring tables
MIH_MAX_LEVEL = 2       # level 3 (~10,000 probes a query at 64 bits) cost more than the compiled pivot fill it spares
PRELUDE_SHARE = 1000     # the ball before MIH may cost 1/1000 of a scan (radius 1 from ~4 x 10^6 codes)
PIVOT_MIN_CODES = 50_000  # from this many distinct codes the fill goes through the pivot index (pivots.py)...
PIVOT_SCAN_SHARE = 2      # ...for each query whose lists hold under half of the codes; the others are scanned
PIVOT_STEP = 2            # the pivot fill widens a query's radius by this much until it holds k items
STRATEGIES = ("auto", "ball", "mih", "scan")


@dataclass
class Result:
    """The answer to one query: row ids in order, their distances, which came from the scan fill."""

    row_ids: np.ndarray
    distances: np.ndarray
    filled: np.ndarray
    searched_radius: int
    strategy: str


class Searcher:
    def __init__(self, buckets: BucketTable, bits: int):
        self.buckets, self.bits = buckets, bits
        self._masks: dict[int, np.ndarray] = {}
        self._mih: MultiIndex | None = None
        self._scan: CodeScan | None = None
        self._pivots: PivotIndex | None = None

    @property
    def multi_index(self) -> MultiIndex:
        """The substring tables of multi-index hashing, built on first use."""
        if self._mih is None:
            self._mih = MultiIndex(self.buckets.keys, self.bits)
        return self._mih

    @property
    def code_scan(self) -> CodeScan:
        """The exhaustive search over the distinct codes, built on first use."""
        if self._scan is None:
            self._scan = CodeScan(self.buckets.distinct_codes(), self.bits)
        return self._scan

    @property
    def pivots(self) -> PivotIndex:
        """The pivot index over the distinct codes (the fill of long codes), built on first use."""
        if self._pivots is None:
            self._pivots = PivotIndex(self.buckets.keys, self.bits)
        return self._pivots

    def build(self) -> None:
        """Build now every structure that searches of this table may use (each is otherwise built on
        the first search that needs it): benchmarks time searches, not construction."""
        if self.buckets.n_buckets:
            self.buckets.prepare()
            self.code_scan  # noqa: B018
            if 32 < self.bits <= 64 and self.buckets.n_buckets >= MIH_MIN_CODES:  # as `plan` uses it
                self.multi_index  # noqa: B018
            if self.bits <= 64 and self.buckets.n_buckets >= PIVOT_MIN_CODES:
                self.pivots  # noqa: B018

    def nbytes(self) -> int:
        """Bytes held by the search structures built so far (the bucket table included)."""
        total = self.buckets.nbytes() + sum(m.nbytes for m in self._masks.values())
        for built in (self._scan, self._mih, self._pivots):
            if built is not None:
                total += built.nbytes()
        return total

    def masks(self, d: int) -> np.ndarray:
        if d not in self._masks:
            self._masks[d] = flip_masks(self.bits, d)
        return self._masks[d]

    def spans_per_query(self, k: int | None, radius: int) -> int:
        """At most how many spans (hit buckets) one query's answer holds: a bound for batching."""
        most = max(1, self.buckets.n_buckets)
        if k is not None:
            return min(most, 2 * k)  # a k-nearest query keeps at most k buckets (twice, with the fill)
        return min(most, ball_size(self.bits, radius)) if self.bits <= 64 else most

    def plan(self, k: int | None, radius: int, strategy: str = "auto") -> tuple[str, int]:
        """(strategy, depth): for "ball" the radius the bit-flip ball goes to before the scan fill
        takes over; for "mih" the last substring level probed before it."""
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if strategy == "scan" or self.bits > 64:
            if strategy in ("ball", "mih"):
                raise ConfigError(f"the {strategy} strategy needs codes of at most 64 bits")
            return "scan", -1
        if strategy == "mih":
            # radius mode: the levels that reach the radius; k-nearest: as deep as it pays
            return "mih", (radius // self.multi_index.m if k is None else self._mih_level())
        if strategy == "ball":
            return "ball", radius
        # a scan compares every distinct code; a k-nearest answer takes at most k items of each
        # bucket, so the ball costs its probes whatever the bucket sizes
        n = max(1, self.buckets.n_buckets)
        r = -1
        while r < radius and ball_size(self.bits, r + 1) * PROBE_COST <= n:
            r += 1
        if r < 0 or (k is None and r < radius):
            return "scan", -1
        if k is not None and self.bits > 32 and n >= MIH_MIN_CODES:
            # long codes: the ball stops at a small radius, while MIH's levels search much farther
            # for the same number of probes
            level = self._mih_level()
            if self.multi_index.searched(level) > r:
                return "mih", level
        return "ball", r

    def _mih_level(self) -> int:
        """The deepest substring level worth probing: a level runs only for the queries still short of
        k, for which the alternative is the scan, so each level's probes are priced against a scan."""
        mih, n = self.multi_index, max(1, self.buckets.n_buckets)
        level = 0
        while level < MIH_MAX_LEVEL and mih.level_probes(level + 1) * PROBE_COST <= n \
                and mih.searched(level) < self.bits:
            level += 1
        return level

    def check(self, k: int | None, radius: int, strategy: str = "auto") -> tuple[int | None, str, int]:
        """Validate the options of a search (ConfigError otherwise): (k as used, strategy, depth)."""
        if radius < 0 or radius > self.bits:
            raise ConfigError(f"radius must be between 0 and the code length ({self.bits}), got {radius}")
        if k is not None and k < 1:
            raise ConfigError(f"k must be at least 1 (or None for every item within the radius), got {k}")
        if k is not None:
            k = min(k, max(1, len(self.buckets)))  # more than every item is every item
        return (k, *self.plan(k, radius, strategy))

    def search(self, codes: np.ndarray, k: int | None = 10, radius: int = 2, strategy: str = "auto") -> "Results":
        """Answer a batch of packed query codes (n, bits // 8)."""
        k, name, ball_r = self.check(k, radius, strategy)
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        nq = len(codes)
        if nq == 0:
            return self._empty(0, np.zeros(0, np.int64), "")
        if name == "scan":
            if k is None:
                return self._scan_radius(codes, radius)
            # a scan examines every item: the whole code space is searched, nothing is a fill
            return self._fill(codes, k, np.full(nq, self.bits), "scan")
        if k is None:
            return self._ball_radius(codes, ball_r) if name == "ball" else self._multi_index(codes, None, ball_r, radius)
        results = self._ball(codes, k, ball_r) if name == "ball" else self._ball_then_mih(codes, k, ball_r)
        short = np.flatnonzero(np.diff(results.lims) < k)
        if len(short) and len(self.buckets):
            fill = self._fill_pivots if self.bits <= 64 and self.buckets.n_buckets >= PIVOT_MIN_CODES else self._fill
            results = results.replace(short, fill(codes[short], k, results.searched[short], f"{name}+fill"))
        return results

    def _ball(self, codes: np.ndarray, k: int, radius: int) -> "Results":
        """k-nearest mode: grow the ball one distance at a time; queries with k hits drop out."""
        keys = code_keys(codes)
        nq = len(keys)
        counts = np.zeros(nq, dtype=np.int64)
        searched = np.full(nq, -1, dtype=np.int64)
        active = np.arange(nq)
        sizes = self.buckets.sizes()
        parts_q, parts_b, parts_d = [], [], []
        for d in range(radius + 1):
            masks = self.masks(d)
            step = max(1, PROBE_BLOCK // len(masks))
            for start in range(0, len(active), step):
                chunk = active[start:start + step]
                where, bucket = self.buckets.probe(keys[chunk], masks)
                owner = chunk[where // len(masks)]
                parts_q.append(owner)
                parts_b.append(bucket)
                parts_d.append(np.full(len(bucket), d, dtype=np.int64))
                counts += np.bincount(owner, weights=sizes[bucket], minlength=nq).astype(np.int64)
            searched[active] = d
            active = active[counts[active] < k]
            if not len(active):
                break
        return self._from_buckets(np.concatenate(parts_q), np.concatenate(parts_d), np.concatenate(parts_b),
                                  nq, k, searched, "ball")

    def _ball_then_mih(self, codes: np.ndarray, k: int, max_level: int) -> "Results":
        """k-nearest by MIH, after a small ball: the ball's probes need no verification, so where the
        k nearest lie close (dense collections) it answers many queries for a fraction of MIH's cost.
        Since MIH verifies its candidates in compiled code, the ball pays only at radius 1 and from
        millions of codes (10^7 replicated 64-bit codes, 4.1 x 10^6 distinct: 54 µs a query with radius
        1, 60 with no ball, 70 with radius 2)."""
        r = self._prelude_radius()
        if r < 0:
            return self._multi_index(codes, k, max_level)
        results = self._ball(codes, k, r)
        short = np.flatnonzero(np.diff(results.lims) < k)
        if len(short):
            results = results.replace(short, self._multi_index(codes[short], k, max_level))
        return results

    def _prelude_radius(self) -> int:
        """The ball before MIH: as far as its probes cost at most 1/PRELUDE_SHARE of a scan."""
        n, r = self.buckets.n_buckets, -1
        while ball_size(self.bits, r + 1) * PROBE_COST * PRELUDE_SHARE <= n:
            r += 1
        return r

    def _multi_index(self, codes: np.ndarray, k: int | None, max_level: int, radius: int | None = None) -> "Results":
        """Multi-index hashing: k-nearest mode (queries short of k after `max_level` are left for
        the fill) or radius mode (every level up to radius // m)."""
        q, bucket, dist, searched = self.multi_index.search(code_keys(codes), k, self.buckets.sizes(), max_level,
                                                            radius)
        return self._from_buckets(q, dist, bucket, len(codes), k, searched, "mih")

    def _from_buckets(self, q, dist, bucket, nq, k, searched, strategy) -> "Results":
        """Results from (query, distance, bucket) triples, each bucket within its query's searched
        radius, or found by a scan (then hits beyond `searched` are marked filled): one sort of the
        triples orders every answer by (distance, code, row id), since bucket order is code order;
        then each query's items are taken from its buckets in that order, at most k of them."""
        q, dist, bucket = _sort3(q, dist, bucket)
        starts = self.buckets.offsets[bucket]
        take = self.buckets.offsets[bucket + 1] - starts
        if k is not None and len(q):
            take = _first_k_items(q, take, k)
            used = take > 0
            q, dist, starts, take = q[used], dist[used], starts[used], take[used]
        searched = np.asarray(searched, np.int64)
        span_lims = np.searchsorted(q, np.arange(nq + 1)) if len(q) else np.zeros(nq + 1, np.int64)
        return Results(self.buckets.row_ids, span_lims, starts, take, dist.astype(np.int32), dist > searched[q],
                       searched, np.full(nq, strategy, dtype=object))

    def _empty(self, nq: int, searched: np.ndarray, strategy: str) -> "Results":
        none = np.zeros(0, np.int64)
        return Results(self.buckets.row_ids, np.zeros(nq + 1, np.int64), none, none, none.astype(np.int32),
                       none.astype(bool), np.asarray(searched, np.int64), np.full(nq, strategy, dtype=object))

    def _ball_radius(self, codes: np.ndarray, radius: int) -> "Results":
        """Radius mode: every probe of the ball, in blocks of queries."""
        keys = code_keys(codes)
        nq = len(keys)
        masks = np.concatenate([self.masks(d) for d in range(radius + 1)])
        mask_dist = np.repeat(np.arange(radius + 1), [len(self.masks(d)) for d in range(radius + 1)])
        step = max(1, PROBE_BLOCK // len(masks))
        parts_q, parts_b, parts_d = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for start in range(0, nq, step):
            where, bucket = self.buckets.probe(keys[start:start + step], masks)
            parts_q.append(start + where // len(masks))
            parts_b.append(bucket)
            parts_d.append(mask_dist[where % len(masks)])
        return self._from_buckets(np.concatenate(parts_q), np.concatenate(parts_d), np.concatenate(parts_b),
                                  nq, None, np.full(nq, radius), "ball")

    def _scan_radius(self, codes: np.ndarray, radius: int) -> "Results":
        lims, d, bucket = self.code_scan.range_search(codes, radius)
        nq = len(codes)
        q = np.repeat(np.arange(nq), np.diff(lims))
        return self._from_buckets(q, d, bucket, nq, None, np.full(nq, radius), "scan")

    def _fill(self, codes: np.ndarray, k: int, searched: np.ndarray, strategy: str) -> "Results":
        """The exact k nearest (ties by code, then row id) of every query, from a scan of the distinct
        codes; hits beyond `searched` (each query's completely searched radius) are marked filled.

        The scan's nearest `wide` codes (every bucket holds an item, so k codes hold k items) are
        complete below the farthest distance among them; where the items found closer than that
        are fewer than k, the ties at that distance may run past the list, and those queries take
        every code within that distance by a range search instead."""
        nq, n_codes = len(codes), self.buckets.n_buckets
        if n_codes == 0:
            return self._empty(nq, searched, strategy)
        wide = min(n_codes, 2 * k)
        step = max(1, FILL_BLOCK // wide)  # FAISS's answer is (queries, wide): bounded per call
        parts = [self.code_scan.search(codes[i:i + step], wide) for i in range(0, nq, step)]
        dw, bw = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        inner = dw < dw[:, -1:]
        closer = np.where(inner, self.buckets.sizes()[bw], 0).sum(axis=1)
        again = np.flatnonzero((closer < k) & (wide < n_codes))
        take = inner if wide < n_codes else np.ones_like(inner)
        take[again] = False
        q = np.repeat(np.arange(nq), take.sum(axis=1))
        d, b = dw[take], bw[take]
        if len(again):
            lims, d2, b2 = self.code_scan.range_search(codes[again], dw[again, -1])
            q, d, b = np.r_[q, np.repeat(again, np.diff(lims))], np.r_[d, d2], np.r_[b, b2]
        return self._from_buckets(q, d, b, nq, k, searched, strategy)


    def _fill_pivots(self, codes: np.ndarray, k: int, searched: np.ndarray, strategy: str) -> "Results":
        """`_fill`'s answer (the exact k nearest, hits beyond `searched` marked filled) through the pivot
        index: every code within tau of a query, tau = searched + PIVOT_STEP, then wider by PIVOT_STEP
        for the queries still short of k items; a query whose candidates would cost more than a scan is
        answered by `_fill`'s scan instead."""
        keys, nq = code_keys(codes), len(codes)
        searched = np.asarray(searched, np.int64)
        sizes = self.buckets.sizes()
        tau = np.minimum(np.maximum(searched, 0) + PIVOT_STEP, self.bits)
        pending, scan = np.arange(nq), [np.zeros(0, np.int64)]
        parts_q, parts_b, parts_d = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        while len(pending):
            q, b, d, over = self.pivots.range_search(keys[pending], tau[pending],
                                                     max_codes=self.buckets.n_buckets // PIVOT_SCAN_SHARE)
            items = np.bincount(q, weights=sizes[b], minlength=len(pending))
            done = (items >= k) | (tau[pending] >= self.bits)
            done[over] = False
            take = done[q]
            parts_q.append(pending[q[take]])
            parts_b.append(b[take])
            parts_d.append(d[take])
            scan.append(pending[over])
            left = np.ones(len(pending), bool)
            left[over] = False
            pending = pending[left & ~done]
            tau[pending] = np.minimum(tau[pending] + PIVOT_STEP, self.bits)
        results = self._from_buckets(np.concatenate(parts_q), np.concatenate(parts_d), np.concatenate(parts_b),
                                     nq, k, searched, strategy)
        scan = np.sort(np.concatenate(scan))
        if len(scan):
            results = results.replace(scan, self._fill(codes[scan], k, searched[scan], strategy))
        return results


class Results(Sequence):
    """The answers of a batch, held as spans: runs of consecutive items of the bucket table (a bucket,
    or the first items of one) at one distance each, query i owning spans span_lims[i]:span_lims[i+1].

    Items are expanded per query when indexed (`results[i]` is a `Result`), so a batch holds memory in
    proportion to the buckets it hit, not to its hits: a radius answer of millions of items streams
    query by query. `lims`, `row_ids`, `distances` and `filled` give the flat layout of FAISS's
    range search (query i's hits are [lims[i], lims[i + 1])), built on first use."""

    def __init__(self, table_rows, span_lims, starts, lengths, dists, span_filled, searched, strategies):
        self._rows = table_rows
        self.span_lims = np.asarray(span_lims, dtype=np.int64)
        self.starts, self.lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
        self.dists, self.span_filled = np.asarray(dists, np.int32), np.asarray(span_filled, bool)
        self.searched = np.asarray(searched, dtype=np.int64)
        self.strategies = strategies
        self._flat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.span_lims) - 1

    @classmethod
    def from_list(cls, results: list[Result]) -> "Results":
        """Results holding the given per-query answers (each hit a span of its own)."""
        rows = np.concatenate([r.row_ids for r in results]) if results else np.zeros(0, np.int64)
        spans = np.r_[0, np.cumsum([len(r.row_ids) for r in results])].astype(np.int64)
        cat = (lambda name, dtype: np.concatenate([getattr(r, name) for r in results]).astype(dtype)
               if results else np.zeros(0, dtype))
        return cls(rows, spans, np.arange(len(rows)), np.ones(len(rows), np.int64), cat("distances", np.int32),
                   cat("filled", bool), [r.searched_radius for r in results],
                   np.array([r.strategy for r in results], dtype=object))

    def counts(self) -> np.ndarray:
        """Hits per query."""
        per_span = np.r_[0, np.cumsum(self.lengths)]
        return per_span[self.span_lims[1:]] - per_span[self.span_lims[:-1]]

    def take(self, start: int, stop: int) -> "Results":
        """The answers of queries start..stop-1 (views of these spans)."""
        a, b = self.span_lims[start], self.span_lims[stop]
        return Results(self._rows, self.span_lims[start:stop + 1] - a, self.starts[a:b], self.lengths[a:b],
                       self.dists[a:b], self.span_filled[a:b], self.searched[start:stop],
                       self.strategies[start:stop])

    @property
    def lims(self) -> np.ndarray:
        return np.r_[0, np.cumsum(self.counts())]

    def _expand(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.lengths[a:b]
        return (self._rows[concat_ranges(self.starts[a:b], n)], np.repeat(self.dists[a:b], n),
                np.repeat(self.span_filled[a:b], n))

    def _flat_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._flat is None:
            self._flat = self._expand(0, len(self.starts))
        return self._flat

    @property
    def row_ids(self) -> np.ndarray:
        return self._flat_arrays()[0]

    @property
    def distances(self) -> np.ndarray:
        return self._flat_arrays()[1]

    @property
    def filled(self) -> np.ndarray:
        return self._flat_arrays()[2]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        rows, dists, filled = self._expand(self.span_lims[i], self.span_lims[i + 1])
        return Result(rows, dists, filled, int(self.searched[i]), str(self.strategies[i]))

    def replace(self, which: np.ndarray, other: "Results") -> "Results":
        """These results with queries `which` answered by `other` (one answer per query in `which`)."""
        nq = len(self)
        spans = np.diff(self.span_lims)
        owner = np.repeat(np.arange(nq), spans)
        keep = np.ones(nq, bool)
        keep[which] = False
        kept = keep[owner]
        q = np.r_[owner[kept], np.repeat(which, np.diff(other.span_lims))]
        order = np.argsort(q, kind="stable")
        spans[which] = np.diff(other.span_lims)
        strategies = self.strategies.copy()
        strategies[which] = other.strategies
        searched = self.searched.copy()
        searched[which] = other.searched
        return Results(self._rows, np.r_[0, np.cumsum(spans)],
                       *(np.r_[a[kept], b][order] for a, b in ((self.starts, other.starts),
                                                                (self.lengths, other.lengths),
                                                                (self.dists, other.dists),
                                                                (self.span_filled, other.span_filled))),
                       searched, strategies)


def _sort3(q: np.ndarray, d: np.ndarray, pos: np.ndarray):
    """(q, d, pos) triples sorted by (query, distance, position). Packed into one uint64 key when they
    fit (one sort of one array is several times faster than a three-key lexsort); lexsort otherwise."""
    if not len(q):
        return q.astype(np.int64), d.astype(np.int64), pos.astype(np.int64)
    pb = max(1, int(pos.max()).bit_length())
    db = max(1, int(d.max()).bit_length())
    qb = max(1, int(q.max()).bit_length())
    if pb + db + qb <= 64:
        key = (q.astype(np.uint64) << np.uint64(db + pb)) | (d.astype(np.uint64) << np.uint64(pb)) \
            | pos.astype(np.uint64)
        key.sort()
        return ((key >> np.uint64(db + pb)).astype(np.int64),
                ((key >> np.uint64(pb)) & np.uint64((1 << db) - 1)).astype(np.int64),
                (key & np.uint64((1 << pb) - 1)).astype(np.int64))
    order = np.lexsort((pos, d, q))
    return q[order], d[order], pos[order]


def _first_k_items(q: np.ndarray, sizes: np.ndarray, k: int) -> np.ndarray:
    """Items to take from each bucket, the buckets sorted by query, so that each query gets its
    first k items in bucket order: all of the buckets before the k-th item, a slice of the bucket
    holding it, none after."""
    before = np.cumsum(sizes) - sizes                      # items in earlier buckets, any query
    first = np.r_[0, np.flatnonzero(q[1:] != q[:-1]) + 1]  # each query's first bucket
    before -= np.repeat(before[first], np.diff(np.r_[first, len(q)]))
    return np.clip(k - before, 0, sizes)
