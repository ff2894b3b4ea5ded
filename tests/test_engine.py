"""The Engine end to end: index, load, add/upsert/remove against a dict model (SQLite and PostgreSQL),
readers catching up with a writer, failures and kills that must leave the committed batches and nothing
else, refused indexes, queries."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
from click.testing import CliRunner

import semhash.indexer
from semhash.buckets import code_keys
from semhash.cli import main
from semhash.corpus import Batch, Corpus
import semhash.store
from semhash.engine import Answer, Engine, Hit, _batch_from_dicts
from semhash.indexdir import SQLITE_FILE
from semhash.fsutil import MANIFEST
from semhash.errors import ConfigError, CorpusError, IndexError_, ModelError, SemhashError, StoreError
from semhash.store import Store, sqlite_url

from helpers import dot_entries, file_bytes

BITS = 16
PAYLOAD_KEYS = ("title", "rank")


# --- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory, vector_docs, write_jsonl, fit_tiny_model):
    """(root, docs, corpus path, trained Model, a built index dir) — trained and indexed once per module."""
    root = tmp_path_factory.mktemp("engine")
    docs = vector_docs(120, seed=0)
    corpus = write_jsonl(root / "corpus.jsonl", docs)
    model = fit_tiny_model(corpus, bits=BITS)
    engine = Engine(model)
    stats = engine.index(corpus, root / "built" / "idx", progress=False)
    assert (stats.added, stats.replaced) == (120, 0)
    engine.close()
    return root, docs, corpus, engine.model, root / "built" / "idx"


@pytest.fixture
def index_copy(setup, tmp_path):
    """A private copy of the module's index (a SQLite index is self-contained)."""
    dst = tmp_path / "work" / "idx"
    shutil.copytree(setup[4], dst)
    return dst


def query_codes(setup, n=20, seed=1):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(n, BITS // 8), dtype=np.uint8)
    codes[:5] = setup[3].encode(_batch_from_dicts(setup[1][:5]))  # some land exactly on stored codes
    return codes


def listing(directory) -> list[str]:
    """The entries of an index directory, without SQLite's WAL files (there while a connection is open)."""
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(("-wal", "-shm")))


def query_answers(engine: Engine, docs: list[dict]) -> list:
    """Ids, distances and payloads of a few queries, in the radius mode and the k-nearest mode."""
    out = []
    for doc in docs:
        for k, radius in ((None, 2), (5, 1)):
            hits = engine.query(doc["vector"], k=k, radius=radius)
            # (not `filled`: a search over a delta may search farther before the fill than a fresh build)
            out.append([(h.id, h.distance, h.score, h.payload) for h in hits])
    return out


def bucket_arrays(engine: Engine) -> list:
    b = engine.buckets
    return [b.keys.tolist(), b.offsets.tolist(), b.row_ids.tolist()]


# --- (1) index, then load: the same buckets and FAISS answers ---------------------------------------------------
def test_index_then_load_gives_the_same_index(setup, tmp_path):
    root, docs, corpus, model, _ = setup
    engine = Engine(model)
    stats = engine.index(corpus, tmp_path / "idx", progress=False)
    assert (stats.added, stats.replaced, stats.written) == (120, 0, 120)
    assert listing(tmp_path / "idx") == sorted([MANIFEST, "model", SQLITE_FILE])
    manifest = json.loads((tmp_path / "idx" / MANIFEST).read_text())
    assert engine.counts() == {"items": 120, "distinct_codes": engine.buckets.n_buckets}
    assert (manifest["bits"], manifest["kind"], manifest["db_url"], manifest["namespace"]) == (16, "vector", None,
                                                                                               "semhash")
    assert manifest["model_checksum"] == model.checksum and manifest["format"] == 2
    assert engine.store.version() == 1  # one batch, one change

    loaded = Engine.load(tmp_path / "idx")
    assert loaded.directory == (tmp_path / "idx").absolute()
    assert bucket_arrays(loaded) == bucket_arrays(engine)
    assert query_answers(loaded, docs[:6]) == query_answers(engine, docs[:6])
    # the codes are the model's codes of the corpus
    row_ids, stored = loaded.store.all_codes()
    items = loaded.store.fetch(row_ids)
    expected = dict(zip((d["id"] for d in docs), map(bytes, model.encode(_batch_from_dicts(docs)))))
    assert {it.ext_id: it.code for it in items} == expected
    assert {it.ext_id: it.payload for it in items} == {d["id"]: {k: d[k] for k in PAYLOAD_KEYS} for d in docs}
    assert {it.ext_id: it.labels for it in items} == {d["id"]: (d["label"],) for d in docs}
    loaded.close()
    engine.close()


