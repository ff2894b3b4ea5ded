"""Re-ranking: kept features (index, add/upsert/remove, failures, save/load, SQLite and PostgreSQL)
and `rerank=True` / `--rerank` checked against brute-force cosine over the code search's candidates."""
from __future__ import annotations

import json
import shutil
import uuid

import numpy as np
import pytest
import scipy.sparse as sp

import semhash.indexer
from semhash.engine import Engine, _batch_from_dicts
from semhash.errors import ConfigError, IndexError_, SemhashError
from semhash.fsutil import MANIFEST
from semhash.indexdir import SQLITE_FILE
from semhash.store import Store, sqlite_url

from helpers import file_bytes, run

BITS = 16
QUERIES = ["rocket orbit moon launch", "flour butter sugar oven", "football referee goal", "telescope comet bake",
           "nothing known here"]


@pytest.fixture(scope="module")
def text(tmp_path_factory, topic_docs, write_jsonl, fit_tiny_model):
    """(root, docs, corpus path, model, index dir with kept features) for a small text corpus."""
    root = tmp_path_factory.mktemp("rerank-text")
    docs = topic_docs(90, seed=0)
    corpus = write_jsonl(root / "corpus.jsonl", docs)
    model = fit_tiny_model(corpus, bits=BITS)
    engine = Engine(model)
    engine.index(corpus, root / "idx", progress=False, keep_features=True)
    engine.close()
    return root, docs, corpus, engine.model, root / "idx"


@pytest.fixture(scope="module")
def vectors(tmp_path_factory, vector_docs, write_jsonl, fit_tiny_model):
    root = tmp_path_factory.mktemp("rerank-vec")
    docs = vector_docs(120, seed=0)
    corpus = write_jsonl(root / "corpus.jsonl", docs)
    model = fit_tiny_model(corpus, bits=BITS)
    engine = Engine(model)
    engine.index(corpus, root / "idx", progress=False, keep_features=True)
    engine.close()
    return root, docs, corpus, engine.model, root / "idx"


@pytest.fixture
def text_copy(text, tmp_path):
    dst = tmp_path / "work" / "idx"
    shutil.copytree(text[4], dst)
    return dst


def _unit(X) -> np.ndarray:
    X = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def _features(model, records: list) -> np.ndarray:
    batch = _batch_from_dicts(records) if isinstance(records[0], dict) else _batch_from_dicts(
        [{"id": str(i), **({"text": r} if isinstance(r, str) else {"vector": list(r)})} for i, r in enumerate(records)])
    return _unit(model.features(batch))


def brute_force(engine: Engine, records: dict[str, dict], query, k, radius, n_candidates):
    """The re-ranked answer computed by hand: the plain code search's candidates, scored by float64 cosine of
    features made afresh from the records, ordered by (score rounded to 6 places, Hamming distance, search order)."""
    plain = engine.query(query, k=n_candidates, radius=radius)
    if not plain:
        return []
    q = _features(engine.model, [query])[0]
    c = _features(engine.model, [records[h.id] for h in plain])
    cos = np.round(np.clip(c @ q, -1, 1), 6)
    order = sorted(range(len(plain)), key=lambda i: (-cos[i], plain[i].distance, i))
    if k is not None:
        order = order[:k]
    return [(plain[i].id, plain[i].distance, float(cos[i]), plain[i].filled) for i in order]


def got(hits) -> list:
    return [(h.id, h.distance, h.score, h.filled) for h in hits]


