"""Re-ranking: the cosine re-ordering of search candidates by their kept features (scoring only).

The semantic-hashing pipeline "filter with the code, then rank with TF-IDF": the Hamming search gives
candidates, and their original features (the featurizer's output: TF-IDF rows for texts, the vectors
as the model sees them, kept in the store: see semhash.keptfeatures) order them by cosine similarity
to the query's features.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

PAIR_BLOCK = 1 << 22     # dense: feature values multiplied at once when scoring (query, candidate) pairs
SPARSE_PAIRS = 1 << 16   # sparse: pairs scored by one product of a block of queries and their candidates
SPARSE_QUERIES = 64      # sparse: most queries in that block (the product is queries x candidates)


def cosine(features, queries, query_of: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
    """Cosine similarity (float64) of each pair (queries[query_of[i]], kept features of row_ids[i]);
    0 where either side is all zeros. `query_of` must be non-decreasing (pairs grouped by query)."""
    if not len(row_ids):
        return np.zeros(0)
    distinct, which = np.unique(row_ids, return_inverse=True)
    q, c = _unit_rows(queries), _unit_rows(features.gather(distinct))
    out = np.empty(len(row_ids))
    if not features.sparse:  # one row-wise dot product per pair, a block of pairs at a time
        step = max(1, PAIR_BLOCK // features.dim)
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



def rerank_results(results, queries, features,
                   k: int | None) -> tuple[list, list[np.ndarray]]:
    """Order each query's candidates by cosine similarity of the features (rounded to 6 decimals, as
    reported), then Hamming distance, then search order; keep the first k (all when k is None).

    `results`: the search's answer for the batch (`search.Results`: flat arrays with per-query
    offsets); returns per-query results with "+rerank" on the strategy, and the scores aligned with
    their row ids."""
    bounds = results.lims
    query_of = np.repeat(np.arange(len(results)), np.diff(bounds))
    scores = np.round(cosine(features, queries, query_of, results.row_ids), 6)
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


def _unit_rows(X):
    """Rows scaled to unit L2 norm, in float64 (all-zero rows stay zero)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        return sp.csr_matrix(sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ X)
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1)
    return X * np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)[:, None]
