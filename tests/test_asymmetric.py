"""Asymmetric search: the query's logits against the stored codes (semhash.asymmetric, LiveIndex.asymmetric,
`asymmetric=True` / `--asymmetric`), each checked against brute force over every stored item."""
from __future__ import annotations

import json

import numpy as np
import pytest

import semhash.asymmetric as asym
from semhash.codes import pack, unpack
from semhash.engine import Engine
from semhash.errors import ConfigError
from semhash.live import LiveIndex

from helpers import run

BITS = 16


def brute_order(rows: np.ndarray, codes: np.ndarray, w: np.ndarray, bits: int) -> tuple[list, np.ndarray]:
    """Every item by (score descending, code as an unsigned integer, row id), and the scores (exact here:
    the tests' weights are small integers)."""
    s = (unpack(codes, bits).astype(np.float64) * 2 - 1) @ np.asarray(w, np.float64)
    keys = [int.from_bytes(c.tobytes(), "big") for c in codes]
    order = sorted(range(len(rows)), key=lambda i: (-s[i], keys[i], rows[i]))
    return [int(rows[i]) for i in order], s


@pytest.mark.parametrize("n,block", [(50, None), (50, 7), (3000, None), (3000, 700)])
def test_top_codes_equals_sorting_every_code(monkeypatch, n, block):
    """Short rows are partitioned whole; long ones (n / m >= 16) through a sampled threshold first."""
    rng = np.random.default_rng(1)
    if block:  # several code blocks and query blocks, so the running top-m is merged
        monkeypatch.setattr(asym, "CODE_BLOCK", block)
        monkeypatch.setattr(asym, "SCORE_BLOCK", 40 if n == 50 else 2000)
    codes = pack(rng.random((n, BITS)) < 0.5)
    w = rng.integers(-2, 3, (9, BITS)).astype(np.float32)  # many exact ties
    signed_codes = unpack(codes, BITS) * 2.0 - 1
    for m in (1, 5, 50, 80):
        idx, score = asym.top_codes(w, codes, m)
        assert idx.shape == (9, min(m, n))
        for i in range(9):
            s = signed_codes @ w[i]
            want = sorted(range(n), key=lambda j: (-s[j], j))[:m]
            assert idx[i].tolist() == want
            np.testing.assert_array_equal(score[i], s[want])


def test_the_query_code_scores_highest_and_the_covered_radius_holds():
    rng = np.random.default_rng(2)
    codes = pack(rng.random((400, BITS)) < 0.5)
    w = rng.normal(size=(20, BITS)).astype(np.float32)
    s = w @ asym.signed(codes, BITS).T
    own = w @ asym.signed(pack(w > 0), BITS).T
    np.testing.assert_allclose(np.diag(own), np.abs(w).sum(axis=1), rtol=1e-6)
    assert (s <= np.diag(own)[:, None] + 1e-5).all()
    for m in (1, 10, 100):
        idx, score = asym.top_codes(w, codes, m)
        r = asym.covered_radius(w, score[:, -1])
        d = np.bitwise_count(codes[None, :, :] ^ pack(w > 0)[:, None, :]).sum(axis=2)
        for i in range(20):
            inside = set(np.flatnonzero(d[i] <= r[i]))
            assert inside <= set(idx[i].tolist())
        assert (r >= -1).all() and (r <= BITS).all()
    # a last score below every possible one covers the whole code space
    assert (asym.covered_radius(w, np.full(20, -1e9)) == BITS).all()


