"""N:M-sparse arrays: the profile key, the compressed simulation against tests/naive.py, invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energysim.estimators.systolic import estimate, estimate_layer, layer_counts
from energysim.model import gemm_operands
from energysim.model.nm import nm_compliant, nm_slots, nm_view
from energysim.sparsity import LayerSparsity, Sparsity
from energysim.spec import SpecError, load_profile, with_overrides
from energysim.spec.profile import NMSupport
from energysim.workload import extract_workload
from energysim.zoo import build_model
from naive import naive_input_ids, naive_nm_compress, naive_nm_systolic
from test_systolic_model import conv, linear

NO_NM = {"sparsity.nm.n": None, "sparsity.nm.m": None}


def nm_profile(rows=3, cols=3, n=2, m=4, *overrides):
    return load_profile(
        "nm-32x32",
        [f"array.rows={rows}", f"array.cols={cols}", f"sparsity.nm.n={n}", f"sparsity.nm.m={m}",
         "memory.dram.bandwidth_words_per_cycle=.inf", *overrides],
    )  # fmt: skip


def nm_mask(layer, n, m, density, rng):
    """A torch-shaped weight mask with at most n nonzeros in every m consecutive K of every GEMM column."""
    groups = layer.groups
    _, k, n_cols = layer.gemm
    w = np.zeros((groups, n_cols, k), bool)
    for g in range(groups):
        for col in range(n_cols):
            for start in range(0, k, m):
                width = min(m, k - start)
                kept = rng.permutation(width)[: min(n, width)]
                w[g, col, start + kept[rng.random(kept.size) < density]] = True
    return w.reshape(layer.weight_shape)


# -- the profile key -------------------------------------------------------------------


def test_shipped_nm_profile():
    profile = load_profile("nm-32x32")
    assert (profile.array.rows, profile.array.cols, profile.array.dataflow, profile.word_bits) == (32, 32, "ws", 8)
    assert profile.sparsity.nm == NMSupport(2, 4) and profile.sparsity.nm.index_bits == 2
    assert profile.compute.nm_select > 0 and load_profile("edge-16x16").compute.nm_select == 0.0
    assert "S2TA" in profile.source and "selection" in profile.source
    assert not load_profile("edge-16x16").sparsity.nm.enabled


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["sparsity.nm.n=4"], "sparsity.nm.n must be < sparsity.nm.m (4), got 4"),
        (["sparsity.nm.n=0"], "sparsity.nm.n must be an integer > 0"),
        (["sparsity.nm.m=6"], "sparsity.nm.m must be one of 2, 4, 8, 16 (a power of two, at most 16), got 6"),
        (["sparsity.nm.m=32", "sparsity.nm.n=2"], "sparsity.nm.m must be one of 2, 4, 8, 16"),
        (["sparsity.nm.m=null"], "sparsity.nm needs both n and m, got n only"),
        (["array.dataflow=os"], "sparsity.nm needs array.dataflow 'ws'"),
        (["compute.nm_select=-1"], "compute.nm_select must be a number >= 0"),
    ],
)
def test_nm_key_is_validated(overrides, message):
    with pytest.raises(SpecError) as err:
        load_profile("nm-32x32", overrides)
    assert len(err.value.problems) == 1 and message in err.value.problems[0]
    assert err.value.problems[0].startswith("nm-32x32.yaml")


def test_nm_profile_round_trips_and_can_be_switched_off():
    profile = load_profile("nm-32x32")
    assert with_overrides(profile, {}) == profile
    off = with_overrides(profile, NO_NM)
    assert not off.sparsity.nm.enabled and "nm" not in off.to_dict()["sparsity"]


# -- compression ------------------------------------------------------------------------


def test_compression_worked_case():
    # 2:4, K = 6, one column with nonzeros at k = 1, 3, 4 (the module docstring's case).
    w = np.zeros((1, 6, 1), np.uint8)
    w[0, [1, 3, 4], 0] = 1
    view = nm_view(w, NMSupport(2, 4))
    assert view.slots == nm_slots(6, 2, 4) == 4
    assert view.weights[0, :, 0].tolist() == [1, 1, 1, 0]
    assert view.select[0, :, 0].tolist() == [1, 3, 4, 4]
    assert view.origin.tolist() == [0, 0, 4, 4]
    w[0, 0, 0] = 1  # three nonzeros in the first group
    assert nm_view(w, NMSupport(2, 4)) is None and not nm_compliant(w, 2, 4)


@pytest.mark.parametrize("n, m", [(1, 2), (2, 4), (1, 4), (3, 8)])
def test_compression_equals_naive(n, m):
    rng = np.random.default_rng(n * 10 + m)
    layer = conv(c_in=3, c_out=5, hw=(4, 4), kernel=(3, 3))  # K = 27: the last group is short
    mask = nm_mask(layer, n, m, 0.8, rng)
    w = gemm_operands(layer, mask, None).w
    view = nm_view(w, NMSupport(n, m))
    ((slots, select),) = naive_nm_compress(w.astype(bool), n, m)
    assert view.weights[0].astype(bool).tolist() == slots
    assert view.select[0].tolist() == select


# -- the simulation against the brute-force reference --------------------------------------

CASES = [
    (linear(f_in=13, f_out=5, rows=4), 3, 3),
    (conv(c_in=2, c_out=4, hw=(4, 5), padding=(1, 0)), 3, 3),
    (conv(c_in=4, c_out=4, hw=(4, 4), kernel=(2, 2), groups=2, stride=(2, 1)), 4, 2),
    (conv(c_in=3, c_out=7, hw=(3, 3), kernel=(3, 3), padding=(1, 1)), 2, 4),
]


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (1, 2), (3, 8)])
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("skip", [False, True])
def test_kernel_equals_brute_force(n, m, case, skip):
    layer, rows, cols = CASES[case]
    rng = np.random.default_rng(case * 7 + n + m)
    masks = LayerSparsity(nm_mask(layer, n, m, 0.6, rng), rng.random(layer.input_shape) < 0.7)
    profile = nm_profile(rows, cols, n, m, f"sparsity.skip_zero_tiles={str(skip).lower()}", "sparsity.weight_format=dense")
    counts = layer_counts(layer, profile, masks)
    fold = layer_counts(layer, profile, masks, cycle_level=False)
    ops = gemm_operands(layer, masks.weight_mask, masks.input_mask)
    ref = naive_nm_systolic(ops.x.astype(bool), naive_input_ids(layer), ops.w.astype(bool), n, m, rows, cols, 8, skip)
    assert counts.nm is not None
    assert np.array_equal(counts.trace, ref["trace"])
    assert counts.effective[counts.executed].tolist() == ref["fold_effective"] == fold.effective[fold.executed].tolist()
    assert (counts.cycles, counts.effective_macs, counts.gated_macs, counts.selections) == (
        ref["cycles"], ref["effective_macs"], ref["gated_macs"], ref["selections"]
    )  # fmt: skip
    acc = counts.accesses
    assert acc["buffer"]["inputs"]["reads"] == ref["input_buffer_reads"]
    assert acc["buffer"]["weights"]["reads"] == ref["weight_buffer_reads"]
    # Tiny layers are resident: every stored weight word and input element comes from DRAM once.
    assert acc["dram"]["weights"]["reads"] == ref["weight_buffer_reads"]
    assert acc["dram"]["inputs"]["reads"] == ref["input_elements"]
    assert estimate_layer(layer, profile, masks) == estimate_layer(layer, profile, masks, cycle_level=False)


def test_fewer_row_folds_and_selection_energy_by_hand():
    # fc 64 -> 10, 2:4 with exactly two of every four kept: K' = 32, one row fold instead of two.
    layer = linear(f_in=64, f_out=10)
    rng = np.random.default_rng(0)
    masks = LayerSparsity(nm_mask(layer, 2, 4, 1.0, rng), None)
    profile = load_profile("nm-32x32")
    report = estimate_layer(layer, profile, masks)
    dense = estimate_layer(layer, with_overrides(profile, NO_NM), masks)
    assert report.extra["nm"] is True and report.extra["gemm"] == [1, 32, 10] and report.extra["row_folds"] == 1
    assert dense.extra["row_folds"] == 2 and "nm" not in dense.extra
    # One fold: fill 32 + 31, stream 1, drain 31 = 95 cycles; SCALE-Sim's index of the last: 94.
    assert report.compute_cycles == 94 and dense.compute_cycles == 2 * 95 - 1
    # 32 x 10 slots, 8-bit words, 2 index bits each: 320 + 80 words.
    assert report.accesses["dram"]["weights"]["reads"] == 400
    assert report.effective_macs == dense.effective_macs == 320 and report.gated_macs == 0
    counts = layer_counts(layer, profile, masks)
    assert counts.selections == 320
    assert report.energy_by_level["mac"] == pytest.approx(320 * profile.compute.mac + 320 * profile.compute.nm_select)


def test_violating_layers_run_dense_and_say_so():
    layer = linear(f_in=64, f_out=10)
    masks = LayerSparsity(np.random.default_rng(1).random(layer.weight_shape) < 0.5, None)
    profile = load_profile("nm-32x32")
    report = estimate_layer(layer, profile, masks)
    assert report.extra["nm"] is False
    off = estimate_layer(layer, with_overrides(profile, NO_NM), masks)
    assert report.cycles == off.cycles and report.energy == off.energy and report.accesses == off.accesses


@pytest.mark.parametrize("pattern", ["dense", "random"])
def test_no_nm_layer_runs_as_without_the_key(pattern):
    model, shape = build_model("lenet5")
    workload = extract_workload(model, shape)
    sparsity = Sparsity() if pattern == "dense" else Sparsity.synthetic(workload, weight_density=0.6, seed=3)
    profile = load_profile("nm-32x32")
    with_nm = estimate(workload, profile, sparsity)
    without = estimate(workload, with_overrides(profile, NO_NM), sparsity)
    for a, b in zip(with_nm, without):
        assert a.extra.pop("nm") is False
        assert a == b


# -- invariants (hypothesis) -------------------------------------------------------------

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


NM_PAIRS = [(n, m) for m in (2, 4, 8, 16) for n in range(1, m)]


def nm_words_fit(n, m, k, word_bits):
    """Whether every group's N:M slots and indices are at most its M dense words (M divides K)."""
    return k % m == 0 and n * (word_bits + math.ceil(math.log2(m))) <= m * word_bits


