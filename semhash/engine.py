"""Engine: train, index, add, remove, query, save and load. Composes the model, store, buckets and FAISS.

An index is one directory:

    semhash-index/
      manifest.json  format, settings, counts, generation, the model's checksum, package versions
      model/         the model that encoded the items (a query is encoded by the same one)
      items.db       the SQLite store (absent when the manifest names another database URL)
      faiss.index    the FAISS binary index
      features/      with keep_features: the featurizer's output rows by store row id, for re-ranking
                     (see semhash.rerank for the layout)

Every change is written to a temporary copy of the directory and renamed into place, so a failed
or interrupted run leaves the previous index intact. With an external database (PostgreSQL) the
store is changed in place: the store records a generation number, and an index whose store was
left mid-change is refused with a pointer to `semhash rebuild`.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .ann import BinaryANN
from .buckets import BucketTable
from .codes import to_hex
from .corpus import Batch, Corpus, batch_from_dicts, records_from_strings
from .errors import ConfigError, IndexError_, SemhashError
from .fsutil import INDEX, atomic_directory, check_target, directory_checksum, read_manifest
from .hashers import hasher_class
from .indexer import IndexStats, check_batch, check_corpus, derive, index_corpus, write_batch
from .model import Model, package_versions
from .rerank import FEATURES_DIR, FeatureStore, carry, new_meta, rerank_results
from .search import Results, Searcher
from .store import Store, gc_paused, sqlite_url

INDEX_FORMAT = 1
DEFAULT_INDEX_DIR = "semhash-index"
MANIFEST = "manifest.json"
SQLITE_FILE = "items.db"
FAISS_FILE = "faiss.index"


ANSWER_BLOCK = 1_000_000  # hits made into Python objects at a time by query_iter (about 100 MB)
SPAN_BLOCK = 1 << 22      # hit buckets of the queries searched at once by query_iter (about 130 MB)


@dataclass(slots=True)
class Hit:
    """One retrieved item: its id, Hamming distance to the query, a score, its payload, and whether it
    came from the exact FAISS fill beyond the searched radius.

    The score is 1 - distance/bits, in [0, 1]; with `rerank=True` it is instead the cosine similarity
    of the query's features and the item's kept features (rounded to 6 decimals), and `distance`
    stays the Hamming distance."""

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
        self._ann: BinaryANN | None = None  # the index directory's FAISS index, read when asked for
        self._searcher: Searcher | None = None
        self._fresh: tuple = ()  # (manifest, buckets, ann) of the update being written
        self._model_dir: Path | None = None  # where the model was loaded from (its files keep its checksum)
        self._features: FeatureStore | None = None  # the index's kept features, opened at the first re-rank
        self.dropped_features: str | None = None  # set by rebuild when it could not keep the features

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
              progress: bool = True, namespace: str | None = None,
              keep_features: bool | None = None) -> IndexStats:
        """Add (or replace, by id) every record of a corpus; creates the index directory if needed.

        `namespace` names the store's tables (default "semhash"), so that several indexes can share one
        database; an existing index keeps its own. `keep_features=True` keeps each item's features in
        the index for re-ranking (`query(..., rerank=True)`); None follows the index (a new one keeps
        none); False on an index that keeps them drops them. Features cannot be added to an index that
        already holds items without them."""
        source = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
        # bad input (a malformed corpus, the wrong kind or width) fails before anything is touched: an
        # external database is changed in place, and a failure there would leave it needing a rebuild
        total = check_corpus(self.model, source)
        with self._update(directory, db_url, namespace, keep_features) as (store, features):
            return index_corpus(self.model, store, source, progress=progress, total=total, features=features)

    def add(self, records: Batch | list[dict]) -> IndexStats:
        """Add or replace records (a Batch, or dicts with id and text/vector) in the loaded index
        (their features too, when the index keeps features)."""
        batch = records if isinstance(records, Batch) else _batch_from_dicts(records)
        check_batch(self.model, batch, "the records")  # before the store is touched
        with self._update(None, None) as (store, features):
            return write_batch(self.model, store, batch, features=features)

    def remove(self, ids: list[str]) -> int:
        """Delete items by id from the store, the buckets and FAISS; returns how many existed."""
        with self._update(None, None) as (store, _features):
            removed, _codes = store.delete([str(i) for i in ids])
        return len(removed)

    @contextlib.contextmanager
    def _update(self, directory: str | Path | None, db_url: str | None, namespace: str | None = None,
                keep_features: bool | None = None) -> Iterator[tuple[Store, FeatureStore | None]]:
        target = Path(directory) if directory is not None else self.directory
        if target is None:
            target = Path(DEFAULT_INDEX_DIR)
        check_target(target, INDEX, replace=True)  # an index is updated; nothing else is replaced
        existing = _read_manifest(target) if (target / MANIFEST).exists() else None
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
        keep = _keep_features(target, existing, keep_features)
        previous_store = self.store
        self.close()
        try:
            with self._write(target, existing, db_url, namespace, keep) as written:
                yield written
        except BaseException:
            # the index on disk is unchanged (or, with an external database, left for `semhash rebuild`):
            # keep answering from the previous one (a closed Store reconnects when used)
            if self.store is None:
                self.store = previous_store
            raise
        self._attach(target, *self._fresh)

    @contextlib.contextmanager
    def _write(self, target: Path, existing: dict | None, db_url: str | None, namespace: str,
               keep_features: bool) -> Iterator[tuple[Store, FeatureStore | None]]:
        with atomic_directory(target, INDEX, replace=True) as tmp:
            if existing is not None:
                _carry_over(target, tmp)
            else:
                self._write_model(tmp / "model")
            features = None
            if keep_features:
                kept = (existing or {}).get("features")
                if kept:
                    carry(target / FEATURES_DIR, tmp / FEATURES_DIR)
                features = FeatureStore(tmp / FEATURES_DIR,
                                        kept or new_meta(self.model.kind, self.model.featurizer.dim))
            store = Store(db_url or sqlite_url(tmp / SQLITE_FILE), self.model.bits, namespace=namespace)
            try:
                generation = (existing or {}).get("generation", 0) + 1
                # an index owns its namespace from its first finished run, even when all its items are deleted
                if existing is None and db_url is not None and (store.count() or store.get_meta("generation")):
                    raise IndexError_(f"the database {store.masked_url()} already holds a semhash index "
                                      f"(namespace {namespace!r}); use an empty database or another namespace")
                _check_store_generation(store, existing, target)
                store.set_meta("pending", str(generation))
                yield store, features
                self._fresh = self._finish(tmp, store, existing, db_url, namespace, generation, features)
            finally:
                store.close()
                if features is not None:
                    features.abort()

    def _finish(self, tmp: Path, store: Store, existing: dict | None, db_url: str | None, namespace: str,
                generation: int, features: FeatureStore | None = None,
                strict: bool = True) -> tuple[dict, BucketTable, BinaryANN]:
        """Derive FAISS from the store into the new copy, finish the kept features, mark the store
        finished, write the manifest.

        Returns what `_attach` needs, so the engine takes up the new state without reading it back.
        With `strict=False`, features that do not cover every stored item are dropped, not an error."""
        buckets, ann = derive(store)
        ann.save(tmp / FAISS_FILE)
        features_meta = features.finish(buckets.row_ids, strict=strict) if features is not None else None
        if features is not None and features_meta is None:
            shutil.rmtree(tmp / FEATURES_DIR, ignore_errors=True)
        store.set_meta("generation", str(generation))
        store.set_meta("pending", "")
        store.set_meta("model_checksum", self.model.checksum or "")
        manifest = self._manifest(existing, db_url, namespace, generation, store, buckets, ann, features_meta)
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
                  buckets: BucketTable, ann: BinaryANN, features: dict | None = None) -> dict:
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
            "features": features,
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
        # search answers from the bucket table and its own scan over distinct codes, so the item-level
        # FAISS index (12 bytes an item) is checked at open but not kept in memory
        self.buckets, self._ann = buckets, None
        self._searcher = None
        self._features = None

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Copy the index to another directory (for an external database, the new copy shares it). An
        existing index there is replaced only with `overwrite`; anything else there is never replaced."""
        if self.directory is None:
            raise IndexError_("nothing to save: index a corpus first (Engine.index)")
        directory = Path(directory)
        if directory.absolute() == self.directory:
            return directory
        with atomic_directory(directory, INDEX, replace=overwrite) as tmp:
            for p in self.directory.iterdir():
                (shutil.copytree if p.is_dir() else shutil.copy2)(p, tmp / p.name)
        return directory

    @classmethod
    def rebuild(cls, directory: str | Path) -> "Engine":
        """Rebuild the FAISS index and manifest counts from the store of record.

        Kept features are kept when the store is in step with them; when an unfinished run changed the
        store (features of its items may be missing or stale), or some stored items have none, they are
        dropped, and `dropped_features` says why (re-index with keep_features to have them again)."""
        directory = Path(directory)
        manifest = _read_manifest(directory)
        model = Model.load(directory / "model")
        namespace = manifest.get("namespace", "semhash")
        engine = cls(model)
        with atomic_directory(directory, INDEX, replace=True) as tmp:
            _carry_over(directory, tmp)
            # a SQLite store is the copy that goes into place: its meta must be reset there, not in the old file
            store = _open_store(manifest, tmp)
            features = None
            try:
                # the repair tool reads damaged meta values as 0: the manifest's generation then counts
                stored, pending = _meta_int(store, "generation") or 0, _meta_int(store, "pending") or 0
                generation = max(stored, pending, manifest.get("generation", 0))
                if manifest.get("features"):
                    if pending or stored != manifest.get("generation", 0):
                        engine.dropped_features = ("the store was changed by a run that did not finish, so the "
                                                   "kept features of its items may be stale")
                    else:
                        carry(directory / FEATURES_DIR, tmp / FEATURES_DIR)
                        features = FeatureStore(tmp / FEATURES_DIR, manifest["features"])
                fresh = engine._finish(tmp, store, manifest, manifest.get("db_url"), namespace, generation,
                                       features, strict=False)
                if features is not None and fresh[0]["features"] is None:
                    engine.dropped_features = "some stored items have no kept features"
            finally:
                store.close()
        engine._attach(directory, *fresh)
        return engine

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        self.store = None

    # --- querying -------------------------------------------------------------------------
    def query(self, item, k: int | None = 10, radius: int = 2, strategy: str = "auto", rerank: bool = False,
              candidates: int | None = None) -> list["Hit"]:
        """Hits for one query (a text, or a vector as a list or 1-D array)."""
        items = [item] if isinstance(item, str) else [list(np.asarray(item, dtype=np.float32).ravel())]
        return self.query_batch(items, k=k, radius=radius, strategy=strategy, rerank=rerank,
                                candidates=candidates)[0].hits

    def query_batch(self, items: Batch | list, k: int | None = 10, radius: int = 2, strategy: str = "auto",
                    rerank: bool = False, candidates: int | None = None) -> list["Answer"]:
        """Answer many queries together (a Batch, a list of texts, or a 2-D array of vectors).

        `rerank=True` (an index built with keep_features): the code search gives the candidates (with k,
        the `candidates` nearest by Hamming distance, default max(10 k, 100); with k=None, every item
        within the radius), ordered by the cosine similarity of their kept features to the query's
        (ties: Hamming distance, then search order); the first k are returned, scored by that cosine."""
        return list(self.query_iter(items, k=k, radius=radius, strategy=strategy, rerank=rerank,
                                    candidates=candidates))

    def query_iter(self, items: Batch | list, k: int | None = 10, radius: int = 2, strategy: str = "auto",
                   rerank: bool = False, candidates: int | None = None,
                   max_hits: int = ANSWER_BLOCK) -> Iterator["Answer"]:
        """`query_batch`, one Answer at a time, in bounded memory: the batch is searched in blocks of
        queries whose answers hold at most about SPAN_BLOCK hit buckets, and the answers are built in
        groups holding at most `max_hits` hits together (a single query may hold more), so a huge k or
        a radius answer of millions of items never sits in memory whole. Bad options fail at the call."""
        if self.directory is None:
            raise IndexError_("no index loaded: use Engine.load(DIR) or Engine.index(CORPUS)")
        if candidates is not None and not rerank:
            raise ConfigError("candidates applies only to re-ranking (rerank=True, --rerank)")
        batch = items if isinstance(items, Batch) else records_from_strings(items)
        self.model.check_kind(batch, "the query")
        if rerank:
            return self._reranked(batch, k, radius, strategy, candidates, max_hits)
        codes = self.model.encode(batch)
        self.searcher.check(k, radius, strategy)  # bad options fail at the call, not at the first answer
        # a batch is searched in blocks of queries whose answers hold a bounded number of spans
        step = max(1, SPAN_BLOCK // self.searcher.spans_per_query(k, radius))
        return itertools.chain.from_iterable(
            self._stream(batch.ids[i:i + step],
                         self.searcher.search(codes[i:i + step], k=k, radius=radius, strategy=strategy),
                         None, max_hits)
            for i in range(0, len(codes), step))

    def _reranked(self, batch: Batch, k: int | None, radius: int, strategy: str, candidates: int | None,
                  max_hits: int) -> Iterator["Answer"]:
        features = self.features
        n_candidates = None
        if k is not None:
            if candidates is not None and (candidates < 1 or candidates < k):
                raise ConfigError(f"candidates must be at least k ({k}), got {candidates}")
            n_candidates = candidates if candidates is not None else max(10 * k, 100)
        X = self.model.features(batch)
        found = self.searcher.search(self.model.hasher.encode(X), k=n_candidates, radius=radius,
                                     strategy=strategy)
        reranked, scores = rerank_results(found, X, features, k)
        return self._stream(batch.ids, Results.from_list(reranked), scores, max_hits)

    def _stream(self, query_ids: list[str], results: Results, scores: list[np.ndarray] | None,
                max_hits: int) -> Iterator["Answer"]:
        ends = np.cumsum(results.counts())
        start = 0
        while start < len(results):
            # the queries up to the one that takes the group past max_hits (at least one)
            stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + max_hits,
                                                      side="right")))
            part = scores[start:stop] if scores is not None else None
            yield from self._answers(query_ids[start:stop], results.take(start, stop), part)
            start = stop

    @property
    def features(self) -> FeatureStore:
        """The index's kept features (for re-ranking); IndexError_ when it keeps none."""
        if self._features is None:
            meta = self.manifest.get("features")
            if not meta:
                raise IndexError_(f"the index at {self.directory} keeps no features, so it cannot re-rank; "
                                  f"index the corpus again into a new directory with --keep-features "
                                  f"(`semhash index CORPUS -o NEW_DIR --keep-features`; keep_features=True in "
                                  f"Python), or query without --rerank")
            self._features = FeatureStore(self.directory / FEATURES_DIR, meta)
        return self._features

    @property
    def ann(self) -> BinaryANN:
        """The index directory's FAISS index of every item (read on first use; search does not need it)."""
        if self._ann is None:
            if self.directory is None:
                raise IndexError_("no index loaded: use Engine.load(DIR) or Engine.index(CORPUS)")
            self._ann = BinaryANN.load(self.directory / FAISS_FILE, self.model.bits)
        return self._ann

    @property
    def searcher(self) -> Searcher:
        if self._searcher is None:
            self._searcher = Searcher(self.buckets, self.model.bits)
        return self._searcher

    def _answers(self, query_ids: list[str], results: Results,
                 scores: list[np.ndarray] | None = None) -> list["Answer"]:
        """Answers with payloads (one store read for the batch); `scores` replaces 1 - distance/bits."""
        flat_rows, flat_dist, flat_filled = results.row_ids, results.distances, results.filled
        distinct = _distinct(flat_rows) if len(flat_rows) else flat_rows
        ext_ids, payloads = self.store.hit_fields(distinct)
        where = np.searchsorted(distinct, flat_rows)
        bits = self.model.bits
        if scores is None:
            flat_scores = np.array([round(1.0 - d / bits, 6) for d in range(bits + 1)])[flat_dist]
        else:
            flat_scores = np.concatenate(scores) if scores else np.zeros(0)
        lims = results.lims.tolist()
        with gc_paused():  # a million small objects would otherwise set off many full collections
            hits = [Hit(e, d, s, p, f) for e, d, s, p, f in
                    zip(ext_ids[where].tolist(), flat_dist.tolist(), flat_scores.astype(float).tolist(),
                        payloads[where].tolist(), flat_filled.tolist())]
            return [Answer(query_id=qid, searched_radius=int(results.searched[i]),
                           strategy=str(results.strategies[i]), hits=hits[lims[i]:lims[i + 1]])
                    for i, qid in enumerate(query_ids)]

    # --- description ----------------------------------------------------------------------
    def _empty_bucket(self) -> dict:
        """The code of an all-zero feature row and how many items are stored under it: texts with no
        known word and zero vectors all land there, so a large count means many items that the model
        cannot tell apart."""
        code = self.model.empty_code()
        return {"code": to_hex(code)[0], "items": _bucket_size(self.buckets, code)}

    def info(self) -> dict:
        """Manifest, counts, memory and disk bytes per item, and bucket statistics."""
        if self.directory is None:
            raise IndexError_("no index loaded")
        n = len(self.buckets)
        disk = sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file()
                   and p.parts[len(self.directory.parts)] != "model")
        memory = self.searcher.nbytes()
        kept = self.manifest.get("features")
        features = {"kept": False} if not kept else {
            "kept": True, "layout": kept["layout"], "dtype": kept["dtype"], "dim": kept["dim"],
            "rows": kept["rows"], "segments": len(kept["segments"]), "bytes": kept["bytes"],
            "bytes_per_item": round(kept["bytes"] / max(1, n), 2)}
        return {
            "directory": str(self.directory),
            "manifest": self.manifest,
            "items": n,
            "store": self.store.masked_url() if self.store else None,
            "bytes_per_item": {"memory": round(memory / max(1, n), 2), "disk": round(disk / max(1, n), 2)},
            "buckets": self.buckets.stats(),
            "empty_features": self._empty_bucket(),
            "features": features,
        }


