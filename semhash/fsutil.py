"""Safe writes: directories built in a temporary sibling and renamed into place, files replaced atomically,
and a guard that refuses to replace anything semhash did not write.

A model or index directory may be written only where nothing exists, where an empty directory (not the
current one) stands, or where a semhash directory of the same kind stands (and then only when the caller
allows replacing it; an index update always does). Everything else (an unrelated directory, the current
directory, a file, a symlink, a device node, a FIFO) is refused before anything is touched.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import IndexError_, ModelError, SemhashError

MODEL, INDEX = "model", "index"
MANIFEST = "manifest.json"
# every top-level name semhash (or SQLite, beside items.db) writes into a directory of each kind
_ENTRIES = {
    MODEL: {MANIFEST, "featurizer", "hasher"},
    INDEX: {MANIFEST, "model", "items.db", "items.db-journal", "items.db-wal", "items.db-shm", "faiss.index",
            "features"},
}
_ERRORS = {MODEL: ModelError, INDEX: IndexError_}


# the manifest fields semhash reads, with the JSON types each may have (None: null allowed)
MANIFEST_FIELDS = {
    MODEL: {"format": (int,), "checksum": (str,), "hasher": (dict,), "kind": (str,)},
    INDEX: {"format": (int,), "bits": (int,), "model_checksum": (str, type(None)), "db_url": (str, type(None)),
            "namespace": (str,), "features": (dict, type(None))},
}


def read_manifest(path: Path, kind: str) -> dict:
    """A model's or an index's manifest.json, parsed and checked: a JSON object whose fields have the types
    semhash reads. Anything else is the kind's error (ModelError, IndexError_) naming the file and field."""
    error = _ERRORS[kind]
    again = "train it again" if kind == MODEL else "index the corpus again into a new directory"

    def corrupt(why: str):
        return error(f"{path} is corrupt ({why}); the {kind} is damaged: {again}")

    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise corrupt(str(e)[:200] or type(e).__name__) from None
    if not isinstance(info, dict):
        raise corrupt(f"a JSON {type(info).__name__}, not an object")
    for name, types in MANIFEST_FIELDS[kind].items():
        value = info.get(name, ...)
        if value is ... or not isinstance(value, types) or isinstance(value, bool):  # JSON true is no number
            raise corrupt(f"field {name!r}: {'missing' if value is ... else json.dumps(value)[:60]}")
    if kind == MODEL and not isinstance(info["hasher"].get("name"), str):
        raise corrupt("field 'hasher' has no name")
    return info


def directory_kind(path: str | os.PathLike) -> str | None:
    """MODEL or INDEX when `path` is a real directory whose manifest.json is a semhash one, else None."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return None
    try:
        info = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    # identified by its keys; whether their values are sound is read_manifest's to say (as "is corrupt")
    if not isinstance(info, dict) or "format" not in info:
        return None
    if "model_checksum" in info and "bits" in info:
        return INDEX
    if "checksum" in info and "hasher" in info and "kind" in info:
        return MODEL
    return None


def check_target(path: str | os.PathLike, kind: str, replace: bool = False) -> None:
    """Refuse (a ModelError or IndexError_) to write a `kind` directory at `path` unless nothing would be lost:
    `path` is absent, an empty directory other than the current one, or (with `replace`) a semhash `kind`
    directory holding only what semhash writes there."""
    error, shown = _ERRORS[kind], str(path)
    path = Path(os.path.abspath(path))
    if not os.path.lexists(path):
        return
    found = directory_kind(path)
    if found is None:
        if _is_empty_dir(path) and not _is_cwd(path):
            return
        raise error(f"{shown} exists and is not a semhash {kind}; choose another path or remove it")
    if found != kind:
        raise error(f"{shown} is a semhash {found}, not {'an' if kind == INDEX else 'a'} {kind}; "
                    "choose another path or remove it")
    extra = sorted(p.name for p in path.iterdir() if p.name not in _ENTRIES[kind])
    if extra:
        raise error(f"{shown} is a semhash {kind} but also holds {', '.join(extra)}; "
                    "choose another path or move those away")
    if not replace:
        raise error(f"{shown} is an existing semhash {kind}; replace it with --force (overwrite=True in Python) "
                    "or choose another path")


def _is_empty_dir(path: Path) -> bool:
    try:
        return not path.is_symlink() and path.is_dir() and not any(path.iterdir())
    except OSError:
        return False


def _is_cwd(path: Path) -> bool:
    try:
        return os.path.samefile(path, os.getcwd())
    except OSError:
        return False


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, kind: str, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces `target`, on any error it vanishes.

    `check_target(target, kind, replace)` is enforced before the temporary directory is made and again
    just before the swap. A crash at any point leaves either the old `target` or the new one, never a
    half-written one (the swap is two renames; between them the old copy survives as a `.old` sibling).
    Temporary siblings left by dead processes are removed first."""
    check_target(target, kind, replace)
    target = Path(os.path.abspath(target))
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=parent))
    except OSError as e:
        raise SemhashError(f"cannot write to {parent} ({e.strerror}); choose a writable directory") from None
    try:
        yield tmp
        check_target(target, kind, replace)  # a long run may have given something else time to appear there
        old = parent / f".{target.name}.old-{os.getpid()}"
        replacing = os.path.lexists(target)
        if replacing:
            os.rename(target, old)
        os.rename(tmp, target)
        if replacing:  # only what check_target approved is ever removed
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_orphans(target: str | os.PathLike) -> list[Path]:
    """Remove the `.{name}.tmp-{pid}-*` and `.{name}.old-{pid}` siblings of `target` whose process is gone;
    returns them. A `.old` copy is kept while `target` is missing: it is then the only copy."""
    target = Path(os.path.abspath(target))
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:tmp-(\d+)-[a-z0-9_]+|old-(\d+))")
    removed = []
    for entry in target.parent.iterdir():
        m = pattern.fullmatch(entry.name)
        if m is None or entry.is_symlink() or not entry.is_dir() or _alive(int(m[1] or m[2])):
            continue
        if m[2] is not None and not os.path.lexists(target):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or not a pid we can judge: keep its files
    return True


def check_output_file(path: str | os.PathLike, replace: bool = False) -> None:
    """Refuse an output path that exists and is not a regular file (a directory, device, FIFO, symlink), or
    that is an existing file unless `replace` (--force) says it may go."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise SemhashError(f"{path} is not a regular file; choose another path")
    if not replace:
        raise SemhashError(f"{path} exists; choose another path, or replace it with --force")


def check_writable_folder(path: str | os.PathLike) -> None:
    """Refuse an output path whose folder cannot take a new file (missing, read-only, /proc), by making and
    removing a temporary file there: for outputs written only after a long run."""
    parent = Path(os.path.abspath(path)).parent
    try:
        with tempfile.NamedTemporaryFile(prefix=f".{Path(path).name}.probe.", dir=parent):
            pass
    except OSError as e:
        raise SemhashError(f"cannot write to {parent} ({e.strerror}); choose a writable directory") from None


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, replace: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file in `path`'s folder; on success it replaces `path`, on any error it vanishes.

    Only a missing path, or with `replace` a regular file, is written (`check_output_file`)."""
    check_output_file(path, replace)
    target = Path(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as e:
        raise SemhashError(f"cannot write to {target.parent} ({e.strerror}); choose a writable directory") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.chmod(tmp, _file_mode(target))
        check_output_file(path, replace)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _file_mode(target: Path) -> int:
    """The replaced file's permissions, or what a new file gets under the umask (mkstemp makes 0600)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


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
