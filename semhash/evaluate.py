"""Retrieval quality of binary codes: precision@k, mAP, radius precision/recall, kNN ceiling, code diagnostics.

The question a user asks first is whether learned codes beat the simple ways of making codes
(LSH, PCA-sign, ITQ), so every method is scored the same way here: each query's database items
are ranked by Hamming distance to the query's code, an item is relevant when it has the query's
label (labels are compared by equality: ints, strings, tuples), and the metrics are averaged over
queries. Everything is numpy, batched over queries, so 10,000 queries x 60,000 items at 64 bits
takes seconds on one core.

Ties. A short code puts thousands of items at the same Hamming distance, and the order inside
such a group moves precision@k and mAP a lot, so three tie policies are reported:

- "index" (deterministic, the default): ties at equal distance go in database index order,
  smallest first (the order in which the index returns them).
- "average": the expected value over all orderings of every tied group, equally likely,
  computed exactly from the counts of items and relevant items at each distance (see
  `tie_averaged_precision_at_k` and `tie_averaged_average_precision` for the formulas).
- "confidence" (when the queries' logits are given): ties at equal distance go by the query's
  confidence in the bits where the item differs, sum over those bits of |query logit|, lowest
  first, then by index. The per-bit weights are |logit| / sum |logit| rounded down to multiples
  of 1/65,535, so every cost is an exact integer (items with the same code always get the same
  cost); costs closer than about bits/65,535 of the query's total may tie or swap.

Conventions: precision@k divides by min(k, database size); a query with no relevant item in the
database has no average precision or recall (NaN per query) and is left out of mAP and recall;
precision within a radius of an empty ball counts as 0 (so it also reports the share of queries
with an empty ball, and the precision over non-empty balls).

Codes are packed uint8 arrays (n, bits / 8), most significant bit first, as `Hasher.encode` and
`codes.pack` make them.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import digamma

from . import asymmetric
from .codes import popcount, unpack
from .errors import ConfigError
from .vectors import unit_rows

TIE_POLICIES = ("index", "average", "confidence")
BLOCK_ELEMENTS = 1 << 22  # query x database (x 64-bit words) values held at once per block
CONFIDENCE_LEVELS = 65535  # integer resolution of the confidence tie-break (fits uint16)



# --- Hamming distances --------------------------------------------------------------------------------------

def check_codes(codes: np.ndarray, what: str = "codes") -> np.ndarray:
    """A 2-D uint8 array of packed codes."""
    c = np.asarray(codes)
    if c.ndim != 2 or c.dtype != np.uint8 or c.shape[1] == 0:
        raise ConfigError(f"{what} must be packed codes, a 2-D uint8 array (items, bits / 8); "
                          f"got {c.dtype} of shape {c.shape}")
    return np.ascontiguousarray(c)


def code_words(codes: np.ndarray) -> np.ndarray:
    """Packed codes as (n, words) uint64, zero-padded to whole 64-bit words (XOR + popcount material)."""
    c = check_codes(codes)
    nbytes = -(-c.shape[1] // 8) * 8
    padded = np.zeros((c.shape[0], nbytes), dtype=np.uint8)
    padded[:, :c.shape[1]] = c
    return padded.view(np.uint64)


def _distances(query_words: np.ndarray, db_words: np.ndarray) -> np.ndarray:
    """(nq, ndb) Hamming distances, uint8 up to 255 bits, else uint16."""
    nwords = query_words.shape[1]
    if nwords == 1:
        return popcount(query_words[:, :1] ^ db_words[:, 0][None, :])
    out = np.zeros((len(query_words), len(db_words)), dtype=np.uint16)
    for w in range(nwords):
        out += popcount(query_words[:, w:w + 1] ^ db_words[:, w][None, :])
    return out if nwords > 3 else out.astype(np.uint8)


def _block_rows(n_db: int, nwords: int = 1, block_size: int | None = None) -> int:
    if block_size:
        return int(block_size)
    return max(1, BLOCK_ELEMENTS // max(1, n_db * nwords))


def iter_distance_blocks(query_codes: np.ndarray, db_codes: np.ndarray,
                         block_size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(first query row, (b, ndb) distances) for consecutive blocks of queries; memory stays bounded."""
    qw, dw = code_words(query_codes), code_words(db_codes)
    if qw.shape[1] != dw.shape[1] or query_codes.shape[1] != db_codes.shape[1]:
        raise ConfigError(f"query codes have {query_codes.shape[1] * 8} bits, the database's "
                          f"{db_codes.shape[1] * 8}")
    step = _block_rows(len(dw), dw.shape[1], block_size)
    for start in range(0, len(qw), step):
        yield start, _distances(qw[start:start + step], dw)


