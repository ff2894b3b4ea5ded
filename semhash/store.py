"""The store of record: every indexed item (row id, external id, code, payload, labels) in SQL.

This is the only module that imports SQLAlchemy, and all SQL lives here. Two dialects, each with
one code path: a SQLite file (the default, one per index directory, in WAL mode so that readers
never wait for the writer) or PostgreSQL for a store shared by many processes and machines. A
`namespace` prefixes the table names (``{ns}_items``, ``{ns}_meta``, ...) so that several indexes
can share one database.

Schema (version 2)::

    {ns}_items(row_id BIGINT PRIMARY KEY,    -- assigned by the store, never reused
               ext_id TEXT UNIQUE NOT NULL,  -- the caller's id
               code   BIGINT | BLOB,         -- BIGINT for bits <= 64 (the uint64 key of
                                             --   codes.to_keys read as signed int64), else bytes
               payload TEXT NOT NULL,        -- JSON object
               labels  TEXT NOT NULL)        -- JSON list of strings
    {ns}_meta(key TEXT PRIMARY KEY, value TEXT) -- schema_version, bits, next_row_id, version,
                                                -- log_floor, and callers' keys
    {ns}_log(version BIGINT, row_lo BIGINT,     -- the rows each change touched (the change log),
             row_hi BIGINT)                     --   as runs of consecutive row ids
    {ns}_features(row_id BIGINT PRIMARY KEY,    -- kept features (for re-ranking), encoded by the
                  data BLOB)                    --   caller; written in the same transaction

Writes are one transaction each, and each is one *change*: it bumps the store's `version` and logs
the row ids it touched, so that a reader holding the state as of version v catches up with
`changes_since(v)` (the rows touched since, with their codes now, or none where deleted) instead
of reading everything again. The log keeps the last LOG_KEEP versions; a change of more than
LOG_MAX_ROWS rows is not logged. Either moves `log_floor`, and a reader older than the floor
reloads. Writers are serialized (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a SHARE ROW EXCLUSIVE
table lock, which leaves readers alone), so row ids and the existence checks of an upsert cannot
race; a second writer waits up to `write_timeout` seconds, then gets a StoreError that says so. Bulk paths: PostgreSQL (psycopg 3) loads new
rows with binary COPY and large updates through a temporary table; SQLite uses executemany.
"""
from __future__ import annotations

import gc
import json
import re
from itertools import chain
import sqlite3
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from .codes import check_bits, concat_ranges, from_keys, to_keys
from .errors import SemhashError, StoreError

__all__ = ["Store", "Item", "UpsertResult", "Deleted", "Changes", "MissingItemError", "sqlite_url",
           "SCHEMA_VERSION"]

SCHEMA_VERSION = 2
LOG_KEEP = 10_000         # versions of the change log kept for readers to catch up from
LOG_MAX_ROWS = 200_000    # a change touching more rows is not logged: readers older than it reload
_NAMESPACE_RE = re.compile(r"[a-z_][a-z0-9_]{0,40}")
_RESERVED_META = frozenset({"schema_version", "bits", "next_row_id", "version", "log_floor"})
_JSON_SEP = (",", ":")
_SEP = "\x1f"  # joins ext_ids into one PostgreSQL parameter (string_to_array)


class MissingItemError(StoreError, KeyError):
    """`Store.fetch` was asked for row ids the store does not hold (``.missing`` lists them)."""

    def __init__(self, message: str, missing: Sequence[int] = ()):
        super().__init__(message)
        self.missing = list(missing)

    __str__ = Exception.__str__  # not KeyError's quoted repr


@dataclass(frozen=True)
class Item:
    """One stored item. `code` is the packed code (bits // 8 bytes, most significant bit first)."""

    row_id: int
    ext_id: str
    code: bytes
    payload: dict
    labels: tuple[str, ...]

    @property
    def code_hex(self) -> str:
        return self.code.hex()

    def code_array(self) -> np.ndarray:
        """The code as a (bits // 8,) uint8 array."""
        return np.frombuffer(self.code, dtype=np.uint8).copy()


@dataclass
class UpsertResult:
    """What `Store.upsert` did, aligned with its input: the row id of each item, whether it
    replaced an existing item (same ext_id), and the replaced item's old code (zeros elsewhere)."""

    row_ids: np.ndarray  # (n,) int64
    replaced: np.ndarray  # (n,) bool
    old_codes: np.ndarray  # (n, bits // 8) uint8, meaningful where `replaced`
    version: int = 0       # the store's version after this change

    @property
    def n_added(self) -> int:
        return int(self.replaced.size - np.count_nonzero(self.replaced))

    @property
    def n_replaced(self) -> int:
        return int(np.count_nonzero(self.replaced))


@dataclass
class Deleted:
    """What `Store.delete` removed, ordered by row id: row ids, their codes, the version after."""

    row_ids: np.ndarray  # (m,) int64
    codes: np.ndarray    # (m, bits // 8) uint8
    version: int

    def __iter__(self):  # (row_ids, codes), as a pair
        return iter((self.row_ids, self.codes))

    def __getitem__(self, i):
        return (self.row_ids, self.codes)[i]


@dataclass
class Changes:
    """The rows changed since a version: `row_ids` (sorted, distinct), their codes now where `present`,
    and the version they bring a reader to. `reload` means the log no longer reaches back that far."""

    version: int
    row_ids: np.ndarray   # (m,) int64
    codes: np.ndarray     # (m, bits // 8) uint8, meaningful where present
    present: np.ndarray   # (m,) bool: False for rows deleted since
    reload: bool = False


def sqlite_url(path: str | Path) -> str:
    """SQLAlchemy URL of a SQLite file, with the path made absolute (special characters escaped)."""
    p = Path(path).expanduser().absolute()
    return URL.create("sqlite", database=str(p)).render_as_string(hide_password=False)


def _mask_raw(url: str) -> str:
    """Hide the password of a URL string that SQLAlchemy could not parse."""
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", url)


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serializable")


def _make_json_encoder():
    """A reusable compact JSON encoder: str(obj) -> text. Reusing the C encoder (without circular
    reference checks; a cycle ends in RecursionError) is about twice as fast as json.dumps per call."""
    py = json.JSONEncoder(separators=_JSON_SEP, ensure_ascii=False, default=_json_default).encode
    try:
        from json import encoder as _je
        c = _je.c_make_encoder(None, _json_default, _je.encode_basestring, None, ":", ",", False, False, True)
        sample = {"a": [1, 2.5, None, True, "é\n"], "b": {"c": np.int64(3)}}
        if "".join(c(sample, 0)) != py(sample):
            raise ValueError("C encoder disagrees")
    except Exception:  # no C accelerator, or its private signature changed
        return py
    join = "".join
    return lambda obj: join(c(obj, 0))


