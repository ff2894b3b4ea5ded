"""semhash: semantic hashing retrieval with a binary autoencoder, a SQL hash table and Hamming-ball search."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import SemhashError  # noqa: E402

__all__ = ["Answer", "Engine", "Hit", "SemhashError", "__version__"]


def __getattr__(name: str):
    # the engine pulls in torch, faiss and SQLAlchemy: import it only when asked for
    if name in ("Engine", "Hit", "Answer"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'semhash' has no attribute {name!r}")
