"""The systolic model against hand-derived numbers and the brute-force reference in tests/naive.py."""

from __future__ import annotations


import numpy as np
import pytest

from energysim.dataflow import DATAFLOW_NAMES, get_dataflow
from energysim.estimators.systolic import estimate_layer, layer_counts, utilization_trace
from energysim.model import gemm_operands, plan_folds, weight_words
from energysim.model.macs import weighted_block_sums
from energysim.sparsity import LayerSparsity
from energysim.spec import load_profile
from energysim.workload import LayerSpec
from naive import naive_im2col, naive_systolic_trace

UNLIMITED = "memory.dram.bandwidth_words_per_cycle=.inf"


def profile_for(dataflow="ws", rows=3, cols=3, *overrides):
    return load_profile(
        "edge-16x16",
        [f"array.rows={rows}", f"array.cols={cols}", f"array.dataflow={dataflow}", "sparsity.weight_format=dense",
         "sparsity.skip_zero_tiles=false", UNLIMITED, *overrides],
    )  # fmt: skip


def conv(name="c", c_in=2, hw=(5, 5), c_out=4, kernel=(3, 3), stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    h_out = (hw[0] + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    w_out = (hw[1] + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    kind = "depthwise" if groups > 1 and groups == c_in and c_out % c_in == 0 else "conv"
    return LayerSpec(name, kind, (c_in, *hw), (c_out, h_out, w_out), c_in, c_out, kernel, stride, padding, dilation, groups, False)


def linear(name="fc", f_in=7, f_out=5, rows=None):
    shape_in = (f_in,) if rows is None else (rows, f_in)
    shape_out = (f_out,) if rows is None else (rows, f_out)
    return LayerSpec(name, "linear", shape_in, shape_out, f_in, f_out, (1, 1), (1, 1), (0, 0), (1, 1), 1, False)


def random_masks(layer, rng, weight_density=0.5, input_density=0.6):
    return LayerSparsity(rng.random(layer.weight_shape) < weight_density, rng.random(layer.input_shape) < input_density)


# -- dataflow and folds --------------------------------------------------------


def test_dataflow_mapping_is_scalesims():
    assert get_dataflow("ws").dim_sizes((10, 20, 30)) == (20, 30, 10)
    assert get_dataflow("os").dim_sizes((10, 20, 30)) == (10, 30, 20)
    assert get_dataflow("is").dim_sizes((10, 20, 30)) == (20, 10, 30)
    assert [get_dataflow(d).stationary for d in DATAFLOW_NAMES] == ["weights", "outputs", "inputs"]
    with pytest.raises(ValueError, match="dataflow must be one of ws, os, is, got 'rs'"):
        get_dataflow("rs")


def test_arrange_puts_operands_in_array_coordinates():
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # (G, M, K)
    w = np.arange(2 * 4 * 5).reshape(2, 4, 5)  # (G, K, N)
    ws = get_dataflow("ws").arrange(x, w)
    assert set(ws) == {"stationary", "row_stream"}
    assert ws["stationary"][1, 2, 3] == w[1, 2, 3]  # (k, n)
    assert ws["row_stream"][1, 2, 0] == x[1, 0, 2]  # (k, m)
    os_ = get_dataflow("os").arrange(x, w)
    assert set(os_) == {"row_stream", "col_stream"}
    assert os_["row_stream"][0, 1, 2] == x[0, 1, 2]  # (m, k)
    assert os_["col_stream"][0, 4, 3] == w[0, 3, 4]  # (n, k)
    is_ = get_dataflow("is").arrange(x, w)
    assert is_["stationary"][0, 3, 1] == x[0, 1, 3]  # (k, m)
    assert is_["row_stream"][0, 3, 4] == w[0, 3, 4]  # (k, n)


def test_single_fold_cycles_written_out():
    # WS, 3x3 array, K=3 (rows), N=2 (cols), M=4 (streamed): one fold.
    # fill = 3 (shift the weights in) + 2 (skew down the rows); stream = 4; drain = 2.
    fill, stream, drain = 3 + 2, 4, 2
    layer = linear(f_in=3, f_out=2, rows=4)
    plan = plan_folds(layer.gemm, 1, get_dataflow("ws"), 3, 3)
    assert plan.count == 1 and plan.fold_cycles == fill + stream + drain == 11
    report = estimate_layer(layer, profile_for("ws"))
    assert report.compute_cycles == 11 - 1  # SCALE-Sim reports the index of the last cycle
    assert report.cycles == 10 and report.stall_cycles == 0
    # OS on the same GEMM: rows = M = 4 -> 2 folds of K=3 stream steps, no preload:
    # fill = 2, stream = 3, drain = 2 -> 7 cycles each.
    report = estimate_layer(layer, profile_for("os"))
    assert report.extra["folds"] == 2 and report.extra["fold_cycles"] == 2 + 3 + 2
    assert report.compute_cycles == 2 * 7 - 1


def test_fold_counts_and_mapping_efficiency_by_hand():
    # WS, K=18, N=7 on 4x5: row folds ceil(18/4)=5 (4,4,4,4,2 rows), col folds 2 (5,2 cols).
    plan = plan_folds((16, 18, 7), 1, get_dataflow("ws"), 4, 5)
    assert (plan.row_blocks, plan.col_blocks, plan.count) == (5, 2, 10)
    assert plan.mapping_efficiency.mean() == pytest.approx((18 / 5) * (7 / 2) / 20)
    assert list(plan.col_block) == [0] * 5 + [1] * 5  # column block is the outer loop


# -- lowering --------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [
        conv(padding=(1, 1)),
        conv(c_in=4, c_out=6, stride=(2, 1), groups=2, padding=(1, 0)),
        conv(c_in=3, c_out=3, groups=3, dilation=(2, 1), hw=(6, 5), padding=(1, 1)),
    ],
)
def test_im2col_matches_naive(layer):
    rng = np.random.default_rng(0)
    masks = random_masks(layer, rng)
    ops = gemm_operands(layer, masks.weight_mask, masks.input_mask)
    assert np.array_equal(ops.x.astype(bool), naive_im2col(masks.input_mask, layer))
    g, cg = layer.groups, layer.out_channels // layer.groups
    for group in range(g):
        for n in range(cg):
            assert np.array_equal(ops.w[group, :, n].astype(bool), masks.weight_mask[group * cg + n].reshape(-1))


def test_padding_is_gated_not_effective():
    layer = conv(c_in=1, c_out=1, hw=(3, 3), padding=(1, 1))
    report = estimate_layer(layer, profile_for("ws"))
    # 9 outputs x 9 taps = 81 MAC slots; the valid taps number 3x3 windows on a 3x3 input with padding 1:
    # sum over output positions of (rows in range) x (cols in range) = (2+3+2)^2 = 49.
    assert report.macs == 81 and report.effective_macs == 49 and report.gated_macs == 32


# -- brute force -------------------------------------------------------------------


CASES = [
    conv(c_in=2, c_out=4, hw=(4, 4), padding=(1, 1)),
    conv(c_in=4, c_out=4, hw=(4, 3), kernel=(2, 2), stride=(2, 1), groups=2),
    linear(f_in=7, f_out=5, rows=4),
]


def channel_masks(layer, rng):
    """Whole output channels pruned, inputs random: stationary rows with runs of nonzeros."""
    weight = np.ones(layer.weight_shape, bool)
    weight[1] = False
    return LayerSparsity(weight, rng.random(layer.input_shape) < 0.6)


PATTERNS = {"dense": lambda layer, rng: LayerSparsity(), "random": random_masks, "channels": channel_masks}


@pytest.mark.parametrize("dataflow", DATAFLOW_NAMES)
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_kernel_equals_brute_force(dataflow, case, pattern):
    layer = CASES[case]
    masks = PATTERNS[pattern](layer, np.random.default_rng(case))
    counts = layer_counts(layer, profile_for(dataflow), masks)
    ops = gemm_operands(layer, masks.weight_mask, masks.input_mask)
    trace, fold_effective = naive_systolic_trace(ops.x.astype(bool), ops.w.astype(bool), dataflow, 3, 3)
    assert counts.plan.count >= 2
    assert np.array_equal(counts.trace, trace)
    assert list(counts.effective) == fold_effective


@pytest.mark.parametrize("dataflow", DATAFLOW_NAMES)
@pytest.mark.parametrize("sparse", [False, True])
def test_cycle_level_equals_fold_level(dataflow, sparse):
    layer = conv(c_in=5, c_out=9, hw=(7, 6), padding=(1, 1), stride=(1, 2))
    masks = random_masks(layer, np.random.default_rng(3)) if sparse else LayerSparsity()
    profile = profile_for(dataflow, 4, 3)
    cycle = layer_counts(layer, profile, masks, cycle_level=True)
    fold = layer_counts(layer, profile, masks, cycle_level=False)
    assert np.array_equal(cycle.effective, fold.effective)
    assert estimate_layer(layer, profile, masks, cycle_level=True) == estimate_layer(layer, profile, masks, cycle_level=False)
    if not sparse:
        # Dense: the trace's totals are the closed forms.
        plan = cycle.plan
        trace = cycle.trace
        assert len(trace) == plan.count * plan.fold_cycles
        assert trace[:, 0].sum() + trace[:, 1].sum() == int(plan.mac_slots.sum()) == layer.macs
        assert trace[:, 1].sum() == cycle.gated_macs  # padding taps only


def test_block_sums_of_a_constant_view_are_the_closed_form():
    rng = np.random.default_rng(5)
    for shape, size1, size2 in [((1, 7, 5), 3, 2), ((3, 16, 9), 16, 4), ((2, 5, 11), 8, 1)]:
        weight1 = rng.integers(0, 4, shape[:2])
        weight2 = rng.integers(0, 4, (shape[0], shape[2]))
        for value in (0, 1, 3):
            view = np.broadcast_to(np.uint8(value), shape)
            brute = np.zeros((shape[0], -(-shape[1] // size1), -(-shape[2] // size2)), np.int64)
            for g, i, j in np.ndindex(shape):
                brute[g, i // size1, j // size2] += value * weight1[g, i] * weight2[g, j]
            assert np.array_equal(weighted_block_sums(view, size1, size2, weight1, weight2), brute)
            materialised = np.full(shape, value, np.uint8)
            assert np.array_equal(weighted_block_sums(materialised, size1, size2, weight1, weight2), brute)


@pytest.mark.parametrize("dataflow", DATAFLOW_NAMES)
def test_dense_weights_count_like_an_all_ones_mask(dataflow):
    # Dense weights are a constant view (closed-form block sums); an all-ones mask is a real array.
    for layer in (conv(c_in=5, c_out=9, hw=(7, 6), padding=(1, 1)), linear(f_in=13, f_out=11), conv(c_in=4, c_out=4, groups=2)):
        ones = LayerSparsity(np.ones(layer.weight_shape, bool), None)
        for overrides in ((), ("sparsity.skip_zero_tiles=true",), ("memory.buffer.ifmap_words=8", "memory.buffer.filter_words=8")):
            profile = profile_for(dataflow, 4, 3, *overrides)
            for cycle_level in (False, True):
                dense = layer_counts(layer, profile, LayerSparsity(), cycle_level=cycle_level)
                masked = layer_counts(layer, profile, ones, cycle_level=cycle_level)
                assert np.array_equal(dense.effective, masked.effective)
                assert dense.accesses == masked.accesses and dense.cycles == masked.cycles
            assert estimate_layer(layer, profile) == estimate_layer(layer, profile, ones)


def test_utilization_trace_rows_sum_to_pes():
    layer = conv()
    profile = profile_for("is", 3, 2, "memory.dram.bandwidth_words_per_cycle=1")
    report = estimate_layer(layer, profile)
    trace = utilization_trace(layer, profile)
    assert trace.shape == (report.cycles + 1, 3)
    assert (trace.sum(axis=1) == 6).all()
    assert report.stall_cycles > 0 and trace[:, 0].sum() == report.effective_macs


# -- sparsity features ---------------------------------------------------------------


def test_skip_zero_tiles_removes_whole_folds():
    layer = linear(f_in=6, f_out=6, rows=5)  # WS on 3x3: K=6 -> 2 row folds, N=6 -> 2 col folds
    weight = np.ones(layer.weight_shape, bool)
    weight[0:3, 0:3] = False  # torch weight (out, in): W[k, n] = weight[n, k] -> the (k<3, n<3) tile
    masks = LayerSparsity(weight, None)
    plain = estimate_layer(layer, profile_for("ws"), masks)
    skipping = estimate_layer(layer, profile_for("ws", 3, 3, "sparsity.skip_zero_tiles=true"), masks)
    fold = plain.extra["fold_cycles"]
    assert skipping.extra["executed_folds"] == 3 == plain.extra["executed_folds"] - 1
    assert plain.compute_cycles - skipping.compute_cycles == fold
    assert skipping.effective_macs == plain.effective_macs == 5 * 27
    assert plain.gated_macs == 5 * 9 and skipping.gated_macs == 0
    assert skipping.energy < plain.energy


def test_compressed_weight_words_by_hand():
    nnz, k, n = np.array([0, 5, 16]), np.array([4, 4, 4]), np.array([4, 4, 4])
    assert list(weight_words(nnz, k, n, "dense", 8)) == [16, 16, 16]
    assert list(weight_words(nnz, k, n, "bitmask", 8)) == [2, 7, 18]  # nnz + 16 bits / 8
    assert list(weight_words(nnz, k, n, "csr", 8)) == [5, 15, 37]  # 2 nnz + (4 + 1) pointers
    with pytest.raises(ValueError, match="weight_format must be one of dense, bitmask, csr, got 'coo'"):
        weight_words(nnz, k, n, "coo", 8)


def test_bitmask_weight_traffic_counts_nonzeros_and_metadata():
    layer = linear(f_in=6, f_out=3)
    weight = np.zeros(layer.weight_shape, bool)
    weight[0, :4] = True
    report = estimate_layer(layer, profile_for("ws", 3, 3, "sparsity.weight_format=bitmask"), LayerSparsity(weight, None))
    # Two 3x3 weight tiles (K=6 -> 2 row folds): nonzeros 3 + 1, metadata ceil(9/8) = 2 each.
    assert report.accesses["buffer"]["weights"]["reads"] == 3 + 1 + 2 * 2
    assert report.accesses["dram"]["weights"]["reads"] == 8


# -- memory hierarchy ------------------------------------------------------------------


def test_partial_sums_spill_to_dram_without_output_buffer():
    # WS, K=6 on 3 rows -> 2 row folds accumulate into the same M x N tile.
    layer = linear(f_in=6, f_out=3, rows=4)
    spill = estimate_layer(layer, profile_for("ws", 3, 3, "memory.buffer.ofmap_words=0"))
    assert spill.accesses["dram"]["outputs"] == {"writes": 2 * 12, "reads": 12}
    assert spill.accesses["buffer"]["outputs"] == {"reads": 0, "writes": 0}
    kept = estimate_layer(layer, profile_for("ws", 3, 3))
    assert kept.accesses["dram"]["outputs"] == {"writes": 12, "reads": 0}
    # Written by both folds, read back once, read once more to drain.
    assert kept.accesses["buffer"]["outputs"] == {"writes": 24, "reads": 24}


def test_inputs_refetched_when_the_buffer_is_too_small():
    # WS: every column fold re-streams all of X; N=7 on 3 cols -> 3 column folds.
    layer = linear(f_in=5, f_out=7, rows=4)
    big = estimate_layer(layer, profile_for("ws"))
    assert big.accesses["dram"]["inputs"]["reads"] == 20  # resident: the footprint once
    small = estimate_layer(layer, profile_for("ws", 3, 3, "memory.buffer.ifmap_words=8"))
    assert small.accesses["dram"]["inputs"]["reads"] == 3 * 20
    assert small.accesses["buffer"]["inputs"]["reads"] == big.accesses["buffer"]["inputs"]["reads"] == 3 * 20


def test_conv_input_dram_reads_count_distinct_elements():
    # IS streams each X slice once; when the input is not resident each slice's
    # distinct input elements come from DRAM, so overlapping windows are re-read.
    layer = conv(c_in=1, c_out=2, hw=(4, 4), kernel=(3, 3))  # M = 4 outputs, K = 9 taps
    resident = estimate_layer(layer, profile_for("is", 3, 3))
    assert resident.accesses["dram"]["inputs"]["reads"] == 16
    streaming = estimate_layer(layer, profile_for("is", 3, 3, "memory.buffer.ifmap_words=1"))
    # K blocks = kernel rows i; M blocks (3 cols) = outputs {(0,0), (0,1), (1,0)} and {(1,1)}.
    # Slice (i, first block): input row i, columns 0..3 (outputs (0,0), (0,1)) = 4, plus row i+1,
    # columns 0..2 (output (1,0)) = 3; slice (i, {(1,1)}): row i+1, columns 1..3 = 3. 3 x (7 + 3) = 30.
    assert streaming.accesses["dram"]["inputs"]["reads"] == 30


def test_stall_cycles_by_hand():
    # One WS fold, weights 3x2 dense, X 4x3, no reuse: 6 + 12 = 18 words at 2 words/cycle = 9
    # cycles before the fold can start; then 4 x 2 = 8 output words = 4 cycles after it ends.
    layer = linear(f_in=3, f_out=2, rows=4)
    report = estimate_layer(layer, profile_for("ws", 3, 3, "memory.dram.bandwidth_words_per_cycle=2"))
    assert report.compute_cycles == 10
    assert report.stall_cycles == 9 + 4
    assert report.cycles == 23


def test_energy_by_hand():
    layer = linear(f_in=3, f_out=2, rows=4)
    profile = profile_for("ws")
    report = estimate_layer(layer, profile)
    acc = report.accesses
    m = profile.memory
    expected_levels = {
        "dram": sum(acc["dram"][o]["reads"] * m.dram.read + acc["dram"][o]["writes"] * m.dram.write for o in acc["dram"]),
        "buffer": sum(acc["buffer"][o]["reads"] * m.buffer.read + acc["buffer"][o]["writes"] * m.buffer.write for o in acc["buffer"]),
        "rf": sum(acc["rf"][o]["reads"] * m.rf.read + acc["rf"][o]["writes"] * m.rf.write for o in acc["rf"]),
        "mac": 24 * profile.compute.mac,
        "leakage": 5.0 * 10 / 500 * 1000,  # 5 mW x 10 cycles / 500 MHz = 0.1 nJ = 100 pJ
    }  # fmt: skip
    assert report.energy_by_level == pytest.approx(expected_levels)
    assert report.energy == pytest.approx(sum(expected_levels.values()))
    assert sum(report.energy_by_operand.values()) == pytest.approx(report.energy - expected_levels["mac"] - expected_levels["leakage"])
    assert report.energy_relaxed == report.energy
    # Per-PE register files: WS weights written once per mapped PE (6), read per effective MAC (24).
    assert acc["rf"]["weights"] == {"reads": 24, "writes": 6}
    assert acc["rf"]["inputs"] == {"reads": 24, "writes": 24}


def test_bad_mask_shape_is_rejected():
    layer = conv()
    with pytest.raises(ValueError, match=r"weight mask has shape \(1, 2\), expected \(4, 2, 3, 3\)"):
        estimate_layer(layer, profile_for(), LayerSparsity(np.ones((1, 2), bool), None))
