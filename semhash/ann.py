"""FAISS binary indexes: the id-mapped index of every item (kept in the index directory), and the
searcher's scan over the distinct codes.

The only module that imports faiss.
"""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from .errors import IndexError_


class BinaryANN:
    """An id-mapped flat binary index (`IndexBinaryIDMap2` over `IndexBinaryFlat`)."""

    def __init__(self, bits: int, index: faiss.IndexBinary | None = None):
        self.bits = bits
        self.index = index if index is not None else faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(bits))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, row_ids: np.ndarray, codes: np.ndarray) -> None:
        """Add codes under the given row ids (ids must not be present already)."""
        if len(row_ids):
            self.index.add_with_ids(np.ascontiguousarray(codes, dtype=np.uint8),
                                    np.ascontiguousarray(row_ids, dtype=np.int64))

    def remove(self, row_ids: np.ndarray) -> int:
        """Remove these row ids; returns how many were present."""
        if not len(row_ids):
            return 0
        return int(self.index.remove_ids(np.ascontiguousarray(row_ids, dtype=np.int64)))

    def search(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest by Hamming distance: (distances (n, k) int32, row ids (n, k) int64; -1 = none)."""
        k = max(1, min(k, len(self))) if len(self) else 1
        if not len(self):
            n = len(codes)
            return np.full((n, k), -1, np.int32), np.full((n, k), -1, np.int64)
        d, ids = self.index.search(np.ascontiguousarray(codes, dtype=np.uint8), k)
        return d.astype(np.int32), ids

    def range_search(self, codes: np.ndarray, radius) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every item within Hamming distance `radius` (inclusive; a scalar or one per query).

        Returns (lims, distances, row ids) in FAISS's layout: query i owns entries lims[i]:lims[i+1]."""
        return _range_search(self.index, codes, radius)

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        """(row ids, codes) of everything indexed, sorted by row id."""
        n = len(self)
        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64) if n else np.zeros(0, np.int64)
        # reconstruct_n works on the base IndexBinary that a loaded IDMap2 hands back (it has no .xb)
        codes = self.index.index.reconstruct_n(0, n).reshape(n, self.bits // 8) if n else \
            np.zeros((0, self.bits // 8), np.uint8)
        order = np.argsort(ids, kind="stable")
        return ids[order], codes[order]

    @classmethod
    def build(cls, bits: int, row_ids: np.ndarray, codes: np.ndarray) -> "BinaryANN":
        ann = cls(bits)
        ann.add(row_ids, codes)
        return ann

    def save(self, path: str | Path) -> None:
        faiss.write_index_binary(self.index, str(path))

    @classmethod
    def load(cls, path: str | Path, bits: int) -> "BinaryANN":
        try:
            index = faiss.read_index_binary(str(path))
        except RuntimeError as e:
            raise IndexError_(f"cannot read the FAISS index {path} ({str(e).splitlines()[0]}); "
                              "run `semhash rebuild` to rebuild it from the store") from None
        if index.d != bits:
            raise IndexError_(f"the FAISS index {path} holds {index.d}-bit codes, expected {bits}")
        return cls(bits, index)


class CodeScan:
    """Exhaustive Hamming search over a bucket table's distinct codes (`IndexBinaryFlat`).

    A code's FAISS id is its position, that is its bucket index: no id map, and the scan costs one
    comparison per distinct code rather than per item, which on skewed codes is far fewer."""

    def __init__(self, codes: np.ndarray, bits: int):
        self.bits = bits
        self.index = faiss.IndexBinaryFlat(bits)
        # FAISS's counting k-nearest ("multi-counter") instead of a heap: 1.7-2.7x faster on 10,000
        # 64-bit codes for k = 100-200, and no slower at 600,000 for the 2k the fill asks for
        self.index.use_heap = False
        if len(codes):
            self.index.add(np.ascontiguousarray(codes, dtype=np.uint8))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def nbytes(self) -> int:
        return len(self) * self.bits // 8

    def search(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest codes of each query: (distances (n, k) int32, bucket indices (n, k) int64),
        by distance (ties in no promised order); 1 <= k <= len(self)."""
        d, idx = self.index.search(np.ascontiguousarray(codes, dtype=np.uint8), k)
        return d.astype(np.int32), idx

    def range_search(self, codes: np.ndarray, radius) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within `radius` (inclusive; scalar or per query): (lims, distances, bucket indices)."""
        return _range_search(self.index, codes, radius)


def _range_search(index, codes: np.ndarray, radius) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FAISS's range search with an inclusive radius, a scalar or one per query."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    r = np.broadcast_to(np.asarray(radius, dtype=np.int64), (len(codes),))
    if not index.ntotal or not len(codes):
        return np.zeros(len(codes) + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64)
    if (r == r[0]).all():
        # FAISS's range is strict (distance < radius), hence + 1
        lims, d, ids = index.range_search(codes, int(r[0]) + 1)
        return lims.astype(np.int64), d.astype(np.int32), ids.astype(np.int64)
    # one FAISS call per distinct radius, then the answers are put back in query order
    qs, ds, ids = [], [], []
    for value in np.unique(r):
        which = np.flatnonzero(r == value)
        lims, d, i = _range_search(index, codes[which], int(value))
        qs.append(np.repeat(which, np.diff(lims)))
        ds.append(d)
        ids.append(i)
    q = np.concatenate(qs)
    order = np.argsort(q, kind="stable")
    lims = np.searchsorted(q[order], np.arange(len(codes) + 1)).astype(np.int64)
    return lims, np.concatenate(ds)[order], np.concatenate(ids)[order]


def set_threads(n: int) -> None:
    """Limit FAISS's OpenMP threads (it otherwise starts one per core)."""
    faiss.omp_set_num_threads(n)
