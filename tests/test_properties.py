"""Property tests (Hypothesis, in the test extra): generated inputs against the behaviour users rely on.

- Search: for any set of codes (skewed or not) and any k, radius and strategy, the answer equals brute
  force, also after any sequence of adds and deletes on the live index.
- Corpus input: any JSON line, any text line is either a record or a CorpusError, never another exception.
- Store: any ids, payloads and labels come back exactly as they were written.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from semhash.codes import hamming  # noqa: E402
from semhash.corpus import Corpus  # noqa: E402
from semhash.errors import CorpusError  # noqa: E402
from semhash.live import LiveIndex  # noqa: E402
from semhash.store import Store, sqlite_url  # noqa: E402
from test_search import STRATEGIES, brute  # noqa: E402

# a longer hunt: SEMHASH_PROPERTY_EXAMPLES=2000 pytest tests/test_properties.py
SETTINGS = settings(max_examples=int(os.environ.get("SEMHASH_PROPERTY_EXAMPLES", "60")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def code_sets(draw):
    """(bits, row ids, codes, queries): codes near a few centres (skewed buckets, many exact duplicates)."""
    bits = draw(st.sampled_from([8, 16, 32, 64]))
    n = draw(st.integers(0, 120))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    centres = np.unpackbits(rng.integers(0, 256, (draw(st.integers(1, 4)), bits // 8), dtype=np.uint8), axis=1)
    flip = draw(st.sampled_from([0.0, 0.5 / bits, 2.0 / bits, 0.5]))

    def near(m):
        return np.packbits(centres[rng.integers(0, len(centres), m)] ^ (rng.random((m, bits)) < flip), axis=1)

    row_ids = rng.permutation(4 * n + 1)[:n].astype(np.int64)
    return bits, row_ids, near(n), near(draw(st.integers(1, 6)))


def check_against_brute(index, row_ids, codes, queries, k, radius, strategy):
    results = index.search(queries, k=k, radius=radius, strategy=strategy)
    dist = hamming(queries, codes) if len(codes) else np.zeros((len(queries), 0), np.int32)
    for qi, res in enumerate(results):
        want_rows, want_d = brute(dist[qi], row_ids, codes)
        if k is None:
            keep = want_d <= radius
            want_rows, want_d = want_rows[keep], want_d[keep]
        else:
            want_rows, want_d = want_rows[:k], want_d[:k]
        assert res.row_ids.tolist() == want_rows.tolist(), (k, radius, strategy, qi)
        assert res.distances.tolist() == want_d.tolist()


@SETTINGS
@given(data=code_sets(), k=st.one_of(st.none(), st.integers(1, 140)), radius=st.integers(0, 4),
       strategy=st.sampled_from(STRATEGIES))
def test_any_search_equals_brute_force(data, k, radius, strategy):
    bits, row_ids, codes, queries = data
    check_against_brute(LiveIndex(bits, row_ids, codes), row_ids, codes, queries, k, radius, strategy)


@SETTINGS
@given(data=code_sets(), ops=st.lists(st.tuples(st.booleans(), st.integers(1, 40), st.integers(0, 2 ** 32 - 1)),
                                      max_size=8),
       k=st.one_of(st.none(), st.integers(1, 60)), radius=st.integers(0, 3))
def test_any_sequence_of_changes_answers_as_brute_force(data, ops, k, radius):
    """Adds (new rows, or new codes for existing rows) and deletes, with merges in between."""
    bits, row_ids, codes, queries = data
    live = LiveIndex(bits, row_ids, codes)
    state = dict(zip(row_ids.tolist(), map(bytes, codes)))
    for add, m, seed in ops:
        rng = np.random.default_rng(seed)
        if add:
            rows = np.unique(rng.integers(0, 4 * len(row_ids) + 60, m)).astype(np.int64)
            new = np.packbits(rng.random((len(rows), bits)) < 0.5, axis=1) if seed % 2 else \
                codes[rng.integers(0, len(codes), len(rows))] if len(codes) else np.zeros((len(rows), bits // 8), np.uint8)
            live.add(rows, new)
            state.update(zip(rows.tolist(), map(bytes, new)))
        elif state:
            gone = rng.choice(np.fromiter(state, np.int64), min(m, len(state)), replace=False)
            live.remove(gone)
            for r in gone.tolist():
                del state[r]
        if seed % 3 == 0:
            live.merge()
    rows = np.fromiter(state, np.int64, len(state))
    now = np.frombuffer(b"".join(state.values()), np.uint8).reshape(len(state), bits // 8)
    check_against_brute(live, rows, now, queries, k, radius, "auto")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)
RECORDS = st.fixed_dictionaries({}, optional={"id": JSON_VALUES, "text": JSON_VALUES, "vector": JSON_VALUES,
                                              "label": JSON_VALUES, "labels": JSON_VALUES, "extra": JSON_VALUES})


@SETTINGS
@given(lines=st.lists(st.one_of(RECORDS.map(json.dumps), JSON_VALUES.map(json.dumps), st.text(max_size=30)),
                      min_size=1, max_size=4))
def test_any_corpus_line_is_a_record_or_a_corpus_error(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("corpus") / "c.jsonl"
    path.write_text("\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines) + "\n",
                    encoding="utf-8", errors="surrogatepass")
    try:
        batch = Corpus(path).read_all()
    except CorpusError as e:
        assert str(e)
    else:
        assert len(batch) >= 1 and all(isinstance(i, str) and "\x00" not in i for i in batch.ids)
        if batch.vectors is not None:
            assert np.isfinite(batch.vectors).all()


VALID_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
PAYLOAD_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | VALID_TEXT, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(VALID_TEXT, inner, max_size=3),
    max_leaves=8)


@SETTINGS
@given(items=st.dictionaries(VALID_TEXT, st.tuples(st.dictionaries(VALID_TEXT, PAYLOAD_VALUES, max_size=3),
                                                   st.lists(VALID_TEXT, max_size=3)), min_size=1, max_size=6))
def test_any_ids_payloads_and_labels_round_trip_through_the_store(tmp_path_factory, items):
    store = Store(sqlite_url(tmp_path_factory.mktemp("store") / "items.db"), 16)
    try:
        ids = list(items)
        codes = np.arange(2 * len(ids), dtype=np.uint8).reshape(-1, 2)
        result = store.upsert(ids, codes, [p for p, _ in items.values()], [tuple(ls) for _, ls in items.values()])
        got = store.fetch(result.row_ids)
        assert [i.ext_id for i in got] == ids
        assert [i.payload for i in got] == [p for p, _ in items.values()]
        assert [i.labels for i in got] == [tuple(ls) for _, ls in items.values()]
        assert [i.code for i in got] == [bytes(c) for c in codes]
    finally:
        store.close()
