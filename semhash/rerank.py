"""Re-ranking: the features an index keeps by store row id, and the cosine re-ordering of search candidates.

The semantic-hashing pipeline "filter with the code, then rank with TF-IDF": the Hamming search gives
candidates, and their original features (the featurizer's output: TF-IDF rows for texts, the vectors
as the model sees them) order them by cosine similarity to the query's features.

On disk, an index's `features/` folder, described by the manifest's "features" entry::

    features/
      000001.rows     int64 row ids of the segment's rows, in the order they were written
      000001.indptr   int64 (rows + 1) offsets into data/indices      } sparse layout (texts)
      000001.indices  uint16 (dim <= 65,536) or int32 column ids      }
      000001.data     float32 values                                  }
      000001.values   float32 (rows, dim), row-major                    dense layout (vectors)
      000002.rows ...

Raw little-endian arrays; the manifest entry gives the layout, dtypes, width and each segment's rows
and nnz. A segment is written once and never changed: each index update appends one segment (the rows
it wrote), so the next copy of the index takes the old segments as hard links instead of rewriting
them. Where a row id occurs more than once, the latest occurrence wins (a re-indexed item's new
features). Rows of removed items are never looked up (only the store's row ids become candidates)
and are dropped when the folder is compacted: when they outnumber the live rows, or past
MAX_SEGMENTS segments, the live rows are rewritten into one segment.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .buckets import concat_ranges
from .errors import IndexError_

FEATURES_DIR = "features"
FEATURES_FORMAT = 1
MAX_SEGMENTS = 16        # more segments than this are compacted into one
PAIR_BLOCK = 1 << 22     # dense: feature values multiplied at once when scoring (query, candidate) pairs
SPARSE_PAIRS = 1 << 16   # sparse: pairs scored by one product of a block of queries and their candidates
SPARSE_QUERIES = 64      # sparse: most queries in that block (the product is queries x candidates)
GATHER_BLOCK = 1 << 16   # rows copied at once when compacting

_ROWS, _INDPTR = np.dtype("<i8"), np.dtype("<i8")


def new_meta(kind: str, dim: int, dtype: str = "float32") -> dict:
    """The manifest entry of an empty feature folder for a model of this kind ("text" or "vector")."""
    layout = "sparse" if kind == "text" else "dense"
    meta = {"format": FEATURES_FORMAT, "layout": layout, "dtype": dtype, "dim": int(dim),
            "segments": [], "next_segment": 1, "rows": 0, "bytes": 0}
    if layout == "sparse":
        meta["index_dtype"] = "uint16" if dim <= 1 << 16 else "int32"
    return meta


def carry(src: Path, dst: Path) -> None:
    """Put an index's feature folder into its new copy: hard links (segments never change), else copies."""
    dst.mkdir()
    for p in sorted(src.iterdir()) if src.is_dir() else ():
        try:
            os.link(p, dst / p.name)
        except OSError:
            shutil.copy2(p, dst / p.name)


