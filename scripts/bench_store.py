"""Time the SQL store: bulk upsert (new rows, then replacing them all), all_codes(), fetch() and
delete(), on a fresh SQLite file and on PostgreSQL.

    python scripts/bench_store.py [--rows 70000] [--bits 32] [--pg-url URL | --no-pg]

PostgreSQL runs in a throw-away namespace that is dropped afterwards.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from semhash.errors import StoreError
from semhash.store import Store, sqlite_url

DEFAULT_PG = os.environ.get("SEMHASH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def bench(url: str, namespace: str, n: int, bits: int, n_fetch: int, seed: int = 0) -> list[tuple[str, int, float]]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
    ids = [f"item-{i:07d}" for i in range(n)]
    payloads = [{"label": f"class-{i % 10}"} for i in range(n)]
    labels = [(f"class-{i % 10}",) for i in range(n)]
    results = []

    def timed(name, count, fn):
        t0 = time.perf_counter()
        out = fn()
        results.append((name, count, time.perf_counter() - t0))
        return out

    store = Store(url, bits, namespace=namespace)
    try:
        r = timed("upsert (new rows)", n, lambda: store.upsert(ids, codes, payloads, labels))
        assert r.n_added == n
        codes2 = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
        r = timed("upsert (replace all)", n, lambda: store.upsert(ids, codes2, payloads, labels))
        assert r.n_replaced == n and np.array_equal(r.old_codes, codes)
        rids, got = timed("all_codes()", n, store.all_codes)
        assert np.array_equal(got, codes2) and len(rids) == n
        pick = rng.choice(rids, size=min(n_fetch, n), replace=False)
        items = timed(f"fetch({len(pick)} random ids)", len(pick), lambda: store.fetch(pick))
        assert [it.row_id for it in items] == pick.tolist()
        gone = [ids[i] for i in rng.choice(n, size=n // 10, replace=False)]
        removed, _ = timed("delete (10%)", len(gone), lambda: store.delete(gone))
        assert len(removed) == len(gone)
    finally:
        store.drop()
        store.close()
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=70_000)
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--fetch", type=int, default=10_000)
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = ap.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="semhash-bench-") as tmp:
        url = sqlite_url(Path(tmp) / "items.db")
        rows += [("sqlite (file)", *r) for r in bench(url, "bench", args.rows, args.bits, args.fetch)]
    if not args.no_pg:
        ns = f"bench_{uuid.uuid4().hex[:8]}"
        try:
            rows += [("postgresql", *r) for r in bench(args.pg_url, ns, args.rows, args.bits, args.fetch)]
        except StoreError as e:
            print(f"PostgreSQL skipped: {e}", file=sys.stderr)

    print(f"{args.rows} rows, {args.bits}-bit codes, payload {{'label': ...}}")
    print(f"{'backend':<14} {'operation':<26} {'rows':>8} {'seconds':>9} {'rows/s':>11}")
    for backend, name, count, secs in rows:
        print(f"{backend:<14} {name:<26} {count:>8} {secs:>9.3f} {count / secs:>11,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
