"""`semhash index`, `info`, `delete` and `rebuild` through click's CliRunner, run inside tmp_path."""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from semhash.cli import main
from semhash.engine import Engine
from semhash.model import Model

from helpers import dot_entries, file_bytes, run

INDEX_KEYS = ["index", "added", "replaced", "items", "distinct_codes", "bits"]
FAST = ["--epochs", "2", "--bits", "16", "--hidden", "32", "-q"]
N = 120


@pytest.fixture(scope="module")
def built(tmp_path_factory, vector_docs, write_jsonl):
    """(root, docs, the result of `semhash index corpus.jsonl --epochs 2 --bits 16 -q` run in root)."""
    root = tmp_path_factory.mktemp("cliindex")
    docs = vector_docs(N, seed=0)
    write_jsonl(root / "corpus.jsonl", docs)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        result = run("index", "corpus.jsonl", "--epochs", "2", "--bits", "16", "-q")
    finally:
        os.chdir(cwd)
    return root, docs, result


@pytest.fixture
def workdir(built, tmp_path, monkeypatch):
    """tmp_path as the working directory, holding corpus.jsonl and a copy of the module's ./semhash-index."""
    root = built[0]
    shutil.copy(root / "corpus.jsonl", tmp_path / "corpus.jsonl")
    shutil.copytree(root / "semhash-index", tmp_path / "semhash-index")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_index_with_no_other_argument_creates_the_default_index(built):
    root, docs, result = built
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # -q
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert list(summary) == INDEX_KEYS
    engine = Engine.load(root / "semhash-index")
    assert summary == {"index": "semhash-index", "added": N, "replaced": 0, "items": N,
                       "distinct_codes": engine.buckets.n_buckets, "bits": 16}
    assert engine.model.kind == "vector" and engine.model.bits == 16
    assert engine.store.count() == N
    engine.close()
    assert dot_entries(root) == []


def test_reindex_replaces(workdir):
    before = Engine.load("semhash-index")
    codes_before = before.store.all_codes()
    before.close()
    result = run("index", "corpus.jsonl", "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["added"], summary["replaced"], summary["items"]) == (0, N, N)
    assert summary["index"] == "semhash-index" and summary["bits"] == 16
    # the index's own model was used (no training): the codes are unchanged
    engine = Engine.load("semhash-index")
    assert engine.store.version() == 2  # one change to create it, one to index it again (a single batch)
    for a, b in zip(engine.store.all_codes(), codes_before):
        assert np.array_equal(a, b)
    engine.close()


def test_index_logs_without_quiet(workdir):
    result = run("index", "corpus.jsonl")
    assert result.exit_code == 0, result.output
    assert f"Indexed {N} items into semhash-index (0 added, {N} replaced)" in result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_info(workdir):
    result = run("info")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    engine = Engine.load("semhash-index")
    assert info["items"] == N
    assert info["directory"] == str(workdir / "semhash-index")
    assert info["buckets"]["distinct_codes"] == engine.buckets.n_buckets
    assert info["buckets"]["largest_bucket"] == int(engine.buckets.sizes().max())
    assert set(info["bytes_per_item"]) == {"memory", "disk"}
    assert 0 < info["bytes_per_item"]["memory"] < info["bytes_per_item"]["disk"]
    assert info["manifest"]["namespace"] == "semhash" and info["manifest"]["bits"] == 16
    assert info["version"] == engine.store.version() == 1
    assert info["store"].startswith("sqlite:///") and info["store"].endswith("items.db")
    engine.close()
    assert json.loads(run("info", "semhash-index").stdout)["items"] == N


def test_delete(workdir, built):
    docs = built[1]
    first, second = docs[1]["id"], docs[2]["id"]
    result = run("delete", "semhash-index", first, "NOPE")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"index": "semhash-index", "deleted": 1, "not_found": 1, "items": N - 1}
    # the same id twice counts once; an id already deleted is not found
    result = run("delete", "semhash-index", second, second, first)
    assert json.loads(result.stdout) == {"index": "semhash-index", "deleted": 1, "not_found": 1, "items": N - 2}
    engine = Engine.load("semhash-index")
    assert engine.store.count() == len(engine.live) == len(engine.buckets) == N - 2
    assert engine.store.row_ids_for([first, second]) == {}
    engine.close()
    # and the deleted items no longer come back from a query
    q = workdir / "q.jsonl"
    q.write_text(json.dumps({"id": "q", "vector": docs[1]["vector"]}) + "\n")
    hits = json.loads(run("query", q, "-k", "200", "--radius", "16").stdout)["hits"]
    assert len(hits) == N - 2 and first not in {h["id"] for h in hits}
    # re-indexing the corpus adds them back
    summary = json.loads(run("index", "corpus.jsonl", "-q").stdout)
    assert (summary["added"], summary["replaced"], summary["items"]) == (2, N - 2, N)


