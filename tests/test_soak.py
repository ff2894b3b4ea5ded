"""Many readers, one writer: a short run of scripts/soak.py (4 reader processes, half loading the index for
every query and half holding one engine, beside a writer adding and deleting batches). No process may
see an error or a half-applied batch, the store must end with what the writer committed, and no answer
may be more than a second behind the store."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "soak.py"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_readers_never_fail_and_never_see_half_a_batch_while_a_writer_works(backend, request):
    extra = ["--pg-url", request.getfixturevalue("pg_url")] if backend == "postgresql" else []
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(SCRIPT), "--seconds", "4", "--readers", "4", "--items", "500",
                           "--backend", backend, *extra], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    row = done.stdout.splitlines()[-1].split("|")
    batches, queries, errors, torn, final = (row[4].strip(), row[5].strip(), row[6].strip(), row[7].strip(),
                                             row[8].strip())
    assert int(batches) > 10 and all(int(q) > 0 for q in queries.split(" / "))
    assert errors == "0 / 0" and torn == "0" and final.startswith("yes")