@SETTINGS
@given(data=st.data())
def test_making_a_pattern_nm_never_raises_cycles(data):
    """Pruning every group of M down to at most N of its nonzeros never raises the compute cycles
    or the effective MACs, nor the total cycles when DRAM is not a bottleneck; with a finite DRAM
    bandwidth the total cycles do not rise when every compressed fold replaces whole dense folds
    with no more words: dense weight storage, no tile skipping, N divides M and the array rows R,
    M divides K, and a group's N slots plus indices are at most its M words.

    Outside those conditions the total can rise (``docs/systolic-model.md`` §11 lists the causes;
    the case below is one). Tile skipping is drawn where N divides M and M divides R: an array row block
    of whole groups then compresses into one block."""
    n, m = data.draw(st.sampled_from(NM_PAIRS))
    rows = data.draw(st.sampled_from([3, 4, 5, 6, 8, 16, 32]))
    skip = m % n == 0 and rows % m == 0 and data.draw(st.booleans())
    weight_format = data.draw(st.sampled_from(["dense", "bitmask"]))
    word_bits = data.draw(st.sampled_from([4, 8, 16]))
    bandwidth = data.draw(st.sampled_from([".inf", "1", "2", "16"]))
    c_in = data.draw(st.integers(1, 8))
    kernel = data.draw(st.integers(1, 3))
    c_out = data.draw(st.integers(1, 40))
    hw = data.draw(st.integers(kernel, 6))
    layer = conv(c_in=c_in, c_out=c_out, hw=(hw, hw), kernel=(kernel, kernel))
    seed = data.draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    density = data.draw(st.floats(0.05, 1.0))
    original = rng.random(layer.weight_shape) < density
    inputs = rng.random(layer.input_shape) < data.draw(st.floats(0.1, 1.0))
    profile = load_profile(
        "nm-32x32", [f"array.rows={rows}", f"array.cols={rows}", f"sparsity.nm.n={n}", f"sparsity.nm.m={m}",
                     f"sparsity.skip_zero_tiles={str(skip).lower()}", f"sparsity.weight_format={weight_format}",
                     f"word_bits={word_bits}", f"memory.dram.bandwidth_words_per_cycle={bandwidth}"],
    )  # fmt: skip
    compliant = original & nm_mask(layer, n, m, 1.0, rng)
    before = layer_counts(layer, profile, LayerSparsity(original, inputs), cycle_level=False)
    after = layer_counts(layer, profile, LayerSparsity(compliant, inputs), cycle_level=False)
    assert after.nm is not None
    assert after.compute_cycles <= before.compute_cycles
    assert after.effective_macs <= before.effective_macs
    whole_folds = m % n == 0 and rows % n == 0 and nm_words_fit(n, m, layer.gemm[1], word_bits)
    if bandwidth == ".inf" or (weight_format == "dense" and not skip and whole_folds):
        assert after.cycles <= before.cycles


