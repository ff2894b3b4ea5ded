"""The index directory on disk: its typed manifest, its creation, and opening its store.

    semhash-index/
      manifest.json  format, bits, kind, hasher, the model's checksum, store URL and namespace, the
                     kept-features layout, package versions: written once, when the index is created
      model/         the model that encoded the items (a query is encoded by the same one)
      items.db       the SQLite store, in WAL mode (absent when the manifest names another database URL)

Everything that changes lives in the store of record and changes by transactions: items, kept
features, and the change log that readers catch up from (semhash.store). A new index is built in a
temporary sibling and renamed into place (fsutil.atomic_directory), so a directory with a manifest is
always a complete index; after that nothing in the directory is rewritten, and a crash at any
moment leaves the store as of its last commit.

Format 1 (semhash before the live index) also wrote faiss.index, a features/ folder and counts in the
manifest; such an index opens, and its first update upgrades the manifest (`upgrade`).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import IndexError_
from .fsutil import INDEX, MANIFEST, atomic_file, read_manifest
from .store import Store, sqlite_url

INDEX_FORMAT = 2
SQLITE_FILE = "items.db"
MODEL_DIR = "model"
DEFAULT_NAMESPACE = "semhash"


@dataclass
class IndexManifest:
    """What an index directory's manifest.json says, parsed once and checked."""

    bits: int
    kind: str
    model_checksum: str | None
    hasher: str | None = None
    db_url: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    features: dict | None = None  # the kept-features layout (keptfeatures.new_meta), None: none kept
    created: str = ""
    versions: dict = field(default_factory=dict)
    format: int = INDEX_FORMAT

    @classmethod
    def read(cls, directory: Path) -> "IndexManifest":
        path = Path(directory) / MANIFEST
        if not path.is_file():
            raise IndexError_(f"{directory} is not a semhash index (no {MANIFEST}); create one with "
                              f"`semhash index CORPUS -o {directory}`")
        info = read_manifest(path, INDEX)
        if info["format"] > INDEX_FORMAT:
            raise IndexError_(f"{directory} was written by a newer semhash (index format {info['format']}); "
                              "upgrade semhash to open it")
        kind = info.get("kind")
        return cls(bits=info["bits"], kind=kind if isinstance(kind, str) else "", model_checksum=info["model_checksum"],
                   hasher=info.get("hasher") if isinstance(info.get("hasher"), str) else None,
                   db_url=info["db_url"], namespace=info["namespace"], features=info["features"],
                   created=str(info.get("created", "")),
                   versions=info["versions"] if isinstance(info.get("versions"), dict) else {},
                   format=info["format"])

    def write(self, directory: Path, replace: bool = False) -> None:
        """Write manifest.json atomically (a new index's, or with `replace` an upgrade of an old one)."""
        if not self.created:
            self.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with atomic_file(Path(directory) / MANIFEST, replace=replace) as fh:
            fh.write((json.dumps(asdict(self), indent=2) + "\n").encode())

    def store_url(self, directory: Path) -> str:
        return self.db_url or sqlite_url(Path(directory) / SQLITE_FILE)

    def open_store(self, directory: Path, create: bool = False) -> Store:
        """The store of record this manifest names (its SQLite file lives in `directory`)."""
        return Store(self.store_url(directory), self.bits, namespace=self.namespace, create=create)


def upgrade(directory: Path, manifest: IndexManifest) -> IndexManifest:
    """Bring a format-1 index directory to the current format before its first update: the manifest is
    rewritten, and faiss.index (which format 2 does not keep) is removed. One that keeps features (in
    files this semhash does not read) is refused: it has to be indexed again."""
    if manifest.format >= INDEX_FORMAT:
        return manifest
    if manifest.features:
        raise IndexError_(f"the index at {directory} keeps features in the layout of an older semhash; index the "
                          f"corpus again into a new directory (-o NEW_DIR), with --keep-features to re-rank")
    new = IndexManifest(**{**asdict(manifest), "format": INDEX_FORMAT, "features": None})
    new.write(directory, replace=True)
    old = Path(directory) / "faiss.index"
    if old.is_file() and not old.is_symlink():
        os.unlink(old)
    return new
