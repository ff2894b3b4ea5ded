"""The evaluation driver (semhash.evalrun) and `semhash eval`, on small clustered vectors and the shipped text sample."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from semhash.cli import main
from semhash.corpus import Corpus, batch_from_dicts
from semhash.errors import ConfigError, CorpusError
from semhash.evalrun import (first_labels, format_table, parse_bits, parse_methods, run_evaluation,
                             split_queries)

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "debian-sample.jsonl"
HEADER = ("method     bits     mAP  mAP(avg)   P@100  P@100(avg)  r2-prec  r2-recall  codes  train-s    R@10  R@10/100"
          "  R@10/1000    A@10  A@10/100  A@10/1000")
REPORT_KEYS = ["format", "dataset", "settings", "featurize_seconds", "feature_knn", "chance", "sign_reference",
               "results", "versions"]
RECALL_KEYS = ["recall_at_10", "recall_at_10_rerank_100", "recall_at_10_rerank_1000"]
ASYM_KEYS = ["recall_at_10_asym", "recall_at_10_asym_rerank_100", "recall_at_10_asym_rerank_1000"]
RESULT_KEYS = ["method", "bits", "train_seconds", "encode_seconds", "query_encode_seconds", "eval_seconds", "metrics",
               "diagnostics", "curves", "hasher", "history"]
METRIC_KEYS = ["queries", "database", "bits", "queries_without_relevant", "map", "precision_at_100", "map_tie_avg",
               "precision_at_100_tie_avg", "map_confidence", "precision_at_100_confidence", "radius2_empty_fraction",
               "radius2_mean_retrieved", "radius2_precision", "radius2_precision_nonempty", "radius2_recall",
               *RECALL_KEYS, *ASYM_KEYS]
FAST = ["--methods", "itq,pca,lsh", "--bits", "16", "-q"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def report_rows(result) -> list[str]:
    return [ln.split()[0] for ln in result.stdout.splitlines()[1:]]


def error_of(result) -> str:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    return result.stderr.strip()


@pytest.fixture(scope="module")
def clusters(tmp_path_factory, vector_docs, write_jsonl):
    """400 vectors (40 dimensions) around 4 well-separated centres (label = cluster), as a JSONL corpus."""
    root = tmp_path_factory.mktemp("eval")
    return write_jsonl(root / "clusters.jsonl", vector_docs(n=400, dim=40, clusters=4))


@pytest.fixture(scope="module")
def text_subset(tmp_path_factory):
    """(database, queries): the first 300 records of the shipped sample, and the next 60."""
    root = tmp_path_factory.mktemp("eval-text")
    lines = SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    db, queries = root / "db.jsonl", root / "queries.jsonl"
    db.write_text("".join(lines[:300]), encoding="utf-8")
    queries.write_text("".join(lines[300:360]), encoding="utf-8")
    return db, queries


@pytest.fixture(scope="module")
def cluster_report(clusters):
    return run_evaluation(Corpus(clusters).read_all(), query_count=100, methods="itq,pca,lsh", bits=(16, 32), seed=0)


# --- the driver ----------------------------------------------------------------------------------------------

def test_split_queries_is_seeded_disjoint_and_in_corpus_order(clusters):
    data = Corpus(clusters).read_all()
    db, q = split_queries(data, 50, seed=3)
    db2, q2 = split_queries(data, 50, seed=3)
    assert q.ids == q2.ids and db.ids == db2.ids
    assert len(q) == 50 and len(db) == 350 and not set(q.ids) & set(db.ids)
    order = {rid: i for i, rid in enumerate(data.ids)}
    assert [order[i] for i in q.ids] == sorted(order[i] for i in q.ids)
    assert [order[i] for i in db.ids] == sorted(order[i] for i in db.ids)
    assert np.array_equal(q.vectors, data.vectors[[order[i] for i in q.ids]])
    assert split_queries(data, 50, seed=4)[1].ids != q.ids


def test_first_label_is_the_relevance_label():
    batch = batch_from_dicts([{"text": "a b", "labels": ["python", "devel"]}, {"text": "c d", "label": "games"}])
    assert first_labels(batch) == ["python", "games"]
    with pytest.raises(CorpusError, match=r"^x.jsonl: 1 of 2 records have no label \(the first: id '2'\)"):
        first_labels(batch_from_dicts([{"text": "a", "label": "l"}, {"text": "b"}]), "x.jsonl")


def test_option_parsing():
    assert parse_methods("itq, lsh,itq") == ("itq", "lsh")
    assert parse_bits("16,32") == (16, 32) and parse_bits(64) == (64,)
    with pytest.raises(ConfigError, match="unknown method 'sh'; choose from: ae, itq, pca, lsh"):
        parse_methods("itq,sh")
    with pytest.raises(ConfigError, match="multiple of 8"):
        parse_bits("16,20")


def test_report_schema_and_clustered_data_beats_chance(cluster_report):
    r = cluster_report
    assert list(r) == REPORT_KEYS
    assert r["dataset"] == {"name": "the corpus", "kind": "vector", "database": 300, "queries": 100,
                            "queries_from": "split", "labels": 4, "feature_dim": 40, "output_type": "real"}
    assert [(x["method"], x["bits"]) for x in r["results"]] == [(m, b) for m in ("itq", "pca", "lsh") for b in (16, 32)]
    for res in r["results"]:
        assert list(res) == RESULT_KEYS
        assert sorted(res["metrics"]) == sorted(METRIC_KEYS)
        assert res["diagnostics"]["items"] == 300
        pk = res["curves"]["precision_at_k"]
        assert pk["k"] == [1, 2, 5, 10, 20, 50, 100, 200] and len(pk["index"]) == len(pk["tie_avg"]) == 8
        assert len(res["curves"]["radius"]["recall"]) == res["bits"] + 1
        assert res["curves"]["radius"]["recall"][-1] == pytest.approx(1.0)
        assert res["metrics"]["precision_at_100"] == pytest.approx(pk["index"][6])
    assert r["chance"]["precision"] == pytest.approx(0.25, abs=0.02)
    itq = r["results"][0]["metrics"]
    assert itq["map"] > 0.8 and itq["map_tie_avg"] > 0.8
    assert itq["precision_at_100"] > 0.7  # at most 0.75: each cluster has about 75 database items
    assert r["feature_knn"]["metric"] == "euclidean" and r["feature_knn"]["precision"] > 0.7
    json.dumps(r, allow_nan=False)  # every number is finite or None


def test_markdown_table(cluster_report):
    lines = format_table(cluster_report, markdown=True).splitlines()
    assert lines[0] == ("| method | bits | mAP | mAP(avg) | P@100 | P@100(avg) | r2-prec | r2-recall | codes | train-s "
                        "| R@10 | R@10/100 | R@10/1000 | A@10 | A@10/100 | A@10/1000 |")
    assert lines[1] == "|---|" + "---:|" * 15
    assert lines[2].startswith("| itq | 16 | ") and lines[-2].startswith("| float-knn | - | - | - | ")
    assert lines[-3].startswith("| sign | 40 | - | ")
    assert len(lines) == 2 + 6 + 3


def brute_asymmetric_recall(X_q, X_db, weights, db_codes, k, candidates) -> list[float]:
    """Recall@k of the exact cosine top-k, one query at a time, ranking the database by the asymmetric score."""
    from semhash.codes import unpack

    unit = lambda X: X / np.linalg.norm(X, axis=1, keepdims=True)  # noqa: E731
    sims = unit(X_q.astype(np.float64)) @ unit(X_db.astype(np.float64)).T
    signed = unpack(db_codes, db_codes.shape[1] * 8) * 2.0 - 1
    out = []
    for n in candidates:
        found = 0
        for i in range(len(X_q)):
            s = signed @ np.asarray(weights[i], np.float64)
            ranked = sorted(range(len(X_db)), key=lambda j: (-s[j], j))
            pool = ranked[:k] if n is None else sorted(ranked[:n], key=lambda j: -sims[i, j])[:k]
            found += len(set(pool) & set(np.argsort(-sims[i])[:k].tolist()))
        out.append(found / (len(X_q) * k))
    return out


def test_neighbour_recall_of_every_code_and_the_sign_reference(clusters, cluster_report):
    """Each result's recall metrics are neighbour_recall of its own codes (refitted: the hashers are seeded),
    the sign reference is that of the centred features' signs, and neighbour_k=None leaves them out."""
    from semhash.evalrun import make_hasher
    from semhash.evaluate import neighbour_recall, sign_codes

    data = Corpus(clusters).read_all()
    db, queries = split_queries(data, 100, 0)
    X_db, X_q = db.vectors.astype(np.float32), queries.vectors.astype(np.float32)
    for res in cluster_report["results"][:2]:
        h = make_hasher(res["method"], res["bits"], 0)
        h.fit(X_db, output_type="real")
        want = neighbour_recall(X_q, X_db, h.encode(X_q), h.encode(X_db), k=10, candidates=(None, 100, 1000))
        got = res["metrics"]
        assert [got[key] for key in RECALL_KEYS] == pytest.approx([want["codes"], want["rerank 100"],
                                                                    want["rerank 1000"]])
        assert got["recall_at_10"] <= got["recall_at_10_rerank_100"] <= got["recall_at_10_rerank_1000"] == 1.0
        # the asymmetric ranking: brute force, each query's codes by (score against its logits, database order)
        assert [got[key] for key in ASYM_KEYS] == pytest.approx(
            brute_asymmetric_recall(X_q, X_db, h.logits(X_q), h.encode(X_db), 10, (None, 100, 1000)))
    centre = X_db.mean(axis=0)
    want = neighbour_recall(X_q, X_db, sign_codes(X_q - centre), sign_codes(X_db - centre), k=10,
                            candidates=(None, 100, 1000))
    sign = cluster_report["sign_reference"]
    assert sign["bits"] == 40 and sign["metrics"]["recall_at_10"] == pytest.approx(want["codes"])
    assert [sign["metrics"][key] for key in ASYM_KEYS] == pytest.approx(
        brute_asymmetric_recall(X_q, X_db, X_q - centre, sign_codes(X_db - centre), 10, (None, 100, 1000)))
    plain = run_evaluation(data, query_count=100, methods="lsh", bits=16, seed=0, neighbour_k=None)
    assert plain["sign_reference"] is None and not any(key in plain["results"][0]["metrics"] for key in RECALL_KEYS)
    assert format_table(plain).splitlines()[0].split()[-1] == "train-s"


