"""Engine: train, index, add, remove, query, save and load. Composes the model, store, buckets and FAISS.

An index is one directory:

    semhash-index/
      manifest.json  format, settings, counts, generation, the model's checksum, package versions
      model/         the model that encoded the items (a query is encoded by the same one)
      items.db       the SQLite store (absent when the manifest names another database URL)
      faiss.index    the FAISS binary index

Every change is written to a temporary copy of the directory and renamed into place, so a failed
or interrupted run leaves the previous index intact. With an external database (PostgreSQL) the
store is changed in place: the store records a generation number, and an index whose store was
left mid-change is refused with a pointer to `semhash rebuild`.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .ann import BinaryANN
from .buckets import BucketTable
from .corpus import Batch, Corpus, batch_from_dicts, records_from_strings
from .errors import ConfigError, IndexError_, SemhashError
from .fsutil import atomic_directory, directory_checksum
from .hashers import hasher_class
from .indexer import IndexStats, check_batch, check_corpus, derive, index_corpus, write_batch
from .model import Model, package_versions
from .search import Result, Searcher
from .store import Store, sqlite_url

INDEX_FORMAT = 1
DEFAULT_INDEX_DIR = "semhash-index"
MANIFEST = "manifest.json"
SQLITE_FILE = "items.db"
FAISS_FILE = "faiss.index"


@dataclass
class Hit:
    """One retrieved item: its id, Hamming distance to the query, a score in [0, 1] (1 - distance/bits),
    its payload, and whether it came from the exact FAISS fill beyond the searched radius."""

    id: str
    distance: int
    score: float
    payload: dict = field(default_factory=dict)
    filled: bool = False


@dataclass
class Answer:
    """The hits of one query, with the radius searched completely and the strategy that ran."""

    query_id: str
    searched_radius: int
    strategy: str
    hits: list[Hit]


class Engine:
    """A model plus (once indexed or loaded) an index directory with its store, buckets and FAISS index."""

    def __init__(self, model: Model):
        self.model = model
        self.directory: Path | None = None
        self.manifest: dict = {}
        self.store: Store | None = None
        self.buckets: BucketTable | None = None
        self.ann: BinaryANN | None = None
        self._searcher: Searcher | None = None
        self._fresh: tuple = ()  # (manifest, buckets, ann) of the update being written
        self._model_dir: Path | None = None  # where the model was loaded from (its files keep its checksum)

    # --- construction -------------------------------------------------------------------
    @classmethod
    def train(cls, corpus: str | Path | Batch, bits: int = 32, hasher: str = "ae",
              feature_options: dict | None = None, progress: bool = True, **hasher_options) -> "Engine":
        """Train a model on a corpus (a path or a Batch) and return an engine without an index yet."""
        data = corpus if isinstance(corpus, Batch) else Corpus(corpus).read_all()
        h = hasher_class(hasher)(bits=bits, **hasher_options)
        return cls(Model.fit(data, h, feature_options, progress=progress))

    @classmethod
    def from_model(cls, model_dir: str | Path) -> "Engine":
        engine = cls(Model.load(model_dir))
        engine._model_dir = Path(model_dir).absolute()
        return engine

    # --- indexing -----------------------------------------------------------------------
    def index(self, corpus: str | Path | Corpus, directory: str | Path | None = None, db_url: str | None = None,
              progress: bool = True, namespace: str | None = None) -> IndexStats:
        """Add (or replace, by id) every record of a corpus; creates the index directory if needed.

        `namespace` names the store's tables (default "semhash"), so that several indexes can share one
        database; an existing index keeps its own."""
        source = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
        # bad input (a malformed corpus, the wrong kind or width) fails before anything is touched: an
        # external database is changed in place, and a failure there would leave it needing a rebuild
        total = check_corpus(self.model, source)
        with self._update(directory, db_url, namespace) as store:
            return index_corpus(self.model, store, source, progress=progress, total=total)

    def add(self, records: Batch | list[dict]) -> IndexStats:
        """Add or replace records (a Batch, or dicts with id and text/vector) in the loaded index."""
        batch = records if isinstance(records, Batch) else _batch_from_dicts(records)
        check_batch(self.model, batch, "the records")  # before the store is touched
        with self._update(None, None) as store:
            return write_batch(self.model, store, batch)

    def remove(self, ids: list[str]) -> int:
        """Delete items by id from the store, the buckets and FAISS; returns how many existed."""
        with self._update(None, None) as store:
            removed, _codes = store.delete([str(i) for i in ids])
        return len(removed)

    @contextlib.contextmanager
    def _update(self, directory: str | Path | None, db_url: str | None,
                namespace: str | None = None) -> Iterator[Store]:
        target = Path(directory) if directory is not None else self.directory
        if target is None:
            target = Path(DEFAULT_INDEX_DIR)
        existing = _read_manifest(target) if (target / MANIFEST).exists() else None
        if existing is None and target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise IndexError_(f"{target} exists and is not a semhash index; choose another directory with -o")
        if existing is not None:
            if existing.get("model_checksum") != self.model.checksum:
                raise IndexError_(
                    f"the index at {target} was built with a different model; index into a new directory "
                    f"(-o NEW_DIR), or delete {target} first")
            if db_url is not None and db_url != existing.get("db_url"):
                raise IndexError_(f"the index at {target} uses the database {existing.get('db_url') or 'items.db'}; "
                                  "it cannot be moved to another with --db")
            db_url = existing.get("db_url")
            if namespace is not None and namespace != existing.get("namespace", "semhash"):
                raise IndexError_(f"the index at {target} uses the store namespace "
                                  f"{existing.get('namespace', 'semhash')!r}; it cannot be changed")
            namespace = existing.get("namespace", "semhash")
        namespace = namespace or "semhash"
        previous_store = self.store
        self.close()
        try:
            with self._write(target, existing, db_url, namespace) as store:
                yield store
        except BaseException:
            # the index on disk is unchanged (or, with an external database, left for `semhash rebuild`):
            # keep answering from the previous one (a closed Store reconnects when used)
            if self.store is None:
                self.store = previous_store
            raise
        self._attach(target, *self._fresh)

    @contextlib.contextmanager
    def _write(self, target: Path, existing: dict | None, db_url: str | None, namespace: str) -> Iterator[Store]:
        with atomic_directory(target) as tmp:
            if existing is not None:
                _carry_over(target, tmp)
            else:
                self._write_model(tmp / "model")
            store = Store(db_url or sqlite_url(tmp / SQLITE_FILE), self.model.bits, namespace=namespace)
            try:
                generation = (existing or {}).get("generation", 0) + 1
                # an index owns its namespace from its first finished run, even when all its items are deleted
                if existing is None and db_url is not None and (store.count() or store.get_meta("generation")):
                    raise IndexError_(f"the database {store.masked_url()} already holds a semhash index "
                                      f"(namespace {namespace!r}); use an empty database or another namespace")
                _check_store_generation(store, existing, target)
                store.set_meta("pending", str(generation))
                yield store
                self._fresh = self._finish(tmp, store, existing, db_url, namespace, generation)
            finally:
                store.close()

    def _finish(self, tmp: Path, store: Store, existing: dict | None, db_url: str | None, namespace: str,
                generation: int) -> tuple[dict, BucketTable, BinaryANN]:
        """Derive FAISS from the store into the new copy, mark the store finished, write the manifest.

        Returns what `_attach` needs, so the engine takes up the new state without reading it back."""
        buckets, ann = derive(store)
        ann.save(tmp / FAISS_FILE)
        store.set_meta("generation", str(generation))
        store.set_meta("pending", "")
        store.set_meta("model_checksum", self.model.checksum or "")
        manifest = self._manifest(existing, db_url, namespace, generation, store, buckets, ann)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest, buckets, ann

    def _write_model(self, destination: Path) -> None:
        """Put the model into a new index. A loaded model is copied file by file: saving it again would
        not give the same bytes (pickle memoizes by object identity), hence a new checksum, and the next
        `semhash index --model DIR` would be refused as a different model."""
        src = self._model_dir
        if src is not None and self.model.checksum and (src / MANIFEST).is_file():
            shutil.copytree(src, destination)
            if (directory_checksum(destination, skip=(MANIFEST,)) == self.model.checksum
                    and _read_json(destination / MANIFEST).get("checksum") == self.model.checksum):
                return
            shutil.rmtree(destination)  # the directory has changed since the model was loaded
        self.model.save(destination)

    def _manifest(self, existing: dict | None, db_url: str | None, namespace: str, generation: int, store: Store,
                  buckets: BucketTable, ann: BinaryANN) -> dict:
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return {
            "format": INDEX_FORMAT,
            "created": (existing or {}).get("created", now),
            "updated": now,
            "bits": self.model.bits,
            "kind": self.model.kind,
            "hasher": self.model.info.get("hasher", {}).get("name"),
            "model_checksum": self.model.checksum,
            "db_url": db_url,
            "namespace": namespace,
            "generation": generation,
            "counts": {"items": store.count(), "faiss": len(ann), "distinct_codes": buckets.n_buckets},
            "versions": package_versions(),
        }

    # --- loading and saving ---------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | Path = DEFAULT_INDEX_DIR) -> "Engine":
        """Open an index directory, checking that model, store and FAISS index agree."""
        directory = Path(directory)
        manifest = _read_manifest(directory)
        engine = cls(Model.load(directory / "model"))
        if engine.model.checksum != manifest.get("model_checksum"):
            raise IndexError_(f"the model in {directory / 'model'} is not the one the index was built with; "
                              f"index the corpus again into a new directory (`semhash index CORPUS -o NEW_DIR`), "
                              f"or delete {directory} and index it again")
        engine._open(directory, manifest)
        return engine

    def _open(self, directory: Path, manifest: dict | None = None) -> None:
        manifest = manifest if manifest is not None else _read_manifest(directory)
        store = _open_store(manifest, directory)
        try:
            _check_store_generation(store, manifest, directory)
            ann = BinaryANN.load(directory / FAISS_FILE, manifest["bits"])
            n_store = store.count()
            if n_store != len(ann):
                raise IndexError_(f"the store holds {n_store} items but the FAISS index {len(ann)}; "
                                  f"run `semhash rebuild {directory}` to rebuild it from the store")
            row_ids, codes = store.all_codes()
        except BaseException:
            store.close()
            raise
        self._attach(directory, manifest, BucketTable.build(row_ids, codes), ann, store)

    def _attach(self, directory: Path, manifest: dict, buckets: BucketTable, ann: BinaryANN,
                store: Store | None = None) -> None:
        """Take up an index's state; the store is (re)opened where the directory now is."""
        self.directory, self.manifest = directory.absolute(), manifest
        self.store = store if store is not None else _open_store(manifest, directory)
        self._model_dir = self.directory / "model"
        self.buckets, self.ann = buckets, ann
        self._searcher = None

    def save(self, directory: str | Path) -> Path:
        """Copy the index to another directory (for an external database, the new copy shares it)."""
        if self.directory is None:
            raise IndexError_("nothing to save: index a corpus first (Engine.index)")
        directory = Path(directory)
        if directory.absolute() == self.directory:
            return directory
        with atomic_directory(directory) as tmp:
            for p in self.directory.iterdir():
                (shutil.copytree if p.is_dir() else shutil.copy2)(p, tmp / p.name)
        return directory

    @classmethod
    def rebuild(cls, directory: str | Path) -> "Engine":
        """Rebuild the FAISS index and manifest counts from the store of record."""
        directory = Path(directory)
        manifest = _read_manifest(directory)
        model = Model.load(directory / "model")
        namespace = manifest.get("namespace", "semhash")
        engine = cls(model)
        with atomic_directory(directory) as tmp:
            _carry_over(directory, tmp)
            # a SQLite store is the copy that goes into place: its meta must be reset there, not in the old file
            store = _open_store(manifest, tmp)
            try:
                generation = max(int(store.get_meta("generation") or 0), int(store.get_meta("pending") or 0),
                                 manifest.get("generation", 0))
                fresh = engine._finish(tmp, store, manifest, manifest.get("db_url"), namespace, generation)
            finally:
                store.close()
        engine._attach(directory, *fresh)
        return engine

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        self.store = None

    # --- querying -------------------------------------------------------------------------
    def query(self, item, k: int | None = 10, radius: int = 2, strategy: str = "auto") -> list["Hit"]:
        """Hits for one query (a text, or a vector as a list or 1-D array)."""
        items = [item] if isinstance(item, str) else [list(np.asarray(item, dtype=np.float32).ravel())]
        return self.query_batch(items, k=k, radius=radius, strategy=strategy)[0].hits

    def query_batch(self, items: Batch | list, k: int | None = 10, radius: int = 2,
                    strategy: str = "auto") -> list["Answer"]:
        """Answer many queries together (a Batch, a list of texts, or a 2-D array of vectors)."""
        if self.directory is None:
            raise IndexError_("no index loaded: use Engine.load(DIR) or Engine.index(CORPUS)")
        batch = items if isinstance(items, Batch) else records_from_strings(items)
        self.model.check_kind(batch, "the query")
        results = self.searcher.search(self.model.encode(batch), k=k, radius=radius, strategy=strategy)
        return self._answers(batch, results)

    @property
    def searcher(self) -> Searcher:
        if self._searcher is None:
            self._searcher = Searcher(self.buckets, self.ann, self.model.bits)
        return self._searcher

    def _answers(self, batch: Batch, results: list[Result]) -> list["Answer"]:
        wanted = np.unique(np.concatenate([r.row_ids for r in results])) if results else np.zeros(0, np.int64)
        items = {it.row_id: it for it in self.store.fetch(wanted.tolist())} if len(wanted) else {}
        bits = self.model.bits
        answers = []
        for qid, res in zip(batch.ids, results):
            hits = [Hit(id=items[r].ext_id, distance=int(d), score=round(1.0 - d / bits, 6),
                        payload=items[r].payload, filled=bool(f))
                    for r, d, f in zip(res.row_ids.tolist(), res.distances.tolist(), res.filled.tolist())]
            answers.append(Answer(query_id=qid, searched_radius=res.searched_radius, strategy=res.strategy,
                                  hits=hits))
        return answers

    # --- description ----------------------------------------------------------------------
    def info(self) -> dict:
        """Manifest, counts, memory and disk bytes per item, and bucket statistics."""
        if self.directory is None:
            raise IndexError_("no index loaded")
        n = len(self.buckets)
        disk = sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file()
                   and p.parts[len(self.directory.parts)] != "model")
        memory = self.buckets.nbytes() + len(self.ann) * (self.model.bits // 8 + 8)
        return {
            "directory": str(self.directory),
            "manifest": self.manifest,
            "items": n,
            "store": self.store.masked_url() if self.store else None,
            "bytes_per_item": {"memory": round(memory / max(1, n), 2), "disk": round(disk / max(1, n), 2)},
            "buckets": self.buckets.stats(),
        }


def _read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise IndexError_(f"{directory} is not a semhash index (no {MANIFEST}); create one with "
                          f"`semhash index CORPUS -o {directory}`")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise IndexError_(f"{path} is corrupt ({e})") from None
    if manifest.get("format", 0) > INDEX_FORMAT:
        raise IndexError_(f"{directory} was written by a newer semhash (index format {manifest.get('format')}); "
                          "upgrade semhash to open it")
    return manifest


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _carry_over(src: Path, dst: Path) -> None:
    """Copy what a rewrite of an index keeps as it is (the model, a SQLite store) into the new copy."""
    for name in ("model", SQLITE_FILE):
        path = src / name
        if path.is_dir():
            shutil.copytree(path, dst / name)
        elif path.exists():
            shutil.copy2(path, dst / name)


def _open_store(manifest: dict, directory: Path) -> Store:
    """The existing store an index's manifest names (its SQLite file lives in `directory`)."""
    return Store(manifest.get("db_url") or sqlite_url(directory / SQLITE_FILE), manifest["bits"],
                 namespace=manifest.get("namespace", "semhash"), create=False)


def _check_store_generation(store: Store, manifest: dict | None, directory: Path) -> None:
    if manifest is None:
        return
    pending = store.get_meta("pending") or ""
    stored = int(store.get_meta("generation") or 0)
    if pending or stored != manifest.get("generation", 0):
        raise IndexError_(f"the database behind {directory} was changed by an indexing run that did not finish "
                          f"(or by another index); run `semhash rebuild {directory}` to rebuild the index "
                          "from the database, then index again")


def _batch_from_dicts(records: list[dict]) -> Batch:
    if not records:
        raise ConfigError("no records to add")
    if all(isinstance(r, str) for r in records):
        return records_from_strings(records)
    return batch_from_dicts(records)


__all__ = ["Answer", "Engine", "Hit", "DEFAULT_INDEX_DIR", "SemhashError"]
