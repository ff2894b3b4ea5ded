"""Asymmetric candidate scoring: a query's real-valued code against the stored binary codes.

A query's code is the sign of its logits, but its logits say more: how sure each bit is. Only the
stored items need to be binary, so a stored code b is scored by sum_j w_j * (2 b_j - 1), w the query's
logits: a bit the query is unsure of costs little when it differs, a sure one much (the asymmetric
distance of product quantization, and the "asymmetric" binary quantization of vector databases that
keep the query in floats). The query's own code scores highest (sum_j |w_j|); a code d bits away
scores at least that minus twice the sum of the d largest |w_j|, which bounds the Hamming radius that
the first N codes by score are sure to cover (`covered_radius`).

Ties between codes of equal score go to the lower code (the bucket table's order), so the order is
deterministic. Arrays in, arrays out: numpy only.
"""
from __future__ import annotations

import numpy as np

from .codes import unpack

SCORE_BLOCK = 1 << 24   # (query, code) scores held at once (float32): memory bound of a batch
CODE_BLOCK = 1 << 16    # codes unpacked to floats at once
MIN_STRIDE = 8          # a sampled threshold first when rows are at least MIN_STRIDE ** 2 times m long


def signed(codes: np.ndarray, bits: int) -> np.ndarray:
    """Packed codes (n, bits // 8) as float32 rows of +1 (bit set) and -1 (n, bits)."""
    return unpack(codes, bits).astype(np.float32) * 2 - 1


def top_codes(weights: np.ndarray, codes: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(index, score), each (nq, min(m, n)): the m codes of highest score for each query (weights (nq, bits)
    against packed codes (n, bits // 8)), best first, ties by index."""
    weights = np.ascontiguousarray(weights, np.float32)
    nq, bits = weights.shape
    n = len(codes)
    m = min(m, n)
    idx, score = np.zeros((nq, m), np.int64), np.zeros((nq, m), np.float32)
    if not m or not nq:
        return idx, score
    block = min(n, CODE_BLOCK)
    step = max(1, SCORE_BLOCK // (block + m))
    for a in range(0, nq, step):
        w = weights[a:a + step]
        best_i = best_s = None
        for c in range(0, n, block):
            s = w @ signed(codes[c:c + block], bits).T
            blk_i, blk_s = _block_best(s, m, c)
            if best_i is None:
                best_i, best_s = blk_i, blk_s
            else:  # merge with the best of the blocks before
                best_i, best_s = np.concatenate([best_i, blk_i], axis=1), np.concatenate([best_s, blk_s], axis=1)
                if best_s.shape[1] > m:
                    best_i, best_s = _best(best_i, best_s, m)
        order = np.argsort(_order_key(best_s, best_i), axis=1)
        idx[a:a + step] = np.take_along_axis(best_i, order, 1)
        score[a:a + step] = np.take_along_axis(best_s, order, 1)
    return idx, score


def _block_best(s: np.ndarray, m: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(index, score) of the m best entries of each row of one block of scores (indices offset + column),
    unordered; all of them when the block has at most m columns.

    A partition of every row is slow on long rows (16 ms for 500,000 entries), so first a threshold
    per row: the m-th best of every stride-th entry. At least m entries of the row reach it (those
    m of the sample), every entry tied with the row's m-th best does too, and about m * stride
    entries pass, which are then partitioned."""
    rows, n = s.shape
    if n <= m:
        return np.broadcast_to(np.arange(offset, offset + n), s.shape), s
    stride = int(np.sqrt(n / m))
    if stride < MIN_STRIDE:  # a short row: partitioning it whole is as fast
        return _best(None, s, m, offset)
    threshold = -np.partition(-s[:, ::stride], m - 1, axis=1)[:, m - 1]
    r, col = np.nonzero(s >= threshold[:, None])
    counts = np.bincount(r, minlength=rows)
    at = np.arange(len(r)) - np.repeat(np.cumsum(counts) - counts, counts)
    pad_s = np.full((rows, counts.max()), -np.inf, np.float32)
    pad_i = np.zeros((rows, counts.max()), np.int64)
    pad_s[r, at], pad_i[r, at] = s[r, col], col + offset
    return _best(pad_i, pad_s, m)


def _order_key(score: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """int64 keys that sort as (score descending, index ascending): the float32 scores' bits made
    order-preserving integers, then the index (below 2**32) in the low half."""
    bits = (-score.astype(np.float32)).view(np.int32)
    ordered = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))
    return (ordered.astype(np.int64) << 32) | idx.astype(np.int64)


def _best(idx: np.ndarray | None, score: np.ndarray, m: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The m entries of each row first by (score descending, index), unordered; idx None means the
    indices offset + column. A partition picks m of the highest scores; a row where more entries tie at
    the m-th score than it kept is redone by a sort, so the lowest indices win the tie whichever entries
    the partition kept."""
    keep = np.argpartition(-score, m - 1, axis=1)[:, :m]
    out_s = np.take_along_axis(score, keep, 1)
    out_i = keep + offset if idx is None else np.take_along_axis(idx, keep, 1)
    mth = out_s.min(axis=1)
    for r in np.flatnonzero((score >= mth[:, None]).sum(axis=1) > m):
        row_i = np.arange(offset, offset + score.shape[1]) if idx is None else idx[r]
        order = np.argsort(_order_key(score[r], row_i))[:m]
        out_i[r], out_s[r] = row_i[order], score[r, order]
    return out_i, out_s


def covered_radius(weights: np.ndarray, last_score: np.ndarray) -> np.ndarray:
    """For each query, the largest Hamming radius r such that every code within r of the query's own
    code scores above `last_score` (so it ranks before any code scoring at most that): -1 if none.

    A code d bits away scores at least sum |w| - 2 * (the d largest |w| summed)."""
    a = np.sort(np.abs(np.asarray(weights, np.float64)), axis=1)[:, ::-1]
    total = a.sum(axis=1, keepdims=True)
    lower = total - 2 * np.c_[np.zeros(len(a)), np.cumsum(a, axis=1)]  # (nq, bits + 1)
    # the scores were summed in single precision: within bits * 2**-23 of |w|'s sum of the exact ones
    slack = total * a.shape[1] * 2.0 ** -22
    above = lower - slack > np.asarray(last_score, np.float64)[:, None]
    # lower bounds fall with d, so the codes above form a prefix 0..r
    return above.sum(axis=1) - 1
