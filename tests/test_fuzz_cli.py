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
    monkeypatch.setattr(sys, "argv", ["fuzz_cli.py", "--cases", "200", "--seed", "7"])
    status = fuzz.main_()
    table = capsys.readouterr().out
    assert status == 0, table  # every case: `Error: …` and exit 1 (or a right answer), nothing else changed
    lines = table.strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    total = dict(zip(header, [c.strip() for c in lines[-1].strip("|").split("|")]))
    assert total["cases"] == "200" and total["exit 2"] == "0", table
    assert int(total["exit 1"]) + int(total["exit 0"]) == 200
    for problem in header[header.index("traceback"):]:
        assert total[problem] == "0", (problem, table)
    categories = {line.split("|")[1].strip() for line in lines[2:-1]}
    assert {"store rows", "model files", "output paths", "npz files", "big integers"} <= categories, categories
