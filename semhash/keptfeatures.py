"""Kept features: each item's featurizer output, stored by row id in the store of record, for re-ranking.

The rows live in the store's features table, written in the same transaction as the items they
belong to, so an update (and a crash in the middle of one) never leaves items and features out of
step. Each row is one blob:

    dense layout (vectors):  float32 values, little-endian, `dim` of them
    sparse layout (texts):   uint32 nnz, then nnz column ids (uint16 when dim <= 65,536, else int32),
                             then nnz float32 values, little-endian

The manifest's "features" entry says which: {"layout", "dtype", "dim", "index_dtype"}.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .errors import IndexError_
from .store import MissingItemError, Store

FEATURES_FORMAT = 2
_F32, _U32 = np.dtype("<f4"), np.dtype("<u4")


def new_meta(sparse: bool, dim: int) -> dict:
    """The manifest entry of the kept features of a model whose features are sparse (TF-IDF) or dense."""
    layout = "sparse" if sparse else "dense"
    meta = {"format": FEATURES_FORMAT, "layout": layout, "dtype": "float32", "dim": int(dim)}
    if layout == "sparse":
        meta["index_dtype"] = "uint16" if dim <= 1 << 16 else "int32"
    return meta


class KeptFeatures:
    """Encode feature rows for `Store.upsert(features=...)`; gather them back by row id."""

    def __init__(self, meta: dict, store: Store):
        if meta.get("format") != FEATURES_FORMAT:
            raise IndexError_("this index keeps features in the layout of an older semhash, which this one does "
                              "not read; index the corpus again with --keep-features into a new directory")
        self.meta, self.store = meta, store
        self.sparse = meta["layout"] == "sparse"
        self.dim = int(meta["dim"])
        self.index_dtype = np.dtype(meta.get("index_dtype", "int32")).newbyteorder("<")
        self._conn = None  # a pinned snapshot of the store to read from (see `at`)

    def at(self, conn) -> "KeptFeatures":
        """This store's features as read in one pinned snapshot (Store.pinned)."""
        view = KeptFeatures(self.meta, self.store)
        view._conn = conn
        return view

    def encode(self, X) -> list[bytes]:
        """One blob per row of X (the featurizer's output: sparse rows for texts, dense for vectors)."""
        if X.shape[1] != self.dim:
            raise IndexError_(f"features of width {X.shape[1]} cannot be kept beside rows of width {self.dim}")
        if not self.sparse:
            A = np.ascontiguousarray(X, dtype=_F32)
            return [row.tobytes() for row in A]
        X = sp.csr_matrix(X, dtype=np.float32)
        X.sum_duplicates()  # canonical rows: sorted column ids, no repeats
        out = []
        for i in range(X.shape[0]):
            lo, hi = X.indptr[i], X.indptr[i + 1]
            out.append(np.array([hi - lo], _U32).tobytes() + X.indices[lo:hi].astype(self.index_dtype).tobytes()
                       + X.data[lo:hi].astype(_F32).tobytes())
        return out

    def gather(self, row_ids: np.ndarray):
        """Float32 features of these row ids, in the order asked: a CSR matrix (sparse) or an array."""
        rows = np.asarray(row_ids, np.int64)
        blobs = self.store.features(rows, conn=self._conn)
        missing = [r for r in np.unique(rows).tolist() if r not in blobs]
        if missing:  # deleted since the search (the caller catches up), or never kept
            raise MissingItemError(f"{len(missing)} candidates have no kept features in the store; index the "
                                   f"corpus again with --keep-features into a new directory", missing)
        if not self.sparse:
            data = b"".join([blobs[r] for r in rows.tolist()])
            if len(data) != len(rows) * self.dim * 4:
                raise IndexError_("a kept features row in the store is damaged; index the corpus again with "
                                  "--keep-features into a new directory")
            return np.frombuffer(data, _F32).reshape(len(rows), self.dim).astype(np.float32)
        parts = [self._sparse_row(blobs[r]) for r in rows.tolist()]
        lengths = np.array([len(p[0]) for p in parts], np.int64)
        indptr = np.r_[0, np.cumsum(lengths)]
        indices = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
        data = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32)
        return sp.csr_matrix((data.astype(np.float32), indices.astype(np.int32), indptr), shape=(len(rows), self.dim))

    def _sparse_row(self, blob: bytes) -> tuple[np.ndarray, np.ndarray]:
        nnz = int(np.frombuffer(blob, _U32, count=1)[0])
        width = self.index_dtype.itemsize
        if len(blob) != 4 + nnz * (width + 4):
            raise IndexError_("a kept features row in the store is damaged; index the corpus again with "
                              "--keep-features into a new directory")
        return (np.frombuffer(blob, self.index_dtype, count=nnz, offset=4),
                np.frombuffer(blob, _F32, count=nnz, offset=4 + nnz * width))
