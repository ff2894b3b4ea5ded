"""Atomic directory writes: build in a temporary sibling, then rename into place."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import SemhashError


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces `target`, on any error it vanishes.

    A crash at any point leaves either the old `target` or the new one, never a half-written one
    (the swap is two renames; between them the old copy survives as a `.old` sibling)."""
    target = Path(target).absolute()
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    except OSError as e:
        raise SemhashError(f"cannot write to {parent} ({e.strerror}); choose a writable directory") from None
    try:
        yield tmp
        old = parent / f".{target.name}.old-{os.getpid()}"
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def directory_checksum(directory: str | os.PathLike, skip: tuple[str, ...] = ()) -> str:
    """sha256 over the names and contents of the files in a directory (recursively, sorted)."""
    root = Path(directory)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in skip:
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()
