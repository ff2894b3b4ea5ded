"""Plain helpers shared by the test modules (fixtures live in conftest.py)."""
from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

from click.testing import CliRunner


def run(*args, input=None):
    """The real CLI in process: `semhash ARGS...` (each argument str()-ed), exceptions not caught."""
    from semhash.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def file_bytes(directory: Path) -> dict[str, bytes]:
    """Every file below `directory` (relative POSIX path -> bytes), to show that nothing changed."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def dot_entries(parent: Path) -> list[str]:
    """Names starting with a dot in `parent`: temporary siblings a write may have left."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@functools.lru_cache(maxsize=None)
def pg_url_or_reason() -> tuple[str | None, str | None]:
    """(SEMHASH_TEST_PG_URL, None) when that server answers, else (None, why the PostgreSQL tests skip)."""
    from semhash.errors import StoreError
    from semhash.store import Store

    url = os.environ.get("SEMHASH_TEST_PG_URL")
    if not url:
        return None, "SEMHASH_TEST_PG_URL is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
    try:
        Store(url, 8, namespace=f"probe{uuid.uuid4().hex[:10]}", create=False, connect_timeout=3).close()
    except StoreError as e:
        if "no semhash store" not in str(e):  # that one means the server answered (and the namespace is empty)
            return None, f"PostgreSQL named by SEMHASH_TEST_PG_URL cannot be reached: {e}"
    return url, None