# --- (1) the order is brute-force cosine over the candidates ----------------------------------------------------
def test_text_rerank_equals_brute_force(text):
    root, docs, corpus, model, index_dir = text
    engine = Engine.load(index_dir)
    records = {d["id"]: d for d in docs}
    for q in QUERIES:
        for k, n_cand, radius in ((5, None, 2), (3, 20, 1), (10, 10, 0), (None, None, 3)):
            hits = engine.query(q, k=k, radius=radius, rerank=True, candidates=n_cand)
            want = brute_force(engine, records, q, k, radius,
                               None if k is None else (n_cand or max(10 * k, 100)))
            assert got(hits) == want, (q, k, n_cand, radius)
            if k is not None:
                assert len(hits) == min(k, len(docs))
    # a batch gives the same answers as single queries; the strategy says it re-ranked
    answers = engine.query_batch(QUERIES, k=4, rerank=True)
    plain = engine.query_batch(QUERIES, k=100)
    for q, a, p in zip(QUERIES, answers, plain):
        assert got(a.hits) == got(engine.query(q, k=4, rerank=True))
        assert a.strategy == p.strategy + "+rerank" and a.searched_radius == p.searched_radius
    # a query sharing no term with the vocabulary scores 0 everywhere: Hamming order remains
    none = engine.query("nothing known here", k=5, rerank=True)
    assert [h.score for h in none] == [0.0] * 5
    assert got(none) == [(h.id, h.distance, 0.0, h.filled) for h in engine.query("nothing known here", k=5)]
    engine.close()


def test_vector_rerank_equals_brute_force(vectors, vector_docs):
    root, docs, corpus, model, index_dir = vectors
    engine = Engine.load(index_dir)
    records = {d["id"]: d for d in docs}
    queries = [d["vector"] for d in vector_docs(6, seed=7, prefix="q")]
    for q in queries:
        for k, n_cand, radius in ((5, None, 2), (2, 7, 1), (None, None, 2)):
            hits = engine.query(q, k=k, radius=radius, rerank=True, candidates=n_cand)
            assert got(hits) == brute_force(engine, records, q, k, radius,
                                            None if k is None else (n_cand or max(10 * k, 100)))
    # an indexed vector finds itself first with cosine 1
    hits = engine.query(docs[3]["vector"], k=3, rerank=True)
    assert hits[0].id == "v3" and hits[0].score == 1.0
    answers = engine.query_batch(np.asarray(queries, dtype=np.float32), k=3, rerank=True, candidates=30)
    assert [got(a.hits) for a in answers] == [got(engine.query(q, k=3, rerank=True, candidates=30)) for q in queries]
    engine.close()


# --- (2) add, upsert, remove keep the features consistent -------------------------------------------------------
def check_features(engine: Engine, records: dict[str, dict]) -> None:
    """Every stored item's kept features are the features of its latest record; nothing else is kept."""
    assert engine.store.count_features() == engine.store.count() == len(records)
    row_of = engine.store.row_ids_for(list(records))
    assert set(row_of) == set(records)
    if not records:
        return
    ids = sorted(records)
    kept = engine.features.gather(np.array([row_of[e] for e in ids]))
    fresh = engine.model.features(_batch_from_dicts([records[e] for e in ids]))
    kept, fresh = (kept.toarray(), fresh.toarray()) if sp.issparse(kept) else (kept, fresh)
    np.testing.assert_array_equal(kept, fresh)


def all_ids(engine: Engine, query) -> list[str]:
    return [h.id for h in engine.query(query, k=None, radius=BITS, rerank=True)]


