"""semhash.fsutil: the write guard, atomic directories and files, orphaned temporary siblings."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from semhash.engine import Engine
from semhash.errors import IndexError_, ModelError, SemhashError
from semhash.fsutil import (INDEX, MODEL, atomic_directory, atomic_file, check_output_file, check_target,
                            directory_kind, remove_orphans)

NOT_A_MODEL = "{} exists and is not a semhash model; choose another path or remove it"
NOT_AN_INDEX = "{} exists and is not a semhash index; choose another path or remove it"


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def made(tmp_path_factory, topic_docs, write_jsonl, fit_tiny_model):
    """(root, corpus path, a tiny model, its saved directory, an index directory built with it)."""
    root = tmp_path_factory.mktemp("fsutil")
    corpus = write_jsonl(root / "docs.jsonl", topic_docs(30))
    model = fit_tiny_model(corpus)
    model_dir = model.save(root / "model")
    engine = Engine.from_model(model_dir)
    engine.index(corpus, root / "index", progress=False)
    engine.close()
    return root, corpus, model, model_dir, root / "index"


UNRELATED = ["dir", "dir-with-manifest", "file", "fifo", "symlink", "device"]


# --- the guard -------------------------------------------------------------------------------------------------
def test_directory_kind(made, tmp_path):
    root, _, _, model_dir, index_dir = made
    assert directory_kind(model_dir) == MODEL
    assert directory_kind(index_dir) == INDEX
    assert directory_kind(index_dir / "model") == MODEL
    (tmp_path / "link").symlink_to(model_dir)
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "manifest.json").write_text("[1, 2]")
    for path in (tmp_path / "link", tmp_path / "list", tmp_path / "missing", root / "docs.jsonl", tmp_path):
        assert directory_kind(path) is None


def test_missing_and_empty_targets_are_allowed(tmp_path):
    check_target(tmp_path / "new", MODEL)
    check_target(tmp_path / "deeper" / "new", INDEX)
    (tmp_path / "empty").mkdir()
    check_target(tmp_path / "empty", MODEL)
    check_target(tmp_path / "empty", INDEX)


@pytest.mark.parametrize("what", UNRELATED)
def test_unrelated_targets_are_refused(make_unrelated, tmp_path, what):
    path = make_unrelated(tmp_path, what)
    with pytest.raises(ModelError) as e:
        check_target(path, MODEL, replace=True)
    assert str(e.value) == NOT_A_MODEL.format(path)
    with pytest.raises(IndexError_) as e:
        check_target(path, INDEX, replace=True)
    assert str(e.value) == NOT_AN_INDEX.format(path)


def test_the_current_directory_is_refused_even_when_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as e:
        check_target(".", MODEL, replace=True)
    assert str(e.value) == NOT_A_MODEL.format(".")
    with pytest.raises(IndexError_) as e:
        check_target(tmp_path, INDEX, replace=True)  # by any name
    assert str(e.value) == NOT_AN_INDEX.format(tmp_path)


def test_same_kind_needs_replace_and_the_other_kind_is_refused(made):
    _, _, _, model_dir, index_dir = made
    check_target(model_dir, MODEL, replace=True)
    check_target(index_dir, INDEX, replace=True)
    with pytest.raises(ModelError) as e:
        check_target(model_dir, MODEL)
    assert str(e.value) == (f"{model_dir} is an existing semhash model; replace it with --force "
                            "(overwrite=True in Python) or choose another path")
    with pytest.raises(ModelError) as e:
        check_target(index_dir, MODEL, replace=True)
    assert str(e.value) == f"{index_dir} is a semhash index, not a model; choose another path or remove it"
    with pytest.raises(IndexError_) as e:
        check_target(model_dir, INDEX, replace=True)
    assert str(e.value) == f"{model_dir} is a semhash model, not an index; choose another path or remove it"


def test_a_semhash_directory_holding_other_files_is_refused(made, tmp_path):
    model_dir = Path(shutil.copytree(made[3], tmp_path / "model"))
    (model_dir / "notes.txt").write_text("mine")
    with pytest.raises(ModelError) as e:
        check_target(model_dir, MODEL, replace=True)
    assert str(e.value) == (f"{model_dir} is a semhash model but also holds notes.txt; "
                            "choose another path or move those away")


# --- Model.save and Engine.save --------------------------------------------------------------------------------
@pytest.mark.parametrize("what", UNRELATED)
def test_model_save_refuses_and_changes_nothing(make_unrelated, made, tmp_path, what, tree_hash):
    model = made[2]
    path = make_unrelated(tmp_path, what)
    before, entries = tree_hash(path), sorted(os.listdir(path.parent))
    with pytest.raises(ModelError) as e:
        model.save(path, overwrite=True)
    assert str(e.value) == NOT_A_MODEL.format(path)
    assert tree_hash(path) == before
    assert sorted(os.listdir(path.parent)) == entries


@pytest.mark.parametrize("what", UNRELATED)
def test_engine_save_refuses_and_changes_nothing(make_unrelated, made, tmp_path, what, tree_hash):
    engine = Engine.load(made[4])
    path = make_unrelated(tmp_path, what)
    before, entries = tree_hash(path), sorted(os.listdir(path.parent))
    with pytest.raises(IndexError_) as e:
        engine.save(path, overwrite=True)
    engine.close()
    assert str(e.value) == NOT_AN_INDEX.format(path)
    assert tree_hash(path) == before
    assert sorted(os.listdir(path.parent)) == entries


def test_saves_into_the_current_directory_are_refused(made, tmp_path, monkeypatch, tree_hash):
    (tmp_path / "README").write_text("my project")
    monkeypatch.chdir(tmp_path)
    before = tree_hash(tmp_path)
    with pytest.raises(ModelError, match=r"^\. exists and is not a semhash model"):
        made[2].save(".", overwrite=True)
    engine = Engine.load(made[4])
    with pytest.raises(IndexError_, match=r"^\. exists and is not a semhash index"):
        engine.save(".", overwrite=True)
    with pytest.raises(IndexError_, match=r"^\. exists and is not a semhash index"):
        engine.index(made[1], ".", progress=False)
    engine.close()
    assert tree_hash(tmp_path) == before


def test_engine_save_replaces_an_index_only_with_overwrite(made, tmp_path, tree_hash):
    engine = Engine.load(made[4])
    engine.save(tmp_path / "copy")
    before = tree_hash(tmp_path / "copy")
    with pytest.raises(IndexError_, match="is an existing semhash index; replace it with --force"):
        engine.save(tmp_path / "copy")
    assert tree_hash(tmp_path / "copy") == before
    engine.save(tmp_path / "copy", overwrite=True)
    engine.close()
    assert sorted(os.listdir(tmp_path)) == ["copy"]
    Engine.load(tmp_path / "copy").close()


# --- orphaned temporary siblings ---------------------------------------------------------------------------------
def test_orphans_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "model"
    dead, live = dead_pid(), os.getpid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            f".model.tmp-{dead}-abc_12xy": False, f".model.old-{dead}": False,  # dead: removed
            f".model.tmp-{live}-k3j4h5g6": True, f".model.tmp-{sleeper.pid}-zzzzzzzz": True,  # alive: kept
            f".model.old-{sleeper.pid}": True,
            ".model.tmp-oldstyle": True, f".other.tmp-{dead}-abcdefgh": True, f"model.tmp-{dead}-abcdefgh": True,
        }
        for name in names:
            (tmp_path / name).mkdir()
            (tmp_path / name / "file").write_text("x")
        (tmp_path / f".model.tmp-{dead}-filefile").write_text("a file, not semhash's")
        target.mkdir()  # the target exists, so a dead writer's .old copy is a leftover
        with atomic_directory(target, MODEL) as tmp:
            (tmp / "manifest.json").write_text("{}")
        left = set(os.listdir(tmp_path))
        assert left == {"model", f".model.tmp-{dead}-filefile"} | {n for n, keep in names.items() if keep}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_old_copy_is_kept_while_the_target_is_missing(tmp_path):
    """A writer killed between its two renames leaves only `.{name}.old-{pid}`: that is the only copy."""
    old = tmp_path / f".model.old-{dead_pid()}"
    old.mkdir()
    assert remove_orphans(tmp_path / "model") == []
    assert old.is_dir()
    (tmp_path / "model").mkdir()
    assert remove_orphans(tmp_path / "model") == [old]
    assert not old.exists()


def test_a_failed_write_leaves_no_temporary_directory(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "model", MODEL) as tmp:
            assert tmp.name.startswith(f".model.tmp-{os.getpid()}-")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


# --- output files ----------------------------------------------------------------------------------------------
def test_atomic_file_writes_and_replaces_regular_files(tmp_path):
    out = tmp_path / "out.txt"
    with atomic_file(out) as fh:
        fh.write(b"one")
    assert out.read_bytes() == b"one"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    out.chmod(0o640)
    with pytest.raises(SemhashError) as e:  # an existing file is replaced only when asked (--force)
        with atomic_file(out) as fh:
            fh.write(b"never")
    assert str(e.value) == f"{out} exists; choose another path, or replace it with --force"
    assert out.read_bytes() == b"one"
    with atomic_file(out, replace=True) as fh:
        fh.write(b"two")
    assert out.read_bytes() == b"two" and stat.S_IMODE(out.stat().st_mode) == 0o640
    with pytest.raises(RuntimeError):
        with atomic_file(out, replace=True) as fh:
            fh.write(b"half")
            raise RuntimeError("boom")
    assert out.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("what", ["dir", "fifo", "symlink", "device", "link-to-device"])
def test_atomic_file_refuses_what_is_not_a_regular_file(make_unrelated, tmp_path, what, tree_hash):
    if what == "link-to-device":
        path = tmp_path / "null"
        path.symlink_to("/dev/null")
    else:
        path = make_unrelated(tmp_path, what)
    before = tree_hash(path)
    for attempt in (lambda: check_output_file(path), lambda: atomic_file(path).__enter__()):
        with pytest.raises(SemhashError) as e:
            attempt()
        assert str(e.value) == f"{path} is not a regular file; choose another path"
    assert tree_hash(path) == before
