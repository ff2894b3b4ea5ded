"""The indexer: streams a corpus through the model in batches and writes the codes to the store.

The store is the store of record: each batch is one transaction (items, kept features, the change
log together). The search structures in memory are derived from it (semhash.live).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from .corpus import Batch, Corpus
from .keptfeatures import KeptFeatures
from .model import Model
from .store import Store, UpsertResult


@dataclass
class IndexStats:
    added: int = 0
    replaced: int = 0
    empty: int = 0  # items whose features are all zero (no known word, a zero vector): they share one code
    version: int = 0  # the store's version after the last batch

    @property
    def written(self) -> int:
        return self.added + self.replaced


def write_batch(model: Model, store: Store, batch: Batch, source: str = "the input",
                features: KeptFeatures | None = None) -> tuple[IndexStats, UpsertResult, np.ndarray]:
    """Encode one batch and upsert it into the store (with its kept features, when `features`), in one
    transaction. Returns the counts, what the store did, and the codes."""
    model.check_kind(batch, source)
    X = model.features(batch)
    codes = model.hasher.encode(X)
    res = store.upsert(batch.ids, codes, batch.payloads, batch.labels,
                       features=features.encode(X) if features is not None else None)
    replaced = int(np.count_nonzero(res.replaced))
    stats = IndexStats(added=len(batch) - replaced, replaced=replaced, empty=empty_rows(X), version=res.version)
    return stats, res, codes


def empty_rows(X) -> int:
    """Rows of a feature matrix (sparse or dense) that are all zero."""
    if sp.issparse(X):
        return int(np.count_nonzero(X.getnnz(axis=1) == 0))
    return int(np.count_nonzero(~np.asarray(X).any(axis=1)))


def check_corpus(model: Model, corpus: Corpus) -> int:
    """Validate the whole corpus and check that the model can encode it (kind and width, which the reader
    keeps the same for every record); return the record count. Nothing is written."""
    total = corpus.validate()
    check_batch(model, corpus.first_batch(), corpus.path)
    return total


def check_batch(model: Model, batch: Batch, source: str = "the input") -> None:
    """Raise ModelError unless the model can encode this batch (its kind, and the width of its vectors)."""
    model.check_kind(batch, source)
    head = Batch(ids=batch.ids[:1], texts=None if batch.texts is None else batch.texts[:1],
                 vectors=None if batch.vectors is None else batch.vectors[:1])
    model.features(head)  # raises ModelError for vectors of another width


def index_corpus(model: Model, store: Store, corpus: Corpus, progress: bool = True,
                 total: int | None = None, features: KeptFeatures | None = None) -> IndexStats:
    """Validate the whole corpus (unless `total`, its record count, says that was done), then encode and
    store it batch by batch."""
    if total is None:
        total = corpus.validate()  # a malformed corpus fails before anything is written
    stats = IndexStats()
    with store.bulk_load(), tqdm(total=total, disable=not progress, file=sys.stderr, unit="item", desc="indexing",
                                 dynamic_ncols=True, leave=False) as bar:
        for batch in corpus.batches():
            s = write_batch(model, store, batch, corpus.path, features=features)[0]
            stats.added += s.added
            stats.replaced += s.replaced
            stats.empty += s.empty
            stats.version = s.version
            bar.update(len(batch))
    return stats
