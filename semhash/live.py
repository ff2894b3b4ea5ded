"""The search structures of an index that changes: a sorted base plus a small delta, answering exactly.

A `LiveIndex` holds a *base* (a bucket table and its searcher, built once from many items) and a
*delta*: the items added or re-coded since (row ids and codes, searched by brute force) and the
*dead* rows of the base (deleted or re-coded since: tombstones). A change costs in proportion to
its size: the base is not touched. When the delta and the tombstones together outgrow
max(MERGE_MIN, base size / MERGE_SHARE), they are merged into a new base.

Answers are those of a bucket table built from the live items, in the same order (distance, then
code as an unsigned integer, then row id):
- radius mode: the base's answer without its dead rows, plus the delta items within the radius;
- k-nearest: the base's k nearest; a query that lost some of them to tombstones is searched again
  for k + (number of tombstones), which leaves at least k live ones; then the delta items no farther
  than the k-th of those join, and the first k by that order are kept.
`searched_radius` and `filled` describe the base search that ran (the delta is always searched
whole), so they may differ from a fresh build's; the hits, their distances and order do not.

Arrays in, arrays out: no SQL, no files.
"""
from __future__ import annotations

import numpy as np

from . import asymmetric
from .buckets import BucketTable, code_keys, concat_ranges
from .codes import hamming_rows
from .search import Results, Searcher

MERGE_MIN = 1024     # delta + tombstones merged into the base beyond this many...
MERGE_SHARE = 256    # ...or beyond this share of the base (1/256), whichever is larger
DELTA_BLOCK = 1 << 22  # (query, delta item) distances computed at once