def hamming_distances(query_codes: np.ndarray, db_codes: np.ndarray) -> np.ndarray:
    """All (nq, ndb) Hamming distances at once (for small sets; large ones go through iter_distance_blocks)."""
    blocks = [d for _, d in iter_distance_blocks(query_codes, db_codes)]
    if not blocks:
        return np.zeros((0, len(db_codes)), dtype=np.uint8)
    return np.concatenate(blocks, axis=0)


# --- labels -------------------------------------------------------------------------------------------------

def encode_labels(query_labels: Sequence, db_labels: Sequence, n_queries: int, n_db: int) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    """Labels (any hashable values) as int64 class numbers shared by queries and database."""
    ql, dl = _as_list(query_labels), _as_list(db_labels)
    if len(ql) != n_queries or len(dl) != n_db:
        raise ConfigError(f"need one label per item: {len(ql)} query labels for {n_queries} queries, "
                          f"{len(dl)} database labels for {n_db} items")
    numbers: dict = {}
    try:
        d = np.array([numbers.setdefault(x, len(numbers)) for x in dl], dtype=np.int64)
        q = np.array([numbers.get(x, -1) for x in ql], dtype=np.int64)  # -1: a label no database item has
    except TypeError as e:
        raise ConfigError(f"labels must be hashable values (ints, strings, tuples): {e}") from None
    return q, d


def _as_list(labels: Sequence) -> list:
    return labels.tolist() if isinstance(labels, np.ndarray) else list(labels)


# --- tie-averaged metrics, exact, from counts per distance -----------------------------------------------------

def tie_averaged_precision_at_k(counts: np.ndarray, rel_counts: np.ndarray, k: int) -> np.ndarray:
    """Expected precision@k over random orderings of tied items, per query.

    counts[q, h] items and rel_counts[q, h] relevant items at distance h. If the k-th position falls
    in the group at distance h, preceded by N items of which R relevant, the group contributes
    (k - N) positions, each relevant with probability r_h / g_h: P@k = (R + (k - N) r_h / g_h) / k.
    k is capped at the database size."""
    counts = np.asarray(counts, dtype=np.float64)
    rel_counts = np.asarray(rel_counts, dtype=np.float64)
    k = min(int(k), int(counts[0].sum())) if len(counts) else int(k)
    cum = np.cumsum(counts, axis=1)
    rel_cum = np.cumsum(rel_counts, axis=1)
    rows = np.arange(len(counts))
    h = np.minimum((cum < k).sum(axis=1), counts.shape[1] - 1)  # the group holding position k
    before = cum[rows, h] - counts[rows, h]
    rel_before = rel_cum[rows, h] - rel_counts[rows, h]
    g = counts[rows, h]
    share = np.divide(rel_counts[rows, h], g, out=np.zeros_like(g), where=g > 0)
    return (rel_before + (k - before) * share) / max(k, 1)


def tie_averaged_average_precision(counts: np.ndarray, rel_counts: np.ndarray) -> np.ndarray:
    """Expected average precision over random orderings of tied items, per query (NaN: no relevant item).

    Exact (McSherry & Najork 2008 give the same expectation). Take a tied group of g items, r of them
    relevant, after N items of which R relevant. Under a random order, position p of the group
    (1..g) holds a relevant item with probability r / g, and given that, the number of relevant
    items before it within the group is hypergeometric with mean (p - 1)(r - 1)/(g - 1). The
    precision at that position is (R + 1 + that number) / (N + p); its denominator is fixed once p
    is, so the expectation passes through exactly:

        E[group's sum of precisions] = (r/g) sum_{p=1..g} (R + 1 + (p-1)(r-1)/(g-1)) / (N + p)
                                     = (r/g) [(R + 1) S + (r-1)/(g-1) (g - (N + 1) S)],
        with S = sum_{p=1..g} 1/(N + p) = digamma(N + g + 1) - digamma(N + 1)

    (the second term is 0 when g = 1). AP = sum over groups / total relevant."""
    g = np.asarray(counts, dtype=np.float64)
    r = np.asarray(rel_counts, dtype=np.float64)
    N = np.cumsum(g, axis=1) - g
    R = np.cumsum(r, axis=1) - r
    S = digamma(N + g + 1.0) - digamma(N + 1.0)
    spread = np.divide(r - 1.0, g - 1.0, out=np.zeros_like(g), where=g > 1)
    share = np.divide(r, g, out=np.zeros_like(g), where=g > 0)
    contrib = np.where(r > 0, share * ((R + 1.0) * S + spread * (g - (N + 1.0) * S)), 0.0)
    total = r.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, contrib.sum(axis=1) / total, np.nan)


