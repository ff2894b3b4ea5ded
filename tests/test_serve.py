"""`semhash serve`: a real uvicorn process (two workers, an API key) on a free port of 127.0.0.1, called
with a real HTTP client (httpx): query, upsert, delete, info, every kind of bad request (each with its
status and message, and the server still answering), a write seen by the other worker, the request log,
and a clean stop on SIGTERM."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from semhash.engine import Engine  # noqa: E402
from semhash.store import Store  # noqa: E402
from helpers import run  # noqa: E402

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index_dir, log_path, workers: int = 1, key: str | None = KEY):
    """`semhash serve` on a free port, once every worker answers /health: (process, base URL, log file)."""
    port = free_port()
    log = open(log_path, "w")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", SEMHASH_API_KEY=key or "")
    proc = subprocess.Popen([sys.executable, "-m", "semhash.cli", "serve", "-i", str(index_dir),
                             "--port", str(port), "--workers", str(workers)], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, log_path.read_text()
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                # every worker answers once each has loaded; ask a few times on fresh connections
                if all(httpx.get(f"{base}/health", timeout=2).status_code == 200 for _ in range(3 * workers)):
                    break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.2)
    return proc, base, log


def stop_server(proc, log) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, vector_docs, write_jsonl, fit_tiny_model):
    root = tmp_path_factory.mktemp("serve")
    docs = vector_docs(120, seed=0)
    corpus = write_jsonl(root / "corpus.jsonl", docs)
    engine = Engine(fit_tiny_model(corpus, bits=16))
    engine.index(corpus, root / "idx", progress=False)
    engine.close()
    proc, base, log = start_server(root / "idx", root / "server.log", workers=2)
    yield {"base": base, "docs": docs, "index": root / "idx", "proc": proc, "log": root / "server.log"}
    stop_server(proc, log)


def post(server, path, body, headers=AUTH):
    return httpx.post(server["base"] + path, json=body, headers=headers, timeout=30)


def test_query_answers_as_the_engine_does(server):
    docs = server["docs"]
    body = {"queries": [{"id": "a", "vector": docs[0]["vector"]}, {"vector": docs[5]["vector"]}], "k": 5}
    r = post(server, "/query", body)
    assert r.status_code == 200, r.text
    with Engine.load(server["index"]) as engine:
        want = engine.query_batch([docs[0]["vector"], docs[5]["vector"]], k=5)
    got = r.json()["answers"]
    assert [a["query_id"] for a in got] == ["a", "1"]
    assert [[(h["id"], h["distance"], h["score"]) for h in a["hits"]] for a in got] == \
        [[(h.id, h.distance, h.score) for h in a.hits] for a in want]
    assert got[0]["hits"][0] == {**asdict(want[0].hits[0])}
    radius = post(server, "/query", {"queries": [{"vector": docs[0]["vector"]}], "k": 0, "radius": 1}).json()
    assert all(h["distance"] <= 1 for h in radius["answers"][0]["hits"])
    asym = post(server, "/query", {"queries": [{"vector": docs[3]["vector"]}], "k": 4, "asymmetric": True}).json()
    with Engine.load(server["index"]) as engine:
        want = engine.query(docs[3]["vector"], k=4, asymmetric=True)
    assert asym["answers"][0]["strategy"] == "asym"
    assert [(h["id"], h["distance"], h["score"]) for h in asym["answers"][0]["hits"]] == \
        [(h.id, h.distance, h.score) for h in want]


def test_a_write_is_seen_by_every_worker_and_delete_removes_it(server):
    docs = server["docs"]
    new = {"id": "fresh", "vector": [v + 0.001 for v in docs[7]["vector"]], "title": "new item"}
    r = post(server, "/items", {"items": [new, dict(docs[8], title="changed")]})
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 1 and r.json()["replaced"] == 1 and r.json()["items"] == 121
    pids = set()
    for _ in range(12):  # fresh connections land on both workers
        with httpx.Client(base_url=server["base"], headers=AUTH) as client:
            ans = client.post("/query", json={"queries": [{"vector": new["vector"]}], "k": 0, "radius": 0}).json()
            assert "fresh" in [h["id"] for h in ans["answers"][0]["hits"]]
            pids.add(client.get("/info").json()["items"])
    assert pids == {121}
    r = httpx.request("DELETE", server["base"] + "/items", json={"ids": ["fresh", "nope"]}, headers=AUTH)
    assert r.json() == {"deleted": 1, "not_found": 1, "items": 120, "version": r.json()["version"]}
    for _ in range(6):
        with httpx.Client(base_url=server["base"], headers=AUTH) as client:
            ans = client.post("/query", json={"queries": [{"vector": new["vector"]}], "k": 0, "radius": 16}).json()
            assert "fresh" not in [h["id"] for h in ans["answers"][0]["hits"]]
    info = httpx.get(server["base"] + "/info", headers=AUTH).json()
    assert info["items"] == 120 and info["manifest"]["bits"] == 16


@pytest.mark.parametrize("send,status,message", [
    (lambda s: httpx.post(s["base"] + "/query", content=b'{"queries": [', headers={**AUTH, "content-type":
                          "application/json"}), 422, "JSON decode error"),
    (lambda s: post(s, "/query", {"queries": [{"vector": [1.0, 2.0]}]}), 400,
     "2 dimensions but the model was trained on 16"),
    (lambda s: post(s, "/query", {"queries": ["some words"]}), 400, "vector"),
    (lambda s: post(s, "/query", {"queries": [{"vector": [0.0] * 16}], "k": 10001}), 422,
     "k: Input should be less than or equal to 10000"),
    (lambda s: post(s, "/query", {"queries": [{"vector": [0.0] * 16}], "radius": 17}), 400,
     "radius must be between 0 and the code length (16), got 17"),
    (lambda s: post(s, "/query", {"queries": [{"vector": [0.0] * 16}], "kk": 3}), 422, "kk: Extra inputs"),
    (lambda s: post(s, "/query", {"queries": [{"vector": [0.0] * 16}], "k": 0, "asymmetric": True}), 400,
     "asymmetric search needs k"),
    (lambda s: post(s, "/items", {"items": [{"id": "x"}]}), 400, "text"),
    (lambda s: httpx.post(s["base"] + "/items", content=b"x" * (17 << 20), headers=AUTH), 413,
     "larger than 16777216 bytes"),
    (lambda s: post(s, "/query", {"queries": ["a"]}, headers={"Authorization": "Bearer wrong"}), 401,
     "missing or wrong API key"),
    (lambda s: post(s, "/query", {"queries": ["a"]}, headers={}), 401, "missing or wrong API key"),
])
def test_bad_requests_get_their_status_and_message_and_the_server_goes_on(server, send, status, message):
    r = send(server)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"], r.json()
    ok = post(server, "/query", {"queries": [{"vector": server["docs"][1]["vector"]}], "k": 1})
    assert ok.status_code == 200 and ok.json()["answers"][0]["hits"]


def test_health_needs_no_key_and_each_request_is_logged(server):
    r = httpx.get(server["base"] + "/health")
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["items"] >= 120
    assert httpx.get(server["base"] + "/openapi.json").status_code == 200
    lines = server["log"].read_text().splitlines()
    assert any(line.startswith("POST /query 200 ") and line.endswith("ms") for line in lines)
    assert any(line.startswith("POST /query 401 ") for line in lines)


def test_sigterm_stops_the_server_cleanly(server):
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(server["base"] + "/health", timeout=2)


@pytest.mark.postgres
def test_two_servers_with_their_own_copy_of_the_index_share_one_postgresql_store(
        tmp_path, vector_docs, write_jsonl, fit_tiny_model, pg_url):
    """As on two machines: each server has its own copy of the index directory (manifest and model) and
    both use one PostgreSQL store. A write through either is seen by the other's next query."""
    docs = vector_docs(60, seed=1)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs)
    namespace = f"sv{uuid.uuid4().hex[:10]}"
    engine = Engine(fit_tiny_model(corpus, bits=16))
    engine.index(corpus, tmp_path / "a", db_url=pg_url, namespace=namespace, progress=False)
    engine.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    servers = []
    try:
        servers = [start_server(tmp_path / name, tmp_path / f"{name}.log", key=None) for name in "ab"]
        (_, a, _), (_, b, _) = servers
        new = {"id": "fresh", "vector": [v + 0.001 for v in docs[3]["vector"]]}
        r = httpx.post(a + "/items", json={"items": [new]})
        assert r.status_code == 200 and r.json()["items"] == 61, r.text
        ask = {"queries": [{"vector": new["vector"]}], "k": 0, "radius": 0}
        assert "fresh" in [h["id"] for h in httpx.post(b + "/query", json=ask).json()["answers"][0]["hits"]]
        r = httpx.request("DELETE", b + "/items", json={"ids": ["fresh", docs[0]["id"]]})
        assert r.json()["deleted"] == 2 and r.json()["items"] == 59
        assert "fresh" not in [h["id"] for h in httpx.post(a + "/query", json=ask).json()["answers"][0]["hits"]]
        assert httpx.get(a + "/info").json()["items"] == httpx.get(b + "/info").json()["items"] == 59
    finally:
        for proc, _, log in servers:
            stop_server(proc, log)
        Store(pg_url, None, namespace=namespace, create=False).drop()


@pytest.mark.parametrize("option,message", [
    (["--workers", "0"], "Error: --workers must be from 1 to 64, got 0\n"),
    (["--threads", "0"], "Error: --threads must be from 1 to 1024, got 0\n"),
    (["--port", "70000"], "Error: --port must be from 0 to 65535, got 70000\n"),
])
def test_serve_refuses_out_of_range_options_before_starting(server, option, message):
    result = run("serve", "-i", server["index"], *option)
    assert result.exit_code == 1 and result.output == message
