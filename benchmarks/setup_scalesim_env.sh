#!/usr/bin/env bash
# Create /work/main/.bench_venv (or $BENCH_VENV): an isolated environment with
# scalesim 3.0.0 pinned to numpy 1.26, which it needs (it crashes under numpy 2.x).
# Used by benchmarks/bench_scalesim.py and tests/test_scalesim_diff.py.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BENCH_VENV:-$repo_root/.bench_venv}"
python="${PYTHON:-python3}"

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# scalesim's own requirements pull in a newer numpy and tools it never uses for a
# CALC-mode run; install it without them and add the pieces it imports.
"$venv/bin/python" -m pip install --quiet "numpy==1.26.*" "pandas<2.3" tqdm absl-py
"$venv/bin/python" -m pip install --quiet --no-deps "scalesim==3.0.0"
"$venv/bin/python" -c "import numpy, scalesim; from scalesim.scale_sim import scalesim as _; print('scalesim ready with numpy', numpy.__version__)"
