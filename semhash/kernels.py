"""Compiled inner loops (numba), for the few places where numpy's passes over temporaries cost more than
the work itself. The only module that imports numba; each kernel is compiled on its first call and
cached on disk. They are imported where first used, so that what never searches long codes at
scale (the CLI on a small index) does not load numba.

`mih_verify` is the candidate check of multi-index hashing (mih.py): numpy needed seven passes and as
many temporaries per candidate (gather, repeat, XOR, popcount, compare, the owners' search, the
other substrings' distances), about 15 ns a candidate; one loop does it in a few.
"""
from __future__ import annotations

import numba
import numpy as np


def _compiled(fn):
    """`fn` compiled on its first call, the machine code cached on disk (in the package's __pycache__,
    or numba's user cache where that is read-only); uncached where no cache directory is writable."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(fn)


@numba.njit(inline="always")
def _popcount(x):
    # the SWAR count, which LLVM turns into the CPU's popcnt where it has one
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@_compiled
def mih_verify(run_query, run_start, run_stop, qkeys, codes, cand_ids, sizes, j, level, shifts, sub_masks,
               k, bound, hist):
    """The candidates of one substring table's probes at one level, checked.

    Probe run i holds the candidates codes[run_start[i]:run_stop[i]] (their buckets cand_ids[...]) of
    query run_query[i] (key qkeys[run_query[i]]). A candidate is kept if its full distance is at most
    bound[query] and it is first reached here: no earlier substring (index < j) is within `level` of the
    query's, and no later one closer than `level`. Each kept bucket's size is added to
    hist[query, distance], and bound[query] drops to the least distance within which the query's items
    found so far reach k (nothing farther can be among its k nearest). Returns the (query, bucket,
    distance) of the kept candidates."""
    total = 0
    for i in range(len(run_start)):
        total += run_stop[i] - run_start[i]
    out_q = np.empty(total, np.int64)
    out_b = np.empty(total, np.int64)
    out_d = np.empty(total, np.int64)
    n = 0
    m = len(shifts)
    for i in range(len(run_start)):
        q = run_query[i]
        key = qkeys[q]
        for pos in range(run_start[i], run_stop[i]):
            x = codes[pos] ^ key
            d = _popcount(x)
            if d > bound[q]:
                continue
            first = True
            for jj in range(m):
                if jj != j:
                    dj = _popcount((x >> shifts[jj]) & sub_masks[jj])
                    if (jj < j and dj <= level) or (jj > j and dj < level):
                        first = False
                        break
            if first:
                b = cand_ids[pos]
                out_q[n] = q
                out_b[n] = b
                out_d[n] = d
                hist[q, d] += sizes[b]
                n += 1
                seen = 0
                for t in range(bound[q] + 1):
                    seen += hist[q, t]
                    if seen >= k:
                        bound[q] = t
                        break
    return out_q[:n].copy(), out_b[:n].copy(), out_d[:n].copy()


@_compiled
def pivot_range(qkeys, tau, pivots, lo, hi, band, n_bands, cell_offsets, codes, ids, max_codes):
    """Every code within tau[i] of query i, by the pivot lists of pivots.py: the codes filed under pivot
    c at distances t to it, t // band = cell c * n_bands + t // band, are codes[cell_offsets[cell]:
    cell_offsets[cell + 1]] (ids: their code indices), so a pivot's lists of distances [first, last]
    are one run. A query scans, for each pivot at distance p, the run of [max(p - tau, lo[c]),
    min(p + tau, hi[c])] and checks each code's full distance.

    Returns (query, code index, distance) of the codes found, by query, and a flag per query: set
    where its runs would hold more than max_codes codes (that query is not scanned)."""
    nq, n_piv = len(qkeys), len(pivots)
    over = np.zeros(nq, np.bool_)
    run_a = np.empty(n_piv, np.int64)
    run_b = np.empty(n_piv, np.int64)
    cap = 1024
    out_q = np.empty(cap, np.int64)
    out_b = np.empty(cap, np.int64)
    out_d = np.empty(cap, np.int64)
    n = 0
    for i in range(nq):
        key, t = qkeys[i], tau[i]
        runs, size = 0, 0
        for c in range(n_piv):
            p = _popcount(key ^ pivots[c])
            first, last = max(p - t, lo[c]), min(p + t, hi[c])
            if last < first:
                continue
            a = cell_offsets[c * n_bands + first // band]
            b = cell_offsets[c * n_bands + last // band + 1]
            if b > a:
                run_a[runs] = a
                run_b[runs] = b
                runs += 1
                size += b - a
        if size > max_codes:
            over[i] = True
            continue
        if n + size > cap:  # room for every code of the runs, so that the scan below never reallocates
            cap = max(2 * cap, n + size)
            out_q, out_b, out_d = _grown(out_q, cap), _grown(out_b, cap), _grown(out_d, cap)
        n = _scan_runs(i, key, t, run_a, run_b, runs, codes, ids, out_q, out_b, out_d, n)
    return out_q[:n].copy(), out_b[:n].copy(), out_d[:n].copy(), over


@numba.njit
def _scan_runs(i, key, t, run_a, run_b, runs, codes, ids, out_q, out_b, out_d, n):
    """The codes within t of `key` among the runs, appended at n as query i's; the new n."""
    for r in range(runs):
        for pos in range(run_a[r], run_b[r]):
            d = _popcount(codes[pos] ^ key)
            if d <= t:
                out_q[n] = i
                out_b[n] = ids[pos]
                out_d[n] = d
                n += 1
    return n


@numba.njit
def _grown(a, cap):
    out = np.empty(cap, a.dtype)
    out[:len(a)] = a
    return out

