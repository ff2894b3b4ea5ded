"""Engine: the facade over a model and an index directory: train, index, add, remove, query, save, load.

The index directory and its manifest are semhash.indexdir's; the store of record (items, kept
features, the change log) is semhash.store's; the search structures in memory are semhash.live's.
Every change is one store transaction; the engine applies it to its own search structures at once.
Each answer is built inside one pinned snapshot of the store: the engine first catches up with the
changes committed up to it (from the store's change log), then searches and reads the hits there, so
one process may write while any number of others read, and no answer mixes two states.
"""
from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .codes import pack, to_hex
from .corpus import Batch, Corpus, batch_from_dicts, records_from_strings
from .errors import ConfigError, IndexError_, SemhashError
from .fsutil import INDEX, MANIFEST, atomic_directory, check_target, directory_checksum
from .hashers.options import TrainingOptions
from .indexdir import (DEFAULT_NAMESPACE, MODEL_DIR, SQLITE_FILE, IndexManifest, upgrade)
from .indexer import IndexStats, check_batch, check_corpus, index_corpus, write_batch
from .keptfeatures import KeptFeatures, new_meta
from .live import LiveIndex
from .model import Model, package_versions
from .rerank import rerank_results
from .search import Results
from .store import Store, gc_paused

DEFAULT_INDEX_DIR = "semhash-index"
RELOAD_SHARE = 4          # a catch-up touching more than 1/4 of the items reads the store whole instead
ANSWER_BLOCK = 1_000_000  # hits made into Python objects at a time by query_iter (about 100 MB)
SPAN_BLOCK = 1 << 22      # hit buckets of the queries searched at once by query_iter (about 130 MB)


@dataclass(slots=True)
class Hit:
    """One retrieved item: its id, Hamming distance to the query, a score, its payload, and whether it
    came from the exact fill beyond the searched radius.

    The score is 1 - distance/bits, in [0, 1]; with `rerank=True` it is instead the cosine similarity
    of the query's features and the item's kept features (rounded to 6 decimals), and with
    `asymmetric=True` alone the asymmetric score of the item's code, scaled to [0, 1] (1 for the
    query's own code; see semhash.asymmetric). `distance` stays the Hamming distance."""

    id: str
    distance: int
    score: float
    payload: dict = field(default_factory=dict)
    filled: bool = False

    def to_json(self) -> dict:
        return {"id": self.id, "distance": self.distance, "score": self.score, "payload": self.payload,
                "filled": self.filled}


class HitColumns:
    """The hits of a group of answers as columns: the distinct items' ids and payloads (object arrays)
    with each hit's position among them, and each hit's distance, score and filled flag. They are made
    into `Hit` objects all at once on first use: building them per answer would let the garbage
    collector walk the million objects already made after every answer (3x slower)."""

    __slots__ = ("ext_ids", "payloads", "where", "distances", "scores", "filled", "_hits")

    def __init__(self, ext_ids: np.ndarray, payloads: np.ndarray, where: np.ndarray, distances: np.ndarray,
                 scores: np.ndarray, filled: np.ndarray):
        self.ext_ids, self.payloads, self.where = ext_ids, payloads, where
        self.distances, self.scores, self.filled = distances, scores, filled
        self._hits: list[Hit] | None = None

    def lists(self, a: int, b: int) -> tuple[list, ...]:
        """Hits a..b-1 as Python lists: ids, distances, scores, payloads, filled."""
        where = self.where[a:b]
        return (self.ext_ids[where].tolist(), self.distances[a:b].tolist(), self.scores[a:b].tolist(),
                self.payloads[where].tolist(), self.filled[a:b].tolist())

    def hits(self) -> list[Hit]:
        if self._hits is None:
            with gc_paused():
                self._hits = [Hit(*h) for h in zip(*self.lists(0, len(self.where)))]
        return self._hits


