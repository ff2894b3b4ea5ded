"""The README's Python API section, run line by line as a user would paste it (in a scratch directory
holding the shipped sample corpus)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def api_section() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_api_section_runs(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / "data" / "debian-sample.jsonl", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    code = api_section()
    lines = code.splitlines()
    assert lines[0] == "from semhash import Engine" and len(lines) > 10
    scope: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), scope)
    # what the comments promise
    assert (scope["stats"].added, scope["stats"].replaced) == (3000, 0)
    assert len(scope["hits"]) == 10 and len(scope["answers"]) == 2
    assert capsys.readouterr().out.splitlines()[0].startswith("0 ")  # query_iter printed each answer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy-of-index", "data", "my-index", "reranked-index"]
    for name in ("engine", "reader"):
        scope[name].close()
