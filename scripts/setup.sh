#!/usr/bin/env bash
# Creates .venv (or uses $VENV) and installs semhash with its test extras.
# The CPU build of PyTorch goes in first where no torch is present, and constraints.txt
# pins it, so that no later install pulls the multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install -q --disable-pip-version-check -c constraints.txt "torch==2.13.0"
fi
# Pin whatever torch is now installed, so the project install never replaces it.
PIN="$VENV/semhash-torch-pin.txt"
"$PY" -c "import torch; print('torch==' + torch.__version__)" > "$PIN"
"$PY" -m pip install -q --disable-pip-version-check -c "$PIN" -e ".[test]"
echo "semhash installed in $VENV" >&2