def test_add_upsert_remove(text, text_copy, topic_docs):
    root, docs, corpus, model, _ = text
    engine = Engine.load(text_copy)
    records = {d["id"]: d for d in docs}
    check_features(engine, records)
    # a re-indexed id re-ranks by its new features
    new_text = "galaxy galaxy comet telescope"
    assert engine.add([{"id": "doc1", "text": new_text}]).replaced == 1
    records["doc1"] = {"id": "doc1", "text": new_text}
    check_features(engine, records)
    top = engine.query(new_text, k=3, rerank=True)
    assert top[0].id == "doc1" and top[0].score == 1.0 and top[0].distance == 0
    old = engine.query(docs[1]["text"], k=len(records), rerank=True)
    assert {h.id: h.score for h in old}["doc1"] == pytest.approx(
        float(_features(model, [docs[1]["text"]])[0] @ _features(model, [new_text])[0]), abs=1e-6)
    # new items, then removals: a removed id never comes back, whatever the radius
    extra = [dict(d, id=f"new{i}") for i, d in enumerate(topic_docs(12, seed=5))]
    assert engine.add(extra).added == 12
    records.update({d["id"]: d for d in extra})
    check_features(engine, records)
    gone = [f"doc{i}" for i in range(0, 90, 2)] + ["new3", "doc1"]
    assert engine.remove(gone + ["never-there"]) == len(gone)
    for e in gone:
        del records[e]
    check_features(engine, records)
    for q in QUERIES:
        assert sorted(all_ids(engine, q)) == sorted(records)
    # many small updates, each one transaction
    for i in range(5):
        engine.add([{"id": f"late{i}", "text": f"moon rocket {'goal ' * i}"}])
        records[f"late{i}"] = {"id": f"late{i}", "text": f"moon rocket {'goal ' * i}"}
        check_features(engine, records)
    engine.add([dict(records["doc3"], text="oven oven oven")])  # the same id again: its features replaced
    records["doc3"] = dict(records["doc3"], text="oven oven oven")
    check_features(engine, records)
    answers = [got(engine.query(q, k=5, rerank=True)) for q in QUERIES]
    assert answers == [brute_force(engine, records, q, 5, 2, 100) for q in QUERIES]
    engine.close()
    reopened = Engine.load(text_copy)
    check_features(reopened, records)
    # (a fresh build may mark other hits `filled`: its search before the fill can stop sooner than one over a delta)
    assert [got(reopened.query(q, k=5, rerank=True)) for q in QUERIES] == \
        [brute_force(reopened, records, q, 5, 2, 100) for q in QUERIES]
    assert [[h[:3] for h in a] for a in answers] == \
        [[h[:3] for h in got(reopened.query(q, k=5, rerank=True))] for q in QUERIES]
    # everything removed: the empty index still answers, with nothing
    reopened.remove(list(records))
    assert reopened.query("moon", k=3, rerank=True) == []
    assert reopened.store.count_features() == 0
    reopened.close()


def test_failed_add_leaves_the_index_and_its_features_intact(text, text_copy, monkeypatch):
    """Items and their features are one transaction: a failure while writing the features writes neither."""
    root, docs, corpus, model, _ = text
    engine = Engine.load(text_copy)
    before = [got(engine.query(q, k=5, rerank=True)) for q in QUERIES]
    version = engine.store.version()
    real = Store._put_features

    def failing(self, conn, row_ids, blobs):
        real(self, conn, row_ids, blobs)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Store, "_put_features", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        engine.add([{"id": "doc5", "text": "oven oven"}, {"id": "fresh", "text": "moon"}])
    assert engine.store.version() == version and engine.store.count() == engine.store.count_features() == 90
    assert [got(engine.query(q, k=5, rerank=True)) for q in QUERIES] == before
    assert sorted(p.name for p in text_copy.parent.iterdir()) == ["idx"]
    monkeypatch.setattr(Store, "_put_features", real)
    reopened = Engine.load(text_copy)
    assert [got(reopened.query(q, k=5, rerank=True)) for q in QUERIES] == before
    reopened.close()
    engine.close()


def test_keep_features_is_decided_when_the_index_is_made(text, text_copy, tmp_path):
    root, docs, corpus, model, _ = text
    engine = Engine.load(text_copy)
    before = file_bytes(text_copy)
    with pytest.raises(IndexError_, match="keeps features; it keeps them for every item"):
        engine.index(corpus, progress=False, keep_features=False)
    assert file_bytes(text_copy) == before
    engine.close()
    # an index that keeps features keeps them up to date without being asked again
    fresh = Engine(model)
    fresh.index(corpus, tmp_path / "new", progress=False, keep_features=True)
    fresh.add([{"id": "x", "text": "moon moon"}])
    fresh.index(corpus, progress=False)
    check_features(fresh, {**{d["id"]: d for d in docs}, "x": {"id": "x", "text": "moon moon"}})
    assert fresh.info()["features"] == {"kept": True, "layout": "sparse", "dtype": "float32", "dim": model.featurizer.dim,
                                        "rows": 91}
    fresh.close()