_dumps = _make_json_encoder()


_raw_decode = json.JSONDecoder().raw_decode


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: building many small containers (rows, hits) otherwise
    sets off repeated full collections, which cost more than the building (4x for 238,000 rows)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _loads(text: str, kind: type = dict) -> Any:
    """A payload (`dict`) or labels (`list`) value as the store wrote it: compact JSON, parsed without
    json.loads' whitespace handling. StoreError when the stored value is damaged."""
    try:
        obj, end = _raw_decode(text)
        if end != len(text):
            obj = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        obj = None
    if not isinstance(obj, kind):
        raise StoreError(f"the store holds {str(text)[:40]!r} where a JSON {'object' if kind is dict else 'list'} "
                         f"belongs; it is damaged: index the corpus again into a new index")
    return obj


def _int_meta(value: str | None) -> int:
    """A meta value the store writes as a whole number (absent: 0); StoreError when it is damaged."""
    text = (value or "0").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise StoreError(f"the store's meta table holds {value!r} where a version number belongs; it is "
                         f"damaged: index the corpus again into a new index")
    return int(text)


def _runs(row_ids: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted distinct row ids as (first, last) runs of consecutive ids: a batch of new items is one."""
    r = np.unique(np.asarray(row_ids, dtype=np.int64))
    if not len(r):
        return []
    cut = np.flatnonzero(np.diff(r) != 1) + 1
    starts, ends = np.r_[0, cut], np.r_[cut, len(r)] - 1
    return list(zip(r[starts].tolist(), r[ends].tolist()))


def _log_runs(rows: list) -> np.ndarray | None:
    """The change log's (row_lo, row_hi) runs as an (n, 2) array; None when a row is damaged (not whole
    numbers, a negative or reversed run, or one longer than a logged change can be)."""
    try:
        runs = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    except (ValueError, TypeError, OverflowError):
        return None
    if len(runs) and ((runs[:, 0] < 0).any() or (runs[:, 1] < runs[:, 0]).any()
                      or (runs[:, 1] - runs[:, 0] >= LOG_MAX_ROWS).any()):
        return None
    return runs


def _query(conn: sa.Connection, sql: str) -> list[tuple]:
    """Rows of one SQL statement run straight through the DBAPI cursor (no Row objects); callers inline
    only integers and quoted table names."""
    cur = conn.connection.cursor()
    try:
        cur.execute(sql)
        return cur.fetchall()
    finally:
        cur.close()


def _is_lock_timeout(e: BaseException) -> bool:
    """Whether a driver error says that a writer waited too long for another's lock."""
    orig = getattr(e, "orig", e)
    return (getattr(orig, "sqlstate", None) == "55P03"
            or (isinstance(orig, sqlite3.OperationalError) and "database is locked" in str(orig)))


