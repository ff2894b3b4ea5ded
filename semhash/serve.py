"""`semhash serve`: an index as an HTTP JSON service (FastAPI on uvicorn; the extra `semhash[serve]`).

The only module that imports the web stack; a thin layer over Engine. Endpoints:

    POST   /query   {"queries": [text | {"id", "text" | "vector"}], "k", "radius", "strategy", "rerank",
                     "candidates", "asymmetric"}  ->  {"answers": [the JSON lines of `semhash query`]}
    POST   /items   {"items": [records in the corpus JSONL shape]}  ->  {"added", "replaced", "items", "version"}
    DELETE /items   {"ids": [...]}  ->  {"deleted", "not_found", "items", "version"}
    GET    /info    `semhash info` as JSON
    GET    /health  {"ok": true, "items", "version"}; 503 with "ok": false while the index loads
    GET    /docs    the OpenAPI page

Each worker process holds one Engine. The endpoints are coroutines that call it directly on the event
loop, so a worker answers one request at a time (no thread hand-off: 3 ms less a query than FastAPI's
threadpool; a long query delays the worker's other requests, /health included). Writes from any worker are
store transactions, and every worker catches up with them before it answers (semhash.live), so a
write on one worker is seen by the next query on any other. Bad requests get a 4xx status and a
message naming the field (`{"detail": ...}`); the worker stays up.
"""
from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .errors import SemhashError

MAX_BODY = 16 << 20      # bytes in one request body
MAX_BATCH = 10_000       # queries, items or ids in one request
MAX_K = 10_000           # hits per query (and re-rank candidates)
ENV_INDEX, ENV_KEY = "SEMHASH_SERVE_INDEX", "SEMHASH_API_KEY"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class QueryRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    text: str | None = None
    vector: list[float] | None = None


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[str | QueryRecord] = Field(min_length=1, max_length=MAX_BATCH)
    k: int | None = Field(10, ge=0, le=MAX_K, description="Hits per query; 0 or null: every item within radius.")
    radius: int = Field(2, ge=0, le=1024)
    strategy: Literal["auto", "ball", "mih", "scan"] = "auto"
    rerank: bool = False
    candidates: int | None = Field(None, ge=1, le=MAX_K)
    asymmetric: bool = False


class ItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(min_length=1, max_length=MAX_BATCH)


class _State:
    """The worker's engine, loaded in the background so that /health answers while it loads. The
    endpoints use it only from the event loop, one request at a time."""

    def __init__(self, index_dir: str):
        self.index_dir = index_dir
        self.engine = None
        self.error: str | None = None

    def load(self) -> None:
        from threadpoolctl import threadpool_limits

        from .engine import Engine
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit():  # also for the libraries this process loaded before run() set the variables
            threadpool_limits(limits=int(threads))
        try:
            self.engine = Engine.load(self.index_dir)
        except SemhashError as e:
            self.error = str(e)

    def ready(self):
        if self.engine is None:
            raise HTTPException(503, self.error or "the index is loading; try again in a moment")
        return self.engine


class _BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 (by its Content-Length, or as it streams)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _too_large(send, self.limit)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(send, self.limit)