# --- ranking: one query at a time over a block's distances ------------------------------------------------------
#
# One query's ranking is one sort of packed integer keys, (distance [, cost]) << shift | index << 1 | relevant:
# the index makes every key unique (so the order is exactly "distance, then index"), and the relevance
# flag rides in the lowest bit without changing the order, so the sorted keys give the ranks of the relevant
# items and the group boundaries per distance without any gather. A value sort of keys is several times
# faster than an argsort.

@dataclass
class _KeyLayout:
    """How ranking keys are packed for a database of `n_db` items and codes of `bits` bits."""

    n_db: int
    bits: int
    with_cost: bool = False

    def __post_init__(self):
        self.shift = max(1, (self.n_db - 1).bit_length()) + 1  # index bits + the relevance bit
        self.cost_bits = CONFIDENCE_LEVELS.bit_length() if self.with_cost else 0
        width = (self.bits + 1).bit_length() + self.cost_bits + self.shift
        if width > 64:
            raise ConfigError(f"{self.n_db} database items are too many to rank in 64-bit keys")
        self.dtype = np.uint32 if width <= 32 else np.uint64
        self.low = np.arange(self.n_db, dtype=self.dtype) << 1

    def keys(self, d: np.ndarray, relevant: np.ndarray, cost: np.ndarray | None = None) -> np.ndarray:
        if cost is None:
            top = d.astype(self.dtype)
        else:
            top = ((d.astype(np.uint32) << self.cost_bits) | cost).astype(self.dtype)
        return np.sort((top << self.shift) | self.low | relevant)

    def group_starts(self, sorted_keys: np.ndarray) -> np.ndarray:
        """(bits + 2,) rank of the first item at each distance 0..bits, and the database size."""
        bounds = np.arange(self.bits + 2, dtype=self.dtype) << (self.cost_bits + self.shift)
        return np.searchsorted(sorted_keys, bounds)


def _metrics_from_ranks(pos: np.ndarray, n: int, ks: Sequence[int]) -> tuple[np.ndarray, float]:
    """Precision at each k and average precision, given the sorted 0-based ranks of the relevant items."""
    cut = np.array([min(k, n) for k in ks])
    precision = np.searchsorted(pos, cut) / np.maximum(cut, 1)
    ap = float(np.mean(np.arange(1, len(pos) + 1) / (pos + 1.0))) if len(pos) else np.nan
    return precision, ap


def _relevant_ranks(sorted_keys: np.ndarray) -> np.ndarray:
    return np.flatnonzero((sorted_keys & 1).astype(bool))


def _confidence_costs(query_codes: np.ndarray, query_logits: np.ndarray, db_bits: np.ndarray,
                      bits: int) -> np.ndarray:
    """(b, ndb) uint16: sum over the bits where the item differs from the query of the query's
    quantised |logit| weight. Exact integers: float32 sums of integers below 2^24."""
    qbits = unpack(query_codes, bits).astype(np.float32)
    mag = np.abs(np.asarray(query_logits, dtype=np.float64))
    total = mag.sum(axis=1, keepdims=True)
    w = np.floor(np.divide(mag, total, out=np.zeros_like(mag), where=total > 0) * CONFIDENCE_LEVELS)
    w = w.astype(np.float32)
    # cost = sum_b w_b [q_b != x_b] = sum_b w_b q_b + sum_b x_b w_b (1 - 2 q_b)
    cost = (w * qbits).sum(axis=1, keepdims=True) + (w * (1.0 - 2.0 * qbits)) @ db_bits.T
    return cost.astype(np.uint16)


# --- the evaluation ---------------------------------------------------------------------------------------------