# --- (2) readers: another engine catches up with the writer's committed changes ------------------------------
def test_a_reader_catches_up_with_the_writers_changes(setup, index_copy, vector_docs, monkeypatch):
    root, docs, corpus, model, _ = setup
    writer, reader = Engine.load(index_copy), Engine.load(index_copy)
    probe = [d["vector"] for d in docs[:5]]
    new = vector_docs(3, seed=31, prefix="new")
    writer.add(new)
    assert writer.remove(["v1", "v2"]) == 2
    version = writer.store.version()
    assert writer.live.version == version == 3  # created with one batch, then two changes
    # the reader sees both committed changes at its next query: the same answers as a fresh load
    fresh = Engine.load(index_copy)
    assert query_answers(reader, docs[:6]) == query_answers(fresh, docs[:6]) == query_answers(writer, docs[:6])
    assert reader.live.version == version and len(reader.live) == 121
    assert not reader.live.clean  # it took the change from the log, as a delta
    got = reader.query_batch(probe, k=None, radius=16)
    assert {h.id for h in got[0].hits} == {d["id"] for d in docs if d["id"] not in ("v1", "v2")} | \
        {d["id"] for d in new}
    # a query catches up first, inside the snapshot it reads the hits from: one committed state
    writer.remove(["v3"])
    assert reader.live.version == version
    assert len(reader.query(docs[3]["vector"], k=None, radius=16)) == 120
    assert reader.live.version == version + 1 and len(reader.live) == 120
    # a reader older than what the log keeps reads the store again
    monkeypatch.setattr(semhash.store, "LOG_KEEP", 2)
    stale = Engine.load(index_copy)
    for i in range(70):  # the log is trimmed every 64 versions
        writer.add([dict(new[0], id=f"again{i}")])
    assert stale.store.changes_since(stale.live.version).reload
    stale.refresh()
    assert stale.live.clean and len(stale.live) == 190
    assert query_answers(stale, docs[:6]) == query_answers(writer, docs[:6])
    for e in (writer, reader, fresh, stale):
        e.close()


# --- (3) random adds, upserts and deletes against a dict model --------------------------------------------------
def check_consistent(engine: Engine, model_dict: dict[str, dict], model) -> None:
    n = len(model_dict)
    assert engine.store.count() == len(engine.live) == n
    row_ids, codes = engine.store.all_codes()
    items = engine.store.fetch(row_ids)
    by_row = {it.row_id: it for it in items}
    assert {it.ext_id for it in items} == set(model_dict)
    if n:
        expected = model.encode(_batch_from_dicts(list(model_dict.values())))
        want = dict(zip(model_dict, map(bytes, expected)))
    else:
        want = {}
    # the store: fetch and all_codes agree with each other and with the model's codes
    assert {it.ext_id: it.code for it in items} == want
    assert {by_row[r].ext_id: bytes(c) for r, c in zip(row_ids.tolist(), codes)} == want
    assert {it.ext_id: it.payload for it in items} == {k: {f: v[f] for f in PAYLOAD_KEYS}
                                                       for k, v in model_dict.items()}
    # the search structures: the same row ids with the same codes
    live_ids, live_codes = engine.live.items()
    assert {by_row[r].ext_id: bytes(c) for r, c in zip(live_ids.tolist(), live_codes)} == want
    assert len(set(live_ids.tolist())) == n
    if not engine.live.clean:
        return  # the bucket table is checked once the delta is merged into it
    # the buckets: each row id in the bucket of its code, and nowhere else
    b = engine.buckets
    seen = {}
    for i, key in enumerate(b.keys.tolist()):
        for r in b.row_ids[b.offsets[i]:b.offsets[i + 1]].tolist():
            assert r not in seen
            seen[r] = key
    assert set(seen) == set(by_row)
    if n:
        keys = code_keys(np.stack([np.frombuffer(want[by_row[r].ext_id], np.uint8) for r in seen]))
        assert list(seen.values()) == keys.tolist()


