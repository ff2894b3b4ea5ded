"""semhash.features: the text (TF-IDF / counts) and dense featurizers, and their save/load."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from semhash.corpus import Batch
from semhash.errors import ConfigError, CorpusError, ModelError
from semhash.features import DenseFeaturizer, TextFeaturizer, featurizer_for, load_featurizer


def text_batch(texts):
    texts = list(texts)
    return Batch(ids=[str(i) for i in range(len(texts))], texts=list(texts))


def vector_batch(x):
    x = np.asarray(x, dtype=np.float32)
    return Batch(ids=[str(i) for i in range(len(x))], vectors=x)


@pytest.fixture
def docs(topic_docs):
    return text_batch(d["text"] for d in topic_docs(60, seed=1))


def vocabulary(f: TextFeaturizer) -> set[str]:
    return set(f._vec.vocabulary_)


# --- text --------------------------------------------------------------------------------------

def test_text_fit_transform_shape_and_sparsity(docs):
    f = TextFeaturizer().fit(docs)
    X = f.transform(docs)
    assert sp.issparse(X) and X.format == "csr"
    assert X.dtype == np.float32
    assert X.shape == (60, f.dim)
    assert f.dim == 30  # the three topics' 10 words each; none is in more than half of the documents
    assert X.nnz <= 60 * 8  # at most one entry per word of a document
    assert X.nnz < 0.5 * X.shape[0] * X.shape[1]
    assert (X.data > 0).all()
    # a document only has weight on its own topic's words
    vocab = f._vec.vocabulary_
    row = X[0].toarray().ravel()
    words = set(docs.texts[0].split())
    assert {t for t, j in vocab.items() if row[j] > 0} == words
    # TF-IDF rows are L2-normalized
    assert np.allclose(np.sqrt(X.multiply(X).sum(axis=1)).A.ravel(), 1.0, atol=1e-5)
    assert f.output_type == "distribution" and f.kind == "text"


def test_text_max_features_and_stop_words():
    b = text_batch(["the cat sat on the mat", "a dog and a cat", "the dog barked loudly"])
    f = TextFeaturizer(max_features=2).fit(b)
    assert f.dim == 2
    assert vocabulary(f) == {"cat", "dog"}  # the two most frequent non-stop words
    assert "the" not in vocabulary(TextFeaturizer().fit(b))
    assert "the" in vocabulary(TextFeaturizer(stop_words=None).fit(b))


def test_token_pattern_drops_numbers_and_single_letters():
    f = TextFeaturizer().fit(text_batch(["x 42 h2o 3d model-x", "apple b 2024"]))
    assert vocabulary(f) == {"h2o", "model-x", "apple"}


def _many_docs(n):
    # "common" is everywhere (dropped by max_df once n >= 20), "rare" is in one document only
    rng = np.random.default_rng(3)
    words = "alpha beta gamma delta epsilon zeta eta theta".split()
    texts = [" ".join(rng.choice(words, 3)) + " common" for _ in range(n)]
    texts[0] += " rare"
    return text_batch(texts)


def test_min_df_default_depends_on_corpus_size():
    small, large = _many_docs(50), _many_docs(120)
    assert "rare" in vocabulary(TextFeaturizer().fit(small))      # min_df 1 under 100 documents
    assert "rare" not in vocabulary(TextFeaturizer().fit(large))  # min_df 2 from 100 documents
    assert "rare" not in vocabulary(TextFeaturizer(min_df=2).fit(small))
    assert "rare" in vocabulary(TextFeaturizer(min_df=1).fit(large))
    assert "common" not in vocabulary(TextFeaturizer().fit(small))  # max_df 0.5


def test_max_df_ignored_for_tiny_corpora():
    b = text_batch(["shared word one", "shared word two", "shared other"])
    assert "shared" in vocabulary(TextFeaturizer().fit(b))


@pytest.mark.parametrize("weighting", ["tfidf", "count"])
def test_text_save_load_identical(tmp_path, docs, weighting):
    f = TextFeaturizer(weighting=weighting, max_features=20).fit(docs)
    f.save(tmp_path)
    g = load_featurizer(tmp_path)
    assert isinstance(g, TextFeaturizer)
    assert g.params == f.params
    assert g.dim == f.dim == 20
    queries = text_batch(docs.texts[:10] + ["rocket recipe unknownword", "nothing known here"])
    A, B = f.transform(queries), g.transform(queries)
    assert A.dtype == B.dtype == np.float32
    assert A.shape == B.shape
    assert (A != B).nnz == 0
    assert A.nnz > 0
    if weighting == "count":
        assert set(A.data.tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}  # raw counts
    (tmp_path / "again").mkdir()
    g.save(tmp_path / "again")  # a loaded featurizer can be saved again
    assert (load_featurizer(tmp_path / "again").transform(queries) != A).nnz == 0


@pytest.mark.parametrize("weighting", ["tfidf", "count"])
def test_text_fit_transform_is_fit_then_transform(tmp_path, docs, weighting):
    f = TextFeaturizer(weighting=weighting, max_features=20)
    X = f.fit_transform(docs)
    want = TextFeaturizer(weighting=weighting, max_features=20).fit(docs).transform(docs)
    assert X.dtype == want.dtype == np.float32 and X.shape == want.shape
    assert abs(X - want).max() < 1e-6
    f.save(tmp_path)  # the same fitted state as fit: it saves, and a loaded copy gives the same rows
    assert abs(load_featurizer(tmp_path).transform(docs) - X).max() < 1e-6


def test_text_without_usable_words():
    for texts in (["123 456", "!!! ???"], ["the and of", "is it"], ["a b c"]):
        with pytest.raises(CorpusError) as e:
            TextFeaturizer().fit(text_batch(texts))
        assert str(e.value).startswith("no usable terms in the corpus (")
        with pytest.raises(CorpusError, match="^no usable terms in the corpus"):
            TextFeaturizer().fit_transform(text_batch(texts))
        assert str(e.value).endswith("); the texts need real words")


def test_text_featurizer_errors():
    with pytest.raises(ConfigError, match="weighting must be 'tfidf' or 'count', got 'bm25'"):
        TextFeaturizer(weighting="bm25")
    with pytest.raises(ConfigError, match="max_features must be at least 1, got 0"):
        TextFeaturizer(max_features=0)
    with pytest.raises(ModelError, match="not fitted"):
        TextFeaturizer().dim
    with pytest.raises(ModelError, match="not fitted"):
        TextFeaturizer().transform(text_batch(["x"]))
    with pytest.raises(CorpusError, match="needs a corpus of texts, got vectors"):
        TextFeaturizer().fit(vector_batch([[1.0, 2.0]]))
    f = TextFeaturizer().fit(text_batch(["hello world"]))
    with pytest.raises(ModelError, match="trained on texts, but the input holds vectors"):
        f.transform(vector_batch([[1.0, 2.0]]))


# --- dense -------------------------------------------------------------------------------------

def test_dense_unit_for_data_in_0_1():
    x = np.random.default_rng(0).random((20, 6))
    x[0, 0], x[1, 1] = 0.0, 1.0
    f = DenseFeaturizer().fit(vector_batch(x))
    assert f.output_type == "unit" and f.dim == 6 and f.kind == "vector"
    out = f.transform(vector_batch(x))
    assert out.dtype == np.float32 and np.array_equal(out, x.astype(np.float32))
    # later data outside [0, 1] is clipped to the range the decoder was fitted to
    clipped = f.transform(vector_batch([[-1, 0.5, 2, 1, 0, 0.25]]))
    assert clipped.tolist() == [[0.0, 0.5, 1.0, 1.0, 0.0, 0.25]]


@pytest.mark.parametrize("lo,hi", [(-0.01, 1.0), (0.0, 1.01), (-3, 3)])
def test_dense_real_otherwise(lo, hi):
    x = np.random.default_rng(1).uniform(lo, hi, (30, 4))
    x[0, 0], x[0, 1] = lo, hi
    f = DenseFeaturizer().fit(vector_batch(x))
    assert f.output_type == "real"
    assert np.array_equal(f.transform(vector_batch(x)), x.astype(np.float32))  # passed through


def test_dense_standardize():
    rng = np.random.default_rng(2)
    x = rng.normal(loc=[5, -3, 0, 100], scale=[2, 0.5, 1, 10], size=(200, 4))
    x[:, 2] = 0.5  # a constant column must not divide by zero
    f = DenseFeaturizer(standardize=True).fit(vector_batch(x))
    assert f.output_type == "real"
    z = f.transform(vector_batch(x))
    assert np.isfinite(z).all()
    assert np.allclose(z.mean(axis=0), 0, atol=1e-3)
    assert np.allclose(z[:, [0, 1, 3]].std(axis=0), 1, atol=1e-3)
    assert np.allclose(z[:, 2], 0)
    # [0, 1] data is still "real" once standardized
    assert DenseFeaturizer(standardize=True).fit(vector_batch(rng.random((10, 3)))).output_type == "real"


def test_dense_width_mismatch():
    f = DenseFeaturizer().fit(vector_batch(np.zeros((3, 4))))
    with pytest.raises(ModelError) as e:
        f.transform(vector_batch(np.zeros((2, 5))))
    msg = str(e.value)
    assert "have 5 dimensions" in msg and "trained on 4" in msg
    assert msg == ("the input vectors have 5 dimensions but the model was trained on 4; "
                   "encode with a model trained on data of this width")


def test_dense_errors():
    with pytest.raises(ModelError, match="not fitted"):
        DenseFeaturizer().dim
    with pytest.raises(CorpusError, match="needs a corpus of vectors, got texts"):
        DenseFeaturizer().fit(text_batch(["a"]))
    f = DenseFeaturizer().fit(vector_batch(np.zeros((2, 2))))
    with pytest.raises(ModelError, match="trained on vectors, but the input holds texts"):
        f.transform(text_batch(["a"]))


@pytest.mark.parametrize("standardize,scale", [(False, 1.0), (False, 7.0), (True, 7.0)])
def test_dense_save_load(tmp_path, standardize, scale):
    x = np.random.default_rng(4).random((25, 5)) * scale
    f = DenseFeaturizer(standardize=standardize).fit(vector_batch(x))
    f.save(tmp_path)
    g = load_featurizer(tmp_path)
    assert isinstance(g, DenseFeaturizer)
    assert (g.dim, g.output_type, g.standardize) == (f.dim, f.output_type, f.standardize)
    q = vector_batch(np.random.default_rng(5).normal(size=(6, 5)) * scale)
    assert np.array_equal(f.transform(q), g.transform(q))
    assert (tmp_path / "standardize.npz").exists() == standardize


def test_featurizer_for():
    t = featurizer_for("text", max_features=50, standardize=True)  # standardize is ignored for text
    assert isinstance(t, TextFeaturizer) and t.params["max_features"] == 50
    d = featurizer_for("vector", max_features=50, standardize=True)
    assert isinstance(d, DenseFeaturizer) and d.standardize


def test_load_featurizer_errors(tmp_path):
    with pytest.raises(ModelError, match="cannot load the featurizer from"):
        load_featurizer(tmp_path)
    (tmp_path / "featurizer.json").write_text('{"type": "image"}')
    with pytest.raises(ModelError, match="cannot load the featurizer from"):
        load_featurizer(tmp_path)
    (tmp_path / "featurizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot load the featurizer from"):
        load_featurizer(tmp_path)