@dataclass
class HammingEvaluation:
    """Per-query results of ranking a database by Hamming distance; the methods average them."""

    bits: int
    ks: tuple[int, ...]
    n_db: int
    precision_at_k: np.ndarray  # (nq, len(ks)), ties by index
    average_precision: np.ndarray  # (nq,), ties by index; NaN where the query has no relevant item
    precision_at_k_tie_avg: np.ndarray  # (nq, len(ks)), expected over tie orderings
    average_precision_tie_avg: np.ndarray  # (nq,)
    counts: np.ndarray  # (nq, bits + 1) database items at each distance
    relevant_counts: np.ndarray  # (nq, bits + 1) relevant items at each distance
    precision_at_k_confidence: np.ndarray | None = None  # (nq, len(ks)), ties by query confidence, then index
    average_precision_confidence: np.ndarray | None = None

    @property
    def n_queries(self) -> int:
        return len(self.average_precision)

    @property
    def relevant_total(self) -> np.ndarray:
        return self.relevant_counts.sum(axis=1)

    def _pick(self, tie_policy: str) -> tuple[np.ndarray, np.ndarray]:
        if tie_policy not in TIE_POLICIES:
            raise ConfigError(f"unknown tie policy {tie_policy!r}; choose one of: {', '.join(TIE_POLICIES)}")
        if tie_policy == "index":
            return self.precision_at_k, self.average_precision
        if tie_policy == "average":
            return self.precision_at_k_tie_avg, self.average_precision_tie_avg
        if self.average_precision_confidence is None:
            raise ConfigError("the confidence tie policy needs the queries' logits (query_logits=...)")
        return self.precision_at_k_confidence, self.average_precision_confidence

    def mean_average_precision(self, tie_policy: str = "index") -> float:
        """mAP over the queries that have at least one relevant item (NaN if none has)."""
        ap = self._pick(tie_policy)[1]
        return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")

    def precision(self, k: int | None = None, tie_policy: str = "index") -> float:
        """Mean precision@k over all queries (k: one of `ks`, the first by default)."""
        k = self.ks[0] if k is None else k
        if k not in self.ks:
            raise ConfigError(f"precision@{k} was not computed; evaluated k values: {list(self.ks)}")
        p = self._pick(tie_policy)[0]
        return float(p[:, self.ks.index(k)].mean()) if len(p) else float("nan")

    def radius_curve(self) -> dict[str, np.ndarray]:
        """Precision and recall within each radius 0..bits, averaged over queries (see `radius`)."""
        retrieved = np.cumsum(self.counts, axis=1, dtype=np.float64)
        hits = np.cumsum(self.relevant_counts, axis=1, dtype=np.float64)
        total = self.relevant_total.astype(np.float64)[:, None]
        empty = retrieved == 0
        precision = np.divide(hits, retrieved, out=np.zeros_like(hits), where=~empty)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(total > 0, hits / total, np.nan)
        has_rel = (total[:, 0] > 0).any()
        nonempty = (~empty).sum(axis=0)
        return {
            "radius": np.arange(self.bits + 1),
            "precision": precision.mean(axis=0),
            "recall": np.nanmean(recall, axis=0) if has_rel else np.full(self.bits + 1, np.nan),
            "empty_fraction": empty.mean(axis=0),
            "precision_nonempty": np.divide(precision.sum(axis=0), nonempty, out=np.full(self.bits + 1, np.nan),
                                            where=nonempty > 0),
            "mean_retrieved": retrieved.mean(axis=0),
        }

    def radius(self, r: int = 2) -> dict[str, float]:
        """Precision and recall of the Hamming ball of radius r (inclusive) around each query's code.

        precision: relevant retrieved / retrieved, 0 for an empty ball, mean over all queries;
        precision_nonempty: the same over the queries whose ball is not empty; recall: relevant
        retrieved / relevant in the database, mean over queries with a relevant item;
        empty_fraction: share of queries with nothing within r; mean_retrieved: items per ball."""
        if r < 0:
            raise ConfigError(f"radius must be >= 0, got {r}")
        curve = self.radius_curve()
        i = min(int(r), self.bits)
        return {"radius": int(r), **{key: float(v[i]) for key, v in curve.items() if key != "radius"}}

    def summary(self, radius: int = 2) -> dict:
        """Mean metrics as a flat JSON-ready dict (precision@k for every k, both or all tie policies)."""
        out: dict = {"queries": self.n_queries, "database": self.n_db, "bits": self.bits,
                     "queries_without_relevant": int((self.relevant_total == 0).sum())}
        policies = ("index", "average") + (("confidence",) if self.average_precision_confidence is not None else ())
        for policy in policies:
            suffix = "" if policy == "index" else f"_{'tie_avg' if policy == 'average' else policy}"
            out[f"map{suffix}"] = self.mean_average_precision(policy)
            for k in self.ks:
                out[f"precision_at_{k}{suffix}"] = self.precision(k, policy)
        ball = self.radius(radius)
        out.update({f"radius{radius}_{key}": v for key, v in ball.items() if key != "radius"})
        return out