def random_ops(engine: Engine, model, vector_docs, steps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model_dict: dict[str, dict] = {}
    start = [it.ext_id for it in engine.store.fetch(engine.store.all_codes()[0])]
    fresh = iter(vector_docs(400, seed=seed + 50, prefix="n"))
    counter = 0
    # begin from a known state: keep 30 of the indexed items in the model, delete the rest
    keep = start[:30]
    removed = engine.remove(start[30:] + ["never-there"])
    assert removed == len(start) - 30
    known = {it.ext_id: it for it in engine.store.fetch(engine.store.all_codes()[0])}
    source = {d["id"]: d for d in vector_docs(120, seed=0)}
    for e in keep:
        model_dict[e] = source[e]
    check_consistent(engine, model_dict, model)
    assert set(known) == set(keep)
    for step in range(steps):
        op = rng.choice(["add", "upsert", "delete", "mixed"], p=[0.3, 0.25, 0.25, 0.2])
        ids = list(model_dict)
        if op == "add" or (op in ("upsert", "delete") and not ids):
            new = [next(fresh) for _ in range(int(rng.integers(1, 6)))]
            stats = engine.add(new)
            assert (stats.added, stats.replaced) == (len(new), 0)
            model_dict.update({d["id"]: d for d in new})
        elif op == "upsert":
            chosen = list(rng.choice(ids, size=min(len(ids), int(rng.integers(1, 5))), replace=False))
            recs = []
            for e in chosen:
                counter += 1
                vec = (rng.normal(size=16) * 3).round(4).tolist()
                recs.append({"id": e, "vector": vec, "label": "x", "title": f"changed {counter}", "rank": -counter})
            stats = engine.add(recs)
            assert (stats.added, stats.replaced) == (0, len(recs))
            model_dict.update({r["id"]: r for r in recs})
        elif op == "delete":
            chosen = list(rng.choice(ids, size=min(len(ids), int(rng.integers(1, 6))), replace=False))
            unknown = [f"nope{step}"] if rng.random() < 0.5 else []
            assert engine.remove(chosen + unknown) == len(chosen)
            for e in chosen:
                del model_dict[e]
        else:  # one batch with new ids and existing ids
            new = [next(fresh) for _ in range(int(rng.integers(1, 4)))]
            old = list(rng.choice(ids, size=min(len(ids), 2), replace=False)) if ids else []
            recs = new + [{"id": e, "vector": (rng.normal(size=16) * 3).round(4).tolist(), "title": "m", "rank": step}
                          for e in old]
            stats = engine.add(recs)
            assert (stats.added, stats.replaced) == (len(new), len(old))
            model_dict.update({r["id"]: r for r in recs})
        check_consistent(engine, model_dict, model)
        if step % 8 == 7:  # what is on disk says the same, and a fresh build answers the same
            reopened = Engine.load(engine.directory)
            assert reopened.live.clean
            check_consistent(reopened, model_dict, model)
            assert query_answers(engine, list(model_dict.values())[:4]) == \
                query_answers(reopened, list(model_dict.values())[:4])
            reopened.close()
            engine.live.merge()
            check_consistent(engine, model_dict, model)
    # delete everything: an empty index still loads and answers
    assert engine.remove(list(model_dict)) == len(model_dict)
    model_dict.clear()
    check_consistent(engine, model_dict, model)
    assert engine.query([0.0] * 16, k=5) == []
    assert engine.info()["items"] == 0
    reopened = Engine.load(engine.directory)
    check_consistent(reopened, model_dict, model)
    reopened.close()


def test_random_changes_sqlite(setup, index_copy, vector_docs):
    engine = Engine.load(index_copy)
    random_ops(engine, setup[3], vector_docs, steps=24, seed=3)
    engine.close()
    assert dot_entries(index_copy.parent) == []


@pytest.fixture
def pg_namespace(pg_url):
    """A unique store namespace on PostgreSQL, dropped afterwards."""
    namespace = f"te{uuid.uuid4().hex[:10]}"
    yield namespace
    try:
        Store(pg_url, None, namespace=namespace, create=False).drop()
    except SemhashError:
        pass  # never created


@pytest.mark.postgres
def test_random_changes_postgresql(setup, tmp_path, pg_url, pg_namespace, vector_docs):
    root, docs, corpus, model, _ = setup
    engine = Engine(model)
    stats = engine.index(corpus, tmp_path / "idx", db_url=pg_url, namespace=pg_namespace, progress=False)
    assert (stats.added, stats.replaced) == (120, 0)
    assert listing(tmp_path / "idx") == sorted([MANIFEST, "model"])
    assert engine.manifest.db_url == pg_url and engine.manifest.namespace == pg_namespace
    assert engine.store.namespace == pg_namespace
    random_ops(engine, model, vector_docs, steps=16, seed=4)
    engine.close()
    # the namespace belongs to that index (even emptied): a second index directory on it is refused
    with pytest.raises(IndexError_, match="already holds a semhash index"):
        Engine(model).index(corpus, tmp_path / "idx2", db_url=pg_url, namespace=pg_namespace, progress=False)
    assert not (tmp_path / "idx2").exists()
    reopened = Engine.load(tmp_path / "idx")
    assert reopened.store.count() == 0
    reopened.close()


@pytest.mark.postgres
def test_postgresql_bad_corpus_leaves_the_index_usable(setup, tmp_path, pg_url, pg_namespace, vector_docs,
                                                      write_jsonl):
    """The database is changed in place, so bad input must be refused before it is touched."""
    root, docs, corpus, model, _ = setup
    engine = Engine(model)
    engine.index(corpus, tmp_path / "idx", db_url=pg_url, namespace=pg_namespace, progress=False)
    before = query_answers(engine, docs[:4])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(docs[0]) + "\n{broken\n")
    narrow = write_jsonl(tmp_path / "narrow.jsonl", vector_docs(10, dim=8, prefix="w"))
    with pytest.raises(SemhashError, match="line 2"):
        engine.index(bad, progress=False)
    with pytest.raises(ModelError, match="8 dimensions"):
        engine.index(narrow, progress=False)
    with pytest.raises(ModelError, match="8 dimensions"):
        engine.add(vector_docs(2, dim=8, prefix="w"))
    with pytest.raises(CorpusError, match="NUL character"):  # refused before the store, on every backend
        engine.add([{"id": "a\x00b", "vector": docs[0]["vector"]}])
    # a record that PostgreSQL itself refuses, half way through a batch: a clean error, nothing written
    sneaked = Batch(ids=["fine", "a\x00b"], vectors=np.asarray([docs[1]["vector"]] * 2, dtype=np.float32),
                    labels=[(), ()], payloads=[{}, {}])
    with pytest.raises(StoreError, match="database error while .*NUL"):
        engine.add(sneaked)
    assert query_answers(engine, docs[:4]) == before and engine.store.count() == 120
    engine.add([{"id": "fine", "vector": docs[1]["vector"]}])  # and the next write goes through
    assert engine.store.count() == 121 and engine.remove(["fine"]) == 1
    assert query_answers(engine, docs[:4]) == before
    engine.close()
    reopened = Engine.load(tmp_path / "idx")  # not "run semhash rebuild"
    assert reopened.store.count() == 120
    assert query_answers(reopened, docs[:4]) == before
    with pytest.raises(IndexError_, match="namespace"):
        reopened.index(corpus, namespace="other", progress=False)
    reopened.close()


