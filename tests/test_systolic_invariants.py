"""Invariants of the systolic estimator on random layers, arrays, profiles and patterns (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energysim.dataflow import DATAFLOW_NAMES
from energysim.estimators.systolic import estimate_layer, layer_counts
from energysim.model import input_footprint
from energysim.sparsity import LayerSparsity
from energysim.spec import load_profile
from energysim.workload import LayerSpec

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def layers(draw):
    if draw(st.booleans()):
        f_in, f_out = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        rows = draw(st.sampled_from([None, 1, 3]))
        shape_in, shape_out = ((f_in,), (f_out,)) if rows is None else ((rows, f_in), (rows, f_out))
        return LayerSpec("fc", "linear", shape_in, shape_out, f_in, f_out, (1, 1), (1, 1), (0, 0), (1, 1), 1, False)
    groups = draw(st.sampled_from([1, 2]))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    hw = (draw(st.integers(kernel[0], 6)), draw(st.integers(kernel[1], 6)))
    out = tuple((hw[i] + 2 * padding[i] - kernel[i]) // stride[i] + 1 for i in range(2))
    kind = "depthwise" if groups > 1 and groups == c_in and c_out % c_in == 0 else "conv"
    return LayerSpec("conv", kind, (c_in, *hw), (c_out, *out), c_in, c_out, kernel, stride, padding, (1, 1), groups, False)


@st.composite
def profiles(draw, dataflow=None):
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if rows * cols == 1:
        cols = 2  # SCALE-Sim's cycle count on a 1x1 OS array makes utilization exceed 1 (docs)
    overrides = [
        f"array.rows={rows}",
        f"array.cols={cols}",
        f"array.dataflow={dataflow or draw(st.sampled_from(DATAFLOW_NAMES))}",
        f"sparsity.weight_format={draw(st.sampled_from(['dense', 'bitmask', 'csr']))}",
        f"sparsity.skip_zero_tiles={draw(st.sampled_from(['true', 'false']))}",
        f"memory.dram.bandwidth_words_per_cycle={draw(st.sampled_from(['.inf', '1', '3', '0.5']))}",
    ]
    if draw(st.booleans()):
        overrides.append(f"memory.buffer.shared_words={draw(st.sampled_from([8, 64, 100000]))}")
    else:
        small = draw(st.sampled_from([2, 16, 100000]))
        overrides += [f"memory.buffer.ifmap_words={small}", f"memory.buffer.filter_words={small}",
                      f"memory.buffer.ofmap_words={draw(st.sampled_from([0, 8, 100000]))}"]  # fmt: skip
    return load_profile("edge-16x16", overrides)


@st.composite
def patterns(draw, layer):
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    density_w, density_x = draw(st.sampled_from([0.0, 0.3, 1.0])), draw(st.sampled_from([0.2, 0.7, 1.0]))
    return LayerSparsity(rng.random(layer.weight_shape) < density_w, rng.random(layer.input_shape) < density_x)


@SETTINGS
@given(data=st.data())
def test_pe_cycles_add_up_and_macs_are_exact(data):
    layer = data.draw(layers())
    profile = data.draw(profiles())
    masks = data.draw(patterns(layer))
    counts = layer_counts(layer, profile, masks)
    pes = profile.array.rows * profile.array.cols
    trace = counts.trace
    assert trace.shape == (counts.cycles + 1, 3) or counts.cycles == 0
    assert (trace >= 0).all()
    assert trace.sum() == pes * len(trace)
    assert trace[:, 0].sum() == counts.effective_macs
    assert trace[:, 1].sum() == counts.gated_macs
    m, k, n = layer.gemm
    assert counts.macs == m * k * n * layer.groups
    if not profile.sparsity.skip_zero_tiles:
        assert counts.effective_macs + counts.gated_macs == counts.macs
    # The pattern's exact effective MACs, computed directly from the torch-shaped masks.
    assert counts.effective_macs == _direct_effective_macs(layer, masks)
    assert 0 <= counts.utilization <= 1
    assert counts.cycles == counts.compute_cycles + counts.stall_cycles


def _direct_effective_macs(layer, masks):
    """Sum over outputs and taps of weight-nonzero AND input-nonzero, via torch's own conv."""
    import torch
    import torch.nn.functional as F

    w = torch.as_tensor(masks.weight_mask, dtype=torch.float64)
    x = torch.as_tensor(masks.input_mask, dtype=torch.float64)
    if layer.kind == "linear":
        return int(round(float((x @ w.T).sum())))
    out = F.conv2d(x[None], w, stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    return int(round(float(out.sum())))


@SETTINGS
@given(data=st.data())
def test_dataflows_agree_on_macs(data):
    layer = data.draw(layers())
    masks = data.draw(patterns(layer))
    results = set()
    for dataflow in DATAFLOW_NAMES:
        profile = data.draw(profiles(dataflow))
        report = estimate_layer(layer, profile, masks, cycle_level=False)
        results.add((report.macs, report.effective_macs))
    assert len(results) == 1


@SETTINGS
@given(data=st.data())
def test_zeroing_weights_never_raises_energy_or_cycles(data):
    layer = data.draw(layers())
    profile = data.draw(profiles())
    masks = data.draw(patterns(layer))
    before = estimate_layer(layer, profile, masks, cycle_level=False)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    fewer = masks.weight_mask & (rng.random(layer.weight_shape) < data.draw(st.sampled_from([0.0, 0.5, 0.9])))
    after = estimate_layer(layer, profile, LayerSparsity(fewer, masks.input_mask), cycle_level=False)
    assert after.energy <= before.energy + 1e-9 * before.energy
    assert after.cycles <= before.cycles
    assert after.effective_macs <= before.effective_macs


@SETTINGS
@given(data=st.data())
def test_dram_reads_cover_the_footprint(data):
    layer = data.draw(layers())
    profile = data.draw(profiles())
    masks = data.draw(patterns(layer))
    report = estimate_layer(layer, profile, masks, cycle_level=False)
    dram = report.accesses["dram"]
    if not profile.sparsity.skip_zero_tiles:
        assert dram["inputs"]["reads"] >= int(input_footprint(layer).sum())
        if profile.sparsity.weight_format != "csr":
            # dense stores every weight; bitmask at least every nonzero
            need = layer.weight_count if profile.sparsity.weight_format == "dense" else int(masks.weight_mask.sum())
            assert dram["weights"]["reads"] >= need
    m, _, n = layer.gemm
    assert dram["outputs"]["writes"] >= m * n * layer.groups
    # Every input word the array reads was written into the buffer from DRAM first.
    assert report.accesses["buffer"]["inputs"]["writes"] == dram["inputs"]["reads"]


@SETTINGS
@given(data=st.data())
def test_no_stalls_with_unlimited_bandwidth(data):
    layer = data.draw(layers())
    profile = data.draw(profiles())
    profile = replace(profile, memory=replace(profile.memory, dram=replace(profile.memory.dram, bandwidth_words_per_cycle=float("inf"))))
    report = estimate_layer(layer, profile, data.draw(patterns(layer)), cycle_level=False)
    assert report.stall_cycles == 0
    assert report.cycles == report.compute_cycles


@pytest.mark.parametrize("dataflow", DATAFLOW_NAMES)
def test_dense_utilization_is_scalesims_formula(dataflow):
    layer = LayerSpec("fc", "linear", (5, 9), (5, 4), 9, 4, (1, 1), (1, 1), (0, 0), (1, 1), 1, False)
    profile = load_profile("edge-16x16", ["array.rows=2", "array.cols=3", f"array.dataflow={dataflow}"])
    report = estimate_layer(layer, profile)
    assert report.utilization == pytest.approx(5 * 9 * 4 / (6 * report.cycles))