# --- (3) no features: a clear error -------------------------------------------------------------------------------
def test_rerank_without_features_is_a_clear_error(text, tmp_path):
    root, docs, corpus, model, _ = text
    engine = Engine(model)
    engine.index(corpus, tmp_path / "plain", progress=False)
    assert engine.manifest.features is None
    message = (f"the index at {(tmp_path / 'plain').absolute()} keeps no features, so it cannot re-rank; index the "
               "corpus again into a new directory with --keep-features (`semhash index CORPUS -o NEW_DIR "
               "--keep-features`; keep_features=True in Python), or query without --rerank")
    with pytest.raises(IndexError_) as err:
        engine.query("moon", k=3, rerank=True)
    assert str(err.value) == message and isinstance(err.value, SemhashError)
    with pytest.raises(IndexError_):
        engine.query_batch(["moon", "oven"], k=None, rerank=True)
    engine.close()
    queries = root / "queries.txt"
    queries.write_text("moon rocket\nflour\n")
    result = run("query", queries, "-i", tmp_path / "plain", "--rerank")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {message}\n" and result.stdout == ""
    # asking for features of an index that holds items without them is refused too
    result = run("index", corpus, "-o", tmp_path / "plain", "--keep-features", "-q")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: the index at {tmp_path / 'plain'} was built without --keep-features")


def test_bad_rerank_options(text):
    engine = Engine.load(text[4])
    with pytest.raises(ConfigError, match="only to re-ranking"):
        engine.query("moon", k=3, candidates=50)
    with pytest.raises(ConfigError, match=r"candidates must be at least k \(10\), got 5"):
        engine.query("moon", k=10, rerank=True, candidates=5)
    engine.close()
    result = run("query", "-", "-i", text[4], "-k", 10, "--rerank", "--candidates", 5, input="moon\n")
    assert result.exit_code == 1 and result.stderr == "Error: candidates must be at least k (10), got 5\n"


# --- (4) save/load ------------------------------------------------------------------------------------------------
def test_save_load_round_trip(text, text_copy, tmp_path):
    root, docs, corpus, model, _ = text
    engine = Engine.load(text_copy)
    before = [got(a.hits) for a in engine.query_batch(QUERIES, k=5, rerank=True)]
    info = engine.info()["features"]
    assert info["kept"] is True and info["layout"] == "sparse" and info["rows"] == 90
    engine.save(tmp_path / "saved")
    engine.close()
    saved = Engine.load(tmp_path / "saved")
    assert [got(a.hits) for a in saved.query_batch(QUERIES, k=5, rerank=True)] == before
    saved.close()
    # items deleted behind the index's back: their features go with them, the others' stay
    store = Store(sqlite_url(text_copy / SQLITE_FILE), None)
    store.delete(["doc0", "doc1"])
    store.close()
    engine = Engine.load(text_copy)
    assert engine.store.count_features() == 88
    ids = all_ids(engine, "moon")
    assert len(ids) == 88 and "doc0" not in ids and "doc1" not in ids
    engine.close()


