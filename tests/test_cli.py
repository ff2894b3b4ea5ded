"""The `semhash` command line (train, encode) through click's CliRunner."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from semhash.cli import main
from semhash.codes import from_hex, to_hex
from semhash.corpus import Corpus
from semhash.model import Model

from helpers import run

TRAIN_KEYS = ["model", "items", "kind", "bits", "feature_dim", "epochs", "val_loss", "seconds", "device"]
FAST = ["--epochs", "2", "--bits", "16", "--hidden", "32", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, topic_docs, write_jsonl):
    """(corpus path, model dir, result of `semhash train`), trained once for the module."""
    root = tmp_path_factory.mktemp("cli")
    corpus = write_jsonl(root / "docs.jsonl", topic_docs(60, seed=0))
    out = root / "model"
    result = run("train", corpus, "--epochs", "2", "--bits", "16", "-q", "-o", out)
    return corpus, out, result


def test_train(trained):
    corpus, out, result = trained
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert list(summary) == TRAIN_KEYS
    assert summary["model"] == str(out)
    assert (summary["items"], summary["kind"], summary["bits"], summary["feature_dim"]) == (60, "text", 16, 30)
    assert summary["epochs"] == 2
    assert summary["device"] in ("cpu", "cuda", "mps")
    assert result.stderr == ""  # -q: nothing on stderr
    assert (out / "manifest.json").is_file()
    assert Model.load(out).bits == 16


def test_train_logs_without_quiet(tmp_path, topic_docs, write_jsonl):
    corpus = write_jsonl(tmp_path / "docs.jsonl", topic_docs(30, seed=5))
    result = run("train", corpus, *FAST[:-1], "-o", tmp_path / "m")
    assert result.exit_code == 0
    assert f"Read 30 text records from {corpus}; training ae at 16 bits" in result.stderr
    assert f"Saved the model to {tmp_path / 'm'}" in result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_encode_jsonl(trained):
    corpus, out, _ = trained
    result = run("encode", corpus, "-m", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    ids = [json.loads(line)["id"] for line in open(corpus)]
    assert len(lines) == 60
    for line, rid in zip(lines, ids):
        assert re.fullmatch(r'\{"id": "([^"]+)", "code": "[0-9a-f]{4}"\}', line), line
        assert json.loads(line)["id"] == rid
    # the codes are the model's
    model = Model.load(out)
    expected = to_hex(model.encode(Corpus(corpus).read_all()))
    assert [json.loads(line)["code"] for line in lines] == expected
    assert lines[0] == f'{{"id": "{ids[0]}", "code": "{expected[0]}"}}'


def test_encode_from_stdin(trained):
    corpus, out, _ = trained
    from_file = run("encode", corpus, "-m", out).stdout
    from_stdin = run("encode", "-", "-m", out, input=corpus.read_text())
    assert from_stdin.exit_code == 0
    assert from_stdin.stdout == from_file


def test_encode_npy(trained, tmp_path):
    corpus, out, _ = trained
    jsonl = run("encode", corpus, "-m", out).stdout.splitlines()
    target = tmp_path / "codes.npy"
    result = run("encode", corpus, "-m", out, "--format", "npy", "-o", target)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    arr = np.load(target)
    assert arr.shape == (60, 2) and arr.dtype == np.uint8
    assert np.array_equal(arr, from_hex([json.loads(line)["code"] for line in jsonl], 16))
    assert [p.name for p in tmp_path.iterdir()] == ["codes.npy"]  # no temporary file left


def test_encode_jsonl_to_file(trained, tmp_path):
    corpus, out, _ = trained
    target = tmp_path / "codes.jsonl"
    assert run("encode", corpus, "-m", out, "-o", target).exit_code == 0
    assert target.read_text() == run("encode", corpus, "-m", out).stdout


def test_encode_npy_needs_output(trained):
    corpus, out, _ = trained
    result = run("encode", corpus, "-m", out, "--format", "npy")
    assert result.exit_code == 1
    assert result.stderr == "Error: --format npy writes a binary array: give a file with -o FILE\n"
    assert result.stdout == ""


def test_encode_missing_model(trained, tmp_path):
    corpus, _, _ = trained
    missing = tmp_path / "no-such-model"
    result = run("encode", corpus, "-m", missing)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert str(missing) in result.stderr
    assert "not a semhash model directory" in result.stderr
    assert result.stdout == ""


def test_encode_malformed_corpus_writes_nothing(trained, tmp_path):
    _, out, _ = trained
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "rocket"}\n{"id": "b"}\n')
    target = tmp_path / "codes.npy"
    result = run("encode", bad, "-m", out, "--format", "npy", "-o", target)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {bad}, line 2: record has neither a 'text' nor a 'vector' field "
                             "(fields: id)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]
    # on stdout too, nothing is printed for the good first line
    result = run("encode", bad, "-m", out)
    assert result.exit_code == 1 and result.stdout == ""


def test_encode_validates_before_printing(trained, tmp_path):
    """A bad record after the first batch (8192 records) must not leave the earlier codes on stdout."""
    _, out, _ = trained
    bad = tmp_path / "big.jsonl"
    bad.write_text(_good_lines(8200) + "not json\n")
    result = run("encode", bad, "-m", out)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {bad}, line 8201: invalid JSON (Expecting value at column 1)\n"
    assert result.stdout == ""


def test_encode_vectors_with_a_text_model(trained, tmp_path):
    _, out, _ = trained
    v = tmp_path / "v.jsonl"
    v.write_text('{"vector": [1, 2]}\n')
    result = run("encode", v, "-m", out)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "trained on texts" in result.stderr


def _good_lines(n):
    return "".join(json.dumps({"id": f"d{i}", "text": "rocket orbit planet"}) + "\n" for i in range(n))


BAD_CORPORA = {
    "bad_json": ("c.jsonl", _good_lines(16) + "not json\n",
                 "line 17: invalid JSON (Expecting value at column 1)"),
    "missing_text": ("c.jsonl", _good_lines(3) + '{"id": "x", "title": "t"}\n',
                     "line 4: record has neither a 'text' nor a 'vector' field (fields: id, title)"),
    "wrong_width": ("v.jsonl", '{"vector": [1, 2, 3]}\n{"vector": [1, 2]}\n',
                    "line 2: vector has 2 values, expected 3 (the width of line 1)"),
    "nan": ("v.jsonl", '{"vector": [1, 2]}\n{"vector": [NaN, 2]}\n',
            "line 2: vector contains NaN or infinite values"),
    "empty": ("c.jsonl", "", None),
}


@pytest.mark.parametrize("case", list(BAD_CORPORA))
def test_train_on_malformed_corpus(tmp_path, case):
    name, content, where = BAD_CORPORA[case]
    corpus = tmp_path / name
    corpus.write_text(content)
    out = tmp_path / "model"
    result = run("train", corpus, *FAST, "-o", out)
    assert result.exit_code == 1
    if where is None:
        assert result.stderr == f"Error: {corpus}: no records found (the file is empty)\n"
    else:
        assert result.stderr == f"Error: {corpus}, {where}\n"
    assert result.stdout == ""
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no model dir, no temporary dirs


def test_train_bad_options(tmp_path, topic_docs, write_jsonl):
    corpus = write_jsonl(tmp_path / "docs.jsonl", topic_docs(10))
    result = run("train", corpus, "--bits", "12", "-q", "-o", tmp_path / "m")
    assert result.exit_code == 1
    assert result.stderr == "Error: bits must be a positive multiple of 8 (8, 16, 32, 64, ...), got 12\n"
    result = run("train", corpus, "--hidden", "64,x", "-q", "-o", tmp_path / "m")
    assert result.exit_code == 1
    assert result.stderr == "Error: --hidden must be comma-separated integers, got '64,x'\n"
    result = run("train", tmp_path / "nope.jsonl", "-q", "-o", tmp_path / "m")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path / 'nope.jsonl'}: no such file or directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the behaviour without a GPU")
def test_train_on_cuda_without_cuda(tmp_path, topic_docs, write_jsonl):
    corpus = write_jsonl(tmp_path / "docs.jsonl", topic_docs(10))
    result = run("train", corpus, "--device", "cuda", "-q", "-o", tmp_path / "m")
    assert result.exit_code == 1
    assert result.stderr == ("Error: --device cuda was asked for, but no CUDA GPU is available; "
                             "use --device cpu or auto\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["encode", "--help"]])
def test_help_has_an_example(args):
    result = run(*args)
    assert result.exit_code == 0
    examples = [line for line in result.output.splitlines() if line.strip().startswith("Example:")]
    assert len(examples) == 1
    assert "semhash " in examples[0]


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and "0.1.0" in result.output


def weights_differ(a, b) -> bool:
    """Whether two saved autoencoders hold different weights."""
    wa, wb = Model.load(a).hasher.model.state_dict(), Model.load(b).hasher.model.state_dict()
    return any(not torch.equal(wa[k], wb[k]) for k in wa)


def trained_config(corpus, out, *options):
    """Train with the fast options plus `options`; the saved model's TrainConfig."""
    result = run("train", corpus, *FAST, "-o", out, *options)
    assert result.exit_code == 0, result.output
    return Model.load(out).hasher.train_config


