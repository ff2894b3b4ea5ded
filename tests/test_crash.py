"""Crash safety: scripts/crash_kill.py kills a writing process with SIGKILL at random moments and checks
the index after each kill (it opens, answers, holds exactly the committed batches, leaves no temporary
files). Here a dozen kills per store; the script's default is 100."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "crash_kill.py"


def kill_run(backend: str, kills: int, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), "--kills", str(kills), "--backend", backend, *extra],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_kills_at_random_moments_leave_exactly_the_committed_batches(backend, request):
    extra = ("--pg-url", request.getfixturevalue("pg_url")) if backend == "postgresql" else ()
    done = kill_run(backend, 12, "--seed", "1", *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    m = re.match(rf"{backend}: 12 kills, 12 left the index as committed \(\d+ after a commit the writer had "
                 rf"not yet reported\), (\d+) batches committed in all, 0 failed", done.stdout)
    assert m, done.stdout
    assert int(m.group(1)) >= 12  # the kills landed while batches were being written
