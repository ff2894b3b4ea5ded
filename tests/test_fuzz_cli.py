"""A sample of scripts/fuzz_cli.py: generated bad inputs against the CLI, in process."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def test_a_sample_of_generated_bad_inputs_all_fail_cleanly(monkeypatch, capsys):
    path = Path(__file__).resolve().parents[1] / "scripts" / "fuzz_cli.py"
    spec = importlib.util.spec_from_file_location("fuzz_cli", path)
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    monkeypatch.setattr(sys, "argv", ["fuzz_cli.py", "--cases", "80", "--seed", "7"])
    status = fuzz.main_()
    table = capsys.readouterr().out
    assert status == 0, table  # every case: `Error: …`, exit 1, nothing written or changed
    total = table.strip().splitlines()[-1]
    assert total.startswith("| **all** | 80 | 80 | 0 | 0 | 0 | 0 |"), table