def _first_fold_case(rows):
    """conv 8 -> 1, 1x1, on a 3x3 input (GEMM 9 x 8 x 1), every weight and input nonzero, and
    the 2:4 pattern keeping the first two of each group; 2:4, 8-bit, dense weights, 1 DRAM word
    per cycle, an R x R array."""
    layer = conv(c_in=8, c_out=1, hw=(3, 3), kernel=(1, 1))
    profile = load_profile(
        "nm-32x32", [f"array.rows={rows}", f"array.cols={rows}", "sparsity.weight_format=dense",
                     "sparsity.skip_zero_tiles=false", "memory.dram.bandwidth_words_per_cycle=1"],
    )  # fmt: skip
    dense = np.ones(layer.weight_shape, bool)
    compliant = dense.copy()
    compliant.reshape(-1)[[2, 3, 6, 7]] = False
    inputs = np.ones(layer.input_shape, bool)
    return [layer_counts(layer, profile, LayerSparsity(w, inputs), cycle_level=False) for w in (dense, compliant)]


def test_nm_can_raise_cycles_when_a_fold_splits_a_group():
    """With R = 3 the compressed fold of slots 0-2 holds all of group 0 and half of group 1, so it
    needs the input columns of both groups (k = 0..7) before it starts, where the first dense fold
    needs three: fewer words and fewer compute cycles, but a longer unhidden first fetch.

    A WS fold of R x R PEs over 9 output pixels takes R + (R - 1) + 9 + (R - 1) = 16 cycles.
    Dense, three row folds (k = 0-2, 3-5, 6-7): fetches of 3 + 27, 3 + 27 and 2 + 18 words;
    fold 1 runs 30-46, fold 2's fetch 30-60 (its buffer half frees when fold 1 starts), fold 2
    60-76, fold 3's fetch 60-80, fold 3 80-96, the 9 output words 96-105: 104 cycles
    (SCALE-Sim's index of the last). 2:4, K' = 4 slots, two row folds: fold 1 fetches 3 slots +
    1 index word and 72 input words, runs 76-92; fold 2 fetches 1 slot + 1 index word (its group's
    inputs are on chip) by 78, runs 92-108; outputs 108-117: 116 cycles."""
    before, after = _first_fold_case(3)
    assert after.nm is not None and before.nm is None
    assert (before.compute_cycles, after.compute_cycles) == (3 * 16 - 1, 2 * 16 - 1)
    assert before.accesses["dram"]["weights"]["reads"] == 8 and after.accesses["dram"]["weights"]["reads"] == 6
    assert before.accesses["dram"]["inputs"]["reads"] == after.accesses["dram"]["inputs"]["reads"] == 72
    assert (before.cycles, after.cycles) == (104, 116)
    # R = 4 (N divides R): a compressed fold holds two whole groups, the inputs of two dense folds.
    before, after = _first_fold_case(4)
    assert after.cycles <= before.cycles