class _RequestLog:
    """ASGI middleware: one line per request on stderr: method, path, status, milliseconds (a plain ASGI
    wrapper: Starlette's BaseHTTPMiddleware costs about a millisecond a request)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            print(f"{scope['method']} {scope['path']} {status[0]} {(time.perf_counter() - start) * 1000:.1f}ms",
                  file=sys.stderr, flush=True)


class _TooLarge(Exception):
    pass


async def _too_large(send, limit: int) -> None:
    body = ('{"detail":"the request body is larger than %d bytes; send fewer queries or items at a time"}'
            % limit).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(index_dir: str | os.PathLike, api_key: str | None = None, max_body: int = MAX_BODY) -> FastAPI:
    """The service over the index at `index_dir`; with `api_key`, every endpoint but /health requires
    the header `Authorization: Bearer <api_key>`."""
    state = _State(str(index_dir))

    async def lifespan(app):
        threading.Thread(target=state.load, daemon=True).start()
        yield
        if state.engine is not None:
            state.engine.close()

    app = FastAPI(title="semhash", description="Semantic hashing retrieval over one index.", lifespan=lifespan)

    async def authorized(authorization: str | None = Header(default=None)) -> None:
        if api_key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(SemhashError)
    async def semhash_error(request: Request, exc: SemhashError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(problems)[:2000], "errors": exc.errors()[:20]}, status_code=422)

    @app.get("/health")
    async def health():
        if state.engine is None:
            return JSONResponse({"ok": False, "status": state.error or "loading"}, status_code=503)
        state.engine.refresh()
        return {"ok": True, "items": len(state.engine.live), "version": state.engine.live.version}

    @app.post("/query", dependencies=[Depends(authorized)])
    async def query(req: QueryRequest):
        engine = state.ready()
        batch = _query_batch(req.queries)
        answers = engine.query_batch(batch, k=req.k or None, radius=req.radius, strategy=req.strategy,
                                     rerank=req.rerank, candidates=req.candidates, asymmetric=req.asymmetric)
        # built here, not by FastAPI's encoder, which walks every hit again (0.4 ms a query of 10 hits)
        return JSONResponse({"answers": [a.to_json() for a in answers]})

    @app.post("/items", dependencies=[Depends(authorized)])
    async def upsert(req: ItemsRequest):
        engine = state.ready()
        stats = engine.add(req.items)
        return {"added": stats.added, "replaced": stats.replaced, "items": len(engine.live),
                "version": engine.live.version}

    @app.delete("/items", dependencies=[Depends(authorized)])
    async def delete(req: DeleteRequest):
        engine = state.ready()
        removed = engine.remove(req.ids)
        return {"deleted": removed, "not_found": len(set(req.ids)) - removed, "items": len(engine.live),
                "version": engine.live.version}

    @app.get("/info", dependencies=[Depends(authorized)])
    async def info():
        engine = state.ready()
        return engine.info()

    app.add_middleware(_BodyLimit, limit=max_body)
    app.add_middleware(_RequestLog)
    return app


def _query_batch(queries: list):
    """The queries as the engine takes them: texts, or validated records (a Batch)."""
    if all(isinstance(q, str) for q in queries):
        return queries
    from .corpus import batch_from_dicts
    return batch_from_dicts([{"id": str(i), "text": q} if isinstance(q, str)
                             else {"id": str(i), **q.model_dump(exclude_none=True)} for i, q in enumerate(queries)])


def app_from_env() -> FastAPI:
    """The app of a uvicorn worker process: the index and key come from the environment."""
    _nodelay_on_shared_sockets()
    return create_app(os.environ[ENV_INDEX], os.environ.get(ENV_KEY) or None)


def _nodelay_on_shared_sockets() -> None:
    """With --workers, uvicorn's workers accept on a socket made by socket.fromfd, whose `proto` reads 0,
    and asyncio then leaves TCP_NODELAY off on the connections: a response written in two pieces waits
    for the client's delayed ACK, 40 ms (measured: 52 ms a query against 11 with one worker). Set it
    on every TCP stream socket asyncio opens, as asyncio means to."""
    import asyncio.base_events as base_events
    import socket

    def set_nodelay(sock) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    base_events._set_nodelay = set_nodelay


def run(index_dir: str, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, threads: int = 1,
        api_key: str | None = None, log_level: str = "warning") -> None:
    """Serve until SIGTERM or Ctrl-C (uvicorn shuts down cleanly on both). Each worker runs torch, BLAS and
    FAISS on `threads` threads: one query at a time gains nothing from more, and on 2 cores two threads
    took the p99 of a single query from 1.3 to 7.2 ms (p50 unchanged)."""
    import uvicorn

    for name in THREAD_VARIABLES:  # read when the workers import torch and numpy
        os.environ[name] = str(threads)
    os.environ[ENV_INDEX] = str(Path(index_dir).absolute())
    if api_key:
        os.environ[ENV_KEY] = api_key
    else:
        os.environ.pop(ENV_KEY, None)
    uvicorn.run("semhash.serve:app_from_env", factory=True, host=host, port=port, workers=workers,
                access_log=False, log_level=log_level)
