"""The indexer: batches through the model into the store (one change each), counts, empty feature rows."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from semhash.corpus import Corpus
from semhash.errors import ModelError
from semhash.indexer import check_corpus, empty_rows, index_corpus, write_batch
from semhash.store import Store, sqlite_url


def test_empty_rows_dense_and_sparse():
    dense = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0], [2, 0, 0]], np.float32)
    assert empty_rows(dense) == 2
    assert empty_rows(sp.csr_matrix(dense)) == 2
    assert empty_rows(np.zeros((0, 3))) == 0


@pytest.fixture(scope="module")
def model_and_docs(vector_docs, fit_tiny_model, tmp_path_factory, write_jsonl):
    docs = vector_docs(60, seed=4)
    path = write_jsonl(tmp_path_factory.mktemp("ix") / "docs.jsonl", docs)
    return fit_tiny_model(path, bits=16), docs


def test_index_corpus_counts_and_one_store_change_per_batch(model_and_docs, tmp_path, write_jsonl):
    model, docs = model_and_docs
    zero = [{"id": f"z{i}", "vector": [0.0] * len(docs[0]["vector"])} for i in range(3)]
    path = write_jsonl(tmp_path / "c.jsonl", docs[:40] + zero)
    store = Store(sqlite_url(tmp_path / "s.db"), 16)
    stats = index_corpus(model, store, Corpus(path, batch_size=7), progress=False)
    assert not np.asarray(model.features(Corpus(path).read_all()))[40:].any()  # zero vectors stay zero rows
    assert (stats.added, stats.replaced, stats.empty) == (43, 0, 3)
    assert stats.version == store.version() == 7  # 43 records in batches of 7: seven transactions
    again, result, codes = write_batch(model, store, Corpus(path).read_all())
    assert (again.added, again.replaced, again.version) == (0, 43, 8)
    assert result.replaced.all() and np.array_equal(codes, model.encode(Corpus(path).read_all()))
    row_ids, stored = store.all_codes()
    assert store.count() == 43 and np.array_equal(row_ids, np.arange(43))
    assert np.array_equal(stored, codes)  # row ids follow the corpus order
    store.close()


def test_check_corpus_refuses_vectors_of_another_width(model_and_docs, tmp_path, write_jsonl):
    model, docs = model_and_docs
    path = write_jsonl(tmp_path / "w.jsonl", [{"id": "a", "vector": [1.0, 2.0]}])
    with pytest.raises(ModelError, match="dimensions but the model was trained on"):
        check_corpus(model, Corpus(path))
