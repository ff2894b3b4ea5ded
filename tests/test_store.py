"""The SQL store of record, on SQLite (a file in tmp_path) and on PostgreSQL (SEMHASH_TEST_PG_URL)."""
from __future__ import annotations

import importlib.util
import os
import threading
import uuid

import numpy as np
import pytest

import semhash.store
from semhash.errors import StoreError
from semhash.store import SCHEMA_VERSION, Item, MissingItemError, Store, UpsertResult, sqlite_url

from helpers import pg_url_or_reason

PG_URL = os.environ.get("SEMHASH_TEST_PG_URL")


def _sa_url(url: str) -> str:
    """The URL for a plain SQLAlchemy engine, with psycopg 3 as the Store would use it."""
    return "postgresql+psycopg://" + url.split("://", 1)[1] if url.startswith("postgresql://") else url


def _pg_skip_reason() -> str | None:
    return pg_url_or_reason()[1]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request, tmp_path):
    """A factory of Stores on one database and namespace; PostgreSQL tables are dropped afterwards."""
    if request.param == "postgresql":
        reason = _pg_skip_reason()
        if reason:
            pytest.skip(reason)
        url, namespace = PG_URL, f"t{uuid.uuid4().hex[:10]}"
    else:
        url, namespace = sqlite_url(tmp_path / "index" / "items.db"), "semhash"
    opened: list[Store] = []

    def make(bits: int | None = 32, create: bool = True, namespace: str = namespace) -> Store:
        store = Store(url, bits, namespace=namespace, create=create)
        opened.append(store)
        return store

    make.url, make.namespace, make.name = url, namespace, request.param
    yield make
    for s in opened:
        s.close()
    if request.param == "postgresql":  # plain SQL: some tests leave a store that Store refuses to open
        import sqlalchemy as sa
        engine = sa.create_engine(_sa_url(url))
        with engine.begin() as conn:
            for ns in {namespace} | {s.namespace for s in opened}:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {ns}_items, {ns}_meta, {ns}_log, {ns}_features")
        engine.dispose()