# --- (5) the CLI --------------------------------------------------------------------------------------------------
def test_cli_keep_features_rerank_and_info(text, tmp_path):
    root, docs, corpus, model, _ = text
    model.save(tmp_path / "model")
    result = run("index", corpus, "-o", tmp_path / "idx", "-m", tmp_path / "model", "--keep-features", "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["features"] is True and summary["items"] == 90
    queries = tmp_path / "q.txt"
    queries.write_text("".join(q + "\n" for q in QUERIES))
    result = run("query", queries, "-i", tmp_path / "idx", "-k", 4, "--rerank", "--candidates", 40)
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    engine = Engine.load(tmp_path / "idx")
    records = {d["id"]: d for d in docs}
    for q, a in zip(QUERIES, answers):
        assert a["strategy"].endswith("+rerank")
        assert [(h["id"], h["distance"], h["score"], h["filled"]) for h in a["hits"]] == \
            brute_force(engine, records, q, 4, 2, 40)
    engine.close()
    tsv = run("query", queries, "-i", tmp_path / "idx", "-k", 4, "--rerank", "--candidates", 40, "--format", "tsv")
    assert tsv.stdout.splitlines()[1:] == [f"{a['query_id']}\t{r}\t{h['id']}\t{h['distance']}\t{h['score']}"
                                           for a in answers for r, h in enumerate(a["hits"], 1)]
    radius = run("query", queries, "-i", tmp_path / "idx", "-k", 0, "--radius", 1, "--rerank")
    assert radius.exit_code == 0, radius.output
    plain = run("query", queries, "-i", tmp_path / "idx", "-k", 0, "--radius", 1)
    for r, p in zip(radius.stdout.splitlines(), plain.stdout.splitlines()):
        r, p = json.loads(r), json.loads(p)
        # every item within the radius, re-ordered by cosine (descending), nothing added or lost
        assert r["strategy"].endswith("+rerank") and all(h["distance"] <= 1 for h in r["hits"])
        assert sorted(h["id"] for h in r["hits"]) == sorted(h["id"] for h in p["hits"])
        scores = [h["score"] for h in r["hits"]]
        assert scores == sorted(scores, reverse=True)
    info = json.loads(run("info", tmp_path / "idx").stdout)
    assert info["features"]["kept"] is True and info["features"]["rows"] == 90
    assert info["manifest"]["features"]["layout"] == "sparse"
    # the features survive a plain re-index and a delete
    assert json.loads(run("index", corpus, "-o", tmp_path / "idx", "-q").stdout)["features"] is True
    assert run("delete", tmp_path / "idx", "doc7").exit_code == 0
    every = run("query", "-", "-i", tmp_path / "idx", "-k", 0, "--radius", BITS, "--rerank", input="moon\n")
    ids = [h["id"] for h in json.loads(every.stdout)["hits"]]
    assert len(ids) == 89 and "doc7" not in ids


# --- (6) PostgreSQL -----------------------------------------------------------------------------------------------
@pytest.fixture
def pg_namespace(pg_url):
    namespace = f"rr{uuid.uuid4().hex[:10]}"
    yield namespace
    try:
        Store(pg_url, None, namespace=namespace, create=False).drop()
    except SemhashError:
        pass


@pytest.mark.postgres
def test_postgresql(text, tmp_path, pg_url, pg_namespace, monkeypatch):
    root, docs, corpus, model, index_dir = text
    engine = Engine(model)
    engine.index(corpus, tmp_path / "pg", db_url=pg_url, namespace=pg_namespace, progress=False,
                 keep_features=True)
    assert sorted(p.name for p in (tmp_path / "pg").iterdir()) == sorted([MANIFEST, "model"])
    sqlite = Engine.load(index_dir)
    want = [got(a.hits) for a in sqlite.query_batch(QUERIES, k=5, rerank=True)]
    sqlite.close()
    assert [got(a.hits) for a in engine.query_batch(QUERIES, k=5, rerank=True)] == want
    records = {d["id"]: d for d in docs}
    engine.add([{"id": "doc2", "text": "comet comet galaxy"}, {"id": "pgnew", "text": "referee whistle goal"}])
    records["doc2"], records["pgnew"] = {"id": "doc2", "text": "comet comet galaxy"}, {"id": "pgnew",
                                                                                        "text": "referee whistle goal"}
    engine.remove(["doc4", "doc5"])
    del records["doc4"], records["doc5"]
    check_features(engine, records)
    assert sorted(all_ids(engine, "moon")) == sorted(records)
    engine.close()
    reopened = Engine.load(tmp_path / "pg")
    check_features(reopened, records)
    # a run that fails mid-way: the batches before the failure are committed with their features
    calls = []
    real = semhash.indexer.write_batch

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(semhash.indexer, "write_batch", failing)
    from semhash.corpus import Corpus
    with pytest.raises(RuntimeError):
        reopened.index(Corpus(corpus, batch_size=30), progress=False)
    reopened.close()
    records.update({d["id"]: d for d in docs[:30]})
    again = Engine.load(tmp_path / "pg")
    check_features(again, records)
    assert [got(a.hits) for a in again.query_batch(QUERIES, k=5, rerank=True)] == \
        [brute_force(again, records, q, 5, 2, 100) for q in QUERIES]
    again.close()


# --- (6) the dense top-k path (single precision, then double for the pairs that may be in the top k) --------------
class _DenseFeatures:
    """Kept features from an array, as KeptFeatures.gather gives them."""
    sparse = False

    def __init__(self, X):
        self.X, self.dim = np.asarray(X, np.float32), X.shape[1]

    def gather(self, row_ids):
        return self.X[np.asarray(row_ids)]


def _exact_rerank(results, queries, features, k):
    """The answer of scoring every pair in double precision (the path taken without k)."""
    import semhash.rerank as rr
    query_of = np.repeat(np.arange(len(results)), np.diff(results.lims))
    scores = np.round(rr.cosine(features, queries, query_of, results.row_ids), 6)
    order = rr._order(query_of, scores, results.distances)
    out = []
    for i in range(len(results)):
        take = order[results.lims[i]:results.lims[i + 1]][:k]
        out.append((results.row_ids[take].tolist(), results.distances[take].tolist(), scores[take].tolist()))
    return out


def test_the_one_product_scoring_is_chosen_by_the_candidates_a_query_and_their_bytes():
    import semhash.rerank as rr

    assert rr.gemm_factor(100, 384) == rr.GEMM_FACTOR  # 150 KiB of rows a query: the gather stays in cache
    assert rr.gemm_factor(1000, 384) == rr.GEMM_FACTOR_SPILLED  # 1.5 MiB: it runs from memory
    assert rr.GEMM_FACTOR < rr.GEMM_FACTOR_SPILLED


@pytest.mark.parametrize("gemm_factor", [0, 1e9])  # each candidate row gathered / one product over all of them
@pytest.mark.parametrize("counts", ["equal", "unequal"])
def test_dense_top_k_equals_double_precision_scoring(monkeypatch, gemm_factor, counts):
    import semhash.rerank as rr
    from semhash.search import Result, Results
    monkeypatch.setattr(rr, "gemm_factor", lambda per_query, dim: gemm_factor)
    rng = np.random.default_rng(3)
    dim, n, nq = 24, 400, 60
    # coarse values: many pairs with equal cosines, and many within single precision's error of each other
    X = rng.integers(-2, 3, (n, dim)).astype(np.float32)
    X[0:392:7] = X[1:393:7]  # exact duplicates
    X[5] = 0.0  # an all-zero row scores 0
    X[6] = X[7] * (1 + 1e-7)  # nearly parallel: cosines that differ in the 7th decimal
    Q = rng.integers(-2, 3, (nq, dim)).astype(np.float32)
    Q[3] = 0.0
    res = []
    for i in range(nq):
        m = 50 if counts == "equal" else int(rng.integers(0, 60))
        rows = rng.choice(n, m, replace=False).astype(np.int64)
        d = np.sort(rng.integers(0, 4, m)).astype(np.int32)
        res.append(Result(rows, d, np.zeros(m, bool), 1, "ball"))
    results, features = Results.from_list(res), _DenseFeatures(X)
    for k in (1, 5, 50, 70):
        got, scores = rr.rerank_results(results, Q, features, k)
        want = _exact_rerank(results, Q, features, k)
        assert [(r.row_ids.tolist(), r.distances.tolist(), s.tolist()) for r, s in zip(got, scores)] == want, k
        assert all(r.strategy == "ball+rerank" for r in got)
