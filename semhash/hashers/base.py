"""The Hasher interface: fit on features, encode to packed binary codes, save and load."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..codes import check_bits, pack

Features = np.ndarray | sp.csr_matrix


class Hasher(ABC):
    """Maps feature rows to `bits`-bit codes. Subclasses set `name` and implement the abstract methods."""

    name: str = ""

    def __init__(self, bits: int):
        self.bits = check_bits(bits)

    @abstractmethod
    def fit(self, X: Features, output_type: str = "real", progress: bool = True) -> "Hasher":
        """Learn the hash function from training features."""

    @abstractmethod
    def logits(self, X: Features) -> np.ndarray:
        """(n, bits) float32 real-valued code scores; bit i is 1 where logit i > 0.

        Their magnitude is a per-bit confidence (used for ranking ties in later stages)."""

    def encode(self, X: Features) -> np.ndarray:
        """(n, bits // 8) uint8 packed codes."""
        return pack(self.logits(X) > 0)

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted state into an existing directory."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> "Hasher":
        """Rebuild a hasher saved by `save`."""

    def describe(self) -> dict:
        """Settings worth recording in a manifest."""
        return {"name": self.name, "bits": self.bits}