# --- (4) a failure inside the indexer leaves the batches committed before it, and nothing else -------------
def test_failure_mid_index_keeps_the_batches_before_it(setup, index_copy, vector_docs, write_jsonl, monkeypatch):
    root, docs, corpus, model, _ = setup
    engine = Engine.load(index_copy)
    before_answers = query_answers(engine, docs[:6])
    more_docs = vector_docs(50, seed=9, prefix="m") + docs[:10]
    more = write_jsonl(index_copy.parent / "more.jsonl", more_docs)

    calls = []
    real = semhash.indexer.write_batch

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(semhash.indexer, "write_batch", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        engine.index(Corpus(more, batch_size=10), progress=False)
    assert len(calls) == 2  # it failed mid-run, after one batch was written
    # the first batch (10 new items) is committed; the engine and a fresh load both answer with it
    assert engine.store.count() == len(engine.live) == 130
    reopened = Engine.load(index_copy)
    assert len(reopened.live) == 130 and reopened.live.version == engine.live.version == 2
    assert query_answers(engine, docs[:6] + more_docs[:10]) == query_answers(reopened, docs[:6] + more_docs[:10])
    reopened.close()
    assert dot_entries(index_copy.parent) == []

    # the model's encode failing inside Engine.add: nothing is written
    monkeypatch.setattr(semhash.indexer, "write_batch", real)
    encodes = []
    real_encode = engine.model.hasher.encode

    def failing_encode(X):
        encodes.append(X.shape[0])
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(engine.model.hasher, "encode", failing_encode)
    version = engine.store.version()
    with pytest.raises(RuntimeError, match="encoder exploded"):
        engine.add(vector_docs(3, seed=11, prefix="z"))
    assert encodes == [3]
    monkeypatch.setattr(engine.model.hasher, "encode", real_encode)
    assert engine.store.version() == version and len(engine.live) == 130
    # and after the failures the engine can still change the index
    stats = engine.index(Corpus(more, batch_size=10), progress=False)
    assert (stats.added, stats.replaced) == (40, 20)
    assert engine.store.count() == len(engine.live) == 170
    assert query_answers(engine, docs[:6])[:2] != [] and len(before_answers) == 12
    engine.close()


# --- (5) a process killed mid-run leaves exactly the batches it committed ----------------------------------
def kill_at_marker(child: str, marker, what: str) -> int:
    """Run the Python `child`, SIGKILL it once it creates `marker` (its fault-injection hook's signal that
    it reached `what` and waits), and return its exit status."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    try:
        while not marker.exists():
            assert proc.poll() is None, f"the child ended before {what}: {proc.communicate()}"
            assert time.monotonic() < deadline, f"the child did not reach {what} within 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


def test_killed_indexing_process_keeps_the_committed_batches(setup, index_copy, vector_docs, write_jsonl):
    root, docs, corpus, model, _ = setup
    big_docs = vector_docs(20, seed=21, prefix="b")
    big = write_jsonl(index_copy.parent / "big.jsonl", big_docs)
    marker = index_copy.parent / "two-batches-written"
    # the child indexes in batches of 5 with a fault-injection hook: after its second batch is committed
    # it says so and stops, so the kill lands mid-run every time, with no timing guess
    child = (
        "import sys, time\n"
        "import semhash.indexer as ix\n"
        "import semhash.corpus as corpus\n"
        "real, calls = ix.write_batch, []\n"
        "def paused(*a, **k):\n"
        "    out = real(*a, **k)\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        f"        open({str(marker)!r}, 'w').close()\n"
        "        time.sleep(600)\n"
        "    return out\n"
        "ix.write_batch = paused\n"
        "from semhash.engine import Engine\n"
        f"engine = Engine.load({str(index_copy)!r})\n"
        f"engine.index(corpus.Corpus({str(big)!r}, batch_size=5), progress=False)\n")
    assert kill_at_marker(child, marker, "its second batch") == -signal.SIGKILL
    reopened = Engine.load(index_copy)
    ids = {it.ext_id for it in reopened.store.fetch(reopened.store.all_codes()[0])}
    assert ids == {d["id"] for d in docs} | {d["id"] for d in big_docs[:10]}  # the two committed batches
    assert len(reopened.live) == 130
    hits = reopened.query(big_docs[0]["vector"], k=1, radius=0)
    assert hits[0].distance == 0
    reopened.close()
    assert sorted(p.name for p in index_copy.iterdir()) == sorted([MANIFEST, "model", SQLITE_FILE])
    assert dot_entries(index_copy.parent) == []


def test_a_new_index_killed_mid_run_leaves_an_orphan_that_the_next_run_removes(setup, tmp_path, vector_docs,
                                                                                write_jsonl):
    """`semhash index -o NEW` makes NEW in a temporary sibling, renamed into place once written; a kill -9
    before the rename leaves that sibling behind, and the next run over the same target removes it (its
    process is gone) and builds NEW."""
    root, docs, corpus, model, built = setup
    big = write_jsonl(tmp_path / "big.jsonl", vector_docs(20, seed=22, prefix="n"))
    marker, target = tmp_path / "directory-written", tmp_path / "out" / "new-index"
    child = (
        "import contextlib, time\n"
        "import semhash.engine as d\n"
        "import semhash.corpus as corpus\n"
        "real = d.atomic_directory\n"
        "@contextlib.contextmanager\n"
        "def paused(*a, **k):\n"
        "    with real(*a, **k) as tmp:\n"
        "        yield tmp\n"
        f"        open({str(marker)!r}, 'w').close()\n"
        "        time.sleep(600)\n"
        "d.atomic_directory = paused\n"
        "from semhash.engine import Engine\n"
        "from semhash.model import Model\n"
        f"engine = Engine(Model.load({str(built / 'model')!r}))\n"
        f"engine.index(corpus.Corpus({str(big)!r}, batch_size=5), {str(target)!r}, progress=False)\n")
    assert kill_at_marker(child, marker, "its directory was written") == -signal.SIGKILL
    orphans = dot_entries(target.parent)
    assert not target.exists() and [o.split("-")[:2] for o in orphans] == [[".new", "index.tmp"]], orphans
    result = CliRunner().invoke(main, ["index", str(big), "-m", str(built / "model"), "-o", str(target), "-q"])
    assert result.exit_code == 0, result.output
    assert dot_entries(target.parent) == []  # the dead writer's temporary directory is gone
    with Engine.load(target) as engine:
        assert len(engine.live) == 20


# --- (6) refused indexes -----------------------------------------------------------------------------------------
def test_index_of_another_model_is_refused(setup, index_copy, fit_tiny_model):
    root, docs, corpus, model, _ = setup
    manifest_path = index_copy / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    tampered = dict(manifest, model_checksum="0" * 64)
    manifest_path.write_text(json.dumps(tampered))
    with pytest.raises(IndexError_) as err:
        Engine.load(index_copy)
    msg = str(err.value)
    assert "not the one the index was built with" in msg
    assert "-o NEW_DIR" in msg and f"delete {index_copy}" in msg  # says what to do
    manifest_path.write_text(json.dumps(manifest))

    # indexing with another model into this index is refused too, and changes nothing
    other = fit_tiny_model(corpus, bits=BITS, seed=1)
    other.save(index_copy.parent / "other-model")
    before = file_bytes(index_copy)
    with pytest.raises(IndexError_, match=r"different model.*-o NEW_DIR"):
        Engine(other).index(corpus, index_copy, progress=False)
    assert file_bytes(index_copy) == before
    assert dot_entries(index_copy.parent) == []


def test_newer_format_and_corrupt_manifest_are_refused(index_copy):
    manifest_path = index_copy / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(dict(manifest, format=manifest["format"] + 1)))
    with pytest.raises(IndexError_, match="newer semhash.*upgrade"):
        Engine.load(index_copy)
    with pytest.raises(IndexError_, match="newer semhash"):
        Engine.rebuild(index_copy)
    manifest_path.write_text("{not json")
    with pytest.raises(IndexError_, match="corrupt"):
        Engine.load(index_copy)
    with pytest.raises(IndexError_, match="not a semhash index"):
        Engine.load(index_copy.parent)


def test_the_store_is_the_index_changes_made_there_are_what_it_answers(index_copy):
    """Another program (or another engine) deleting from the store: the next load answers without them."""
    store = Store(sqlite_url(index_copy / SQLITE_FILE), None)
    removed, _ = store.delete(["v3", "v7"])
    store.close()
    assert len(removed) == 2
    result = CliRunner().invoke(main, ["rebuild", str(index_copy)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"index": str(index_copy), "items": 118}
    engine = Engine.load(index_copy)
    assert engine.store.count() == len(engine.live) == 118
    ids = {h.id for h in engine.query([0.0] * 16, k=None, radius=16)}
    assert "v3" not in ids and "v7" not in ids and len(ids) == 118
    engine.close()
    assert dot_entries(index_copy.parent) == []


def test_directory_that_is_not_an_index_is_refused(setup, tmp_path):
    root, docs, corpus, model, _ = setup
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    (tmp_path / "a-file").write_text("mine")
    for target in (tmp_path / "busy", tmp_path / "a-file"):
        with pytest.raises(IndexError_, match="is not a semhash index"):
            Engine(model).index(corpus, target, progress=False)
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine" and (tmp_path / "a-file").read_text() == "mine"
    assert dot_entries(tmp_path) == []


# --- (7) queries on a loaded index --------------------------------------------------------------------------
def test_query_returns_corpus_items(setup):
    root, docs, corpus, model, index_dir = setup
    engine = Engine.load(index_dir)
    by_id = {d["id"]: d for d in docs}
    codes = dict(zip(by_id, map(bytes, model.encode(_batch_from_dicts(docs)))))
    for doc in docs[:10]:
        hits = engine.query(doc["vector"], k=5, radius=2)
        assert len(hits) == 5 and all(isinstance(h, Hit) for h in hits)
        assert doc["id"] in [h.id for h in hits if h.distance == 0]
        dists = [h.distance for h in hits]
        assert dists == sorted(dists) and dists[0] == 0
        for h in hits:
            assert h.id in by_id
            assert h.payload == {k: by_id[h.id][k] for k in PAYLOAD_KEYS}
            assert h.score == pytest.approx(1 - h.distance / BITS)
            q = np.frombuffer(codes[doc["id"]], np.uint8)
            assert h.distance == int(np.unpackbits(q ^ np.frombuffer(codes[h.id], np.uint8)).sum())
        # radius mode: exactly the items within the radius
        within = engine.query(np.asarray(doc["vector"]), k=None, radius=1)
        q = np.unpackbits(np.frombuffer(codes[doc["id"]], np.uint8))
        want = {e for e, c in codes.items() if int((np.unpackbits(np.frombuffer(c, np.uint8)) != q).sum()) <= 1}
        assert {h.id for h in within} == want and len(within) == len(want)
    answers = engine.query_batch([d["vector"] for d in docs[:3]], k=2)
    assert [a.query_id for a in answers] == ["0", "1", "2"]
    assert all(len(a.hits) == 2 for a in answers)
    info = engine.info()
    assert info["items"] == 120 and info["buckets"]["distinct_codes"] == engine.buckets.n_buckets
    engine.close()


def test_answers_hold_their_hits_as_columns_made_into_hits_on_first_use(setup):
    """An answer's ids, distances and scores columns, its Hit objects, its JSON and its equality all say the
    same; the Hit objects of a whole group are made once, on the first use of any answer's hits."""
    root, docs, corpus, model, index_dir = setup
    engine = Engine.load(index_dir)
    answers = engine.query_batch([d["vector"] for d in docs[:6]], k=7)
    group = answers[0]._group
    assert group is not None and group._hits is None  # nothing made yet
    for a in answers:
        hits = a.hits
        assert group._hits is not None and a._group is group
        assert len(a) == len(hits) == 7
        assert a.ids.tolist() == [h.id for h in hits]
        assert a.distances.tolist() == [h.distance for h in hits] and a.distances.dtype == np.int32
        assert a.scores.tolist() == [h.score for h in hits]
        plain = Answer(a.query_id, a.searched_radius, a.strategy, list(hits))
        assert plain == a and plain.to_json() == a.to_json()
        assert plain.ids.tolist() == a.ids.tolist() and plain.distances.tolist() == a.distances.tolist()
        assert json.loads(json.dumps(a.to_json())) == a.to_json()
    fresh = engine.query_batch([d["vector"] for d in docs[:6]], k=7)
    assert [f.to_json() for f in fresh] == [a.to_json() for a in answers]  # JSON without making Hit objects
    assert fresh[0]._group._hits is None
    assert fresh != answers[::-1] and fresh == answers
    with pytest.raises(TypeError):
        Answer("q", 0, "ball")
    engine.close()


def test_query_refuses_texts_on_a_vector_index_and_unloaded_engine(setup):
    root, docs, corpus, model, index_dir = setup
    engine = Engine.load(index_dir)
    with pytest.raises(ModelError, match="vector"):
        engine.query("some words", k=3)
    engine.close()
    with pytest.raises(IndexError_, match="no index loaded"):
        Engine(model).query(docs[0]["vector"])


def test_a_loaded_model_keeps_its_checksum_in_new_indexes(setup, tmp_path):
    """Indexing with a model loaded from disk into a new directory copies it: re-saving it would change
    its checksum, and the next run with the same model would be refused as "a different model"."""
    root, docs, corpus, model, index_dir = setup
    engine = Engine.load(index_dir)
    checksum = engine.model.checksum
    engine.index(corpus, tmp_path / "copy", progress=False)
    assert engine.model.checksum == checksum
    assert json.loads((tmp_path / "copy" / MANIFEST).read_text())["model_checksum"] == checksum
    engine.close()
    model.save(tmp_path / "model")
    from_dir = Engine.from_model(tmp_path / "model")
    stats = from_dir.index(corpus, tmp_path / "copy", progress=False)  # the same model: accepted
    assert (stats.added, stats.replaced) == (0, 120)
    from_dir.close()
    again = Engine.from_model(tmp_path / "model")
    again.index(corpus, tmp_path / "third", progress=False)
    again.close()
    third, copy = Engine.load(tmp_path / "third"), Engine.load(tmp_path / "copy")
    assert third.model.checksum == copy.model.checksum
    third.close()
    copy.close()


def test_query_iter_builds_answers_in_bounded_groups(setup, monkeypatch):
    """query_iter gives query_batch's answers, one at a time, building at most max_hits hits per group
    (a query holding more is a group of its own); errors come at the call, not at the first answer."""
    _, docs, _, _, index_dir = setup
    engine = Engine.load(index_dir)
    queries = [d["vector"] for d in docs[:9]]
    want = engine.query_batch(queries, k=None, radius=16)
    sizes = []
    real = engine._answers
    monkeypatch.setattr(engine, "_answers", lambda ids, res, scores=None, version=None:
                        sizes.append(len(res.row_ids)) or real(ids, res, scores, version))
    got = list(engine.query_iter(queries, k=None, radius=16, max_hits=50))
    assert got == want
    assert sum(sizes) == sum(len(a.hits) for a in want) and len(sizes) > 1
    counts = [len(a.hits) for a in want]
    assert all(s <= 50 or s in counts for s in sizes)  # a group over 50 is one query's answer
    with pytest.raises(ConfigError):
        engine.query_iter(queries, k=3, candidates=10)
    engine.close()


def test_query_iter_searches_in_blocks_with_the_same_answers(setup, monkeypatch):
    """With a tiny span budget every query is searched on its own; the answers do not change, and a k
    past int64 gives every item."""
    import semhash.engine as engine_mod

    _, docs, _, _, index_dir = setup
    engine = Engine.load(index_dir)
    queries = [d["vector"] for d in docs[:7]]
    want_knn, want_radius = engine.query_batch(queries, k=5), engine.query_batch(queries, k=None, radius=3)
    everything = engine.query_batch(queries[:2], k=2 ** 64)
    assert [len(a.hits) for a in everything] == [120, 120]
    searched = []
    real = engine.live.search
    monkeypatch.setattr(engine.live, "search", lambda codes, **kw: searched.append(len(codes)) or real(codes, **kw))
    monkeypatch.setattr(engine_mod, "SPAN_BLOCK", 1)
    assert engine.query_batch(queries, k=5) == want_knn
    assert engine.query_batch(queries, k=None, radius=3) == want_radius
    assert searched.count(1) == 14  # one call per query (besides the empty call that checks the options)
    engine.close()


@pytest.mark.parametrize("value", ["x", "1e3", "-1", "9" * 40])
def test_a_damaged_version_in_the_store_is_an_error_not_a_traceback(index_copy, value):
    store = Store(sqlite_url(index_copy / SQLITE_FILE), BITS)
    with store._transaction(write=True, doing="test") as conn:  # what a damaged file would hold
        conn.exec_driver_sql("UPDATE semhash_meta SET value = ? WHERE key = 'version'", (value,))
    store.close()
    with pytest.raises(SemhashError, match="damaged"):
        Engine.load(index_copy)
    result = CliRunner().invoke(main, ["info", str(index_copy)])
    assert result.exit_code == 1 and result.stderr.startswith("Error: ") and "damaged" in result.stderr


def test_an_answer_is_read_from_one_snapshot_even_if_a_write_lands_mid_query(setup, index_copy, monkeypatch):
    """A writer commits between a reader's search and its read of the hits: the reader's answer is still
    that of one committed state (the snapshot it was pinned to), with no error."""
    _, docs, _, _, _ = setup
    reader, writer = Engine.load(index_copy), Engine.load(index_copy)
    before = reader.query(docs[0]["vector"], k=5, radius=2)
    real = reader.live.search
    calls = []

    def search_then_write(codes, **kw):
        out = real(codes, **kw)
        if not calls:  # the first search only: delete every item it may have found
            writer.remove([d["id"] for d in docs])
        calls.append(1)
        return out

    monkeypatch.setattr(reader.live, "search", search_then_write)
    hits = reader.query(docs[0]["vector"], k=5, radius=2)
    assert hits == before and len(hits) == 5  # the snapshot pinned before the delete: the 5 nearest, as they were
    after = reader.query(docs[0]["vector"], k=5, radius=2)
    assert after == [] and len(reader.live) == 0  # the next query catches up with the delete
    reader.close()
    writer.close()


@pytest.mark.parametrize("value", ["'abc'", "x'00ff'"])
def test_a_damaged_code_in_the_store_is_an_error_not_a_traceback(index_copy, value):
    store = Store(sqlite_url(index_copy / SQLITE_FILE), BITS)
    with store._transaction(write=True, doing="test") as conn:  # what a damaged file would hold
        conn.exec_driver_sql(f"UPDATE semhash_items SET code = {value} WHERE row_id = 3")
    store.close()
    result = CliRunner().invoke(main, ["query", "-", "-i", str(index_copy)], input="[0.1]\n")
    assert result.exit_code == 1 and "holds a row id or code that is not a number of the right size" in result.stderr
