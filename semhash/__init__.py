"""semhash: semantic hashing retrieval with a binary autoencoder, a SQL hash table and Hamming-ball search."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import SemhashError  # noqa: E402

__all__ = ["SemhashError", "__version__"]