def test_driver_refuses_bad_input(clusters):
    data = Corpus(clusters).read_all()
    with pytest.raises(ConfigError, match="not smaller than the corpus"):
        run_evaluation(data, query_count=400, methods="lsh", bits=16)
    with pytest.raises(ConfigError, match="not both"):
        run_evaluation(data, data, query_count=10, methods="lsh", bits=16)
    texts = batch_from_dicts([{"text": "a b", "label": "x"}])
    with pytest.raises(CorpusError, match="the queries are texts but the corpus holds vectors"):
        run_evaluation(data, texts, methods="lsh", bits=16)


# --- the command -------------------------------------------------------------------------------------------------

def test_cli_table_and_json(clusters, tmp_path):
    out = tmp_path / "eval.json"
    result = run("eval", clusters, "--query-count", 100, "--bits", "16,32", "--methods", "itq,lsh", "--json", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == HEADER
    assert [ln.split()[:2] for ln in lines[1:]] == [["itq", "16"], ["itq", "32"], ["lsh", "16"], ["lsh", "32"],
                                                    ["sign", "40"], ["float-knn", "-"], ["random", "-"]]
    assert "Evaluating itq, lsh at 16, 32 bits: 300 database vectors, 100 queries" in result.stderr
    report = json.loads(out.read_text())
    assert list(report) == REPORT_KEYS
    assert report["settings"]["query_count"] == 100 and report["settings"]["k"] == 100
    itq16 = report["results"][0]
    assert lines[1].split()[2:5] == [f"{itq16['metrics']['map']:.4f}", f"{itq16['metrics']['map_tie_avg']:.4f}",
                                     f"{itq16['metrics']['precision_at_100']:.4f}"]
    assert lines[1].split()[8] == str(itq16["diagnostics"]["distinct_codes"])


def test_cli_text_sample_with_separate_queries(text_subset, tmp_path):
    db, queries = text_subset
    out = tmp_path / "eval.json"
    result = run("eval", db, "--queries", queries, *FAST, "-k", 20, "--json", out)
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and result.stdout.splitlines()[0].split() == [
        "method", "bits", "mAP", "mAP(avg)", "P@20", "P@20(avg)", "r2-prec", "r2-recall", "codes", "train-s",
        "R@10", "R@10/100", "R@10/1000", "A@10", "A@10/100", "A@10/1000"]
    assert report_rows(result) == ["itq", "pca", "lsh", "float-knn", "random"]  # no sign row for TF-IDF
    report = json.loads(out.read_text())
    assert report["dataset"]["kind"] == "text" and report["dataset"]["queries_from"] == "file"
    assert report["dataset"]["database"] == 300 and report["dataset"]["queries"] == 60
    assert report["feature_knn"]["metric"] == "cosine"
    assert [x["method"] for x in report["results"]] == ["itq", "pca", "lsh"]
    assert all("precision_at_20_confidence" in x["metrics"] for x in report["results"])


def test_cli_tiny_autoencoder(clusters, tmp_path):
    out = tmp_path / "ae.json"
    result = run("eval", clusters, "--query-count", 100, "--methods", "ae", "--bits", 16, "--epochs", 2,
                 "--hidden", 32, "--device", "cpu", "-q", "--json", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[:2] == ["ae", "16"]
    (res,) = json.loads(out.read_text())["results"]
    assert res["hasher"]["hidden"] == [32] and res["history"]["epochs_run"] <= 2
    assert res["metrics"]["map"] > 0.25  # chance is about 0.25; two epochs already do better


def test_cli_plot(clusters, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    result = run("eval", clusters, "--query-count", 50, "--methods", "itq,lsh", "--bits", 16, "-q", "--plot", png)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot_without_matplotlib(clusters, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib...` now raises ImportError
    result = run("eval", clusters, *FAST, "--plot", tmp_path / "x.png")
    assert error_of(result) == "Error: --plot needs matplotlib: pip install 'semhash[plot]'"
    assert not (tmp_path / "x.png").exists()


def test_cli_json_must_be_a_regular_file(clusters, tmp_path, tree_hash):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    before = tree_hash(tmp_path)
    assert error_of(run("eval", clusters, *FAST, "--json", "/dev/null")) == \
        "Error: /dev/null is not a regular file; choose another path"
    assert error_of(run("eval", clusters, *FAST, "--json", tmp_path / "out")) == \
        f"Error: {tmp_path / 'out'} is not a regular file; choose another path"
    assert tree_hash(tmp_path) == before


def test_cli_plot_must_be_a_regular_file(clusters, tmp_path, tree_hash):
    pytest.importorskip("matplotlib")
    (tmp_path / "out.png").symlink_to("/dev/null")
    before = tree_hash(tmp_path)
    assert error_of(run("eval", clusters, *FAST, "--plot", tmp_path / "out.png")) == \
        f"Error: {tmp_path / 'out.png'} is not a regular file; choose another path"
    assert tree_hash(tmp_path) == before


def test_cli_errors(clusters, text_subset, tmp_path, write_jsonl, vector_docs):
    assert error_of(run("eval", clusters, "--methods", "itq,sh", "-q")) == \
        "Error: unknown method 'sh'; choose from: ae, itq, pca, lsh, rank"
    assert error_of(run("eval", clusters, "--bits", "16,12", "-q")) == \
        "Error: bits must be a positive multiple of 8 (8, 16, 32, 64, ...), got 12"
    assert error_of(run("eval", clusters, "--bits", "sixteen", "-q")) == \
        "Error: bits must be comma-separated multiples of 8 (e.g. 16,32,64), got 'sixteen'"
    assert error_of(run("eval", clusters, *FAST, "--query-count", 400)) == (
        f"Error: --query-count 400 is not smaller than the corpus (400 records in {clusters}): leave some records "
        f"for the database, or give separate queries with --queries FILE")
    assert error_of(run("eval", clusters, *FAST)) == (  # the default query count, 1000, on 400 records
        f"Error: --query-count 1000 is not smaller than the corpus (400 records in {clusters}): leave some records "
        f"for the database, or give separate queries with --queries FILE")
    assert error_of(run("eval", clusters, *FAST, "--query-count", 0)) == "Error: --query-count must be at least 1, got 0"
    db, queries = text_subset
    assert error_of(run("eval", db, *FAST, "--queries", queries, "--query-count", 10)) == \
        "Error: give either --queries FILE or --query-count N, not both"
    unlabelled = write_jsonl(tmp_path / "nolabels.jsonl", [{"id": d["id"], "vector": d["vector"]}
                                                           for d in vector_docs(n=50, dim=4)])
    assert error_of(run("eval", unlabelled, *FAST, "--query-count", 10)) == (
        f"Error: {unlabelled}: 50 of 50 records have no label (the first: id 'v0'); evaluation needs a 'label' "
        f"(or 'labels') on every record")
    assert error_of(run("eval", clusters, *FAST, "--queries", unlabelled)) == (
        f"Error: {unlabelled}: 50 of 50 records have no label (the first: id 'v0'); evaluation needs a 'label' "
        f"(or 'labels') on every record")
    assert error_of(run("eval", clusters, *FAST, "--query-count", 10, "-k", 0)) == "Error: -k must be at least 1, got 0"
    assert error_of(run("eval", clusters, *FAST, "--query-count", 10, "--neighbour-k", -1)) == \
        "Error: --neighbour-k must be 0 (none) or a positive count, got -1"