def test_rebuild_command_upgrades_an_index_of_the_previous_format(workdir):
    """Format 1 kept counts and a generation in the manifest and a FAISS file beside the store; rebuild (or
    the first update) writes the current manifest and removes the FAISS file, which semhash wrote."""
    index = workdir / "semhash-index"
    manifest = json.loads((index / "manifest.json").read_text())
    old = {**manifest, "format": 1, "generation": 1, "counts": {"items": N, "faiss": N, "distinct_codes": 3}}
    (index / "manifest.json").write_text(json.dumps(old))
    (index / "faiss.index").write_bytes(b"an old FAISS file")
    assert json.loads(run("info").stdout)["items"] == N  # it opens as it is
    result = run("rebuild")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"index": "semhash-index", "items": N}
    upgraded = json.loads((index / "manifest.json").read_text())
    assert upgraded["format"] == 2 and "counts" not in upgraded and "generation" not in upgraded
    assert not (index / "faiss.index").exists()
    assert {k: v for k, v in upgraded.items() if k != "format"} == {k: v for k, v in manifest.items() if k != "format"}


# --- bad input: exit code 1, "Error: ", and nothing changed ---------------------------------------------------
def expect_refused(workdir: Path, *args, contains: str = "") -> str:
    before = file_bytes(workdir / "semhash-index")
    before_entries = sorted(p.name for p in workdir.iterdir())
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: "), result.stderr
    assert result.stdout == ""
    assert contains in result.stderr
    assert file_bytes(workdir / "semhash-index") == before
    assert sorted(p.name for p in workdir.iterdir()) == before_entries
    assert dot_entries(workdir) == []
    return result.stderr


def test_malformed_corpus_changes_nothing(workdir, built):
    docs = built[1]
    bad = workdir / "bad.jsonl"
    bad.write_text(json.dumps(docs[0]) + "\n" + json.dumps(docs[1]) + "\n{\"id\": \"x\", \"vector\": [1, 2\n")
    bad_before = sorted(p.name for p in workdir.iterdir())
    assert "bad.jsonl" in bad_before
    msg = expect_refused(workdir, "index", "bad.jsonl", "-q", contains="bad.jsonl, line 3: invalid JSON")
    assert msg.count("\n") == 1  # one line, no traceback


def test_vector_width_mismatch_changes_nothing(workdir, vector_docs, write_jsonl):
    write_jsonl(workdir / "narrow.jsonl", vector_docs(20, dim=8, prefix="w"))
    expect_refused(workdir, "index", "narrow.jsonl", "-q", contains="8 dimensions")


def test_text_corpus_into_vector_index_changes_nothing(workdir, topic_docs, write_jsonl):
    write_jsonl(workdir / "texts.jsonl", topic_docs(10))
    expect_refused(workdir, "index", "texts.jsonl", "-q", contains="texts")


def test_output_under_a_regular_file_fails(workdir):
    (workdir / "some_file").write_text("x")
    expect_refused(workdir, "index", "corpus.jsonl", "-o", "some_file/sub", *FAST, contains="some_file")
    assert (workdir / "some_file").read_text() == "x"


def test_output_that_is_a_regular_file_fails(workdir):
    (workdir / "some_file").write_text("x")
    expect_refused(workdir, "index", "corpus.jsonl", "-o", "some_file", *FAST,
                   contains="some_file exists and is not a semhash index")
    assert (workdir / "some_file").read_text() == "x"


def test_output_that_is_an_unrelated_directory_fails(workdir, tree_hash):
    (workdir / "project").mkdir()
    (workdir / "project" / "notes.txt").write_text("mine")
    (workdir / "project" / "manifest.json").write_text('{"name": "not semhash"}')
    before = tree_hash(workdir / "project")
    msg = expect_refused(workdir, "index", "corpus.jsonl", "-o", "project", *FAST)
    assert msg == "Error: project exists and is not a semhash index; choose another path or remove it\n"
    assert tree_hash(workdir / "project") == before