class FeatureStore:
    """A `features/` folder: append rows while an update runs, look rows up when re-ranking."""

    def __init__(self, directory: Path, meta: dict):
        if meta.get("format", 0) > FEATURES_FORMAT:
            raise IndexError_(f"the features in {directory} were written by a newer semhash; upgrade semhash")
        self.directory = Path(directory)
        self.meta = {**meta, "segments": [dict(s) for s in meta["segments"]]}
        self.sparse = meta["layout"] == "sparse"
        self.dim = int(meta["dim"])
        self.dtype = np.dtype(meta["dtype"]).newbyteorder("<")
        self.index_dtype = np.dtype(meta.get("index_dtype", "int32")).newbyteorder("<")
        self._open: dict | None = None      # the segment being written: name, files, rows, nnz
        self._arrays: list[dict] | None = None
        self._lookup: tuple | None = None

    # --- writing ----------------------------------------------------------------------------------
    def append(self, row_ids: np.ndarray, X) -> None:
        """Add the feature rows `X` (the featurizer's output) of the store rows `row_ids`."""
        n = len(row_ids)
        if X.shape != (n, self.dim):
            raise IndexError_(f"features of shape {X.shape} cannot be kept beside rows of width {self.dim}")
        if n == 0:
            return
        if self._open is None:
            self._start_segment()
        seg = self._open
        seg["files"]["rows"].write(np.asarray(row_ids, dtype=_ROWS).tobytes())
        if self.sparse:
            X = sp.csr_matrix(X, dtype=np.float32)
            X.sum_duplicates()  # canonical rows: sorted column ids, no repeats
            seg["files"]["indptr"].write((X.indptr[1:].astype(np.int64) + seg["nnz"]).astype(_INDPTR).tobytes())
            seg["files"]["indices"].write(X.indices.astype(self.index_dtype).tobytes())
            seg["files"]["data"].write(X.data.astype(self.dtype).tobytes())
            seg["nnz"] += int(X.nnz)
        else:
            seg["files"]["values"].write(np.ascontiguousarray(X, dtype=self.dtype).tobytes())
        seg["rows"] += n  # the segment joins the lookup when it is closed

    def _start_segment(self) -> None:
        name = f"{self.meta['next_segment']:06d}"
        self.meta["next_segment"] += 1
        self.directory.mkdir(exist_ok=True)
        parts = ("rows", "indptr", "indices", "data") if self.sparse else ("rows", "values")
        files = {p: open(self.directory / f"{name}.{p}", "wb") for p in parts}
        if self.sparse:
            files["indptr"].write(np.zeros(1, dtype=_INDPTR).tobytes())
        self._open = {"name": name, "files": files, "rows": 0, "nnz": 0}

    def _close_segment(self) -> None:
        seg, self._open = self._open, None
        if seg is None:
            return
        for fh in seg["files"].values():
            fh.close()
        entry = {"name": seg["name"], "rows": seg["rows"]}
        if self.sparse:
            entry["nnz"] = seg["nnz"]
        self.meta["segments"].append(entry)
        self._arrays = self._lookup = None

    def abort(self) -> None:
        """Close the files of a segment being written (the folder is then thrown away with its copy)."""
        if self._open is not None:
            for fh in self._open["files"].values():
                fh.close()
            self._open = None

    def finish(self, live: np.ndarray, strict: bool = True) -> dict | None:
        """End the update: `live` holds the store's row ids. Compacts when worthwhile and returns the
        manifest entry. A live row without features raises IndexError_ (`strict`) or gives None."""
        self._close_segment()
        live = np.unique(np.asarray(live, dtype=np.int64))
        positions, found = self._locate(live)
        if not found.all():
            if strict:
                raise IndexError_(f"{int((~found).sum())} indexed items have no kept features; index the corpus "
                                  "again with --keep-features into a new directory")
            return None
        stored = sum(s["rows"] for s in self.meta["segments"])
        if len(self.meta["segments"]) > MAX_SEGMENTS or stored - len(live) > len(live):
            self._compact(live, positions)
        self.meta["rows"] = int(len(live))
        self.meta["bytes"] = sum(p.stat().st_size for p in self.directory.iterdir()) \
            if self.directory.is_dir() else 0
        return self.meta

    def _compact(self, live: np.ndarray, positions: np.ndarray) -> None:
        """Rewrite the live rows (row id order) into one new segment and drop the old ones."""
        old = [s["name"] for s in self.meta["segments"]]
        for start in range(0, len(live), GATHER_BLOCK):
            self.append(live[start:start + GATHER_BLOCK], self._gather_positions(positions[start:start + GATHER_BLOCK]))
        self._arrays = self._lookup = None  # the old segments' arrays, still needed above, go now
        self.meta["segments"] = []
        self._close_segment()
        for p in list(self.directory.iterdir()):
            if p.name.split(".")[0] in old:
                p.unlink()

    # --- reading ----------------------------------------------------------------------------------
    def _segment_arrays(self) -> list[dict]:
        if self._arrays is None:
            out = []
            for s in self.meta["segments"]:
                n, base = s["rows"], self.directory / s["name"]
                a = {"rows": _load(base.with_suffix(".rows"), _ROWS, (n,))}
                if self.sparse:
                    a["indptr"] = _load(base.with_suffix(".indptr"), _INDPTR, (n + 1,))
                    a["indices"] = _load(base.with_suffix(".indices"), self.index_dtype, (s["nnz"],))
                    a["data"] = _load(base.with_suffix(".data"), self.dtype, (s["nnz"],))
                else:
                    a["values"] = _load(base.with_suffix(".values"), self.dtype, (n, self.dim))
                out.append(a)
            self._arrays = out
        return self._arrays

    def _last_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted distinct row ids, global position of each one's latest row) over all segments."""
        if self._lookup is None:
            arrays = self._segment_arrays()
            all_rows = np.concatenate([np.asarray(a["rows"]) for a in arrays]) if arrays else np.zeros(0, np.int64)
            rows, first_from_end = np.unique(all_rows[::-1], return_index=True)
            self._lookup = (rows, len(all_rows) - 1 - first_from_end)
        return self._lookup

    def _locate(self, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(global position of each row id's latest features, whether it has any)."""
        rows, positions = self._last_positions()
        if not len(rows):
            return np.zeros(len(row_ids), np.int64), np.zeros(len(row_ids), bool)
        j = np.minimum(np.searchsorted(rows, row_ids), len(rows) - 1)
        return positions[j], rows[j] == row_ids

    def gather(self, row_ids: np.ndarray):
        """Float32 features of these row ids, in the order asked: a CSR matrix (sparse) or an array."""
        positions, found = self._locate(np.asarray(row_ids, dtype=np.int64))
        if not found.all():
            raise IndexError_(f"{int((~found).sum())} candidates have no kept features (the index is out of "
                              "step); index the corpus again with --keep-features into a new directory")
        return self._gather_positions(positions)

    def _gather_positions(self, positions: np.ndarray):
        arrays = self._segment_arrays()
        starts = np.cumsum([0] + [s["rows"] for s in self.meta["segments"]])
        seg = np.searchsorted(starts, positions, side="right") - 1
        local = positions - starts[seg]
        n = len(positions)
        if not self.sparse:
            out = np.empty((n, self.dim), dtype=np.float32)
            for s in np.unique(seg):
                sel = np.flatnonzero(seg == s)
                out[sel] = arrays[s]["values"][local[sel]]
            return out
        parts, order = [], []
        for s in np.unique(seg):
            sel = np.flatnonzero(seg == s)
            a = arrays[s]
            lo, hi = a["indptr"][local[sel]], a["indptr"][local[sel] + 1]
            lengths = hi - lo
            idx = concat_ranges(lo, lengths)
            indptr = np.r_[0, np.cumsum(lengths)]
            parts.append(sp.csr_matrix((np.asarray(a["data"][idx], dtype=np.float32),
                                        np.asarray(a["indices"][idx], dtype=np.int32), indptr),
                                       shape=(len(sel), self.dim)))
            order.append(sel)
        if not parts:
            return sp.csr_matrix((0, self.dim), dtype=np.float32)
        stacked = sp.vstack(parts, format="csr")
        inverse = np.empty(n, dtype=np.int64)
        inverse[np.concatenate(order)] = np.arange(n)
        return stacked[inverse]

    def cosine(self, queries, query_of: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
        """Cosine similarity (float64) of each pair (queries[query_of[i]], features of row_ids[i]);
        0 where either side is all zeros. `query_of` must be non-decreasing (pairs grouped by query)."""
        if not len(row_ids):
            return np.zeros(0)
        distinct, which = np.unique(row_ids, return_inverse=True)
        q, c = _unit_rows(queries), _unit_rows(self.gather(distinct))
        out = np.empty(len(row_ids))
        if not self.sparse:  # one row-wise dot product per pair, a block of pairs at a time
            step = max(1, PAIR_BLOCK // self.dim)
            for s in range(0, len(row_ids), step):
                out[s:s + step] = np.einsum("ij,ij->i", q[query_of[s:s + step]], c[which[s:s + step]])
            return np.clip(out, -1.0, 1.0)
        # sparse: a block of queries times the distinct candidates of that block, one sparse product,
        # then each pair's entry (several times faster than multiplying the pairs' rows one by one)
        bounds = np.searchsorted(query_of, np.arange(q.shape[0] + 1))
        a = 0
        while a < q.shape[0]:
            b = min(a + SPARSE_QUERIES, int(np.searchsorted(bounds, bounds[a] + SPARSE_PAIRS, side="right")) - 1)
            b = max(b, a + 1)
            lo, hi = bounds[a], bounds[b]
            if hi > lo:
                cols, col_of = np.unique(which[lo:hi], return_inverse=True)
                block = (q[a:b] @ c[cols].T).toarray()
                out[lo:hi] = block[query_of[lo:hi] - a, col_of]
            a = b
        return np.clip(out, -1.0, 1.0)


def rerank_results(results, queries, features: FeatureStore,
                   k: int | None) -> tuple[list, list[np.ndarray]]:
    """Order each query's candidates by cosine similarity of the features (rounded to 6 decimals, as
    reported), then Hamming distance, then search order; keep the first k (all when k is None).

    `results`: the search's answer for the batch (`search.Results`: flat arrays with per-query
    offsets); returns per-query results with "+rerank" on the strategy, and the scores aligned with
    their row ids."""
    bounds = results.lims
    query_of = np.repeat(np.arange(len(results)), np.diff(bounds))
    scores = np.round(features.cosine(queries, query_of, results.row_ids), 6)
    order = _order(query_of, scores, results.distances)
    out, out_scores = [], []
    for i, res in enumerate(results):
        take = order[bounds[i]:bounds[i + 1]] - bounds[i]
        if k is not None:
            take = take[:k]
        out.append(dataclasses.replace(res, row_ids=res.row_ids[take], distances=res.distances[take],
                                       filled=res.filled[take], strategy=f"{res.strategy}+rerank"))
        out_scores.append(scores[bounds[i] + take])
    return out, out_scores


def _order(query_of: np.ndarray, scores: np.ndarray, dists: np.ndarray) -> np.ndarray:
    """Positions sorted by (query, score descending, distance); a stable sort keeps the search order
    among equals. One packed int64 key when it fits (several times faster than a lexsort)."""
    if not len(query_of):
        return np.zeros(0, dtype=np.int64)
    micro = np.rint(scores * 1e6).astype(np.int64)  # the scores have 6 decimals, in [-1, 1]
    db = max(1, int(dists.max()).bit_length())
    qb = max(1, int(query_of.max()).bit_length())
    if dists.min() >= 0 and qb + 21 + db <= 62:
        key = (query_of.astype(np.int64) << (21 + db)) | ((1_000_000 - micro) << db) | dists.astype(np.int64)
        return np.argsort(key, kind="stable")
    return np.lexsort((dists, -micro, query_of))


def _load(path: Path, dtype: np.dtype, shape: tuple) -> np.ndarray:
    """A read-only memory map of a raw array (an empty array for no elements: mmap needs a byte)."""
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    expected = int(np.prod(shape)) * dtype.itemsize
    if not path.is_file() or path.stat().st_size != expected:
        raise IndexError_(f"the kept features file {path} is missing or damaged; index the corpus again "
                          "with --keep-features into a new directory")
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def _unit_rows(X):
    """Rows scaled to unit L2 norm, in float64 (all-zero rows stay zero)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        return sp.csr_matrix(sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ X)
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1)
    return X * np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)[:, None]
