"""Hashers: every way of turning feature rows into binary codes, behind one interface.

Importing this package costs nothing (the CLI reads HASHERS for its --help): the Hasher base class
(numpy, scipy) and each hasher (torch for some) load when first asked for."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Hasher

HASHERS = ("ae", "itq", "pca", "lsh", "rank")  # the autoencoder, the baselines (baselines.py), ITQ fine-tuned (ranking.py)


def hasher_class(name: str) -> type[Hasher]:
    """The Hasher class registered under `name` (imported lazily: torch only when needed)."""
    from ..errors import ConfigError

    if name == "ae":
        from .ae import AutoencoderHasher
        return AutoencoderHasher
    if name == "rank":
        from .ranking import RankHasher
        return RankHasher
    if name in ("lsh", "pca", "itq"):
        from .baselines import ITQHasher, LSHHasher, PCAHasher
        return {"lsh": LSHHasher, "pca": PCAHasher, "itq": ITQHasher}[name]
    raise ConfigError(f"unknown hasher {name!r}; choose one of: {', '.join(HASHERS)}")


def __getattr__(name: str):
    if name == "Hasher":  # `from semhash.hashers import Hasher` still works, loaded on first use
        from .base import Hasher as base_class
        return base_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Hasher", "hasher_class", "HASHERS"]