def evaluate_hamming(query_codes: np.ndarray, db_codes: np.ndarray, query_labels: Sequence, db_labels: Sequence,
                     k: int | Sequence[int] = 100, query_logits: np.ndarray | None = None,
                     block_size: int | None = None) -> HammingEvaluation:
    """Rank the database by Hamming distance for every query and score the rankings.

    query_codes, db_codes: packed uint8 codes; query_labels, db_labels: one label per item;
    k: one cut-off or several (precision@k for each); query_logits: (nq, bits) float, adds the
    "confidence" tie policy; block_size: queries per block (default: about 4M distances at once).
    Cost: one sort of the database per query, about 1.5 ms per query per 60,000 items on one core
    (10,000 queries x 60,000 items at 64 bits in about 15 s); the confidence policy adds a second
    sort and a matrix product, about 3 ms more."""
    query_codes, db_codes = check_codes(query_codes, "query codes"), check_codes(db_codes, "database codes")
    nq, ndb = len(query_codes), len(db_codes)
    bits = query_codes.shape[1] * 8
    ks = (int(k),) if np.isscalar(k) else tuple(int(x) for x in k)
    if not ks or min(ks) < 1:
        raise ConfigError(f"k must be one or more positive integers, got {k!r}")
    if ndb == 0:
        raise ConfigError("the database is empty: nothing to rank")
    qlab, dlab = encode_labels(query_labels, db_labels, nq, ndb)
    db_bits = None
    if query_logits is not None:
        query_logits = np.asarray(query_logits)
        if query_logits.shape != (nq, bits):
            raise ConfigError(f"query logits must have shape ({nq}, {bits}), got {query_logits.shape}")
        db_bits = unpack(db_codes, bits).astype(np.float32)

    counts = np.zeros((nq, bits + 1), dtype=np.int64)
    rel_counts = np.zeros((nq, bits + 1), dtype=np.int64)
    p_at_k = np.zeros((nq, len(ks)))
    ap = np.full(nq, np.nan)
    p_conf = np.zeros((nq, len(ks))) if db_bits is not None else None
    ap_conf = np.full(nq, np.nan) if db_bits is not None else None
    layout = _KeyLayout(ndb, bits)
    conf_layout = _KeyLayout(ndb, bits, with_cost=True) if db_bits is not None else None
    for start, dist in iter_distance_blocks(query_codes, db_codes, block_size):
        costs = None
        if db_bits is not None:
            stop = start + len(dist)
            costs = _confidence_costs(query_codes[start:stop], query_logits[start:stop], db_bits, bits)
        for i, d in enumerate(dist):
            q = start + i
            relevant = dlab == qlab[q]
            keys = layout.keys(d, relevant)
            ranks = _relevant_ranks(keys)
            starts = layout.group_starts(keys)
            counts[q] = np.diff(starts)
            rel_counts[q] = np.diff(np.searchsorted(ranks, starts))
            p_at_k[q], ap[q] = _metrics_from_ranks(ranks, ndb, ks)
            if costs is not None:
                ranks = _relevant_ranks(conf_layout.keys(d, relevant, costs[i]))
                p_conf[q], ap_conf[q] = _metrics_from_ranks(ranks, ndb, ks)
    p_avg = np.stack([tie_averaged_precision_at_k(counts, rel_counts, kk) for kk in ks], axis=1) if nq else \
        np.zeros((0, len(ks)))
    return HammingEvaluation(bits=bits, ks=ks, n_db=ndb, precision_at_k=p_at_k, average_precision=ap,
                             precision_at_k_tie_avg=p_avg,
                             average_precision_tie_avg=tie_averaged_average_precision(counts, rel_counts),
                             counts=counts, relevant_counts=rel_counts,
                             precision_at_k_confidence=p_conf, average_precision_confidence=ap_conf)


# --- the float-feature ceiling ------------------------------------------------------------------------------------

