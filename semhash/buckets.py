"""The bucket table: code -> row ids, in memory, compact, and vectorized for many lookups at once.

One bucket per distinct code. Codes of at most 64 bits are integer keys; longer codes are grouped by
the whole code, keyed by their first 64 bits for ordering only (probes need codes of <= 64 bits).
The table is three flat arrays: the distinct keys sorted, an offsets array, and the row ids grouped
by key, so `keys[i]`'s bucket is `row_ids[offsets[i]:offsets[i+1]]`. Lookups of many probes are one
`searchsorted` plus gathers, with no Python loop per probe.

Most probes of a Hamming ball miss (at 32 bits, r = 2 asks 529 codes per query, of which a few
dozen exist). A bit filter over a hash of the keys answers "surely empty" with one gather, and only
the probes that pass it pay for the binary search. The hash is linear over XOR, so the hashes of a
whole ball (query ^ mask for every mask) cost one XOR each.
"""
from __future__ import annotations

import numpy as np

from .codes import concat_ranges, from_keys, to_keys  # noqa: F401 (concat_ranges: re-exported)

_FILTER_SLOTS_PER_KEY = 16
_LOW32 = np.uint64(0xFFFFFFFF)


class _XorHash:
    """A random hash of uint64 keys to `nbits` bits that is linear over XOR: h(a ^ b) = h(a) ^ h(b).

    Each key byte selects a precomputed XOR of random columns (8 lookups in tables of 256)."""

    def __init__(self, nbits: int, seed: int = 0x5E4A5):
        rng = np.random.default_rng(seed)
        columns = rng.integers(0, 1 << nbits, size=(8, 8), dtype=np.uint32)  # [byte][bit] -> column
        values = np.arange(256)
        self.tables = np.zeros((8, 256), dtype=np.uint32)
        for bit in range(8):
            self.tables[:, (values >> bit) & 1 == 1] ^= columns[:, bit:bit + 1]

    def __call__(self, keys: np.ndarray) -> np.ndarray:
        k = np.asarray(keys, dtype=np.uint64)
        h = np.zeros(k.shape, dtype=np.uint32)
        for i in range(8):
            h ^= self.tables[i].take(((k >> np.uint64(8 * i)) & np.uint64(255)).astype(np.intp))
        return h


def code_keys(codes: np.ndarray) -> np.ndarray:
    """uint64 keys of packed codes; codes longer than 64 bits are keyed by their first 64 bits."""
    c = np.ascontiguousarray(codes, dtype=np.uint8)
    return to_keys(c[:, :8])


