"""Time `semhash serve` against the same queries in process.

    python scripts/bench_serve.py --index fm-index --queries fashion-mnist/test.npz [--seconds 10]
    python scripts/bench_serve.py --index fm-index --queries fashion-mnist/test.npz --soak 300

Benchmark: one query per request (k=10, the vector as JSON, encoded once beforehand), sent by 1, 8 and
32 concurrent clients (asyncio tasks of one httpx.AsyncClient, each waiting for its answer before the
next request), to a server of 1 and 2 workers (one thread each, the default), for --seconds each; beside
it, in process, single `Engine.query` calls on one thread, as a worker runs them, and one batched
`Engine.query_batch` on all cores. Prints queries/s, p50/p99 latency as the client saw it, the p50 of
the server's own request time (from its log lines), and the service's overhead at p50 over a single
in-process query with one client.

--soak S: 8 clients query and 1 client upserts and deletes batches (of 20 items, copies of query
vectors under new ids) for S seconds against a server of 2 workers; prints the answers that were not
2xx (there must be none) and whether /info's final count equals what the writer committed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from semhash.engine import Engine

JSON = {"content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(index: str, workers: int, log=subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    import httpx
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "semhash.cli", "serve", "-i", index, "--port", str(port),
                             "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=log,
                            start_new_session=True)  # its own process group: stop() can find every worker
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    ready = 0
    while ready < 4 * workers:  # several fresh connections in a row answer: every worker has loaded
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"the server did not start (exit {proc.poll()})")
        try:
            ready = ready + 1 if httpx.get(f"{base}/health", timeout=5).status_code == 200 else 0
        except httpx.TransportError:
            ready = 0
        if not ready:
            time.sleep(0.3)
    return proc, base


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server; then any process of its group still running 5 s later (a worker that
    outlived it, seen once after a soak) is reported and killed, so that no benchmark runs beside it."""
    proc.terminate()
    proc.wait(timeout=60)
    deadline = time.time() + 5
    while group_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    left = group_alive(proc.pid)
    if left:
        print(f"warning: {len(left)} process(es) of the server outlived its SIGTERM ({', '.join(left)}); killing "
              f"them", file=sys.stderr)
        os.killpg(proc.pid, signal.SIGKILL)