def _bucket_size(buckets: BucketTable, code: np.ndarray) -> int:
    """Items stored under one packed code (1, bytes)."""
    match = np.flatnonzero((buckets.distinct_codes() == code).all(axis=1))
    return int(buckets.sizes()[match[0]]) if len(match) else 0


def _distinct(row_ids: np.ndarray) -> np.ndarray:
    """Sorted distinct row ids; a mask over their range where it is small (far faster than a sort)."""
    lo, hi = int(row_ids.min()), int(row_ids.max())
    if hi - lo > 8 * len(row_ids):
        return np.unique(row_ids)
    mask = np.zeros(hi - lo + 1, dtype=bool)
    mask[row_ids - lo] = True
    return np.flatnonzero(mask) + lo


def _read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise IndexError_(f"{directory} is not a semhash index (no {MANIFEST}); create one with "
                          f"`semhash index CORPUS -o {directory}`")
    manifest = read_manifest(path, INDEX)
    if manifest["format"] > INDEX_FORMAT:
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


def _keep_features(target: Path, existing: dict | None, keep_features: bool | None) -> bool:
    """Whether an update keeps features: as asked, else as the index does. Refused before anything is
    touched: features asked of an index whose items were stored without them."""
    has = bool((existing or {}).get("features"))
    if keep_features is None:
        return has
    if keep_features and not has and existing is not None and existing.get("counts", {}).get("items", 0):
        raise IndexError_(f"the index at {target} was built without --keep-features, so the features of the "
                          f"items it holds are not kept; index the corpus with --keep-features into a new "
                          f"directory (-o NEW_DIR), or delete {target} first")
    return bool(keep_features)


def _open_store(manifest: dict, directory: Path) -> Store:
    """The existing store an index's manifest names (its SQLite file lives in `directory`)."""
    return Store(manifest.get("db_url") or sqlite_url(directory / SQLITE_FILE), manifest["bits"],
                 namespace=manifest.get("namespace", "semhash"), create=False)


def _meta_int(store: Store, key: str) -> int | None:
    """A store meta value that semhash writes as a whole number (empty: 0); None when it is not one."""
    value = (store.get_meta(key) or "0").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def _check_store_generation(store: Store, manifest: dict | None, directory: Path) -> None:
    if manifest is None:
        return
    pending = store.get_meta("pending") or ""
    stored = _meta_int(store, "generation")
    if pending or stored is None or stored != manifest.get("generation", 0):
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
