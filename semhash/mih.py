"""Multi-index hashing (Norouzi, Punjani & Fleet): exact Hamming k-nearest search for long codes.

Split the code into m substrings (two: see `substring_count`). An item within distance D of the query has, by the pigeonhole
principle, some substring within floor(D / m) of the query's. So after probing every substring's
table at substring distances 0..s (bit flips of a short substring: cheap), every item within
D_s = m (s + 1) - 1 has been seen. A query is done once k items lie within its D_s.

This works on *buckets* (the distinct codes of the bucket table), not items: substring table j maps
each substring value to the bucket indices whose code has it. Each candidate bucket is verified
with its full distance, and counted once: only through the first substring at its least substring
distance (the level and table at which it is first reached). The probes are vectorized over the
batch (no Python loop runs per query or per probe), and the candidates are verified by a compiled
loop (kernels.mih_verify), which also stops keeping a query's candidates beyond the distance within
which it already holds k items.
"""
from __future__ import annotations

import numpy as np

from .buckets import BucketTable
from .codes import flip_masks

MAX_BLOCK = 1 << 21   # probes or candidates materialized at once, about


def substring_count(bits: int, n_codes: int) -> int:
    """Two substrings. Norouzi et al. take m ~ bits / log2(n), so that a substring bucket holds about
    one code, but that assumes codes spread evenly. Learned codes cluster, and short substrings of
    clustered codes crowd into few values: on 1M replicated 64-bit Fashion-MNIST codes (594,000
    distinct), a query's 21-bit substring bucket held ~800 codes on average, and m = 2 answered the
    100 nearest 3x faster than m = 3 (scripts/bench_query.py). Kept as a function for the record of
    that choice; `n_codes` is unused."""
    return 2


class MultiIndex:
    def __init__(self, keys: np.ndarray, bits: int, m: int | None = None):
        """keys: the bucket table's distinct codes (sorted uint64, a code in the low `bits` bits)."""
        self.keys, self.bits = keys, bits
        self.m = m or substring_count(bits, len(keys))
        base, extra = divmod(bits, self.m)
        self.widths = [base + (1 if j < extra else 0) for j in range(self.m)]
        self.offsets = np.cumsum([0] + self.widths[:-1]).tolist()
        ids = np.arange(len(keys), dtype=np.int64)
        self.tables = [BucketTable.from_keys(ids, self._sub(keys, j)) for j in range(self.m)]
        for t in self.tables:
            t.prepare()
        # each table's codes in its own bucket order: a probe reads its candidates' codes as runs, not
        # one gather per candidate through the bucket indices
        self.codes = [keys[t.row_ids] for t in self.tables]
        self._masks: dict[tuple[int, int], np.ndarray] = {}
        self._shifts = np.array(self.offsets, dtype=np.uint64)
        self._sub_masks = np.array([(1 << w) - 1 for w in self.widths], dtype=np.uint64)
        # the compiled verifier is loaded (or compiled) now, with the structures, not by the first query
        none = np.zeros(0, np.int64)
        self._probe(keys[:0], none, 0, 0, self.masks(self.widths[0], 0), 1, none, none, np.zeros((0, 1), np.int64))

    def nbytes(self) -> int:
        return sum(t.nbytes() for t in self.tables) + sum(c.nbytes for c in self.codes)

    def _sub(self, keys: np.ndarray, j: int) -> np.ndarray:
        return (keys >> np.uint64(self.offsets[j])) & np.uint64((1 << self.widths[j]) - 1)

    def searched(self, level: int) -> int:
        """The radius completely searched once every substring is probed up to `level`."""
        return min(self.bits, self.m * (level + 1) - 1)

    def level_probes(self, level: int) -> int:
        """Probes per query to run one more level (all substrings)."""
        return sum(len(self.masks(w, level)) for w in self.widths)

    def masks(self, width: int, level: int) -> np.ndarray:
        if (width, level) not in self._masks:
            self._masks[(width, level)] = flip_masks(width, level)
        return self._masks[(width, level)]

    def search(self, qkeys: np.ndarray, k: int | None, sizes: np.ndarray, max_level: int, radius: int | None = None):
        """Candidate buckets of each query, levels 0..max_level; with k, each query stops at the
        first level where k items lie within its searched radius.

        Returns (q, bucket, distance) of every bucket within each query's searched radius (and
        within `radius` if given; with k, only as far as its first k items reach), and the searched radius
        per query (-1 if no level ran)."""
        nq = len(qkeys)
        keep_d = self.searched(max_level) if radius is None else radius  # farther is never needed
        hist = np.zeros((nq, keep_d + 1), dtype=np.int64)  # items per (query, distance) found so far
        searched = np.full(nq, -1, dtype=np.int64)
        bound = np.full(nq, keep_d, dtype=np.int64)  # with k: each query's distance where its items reach k
        active = np.arange(nq)
        parts_q, parts_b, parts_d = [], [], []
        for level in range(max_level + 1):
            for j in range(self.m):
                masks = self.masks(self.widths[j], level)
                step = max(1, MAX_BLOCK // (len(masks) * 8))
                for start in range(0, len(active), step):
                    q, b, d = self._probe(qkeys, active[start:start + step], j, level, masks, k, bound, sizes, hist)
                    if len(q):
                        parts_q.append(q)
                        parts_b.append(b)
                        parts_d.append(d)
            reach = min(self.searched(level), keep_d)
            searched[active] = reach
            if k is not None:
                active = active[hist[active, :reach + 1].sum(axis=1) < k]
            if not len(active):
                break
        if not parts_q:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), searched
        q, b, d = np.concatenate(parts_q), np.concatenate(parts_b), np.concatenate(parts_d)
        # a query needs no bucket beyond the distance at which its items reach k (`bound`: the caller takes
        # its first k items in (distance, code) order), nor beyond its searched radius: fewer triples to sort
        cutoff = np.minimum(searched, bound)
        inside = d <= cutoff[q]
        return q[inside], b[inside], d[inside], searched

    def _probe(self, qkeys, chunk, j, level, masks, k, bound, sizes, hist):
        """(query, bucket, distance) of the buckets first reached at substring j, this level; each one's
        size added to hist[query, distance]."""
        from .kernels import mih_verify

        table = self.tables[j]
        where, sub_bucket = table.probe(self._sub(qkeys[chunk], j), masks)
        return mih_verify(chunk[where // len(masks)], table.offsets[sub_bucket], table.offsets[sub_bucket + 1],
                          qkeys, self.codes[j], table.row_ids, sizes, j, level, self._shifts, self._sub_masks,
                          np.iinfo(np.int64).max if k is None else k, bound, hist)
