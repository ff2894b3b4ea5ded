"""Hashers: every way of turning feature rows into binary codes, behind one interface."""
from __future__ import annotations

from .base import Hasher


def hasher_class(name: str) -> type[Hasher]:
    """The Hasher class registered under `name` (imported lazily: torch only when needed)."""
    from ..errors import ConfigError

    if name == "ae":
        from .ae import AutoencoderHasher
        return AutoencoderHasher
    raise ConfigError(f"unknown hasher {name!r}; choose one of: {', '.join(HASHERS)}")


HASHERS = ("ae",)

__all__ = ["Hasher", "hasher_class", "HASHERS"]