# -- the N:M view under issue 17's mappings ---------------------------------------------------


@pytest.mark.parametrize("buffering", ["double", "single"])
@pytest.mark.parametrize("order", [("time", "cols", "rows"), ("rows", "time", "cols"), ("cols", "rows", "time")])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_compressed_layer_under_any_mapping(order, case, buffering):
    """The compressed GEMM goes through the mapping code path: loop order, stream tiles and
    buffering change the fold order and tiling, never the MACs, selections or buffer reads;
    trace = closed form."""
    from energysim.dataflow import get_dataflow
    from energysim.model import simulate_layer
    from energysim.model.folds import SCALESIM, Mapping

    layer, rows, cols = CASES[case]
    rng = np.random.default_rng(case + 11)
    masks = LayerSparsity(nm_mask(layer, 2, 4, 0.6, rng), rng.random(layer.input_shape) < 0.7)
    profile = nm_profile(rows, cols, 2, 4, "sparsity.skip_zero_tiles=true")
    m_size = layer.gemm[0]
    tiles = next(t for t in range(2, m_size + 1) if m_size % t == 0)
    mapping = Mapping(order, tiles, buffering)
    ws = get_dataflow("ws")
    base = simulate_layer(profile, layer, ws, masks.weight_mask, masks.input_mask, mapping=SCALESIM)
    trace = simulate_layer(profile, layer, ws, masks.weight_mask, masks.input_mask, mapping=mapping)
    closed = simulate_layer(profile, layer, ws, masks.weight_mask, masks.input_mask, mapping=mapping, cycle_level=False)
    assert trace.nm is not None and trace.plan.mapping == mapping and trace.plan.count == base.plan.count * tiles
    assert trace.plan.gemm == base.plan.gemm == (m_size, nm_slots(layer.gemm[1], 2, 4), layer.gemm[2])
    assert trace.effective.tolist() == closed.effective.tolist()
    assert (trace.effective_macs, trace.gated_macs, trace.selections) == (
        base.effective_macs, base.gated_macs, base.selections
    )  # fmt: skip
    for op in ("inputs", "weights"):
        assert trace.accesses["buffer"][op]["reads"] == base.accesses["buffer"][op]["reads"] * (tiles if op == "weights" else 1)
    dense = layer_counts(layer, with_overrides(profile, NO_NM), masks, cycle_level=False)
    assert trace.effective_macs == dense.effective_macs