def _chunks(seq: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


class Store:
    """SQL store of record for one index: items keyed by row id, unique by external id.

    `url`: any SQLAlchemy URL (``sqlite:///path/items.db``, ``postgresql://user@host/db``; a plain
    ``postgresql://`` URL uses psycopg 3). `bits`: code length (a multiple of 8); None opens an
    existing store with whatever length it holds. `create=False` refuses to create missing tables.
    `connect_timeout`: seconds to wait for a database server (PostgreSQL) before giving up.
    `write_timeout`: seconds a writer waits for another process's write to finish before giving up.
    """

    #: largest number of values bound in one IN / ANY clause, per backend (tests shrink these)
    _in_chunk = 1000
    #: PostgreSQL: updates of at least this many rows go through COPY into a temporary table
    _bulk_update_min = 2000
    _json_each = False

    def __init__(self, url: str | URL, bits: int | None, namespace: str = "semhash", create: bool = True,
                 *, connect_timeout: float = 10, write_timeout: float = 60):
        if not isinstance(namespace, str) or not _NAMESPACE_RE.fullmatch(namespace):
            raise StoreError(f"invalid store namespace {namespace!r}: use 1 to 41 characters from a-z, 0-9 "
                             f"and _, not starting with a digit (e.g. 'semhash' or 'news_2024')")
        if bits is not None:
            try:
                bits = check_bits(bits)
            except SemhashError as e:
                raise StoreError(str(e)) from None
        self.namespace = namespace
        self.write_timeout = float(write_timeout)
        self._url = self._parse_url(url)
        self._masked = self._url.render_as_string(hide_password=True)
        self._engine = self._make_engine(create, connect_timeout)
        dialect = self._engine.dialect
        self._sqlite = dialect.name == "sqlite"
        self._pg = dialect.name == "postgresql"
        if not (self._sqlite or self._pg):
            self._engine.dispose()
            raise StoreError(f"unsupported database {self._masked}: semhash stores items in SQLite or PostgreSQL "
                             f"(e.g. 'sqlite:///path/items.db' or 'postgresql://user@host/dbname')")
        self._copy = self._pg and dialect.driver == "psycopg"
        self._param = "?" if self._sqlite else "%s"  # the driver's placeholder
        # errors raised by the driver itself (raw cursors, COPY) are not wrapped by SQLAlchemy
        self._driver_errors = (sa_exc.DBAPIError, getattr(dialect.loaded_dbapi, "Error", sa_exc.DBAPIError))
        if self._sqlite:
            self._in_chunk = 30_000 if sqlite3.sqlite_version_info >= (3, 32) else 900
            self._json_each = sqlite3.sqlite_version_info >= (3, 38)  # JSON functions built in
        elif self._pg:
            self._in_chunk = 50_000
        self.bits = bits  # provisional until the meta table is read
        try:
            self._open(create)
        except BaseException:
            self._engine.dispose()
            raise

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _parse_url(url: str | URL) -> URL:
        if isinstance(url, URL):
            u = url
        else:
            try:
                u = make_url(str(url))
            except (sa_exc.ArgumentError, ValueError):
                raise StoreError(
                    f"not a database URL: {_mask_raw(str(url))!r}; give a SQLAlchemy URL such as "
                    f"'sqlite:///path/to/items.db' or 'postgresql://user@host:5432/dbname'") from None
        if u.drivername in ("postgresql", "postgres"):
            u = u.set(drivername="postgresql+psycopg")
        return u

    def _make_engine(self, create: bool, connect_timeout: float) -> sa.Engine:
        u = self._url
        kwargs: dict[str, Any] = {}
        backend = u.get_backend_name()
        if backend == "sqlite":
            db = u.database or ""
            if db and db != ":memory:" and not db.startswith("file:") and "mode=memory" not in str(u.query):
                path = Path(db)
                if not create and not path.exists():
                    raise StoreError(f"no database file at {path} ({self._masked}); build the index first, "
                                     f"or check the path")
                if create:
                    try:
                        path.parent.mkdir(parents=True, exist_ok=True)
                    except OSError as e:
                        raise StoreError(f"cannot create the directory of {self._masked} ({e.strerror}); "
                                         f"choose a writable location") from None
        elif backend == "postgresql":
            kwargs["pool_pre_ping"] = True
            if "connect_timeout" not in u.query and u.get_driver_name() in ("psycopg", "psycopg2"):
                kwargs["connect_args"] = {"connect_timeout": max(1, int(round(connect_timeout)))}
        try:
            engine = sa.create_engine(u, **kwargs)
        except sa_exc.NoSuchModuleError as e:
            raise StoreError(f"unsupported database URL {self._masked}: {e}; use e.g. 'sqlite:///path/items.db' "
                             f"or 'postgresql://user@host/dbname'") from None
        except ImportError as e:
            hint = ("pip install 'psycopg[binary]' (or semhash[postgres])" if backend == "postgresql"
                    else "install the driver that the URL names")
            raise StoreError(f"the database driver for {self._masked} is not installed ({e}); {hint}") from None
        except sa_exc.ArgumentError as e:
            raise StoreError(f"bad database URL {self._masked}: {e}") from None
        if engine.dialect.name == "sqlite":
            self._sqlite_events(engine)
        return engine

    @staticmethod
    def _sqlite_events(engine: sa.Engine) -> None:
        # Take transaction control from pysqlite (SQLAlchemy's documented recipe) so that reads are
        # inside transactions too and writers can start with BEGIN IMMEDIATE.
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every SQLite test
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # WAL: readers keep reading their snapshot while one writer commits (the mode is stored in
            # the file; setting it again is a no-op)
            try:
                cur.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError:  # a read-only file or directory: readers still work
                pass
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache (at most; used as pages are read)
            cur.execute("PRAGMA wal_autocheckpoint=8192")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover
            wait_ms = conn.get_execution_options().get("semhash_write")
            if wait_ms is not None:  # a writer waits for another one up to the store's write_timeout
                conn.exec_driver_sql(f"PRAGMA busy_timeout={int(wait_ms)}")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if wait_ms is not None
                                 else "BEGIN")

    def _tables(self, bits: int) -> None:
        ns = self.namespace
        md = sa.MetaData()
        row_id_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: the rowid itself
        code_type = sa.BigInteger() if bits <= 64 else sa.LargeBinary()
        self._md = md
        self._items = sa.Table(
            f"{ns}_items", md,
            sa.Column("row_id", row_id_type, primary_key=True, autoincrement=False),
            sa.Column("ext_id", sa.Text(), nullable=False),
            sa.Column("code", code_type, nullable=False),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("labels", sa.Text(), nullable=False),
            sa.UniqueConstraint("ext_id", name=f"{ns}_items_ext_id_key"),
            sa.Index(f"{ns}_items_code_idx", "code"),
        )
        self._meta = sa.Table(
            f"{ns}_meta", md,
            sa.Column("key", sa.Text(), primary_key=True),
            sa.Column("value", sa.Text(), nullable=True),
        )
        self._log = sa.Table(
            f"{ns}_log", md,
            sa.Column("version", sa.BigInteger(), nullable=False),
            sa.Column("row_lo", sa.BigInteger(), nullable=False),
            sa.Column("row_hi", sa.BigInteger(), nullable=False),
            sa.Index(f"{ns}_log_version_idx", "version"),
        )
        self._features = sa.Table(
            f"{ns}_features", md,
            sa.Column("row_id", row_id_type, primary_key=True, autoincrement=False),
            sa.Column("data", sa.LargeBinary(), nullable=False),
        )
        q = self._engine.dialect.identifier_preparer.quote
        self._items_q, self._meta_q = q(self._items.name), q(self._meta.name)
        self._code_index_q = q(f"{ns}_items_code_idx")
        self._first_load = False  # inside bulk_load() of a store that held no item
        self._log_q, self._features_q = q(self._log.name), q(self._features.name)
        self._nbytes = bits // 8

    def _open(self, create: bool) -> None:
        """Read the meta table (a read transaction: opening never waits for a writer); create the tables,
        or bring an older schema up to date, under the write lock only when needed."""
        if self._read_meta() is not None and self._schema_version >= SCHEMA_VERSION:
            return
        ns = self.namespace
        items_name, meta_name = f"{ns}_items", f"{ns}_meta"
        for attempt in range(2):
            with self._transaction(write=True, doing="opening the store") as conn:
                insp = sa.inspect(conn)
                has_items, has_meta = insp.has_table(items_name), insp.has_table(meta_name)
                meta = sa.table(meta_name, sa.column("key"), sa.column("value"))
                if has_items and has_meta:
                    self._check_meta(dict(conn.execute(sa.select(meta.c.key, meta.c.value)).all()))
                    self._lock(conn)
                    if self._schema_version < SCHEMA_VERSION:
                        self._migrate(conn)
                    return
                if has_items or has_meta:
                    present, absent = (items_name, meta_name) if has_items else (meta_name, items_name)
                    raise StoreError(f"incomplete store in {self._masked}: table {present} exists but {absent} "
                                     f"does not; drop {present} or use another namespace")
                if not create:
                    raise StoreError(f"no semhash store with namespace {ns!r} in {self._masked}; build the index "
                                     f"first, or check the URL and the namespace")
                if self.bits is None:
                    raise StoreError("bits must be given to create a new store")
                self._tables(self.bits)
                try:
                    with conn.begin_nested() if self._pg else nullcontext():
                        self._md.create_all(conn)
                except sa_exc.DBAPIError:
                    if attempt == 0 and self._pg:  # another process created it at the same moment
                        continue
                    raise
                conn.execute(self._meta.insert(), [
                    {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                    {"key": "bits", "value": str(self.bits)},
                    {"key": "next_row_id", "value": "0"},
                    {"key": "version", "value": "0"},
                    {"key": "log_floor", "value": "0"},
                ])
                self._schema_version = SCHEMA_VERSION
                return

    def _read_meta(self) -> dict | None:
        """The meta table as a dict, checked, when both tables exist; None otherwise."""
        ns = self.namespace
        with self._transaction(doing="opening the store") as conn:
            insp = sa.inspect(conn)
            if not (insp.has_table(f"{ns}_items") and insp.has_table(f"{ns}_meta")):
                return None
            meta = sa.table(f"{ns}_meta", sa.column("key"), sa.column("value"))
            stored = dict(conn.execute(sa.select(meta.c.key, meta.c.value)).all())
        self._check_meta(stored)
        return stored

    def _migrate(self, conn: sa.Connection) -> None:
        """Schema 1 -> 2: the change log and the features table; the version starts at 0 with the log
        floor there (a reader of a version-1 store has read it whole)."""
        self._md.create_all(conn, tables=[self._log, self._features], checkfirst=True)
        m = self._meta
        for key, value in (("version", "0"), ("log_floor", "0")):
            if conn.execute(sa.select(m.c.value).where(m.c.key == key)).first() is None:
                conn.execute(m.insert().values(key=key, value=value))
        conn.execute(m.update().where(m.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
        self._schema_version = SCHEMA_VERSION

    def _check_meta(self, stored: dict[str, str]) -> None:
        try:
            version = int(stored["schema_version"])
            bits = check_bits(int(stored["bits"]))
        except (KeyError, ValueError, TypeError, SemhashError):
            raise StoreError(f"the store {self.namespace!r} in {self._masked} has no valid schema_version/bits "
                             f"in its meta table; it was not written by semhash, or is damaged") from None
        if version > SCHEMA_VERSION:
            raise StoreError(f"the store {self.namespace!r} in {self._masked} has schema version {version}, newer "
                             f"than this semhash reads ({SCHEMA_VERSION}); upgrade semhash")
        self._schema_version = version
        if self.bits is not None and bits != self.bits:
            raise StoreError(f"the store {self.namespace!r} in {self._masked} holds {bits}-bit codes, not "
                             f"{self.bits}; use a model with {bits} bits, another namespace, or rebuild the index")
        self.bits = bits
        self._tables(bits)

    # ------------------------------------------------------------ plumbing
    def _connect(self) -> sa.Connection:
        try:
            return self._engine.connect()
        except self._driver_errors as e:
            if self._sqlite:
                hint = "check that the file is a SQLite database in a directory you can write to"
            else:
                hint = ("check that the database server is running and reachable at that host and port, and "
                        "that the database and user exist (or give another URL)")
            raise StoreError(f"cannot connect to the database {self._masked}: {_first_line(e)}; {hint}") from e

    @contextmanager
    def _transaction(self, write: bool = False, doing: str = "using the store", snapshot: bool = False
                     ) -> Iterator[sa.Connection]:
        conn = self._connect()
        try:
            if write and self._sqlite:
                conn.execution_options(semhash_write=max(1, int(self.write_timeout * 1000)))
            elif snapshot and self._pg:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
        except self._driver_errors as e:
            if _is_lock_timeout(e):
                raise StoreError(f"another process is writing to the store {self._masked} and did not finish "
                                 f"within {self.write_timeout:g} s; try again when it is done (one writer at a "
                                 f"time; readers are never blocked)") from e
            raise StoreError(f"database error while {doing} in {self._masked}: {_first_line(e)}") from e
        finally:
            conn.close()

    @contextmanager
    def pinned(self) -> Iterator[sa.Connection]:
        """A read transaction on one snapshot of the store: reads given this connection (`conn=`) all see
        the same committed state, whatever writers commit meanwhile."""
        with self._transaction(doing="reading the store", snapshot=True) as conn:
            yield conn

    def _reading(self, conn: sa.Connection | None, doing: str):
        """The given connection (a pinned snapshot), or a new snapshot transaction."""
        return nullcontext(conn) if conn is not None else self._transaction(doing=doing, snapshot=True)

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Upserts of a first load into a store that has never held an item are faster inside this:
        the index on `code` (kept for SQL lookups by code; semhash itself reads by row id and ext_id) is
        dropped and built once at the end, and batches are inserted without first looking up their
        ids. Each batch is still its own transaction, and an id stored twice still replaces the first:
        a batch that breaks the unique ext_id constraint is rolled back to its savepoint and stored the
        usual way. 1,000,000 Fashion-MNIST vectors (scripts/bench_index.py): SQLite's inserts and
        commits 4.7 s before, see the README for after. A store left without its code index (a crash
        in a first load) gets it back at the next bulk load."""
        with self._transaction(write=True, doing="preparing to load the store") as conn:
            self._lock(conn)
            first = self._write_state(conn)["next_row_id"] == 0
            if first:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {self._code_index_q}")
        self._first_load = first
        try:
            yield
        finally:
            self._first_load = False
            with self._transaction(write=True, doing="indexing the stored codes") as conn:
                self._lock(conn)
                conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {self._code_index_q} ON {self._items_q} (code)")

    def _lock(self, conn: sa.Connection) -> None:
        """Serialize writers on PostgreSQL (SQLite already holds BEGIN IMMEDIATE's write lock); a writer
        waits for another at most `write_timeout` seconds."""
        if self._pg:  # two statements, no parameters: one round trip
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, int(self.write_timeout * 1000))}; "
                                 f"LOCK TABLE {self._items_q} IN SHARE ROW EXCLUSIVE MODE")

    def _write_state(self, conn: sa.Connection) -> dict[str, int]:
        """A writer's view of the store, in one query: the next row id (the meta value, or past the largest
        row id if that is higher), the version and the log floor."""
        values = dict(_query(conn, f"SELECT key, value FROM {self._meta_q} WHERE key IN ('next_row_id', 'version', "
                                   f"'log_floor') UNION ALL SELECT 'top', CAST(max(row_id) AS TEXT) FROM {self._items_q}"))
        top = values.get("top")
        return {"next_row_id": max(_int_meta(values.get("next_row_id")), -1 if top is None else int(top) + 1),
                "version": _int_meta(values.get("version")), "log_floor": _int_meta(values.get("log_floor"))}

    def _log_change(self, conn: sa.Connection, state: dict[str, int], row_ids: Sequence[int],
                    next_row_id: int | None = None) -> int:
        """Make this transaction's write one change: bump the version, log the rows it touched, trim the
        log to the last LOG_KEEP versions, store the next row id. Returns the new version."""
        version, floor = state["version"] + 1, state["log_floor"]
        rids = list(row_ids)
        p = self._param
        if len(rids) > LOG_MAX_ROWS:
            floor = version  # too large to log: readers behind it read the store again
            rids = []
        runs = _runs(rids)
        if self._sqlite and runs:
            conn.exec_driver_sql(f"INSERT INTO {self._log_q} (version, row_lo, row_hi) VALUES (?, ?, ?)",
                                 [(version, lo, hi) for lo, hi in runs])
        if version - LOG_KEEP > floor and version % 64 == 0:
            floor = version - LOG_KEEP
        if floor != state["log_floor"]:
            conn.exec_driver_sql(f"DELETE FROM {self._log_q} WHERE version <= {int(floor)}")
        new = (str(version), str(floor), str(state["next_row_id"] if next_row_id is None else next_row_id))
        update = (f"UPDATE {self._meta_q} SET value = CASE key WHEN 'version' THEN {p} WHEN 'log_floor' THEN {p} "
                  f"ELSE {p} END WHERE key IN ('version', 'log_floor', 'next_row_id')")
        if self._pg and runs:  # the log rows and the meta update in one statement (one round trip)
            conn.exec_driver_sql(f"WITH logged AS (INSERT INTO {self._log_q} (version, row_lo, row_hi) "
                                 f"SELECT %s, unnest(%s::bigint[]), unnest(%s::bigint[])) {update}",
                                 (version, "{" + ",".join(str(r[0]) for r in runs) + "}",
                                  "{" + ",".join(str(r[1]) for r in runs) + "}", *new))
        else:
            conn.exec_driver_sql(update, new)
        return version

    def _select_in(self, conn: sa.Connection, columns: Sequence[str], key: str, values: Sequence,
                   table_q: str | None = None) -> list[tuple]:
        """Rows (as tuples of `columns`) of the items table (or `table_q`) whose `key` column ('ext_id' or
        'row_id') is one of `values`: one query per chunk of values, straight through the DBAPI cursor."""
        if not len(values):
            return []
        head = f"SELECT {', '.join(columns)} FROM {table_q or self._items_q} WHERE {key}"
        out = []
        cur = conn.connection.cursor()
        try:
            for chunk in _chunks(values, self._in_chunk):
                if self._sqlite and key == "row_id" and self._json_each:  # one parameter, not one per value
                    cur.execute(f"{head} IN (SELECT value FROM json_each(?))", ("[" + ",".join(map(str, chunk)) + "]",))
                elif self._sqlite:
                    cur.execute(f"{head} IN ({','.join('?' * len(chunk))})", list(chunk))
                elif key == "row_id":  # integers: a bigint[] literal, no per-element adaptation
                    cur.execute(f"{head} = ANY(%s::bigint[])", ("{" + ",".join(map(str, chunk)) + "}",))
                else:
                    joined = _SEP.join(chunk)
                    if joined.count(_SEP) == len(chunk) - 1 and "" not in chunk:
                        cur.execute(f"{head} = ANY(string_to_array(%s, E'\\x1f'))", (joined,))
                    else:  # ids that contain the separator: let psycopg build the text[]
                        cur.execute(f"{head} = ANY(%s)", (list(chunk),))
                out += cur.fetchall()
        finally:
            cur.close()
        return out

    def _code_values(self, codes: np.ndarray) -> list:
        """Packed codes -> database values (signed int64 keys, or bytes)."""
        if self.bits <= 64:
            return to_keys(codes).view(np.int64).tolist()
        raw = np.ascontiguousarray(codes).tobytes()
        nb = self._nbytes
        return [raw[i:i + nb] for i in range(0, len(raw), nb)]

    @staticmethod
    def _norm(value: Any) -> Any:
        """A code value as read back, comparable with `_code_values` output (bytes, not memoryview)."""
        return bytes(value) if isinstance(value, (memoryview, bytearray)) else value

    def _codes_from_values(self, values: Sequence) -> np.ndarray:
        """Database values -> packed (n, bits // 8) uint8 codes."""
        nb = self._nbytes
        if not len(values):
            return np.zeros((0, nb), dtype=np.uint8)
        if self.bits <= 64:
            try:
                keys = np.asarray(values, dtype=np.int64).view(np.uint64)
            except (TypeError, ValueError, OverflowError):
                raise self._damaged() from None
            return self._codes_of_keys(keys)
        raw = b"".join(bytes(v) for v in values)
        if len(raw) != nb * len(values):
            raise StoreError(f"the store {self.namespace!r} in {self._masked} holds codes that are not "
                             f"{self.bits} bits long; it is damaged")
        return np.frombuffer(raw, dtype=np.uint8).reshape(-1, nb).copy()

    def _codes_of_keys(self, keys: np.ndarray) -> np.ndarray:
        """Packed codes of stored values (as uint64) of codes of at most 64 bits, each below 2**bits."""
        if self.bits < 64 and len(keys) and (keys >> np.uint64(self.bits)).any():
            raise self._damaged()
        return from_keys(keys, self.bits)

    def _damaged(self) -> StoreError:
        return StoreError(f"the store {self.namespace!r} in {self._masked} holds a row id or code that is not a "
                          f"number of the right size; it is damaged: index the corpus again into a new index")

    def _check_codes(self, codes: Any, n: int) -> np.ndarray:
        c = np.asarray(codes)
        if c.ndim != 2 or c.shape != (n, self._nbytes):
            raise StoreError(f"codes must be an ({n}, {self._nbytes}) uint8 array of packed {self.bits}-bit "
                             f"codes, got shape {c.shape}")
        if c.dtype != np.uint8:
            if c.dtype.kind not in "iub" or (c.size and (c.min() < 0 or c.max() > 255)):
                raise StoreError(f"codes must be packed uint8, got dtype {c.dtype}")
            c = c.astype(np.uint8)
        return np.ascontiguousarray(c)

    @staticmethod
    def _check_ext_ids(ext_ids: Iterable) -> list[str]:
        ids = list(ext_ids)
        for e in ids:
            if not isinstance(e, str):
                raise StoreError(f"item ids must be strings, got {type(e).__name__} {e!r}")
        return ids

    # ------------------------------------------------------------- public API
    def __repr__(self) -> str:
        return f"Store({self._masked!r}, bits={self.bits}, namespace={self.namespace!r})"

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def masked_url(self) -> str:
        """The database URL with any password replaced by ***."""
        return self._masked

    @property
    def url(self) -> URL:
        return self._url

    @property
    def backend(self) -> str:
        """The SQLAlchemy dialect name: 'sqlite', 'postgresql', ..."""
        return self._engine.dialect.name

    def count(self) -> int:
        with self._transaction(doing="counting items") as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self._items)).scalar())

    def upsert(self, ext_ids: Sequence[str], codes: np.ndarray, payloads: Sequence[dict | None] | None = None,
               labels: Sequence[Sequence[str] | str | None] | None = None,
               features: Sequence[bytes] | None = None) -> UpsertResult:
        """Add items, or replace those whose ext_id is already stored (they keep their row id).

        `codes`: (n, bits // 8) packed uint8. `payloads`: JSON-serializable dicts (None -> {}).
        `labels`: a tuple of strings per item (a plain string is one label). `features`: kept features,
        one encoded blob per item (stored by row id). One transaction, one change (see `changes_since`)."""
        ids = self._check_ext_ids(ext_ids)
        n = len(ids)
        c = self._check_codes(codes, n)
        if payloads is None:
            payloads = [None] * n
        if labels is None:
            labels = [None] * n
        if len(payloads) != n or len(labels) != n or (features is not None and len(features) != n):
            raise StoreError(f"upsert got {n} ids but {len(payloads)} payloads and {len(labels)} label tuples")
        if len(set(ids)) != n:
            seen: set[str] = set()
            dups = sorted({e for e in ids if e in seen or seen.add(e)})
            more = f" and {len(dups) - 5} more" if len(dups) > 5 else ""
            raise StoreError(f"duplicate item ids in one upsert: {', '.join(map(repr, dups[:5]))}{more}; "
                             f"each id may appear once per batch")
        pay_json = self._payload_json(ids, payloads)
        lab_json = self._labels_json(labels)
        values = self._code_values(c)

        row_ids = np.empty(n, dtype=np.int64)
        replaced = np.zeros(n, dtype=bool)
        old_codes = np.zeros((n, self._nbytes), dtype=np.uint8)
        if n == 0:
            return UpsertResult(row_ids, replaced, old_codes)
        with self._transaction(write=True, doing="storing items") as conn:
            self._lock(conn)
            state = self._write_state(conn)
            next_id = state["next_row_id"]
            # no lookup of ids that cannot be there (an empty store has next row id 0), or that are most
            # likely new (later batches of a first load: the unique constraint tells otherwise)
            rows = list(zip(range(next_id, next_id + n), ids, values, pay_json, lab_json))
            inserted = self._first_load and self._inserted_new(conn, rows)
            if inserted or next_id == 0:
                existing = {}
            else:
                existing = {r[0]: r[1:] for r in self._select_in(conn, ("ext_id", "row_id", "code", "payload",
                                                                        "labels"), "ext_id", ids)}
            if not existing:  # all new
                row_ids[:] = np.arange(next_id, next_id + n, dtype=np.int64)
                if not inserted:
                    self._insert_rows(conn, rows)
                next_id += n
            else:
                hits = [existing.get(e) for e in ids]
                new_pos = [i for i, h in enumerate(hits) if h is None]
                old_pos = [i for i, h in enumerate(hits) if h is not None]
                if new_pos:
                    new_ids = range(next_id, next_id + len(new_pos))
                    row_ids[new_pos] = np.asarray(new_ids, dtype=np.int64)
                    self._insert_rows(conn, [(rid, ids[i], values[i], pay_json[i], lab_json[i])
                                             for rid, i in zip(new_ids, new_pos)])
                    next_id += len(new_pos)
                old_rids = [hits[i][0] for i in old_pos]
                row_ids[old_pos] = np.asarray(old_rids, dtype=np.int64)
                replaced[old_pos] = True
                old_codes[old_pos] = self._codes_from_values([hits[i][1] for i in old_pos])
                changed = [(hits[i][0], values[i], pay_json[i], lab_json[i]) for i in old_pos
                           if self._norm(hits[i][1]) != values[i] or hits[i][2] != pay_json[i]
                           or hits[i][3] != lab_json[i]]
                if changed:  # rows stored again unchanged are not rewritten
                    self._update_rows(conn, changed)
            if features is not None:
                self._put_features(conn, row_ids.tolist(), features)
            version = self._log_change(conn, state, row_ids.tolist(), next_id)
        return UpsertResult(row_ids, replaced, old_codes, version)

    def _put_features(self, conn: sa.Connection, row_ids: list[int], blobs: Sequence[bytes]) -> None:
        rows = [(r, bytes(b)) for r, b in zip(row_ids, blobs)]
        if self._sqlite:
            conn.exec_driver_sql(f"INSERT OR REPLACE INTO {self._features_q} (row_id, data) VALUES (?, ?)", rows)
        elif len(rows) < 64:
            conn.exec_driver_sql(f"INSERT INTO {self._features_q} (row_id, data) VALUES (%s, %s) "
                                 f"ON CONFLICT (row_id) DO UPDATE SET data = EXCLUDED.data", rows)
        else:
            self._delete_rows(conn, self._features_q, row_ids)
            with conn.connection.driver_connection.cursor() as cur:
                with cur.copy(f"COPY {self._features_q} (row_id, data) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["int8", "bytea"])
                    for r in rows:
                        cp.write_row(r)

    def features(self, row_ids: np.ndarray, conn: sa.Connection | None = None) -> dict[int, bytes]:
        """The kept feature blobs of these row ids (those that have some), by row id."""
        wanted = np.unique(np.asarray(row_ids, dtype=np.int64)).tolist()
        out: dict[int, bytes] = {}
        with self._reading(conn, "reading kept features") as conn:
            for chunk in _chunks(wanted, min(10_000, self._in_chunk)):
                rows = self._select_in(conn, ("row_id", "data"), "row_id", chunk, self._features_q)
                out.update((int(r), bytes(d)) for r, d in rows)
        return out

    def count_features(self) -> int:
        """How many stored items have kept features."""
        with self._transaction(doing="counting kept features") as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self._features)).scalar())

    def _delete_rows(self, conn: sa.Connection, table_q: str, row_ids: list[int]) -> None:
        cur = conn.connection.cursor()
        try:
            for chunk in _chunks(row_ids, self._in_chunk):
                if self._sqlite:
                    cur.execute(f"DELETE FROM {table_q} WHERE row_id IN ({','.join('?' * len(chunk))})", chunk)
                else:
                    cur.execute(f"DELETE FROM {table_q} WHERE row_id = ANY(%s::bigint[])",
                                ("{" + ",".join(map(str, chunk)) + "}",))
        finally:
            cur.close()

    @staticmethod
    def _payload_json(ids: Sequence[str], payloads: Sequence[dict | None]) -> list[str]:
        out = []
        append = out.append
        for e, p in zip(ids, payloads):
            if type(p) is dict:
                if not p:  # most items carry no payload
                    append("{}")
                    continue
                try:
                    append(_dumps(p))
                except (TypeError, ValueError, RecursionError) as err:
                    raise StoreError(f"the payload of item {e!r} cannot be stored as JSON: {err}") from None
            elif p is None:
                append("{}")
            elif isinstance(p, dict):
                append(_dumps(dict(p)))
            else:
                raise StoreError(f"the payload of item {e!r} must be a dict, got {type(p).__name__}")
        return out

    @staticmethod
    def _labels_json(labels: Sequence) -> list[str]:
        cache: dict[Any, str] = {}
        out = []
        append = out.append
        for lab in labels:
            try:
                text, hashable = cache.get(lab), True
            except TypeError:  # unhashable (a list)
                text, hashable = None, False
            if text is None:
                if lab is None:
                    text = "[]"
                elif isinstance(lab, str):
                    text = _dumps([lab])
                else:
                    text = _dumps([str(x) for x in lab])
                if hashable:
                    cache[lab] = text
            append(text)
        return out

    def _inserted_new(self, conn: sa.Connection, rows: list[tuple]) -> bool:
        """Insert rows (row_id, ext_id, code, payload, labels) that are probably all new, under a
        savepoint: True if they were, False (and nothing inserted) if an ext_id was already stored."""
        try:
            with conn.begin_nested():
                self._insert_rows(conn, rows)
            return True
        except sa_exc.IntegrityError:
            return False

    def _insert_rows(self, conn: sa.Connection, rows: list[tuple]) -> None:
        """rows: (row_id, ext_id, code, payload, labels)."""
        if self._copy and len(rows) >= 64:  # COPY pays off beyond a few rows
            types = ["int8", "text", "int8" if self.bits <= 64 else "bytea", "text", "text"]
            with conn.connection.driver_connection.cursor() as cur:
                with cur.copy(f"COPY {self._items_q} (row_id, ext_id, code, payload, labels) "
                              f"FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(types)
                    for r in rows:
                        cp.write_row(r)
        else:
            conn.exec_driver_sql(f"INSERT INTO {self._items_q} (row_id, ext_id, code, payload, labels) "
                                 f"VALUES ({', '.join([self._param] * 5)})", rows)

    def _update_rows(self, conn: sa.Connection, rows: list[tuple]) -> None:
        """rows: (row_id, code, payload, labels)."""
        if self._copy and len(rows) >= self._bulk_update_min:
            code_sql = "BIGINT" if self.bits <= 64 else "BYTEA"
            tmp = "semhash_upsert_tmp"
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {tmp} (row_id BIGINT, code {code_sql}, payload TEXT, "
                                 f"labels TEXT) ON COMMIT DROP")
            with conn.connection.driver_connection.cursor() as cur:
                with cur.copy(f"COPY {tmp} (row_id, code, payload, labels) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["int8", "int8" if self.bits <= 64 else "bytea", "text", "text"])
                    for r in rows:
                        cp.write_row(r)
            conn.exec_driver_sql(f"UPDATE {self._items_q} AS t SET code = u.code, payload = u.payload, "
                                 f"labels = u.labels FROM {tmp} AS u WHERE t.row_id = u.row_id")
            conn.exec_driver_sql(f"DROP TABLE {tmp}")
        else:
            p = self._param
            conn.exec_driver_sql(f"UPDATE {self._items_q} SET code = {p}, payload = {p}, labels = {p} "
                                 f"WHERE row_id = {p}", [(c, pay, lab, rid) for rid, c, pay, lab in rows])

    def delete(self, ext_ids: Sequence[str]) -> Deleted:
        """Remove the items with these ext_ids (and their kept features); unknown ids are ignored.
        Returns the removed items' row ids and codes, ordered by row id (unpacks as a pair), and the
        version after. One transaction, one change (none when nothing was removed)."""
        ids = list(dict.fromkeys(self._check_ext_ids(ext_ids)))
        none = Deleted(np.zeros(0, dtype=np.int64), np.zeros((0, self._nbytes), dtype=np.uint8), 0)
        if not ids:
            return none
        with self._transaction(write=True, doing="deleting items") as conn:
            self._lock(conn)
            found = sorted(self._select_in(conn, ("row_id", "code"), "ext_id", ids))
            rids = [r[0] for r in found]
            if not rids:
                return none
            self._delete_rows(conn, self._items_q, rids)
            self._delete_rows(conn, self._features_q, rids)
            version = self._log_change(conn, self._write_state(conn), rids)
        return Deleted(np.asarray(rids, dtype=np.int64), self._codes_from_values([r[1] for r in found]), version)

    def _pages(self, conn: sa.Connection, columns: str, chunk: int) -> Iterator[list[tuple]]:
        """Every item's `columns` (the first being row_id), `chunk` rows at a time in row-id order."""
        last = None
        while True:
            where = "" if last is None else f" WHERE row_id > {int(last)}"
            rows = _query(conn, f"SELECT {columns} FROM {self._items_q}{where} ORDER BY row_id LIMIT {int(chunk)}")
            if not rows:
                return
            yield rows
            if len(rows) < chunk:
                return
            last = rows[-1][0]

    def _read_codes(self, conn: sa.Connection, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for rows in self._pages(conn, "row_id, code", chunk):
            m = len(rows)
            try:
                if self.bits <= 64:
                    flat = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=2 * m).reshape(m, 2)
                    rids, codes = flat[:, 0].copy(), self._codes_of_keys(flat[:, 1].view(np.uint64))
                else:
                    rids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=m)
                    codes = self._codes_from_values([r[1] for r in rows])
            except (TypeError, ValueError, OverflowError):
                raise self._damaged() from None
            yield rids, codes

    def all_codes(self, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
        """Every stored (row_ids int64 (n,), codes uint8 (n, bits // 8)), ordered by row id."""
        return self.snapshot(chunk)[1:]

    def snapshot(self, chunk: int = 100_000, conn: sa.Connection | None = None) -> tuple[int, np.ndarray, np.ndarray]:
        """(version, row ids, codes) of every stored item, read in one snapshot: the state a reader starts
        from and then follows with `changes_since(version)`."""
        if chunk < 1:
            raise StoreError(f"chunk must be positive, got {chunk}")
        with self._reading(conn, "reading codes") as conn:
            version = self._version(conn)
            parts = list(self._read_codes(conn, chunk))
        if not parts:
            return version, np.zeros(0, dtype=np.int64), np.zeros((0, self._nbytes), dtype=np.uint8)
        return version, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _version(self, conn: sa.Connection, key: str = "version") -> int:
        return self._versions(conn)[0 if key == "version" else 1]

    def _versions(self, conn: sa.Connection) -> tuple[int, int]:
        """(version, log_floor), in one query straight through the DBAPI cursor (a reader asks before
        every answer, so SQLAlchemy's statement building would cost more than the query)."""
        values = dict(_query(conn, f"SELECT key, value FROM {self._meta_q} WHERE key IN ('version', 'log_floor')"))
        return _int_meta(values.get("version")), _int_meta(values.get("log_floor"))

    def version(self) -> int:
        """The number of the last committed change (0 for a new store)."""
        with self._transaction(doing="reading the store version") as conn:
            return self._version(conn)

    def changes_since(self, version: int, conn: sa.Connection | None = None, max_rows: int | None = None
                      ) -> Changes:
        """What changed after `version`, from one snapshot: each row touched since (sorted) with its
        code now, or not present where it was deleted since. `reload` when the log does not reach back
        to `version` (trimmed, or a change too large to log), or when the log's runs cover more than
        `max_rows` rows: read everything with `snapshot()`."""
        nb = self._nbytes
        with self._reading(conn, "reading changes") as conn:
            now, floor = self._versions(conn)

            def nothing(reload: bool) -> Changes:
                return Changes(now, np.zeros(0, np.int64), np.zeros((0, nb), np.uint8), np.zeros(0, bool), reload)
            if now <= version:
                return nothing(False)
            if version < floor or version < 0:
                return nothing(True)
            runs = _log_runs(_query(conn, f"SELECT row_lo, row_hi FROM {self._log_q} WHERE version > {int(version)}"))
            if runs is None or (max_rows is not None and int((runs[:, 1] - runs[:, 0] + 1).sum()) > max_rows):
                return nothing(True)  # a damaged log (the snapshot is the truth), or more changes than a reload
            rids = np.unique(concat_ranges(runs[:, 0], runs[:, 1] - runs[:, 0] + 1))
            found = sorted(self._select_in(conn, ("row_id", "code"), "row_id", rids.tolist()))
        got = np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))
        present = np.isin(rids, got)
        codes = np.zeros((len(rids), nb), np.uint8)
        codes[present] = self._codes_from_values([r[1] for r in found])
        return Changes(now, rids, codes, present)

    def check(self, chunk: int = 50_000) -> int:
        """Read every item whole (id, code, payload, labels), from one snapshot; StoreError naming the
        first damaged row. Returns the item count."""
        count = 0
        with self._transaction(doing="checking the store", snapshot=True) as conn:
            for rows in self._pages(conn, "row_id, ext_id, code, payload, labels", chunk):
                for row_id, ext_id, _, payload, labels in rows:
                    try:
                        if not isinstance(ext_id, str):
                            raise StoreError(f"its id is {ext_id!r}, not text")
                        _loads(payload, dict)
                        _loads(labels, list)
                    except StoreError as e:
                        raise StoreError(f"item {ext_id!r} (row {row_id}) in the store {self.namespace!r}: {e}"
                                         ) from None
                self._codes_from_values([r[2] for r in rows])
                count += len(rows)
        return count

    def fetch(self, row_ids: Iterable[int]) -> list[Item]:
        """The items with these row ids, in the order asked (repeats allowed). Raises
        MissingItemError (a StoreError and a KeyError) when any is not stored."""
        req = np.asarray(list(row_ids) if not isinstance(row_ids, np.ndarray) else row_ids).ravel()
        if req.size and req.dtype.kind not in "iu":
            raise StoreError(f"row ids must be integers, got dtype {req.dtype}")
        wanted = req.astype(np.int64).tolist()
        if not wanted:
            return []
        uniq = list(dict.fromkeys(wanted))
        rows: dict[int, tuple] = {}
        size = min(10_000, self._in_chunk)
        with self._transaction(doing="fetching items") as conn:
            for chunk in _chunks(uniq, size):
                for r in self._select_in(conn, ("row_id", "ext_id", "code", "payload", "labels"), "row_id", chunk):
                    rows[r[0]] = r
        missing = [r for r in uniq if r not in rows]
        if missing:
            raise self._missing(missing)
        found = [rows[r] for r in uniq]
        codes = self._codes_from_values([r[2] for r in found])
        label_cache: dict[str, tuple[str, ...]] = {}
        made = {}
        for i, (rid, ext, _, pay, lab) in enumerate(found):
            labs = label_cache.get(lab)
            if labs is None:
                labs = label_cache[lab] = tuple(map(str, _loads(lab, list)))
            made[rid] = Item(int(rid), ext, codes[i].tobytes(), _loads(pay), labs)
        return [made[r] for r in wanted]

    def _missing(self, missing: list[int]) -> MissingItemError:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        return MissingItemError(f"no items with row ids {', '.join(map(str, missing[:10]))}{more} in the store "
                                f"{self.namespace!r} ({self._masked}); the index is out of step with its "
                                f"store: rebuild it", missing)

    def hit_fields(self, row_ids: np.ndarray, conn: sa.Connection | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ext ids, payloads) as object arrays aligned with `row_ids` (sorted, distinct, all stored):
        the lean read behind query answers (no codes, no labels), in the snapshot `conn` if given.
        MissingItemError when any is not stored."""
        wanted = np.asarray(row_ids, dtype=np.int64)
        with self._reading(conn, "fetching items") as conn, gc_paused():
            rows = self._select_in(conn, ("row_id", "ext_id", "nullif(payload, '{}')"), "row_id", wanted.tolist())
            got = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            if len(got) > 1 and not (got[1:] > got[:-1]).all():  # SQLite's IN gives them in order already
                rows.sort()
                got = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            if len(got) != len(wanted) or not np.array_equal(got, wanted):
                raise self._missing(np.setdiff1d(wanted, got).tolist())
            ext_ids, payloads = np.empty(len(rows), object), np.empty(len(rows), object)
            ext_ids[:] = [r[1] for r in rows]
            # most payloads of a corpus without extra fields are "{}" (read as NULL: no string made): a new empty dict each
            payloads[:] = [{} if r[2] is None else _loads(r[2]) for r in rows]
        return ext_ids, payloads

    def row_ids_for(self, ext_ids: Iterable[str]) -> dict[str, int]:
        """ext_id -> row_id for the given ids that are stored (unknown ones are left out)."""
        ids = list(dict.fromkeys(self._check_ext_ids(ext_ids)))
        if not ids:
            return {}
        with self._transaction(doing="looking up ids") as conn:
            return {e: int(rid) for e, rid in self._select_in(conn, ("ext_id", "row_id"), "ext_id", ids)}

    def get_meta(self, key: str) -> str | None:
        m = self._meta
        with self._transaction(doing="reading metadata") as conn:
            return conn.execute(sa.select(m.c.value).where(m.c.key == str(key))).scalar()

    def set_meta(self, key: str, value: str) -> None:
        """Store a string under `key` (the store's own keys, e.g. 'bits', cannot be set)."""
        key = str(key)
        if key in _RESERVED_META:
            raise StoreError(f"meta key {key!r} is managed by the store and cannot be set")
        m = self._meta
        value = None if value is None else str(value)
        with self._transaction(write=True, doing="writing metadata") as conn:
            if not conn.execute(m.update().where(m.c.key == key).values(value=value)).rowcount:
                conn.execute(m.insert().values(key=key, value=value))

    def backup(self, path: str | Path) -> None:
        """Copy a SQLite store, consistently, to a new file (SQLite's online backup: writers may go on)."""
        if not self._sqlite:
            raise StoreError(f"only a SQLite store can be copied to a file, not {self._masked}")
        target = sqlite3.connect(str(path))
        try:
            raw = self._engine.raw_connection()
            try:
                raw.driver_connection.backup(target)
            finally:
                raw.close()
        except sqlite3.Error as e:
            raise StoreError(f"cannot copy the store {self._masked} to {path}: {e}") from e
        finally:
            target.close()

    def drop(self) -> None:
        """Drop this namespace's tables (and everything in them)."""
        with self._transaction(write=True, doing="dropping the store") as conn:
            self._md.drop_all(conn, checkfirst=True)

    def close(self) -> None:
        """Release the database connections (the Store can reconnect if used again)."""
        self._engine.dispose()

