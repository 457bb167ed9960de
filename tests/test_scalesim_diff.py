"""Differential test: dense timing and SRAM reads against SCALE-Sim 3.0.0 (CALC mode).

SCALE-Sim needs numpy 1.26, so it runs in its own environment, made by
``benchmarks/setup_scalesim_env.sh`` at ``.bench_venv``; without it these tests are
skipped with that reason. ``tests/test_scalesim_recorded.py`` checks the same cases
against SCALE-Sim's recorded figures in every run.
"""

from __future__ import annotations

import pytest

from benchmarks._scalesim_runner import ARRAYS, BENCH_PYTHON, DATAFLOWS, LAYERS, run_scalesim
from scalesim_agreement import assert_agrees_with_scalesim

pytestmark = pytest.mark.skipif(
    not BENCH_PYTHON.exists(),
    reason="SCALE-Sim environment missing: run benchmarks/setup_scalesim_env.sh to create .bench_venv",
)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("rows,cols", ARRAYS)
def test_dense_matches_scalesim(dataflow, rows, cols):
    assert_agrees_with_scalesim(rows, cols, dataflow, LAYERS, run_scalesim(rows, cols, dataflow, LAYERS))