def test_output_that_is_the_current_directory_fails(workdir, tree_hash):
    before = tree_hash(workdir)
    msg = expect_refused(workdir, "index", "corpus.jsonl", "-o", ".", "-q")
    assert msg == "Error: . exists and is not a semhash index; choose another path or remove it\n"
    assert tree_hash(workdir) == before


def test_output_that_is_a_device_or_a_model_fails(workdir, tree_hash):
    before = tree_hash(Path("/dev/null"))
    msg = expect_refused(workdir, "index", "corpus.jsonl", "-o", "/dev/null", "-q")
    assert msg == "Error: /dev/null exists and is not a semhash index; choose another path or remove it\n"
    assert tree_hash(Path("/dev/null")) == before
    shutil.copytree(workdir / "semhash-index" / "model", workdir / "model")
    before = tree_hash(workdir / "model")
    msg = expect_refused(workdir, "index", "corpus.jsonl", "-m", "model", "-o", "model", "-q")
    assert msg == "Error: model is a semhash model, not an index; choose another path or remove it\n"
    assert tree_hash(workdir / "model") == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write into a read-only directory")
def test_unwritable_output_directory_fails(workdir):
    locked = workdir / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        expect_refused(workdir, "index", "corpus.jsonl", "-o", "locked/idx", *FAST, contains="locked")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_unreachable_database_fails_and_leaves_no_directory(workdir):
    msg = expect_refused(workdir, "index", "corpus.jsonl", "-o", "pg-idx", "--db",
                         "postgresql+psycopg://postgres@127.0.0.1:1/x", *FAST, contains="cannot connect")
    assert not (workdir / "pg-idx").exists()
    assert "127.0.0.1:1" in msg


def test_existing_index_cannot_move_to_another_database(workdir):
    expect_refused(workdir, "index", "corpus.jsonl", "--db", "postgresql+psycopg://postgres@127.0.0.1:1/x", "-q",
                   contains="cannot be moved")


def test_missing_index_for_info_delete_rebuild(workdir):
    for args in (("info", "nowhere"), ("delete", "nowhere", "a"), ("rebuild", "nowhere")):
        result = run(*args)
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: nowhere is not a semhash index")
        assert not (workdir / "nowhere").exists()


def test_missing_corpus(workdir):
    expect_refused(workdir, "index", "no-such.jsonl", "-q", contains="no such file")