class BucketTable:
    def __init__(self, keys: np.ndarray, offsets: np.ndarray, row_ids: np.ndarray,
                 code_bytes: int = 8, codes: np.ndarray | None = None):
        self.keys = keys          # (d,) uint64, sorted; distinct for codes of <= 64 bits
        self.offsets = offsets    # (d + 1,) int64
        self.row_ids = row_ids    # (n,) int64, grouped by code, ascending within a bucket
        self.code_bytes = code_bytes  # packed bytes per code
        self._codes = codes       # (d, code_bytes) distinct packed codes, kept only for codes over 64 bits
        self._filter: tuple[np.ndarray, _XorHash] | None = None  # built on the first lookup

    @classmethod
    def build(cls, row_ids: np.ndarray, codes: np.ndarray) -> "BucketTable":
        """Build from aligned row ids and packed codes: one bucket per distinct code, buckets in code
        order (the code read as an unsigned integer), items in row-id order within a bucket."""
        c = np.ascontiguousarray(codes, dtype=np.uint8)
        row_ids = np.asarray(row_ids, dtype=np.int64)
        nbytes = c.shape[1] if c.ndim == 2 else 8
        if nbytes <= 8:
            table = cls.from_keys(row_ids, code_keys(c))
            table.code_bytes = nbytes
            return table
        # longer codes: big-endian 64-bit words, compared most significant first
        words = np.zeros((len(c), -(-nbytes // 8) * 8), dtype=np.uint8)
        words[:, :nbytes] = c
        words = words.view(">u8").astype(np.uint64)
        order = np.lexsort((row_ids,) + tuple(words[:, j] for j in reversed(range(words.shape[1]))))
        w, r = words[order], row_ids[order]
        new = np.r_[True, (w[1:] != w[:-1]).any(axis=1)] if len(w) else np.zeros(0, bool)
        starts = np.flatnonzero(new)
        return cls(w[starts, 0], np.r_[starts, len(w)].astype(np.int64), r, nbytes, c[order[starts]])

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

    @classmethod
    def from_sorted(cls, keys: np.ndarray, row_ids: np.ndarray, code_bytes: int) -> "BucketTable":
        """Build from items already in table order (keys of codes <= 64 bits, ascending; rows ascending
        within a key): no sort, one pass."""
        if len(keys):
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        else:
            starts = np.zeros(0, dtype=np.int64)
        return cls(keys[starts], np.r_[starts, len(keys)].astype(np.int64), row_ids, code_bytes)

    def item_keys(self) -> np.ndarray:
        """The key of each item, in table order (aligned with `row_ids`)."""
        return np.repeat(self.keys, self.sizes())

    def distinct_codes(self) -> np.ndarray:
        """The packed code of each bucket, (d, code_bytes) uint8, in bucket order."""
        if self._codes is not None:
            return self._codes
        return from_keys(self.keys, self.code_bytes * 8)

    def __len__(self) -> int:
        return len(self.row_ids)

    @property
    def n_buckets(self) -> int:
        return len(self.keys)

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def nbytes(self) -> int:
        extra = self._codes.nbytes if self._codes is not None else 0
        extra += self._filter[0].nbytes if self._filter is not None else 0
        return self.keys.nbytes + self.offsets.nbytes + self.row_ids.nbytes + extra

    def prepare(self) -> None:
        """Build now the bit filter that probes use (otherwise built by the first probe)."""
        if len(self.keys) and self.code_bytes <= 8:
            self._get_filter()

    def find(self, probes: np.ndarray) -> np.ndarray:
        """Index into `keys` of each probe key, or -1 where that bucket is empty. Any shape."""
        p = np.asarray(probes, dtype=np.uint64)
        out = np.full(p.shape, -1, dtype=np.int64)
        where, idx = self.find_hits(p.ravel())
        out.reshape(-1)[where] = idx
        return out

    def find_hits(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, bucket indices) of the probes (a flat uint64 array) whose bucket is not empty,
        in probe order."""
        p = np.asarray(probes, dtype=np.uint64).ravel()
        if not len(self.keys) or not len(p):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        _, hash_ = self._get_filter()
        where = np.flatnonzero(self._maybe(hash_(p)))
        return self._resolve(where, p[where])

    def probe(self, query_keys: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """find_hits over the grid of probes query_keys[i] ^ masks[j], without building it.

        Returns (flat grid positions i * len(masks) + j, bucket indices) of the non-empty buckets,
        grouped by query and in mask order within a query. The filter's hash is linear over XOR, so
        the hash of every probe is hash(query) ^ hash(mask): one pass over the grid, where hashing
        each probe would cost a dozen."""
        q = np.asarray(query_keys, dtype=np.uint64).ravel()
        m = np.asarray(masks, dtype=np.uint64).ravel()
        if not len(self.keys) or not len(q) or not len(m):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        _, hash_ = self._get_filter()
        where = np.flatnonzero(self._maybe((hash_(q)[:, None] ^ hash_(m)[None, :]).ravel()))
        return self._resolve(where, q[where // len(m)] ^ m[where % len(m)])

    def _resolve(self, where: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Binary-search the candidates that passed the filter; keep those whose bucket exists."""
        if self.keys[-1] <= _LOW32 and len(cand) <= _LOW32:
            # keys of <= 32 bits: sort (key, position) packed in one uint64 (a fast value sort), so the
            # binary searches run in key order, several times faster than in random order
            packed = (cand << np.uint64(32)) | np.arange(len(cand), dtype=np.uint64)
            packed.sort()
            pos = np.empty(len(cand), dtype=np.int64)
            pos[(packed & _LOW32).astype(np.int64)] = np.searchsorted(self.keys, packed >> np.uint64(32))
        else:
            pos = np.searchsorted(self.keys, cand)
        np.minimum(pos, len(self.keys) - 1, out=pos)
        found = self.keys[pos] == cand
        return where[found], pos[found]

    def _get_filter(self) -> tuple[np.ndarray, "_XorHash"]:
        """A one-hash Bloom filter of the keys: one bit per slot, 16 to 32 slots per key (so 3 to 6 %
        of the probes of empty buckets get through to the binary search), 2 to 4 bytes per code:
        small enough to stay in the CPU cache, which matters more than the bit arithmetic."""
        if self._filter is None:
            nbits = int(min(32, max(10, (len(self.keys) * _FILTER_SLOTS_PER_KEY - 1).bit_length())))
            hash_ = _XorHash(nbits)
            present = np.zeros(1 << nbits, dtype=bool)
            present[hash_(self.keys)] = True
            self._filter = (np.packbits(present, bitorder="little"), hash_)
        return self._filter

    def _maybe(self, hashes: np.ndarray) -> np.ndarray:
        """Boolean per probe, given its filter hash: False = its bucket is surely empty."""
        table, _ = self._get_filter()
        word = table.take(hashes >> np.uint32(3))
        word >>= (hashes & np.uint32(7)).astype(np.uint8)
        word &= np.uint8(1)
        return word.view(bool)

    def gather(self, bucket_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row ids of the given buckets (indices into `keys`, -1 ignored), flattened.

        Returns (row_ids, owner): owner[j] is the position in `bucket_idx` whose bucket holds row_ids[j]."""
        b = np.asarray(bucket_idx).ravel()
        hit = np.flatnonzero(b >= 0)
        rows, counts = self.expand(b[hit])
        return rows, np.repeat(hit, counts)

    def expand(self, bucket_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row ids of the given buckets concatenated in order, each bucket's size). No -1 allowed."""
        pos, counts = self.spans(bucket_idx)
        return self.row_ids[pos], counts

    def spans(self, bucket_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in `row_ids` of the given buckets' items, concatenated in order; each bucket's size)."""
        b = np.asarray(bucket_idx, dtype=np.int64)
        starts = self.offsets[b]
        counts = self.offsets[b + 1] - starts
        return concat_ranges(starts, counts), counts

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
