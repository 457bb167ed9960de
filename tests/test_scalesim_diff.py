"""Differential test: dense timing and SRAM reads against SCALE-Sim 3.0.0 (CALC mode).

SCALE-Sim needs numpy 1.26, so it runs in its own environment, made by
``benchmarks/setup_scalesim_env.sh`` at ``.bench_venv``; without it these tests are
skipped with that reason.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from energysim.estimators.systolic import estimate_layer
from energysim.spec import load_profile
from energysim.workload import LayerSpec

ROOT = Path(__file__).resolve().parents[1]
BENCH_PYTHON = ROOT / ".bench_venv" / "bin" / "python"
RUNNER = ROOT / "benchmarks" / "_scalesim_runner.py"

pytestmark = pytest.mark.skipif(
    not BENCH_PYTHON.exists(),
    reason="SCALE-Sim environment missing: run benchmarks/setup_scalesim_env.sh to create .bench_venv",
)

# (name, ifmap h, ifmap w, filter h, filter w, channels, filters, stride); (H - F) % stride == 0
# so that SCALE-Sim's ceil-based output size equals PyTorch's floor-based one.
LAYERS = [
    ("c3x3", 6, 6, 3, 3, 2, 7, 1),
    ("c_stride2", 7, 9, 3, 3, 3, 5, 2),
    ("c1x1", 5, 5, 1, 1, 9, 11, 1),
    ("fc_like", 1, 1, 1, 1, 23, 6, 1),
    ("c_wide", 4, 10, 2, 4, 4, 13, 2),
]
ARRAYS = [(4, 5), (3, 3), (8, 2)]


def _layer_spec(name, h, w, fh, fw, c, n, s):
    out = ((h - fh) // s + 1, (w - fw) // s + 1)
    return LayerSpec(name, "conv", (c, h, w), (n, *out), c, n, (fh, fw), (s, s), (0, 0), (1, 1), 1, False)


def _run_scalesim(rows, cols, dataflow):
    request = {
        "rows": rows,
        "cols": cols,
        "dataflow": dataflow,
        "layers": [
            dict(zip(("name", "ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "filters", "stride"), layer))
            for layer in LAYERS
        ],
    }
    done = subprocess.run(
        [str(BENCH_PYTHON), str(RUNNER)], input=json.dumps(request), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
@pytest.mark.parametrize("rows,cols", ARRAYS)
def test_dense_matches_scalesim(dataflow, rows, cols):
    profile = load_profile(
        "edge-16x16",
        [
            f"array.rows={rows}",
            f"array.cols={cols}",
            f"array.dataflow={dataflow}",
            "sparsity.weight_format=dense",
            "memory.dram.bandwidth_words_per_cycle=.inf",
        ],
    )
    theirs = _run_scalesim(rows, cols, dataflow)
    for spec, ref in zip(LAYERS, theirs):
        ours = estimate_layer(_layer_spec(*spec), profile)
        where = f"{spec[0]} on {rows}x{cols} {dataflow}"
        assert ref["stall_cycles"] == 0, where
        assert ours.compute_cycles == ref["compute_cycles"], where
        assert ours.stall_cycles == 0, where
        assert (ours.extra["row_folds"], ours.extra["col_folds"]) == (ref["row_folds"], ref["col_folds"]), where
        assert ours.utilization * 100 == pytest.approx(ref["overall_util_pct"], rel=1e-12), where
        assert ours.extra["mapping_efficiency"] * 100 == pytest.approx(ref["mapping_efficiency_pct"], rel=1e-12), where
        assert ours.accesses["buffer"]["inputs"]["reads"] == ref["ifmap_sram_reads"], where
        assert ours.accesses["buffer"]["weights"]["reads"] == ref["filter_sram_reads"], where
        assert ours.macs == ours.effective_macs, where
