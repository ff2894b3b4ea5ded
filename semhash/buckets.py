"""The bucket table: code -> row ids, in memory, compact, and vectorized for many lookups at once.

Codes are integer keys (the first 64 bits of the code; longer codes are verified by the caller).
The table is three flat arrays: the distinct keys sorted, an offsets array, and the row ids grouped
by key, so `keys[i]`'s bucket is `row_ids[offsets[i]:offsets[i+1]]`. Lookups of many probes are one
`searchsorted` plus gathers, with no Python loop per probe.
"""
from __future__ import annotations

import numpy as np

from .codes import to_keys


def code_keys(codes: np.ndarray) -> np.ndarray:
    """uint64 keys of packed codes; codes longer than 64 bits are keyed by their first 64 bits."""
    c = np.ascontiguousarray(codes, dtype=np.uint8)
    return to_keys(c[:, :8])


class BucketTable:
    def __init__(self, keys: np.ndarray, offsets: np.ndarray, row_ids: np.ndarray):
        self.keys = keys          # (d,) uint64, sorted, distinct
        self.offsets = offsets    # (d + 1,) int64
        self.row_ids = row_ids    # (n,) int64, grouped by key, ascending within a bucket

    @classmethod
    def build(cls, row_ids: np.ndarray, codes: np.ndarray) -> "BucketTable":
        """Build from aligned row ids and packed codes."""
        return cls.from_keys(np.asarray(row_ids, dtype=np.int64), code_keys(codes))

    @classmethod
    def from_keys(cls, row_ids: np.ndarray, keys: np.ndarray) -> "BucketTable":
        order = np.lexsort((row_ids, keys))
        k, r = keys[order], row_ids[order]
        if len(k):
            starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        else:
            starts = np.zeros(0, dtype=np.int64)
        offsets = np.r_[starts, len(k)].astype(np.int64)
        return cls(k[starts], offsets, r)

    def __len__(self) -> int:
        return len(self.row_ids)

    @property
    def n_buckets(self) -> int:
        return len(self.keys)

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def nbytes(self) -> int:
        return self.keys.nbytes + self.offsets.nbytes + self.row_ids.nbytes

    def find(self, probes: np.ndarray) -> np.ndarray:
        """Index into `keys` of each probe key, or -1 where that bucket is empty. Any shape."""
        p = np.asarray(probes, dtype=np.uint64)
        if not len(self.keys):
            return np.full(p.shape, -1, dtype=np.int64)
        pos = np.searchsorted(self.keys, p)
        pos_c = np.minimum(pos, len(self.keys) - 1)
        return np.where(self.keys[pos_c] == p, pos_c, -1)

    def gather(self, bucket_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row ids of the given buckets (indices into `keys`, -1 ignored), flattened.

        Returns (row_ids, owner): owner[j] is the position in `bucket_idx` whose bucket holds row_ids[j]."""
        b = np.asarray(bucket_idx).ravel()
        hit = np.flatnonzero(b >= 0)
        starts = self.offsets[b[hit]]
        counts = self.offsets[b[hit] + 1] - starts
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        owner = np.repeat(hit, counts)
        # position within each run: global arange minus the run's start in the output
        run_start = np.repeat(np.cumsum(counts) - counts, counts)
        idx = np.repeat(starts, counts) + (np.arange(total) - run_start)
        return self.row_ids[idx], owner

    def lookup(self, keys: np.ndarray) -> list[np.ndarray]:
        """Row ids in the bucket of each key (a list, one array per key): a convenience over find+gather."""
        b = self.find(keys)
        rows, owner = self.gather(b)
        splits = np.searchsorted(owner, np.arange(len(b) + 1))
        return [rows[splits[i]:splits[i + 1]] for i in range(len(b))]

    def stats(self) -> dict:
        s = self.sizes()
        if not len(s):
            return {"distinct_codes": 0, "largest_bucket": 0, "items_per_bucket": {}, "bytes": int(self.nbytes()),
                    "bytes_per_item": 0.0}  # the same keys as for a non-empty table
        pct = np.percentile(s, [50, 90, 99]).tolist()
        return {"distinct_codes": int(len(s)), "largest_bucket": int(s.max()),
                "items_per_bucket": {"mean": round(float(s.mean()), 3), "p50": pct[0], "p90": pct[1],
                                     "p99": pct[2], "max": int(s.max())},
                "bytes": int(self.nbytes()),
                "bytes_per_item": round(self.nbytes() / max(1, len(self)), 2)}