class Answer:
    """The hits of one query, with the radius searched completely and the strategy that ran.

    An answer made by a query holds its hits as columns (`ids`, `distances`, `scores`: arrays), and
    makes them into `Hit` objects on the first use of `hits`: a batch of 10,000 queries at k = 100 is
    a million hits, and building them as objects costs several times the search. Every column is read
    in the query's snapshot of the store when the answer is made."""

    __slots__ = ("query_id", "searched_radius", "strategy", "_hits", "_group", "_span")

    def __init__(self, query_id: str, searched_radius: int, strategy: str, hits: list[Hit] | None = None,
                 *, group: HitColumns | None = None, span: tuple[int, int] = (0, 0)):
        if (hits is None) == (group is None):
            raise TypeError("an Answer takes either hits or a group of hit columns")
        self.query_id, self.searched_radius, self.strategy = query_id, searched_radius, strategy
        self._hits, self._group, self._span = hits, group, span

    @property
    def hits(self) -> list[Hit]:
        if self._hits is None:
            a, b = self._span
            self._hits = self._group.hits()[a:b]
        return self._hits

    @property
    def ids(self) -> np.ndarray:
        """The hits' ids in order (an object array of str), without making Hit objects."""
        if self._group is None:
            return np.array([h.id for h in self._hits], dtype=object)
        a, b = self._span
        return self._group.ext_ids[self._group.where[a:b]]

    @property
    def distances(self) -> np.ndarray:
        """The hits' Hamming distances in order, without making Hit objects."""
        if self._group is None:
            return np.array([h.distance for h in self._hits], dtype=np.int32)
        return self._group.distances[slice(*self._span)]

    @property
    def scores(self) -> np.ndarray:
        """The hits' scores in order, without making Hit objects."""
        if self._group is None:
            return np.array([h.score for h in self._hits], dtype=np.float64)
        return self._group.scores[slice(*self._span)]

    def __len__(self) -> int:
        return self._span[1] - self._span[0] if self._group is not None else len(self._hits)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Answer):
            return NotImplemented
        return (self.query_id, self.searched_radius, self.strategy, self.hits) == \
            (other.query_id, other.searched_radius, other.strategy, other.hits)

    def __repr__(self) -> str:
        return (f"Answer(query_id={self.query_id!r}, searched_radius={self.searched_radius}, "
                f"strategy={self.strategy!r}, hits={self.hits!r})")

    def to_json(self) -> dict:
        """The answer as `semhash query` prints it and `semhash serve` returns it."""
        if self._hits is not None:
            hits = [h.to_json() for h in self._hits]
        else:
            hits = [{"id": i, "distance": d, "score": s, "payload": p, "filled": f}
                    for i, d, s, p, f in zip(*self._group.lists(*self._span))]
        return {"query_id": self.query_id, "searched_radius": self.searched_radius, "strategy": self.strategy,
                "hits": hits}


