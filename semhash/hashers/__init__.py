"""Hashers: every way of turning feature rows into binary codes, behind one interface."""
from __future__ import annotations

from .base import Hasher


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


HASHERS = ("ae", "itq", "pca", "lsh", "rank")  # the autoencoder, the baselines (baselines.py), ITQ fine-tuned (ranking.py)

__all__ = ["Hasher", "hasher_class", "HASHERS"]