# --- --model and PostgreSQL -----------------------------------------------------------------------------------
def test_index_with_a_trained_model(workdir):
    result = run("train", "corpus.jsonl", "-o", "my-model", "--epochs", "2", "--bits", "16", "--hidden", "32",
                 "--seed", "3", "-q")
    assert result.exit_code == 0, result.output
    result = run("index", "corpus.jsonl", "--model", "my-model", "-o", "idx2", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    summary = json.loads(result.stdout)
    assert (summary["index"], summary["added"], summary["items"], summary["bits"]) == ("idx2", N, N, 16)
    model = Model.load("my-model")
    engine = Engine.load("idx2")
    assert engine.manifest.model_checksum == model.checksum
    assert (workdir / "idx2" / "model" / "manifest.json").read_bytes() == \
        (workdir / "my-model" / "manifest.json").read_bytes()
    engine.close()
    # the same model again: replaces; another model into the default index: refused
    again = json.loads(run("index", "corpus.jsonl", "-m", "my-model", "-o", "idx2", "-q").stdout)
    assert (again["added"], again["replaced"]) == (0, N)
    expect_refused(workdir, "index", "corpus.jsonl", "-m", "my-model", "-q", contains="different model")


@pytest.fixture
def pg_schema_url(pg_url):
    """The PostgreSQL URL with a fresh schema first on its search_path (the CLI uses the namespace
    'semhash'); the schema and everything in it is dropped afterwards."""
    import sqlalchemy as sa

    schema = f"tcli{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


@pytest.mark.postgres
def test_postgresql_end_to_end(workdir, built, pg_schema_url):
    docs = built[1]
    result = run("index", "corpus.jsonl", "--db", pg_schema_url, "-o", "pg-idx", *FAST)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["index"], summary["added"], summary["replaced"], summary["items"]) == ("pg-idx", N, 0, N)
    assert not (workdir / "pg-idx" / "items.db").exists()
    manifest = json.loads((workdir / "pg-idx" / "manifest.json").read_text())
    assert manifest["db_url"] == pg_schema_url

    q = workdir / "q.jsonl"
    q.write_text("".join(json.dumps({"id": f"q{i}", "vector": d["vector"]}) + "\n" for i, d in enumerate(docs[:3])))
    result = run("query", q, "-i", "pg-idx", "-k", "3")
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["query_id"] for a in answers] == ["q0", "q1", "q2"]
    by_id = {d["id"]: d for d in docs}
    for a, d in zip(answers, docs[:3]):
        assert len(a["hits"]) == 3
        assert d["id"] in {h["id"] for h in a["hits"] if h["distance"] == 0}
        for h in a["hits"]:
            assert h["payload"] == {"title": by_id[h["id"]]["title"], "rank": by_id[h["id"]]["rank"]}

    info = json.loads(run("info", "pg-idx").stdout)
    assert info["items"] == N and info["store"].startswith("postgresql+psycopg://")
    assert info["manifest"]["db_url"] == pg_schema_url

    result = run("delete", "pg-idx", docs[0]["id"], "NOPE")
    assert json.loads(result.stdout) == {"index": "pg-idx", "deleted": 1, "not_found": 1, "items": N - 1}
    summary = json.loads(run("index", "corpus.jsonl", "-o", "pg-idx", "-q").stdout)
    assert (summary["added"], summary["replaced"], summary["items"]) == (1, N - 1, N)
    # a bad corpus leaves the shared database untouched: the index still loads
    (workdir / "bad.jsonl").write_text("{oops\n")
    result = run("index", "bad.jsonl", "-o", "pg-idx", "-q")
    assert result.exit_code == 1 and result.stderr.startswith("Error: ")
    assert json.loads(run("info", "pg-idx").stdout)["items"] == N
    result = run("rebuild", "pg-idx")
    assert json.loads(result.stdout) == {"index": "pg-idx", "items": N}
    # a second index directory on the same database and namespace is refused
    result = run("index", "corpus.jsonl", "--db", pg_schema_url, "-o", "pg-idx2", *FAST)
    assert result.exit_code == 1 and "already holds a semhash index" in result.stderr
    assert not (workdir / "pg-idx2").exists()


