"""Soak: reader processes query one index while one writer adds and deletes in batches.

    python scripts/soak.py [--seconds 600] [--backend sqlite|postgresql] [--readers 8] [--items 5000]

The index holds --items synthetic 32-d vectors (ITQ, 32 bits). The writer commits a batch about every
50 ms, each one transaction: it adds 20 new items tagged with the batch number (Engine.add), or
deletes every item of an earlier batch (Engine.remove), and logs each change's version and commit
time. Half of the readers load the index for every query (Engine.load, query, close); the others
hold one Engine open for the whole run. Each reader asks k=10 queries and, every fifth query, lists
every item (radius = all bits) and checks that each batch is there whole or not at all.

Reported: errors in every process (there must be none), queries, whether the final store holds what
the writer committed, and the staleness of the answers: for a query started at t that answered from
version v, the time since the first change after v was committed, if that was before t (0 when the
answer was up to date). Exit status 1 on any error or mismatch.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

import numpy as np

DEFAULT_PG = os.environ.get("SEMHASH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DIM, BITS, BATCH = 32, 32, 20


def vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    centers = np.random.default_rng(12345).normal(scale=3.0, size=(32, DIM))
    return (centers[rng.integers(0, len(centers), n)] + rng.normal(scale=0.6, size=(n, DIM))).astype(np.float32)


def batch(ids: list[str], X: np.ndarray, tag: int):
    from semhash.corpus import Batch
    return Batch(ids=ids, vectors=X, labels=[() for _ in ids], payloads=[{"batch": tag} for _ in ids])


def writer(index: str, deadline: float, out: str, seed: int) -> None:
    from semhash.engine import Engine
    rng = np.random.default_rng(seed)
    log, errors, alive, b = [], [], [], 0
    engine = Engine.load(index)
    while time.time() < deadline:
        try:
            if alive and (len(alive) > 40 or rng.random() < 0.4):
                gone = alive.pop(int(rng.integers(len(alive))))
                engine.remove([f"w{gone}-{j}" for j in range(BATCH)])
                kind = ("delete", gone)
            else:
                engine.add(batch([f"w{b}-{j}" for j in range(BATCH)], vectors(rng, BATCH), b))
                alive.append(b)
                kind = ("add", b)
                b += 1
            log.append((engine.live.version, time.time(), *kind))
        except Exception:  # noqa: BLE001 - every error is counted and reported
            errors.append(traceback.format_exc(limit=3))
        time.sleep(0.05)
    engine.close()
    Path(out).write_text(json.dumps({"log": log, "errors": errors, "alive": alive}))


def reader(index: str, deadline: float, out: str, seed: int, hold: bool) -> None:
    from semhash.engine import Engine
    rng = np.random.default_rng(seed)
    answers, errors, torn = [], [], 0
    held = Engine.load(index) if hold else None
    n = 0
    while time.time() < deadline:
        t0 = time.time()
        try:
            engine = held or Engine.load(index)
            try:
                if n % 5 == 4:
                    hits = engine.query(vectors(rng, 1)[0], k=None, radius=BITS)
                    counts: dict[int, int] = {}
                    for h in hits:
                        counts[h.payload["batch"]] = counts.get(h.payload["batch"], 0) + 1
                    torn += sum(1 for tag, c in counts.items() if tag >= 0 and c != BATCH)
                else:
                    engine.query(vectors(rng, 1)[0], k=10, radius=2)
                answers.append((t0, engine.live.version))
            finally:
                if held is None:
                    engine.close()
        except Exception:  # noqa: BLE001
            errors.append(traceback.format_exc(limit=3))
        n += 1
    if held is not None:
        held.close()
    Path(out).write_text(json.dumps({"answers": answers, "errors": errors, "torn": torn, "hold": hold}))


def staleness(answers: list, commits: list[tuple[int, float]]) -> np.ndarray:
    """Per answer (t0, version): seconds since the first commit after `version`, if before t0, else 0."""
    versions = np.array([v for v, _ in commits])
    times = np.array([t for _, t in commits])
    out = []
    for t0, v in answers:
        i = np.searchsorted(versions, v, side="right")  # the first change after v
        out.append(max(0.0, t0 - times[i]) if i < len(times) and times[i] < t0 else 0.0)
    return np.asarray(out)


def run(seconds: float, backend: str, readers: int, items: int, pg_url: str, work: Path) -> dict:
    from semhash.engine import Engine
    from semhash.store import Store

    rng = np.random.default_rng(0)
    ids = [f"i{i}" for i in range(items)]
    engine = Engine.train(batch(ids, vectors(rng, items), -1), bits=BITS, hasher="itq", progress=False)
    first = work / "first.jsonl"
    X = vectors(rng, items)
    first.write_text("".join(json.dumps({"id": e, "vector": x.tolist(), "batch": -1}) + "\n" for e, x in zip(ids, X)))
    namespace = f"sk{uuid.uuid4().hex[:10]}"
    db_url = pg_url if backend == "postgresql" else None
    index = str(work / "idx")
    engine.index(first, index, db_url=db_url, namespace=namespace if db_url else None, progress=False)
    start_version = engine.live.version
    engine.close()
    try:
        deadline = time.time() + 3 + seconds  # the processes start within the first seconds
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=writer, args=(index, deadline, str(work / "w.json"), 1))]
        procs += [ctx.Process(target=reader, args=(index, deadline, str(work / f"r{i}.json"), 100 + i, i % 2 == 1))
                  for i in range(readers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        w = json.loads((work / "w.json").read_text())
        rs = [json.loads((work / f"r{i}.json").read_text()) for i in range(readers)]
        final = Engine.load(index)
        held = {it.ext_id for it in final.store.fetch(final.store.all_codes()[0])}
        want = set(ids) | {f"w{b}-{j}" for b in w["alive"] for j in range(BATCH)}
        last = w["log"][-1][0] if w["log"] else start_version
        result = {"backend": backend, "seconds": seconds, "readers": readers, "items": items,
                  "batches": len(w["log"]), "writer_errors": len(w["errors"]),
                  "reader_errors": sum(len(r["errors"]) for r in rs), "torn": sum(r["torn"] for r in rs),
                  "queries_load": sum(len(r["answers"]) for r in rs if not r["hold"]),
                  "queries_hold": sum(len(r["answers"]) for r in rs if r["hold"]),
                  "final_ok": held == want and len(final.live) == len(want) and final.live.version == last,
                  "final_items": len(held), "expected_items": len(want),
                  "errors": (w["errors"] + [e for r in rs for e in r["errors"]])[:3]}
        final.close()
        commits = [(v, t) for v, t, *_ in w["log"]]
        for mode, hold in (("load", False), ("hold", True)):
            s = staleness([a for r in rs if r["hold"] == hold for a in r["answers"]], commits)
            result[f"stale_{mode}_max"] = float(s.max()) if len(s) else 0.0
            result[f"stale_{mode}_p99"] = float(np.percentile(s, 99)) if len(s) else 0.0
            result[f"stale_{mode}_over_1s"] = int((s > 1.0).sum())
        return result
    finally:
        if db_url:
            Store(db_url, None, namespace=namespace, create=False).drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--readers", type=int, default=8)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        r = run(args.seconds, args.backend, args.readers, args.items, args.pg_url, Path(tmp))
    print("| store | seconds | readers | batches committed | queries (load / hold) | errors (writer / readers) "
          "| torn answers | final store = committed | staleness max / p99 (load) | staleness max / p99 (hold) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    print(f"| {r['backend']} | {r['seconds']:g} | {r['readers']} | {r['batches']} | {r['queries_load']} / "
          f"{r['queries_hold']} | {r['writer_errors']} / {r['reader_errors']} | {r['torn']} | "
          f"{'yes' if r['final_ok'] else 'NO'} ({r['final_items']} items) | {r['stale_load_max'] * 1000:.0f} / "
          f"{r['stale_load_p99'] * 1000:.0f} ms | {r['stale_hold_max'] * 1000:.0f} / {r['stale_hold_p99'] * 1000:.0f} ms |")
    for e in r["errors"]:
        print(e, file=sys.stderr)
    bad = (r["writer_errors"] or r["reader_errors"] or r["torn"] or not r["final_ok"]
           or r["stale_load_over_1s"] or r["stale_hold_over_1s"] or not r["batches"])
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