def test_train_with_the_neighbour_term(tmp_path, topic_docs, write_jsonl):
    corpus = write_jsonl(tmp_path / "docs.jsonl", topic_docs(40, seed=6))
    train_cfg = trained_config(corpus, tmp_path / "m", "--neighbors", "0.5", "--temperature", "0")
    assert (train_cfg.neighbors, train_cfg.temperature) == (0.5, 0.0)
    trained_config(corpus, tmp_path / "plain")
    trained_config(corpus, tmp_path / "plain-again")
    # the option reaches training: same seed, other weights (while the same options give the same weights)
    assert weights_differ(tmp_path / "m", tmp_path / "plain")
    assert not weights_differ(tmp_path / "plain", tmp_path / "plain-again")
    bad = run("train", corpus, *FAST, "-o", tmp_path / "m2", "--neighbors", "-1")
    assert bad.exit_code == 1 and bad.stderr == "Error: penalty weights must be >= 0\n"


def test_train_with_and_without_the_diffusion_term(tmp_path, topic_docs, write_jsonl):
    corpus = write_jsonl(tmp_path / "docs.jsonl", topic_docs(40, seed=6))
    default = trained_config(corpus, tmp_path / "d")
    assert (default.diffusion, default.diffusion_time, default.diffusion_mix) == (None, None, None)  # the data's
    train_cfg = trained_config(corpus, tmp_path / "m", "--diffusion", "0", "--diffusion-time", "20")
    assert (train_cfg.diffusion, train_cfg.diffusion_time) == (0.0, 20.0)
    assert weights_differ(tmp_path / "m", tmp_path / "d")  # without the term, training went another way
    # texts' default weight is 1 (diffusion.WALKS): the same training as --diffusion 1, not as --diffusion 0.3
    trained_config(corpus, tmp_path / "w1", "--diffusion", "1")
    trained_config(corpus, tmp_path / "w03", "--diffusion", "0.3")
    assert not weights_differ(tmp_path / "w1", tmp_path / "d") and weights_differ(tmp_path / "w03", tmp_path / "d")
    bad = run("train", corpus, *FAST, "-o", tmp_path / "m2", "--diffusion-time", "-1")
    assert bad.exit_code == 1 and bad.stderr == "Error: diffusion time and mix must be >= 0\n"


