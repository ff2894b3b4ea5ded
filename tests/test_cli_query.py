"""`semhash query` through click's CliRunner, checked against brute-force Hamming over `semhash encode` codes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from semhash.buckets import code_keys
from semhash.codes import from_hex, hamming

from helpers import run

BITS = 16
DIM = 8
HIT_KEYS = ["id", "distance", "score", "payload", "filled"]
ANSWER_KEYS = ["query_id", "searched_radius", "strategy", "hits"]


def _vectors(rng, n, centers):
    which = rng.integers(0, len(centers), size=n)
    return centers[which] + 0.3 * rng.standard_normal((n, DIM))


@pytest.fixture(scope="module")
def index(tmp_path_factory, write_jsonl):
    """(root, corpus path, index dir, query file, corpus records, query records), built once."""
    root = tmp_path_factory.mktemp("cliquery")
    rng = np.random.default_rng(0)
    centers = 3.0 * rng.standard_normal((4, DIM))
    corpus_recs = [{"id": f"item{i}", "vector": [round(float(x), 4) for x in v], "name": f"n{i}"}
                   for i, v in enumerate(_vectors(rng, 80, centers))]
    corpus = write_jsonl(root / "corpus.jsonl", corpus_recs)
    query_recs = [{"id": f"q{i}", "vector": [round(float(x), 4) for x in v]}
                  for i, v in enumerate(_vectors(rng, 6, centers))]
    queries = write_jsonl(root / "queries.jsonl", query_recs)
    idx = root / "IDX"
    result = run("index", corpus, "-o", idx, "--epochs", "2", "--bits", BITS, "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"] == 80
    return root, corpus, idx, queries, corpus_recs, query_recs


def _codes(path, model_dir):
    result = run("encode", path, "-m", model_dir)
    assert result.exit_code == 0, result.output
    recs = [json.loads(line) for line in result.stdout.splitlines()]
    return [r["id"] for r in recs], from_hex([r["code"] for r in recs], BITS)


@pytest.fixture(scope="module")
def brute(index):
    """(item ids in corpus order, query ids, (n_queries, n_items) Hamming distances)."""
    _, corpus, idx, queries, _, _ = index
    item_ids, item_codes = _codes(corpus, idx / "model")
    query_ids, query_codes = _codes(queries, idx / "model")
    return item_ids, query_ids, hamming(query_codes, item_codes), code_keys(item_codes)


def _order(dist_row, keys):
    """Item positions by (distance, code, row id = corpus order): the documented tie order."""
    return np.lexsort((np.arange(len(keys)), keys, dist_row))


def _answers(result):
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_query_knn(index, brute):
    _, _, idx, queries, corpus_recs, query_recs = index
    item_ids, query_ids, dist, keys = brute
    answers = _answers(run("query", queries, "-i", idx, "-k", 3))
    assert len(answers) == len(query_recs)
    assert [a["query_id"] for a in answers] == [q["id"] for q in query_recs] == query_ids
    payloads = {r["id"]: {"name": r["name"]} for r in corpus_recs}
    for qi, ans in enumerate(answers):
        assert list(ans) == ANSWER_KEYS
        assert ans["strategy"] in ("ball", "scan", "ball+fill")
        assert isinstance(ans["searched_radius"], int)
        # a scan examines every item; the ball searches at most to the radius asked for
        assert ans["searched_radius"] == BITS if ans["strategy"] == "scan" else -1 <= ans["searched_radius"] <= 2
        hits = ans["hits"]
        assert len(hits) == 3
        for h in hits:
            assert list(h) == HIT_KEYS
            assert h["score"] == pytest.approx(1 - h["distance"] / BITS)
            assert h["payload"] == payloads[h["id"]]
            assert h["filled"] == (h["distance"] > ans["searched_radius"])
        d = [h["distance"] for h in hits]
        assert d == sorted(d)
        # the exact 3 nearest, ties broken by code, then by the order the items were indexed
        order = _order(dist[qi], keys)[:3]
        assert d == dist[qi][order].tolist()
        assert [h["id"] for h in hits] == [item_ids[j] for j in order]


def test_query_radius_mode_matches_brute_force(index, brute):
    _, _, idx, queries, _, _ = index
    item_ids, _, dist, keys = brute
    for strategy in ("auto", "ball", "scan"):
        answers = _answers(run("query", queries, "-i", idx, "-k", 0, "--radius", 1, "--strategy", strategy))
        for qi, ans in enumerate(answers):
            assert ans["searched_radius"] == 1
            got = [(h["distance"], h["id"]) for h in ans["hits"]]
            within = [j for j in _order(dist[qi], keys) if dist[qi][j] <= 1]
            assert got == [(int(dist[qi][j]), item_ids[j]) for j in within], strategy
            assert not any(h["filled"] for h in ans["hits"])
    # at the full radius every item comes back
    answers = _answers(run("query", queries, "-i", idx, "-k", 0, "--radius", BITS))
    assert all(len(a["hits"]) == len(item_ids) for a in answers)


def test_query_tsv(index):
    _, _, idx, queries, _, query_recs = index
    jsonl = _answers(run("query", queries, "-i", idx, "-k", 3))
    result = run("query", queries, "-i", idx, "-k", 3, "--format", "tsv")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "query_id\trank\tid\tdistance\tscore"
    expected = [f"{a['query_id']}\t{rank}\t{h['id']}\t{h['distance']}\t{h['score']}"
                for a in jsonl for rank, h in enumerate(a["hits"], 1)]
    assert lines[1:] == expected
    assert len(lines) == 1 + 3 * len(query_recs)


def test_query_from_stdin(index):
    _, _, idx, queries, _, _ = index
    from_file = run("query", queries, "-i", idx, "-k", 3)
    from_stdin = run("query", "-", "-i", idx, "-k", 3, input=queries.read_text())
    assert from_stdin.exit_code == 0, from_stdin.output
    assert from_stdin.stdout == from_file.stdout


def test_query_single_query(index, brute):
    root, _, idx, _, _, query_recs = index
    item_ids, _, dist, keys = brute
    one = root / "one.jsonl"
    one.write_text(json.dumps(query_recs[0]) + "\n")
    answers = _answers(run("query", one, "-i", idx, "-k", 100))
    assert len(answers) == 1
    hits = answers[0]["hits"]
    assert len(hits) == len(item_ids)  # k larger than the collection: everything, sorted
    order = _order(dist[0], keys)
    assert [h["id"] for h in hits] == [item_ids[j] for j in order]


def test_query_bad_json_line(index):
    root, _, idx, _, _, query_recs = index
    bad = root / "bad.jsonl"
    bad.write_text(json.dumps(query_recs[0]) + "\nnot json\n")
    result = run("query", bad, "-i", idx)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {bad}, line 2: invalid JSON (Expecting value at column 1)\n"
    assert result.stdout == ""


def test_query_wrong_width(index):
    root, _, idx, _, _, _ = index
    bad = root / "narrow.jsonl"
    bad.write_text('{"id": "a", "vector": [1, 2, 3]}\n')
    result = run("query", bad, "-i", idx)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: the input vectors have 3 dimensions but the model was trained on {DIM}; "
                             "encode with a model trained on data of this width\n")
    assert result.stdout == ""


def test_query_radius_over_the_limit(index):
    _, _, idx, queries, _, _ = index
    for args in (["--radius", 99], ["-k", 0, "--radius", 99], ["--radius", -1]):
        result = run("query", queries, "-i", idx, *args)
        assert result.exit_code == 1
        got = args[-1]
        assert result.stderr == f"Error: radius must be between 0 and the code length ({BITS}), got {got}\n"
        assert result.stdout == ""


def test_query_missing_index(index, tmp_path):
    _, _, _, queries, _, _ = index
    missing = tmp_path / "no-such-index"
    result = run("query", queries, "-i", missing)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {missing} is not a semhash index (no manifest.json); create one with "
                             f"`semhash index CORPUS -o {missing}`\n")
    assert result.stdout == ""


def test_query_bad_strategy_is_a_usage_error(index):
    _, _, idx, queries, _, _ = index
    result = run("query", queries, "-i", idx, "--strategy", "fast")
    assert result.exit_code == 1  # usage errors exit 1 like every user error; 2 is kept for internal errors
    assert "'fast' is not one of 'auto', 'ball', 'mih', 'scan'" in result.stderr