def test_items_without_features_are_counted_and_shown(tmp_path, topic_docs, write_jsonl, monkeypatch):
    """Texts with no word of the model's vocabulary all get the code of an empty feature row: index
    warns with their count, and info shows that code and how many items it holds."""
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", topic_docs(60))
    assert run("train", "train.jsonl", "-o", "m", *FAST).exit_code == 0
    unknown = [{"id": f"x{i}", "text": f"zzqx{i} wvvk{i}"} for i in range(7)]
    write_jsonl(tmp_path / "more.jsonl", topic_docs(30, seed=1) + unknown)
    result = CliRunner().invoke(main, ["index", "more.jsonl", "-m", "m", "-o", "idx"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert ("Warning: 7 of these items have no features (texts with no word of the model's vocabulary, or "
            "all-zero vectors); they all share one code. `semhash info` shows that bucket.") in result.stderr
    info = json.loads(run("info", "idx").stdout)
    engine = Engine.load("idx")
    empty = engine.model.empty_code()
    codes = {it.ext_id: it.code for it in engine.store.fetch(engine.buckets.row_ids)}
    assert all(codes[u["id"]] == empty.tobytes() for u in unknown)
    assert info["empty_features"] == {"code": empty.tobytes().hex(),
                                      "items": sum(c == empty.tobytes() for c in codes.values())}
    assert info["empty_features"]["items"] >= 7
    quiet = CliRunner().invoke(main, ["index", "more.jsonl", "-o", "idx", "-q"], catch_exceptions=False)
    assert quiet.exit_code == 0 and "Warning" not in quiet.stderr


@pytest.mark.parametrize("change,why", [
    (lambda m: {**m, "bits": "32"}, "field 'bits': \"32\""),
    (lambda m: {**m, "db_url": True}, "field 'db_url': true"),
    (lambda m: {**m, "format": []}, "field 'format': []"),
    (lambda m: {k: v for k, v in m.items() if k != "namespace"}, "field 'namespace': missing"),
    (lambda m: {**m, "features": 1}, "field 'features': 1"),
])
def test_a_damaged_index_manifest_is_an_error_not_a_traceback(workdir, change, why, tree_hash):
    path = workdir / "semhash-index" / "manifest.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    before = tree_hash(workdir / "semhash-index")
    for args in (["info"], ["query", "corpus.jsonl", "-k", "2"], ["delete", "semhash-index", "v1"],
                 ["rebuild"], ["index", "corpus.jsonl", "-q"]):
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr == (f"Error: semhash-index/manifest.json is corrupt ({why}); the index is damaged: "
                                 f"index the corpus again into a new directory\n"), args
    assert tree_hash(workdir / "semhash-index") == before


@pytest.mark.parametrize("text,why", [
    ("[]", "a JSON list, not an object"), ('"index"', "a JSON str, not an object"), ("3", "a JSON int, not an object"),
    ("null", "a JSON NoneType, not an object"), ("true", "a JSON bool, not an object"),
    ("[" * 100_000 + "]" * 100_000, "maximum recursion depth exceeded while decoding a JSON array from a unicode string"),
])
def test_a_manifest_that_is_no_object_is_corrupt(workdir, text, why):
    (workdir / "semhash-index" / "manifest.json").write_text(text)
    result = run("info")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: semhash-index/manifest.json is corrupt ({why}); the index is damaged: "
                             f"index the corpus again into a new directory\n")
    assert run("index", "corpus.jsonl", "-q").stderr == (
        "Error: semhash-index exists and is not a semhash index; choose another path or remove it\n")


def test_index_trains_on_a_sample_and_reads_the_corpus_twice(tmp_path, vector_docs, write_jsonl, monkeypatch):
    """`--train-sample N`: the model is fitted on N records drawn in the pass that validates the corpus; the
    indexing pass is the only other read."""
    import semhash.corpus

    write_jsonl(tmp_path / "corpus.jsonl", vector_docs(300, seed=4))
    passes = []
    real = semhash.corpus.Corpus._line_records

    def counted(self, fmt, lines):
        n = 0
        for n, rec in enumerate(real(self, fmt, lines), 1):
            yield rec
        passes.append(n)  # a read that reached the end of the corpus

    monkeypatch.setattr(semhash.corpus.Corpus, "_line_records", counted)
    result = run("index", tmp_path / "corpus.jsonl", "-o", tmp_path / "idx", "--hasher", "itq", "--bits", "16",
                 "--train-sample", "50")
    assert result.exit_code == 0, result.output
    assert "Read a sample of 50 of 300 vector records from" in result.stderr
    assert passes == [300, 300]
    with Engine.load(tmp_path / "idx") as engine:
        assert engine.model.info["trained_on"] == 50 and engine.store.count() == 300
    result = run("train", tmp_path / "corpus.jsonl", "-o", tmp_path / "model", "--hasher", "itq", "--bits", "16",
                 "--train-sample", "0", "-q")
    assert result.exit_code == 0 and Model.load(tmp_path / "model").info["trained_on"] == 300
    result = run("train", tmp_path / "corpus.jsonl", "-o", tmp_path / "m2", "--train-sample", "-5", "-q")
    assert result.exit_code == 1
    assert result.output == "Error: --train-sample must be 0 (every record) or a positive count, got -5\n"


@pytest.mark.parametrize("damage,message", [
    ("UPDATE semhash_items SET labels = '{bad' WHERE row_id = 3", "the store holds '{bad' where a JSON list belongs"),
    ("UPDATE semhash_items SET payload = '[1]' WHERE row_id = 3", "the store holds '[1]' where a JSON object belongs"),
])
def test_rebuild_reports_a_damaged_row(workdir, damage, message):
    import sqlite3

    with sqlite3.connect(workdir / "semhash-index" / "items.db") as conn:
        ext_id = conn.execute("SELECT ext_id FROM semhash_items WHERE row_id = 3").fetchone()[0]
        conn.execute(damage)
    result = run("rebuild", "semhash-index")
    assert result.exit_code == 1
    assert result.output == (f"Error: item {ext_id!r} (row 3) in the store 'semhash': {message}; it is damaged: "
                             f"index the corpus again into a new index\n")
