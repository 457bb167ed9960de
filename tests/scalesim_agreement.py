"""The one comparison of this estimator with SCALE-Sim 3.0.0 figures (dense, CALC mode).

Used by ``tests/test_scalesim_diff.py`` (SCALE-Sim run live) and
``tests/test_scalesim_recorded.py`` (its figures recorded in ``tests/data/scalesim-3.0.0.json``
by ``benchmarks/record_scalesim.py``), so both check the same quantities the same way.
"""

from __future__ import annotations

import pytest

from energysim.estimators.systolic import estimate_layer
from energysim.spec import load_profile
from energysim.workload import LayerSpec


def layer_spec(layer):
    """The conv ``LayerSpec`` of a SCALE-Sim topology row (a dict with the runner's ``LAYER_KEYS``)."""
    h, w, fh, fw, s = (layer[key] for key in ("ifmap_h", "ifmap_w", "filter_h", "filter_w", "stride"))
    c, n = layer["channels"], layer["filters"]
    out = ((h - fh) // s + 1, (w - fw) // s + 1)
    return LayerSpec(layer["name"], "conv", (c, h, w), (n, *out), c, n, (fh, fw), (s, s), (0, 0), (1, 1), 1, False)


def scalesim_profile(rows, cols, dataflow):
    """The profile of a SCALE-Sim run: a ``rows`` x ``cols`` array, dense weights, unlimited DRAM bandwidth."""
    return load_profile(
        "edge-16x16",
        [
            f"array.rows={rows}",
            f"array.cols={cols}",
            f"array.dataflow={dataflow}",
            "sparsity.weight_format=dense",
            "memory.dram.bandwidth_words_per_cycle=.inf",
        ],
    )


def assert_agrees_with_scalesim(rows, cols, dataflow, layers, refs):
    """Assert that our dense estimate of each layer equals SCALE-Sim's figures for it.

    Compares compute cycles (no stalls on either side), row and column folds,
    overall utilization and mapping efficiency, and ifmap and filter SRAM reads.

    Parameters
    ----------
    rows, cols : int
        Array height and width.
    dataflow : str
        ``"ws"``, ``"os"`` or ``"is"``.
    layers : list of dict
        SCALE-Sim topology rows (the runner's ``LAYER_KEYS``).
    refs : list of dict
        SCALE-Sim's figures for each layer, in the same order, as
        ``benchmarks/_scalesim_runner.py`` reports them.
    """
    assert len(refs) == len(layers), f"{len(layers)} layers but {len(refs)} SCALE-Sim results"
    profile = scalesim_profile(rows, cols, dataflow)
    for layer, ref in zip(layers, refs):
        ours = estimate_layer(layer_spec(layer), profile)
        where = f"{layer['name']} on {rows}x{cols} {dataflow}"
        assert ref["stall_cycles"] == 0, where
        assert ours.compute_cycles == ref["compute_cycles"], where
        assert ours.stall_cycles == 0, where
        assert (ours.extra["row_folds"], ours.extra["col_folds"]) == (ref["row_folds"], ref["col_folds"]), where
        assert ours.utilization * 100 == pytest.approx(ref["overall_util_pct"], rel=1e-12), where
        assert ours.extra["mapping_efficiency"] * 100 == pytest.approx(ref["mapping_efficiency_pct"], rel=1e-12), where
        assert ours.accesses["buffer"]["inputs"]["reads"] == ref["ifmap_sram_reads"], where
        assert ours.accesses["buffer"]["weights"]["reads"] == ref["filter_sram_reads"], where
        assert ours.macs == ours.effective_macs, where
