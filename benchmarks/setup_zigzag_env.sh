#!/usr/bin/env bash
# Create /work/main/.zigzag_venv (or $ZIGZAG_VENV): an isolated environment with
# zigzag-dse 3.9.1 (KU Leuven's analytical DSE tool). zigzag imports `six` without
# declaring it, so it is installed explicitly. Used by benchmarks/bench_zigzag.py and
# tests/test_zigzag_diff.py.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ZIGZAG_VENV:-$repo_root/.zigzag_venv}"
python="${PYTHON:-python3}"

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "zigzag-dse==3.9.1" six
"$venv/bin/python" -c "import zigzag; from zigzag.api import get_hardware_performance_zigzag as _; print('zigzag ready')"
