"""A trained encoder: the featurizer and the hasher together, saved as one directory.

    model-dir/
      manifest.json    format version, kind, hasher settings, training history, checksum, versions
      featurizer/      vocabulary + IDF (text) or width + standardization (vectors)
      hasher/          the hasher's state (for the autoencoder: model.pt, a state dict + config)
"""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import scipy.sparse as sp

from . import __version__
from .codes import to_hex
from .corpus import Batch, Corpus
from .errors import ModelError
from .features import Featurizer, featurizer_for, fit_features, load_featurizer
from .fsutil import MODEL, atomic_directory, directory_checksum, read_manifest
from .hashers import hasher_class
from .hashers.base import Hasher

MODEL_FORMAT = 1
MANIFEST = "manifest.json"


def package_versions() -> dict:
    """Versions of the packages whose behaviour a saved model depends on."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "semhash": __version__}
    for name in ("torch", "numpy", "scikit-learn", "faiss-cpu", "sqlalchemy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


@dataclass
class Model:
    """Featurizer + hasher: turns records into packed binary codes."""

    featurizer: Featurizer
    hasher: Hasher
    info: dict = field(default_factory=dict)  # the manifest once saved or loaded

    @property
    def bits(self) -> int:
        return self.hasher.bits

    @property
    def kind(self) -> str:
        return self.featurizer.kind

    @property
    def checksum(self) -> str | None:
        return self.info.get("checksum")

    @classmethod
    def fit(cls, data: Batch, hasher: Hasher, feature_options: dict | None = None,
            progress: bool = True) -> "Model":
        """Fit a featurizer to the batch, then the hasher to its features."""
        featurizer = featurizer_for(data.kind, **(feature_options or {}))
        if hasattr(featurizer, "progress"):  # embedding a large sample takes minutes: show it
            featurizer.progress = progress
        X = fit_features(featurizer, data)
        if hasattr(featurizer, "progress"):
            featurizer.progress = False
        hasher.fit(X, output_type=featurizer.output_type, progress=progress)
        return cls(featurizer, hasher, {"trained_on": len(data)})

    def features(self, batch: Batch):
        return self.featurizer.transform(batch)

    def encode(self, batch: Batch) -> np.ndarray:
        """(n, bits // 8) uint8 packed codes for a batch of records."""
        return self.hasher.encode(self.featurizer.transform(batch))

    def empty_code(self) -> np.ndarray:
        """The (1, bits // 8) code of an all-zero feature row: where every text with no word of the
        vocabulary, or every zero vector, lands."""
        dim = self.featurizer.dim
        sparse = getattr(self.featurizer, "sparse", False)
        zero = sp.csr_matrix((1, dim), dtype=np.float32) if sparse else np.zeros((1, dim), np.float32)
        return self.hasher.encode(zero)

    def logits(self, batch: Batch) -> np.ndarray:
        """(n, bits) per-bit code scores; their sign is the code."""
        return self.hasher.logits(self.featurizer.transform(batch))

    def encode_corpus(self, corpus: Corpus) -> Iterator[tuple[Batch, np.ndarray]]:
        """Stream (batch, codes) over a corpus."""
        for batch in corpus.batches():
            yield batch, self.encode(batch)

    def check_kind(self, batch: Batch, source: str = "the input") -> None:
        if batch.kind != self.kind:
            raise ModelError(f"{source} holds {batch.kind}s but the model was trained on {self.kind}s")

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write the model atomically; returns the directory. An existing model there is replaced only with
        `overwrite`; anything else there is never replaced (see `fsutil.check_target`)."""
        directory = Path(directory)
        with atomic_directory(directory, MODEL, replace=overwrite) as tmp:
            (tmp / "featurizer").mkdir()
            (tmp / "hasher").mkdir()
            self.featurizer.save(tmp / "featurizer")
            self.hasher.save(tmp / "hasher")
            info = dict(self.info)
            info.update(
                format=MODEL_FORMAT, kind=self.kind, bits=self.bits, hasher=self.hasher.describe(),
                feature_dim=self.featurizer.dim, output_type=self.featurizer.output_type,
                history=getattr(self.hasher, "history", {}), versions=package_versions(),
                checksum=directory_checksum(tmp, skip=(MANIFEST,)),
            )
            (tmp / MANIFEST).write_text(json.dumps(info, indent=2, default=str) + "\n")
        self.info = info
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Model":
        """Load a model saved by `save`, checking its format and checksum."""
        directory = Path(directory)
        manifest = directory / MANIFEST
        if not manifest.is_file():
            raise ModelError(f"{directory} is not a semhash model directory (no {MANIFEST}); "
                             "train one with `semhash train CORPUS -o DIR`")
        info = read_manifest(manifest, MODEL)
        if info["format"] > MODEL_FORMAT:
            raise ModelError(f"{directory} was written by a newer semhash (model format {info.get('format')}); "
                             "upgrade semhash to read it")
        if directory_checksum(directory, skip=(MANIFEST,)) != info.get("checksum"):
            raise ModelError(f"the files in {directory} do not match its manifest's checksum; "
                             "the model is damaged: train it again")
        featurizer = load_featurizer(directory / "featurizer")
        hasher = hasher_class(info["hasher"]["name"]).load(directory / "hasher")
        return cls(featurizer, hasher, info)


def code_records(batch: Batch, codes: np.ndarray) -> Iterator[dict]:
    """{"id", "code"} dicts, the code as hex, for JSON output."""
    for rid, code in zip(batch.ids, to_hex(codes)):
        yield {"id": rid, "code": code}