class Engine:
    """A model plus (once indexed or loaded) an index directory, its store and its search structures."""

    def __init__(self, model: Model):
        self.model = model
        self.directory: Path | None = None
        self.manifest: IndexManifest | None = None
        self.store: Store | None = None
        self.live: LiveIndex | None = None
        self._model_dir: Path | None = None  # where the model was loaded from (its files keep its checksum)
        self._features: KeptFeatures | None = None

    # --- construction -------------------------------------------------------------------
    @classmethod
    def train(cls, corpus: str | Path | Batch, progress: bool = True, **options) -> "Engine":
        """Train a model on a corpus (a path or a Batch) and return an engine without an index yet.

        `options`: every training option of `semhash train`, by the same names (bits, hasher, epochs,
        batch_size, lr, noise, hidden, neighbors, temperature, diffusion, diffusion_time, corruption,
        input_noise, sparsity, sparsity_target, contractive, variational, rank_epochs, device, seed, threads,
        max_features, standardize, train_sample; see semhash.hashers.options.TrainingOptions).
        From a path, the model is fitted on a seeded sample of `train_sample` records (default 100,000)."""
        opts = TrainingOptions.of(**options)
        h = opts.make_hasher()  # bad options fail before the corpus is read
        data = corpus if isinstance(corpus, Batch) else opts.read_sample(Corpus(corpus), progress=progress)[0]
        return cls(Model.fit(data, h, opts.feature_options(), progress=progress))

    @classmethod
    def from_model(cls, model_dir: str | Path) -> "Engine":
        engine = cls(Model.load(model_dir))
        engine._model_dir = Path(model_dir).absolute()
        return engine

    # --- writing -------------------------------------------------------------------------
    def index(self, corpus: str | Path | Corpus, directory: str | Path | None = None, db_url: str | None = None,
              progress: bool = True, namespace: str | None = None,
              keep_features: bool | None = None) -> IndexStats:
        """Add (or replace, by id) every record of a corpus; creates the index directory if needed.

        Each batch of records is one transaction: a crash leaves the batches written before it.
        `namespace` names the store's tables (default "semhash"), so that several indexes can share one
        database; an existing index keeps its own. `keep_features=True` keeps each item's features in
        the store for re-ranking (`query(..., rerank=True)`); None follows the index (a new one keeps
        none). An index keeps features from its creation or never."""
        source = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
        # bad input (a malformed corpus, the wrong kind or width) fails before anything is touched
        total = check_corpus(self.model, source)
        self._open_for_writing(directory, db_url, namespace, keep_features)
        try:
            return index_corpus(self.model, self.store, source, progress=progress, total=total,
                                features=self._kept())
        finally:
            self.refresh()  # the batches written (all, or those before an error)

    def add(self, records: Batch | list[dict]) -> IndexStats:
        """Add or replace records (a Batch, or dicts with id and text/vector) in the loaded index, in one
        transaction (their features too, when the index keeps features)."""
        batch = records if isinstance(records, Batch) else _batch_from_dicts(records)
        self._require_index()
        check_batch(self.model, batch, "the records")  # before the store is touched
        stats, res, codes = write_batch(self.model, self.store, batch, features=self._kept())
        self._took(res.version, res.row_ids, codes, None)
        return stats

    def remove(self, ids: list[str]) -> int:
        """Delete items by id (one transaction); returns how many existed."""
        self._require_index()
        gone = self.store.delete([str(i) for i in ids])
        if len(gone.row_ids):
            self._took(gone.version, gone.row_ids, gone.codes, np.zeros(len(gone.row_ids), bool))
        return len(gone.row_ids)

    def _took(self, version: int, row_ids: np.ndarray, codes: np.ndarray, present: np.ndarray | None) -> None:
        """Apply this engine's own committed change; if another process wrote since, catch up instead."""
        if self.live is not None and version == self.live.version + 1:
            self.live.apply(row_ids, codes, present, version)
        else:
            self.refresh()

    def _open_for_writing(self, directory: str | Path | None, db_url: str | None, namespace: str | None,
                          keep_features: bool | None) -> None:
        """Attach the index at `directory` (default: the loaded one, else ./semhash-index), creating it
        when absent; refuse, before anything is written, options that the index cannot take."""
        target = Path(directory) if directory is not None else (self.directory or Path(DEFAULT_INDEX_DIR))
        check_target(target, INDEX, replace=True)  # an index is updated; nothing else is replaced
        if not (target / MANIFEST).exists():
            self._create(target, db_url, namespace, keep_features)
            return
        manifest = IndexManifest.read(target)
        if manifest.model_checksum != self.model.checksum:
            raise IndexError_(f"the index at {target} was built with a different model; index into a new directory "
                              f"(-o NEW_DIR), or delete {target} first")
        if db_url is not None and db_url != manifest.db_url:
            raise IndexError_(f"the index at {target} uses the database {manifest.db_url or SQLITE_FILE}; "
                              "it cannot be moved to another with --db")
        if namespace is not None and namespace != manifest.namespace:
            raise IndexError_(f"the index at {target} uses the store namespace {manifest.namespace!r}; "
                              "it cannot be changed")
        if keep_features is not None and bool(keep_features) != bool(manifest.features) and manifest.format > 1:
            if keep_features:
                raise IndexError_(f"the index at {target} was built without --keep-features, so the features of "
                                  f"the items it holds are not kept; index the corpus with --keep-features into a "
                                  f"new directory (-o NEW_DIR), or delete {target} first")
            raise IndexError_(f"the index at {target} keeps features; it keeps them for every item it holds "
                              f"(index into a new directory to have an index without them)")
        manifest = upgrade(target, manifest)
        if self.directory is None or self.directory != target.absolute():
            self._attach(target, manifest)

    def _create(self, target: Path, db_url: str | None, namespace: str | None, keep_features: bool | None) -> None:
        with atomic_directory(target, INDEX) as tmp:
            self._write_model(tmp / MODEL_DIR)  # a new model gets its checksum here
            manifest = self._new_manifest(db_url, namespace, keep_features)
            store = manifest.open_store(tmp, create=True)
            try:
                # an index owns its namespace from its creation, even when all its items are deleted
                if db_url is not None and (store.version() or store.count()):
                    raise IndexError_(f"the database {store.masked_url()} already holds a semhash index "
                                      f"(namespace {manifest.namespace!r}); use an empty database or another "
                                      f"namespace")
                store.set_meta("model_checksum", self.model.checksum or "")
            finally:
                store.close()
            manifest.write(tmp)
        self._attach(target, manifest)

    def _new_manifest(self, db_url: str | None, namespace: str | None, keep_features: bool | None) -> IndexManifest:
        return IndexManifest(
            bits=self.model.bits, kind=self.model.kind, model_checksum=self.model.checksum,
            hasher=self.model.info.get("hasher", {}).get("name"), db_url=db_url,
            namespace=namespace or DEFAULT_NAMESPACE,
            features=new_meta(getattr(self.model.featurizer, "sparse", False), self.model.featurizer.dim) if keep_features else None,
            versions=package_versions())

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

    def _kept(self) -> KeptFeatures | None:
        return None if not self.manifest.features else self.features

    def _require_index(self) -> None:
        if self.directory is None:
            raise IndexError_("no index loaded: use Engine.load(DIR) or Engine.index(CORPUS)")

    # --- opening, catching up, saving -----------------------------------------------------------
    @classmethod
    def load(cls, directory: str | Path = DEFAULT_INDEX_DIR) -> "Engine":
        """Open an index directory: its model, its store, and the search structures as of now."""
        directory = Path(directory)
        manifest = IndexManifest.read(directory)
        engine = cls(Model.load(directory / MODEL_DIR))
        if engine.model.checksum != manifest.model_checksum:
            raise IndexError_(f"the model in {directory / MODEL_DIR} is not the one the index was built with; "
                              f"index the corpus again into a new directory (`semhash index CORPUS -o NEW_DIR`), "
                              f"or delete {directory} and index it again")
        engine._attach(directory, manifest)
        return engine

    def _attach(self, directory: Path, manifest: IndexManifest) -> None:
        self.close()
        store = manifest.open_store(directory)
        try:
            live = self._read_live(store)
        except BaseException:
            store.close()
            raise
        self.directory, self.manifest, self.store, self.live = directory.absolute(), manifest, store, live
        self._model_dir = self.directory / MODEL_DIR
        self._features = None

    def refresh(self) -> int:
        """Catch up with the changes committed to the store since this engine's state (by any process):
        from the change log, or by reading the store again when the log does not reach back that far or
        the change is large. Queries do this themselves; returns the version now held."""
        if self.live is None or self.store is None:
            return 0
        with self.store.pinned() as conn:
            self._catch_up(conn)
        return self.live.version

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Copy the index to another directory (a consistent copy of the SQLite store, taken while
        writers may be working; for an external database the new copy shares it). An existing index
        there is replaced only with `overwrite`; anything else there is never replaced."""
        self._require_index()
        directory = Path(directory)
        if directory.absolute() == self.directory:
            return directory
        with atomic_directory(directory, INDEX, replace=overwrite) as tmp:
            shutil.copytree(self.directory / MODEL_DIR, tmp / MODEL_DIR)
            if self.manifest.db_url is None:
                self.store.backup(tmp / SQLITE_FILE)
            shutil.copy2(self.directory / MANIFEST, tmp / MANIFEST)
        return directory

    @classmethod
    def rebuild(cls, directory: str | Path) -> "Engine":
        """Check an index against its store of record and bring its directory to the current format.

        The search structures are built from the store whenever an index is opened, and every change is
        one transaction, so there is nothing left to repair after a crash; this reads the store whole
        (raising for damaged rows) and returns the engine."""
        directory = Path(directory)
        engine = cls.load(directory)
        try:
            engine.store.check()
        except SemhashError:
            engine.close()
            raise
        engine.manifest = upgrade(directory, engine.manifest)
        return engine

    def close(self) -> None:
        """Release the store's connections (the engine reconnects if used again)."""
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def buckets(self):
        """The bucket table of every item held (the delta merged into it first)."""
        self._require_index()
        self.live.merge()
        return self.live.base

    def counts(self) -> dict:
        """Items held and distinct codes (as of the last catch-up)."""
        if self.live is None:
            return {"items": 0, "distinct_codes": 0}
        self.live.merge()
        return {"items": len(self.live), "distinct_codes": self.live.base.n_buckets}

    # --- querying -------------------------------------------------------------------------
    def query(self, item, k: int | None = 10, radius: int = 2, strategy: str = "auto", rerank: bool = False,
              candidates: int | None = None, asymmetric: bool = False) -> list["Hit"]:
        """Hits for one query (a text, or a vector as a list or 1-D array)."""
        items = [item] if isinstance(item, str) else [list(np.asarray(item, dtype=np.float32).ravel())]
        return self.query_batch(items, k=k, radius=radius, strategy=strategy, rerank=rerank,
                                candidates=candidates, asymmetric=asymmetric)[0].hits

    def query_batch(self, items: Batch | list, k: int | None = 10, radius: int = 2, strategy: str = "auto",
                    rerank: bool = False, candidates: int | None = None, asymmetric: bool = False) -> list["Answer"]:
        """Answer many queries together (a Batch, a list of texts, or a 2-D array of vectors).

        `rerank=True` (an index built with keep_features): the code search gives the candidates (with k,
        the `candidates` nearest by Hamming distance, default max(10 k, 100); with k=None, every item
        within the radius), ordered by the cosine similarity of their kept features to the query's
        (ties: Hamming distance, then search order); the first k are returned, scored by that cosine.

        `asymmetric=True` (k-nearest only): the items are chosen by the asymmetric score of their codes
        against the query's real-valued code (its logits: how sure each bit is; semhash.asymmetric)
        instead of by Hamming distance, over every stored code: the k best (or the re-rank candidates);
        radius and strategy do not apply."""
        return list(self.query_iter(items, k=k, radius=radius, strategy=strategy, rerank=rerank,
                                    candidates=candidates, asymmetric=asymmetric))

    def query_iter(self, items: Batch | list, k: int | None = 10, radius: int = 2, strategy: str = "auto",
                   rerank: bool = False, candidates: int | None = None, asymmetric: bool = False,
                   max_hits: int = ANSWER_BLOCK) -> Iterator["Answer"]:
        """`query_batch`, one Answer at a time, in bounded memory: the batch is searched in blocks of
        queries whose answers hold at most about SPAN_BLOCK hit buckets, and the answers are built in
        groups holding at most `max_hits` hits together (a single query may hold more), so a huge k or
        a radius answer of millions of items never sits in memory whole. Bad options fail at the call."""
        self._require_index()
        if candidates is not None and not rerank:
            raise ConfigError("candidates applies only to re-ranking (rerank=True, --rerank)")
        if asymmetric and k is None:
            raise ConfigError("asymmetric search needs k (it ranks every stored code; there is no radius)")
        batch = items if isinstance(items, Batch) else records_from_strings(items)
        self.model.check_kind(batch, "the query")
        n = len(batch)
        if rerank:
            search, step = self._rerank_search(batch, k, radius, strategy, candidates, asymmetric), max(1, n)
        elif asymmetric:
            codes, weights = self._query_codes(self.model.features(batch))
            k_live = self.live.check(k, radius, strategy)[0]

            def search(a: int, b: int, conn):
                found, score = self.live.asymmetric(codes[a:b], weights[a:b], k_live)
                total = np.abs(weights[a:b]).sum(axis=1)
                q = np.repeat(np.arange(b - a), found.counts())
                scaled = np.round((1 + score.astype(np.float64) / np.maximum(total[q], 1e-30)) / 2, 6)
                return found, np.split(scaled, found.lims[1:-1])

            step = max(1, SPAN_BLOCK // max(1, k_live))
        else:
            codes = self.model.encode(batch)
            self.live.check(k, radius, strategy)  # bad options fail at the call, not at the first answer

            def search(a: int, b: int, conn):
                return self.live.search(codes[a:b], k=k, radius=radius, strategy=strategy), None

            # a batch is searched in blocks of queries whose answers hold a bounded number of spans
            step = max(1, SPAN_BLOCK // self.live.spans_per_query(k, radius))
        return itertools.chain.from_iterable(self._stream(batch.ids, a, min(a + step, n), search, max_hits)
                                             for a in range(0, n, step))

    def _query_codes(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(packed codes, logits as float32) of query features: the real-valued codes of asymmetric search."""
        weights = np.asarray(self.model.hasher.logits(X), np.float32)
        return pack(weights > 0), weights

    def _rerank_search(self, batch: Batch, k: int | None, radius: int, strategy: str, candidates: int | None,
                       asymmetric: bool = False):
        features = self.features
        n_candidates = None
        if k is not None:
            if candidates is not None and (candidates < 1 or candidates < k):
                raise ConfigError(f"candidates must be at least k ({k}), got {candidates}")
            n_candidates = candidates if candidates is not None else max(10 * k, 100)
        X = self.model.features(batch)
        if asymmetric:
            codes, weights = self._query_codes(X)
        else:
            codes = self.model.hasher.encode(X)
        n_live = self.live.check(n_candidates, radius, strategy)[0]

        def search(a: int, b: int, conn):
            if asymmetric:
                found = self.live.asymmetric(codes[a:b], weights[a:b], n_live)[0]
            else:
                found = self.live.search(codes[a:b], k=n_candidates, radius=radius, strategy=strategy)
            reranked, scores = rerank_results(found, X[a:b], features.at(conn), k)
            return Results.from_list(reranked), scores
        return search

    def _stream(self, query_ids: list[str], a: int, b: int, search, max_hits: int) -> Iterator["Answer"]:
        """The answers of queries a..b-1, built in groups of at most `max_hits` hits. Each group is answered
        inside one pinned snapshot of the store: the engine first catches up with the changes committed
        up to that snapshot (searching the rest of the block again if there were any), then reads the
        hits' ids and payloads from it, so every answer is that of one committed state, whatever writers
        commit meanwhile."""
        results = scores = None
        while a < b:
            with self.store.pinned() as conn:
                if self._catch_up(conn) or results is None:
                    results, scores = search(a, b, conn)
                ends = np.cumsum(results.counts())
                # the queries up to the one that takes the group past max_hits (at least one)
                stop = max(1, int(np.searchsorted(ends, max_hits, side="right")))
                part = scores[:stop] if scores is not None else None
                answers = self._answers(query_ids[a:a + stop], results.take(0, stop), part, conn)
            yield from answers
            a += stop
            results = results.take(stop, len(results))
            scores = scores[stop:] if scores is not None else None

    def _catch_up(self, conn) -> bool:
        """Bring the search structures to the store's state in the pinned snapshot `conn`; whether they
        changed."""
        changes = self.store.changes_since(self.live.version, conn=conn,
                                           max_rows=len(self.live) // RELOAD_SHARE + 1024)
        if changes.version == self.live.version:
            return False
        if changes.reload or len(changes.row_ids) > len(self.live) // RELOAD_SHARE:
            self.live = self._read_live(self.store, conn)
        else:
            self.live.apply(changes.row_ids, changes.codes, changes.present, changes.version)
        return True

    def _read_live(self, store: Store, conn=None) -> LiveIndex:
        """Search structures built from every stored item (in the snapshot `conn` if given)."""
        version, row_ids, codes = store.snapshot(conn=conn)
        return LiveIndex(self.model.bits, row_ids, codes, version)

    @property
    def features(self) -> KeptFeatures:
        """The index's kept features (for re-ranking); IndexError_ when it keeps none."""
        if self._features is None:
            meta = self.manifest.features if self.manifest is not None else None
            if not meta:
                raise IndexError_(f"the index at {self.directory} keeps no features, so it cannot re-rank; "
                                  f"index the corpus again into a new directory with --keep-features "
                                  f"(`semhash index CORPUS -o NEW_DIR --keep-features`; keep_features=True in "
                                  f"Python), or query without --rerank")
            self._features = KeptFeatures(meta, self.store)
        return self._features

    def _answers(self, query_ids: list[str], results: Results, scores: list[np.ndarray] | None = None,
                 conn=None) -> list["Answer"]:
        """Answers with payloads (one store read for the batch, in the pinned snapshot `conn`); `scores`
        replaces 1 - distance/bits."""
        flat_rows, flat_dist, flat_filled = results.row_ids, results.distances, results.filled
        distinct, where = _distinct(flat_rows) if len(flat_rows) else (flat_rows, flat_rows)
        ext_ids, payloads = self.store.hit_fields(distinct, conn=conn)
        bits = self.model.bits
        if scores is None:
            flat_scores = np.array([round(1.0 - d / bits, 6) for d in range(bits + 1)])[flat_dist]
        else:
            flat_scores = np.concatenate(scores) if scores else np.zeros(0)
        lims = results.lims.tolist()
        group = HitColumns(ext_ids, payloads, where, flat_dist, flat_scores.astype(float), flat_filled)
        return [Answer(qid, int(results.searched[i]), str(results.strategies[i]), group=group,
                       span=(lims[i], lims[i + 1]))
                for i, qid in enumerate(query_ids)]

    # --- description ----------------------------------------------------------------------
    def _empty_bucket(self) -> dict:
        """The code of an all-zero feature row and how many items are stored under it: texts with no
        known word and zero vectors all land there, so a large count means many items that the model
        cannot tell apart."""
        code = self.model.empty_code()
        return {"code": to_hex(code)[0], "items": _bucket_size(self.live.base, code)}

    def info(self) -> dict:
        """Manifest, counts, store version, memory and disk bytes per item, and bucket statistics."""
        self._require_index()
        self.refresh()
        self.live.merge()  # the statistics of the items as they are
        n = len(self.live)
        disk = sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file()
                   and p.parts[len(self.directory.parts)] != MODEL_DIR)
        kept = self.manifest.features
        features = {"kept": False} if not kept else {
            "kept": True, "layout": kept["layout"], "dtype": kept["dtype"], "dim": kept["dim"],
            "rows": self.store.count_features()}
        return {
            "directory": str(self.directory),
            "manifest": asdict(self.manifest),
            "items": n,
            "version": self.live.version,
            "store": self.store.masked_url(),
            "bytes_per_item": {"memory": round(self.live.nbytes() / max(1, n), 2),
                               "disk": round(disk / max(1, n), 2)},
            "buckets": self.live.base.stats(),
            "empty_features": self._empty_bucket(),
            "features": features,
        }


def _bucket_size(buckets, code: np.ndarray) -> int:
    """Items stored under one packed code (1, bytes)."""
    match = np.flatnonzero((buckets.distinct_codes() == code).all(axis=1))
    return int(buckets.sizes()[match[0]]) if len(match) else 0


def _distinct(row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct row ids, and the position of each given row id among them; by a mask and its
    running count over their range where it is small (far faster than a sort and a search)."""
    lo, hi = int(row_ids.min()), int(row_ids.max())
    if hi - lo > 8 * len(row_ids):
        return np.unique(row_ids, return_inverse=True)
    mask = np.zeros(hi - lo + 1, dtype=bool)
    mask[row_ids - lo] = True
    rank = np.cumsum(mask, dtype=np.int64)
    return np.flatnonzero(mask) + lo, rank[row_ids - lo] - 1


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _batch_from_dicts(records: list[dict]) -> Batch:
    if not records:
        raise ConfigError("no records to add")
    if all(isinstance(r, str) for r in records):
        return records_from_strings(records)
    return batch_from_dicts(records)


__all__ = ["Answer", "Engine", "Hit", "DEFAULT_INDEX_DIR", "SemhashError"]