# --- where train and encode may write ------------------------------------------------------------------------
@pytest.mark.parametrize("force", [[], ["--force"]])
@pytest.mark.parametrize("what", ["dir", "file", "device"])
def test_train_refuses_what_is_not_a_model(trained, tmp_path, tree_hash, make_unrelated, what, force):
    corpus = trained[0]
    target = make_unrelated(tmp_path, what)
    before = tree_hash(target)
    result = run("train", corpus, *FAST, "-o", target, *force)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {target} exists and is not a semhash model; choose another path or remove it\n"
    assert result.stdout == ""
    assert tree_hash(target) == before
    if what != "device":
        assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_train_refuses_the_current_directory(trained, tmp_path, tree_hash, monkeypatch):
    corpus = trained[0]
    (tmp_path / "README").write_text("my project")
    monkeypatch.chdir(tmp_path)
    before = tree_hash(tmp_path)
    for args in ([], ["--force"]):
        result = run("train", corpus, *FAST, "-o", ".", *args)
        assert result.exit_code == 1
        assert result.stderr == "Error: . exists and is not a semhash model; choose another path or remove it\n"
    assert tree_hash(tmp_path) == before


def test_train_replaces_a_model_only_with_force(trained, tmp_path, tree_hash):
    corpus, out, _ = trained
    target = Path(shutil.copytree(out, tmp_path / "model"))
    before = tree_hash(target)
    result = run("train", corpus, *FAST, "-o", target)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {target} is an existing semhash model; replace it with --force "
                             "(overwrite=True in Python) or choose another path\n")
    assert tree_hash(target) == before
    result = run("train", corpus, *FAST[:2], "--bits", "8", *FAST[4:], "-o", target, "--force")
    assert result.exit_code == 0, result.output
    assert Model.load(target).bits == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_train_refuses_an_index(trained, tmp_path, tree_hash):
    corpus = trained[0]
    assert run("index", corpus, "-m", trained[1], "-o", tmp_path / "idx", "-q").exit_code == 0
    before = tree_hash(tmp_path / "idx")
    result = run("train", corpus, *FAST, "-o", tmp_path / "idx", "--force")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {tmp_path / 'idx'} is a semhash index, not a model; "
                             "choose another path or remove it\n")
    assert tree_hash(tmp_path / "idx") == before