def random_codes(rng, n: int, bits: int) -> np.ndarray:
    codes = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
    codes[: n // 2, 0] |= 0x80  # top bit set: negative as signed int64 keys
    if n:
        codes[0] = 0xFF  # all ones (key -1 for 64 bits)
    if n > 1:
        codes[1] = 0  # all zeros
    return codes


def snapshot(store: Store) -> dict[str, tuple]:
    """ext_id -> (row_id, code bytes, payload, labels), through all_codes() and fetch()."""
    rids, codes = store.all_codes(chunk=7)
    assert rids.dtype == np.int64 and codes.dtype == np.uint8 and codes.shape == (len(rids), store.bits // 8)
    assert np.all(np.diff(rids) > 0)
    items = store.fetch(rids)
    assert [it.row_id for it in items] == rids.tolist()
    for it, code in zip(items, codes):
        assert it.code == code.tobytes()
    return {it.ext_id: (it.row_id, it.code, it.payload, it.labels) for it in items}


@pytest.mark.parametrize("bits", [8, 32, 64, 128])
def test_round_trip(backend, bits):
    rng = np.random.default_rng(bits)
    store = backend(bits)
    n = 40
    codes = random_codes(rng, n, bits)
    ids = [f"doc-{i}" for i in range(n)]
    ids[3] = "ünïcode id with spaces, 'quotes' and \\ backslash"
    payloads = [{"label": f"c{i % 3}", "i": i, "nested": {"x": [1, 2.5, None]}, "text": "tab\there\nnewline é"}
                for i in range(n)]
    labels = [(f"c{i % 3}", "extra") if i % 2 else (f"c{i % 3}",) for i in range(n)]
    labels[5] = ()
    r = store.upsert(ids, codes, payloads, labels)
    assert isinstance(r, UpsertResult)
    assert r.row_ids.dtype == np.int64 and len(set(r.row_ids.tolist())) == n
    assert not r.replaced.any() and r.n_added == n and r.n_replaced == 0
    assert store.count() == n

    rids, got = store.all_codes()
    order = np.argsort(r.row_ids)
    assert np.array_equal(rids, r.row_ids[order])
    assert np.array_equal(got, codes[order])

    items = store.fetch(r.row_ids)
    assert all(isinstance(it, Item) for it in items)
    assert [it.ext_id for it in items] == ids
    assert [it.code for it in items] == [c.tobytes() for c in codes]
    assert [it.code_hex for it in items] == [c.tobytes().hex() for c in codes]
    assert np.array_equal(np.stack([it.code_array() for it in items]), codes)
    assert [it.payload for it in items] == payloads
    assert [it.labels for it in items] == labels
    assert store.row_ids_for(ids + ["nope"]) == dict(zip(ids, r.row_ids.tolist()))


def test_upsert_replaces(backend):
    rng = np.random.default_rng(1)
    store = backend(64)
    codes = random_codes(rng, 10, 64)
    ids = [f"d{i}" for i in range(10)]
    first = store.upsert(ids, codes, [{"v": 1}] * 10, [("a",)] * 10)
    new_codes = codes ^ 0x0F
    second = store.upsert(["d3", "new", "d7"], new_codes[[3, 0, 7]], [{"v": 2}] * 3, [("b",)] * 3)
    assert second.replaced.tolist() == [True, False, True]
    assert second.row_ids[0] == first.row_ids[3] and second.row_ids[2] == first.row_ids[7]
    assert second.row_ids[1] not in first.row_ids
    assert np.array_equal(second.old_codes[[0, 2]], codes[[3, 7]])
    assert store.count() == 11
    d3, new, d7 = store.fetch(second.row_ids)
    assert d3.code == new_codes[3].tobytes() and d3.payload == {"v": 2} and d3.labels == ("b",)
    assert new.ext_id == "new" and d7.code == new_codes[7].tobytes()
    # storing the same thing again changes nothing but still reports the replacement
    again = store.upsert(["d3"], new_codes[[3]], [{"v": 2}], [("b",)])
    assert again.replaced.tolist() == [True] and np.array_equal(again.old_codes, new_codes[[3]])
    assert store.fetch(again.row_ids)[0] == d3


def _has_code_index(store: Store) -> bool:
    import sqlalchemy as sa
    with store._transaction() as conn:
        names = {ix["name"] for ix in sa.inspect(conn).get_indexes(f"{store.namespace}_items")}
    return f"{store.namespace}_items_code_idx" in names


def test_a_first_bulk_load_defers_the_code_index_and_still_replaces_repeated_ids(backend):
    """Inside bulk_load() of a store that never held an item, the code index is dropped and built at the
    end, and batches go in without an id lookup; an id stored by an earlier batch is still replaced (the
    batch falls back to the usual path), and a later bulk load puts back a missing code index."""
    rng = np.random.default_rng(3)
    store = backend(64)
    codes = random_codes(rng, 30, 64)
    with store.bulk_load():
        assert not _has_code_index(store)
        a = store.upsert([f"d{i}" for i in range(10)], codes[:10])
        b = store.upsert([f"d{i}" for i in range(10, 20)], codes[10:20])
        c = store.upsert(["d5", "x", "d15"], codes[20:23], [{"v": 2}] * 3)
    assert _has_code_index(store)
    assert not a.replaced.any() and not b.replaced.any() and c.replaced.tolist() == [True, False, True]
    assert c.row_ids[0] == a.row_ids[5] and c.row_ids[2] == b.row_ids[5]
    assert store.count() == 21 and store.fetch([a.row_ids[5]])[0].payload == {"v": 2}
    with store.bulk_load():  # a store holding items keeps its code index while loading
        assert _has_code_index(store)
        store.upsert(["y"], codes[23:24])
    with store._transaction(write=True) as conn:  # as a crash in a first load leaves it
        conn.exec_driver_sql(f"DROP INDEX {store._code_index_q}")
    with store.bulk_load():
        pass
    assert _has_code_index(store) and store.count() == 22


def test_delete(backend):
    rng = np.random.default_rng(2)
    store = backend(128)
    codes = random_codes(rng, 6, 128)
    r = store.upsert([f"x{i}" for i in range(6)], codes)
    rids, removed = store.delete(["x4", "unknown", "x1", "x4"])
    assert rids.dtype == np.int64 and removed.dtype == np.uint8
    assert rids.tolist() == sorted([r.row_ids[4], r.row_ids[1]])
    expect = {int(r.row_ids[1]): codes[1], int(r.row_ids[4]): codes[4]}
    assert all(np.array_equal(c, expect[int(i)]) for i, c in zip(rids, removed))
    assert store.count() == 4
    assert store.row_ids_for(["x1", "x4", "x0"]) == {"x0": int(r.row_ids[0])}
    none_ids, none_codes = store.delete(["unknown"])
    assert none_ids.shape == (0,) and none_codes.shape == (0, 16)
    assert store.delete([])[0].shape == (0,)
    # row ids are never reused, even when the highest one was deleted
    top = store.delete(["x5"])[0]
    assert store.upsert(["y"], codes[:1]).row_ids[0] > top[0]


def test_random_operations_match_a_dict_model(backend):
    rng = np.random.default_rng(3)
    bits = 16
    store = backend(bits)
    model: dict[str, tuple[bytes, dict, tuple]] = {}
    row_of: dict[str, int] = {}
    pool = [f"id{i}" for i in range(60)]
    for step in range(30):
        op = rng.choice(["upsert", "upsert", "delete"])
        k = int(rng.integers(0, 25))
        ids = [str(x) for x in rng.choice(pool, size=k, replace=False)]
        if op == "upsert":
            codes = random_codes(rng, k, bits)
            payloads = [{"step": step, "j": j} for j in range(k)]
            labels = [(f"s{step % 4}",) for _ in range(k)]
            r = store.upsert(ids, codes, payloads, labels)
            for j, e in enumerate(ids):
                assert r.replaced[j] == (e in model)
                if e in model:
                    assert r.row_ids[j] == row_of[e]
                    assert r.old_codes[j].tobytes() == model[e][0]
                model[e] = (codes[j].tobytes(), payloads[j], labels[j])
                row_of[e] = int(r.row_ids[j])
        else:
            rids, codes = store.delete(ids)
            gone = [e for e in ids if e in model]
            assert sorted(rids.tolist()) == sorted(row_of[e] for e in gone)
            by_row = {row_of[e]: model[e][0] for e in gone}
            assert all(by_row[int(i)] == c.tobytes() for i, c in zip(rids, codes))
            for e in gone:
                del model[e], row_of[e]
        assert store.count() == len(model)
        assert snapshot(store) == {e: (row_of[e], *model[e]) for e in model}


def test_bulk_paths_and_chunking(backend):
    """Large batches take the bulk paths (COPY / temp-table UPDATE on PostgreSQL); tiny IN chunks
    exercise the chunked lookups."""
    rng = np.random.default_rng(4)
    store = backend(32)
    store._in_chunk = 7
    store._bulk_update_min = 50
    n = 300
    codes = random_codes(rng, n, 32)
    ids = [f"b{i}" for i in range(n)]
    store.upsert(ids, codes, [{"i": i} for i in range(n)])
    codes2 = random_codes(rng, n, 32)
    mixed = ids[100:] + [f"c{i}" for i in range(100)]
    r = store.upsert(mixed, codes2, [{"i": -i} for i in range(n)])
    assert r.n_replaced == 200 and r.n_added == 100
    assert np.array_equal(r.old_codes[:200], codes[100:])
    assert store.count() == 400
    snap = snapshot(store)
    assert all(snap[e][1] == codes2[j].tobytes() and snap[e][2] == {"i": -j} for j, e in enumerate(mixed))
    rids, _ = store.delete(ids[:150])
    assert len(rids) == 150 and store.count() == 250
    assert len(store.fetch(np.array(sorted(store.row_ids_for(mixed).values())))) == 250


def test_concurrent_writers(backend):
    """Writers are serialized: no row id collisions, no lost updates, no 'database is locked'."""
    first = backend(16)
    stores = [first, first, backend(16), backend(16)]  # shared and separate engines
    errors: list[BaseException] = []

    def work(w: int) -> None:
        rng = np.random.default_rng(w)
        try:
            for b in range(8):
                ids = [f"w{w}-{b}-{j}" for j in range(5)] + [f"shared-{j}" for j in range(3)]
                stores[w].upsert(ids, random_codes(rng, len(ids), 16))
                stores[w].delete([f"w{w}-{b}-0"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert first.count() == len(stores) * 8 * 4 + 3
    rids, _ = first.all_codes()
    assert len(set(rids.tolist())) == len(rids)


def test_fetch_order_and_missing(backend):
    store = backend(8)
    r = store.upsert(["a", "b", "c"], np.array([[1], [2], [255]], dtype=np.uint8))
    a, b, c = r.row_ids.tolist()
    got = store.fetch([c, a, c, b])
    assert [it.ext_id for it in got] == ["c", "a", "c", "b"]
    assert store.fetch(np.array([b], dtype=np.uint32))[0].ext_id == "b"
    assert store.fetch([]) == []
    with pytest.raises(StoreError) as ei:
        store.fetch([a, 12345, b, 999])
    assert isinstance(ei.value, KeyError) and isinstance(ei.value, MissingItemError)
    assert ei.value.missing == [12345, 999]
    assert "12345" in str(ei.value) and "999" in str(ei.value) and not str(ei.value).startswith("'")


def test_reopen_existing_store(backend):
    store = backend(32)
    codes = random_codes(np.random.default_rng(5), 5, 32)
    r = store.upsert([f"r{i}" for i in range(5)], codes, [{"k": i} for i in range(5)])
    store.set_meta("model_checksum", "abc123")
    store.close()
    again = backend(32, create=False)
    assert again.count() == 5
    rids, got = again.all_codes()
    assert np.array_equal(rids, r.row_ids) and np.array_equal(got, codes)
    assert again.get_meta("model_checksum") == "abc123"
    assert again.get_meta("bits") == "32" and again.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert again.get_meta("absent") is None
    more = again.upsert(["r9"], codes[:1])
    assert more.row_ids[0] == r.row_ids.max() + 1
    inferred = backend(None, create=False)
    assert inferred.bits == 32 and inferred.count() == 6


def test_open_with_other_bits_or_newer_schema_fails(backend):
    store = backend(32)
    with pytest.raises(StoreError, match="32-bit"):
        backend(64)
    store.set_meta("note", "x")
    # a store written by a future semhash
    import sqlalchemy as sa
    engine = sa.create_engine(_sa_url(backend.url))
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {backend.namespace}_meta SET value = '99' WHERE key = 'schema_version'"))
    engine.dispose()
    with pytest.raises(StoreError, match="newer"):
        backend(32)


def test_missing_tables_with_create_false(backend):
    with pytest.raises(StoreError, match="no semhash store|no database file"):
        backend(32, create=False)
    store = backend(32)
    store.upsert(["a"], np.zeros((1, 4), np.uint8))
    store.drop()
    with pytest.raises(StoreError, match="no semhash store"):
        backend(32, create=False)


def test_namespaces_are_separate(backend):
    a = backend(32)
    b = backend(16, namespace=f"{backend.namespace}_b")
    a.upsert(["x", "y"], np.ones((2, 4), np.uint8))
    b.upsert(["x"], np.zeros((1, 2), np.uint8))
    assert a.count() == 2 and b.count() == 1
    assert b.fetch(b.row_ids_for(["x"]).values())[0].code == b"\x00\x00"
    b.drop()
    assert a.count() == 2


def test_duplicate_ids_leave_the_store_unchanged(backend):
    store = backend(32)
    codes = random_codes(np.random.default_rng(6), 4, 32)
    with pytest.raises(StoreError, match="duplicate.*'p'"):
        store.upsert(["p", "q", "p"], codes[:3])
    assert store.count() == 0
    store.upsert(["p", "q"], codes[:2])
    before = snapshot(store)
    with pytest.raises(StoreError, match="duplicate"):
        store.upsert(["r", "q", "q"], codes[1:4])
    assert snapshot(store) == before


def test_failure_mid_upsert_rolls_back(backend, monkeypatch):
    store = backend(32)
    codes = random_codes(np.random.default_rng(7), 4, 32)
    store.upsert(["a", "b"], codes[:2], [{"v": 0}] * 2)
    before = snapshot(store)

    def boom(conn, rows):
        raise StoreError("simulated failure after the inserts")

    monkeypatch.setattr(store, "_update_rows", boom)
    with pytest.raises(StoreError, match="simulated"):
        store.upsert(["c", "a", "d"], codes[[2, 3, 0]], [{"v": 1}] * 3)  # inserts c, d; then fails on a
    monkeypatch.undo()
    assert snapshot(store) == before and store.count() == 2
    # the failed call did not use up row ids either way; the next one works normally
    r = store.upsert(["c"], codes[2:3])
    assert r.n_added == 1 and store.count() == 3


def test_bad_input_is_refused(backend):
    store = backend(32)
    z = np.zeros((2, 4), np.uint8)
    with pytest.raises(StoreError, match="shape"):
        store.upsert(["a", "b"], np.zeros((2, 8), np.uint8))
    with pytest.raises(StoreError, match="shape"):
        store.upsert(["a"], z)
    with pytest.raises(StoreError, match="strings"):
        store.upsert([1, 2], z)
    with pytest.raises(StoreError, match="JSON"):
        store.upsert(["a", "b"], z, [{"x": object()}, {}])
    with pytest.raises(StoreError, match="dict"):
        store.upsert(["a", "b"], z, [["not", "a", "dict"], {}])
    with pytest.raises(StoreError, match="managed by the store"):
        store.set_meta("bits", "64")
    assert store.count() == 0
    # numpy scalars in payloads and plain-string labels are accepted
    r = store.upsert(["a", "b"], z, [{"n": np.int64(3), "f": np.float32(0.5)}, None], ["solo", None])
    a, b = store.fetch(r.row_ids)
    assert a.payload == {"n": 3, "f": 0.5} and a.labels == ("solo",) and b.payload == {} and b.labels == ()
    assert store.upsert([], np.zeros((0, 4), np.uint8)).row_ids.shape == (0,)


@pytest.mark.parametrize("namespace", ["", "Caps", "1abc", "has-dash", "a" * 42, "semi;colon", None])
def test_bad_namespace(tmp_path, namespace):
    with pytest.raises(StoreError, match="namespace"):
        Store(sqlite_url(tmp_path / "x.db"), 32, namespace=namespace)
    assert not (tmp_path / "x.db").exists()


def test_unreachable_server_fails_with_the_url():
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/x"
    with pytest.raises(StoreError) as ei:
        Store(url, 32, connect_timeout=2)
    msg = str(ei.value)
    assert "127.0.0.1:1/x" in msg and "s3cret" not in msg and "***" in msg
    assert "cannot connect" in msg


def test_urls(tmp_path):
    with pytest.raises(StoreError, match="not a database URL"):
        Store("just some words", 32)
    with pytest.raises(StoreError, match="unsupported database URL"):
        Store("nosuchdb://host/x", 32)
    if importlib.util.find_spec("pg8000") is None:
        with pytest.raises(StoreError, match="not installed"):
            Store("postgresql+pg8000://u:pw@127.0.0.1:1/x", 32)
    # a plain postgresql:// URL is rewritten to psycopg 3 (checked without connecting)
    with pytest.raises(StoreError) as ei:
        Store("postgresql://u:pw@127.0.0.1:1/x", 32, connect_timeout=1)
    assert "postgresql+psycopg://u:***@127.0.0.1:1/x" in str(ei.value)
    # sqlite_url: absolute, and special characters survive
    odd = tmp_path / "a dir?#" / "items.db"
    url = sqlite_url(odd)
    assert url.startswith("sqlite:////")
    s = Store(url, 8)
    s.upsert(["k"], np.array([[7]], np.uint8))
    assert odd.exists() and s.masked_url() == url and "Store(" in repr(s)
    s.close()
    with pytest.raises(StoreError, match="no database file"):
        Store(sqlite_url(tmp_path / "missing.db"), 8, create=False)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(StoreError, match="bits"):
        Store(sqlite_url(tmp_path / "b.db"), 12)
    with pytest.raises(StoreError, match="bits must be given"):
        Store(sqlite_url(tmp_path / "c.db"), None)


def test_sqlite_file_that_is_not_a_database(tmp_path):
    bad = tmp_path / "items.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="items.db"):
        Store(sqlite_url(bad), 32)


# --- the change log and writers ----------------------------------------------------------------------------------
def test_every_write_is_one_change_that_readers_catch_up_from(backend):
    store = backend(16)
    rng = np.random.default_rng(7)
    assert store.version() == 0
    first = store.upsert([f"c{i}" for i in range(6)], random_codes(rng, 6, 16))
    assert first.version == store.version() == 1
    v1, rows, codes = store.snapshot()
    assert v1 == 1 and rows.tolist() == first.row_ids.tolist()
    again = store.upsert(["c1", "new"], random_codes(rng, 2, 16))  # one replaced, one added
    gone = store.delete(["c4", "unknown"])
    assert (again.version, gone.version) == (2, 3) and gone.row_ids.tolist() == [first.row_ids[4]]
    assert store.delete(["unknown"]).version == 0 and store.version() == 3  # nothing removed: no change
    changes = store.changes_since(1)
    assert changes.version == 3 and not changes.reload
    assert changes.row_ids.tolist() == sorted([first.row_ids[1], again.row_ids[1], first.row_ids[4]])
    assert changes.present.tolist() == [True, False, True]  # c4 (row 4) is gone; row order: 1, 4, 6
    assert bytes(changes.codes[0]) == bytes(store.fetch([first.row_ids[1]])[0].code)
    assert not store.changes_since(3).row_ids.size and store.changes_since(3).version == 3
    assert store.changes_since(-1).reload


def test_a_second_writer_waits_then_gets_a_clear_error(backend):
    first, second = backend(16), backend(16)
    second.write_timeout = 0.3
    rng = np.random.default_rng(8)
    with first._transaction(write=True, doing="a long write") as conn:
        first._lock(conn)
        with pytest.raises(StoreError) as err:
            second.upsert(["w1"], random_codes(rng, 1, 16))
        assert "another process is writing to the store" in str(err.value)
        assert "did not finish within 0.3 s; try again when it is done" in str(err.value)
        assert first.count() == 0  # readers are not blocked by the writer
    assert second.upsert(["w1"], random_codes(rng, 1, 16)).version == 1  # once the first is done


def test_the_log_is_trimmed_and_old_readers_reload(backend, monkeypatch):
    monkeypatch.setattr(semhash.store, "LOG_KEEP", 3)
    store = backend(16)
    rng = np.random.default_rng(9)
    for i in range(70):  # trimmed every 64 versions
        store.upsert([f"t{i}"], random_codes(rng, 1, 16))
    assert store.changes_since(10).reload and not store.changes_since(62).reload
    assert store.changes_since(62).row_ids.size == 8
    monkeypatch.setattr(semhash.store, "LOG_MAX_ROWS", 5)
    store.upsert([f"big{i}" for i in range(6)], random_codes(rng, 6, 16))  # too large to log
    assert store.changes_since(70).reload and not store.changes_since(71).reload