def _dot_t(A, B) -> np.ndarray:
    """A @ B.T as a dense float array, whichever of the two is sparse."""
    out = A @ B.T
    return out.toarray() if sp.issparse(out) else np.asarray(out)


def feature_knn_precision(query_features, db_features, query_labels: Sequence, db_labels: Sequence,
                          k: int = 100, metric: str = "cosine", block_size: int | None = None) -> float:
    """Mean precision@k of the exact k nearest database items by the original features: the ceiling
    that codes of any length approach. metric: "cosine" or "euclidean". Dense arrays or sparse
    matrices; ties in float similarity are rare and fall as numpy's partition leaves them."""
    if metric not in ("cosine", "euclidean"):
        raise ConfigError(f"unknown metric {metric!r}; choose cosine or euclidean")
    nq, ndb = query_features.shape[0], db_features.shape[0]
    if query_features.shape[1] != db_features.shape[1]:
        raise ConfigError(f"query features have {query_features.shape[1]} dimensions, the database's "
                          f"{db_features.shape[1]}")
    if ndb == 0 or k < 1:
        raise ConfigError("need a non-empty database and k >= 1")
    qlab, dlab = encode_labels(query_labels, db_labels, nq, ndb)
    k = min(int(k), ndb)
    Q, D = query_features, db_features
    if metric == "cosine":
        Q, D = unit_rows(Q), unit_rows(D)
        bias = None
    else:
        if not sp.issparse(Q):
            Q = np.asarray(Q, dtype=np.float32)
        if not sp.issparse(D):
            D = np.asarray(D, dtype=np.float32)
        sq = D.multiply(D).sum(axis=1) if sp.issparse(D) else np.einsum("ij,ij->i", D, D)
        bias = -0.5 * np.asarray(sq, dtype=np.float64).ravel()  # score = q.x - |x|^2 / 2, larger is nearer
    if sp.issparse(Q):
        Q = Q.tocsr()
    step = _block_rows(ndb, 1, block_size)
    hits = 0.0
    for start in range(0, nq, step):
        scores = _dot_t(Q[start:start + step], D)
        if bias is not None:
            scores = scores + bias
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        hits += float((dlab[top] == qlab[start:start + step, None]).sum())
    return hits / (nq * k) if nq else float("nan")


def neighbour_recall(query_features, db_features, query_codes: np.ndarray, db_codes: np.ndarray, k: int = 10,
                     candidates: Sequence[int | None] = (None,), block_size: int | None = None) -> dict:
    """Recall@k of the exact float top-k (cosine on the features) by a code ranking: the share of each
    query's k nearest database items by cosine that the codes find in their own top-k. For each entry
    of `candidates`: None ranks by Hamming distance alone (ties in database order); N takes the
    Hamming top-N (same ties) and re-ranks those N by cosine, as a vector database rescoring binary
    candidates does. Returns {"codes": recall, "rerank N": recall, ...}."""
    return neighbour_recalls(query_features, db_features, {"": (query_codes, db_codes)}, k, candidates,
                             block_size)[""]