def group_alive(pgid: int) -> list[str]:
    """'pid:name' of the processes of group `pgid` that are not zombies (from /proc)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(f"{stat.parent.name}:{name}")
    return alive


async def load(base: str, bodies: list[dict], clients: int, seconds: float) -> list[float]:
    import httpx
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(i: int, http) -> None:
        nonlocal errors
        j = i
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            r = await http.post("/query", content=bodies[j % len(bodies)], headers=JSON)
            latencies.append(time.perf_counter() - t)
            errors += r.status_code != 200
            j += clients

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    if errors:
        raise SystemExit(f"{errors} requests failed")
    return latencies


def row(name: str, lat: list[float], seconds: float, server: str = "") -> str:
    ms = np.asarray(lat) * 1000
    return (f"| {name} | {len(lat) / seconds:,.0f} | {np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} "
            f"| {server} |")


def server_p50(log, start: int) -> str:
    """The p50 of the request times that the server logged for POST /query since byte `start` of its log."""
    log.flush()
    with open(log.name, encoding="utf-8") as fh:
        fh.seek(start)
        ms = [float(x) for x in re.findall(r"POST /query 200 ([0-9.]+)ms", fh.read())]
    return f"{np.percentile(ms, 50):.2f}" if ms else ""


def bench(index: str, vectors: np.ndarray, seconds: float) -> None:
    from threadpoolctl import threadpool_limits

    bodies = [json.dumps({"queries": [{"vector": v.tolist()}], "k": 10}).encode() for v in vectors[:1000]]
    with Engine.load(index) as engine:
        with threadpool_limits(limits=1):  # as a server worker runs (semhash serve --threads 1)
            engine.query(vectors[0], k=10)
            lat = []
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                v = vectors[len(lat) % len(vectors)]
                t = time.perf_counter()
                engine.query(v, k=10)
                lat.append(time.perf_counter() - t)
        single = lat
        t = time.perf_counter()
        engine.query_batch(vectors, k=10)
        batched = time.perf_counter() - t
    print("| setting | queries/s | p50 ms | p99 ms | server's p50 ms |")
    print("|---|---:|---:|---:|---:|")
    print(row("in process: Engine.query, one at a time, 1 thread", single, seconds))
    print(f"| in process: Engine.query_batch of {len(vectors):,} | {len(vectors) / batched:,.0f} | "
          f"{batched / len(vectors) * 1000:.3f} (per query) | | |")
    p50_http = None
    with tempfile.NamedTemporaryFile("a+", suffix=".log") as log:
        for workers in (1, 2):
            proc, base = start(index, workers, log)
            try:
                asyncio.run(load(base, bodies, 1, 2))  # warm-up
                for clients in (1, 8, 32):
                    mark = os.path.getsize(log.name)
                    lat = asyncio.run(load(base, bodies, clients, seconds))
                    print(row(f"HTTP: {workers} worker{'s' if workers > 1 else ''}, {clients} client"
                              f"{'s' if clients > 1 else ''}", lat, seconds, server_p50(log, mark)), flush=True)
                    if workers == 1 and clients == 1:
                        p50_http = float(np.percentile(lat, 50))
            finally:
                stop(proc)
    overhead = (p50_http - float(np.percentile(single, 50))) * 1000
    print(f"\nservice overhead at p50, 1 worker, 1 client, over a single in-process query: {overhead:.2f} ms")


async def soak(base: str, vectors: np.ndarray, seconds: float, start_items: int) -> dict:
    import httpx
    deadline = time.perf_counter() + seconds
    bad = {"query": 0, "write": 0}
    done = {"queries": 0, "writes": 0}
    alive: list[int] = []

    async def reader(i: int, http) -> None:
        j = i
        while time.perf_counter() < deadline:
            r = await http.post("/query", json={"queries": [{"vector": vectors[j % len(vectors)].tolist()}], "k": 10})
            bad["query"] += not 200 <= r.status_code < 300
            done["queries"] += 1
            j += 8

    tag = f"soak{os.getpid()}x{int(time.time())}"  # ids of this run only: earlier runs may have left items

    async def writer(http) -> None:
        b = 0
        rng = np.random.default_rng(0)
        while time.perf_counter() < deadline:
            if alive and (len(alive) > 20 or rng.random() < 0.4):
                gone = alive.pop(int(rng.integers(len(alive))))
                r = await http.request("DELETE", "/items", json={"ids": [f"{tag}-{gone}-{j}" for j in range(20)]})
            else:
                items = [{"id": f"{tag}-{b}-{j}", "vector": vectors[(b * 20 + j) % len(vectors)].tolist()}
                         for j in range(20)]
                r = await http.post("/items", json={"items": items})
                alive.append(b)
                b += 1
            bad["write"] += not 200 <= r.status_code < 300
            done["writes"] += 1
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        await asyncio.gather(writer(http), *(reader(i, http) for i in range(8)))
        info = (await http.get("/info")).json()
    return {**done, "bad_queries": bad["query"], "bad_writes": bad["write"], "final_items": info["items"],
            "expected_items": start_items + 20 * len(alive)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--queries", required=True, help="An .npz with a 'vectors' array (e.g. fashion-mnist/test.npz).")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--soak", type=float, default=0, help="Run the soak for this many seconds instead.")
    args = ap.parse_args()
    vectors = np.load(args.queries)["vectors"].astype(np.float32)
    if not args.soak:
        bench(args.index, vectors, args.seconds)
        return
    with Engine.load(args.index) as engine:
        start_items = len(engine.live)
    proc, base = start(args.index, 2)
    try:
        r = asyncio.run(soak(base, vectors, args.soak, start_items))
    finally:
        stop(proc)
    ok = r["bad_queries"] == r["bad_writes"] == 0 and r["final_items"] == r["expected_items"]
    print(f"soak {args.soak:g} s, 2 workers, 8 querying clients + 1 writer: {r['queries']:,} queries, "
          f"{r['writes']:,} writes, non-2xx answers: {r['bad_queries']} queries / {r['bad_writes']} writes; "
          f"final items {r['final_items']:,} (committed: {r['expected_items']:,}) {'ok' if ok else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