def _live(rng, n, changes: bool) -> LiveIndex:
    rows = rng.permutation(2000)[:n]
    codes = pack(rng.random((n, BITS)) < 0.3)
    codes[rng.integers(0, n, n // 3)] = codes[0]  # shared buckets
    live = LiveIndex(BITS, rows, codes)
    if changes:
        m = int(rng.integers(1, 12))
        live.add(rng.integers(0, 2200, m), pack(rng.random((m, BITS)) < 0.3))
        live.remove(rng.choice(rows, min(4, n), replace=False))
    return live


@pytest.mark.parametrize("changes", [False, True])
def test_live_asymmetric_equals_brute_force(changes):
    rng = np.random.default_rng(3)
    for trial in range(60):
        live = _live(rng, int(rng.integers(1, 80)), changes)
        rows, codes = live.items()
        w = rng.integers(-3, 4, (6, BITS)).astype(np.float32)
        qc = pack(w > 0)
        k = int(rng.integers(1, 30))
        res, score = live.asymmetric(qc, w, k)
        at = 0
        for i in range(len(w)):
            want, s = brute_order(rows, codes, w[i], BITS)
            hit = res[i]
            assert hit.row_ids.tolist() == want[:k], trial
            where = {int(r): j for j, r in enumerate(rows)}
            dist = [int(np.bitwise_count(codes[where[r]] ^ qc[i]).sum()) for r in want[:k]]
            assert hit.distances.tolist() == dist
            np.testing.assert_array_equal(score[at:at + len(hit.row_ids)], [s[where[r]] for r in want[:k]])
            at += len(hit.row_ids)
            # every item within the searched radius is in the answer; hits beyond it are marked filled
            d_all = np.bitwise_count(codes ^ qc[i]).sum(axis=1)
            assert set(rows[d_all <= hit.searched_radius].tolist()) <= set(hit.row_ids.tolist())
            assert hit.filled.tolist() == [x > hit.searched_radius for x in dist]
            assert hit.strategy == "asym"
            if k >= len(live):
                assert hit.searched_radius == BITS


def test_live_asymmetric_after_a_merge_and_on_an_empty_index():
    rng = np.random.default_rng(4)
    live = _live(rng, 60, True)
    rows, codes = live.items()
    w = rng.integers(-3, 4, (3, BITS)).astype(np.float32)
    before = [r.row_ids.tolist() for r in live.asymmetric(pack(w > 0), w, 7)[0]]
    live.merge()
    assert [r.row_ids.tolist() for r in live.asymmetric(pack(w > 0), w, 7)[0]] == before
    empty = LiveIndex(BITS, np.zeros(0, np.int64), np.zeros((0, 2), np.uint8))
    res, score = empty.asymmetric(pack(w > 0), w, 5)
    assert [len(r.row_ids) for r in res] == [0, 0, 0] and len(score) == 0


# --- the engine, the CLI, the service ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def indexed(tmp_path_factory, vector_docs, write_jsonl, fit_tiny_model):
    root = tmp_path_factory.mktemp("asym")
    docs = vector_docs(150, seed=0)
    corpus = write_jsonl(root / "corpus.jsonl", docs)
    engine = Engine(fit_tiny_model(corpus, bits=BITS))
    engine.index(corpus, root / "idx", progress=False, keep_features=True)
    engine.close()
    return root, docs, root / "idx"


def _logits(engine: Engine, vectors) -> np.ndarray:
    return engine.model.hasher.logits(np.asarray(vectors, np.float32))


def test_engine_asymmetric_hits_are_the_best_scored_codes(indexed, vector_docs):
    root, docs, index_dir = indexed
    with Engine.load(index_dir) as engine:
        codes = engine.model.hasher.encode(np.asarray([d["vector"] for d in docs], np.float32))
        queries = [d["vector"] for d in vector_docs(5, seed=9, prefix="q")]
        for q, w in zip(queries, _logits(engine, queries)):
            total = np.abs(w).sum()
            s = (unpack(codes, BITS) * 2.0 - 1) @ w.astype(np.float64)
            hits = engine.query(q, k=7, asymmetric=True)
            assert len(hits) == 7
            # best score first, each the item's own code's score scaled to [0, 1]
            want = {d["id"]: round((1 + s[i] / total) / 2, 6) for i, d in enumerate(docs)}
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            for h in hits:
                assert h.score == pytest.approx(want[h.id], abs=2e-6) and h.score == round(h.score, 6)
            assert min(want[h.id] for h in hits) >= max(v for i, v in want.items()
                                                        if i not in {h.id for h in hits}) - 2e-6
        # an indexed vector's own code is the best possible score
        assert engine.query(docs[5]["vector"], k=1, asymmetric=True)[0].score == 1.0


def test_engine_asymmetric_rerank_scores_the_best_scored_candidates(indexed, vector_docs):
    root, docs, index_dir = indexed
    with Engine.load(index_dir) as engine:
        byid = {d["id"]: np.asarray(d["vector"], np.float64) for d in docs}
        queries = [d["vector"] for d in vector_docs(4, seed=11, prefix="q")]
        for q in queries:
            pool = engine.query(q, k=30, asymmetric=True)
            hits = engine.query(q, k=5, rerank=True, candidates=30, asymmetric=True)
            qv = np.asarray(q, np.float64) / np.linalg.norm(q)
            cos = {h.id: round(float(byid[h.id] @ qv / np.linalg.norm(byid[h.id])), 6) for h in pool}
            assert [h.id for h in hits] == [i for i, _ in sorted(cos.items(), key=lambda t: -t[1])][:5]
            assert [h.score for h in hits] == pytest.approx([cos[h.id] for h in hits], abs=1e-6)
        answers = engine.query_batch(np.asarray(queries, np.float32), k=5, rerank=True, candidates=30,
                                     asymmetric=True)
        assert {a.strategy for a in answers} == {"asym+rerank"}
        with pytest.raises(ConfigError, match="asymmetric search needs k"):
            engine.query(queries[0], k=None, asymmetric=True)


def test_cli_asymmetric(indexed, tmp_path):
    root, docs, index_dir = indexed
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(json.dumps({"id": "q", "vector": docs[2]["vector"]}) + "\n")
    r = run("query", str(qfile), "-i", str(index_dir), "-k", "2", "--asymmetric")
    assert r.exit_code == 0, r.output
    line = json.loads(r.stdout)
    assert line["strategy"] == "asym" and line["hits"][0]["score"] == 1.0
    with Engine.load(index_dir) as engine:
        want = [h.to_json() for h in engine.query(docs[2]["vector"], k=2, asymmetric=True)]
    assert line["hits"] == want
    r = run("query", str(qfile), "-i", str(index_dir), "-k", "0", "--asymmetric")
    assert r.exit_code == 1
    assert r.stderr.strip() == "Error: asymmetric search needs k (it ranks every stored code; there is no radius)"