def neighbour_recalls(query_features, db_features, codes: dict[str, tuple[np.ndarray, np.ndarray]], k: int = 10,
                      candidates: Sequence[int | None] = (None,), block_size: int | None = None,
                      weights: dict[str, np.ndarray] | None = None) -> dict:
    """`neighbour_recall` of several code sets ({name: (query codes, database codes)}) in one pass over
    the float similarities, which cost more than everything else: {name: {"codes": ..., "rerank N": ...}}.

    weights: {name: the queries' real-valued codes (nq, bits)} for some of the sets; each also ranks by the
    asymmetric score of the database codes (semhash.asymmetric), ties in database order, as
    {"asym codes": ..., "asym rerank N": ...} in its entry."""
    weights = weights or {}
    for name, (qc, dc) in codes.items():
        check_codes(qc, "query codes")
        check_codes(dc, "database codes")
    nq, ndb = query_features.shape[0], db_features.shape[0]
    if ndb == 0 or k < 1 or any(qc.shape[0] != nq or dc.shape[0] != ndb for qc, dc in codes.values()):
        raise ConfigError("need one code per feature row, a non-empty database and k >= 1")
    k = min(int(k), ndb)
    Q, D = unit_rows(query_features), unit_rows(db_features)
    if sp.issparse(Q):
        Q = Q.tocsr()
    keys = sorted({None if n is None else int(n) for n in candidates}, key=lambda n: -1 if n is None else n)
    widest = min(ndb, max(k, *(n for n in keys if n is not None))) if any(n is not None for n in keys) else k
    found = {name: dict.fromkeys(keys, 0) for name in codes}
    found.update({(name, "asym"): dict.fromkeys(keys, 0) for name in weights})
    step = _block_rows(ndb, 2, block_size)
    order_key = np.arange(ndb, dtype=np.int64)
    for start in range(0, nq, step):
        stop = min(nq, start + step)
        sims = _dot_t(Q[start:stop], D)
        rows = np.arange(stop - start)[:, None]
        truth = np.zeros(sims.shape, dtype=bool)
        truth[rows, np.argpartition(-sims, k - 1, axis=1)[:, :k]] = True
        rankings = []
        for name, (qc, dc) in codes.items():
            # the `widest` first by (Hamming distance, database order), without sorting whole rows
            key = hamming_distances(qc[start:stop], dc).astype(np.int64) * ndb + order_key
            part = np.argpartition(key, widest - 1, axis=1)[:, :widest] if widest < ndb else \
                np.broadcast_to(order_key, key.shape).copy()
            rankings.append((name, np.take_along_axis(part, np.argsort(np.take_along_axis(key, part, axis=1),
                                                                       axis=1), axis=1)))
        for name, w in weights.items():  # the `widest` first by (asymmetric score, database order)
            rankings.append(((name, "asym"), asymmetric.top_codes(w[start:stop], codes[name][1], widest)[0]))
        for name, ranked in rankings:
            for n in keys:
                if n is None:
                    top = ranked[:, :k]
                else:
                    pool = ranked[:, :max(n, k)]
                    top = np.take_along_axis(pool, np.argsort(-sims[rows, pool], axis=1, kind="stable")[:, :k], axis=1)
                found[name][n] += int(truth[rows, top].sum())
    out = {name: {("codes" if n is None else f"rerank {n}"): got[n] / (nq * k) for n in keys}
           for name, got in found.items() if not isinstance(name, tuple)}
    for name in weights:
        out[name].update({f"asym {key}": v / (nq * k) for key, v in
                          (("codes" if n is None else f"rerank {n}", found[(name, "asym")][n]) for n in keys)})
    return out


def sign_codes(features) -> np.ndarray:
    """The reference binary codes of vector databases: the sign of every feature dimension, packed."""
    X = features.toarray() if sp.issparse(features) else np.asarray(features)
    return np.packbits(X > 0, axis=1)


# --- code diagnostics ----------------------------------------------------------------------------------------------

def code_diagnostics(codes: np.ndarray) -> dict:
    """Statistics of a set of codes: are the bits balanced and independent, and how full are the buckets?

    bit_ones_min/max/mean: share of items with each bit set (0.5 is balanced);
    mean_abs_bit_correlation: mean |Pearson correlation| over all pairs of bits (a constant bit
    counts as uncorrelated); distinct_codes, largest_bucket (items), largest_bucket_share;
    items_per_bucket_mean/p50/p90/max over the distinct codes (percentiles interpolate linearly)."""
    codes = check_codes(codes)
    n = len(codes)
    bits = codes.shape[1] * 8
    if n == 0:
        raise ConfigError("no codes to describe")
    b = unpack(codes, bits).astype(np.float64)
    ones = b.mean(axis=0)
    centred = b - ones
    cov = centred.T @ centred / n
    std = np.sqrt(np.diag(cov))
    denom = np.outer(std, std)
    corr = np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 0)
    pairs = np.triu_indices(bits, k=1)
    mean_abs_corr = float(np.abs(corr[pairs]).mean()) if bits > 1 else 0.0
    _, sizes = np.unique(code_words(codes), axis=0, return_counts=True)
    return {
        "items": n, "bits": bits,
        "bit_ones_min": float(ones.min()), "bit_ones_max": float(ones.max()), "bit_ones_mean": float(ones.mean()),
        "mean_abs_bit_correlation": mean_abs_corr,
        "distinct_codes": len(sizes), "largest_bucket": int(sizes.max()),
        "largest_bucket_share": float(sizes.max() / n),
        "items_per_bucket_mean": float(sizes.mean()), "items_per_bucket_p50": float(np.percentile(sizes, 50)),
        "items_per_bucket_p90": float(np.percentile(sizes, 90)), "items_per_bucket_max": int(sizes.max()),
    }