class LiveIndex:
    """Exact Hamming search over a changing set of (row id, packed code) items."""

    def __init__(self, bits: int, row_ids: np.ndarray, codes: np.ndarray, version: int = 0):
        self.bits, self.nbytes_code = bits, bits // 8
        self.version = version  # the store version this state reflects
        self._set_base(np.asarray(row_ids, np.int64), np.ascontiguousarray(codes, np.uint8))

    def _set_base(self, row_ids: np.ndarray, codes: np.ndarray) -> None:
        self._install(BucketTable.build(row_ids, codes), np.sort(row_ids))

    def _install(self, table: BucketTable, sorted_rows: np.ndarray) -> None:
        """Take `table` as the base (its row ids, sorted: `sorted_rows`), with an empty delta."""
        self.base = table
        self.searcher = Searcher(table, self.bits)
        self._base_sorted = sorted_rows
        self.dead = np.zeros(0, np.int64)                       # sorted base row ids no longer live
        self.delta_rows = np.zeros(0, np.int64)                 # sorted
        self.delta_codes = np.zeros((0, self.nbytes_code), np.uint8)

    # --- changes -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.base) - len(self.dead) + len(self.delta_rows)

    def apply(self, row_ids: np.ndarray, codes: np.ndarray, present: np.ndarray | None = None,
              version: int | None = None) -> None:
        """Take a change: rows `row_ids` now hold `codes` where `present` (default: all), and are gone
        where not. A row id given twice keeps its last entry."""
        rows = np.asarray(row_ids, np.int64)
        codes = np.ascontiguousarray(codes, np.uint8).reshape(len(rows), self.nbytes_code)
        present = np.ones(len(rows), bool) if present is None else np.asarray(present, bool)
        if len(rows):
            # the last entry of each row id
            last = len(rows) - 1 - np.unique(rows[::-1], return_index=True)[1]
            rows, codes, present = rows[last], codes[last], present[last]
            in_base = self._in(rows, self._base_sorted)
            self.dead = np.union1d(self.dead, rows[in_base])
            keep = ~self._in(self.delta_rows, rows)  # (rows are sorted now) delta entries of these rows are replaced
            rows_new, codes_new = rows[present], codes[present]
            all_rows = np.r_[self.delta_rows[keep], rows_new]
            order = np.argsort(all_rows, kind="stable")
            self.delta_rows = all_rows[order]
            self.delta_codes = np.concatenate([self.delta_codes[keep], codes_new])[order]
        if version is not None:
            self.version = version
        if len(self.delta_rows) + len(self.dead) > max(MERGE_MIN, len(self.base) // MERGE_SHARE):
            self.merge()

    def add(self, row_ids: np.ndarray, codes: np.ndarray, version: int | None = None) -> None:
        self.apply(row_ids, codes, None, version)

    def remove(self, row_ids: np.ndarray, version: int | None = None) -> None:
        rows = np.asarray(row_ids, np.int64)
        self.apply(rows, np.zeros((len(rows), self.nbytes_code), np.uint8), np.zeros(len(rows), bool), version)

    def merge(self) -> None:
        """Fold the delta and the tombstones into a new base. Codes of at most 64 bits: one linear merge of
        the base (already in table order) with the sorted delta; longer codes: a rebuild from the items."""
        if not len(self.delta_rows) and not len(self.dead):
            return
        base = self.base
        top = max(int(base.row_ids.max(initial=0)), int(self.delta_rows.max(initial=0)))
        row_bits = max(1, top.bit_length())
        if base.code_bytes > 8 or base.code_bytes * 8 + row_bits > 64 or (len(base.row_ids) and base.row_ids.min() < 0):
            rows, codes = self.items()
            self._set_base(rows, codes)
            return
        # (key, row) packed in one uint64 orders items exactly as the table does
        shift = np.uint64(row_bits)
        alive = ~self._in(base.row_ids, self.dead)
        packed = (base.item_keys()[alive] << shift) | base.row_ids[alive].astype(np.uint64)
        extra = np.sort((code_keys(self.delta_codes) << shift) | self.delta_rows.astype(np.uint64))
        merged = np.insert(packed, np.searchsorted(packed, extra), extra)
        rows = (merged & np.uint64((1 << row_bits) - 1)).astype(np.int64)
        kept = self._base_sorted[~self._in(self._base_sorted, self.dead)]
        self._install(BucketTable.from_sorted(merged >> shift, rows, base.code_bytes),
                      np.insert(kept, np.searchsorted(kept, self.delta_rows), self.delta_rows))

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Every live (row id, code), the base's in bucket order, then the delta's."""
        base = self.base
        base_codes = np.repeat(base.distinct_codes(), base.sizes(), axis=0)
        alive = ~self._in(base.row_ids, self.dead)
        return (np.r_[base.row_ids[alive], self.delta_rows],
                np.concatenate([base_codes[alive], self.delta_codes]))

    @staticmethod
    def _in(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
        """Membership of each value in a sorted array: a mask over the set's range where that range is
        small (a gather a value, several times faster than a binary search each), else binary search."""
        if not len(sorted_set) or not len(values):
            return np.zeros(len(values), bool)
        lo, hi = int(sorted_set[0]), int(sorted_set[-1])
        if hi - lo < max(1 << 16, 4 * len(values)):
            mask = np.zeros(hi - lo + 1, bool)
            mask[sorted_set - lo] = True
            inside = (values >= lo) & (values <= hi)
            out = np.zeros(len(values), bool)
            out[inside] = mask[values[inside] - lo]
            return out
        pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
        return sorted_set[pos] == values

    # --- the Searcher's interface ----------------------------------------------------------------
    @property
    def clean(self) -> bool:
        return not len(self.delta_rows) and not len(self.dead)

    def nbytes(self) -> int:
        return (self.searcher.nbytes() + self._base_sorted.nbytes + self.dead.nbytes + self.delta_rows.nbytes
                + self.delta_codes.nbytes)

    def spans_per_query(self, k: int | None, radius: int) -> int:
        return self.searcher.spans_per_query(k, radius) + (k or len(self.delta_rows))

    def check(self, k: int | None, radius: int, strategy: str = "auto") -> tuple[int | None, str, int]:
        """Validate search options (ConfigError otherwise), k clamped to the live items."""
        used, name, depth = self.searcher.check(k, radius, strategy)
        return (None if k is None else min(k, max(1, len(self))), name, depth)

    def search(self, codes: np.ndarray, k: int | None = 10, radius: int = 2, strategy: str = "auto") -> Results:
        """Answer a batch of packed query codes (n, bits // 8), as a bucket table of the live items would."""
        k = self.check(k, radius, strategy)[0]
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if self.clean:
            return self.searcher.search(codes, k=k, radius=radius, strategy=strategy)
        nq = len(codes)
        if len(self.base):
            res = self.searcher.search(codes, k=None if k is None else min(k, len(self.base)), radius=radius,
                                       strategy=strategy)
        else:
            res = None
        if res is not None and k is not None and len(self.dead):
            lost = self._lost(res)
            redo = np.flatnonzero(lost > 0)
            if len(redo):
                wider = min(k + len(self.dead), len(self.base))
                res = res.replace(redo, self.searcher.search(codes[redo], k=wider, radius=radius,
                                                             strategy=strategy))
        return self._merged(codes, res, nq, k, radius)

    def asymmetric(self, codes: np.ndarray, weights: np.ndarray, k: int) -> tuple[Results, np.ndarray]:
        """The first k live items of each query by asymmetric score (see asymmetric.py: its real-valued
        code `weights` (n, bits) against the stored codes; `codes` are its packed signs), ties by code
        then row id. Distances are Hamming distances to the query's code; `searched_radius` is the radius
        every one of whose items scored above the k-th hit, and hits beyond it are marked filled."""
        codes = np.ascontiguousarray(codes, np.uint8)
        nq, live = len(codes), len(self)
        k = min(int(k), live)
        q = rows = np.zeros(0, np.int64)
        score = np.zeros(0, np.float32)
        hit_codes = np.zeros((0, self.nbytes_code), np.uint8)
        if k > 0 and len(self.base):
            # enough buckets for k live items whatever the tombstones: every bucket holds an item
            need = min(len(self.base), k + len(self.dead))
            distinct = self.base.distinct_codes()
            bidx, bscore = asymmetric.top_codes(weights, distinct, need)
            sizes = self.base.sizes()[bidx]
            take = np.clip(need - (np.cumsum(sizes, axis=1) - sizes), 0, sizes).ravel()
            pos = concat_ranges(self.base.offsets[bidx].ravel()[take > 0], take[take > 0])
            q = np.repeat(np.repeat(np.arange(nq), bidx.shape[1]), take)
            rows, score = self.base.row_ids[pos], np.repeat(bscore.ravel(), take)
            hit_codes = distinct[np.repeat(bidx.ravel(), take)]
            if len(self.dead):
                alive = ~self._in(rows, self.dead)
                q, rows, score, hit_codes = q[alive], rows[alive], score[alive], hit_codes[alive]
        if k > 0 and len(self.delta_rows):
            # in table order (code, then row id), so that ties at the k-th keep the ones a table would
            dwords = _words(self.delta_codes)
            by_code = np.lexsort((self.delta_rows,) + tuple(dwords[:, j] for j in reversed(range(dwords.shape[1]))))
            didx, dscore = asymmetric.top_codes(weights, self.delta_codes[by_code], k)
            didx = by_code[didx]
            q = np.r_[q, np.repeat(np.arange(nq), didx.shape[1])]
            rows = np.r_[rows, self.delta_rows[didx.ravel()]]
            score = np.r_[score, dscore.ravel()]
            hit_codes = np.concatenate([hit_codes, self.delta_codes[didx.ravel()]])
        if not self.clean:  # base and delta hits interleave: one sort of them all (a clean base is in order)
            order = _answer_order(q, -score, _words(hit_codes), rows, k)
            q, rows, score, hit_codes = q[order], rows[order], score[order], hit_codes[order]
        lims = np.searchsorted(q, np.arange(nq + 1))
        dist = hamming_rows(codes[q], hit_codes)
        if k >= live:  # every live item is in every answer
            searched = np.full(nq, self.bits, np.int64)
        else:
            searched = np.asarray(asymmetric.covered_radius(weights, score[lims[1:] - 1]), np.int64)
        return Results(rows, lims, np.arange(len(rows)), np.ones(len(rows), np.int64), dist.astype(np.int32),
                       dist > searched[q], searched, np.full(nq, "asym", dtype=object)), score

    def _positions(self, res: Results) -> tuple[np.ndarray, np.ndarray]:
        """(query of each hit, position of each hit in the base's row ids), flat in answer order."""
        pos = concat_ranges(res.starts, res.lengths)
        span_q = np.repeat(np.arange(len(res)), np.diff(res.span_lims))
        return np.repeat(span_q, res.lengths), pos

    def _lost(self, res: Results) -> np.ndarray:
        q, pos = self._positions(res)
        dead = self._in(self.base.row_ids[pos], self.dead)
        return np.bincount(q[dead], minlength=len(res))

    def _merged(self, codes: np.ndarray, res: Results | None, nq: int, k: int | None, radius: int) -> Results:
        if res is not None:
            q, pos = self._positions(res)
            rows = self.base.row_ids[pos]
            dist = np.repeat(res.dists, res.lengths).astype(np.int64)
            filled = np.repeat(res.span_filled, res.lengths)
            bucket = np.searchsorted(self.base.offsets, pos, side="right") - 1
            alive = ~self._in(rows, self.dead)
            q, rows, dist, filled, bucket = q[alive], rows[alive], dist[alive], filled[alive], bucket[alive]
            words = _words(self.base.distinct_codes()[bucket]) if self.base.code_bytes > 8 \
                else self.base.keys[bucket][:, None]
            searched, strategies = res.searched, res.strategies
        else:
            q = rows = dist = np.zeros(0, np.int64)
            filled = np.zeros(0, bool)
            words = np.zeros((0, max(1, -(-self.nbytes_code // 8))), np.uint64)
            searched, strategies = np.full(nq, self.bits), np.full(nq, "scan", dtype=object)
        # how far each query takes delta items: the radius, or its k-th live base hit (all when short)
        if k is None:
            limit = np.full(nq, radius)
        else:
            counts = np.bincount(q, minlength=nq)
            starts = np.r_[0, np.cumsum(counts)[:-1]]
            limit = np.full(nq, self.bits)
            full = counts >= k
            limit[full] = dist[starts[full] + k - 1]
        dq, drow, dd = self._delta_hits(codes, limit)
        dwords = _words(self.delta_codes[drow]) if self.nbytes_code > 8 else code_keys(self.delta_codes[drow])[:, None]
        q = np.r_[q, dq]
        rows = np.r_[rows, self.delta_rows[drow]]
        dist = np.r_[dist, dd]
        filled = np.r_[filled, dd > np.asarray(searched, np.int64)[dq]]
        words = np.concatenate([words.astype(np.uint64), dwords.astype(np.uint64)])
        order = _answer_order(q, dist, words, rows, k)
        q, rows, dist, filled = q[order], rows[order], dist[order], filled[order]
        lims = np.searchsorted(q, np.arange(nq + 1))
        return Results(rows, lims, np.arange(len(rows)), np.ones(len(rows), np.int64), dist.astype(np.int32),
                       filled, searched, strategies)

    def _delta_hits(self, codes: np.ndarray, limit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, delta position, distance) of the delta items within each query's limit."""
        nd = len(self.delta_rows)
        if not nd or not len(codes):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        step = max(1, DELTA_BLOCK // nd)
        parts = []
        for s in range(0, len(codes), step):
            d = hamming_matrix(codes[s:s + step], self.delta_codes)
            qi, di = np.nonzero(d <= limit[s:s + step, None])
            parts.append((qi + s, di, d[qi, di].astype(np.int64)))
        return tuple(np.concatenate(p) for p in zip(*parts))


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Hamming distances of packed codes."""
    if a.shape[1] <= 8:
        return np.bitwise_count(code_keys(a)[:, None] ^ code_keys(b)[None, :]).astype(np.int32)
    wa, wb = _words(a), _words(b)
    return sum(np.bitwise_count(wa[:, j, None] ^ wb[None, :, j]).astype(np.int32) for j in range(wa.shape[1]))


def _answer_order(q: np.ndarray, primary: np.ndarray, words: np.ndarray, rows: np.ndarray,
                  k: int | None) -> np.ndarray:
    """Positions of hits in answer order: by query, then `primary` (distance, or minus the score), then
    code (its big-endian words), then row id; each query's first k kept (all when k is None)."""
    order = np.lexsort((rows,) + tuple(words[:, j] for j in reversed(range(words.shape[1]))) + (primary, q))
    if k is not None and len(order):
        qs = q[order]
        order = order[np.arange(len(order)) - np.searchsorted(qs, qs) < k]  # rank within its query
    return order


def _words(codes: np.ndarray) -> np.ndarray:
    """Packed codes as big-endian uint64 words (zero-padded): compared in order, they order the codes."""
    c = np.ascontiguousarray(codes, np.uint8)
    width = -(-c.shape[1] // 8) * 8
    padded = np.zeros((len(c), width), np.uint8)
    padded[:, :c.shape[1]] = c
    return padded.view(">u8").astype(np.uint64)
