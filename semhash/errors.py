"""Project errors. Each message says what is wrong and, where it can, how to fix it."""
from __future__ import annotations


class SemhashError(Exception):
    """Base class for every error semhash raises on purpose (bad input, bad state)."""


class CorpusError(SemhashError):
    """A corpus or query file that cannot be read: names the file and, where known, the line."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.path, self.line, self.reason = path, line, message
        where = ""
        if path is not None:
            where = f"{path}, line {line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class ConfigError(SemhashError):
    """An option or setting out of range."""


class ModelError(SemhashError):
    """A model directory that is missing, corrupt, or does not fit the data."""


class IndexError_(SemhashError):
    """An index directory that is missing, corrupt, or inconsistent."""


class StoreError(SemhashError):
    """The SQL store cannot be reached or holds something unexpected."""
