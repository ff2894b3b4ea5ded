"""Re-ranking: the cosine re-ordering of search candidates by their kept features (scoring only).

The semantic-hashing pipeline "filter with the code, then rank with TF-IDF": the Hamming search gives
candidates, and their original features (the featurizer's output: TF-IDF rows for texts, the vectors
as the model sees them, kept in the store: see semhash.keptfeatures) order them by cosine similarity
to the query's features.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .vectors import unit_rows

PAIR_BLOCK = 1 << 22     # dense: feature values multiplied at once when scoring (query, candidate) pairs
SPARSE_PAIRS = 1 << 16   # sparse: pairs scored by one product of a block of queries and their candidates
SPARSE_QUERIES = 64      # sparse: most queries in that block (the product is queries x candidates)
# dense, single precision: a block of queries times all distinct candidates (GEMM_ENTRIES products at most at
# once) when there are at most gemm_factor() times as many distinct candidates as candidates a query, else each
# query's candidate rows gathered and multiplied. Measured on two cores (2026-12-02, 384 dimensions): while a
# query's gathered rows fit in GATHER_CACHE bytes, the product wins below about 16 times (100 candidates a query);
# beyond it the gather runs from memory, several times slower a pair, and the product wins below 50 to 65 times
# (300 and 1,000 candidates a query)
GEMM_FACTOR, GEMM_FACTOR_SPILLED = 16, 48
GATHER_CACHE = 1 << 18
GEMM_ENTRIES = 1 << 24


def cosine(features, queries, query_of: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
    """Cosine similarity (float64) of each pair (queries[query_of[i]], kept features of row_ids[i]);
    0 where either side is all zeros. `query_of` must be non-decreasing (pairs grouped by query)."""
    if not len(row_ids):
        return np.zeros(0)
    distinct, which = np.unique(row_ids, return_inverse=True)
    q, c = unit_rows(queries, np.float64), unit_rows(features.gather(distinct), np.float64)
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
    their row ids. With k and dense features, every pair is scored in single precision first and only
    the pairs that can reach a query's top k are scored again in double (`_dense_top`): the same
    answer as scoring them all in double, in half the memory traffic."""
    lims = bounds = results.lims
    query_of = np.repeat(np.arange(len(results)), np.diff(bounds))
    if k is not None and not features.sparse and len(results.row_ids):
        keep, scores = _dense_top(features, queries, query_of, results.row_ids, results.distances, bounds, k)
        order = keep[_order(query_of[keep], scores[keep], results.distances[keep])]
        bounds = np.r_[0, np.cumsum(np.bincount(query_of[keep], minlength=len(results)))]
    else:
        scores = np.round(cosine(features, queries, query_of, results.row_ids), 6)
        order = _order(query_of, scores, results.distances)
    out, out_scores = [], []
    for i, res in enumerate(results):
        take = order[bounds[i]:bounds[i + 1]]
        if k is not None:
            take = take[:k]
        take = take - lims[i]
        out.append(dataclasses.replace(res, row_ids=res.row_ids[take], distances=res.distances[take],
                                       filled=res.filled[take], strategy=f"{res.strategy}+rerank"))
        out_scores.append(scores[lims[i] + take])
    return out, out_scores


def gemm_factor(per_query: float, dim: int) -> float:
    """How many times as many distinct candidates as candidates a query the one-product scoring is worth
    (GEMM_FACTOR while a query's single-precision rows fit in GATHER_CACHE, else GEMM_FACTOR_SPILLED)."""
    return GEMM_FACTOR if per_query * dim * 4 <= GATHER_CACHE else GEMM_FACTOR_SPILLED


def _dense_top(features, queries, query_of: np.ndarray, row_ids: np.ndarray, dists: np.ndarray,
               bounds: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions, scores): the pairs that may be in their query's top k by (rounded cosine, distance,
    search order), and every pair's score, exact (float64, rounded to 6 decimals) at those positions.

    Single-precision scores of unit vectors are within err = (dim + 8) * 2**-24 of the double ones. Let a
    be the single score of the k-th pair in the order by rounded single scores: k pairs score at least
    a - 1e-6 in single, so at least a - 1e-6 - err in truth. A pair whose single score is below
    a - 2 * err - 2e-6 has a true score below those k by more than 1e-6, so it stays below them after
    rounding to 6 decimals, whatever the distances: it cannot be in the top k, and only the others are
    scored in double."""
    distinct, which = np.unique(row_ids, return_inverse=True)
    c64, q64 = unit_rows(features.gather(distinct), np.float64), unit_rows(queries, np.float64)
    c32, q32 = c64.astype(np.float32), q64.astype(np.float32)
    approx = np.empty(len(row_ids), np.float32)
    n = len(bounds) - 1
    counts = np.diff(bounds)
    per_query = len(row_ids) / max(1, n)
    if len(distinct) <= gemm_factor(per_query, features.dim) * per_query:
        # few distinct candidates for the pairs: every query of a block times every one of them (one matrix
        # product), then each pair's entry; cheaper than gathering a feature row per pair
        step = max(1, GEMM_ENTRIES // len(distinct))
        for i in range(0, n, step):
            j = min(n, i + step)
            lo, hi = bounds[i], bounds[j]
            if hi > lo:
                approx[lo:hi] = (q32[i:j] @ c32.T)[query_of[lo:hi] - i, which[lo:hi]]
    else:  # one row per pair: a product of each query's candidates with it
        for t in np.flatnonzero(counts):
            approx[bounds[t]:bounds[t + 1]] = c32[which[bounds[t]:bounds[t + 1]]] @ q32[t]
    margin = 2 * (features.dim + 8) * 2.0 ** -24 + 2e-6
    kth = np.full(n, -np.inf)
    if n and (counts == counts[0]).all() and counts[0] > k:  # as many candidates each: a partition a row
        kth[:] = -np.partition(-approx.reshape(n, -1), k - 1, axis=1)[:, k - 1]
    else:
        rank = _order(query_of, np.round(approx.astype(np.float64), 6), dists)  # by the single scores
        got = counts > 0
        kth[got] = approx[rank[bounds[:-1][got] + np.minimum(counts[got], k) - 1]]
    keep = np.flatnonzero(approx >= kth[query_of] - margin)
    scores = np.zeros(len(row_ids))
    exact = np.einsum("ij,ij->i", q64[query_of[keep]], c64[which[keep]])
    scores[keep] = np.round(np.clip(exact, -1.0, 1.0), 6)
    return keep, scores


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
