"""Featurizers: text -> sparse TF-IDF (or counts) over a fitted vocabulary; dense vectors as given.

A featurizer is fitted once on the training corpus, saved beside the model, and applied the same
way to everything encoded later. `output_type` tells the autoencoder which reconstruction loss
fits the features: "distribution" (non-negative term weights: softmax cross-entropy), "unit"
(values in [0, 1]: binary cross-entropy) or "real" (squared error).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from typing import TYPE_CHECKING

from .corpus import Batch
from .errors import ConfigError, CorpusError, ModelError

if TYPE_CHECKING:  # scikit-learn is imported when a text featurizer is made (it takes a second to import)
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

FEATURIZER_FILE = "featurizer.json"


class TextFeaturizer:
    """Bag of words over the most frequent useful terms, weighted by TF-IDF (default) or raw counts."""

    kind = "text"
    output_type = "distribution"
    sparse = True

    def __init__(self, max_features: int = 10000, min_df: int | None = None, max_df: float = 0.5,
                 weighting: str = "tfidf", stop_words: str | None = "english"):
        if weighting not in ("tfidf", "count"):
            raise ConfigError(f"weighting must be 'tfidf' or 'count', got {weighting!r}")
        if max_features < 1:
            raise ConfigError(f"max_features must be at least 1, got {max_features}")
        self.params = dict(max_features=max_features, min_df=min_df, max_df=max_df,
                           weighting=weighting, stop_words=stop_words)
        self._vec: TfidfVectorizer | CountVectorizer | None = None

    def _make(self, min_df: int, max_df: float, vocabulary=None):
        from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

        p = self.params
        common = dict(lowercase=True, stop_words=p["stop_words"], min_df=min_df, max_df=max_df,
                      max_features=None if vocabulary is not None else p["max_features"],
                      vocabulary=vocabulary, dtype=np.float32, token_pattern=r"(?u)\b[^\W\d_][\w-]*\w\b")
        if p["weighting"] == "tfidf":
            return TfidfVectorizer(sublinear_tf=True, **common)
        return CountVectorizer(**common)

    @property
    def dim(self) -> int:
        self._check_fitted()
        return len(self._vec.vocabulary_)

    def fit(self, batch: Batch) -> "TextFeaturizer":
        """Learn the vocabulary (and IDF weights) from the texts of a batch."""
        self._fit(batch, keep=False)
        return self

    def fit_transform(self, batch: Batch) -> sp.csr_matrix:
        """fit, then transform of the same batch, tokenizing its texts once (half the time of the two)."""
        return self._fit(batch, keep=True)

    def _fit(self, batch: Batch, keep: bool) -> sp.csr_matrix | None:
        if batch.texts is None:
            raise CorpusError("the text featurizer needs a corpus of texts, got vectors")
        n = len(batch.texts)
        min_df = self.params["min_df"] if self.params["min_df"] is not None else (2 if n >= 100 else 1)
        # max_df as a fraction only makes sense with enough documents to judge frequency
        max_df = self.params["max_df"] if n >= 20 else 1.0
        self._vec = self._make(min_df, max_df)
        try:
            if not keep:
                self._vec.fit(batch.texts)
                return None
            return sp.csr_matrix(self._vec.fit_transform(batch.texts), dtype=np.float32)
        except ValueError as e:
            self._vec = None
            raise CorpusError(f"no usable terms in the corpus ({e}); the texts need real words") from None

    def transform(self, batch: Batch) -> sp.csr_matrix:
        """(n, dim) float32 sparse matrix."""
        self._check_fitted()
        if batch.texts is None:
            raise ModelError("this model was trained on texts, but the input holds vectors")
        return sp.csr_matrix(self._vec.transform(batch.texts), dtype=np.float32)

    def _check_fitted(self) -> None:
        if self._vec is None:
            raise ModelError("the featurizer is not fitted yet")

    def save(self, directory: Path) -> None:
        self._check_fitted()
        vocab = sorted(self._vec.vocabulary_, key=self._vec.vocabulary_.get)
        state = {"type": "text", "params": self.params, "vocabulary": vocab}
        (directory / FEATURIZER_FILE).write_text(json.dumps(state))
        if self.params["weighting"] == "tfidf":
            np.save(directory / "idf.npy", self._vec.idf_.astype(np.float64))

    @classmethod
    def _load(cls, directory: Path, state: dict) -> "TextFeaturizer":
        f = cls(**state["params"])
        f._vec = f._make(1, 1.0, vocabulary={t: i for i, t in enumerate(state["vocabulary"])})
        f._vec._validate_vocabulary()  # sets vocabulary_ now (dim, save), not at the first transform
        if f.params["weighting"] == "tfidf":
            f._vec.idf_ = np.load(directory / "idf.npy")
        return f


class DenseFeaturizer:
    """Dense vectors pass through, optionally standardized (zero mean, unit variance per dimension)."""

    kind = "vector"

    def __init__(self, standardize: bool = False):
        self.standardize = standardize
        self.dim_: int | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.output_type = "real"

    @property
    def dim(self) -> int:
        if self.dim_ is None:
            raise ModelError("the featurizer is not fitted yet")
        return self.dim_

    def fit(self, batch: Batch) -> "DenseFeaturizer":
        """Record the width and, when standardizing, the per-dimension mean and spread."""
        if batch.vectors is None:
            raise CorpusError("the vector featurizer needs a corpus of vectors, got texts")
        x = batch.vectors
        self.dim_ = x.shape[1]
        if self.standardize:
            self.mean = x.mean(axis=0).astype(np.float32)
            self.std = np.maximum(x.std(axis=0), 1e-6).astype(np.float32)
            self.output_type = "real"
        else:
            self.output_type = "unit" if (x.min() >= 0.0 and x.max() <= 1.0) else "real"
        return self

    def transform(self, batch: Batch) -> np.ndarray:
        """(n, dim) float32 array."""
        if batch.vectors is None:
            raise ModelError("this model was trained on vectors, but the input holds texts")
        x = np.asarray(batch.vectors, dtype=np.float32)
        if x.shape[1] != self.dim:
            raise ModelError(f"the input vectors have {x.shape[1]} dimensions but the model was "
                             f"trained on {self.dim}; encode with a model trained on data of this width")
        if self.standardize:
            x = (x - self.mean) / self.std
        elif self.output_type == "unit":
            x = np.clip(x, np.float32(0), np.float32(1))  # the sigmoid decoder was fitted to [0, 1]
        return x

    def save(self, directory: Path) -> None:
        state = {"type": "vector", "standardize": self.standardize, "dim": self.dim,
                 "output_type": self.output_type}
        (directory / FEATURIZER_FILE).write_text(json.dumps(state))
        if self.standardize:
            np.savez(directory / "standardize.npz", mean=self.mean, std=self.std)

    @classmethod
    def _load(cls, directory: Path, state: dict) -> "DenseFeaturizer":
        f = cls(standardize=state["standardize"])
        f.dim_, f.output_type = state["dim"], state["output_type"]
        if f.standardize:
            with np.load(directory / "standardize.npz") as z:
                f.mean, f.std = z["mean"], z["std"]
        return f


Featurizer = TextFeaturizer | DenseFeaturizer


def fit_features(featurizer, batch: Batch):
    """Fit the featurizer to the batch and return the batch's features, in one pass where the featurizer
    has one (texts: tokenized once, about half the time of fit then transform)."""
    if hasattr(featurizer, "fit_transform"):
        return featurizer.fit_transform(batch)
    return featurizer.fit(batch).transform(batch)


def featurizer_for(kind: str, **options) -> Featurizer:
    """The featurizer for a corpus kind ("text" or "vector"); for texts, `featurizer` "tfidf" (default) or
    "embed:MODEL" (sentence embeddings, semhash.embedding)."""
    name = options.pop("featurizer", None) or "tfidf"
    if name.startswith("embed:"):
        if kind != "text":
            raise ConfigError(f"--featurizer {name} embeds texts, but the corpus holds vectors")
        from .embedding import EmbeddingFeaturizer
        return EmbeddingFeaturizer(name[len("embed:"):])
    if name != "tfidf":
        raise ConfigError(f"--featurizer must be tfidf or embed:MODEL, got {name!r}")
    if kind == "text":
        return TextFeaturizer(**{k: v for k, v in options.items() if k != "standardize"})
    return DenseFeaturizer(standardize=bool(options.get("standardize", False)))


def load_featurizer(directory: str | Path) -> Featurizer:
    """Load a featurizer saved by `save`."""
    directory = Path(directory)
    try:
        state = json.loads((directory / FEATURIZER_FILE).read_text())
        if state["type"] == "embed":
            from .embedding import EmbeddingFeaturizer as cls
        else:
            cls = {"text": TextFeaturizer, "vector": DenseFeaturizer}[state["type"]]
        return cls._load(directory, state)
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as e:  # a missing, extra or mistyped field
        raise ModelError(f"cannot load the featurizer from {directory} ({e})") from None