@pytest.mark.parametrize("what", ["device", "dir", "fifo", "link-to-device"])
def test_encode_writes_only_regular_files(trained, tmp_path, tree_hash, what):
    corpus, out, _ = trained
    if what == "device":
        target = Path("/dev/null")
    elif what == "dir":
        target = tmp_path / "codes"
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    elif what == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
    else:
        target = tmp_path / "null"
        target.symlink_to("/dev/null")
    before = tree_hash(target)
    for fmt in ("jsonl", "npy"):
        result = run("encode", corpus, "-m", out, "--format", fmt, "-o", target)
        assert result.exit_code == 1
        assert result.stderr == f"Error: {target} is not a regular file; choose another path\n"
        assert result.stdout == ""
    assert tree_hash(target) == before
    if what != "device":
        assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


# --- exit codes ----------------------------------------------------------------------------------------------
def test_usage_errors_exit_1_with_clicks_message():
    result = run("query", "-k", "many")
    assert result.exit_code == 1
    assert result.stderr == ("Usage: main query [OPTIONS] FILE\nTry 'main query --help' for help.\n\n"
                             "Error: Invalid value for '-k': 'many' is not a valid integer.\n")
    assert run("no-such-command").exit_code == 1
    assert run("--version").exit_code == 0 and run("info", "--help").exit_code == 0


def test_an_unexpected_exception_is_an_internal_error_without_traceback(monkeypatch, tmp_path):
    import semhash.engine

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(semhash.engine.Engine, "load", broken)
    monkeypatch.delenv("SEMHASH_DEBUG", raising=False)
    result = CliRunner().invoke(main, ["info", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == ("Error: internal error: ZeroDivisionError: division by zero (please report; "
                             "details with SEMHASH_DEBUG=1)\n")
    assert "Traceback" not in result.output
    monkeypatch.setenv("SEMHASH_DEBUG", "1")
    result = CliRunner().invoke(main, ["info", str(tmp_path)])
    assert isinstance(result.exception, ZeroDivisionError)


def test_an_os_error_on_a_named_file_is_a_user_error(monkeypatch, tmp_path):
    import semhash.engine

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "idx"))

    monkeypatch.setattr(semhash.engine.Engine, "load", denied)
    result = CliRunner().invoke(main, ["info", str(tmp_path / "idx")])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path / 'idx'}: Permission denied\n"


@pytest.mark.parametrize("option,message", [
    (["--lr", "inf"], "learning rate must be a finite number, got inf"),
    (["--diffusion", "nan"], "diffusion must be a finite number, got nan"),
    (["--noise", "-inf"], "noise must be a finite number, got -inf"),
    (["--hidden", "99999999"], "hidden layers must be 1 to 8 widths from 1 to 65,536, got [99999999]"),
    (["--seed", "-1"], "seed must be from 0 to 4294967295"),
    (["--seed", str(2 ** 64)], "seed must be from 0 to 4294967295"),
    (["--hasher", "itq", "--seed", "-1"], "seed must be from 0 to 4294967295, got -1"),
])
def test_training_options_are_checked_before_any_work(tmp_path, topic_docs, write_jsonl, option, message):
    corpus = write_jsonl(tmp_path / "docs.jsonl", topic_docs(20))
    result = run("train", corpus, "--epochs", "1", "-q", "-o", tmp_path / "m", *option)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {message}\n"
    assert not (tmp_path / "m").exists()


def test_encode_refuses_an_existing_file_unless_forced(trained, tmp_path):
    corpus, out, _ = trained
    target = tmp_path / "codes.jsonl"
    target.write_text("my notes\n")
    result = run("encode", corpus, "-m", out, "-o", target)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {target} exists; choose another path, or replace it with --force\n"
    assert target.read_text() == "my notes\n"
    assert run("encode", corpus, "-m", out, "-o", target, "--force").exit_code == 0
    assert target.read_text().startswith('{"id": ')
