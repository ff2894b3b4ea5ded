"""LiveIndex: a base plus a delta answers exactly as a bucket table built from the live items."""
import numpy as np
import pytest

from semhash import live
from semhash.live import LiveIndex, hamming_matrix
from semhash.search import Searcher
from semhash.buckets import BucketTable


def clustered(rng, n, bits, centers=6, flips=3):
    nb = bits // 8
    base = rng.integers(0, 256, size=(centers, nb), dtype=np.uint8)
    codes = base[rng.integers(0, centers, n)].copy()
    for _ in range(flips):
        bit = rng.integers(0, bits, n)
        codes[np.arange(n), bit // 8] ^= (1 << (7 - bit % 8)).astype(np.uint8)
    return codes


def answers(results):
    return [(list(r.row_ids), list(r.distances)) for r in results]


def rebuilt(state: dict, bits: int) -> Searcher:
    rows = np.array(sorted(state), dtype=np.int64)
    codes = np.array([state[r] for r in rows], dtype=np.uint8).reshape(len(rows), bits // 8)
    return Searcher(BucketTable.build(rows, codes), bits)


@pytest.mark.parametrize("bits", [16, 32, 72])
@pytest.mark.parametrize("merge_min", [5, 100_000])
def test_random_changes_answer_as_a_rebuild(bits, merge_min, monkeypatch):
    monkeypatch.setattr(live, "MERGE_MIN", merge_min)
    rng = np.random.default_rng(bits + merge_min)
    n = 300
    codes = clustered(rng, n, bits)
    index = LiveIndex(bits, np.arange(n), codes)
    state = {i: codes[i] for i in range(n)}
    next_row = n
    queries = clustered(rng, 25, bits)
    for step in range(12):
        kind = step % 3
        if kind == 0:  # add new rows
            m = int(rng.integers(1, 40))
            new = clustered(rng, m, bits)
            rows = np.arange(next_row, next_row + m)
            next_row += m
            index.add(rows, new, version=step)
            state.update(zip(rows.tolist(), new))
        elif kind == 1:  # delete some
            gone = rng.choice(sorted(state), size=min(30, len(state)), replace=False)
            index.remove(gone)
            for r in gone.tolist():
                del state[r]
        else:  # re-code existing rows (an upsert keeps the row id)
            again = rng.choice(sorted(state), size=min(25, len(state)), replace=False)
            new = clustered(rng, len(again), bits)
            index.apply(again, new)
            state.update(zip(again.tolist(), new))
        assert len(index) == len(state)
        oracle = rebuilt(state, bits)
        strategies = ["auto", "scan"] + (["ball", "mih"] if bits <= 64 else [])
        for strategy in strategies:
            for k, radius in ((1, 2), (10, 2), (60, 3), (None, 2), (None, 5), (len(state) + 5, 1)):
                got = index.search(queries, k=k, radius=radius, strategy=strategy)
                want = oracle.search(queries, k=None if k is None else min(k, len(state)), radius=radius,
                                     strategy=strategy)
                assert answers(got) == answers(want), (step, strategy, k, radius)
                for r in got:  # a hit beyond the searched radius is marked filled, and only then
                    assert list(r.filled) == [d > r.searched_radius for d in r.distances]


def test_merge_folds_the_delta_into_the_base(monkeypatch):
    monkeypatch.setattr(live, "MERGE_MIN", 10)
    rng = np.random.default_rng(1)
    codes = clustered(rng, 100, 32)
    index = LiveIndex(32, np.arange(100), codes)
    index.add(np.arange(100, 105), clustered(rng, 5, 32))
    assert len(index.delta_rows) == 5 and not index.clean
    index.remove(np.arange(6))  # 5 + 6 > 10: merged
    assert index.clean and len(index) == 99 and len(index.base) == 99
    rows, _ = index.items()
    assert sorted(rows.tolist()) == list(range(6, 105))


def test_an_index_emptied_and_filled_again():
    rng = np.random.default_rng(2)
    index = LiveIndex(16, np.zeros(0, np.int64), np.zeros((0, 2), np.uint8))
    assert len(index) == 0
    codes = clustered(rng, 20, 16)
    index.add(np.arange(20), codes)
    got = index.search(codes[:3], k=5, radius=1)
    want = rebuilt({i: codes[i] for i in range(20)}, 16).search(codes[:3], k=5, radius=1)
    assert answers(got) == answers(want)
    index.remove(np.arange(20))
    assert len(index) == 0
    assert all(len(r.row_ids) == 0 for r in index.search(codes[:3], k=5, radius=16))


def test_hamming_matrix_matches_unpacked_bits():
    rng = np.random.default_rng(3)
    for nb in (1, 4, 8, 9, 16):
        a, b = rng.integers(0, 256, (7, nb), dtype=np.uint8), rng.integers(0, 256, (5, nb), dtype=np.uint8)
        want = (np.unpackbits(a, axis=1)[:, None, :] != np.unpackbits(b, axis=1)[None, :, :]).sum(axis=2)
        assert np.array_equal(hamming_matrix(a, b), want)
