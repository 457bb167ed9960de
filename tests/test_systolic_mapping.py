"""Mappings (loop order, stream tiling, buffering), the refetch window, partial sums, preload overlap and the search.

Against the brute-force references in tests/naive.py (mapped folds, traces and traffic),
hand-derived numbers and invariants over every mapping of the space.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energysim.dataflow import DATAFLOW_NAMES, get_dataflow
from energysim.estimators.pricing import AccessCounts, energy_breakdown
from energysim.estimators.systolic import estimate_layer, layer_counts
from energysim.model import gemm_operands, input_footprint, simulate_layer
from energysim.sparsity import LayerSparsity
from energysim.model.layer import dense_input_slices
from energysim.model.folds import BUFFERINGS, LOOPS, SCALESIM, Mapping, plan_folds
from energysim.model.search import bound_counts, mapping_space, search_mapping
from energysim.spec import SpecError, load_profile
from naive import naive_mapped_trace, naive_mapped_traffic
from test_systolic_invariants import layers
from test_systolic_model import conv, linear, profile_for, random_masks

ORDERS = list(permutations(LOOPS))


def caps_profile(dataflow, rows, cols, ifmap, filt, ofmap, *overrides):
    return profile_for(
        dataflow, rows, cols, f"memory.buffer.ifmap_words={ifmap}", f"memory.buffer.filter_words={filt}",
        f"memory.buffer.ofmap_words={ofmap}", *overrides,
    )  # fmt: skip


def priced(profile, counts):
    return energy_breakdown(profile, AccessCounts(counts.accesses, counts.effective_macs, counts.gated_macs, counts.cycles))[0]


# -- mappings as values --------------------------------------------------------


def test_mapping_validation_and_plan():
    with pytest.raises(ValueError, match="permutation"):
        Mapping(("rows", "rows", "time"))
    with pytest.raises(ValueError, match="positive int"):
        Mapping(stream_tiles=0)
    with pytest.raises(ValueError, match="buffering must be one of double, single"):
        Mapping(buffering="triple")
    df = get_dataflow("ws")
    with pytest.raises(ValueError, match="stream_tiles must divide the stream length 16"):
        plan_folds((16, 18, 7), 1, df, 4, 5, Mapping(stream_tiles=3))
    plan = plan_folds((16, 18, 7), 1, df, 4, 5, Mapping(("rows", "time", "cols"), 2))
    # rows outer (5 blocks), then 2 stream tiles of 8, then 2 col blocks: 20 folds of 4+3+8+4 cycles.
    assert plan.count == 20 and plan.stream == 8 and plan.fold_cycles == 19
    assert list(plan.row_block[:4]) == [0, 0, 0, 0] and list(plan.stream_block[:4]) == [0, 0, 1, 1]
    assert list(plan.col_block[:4]) == [0, 1, 0, 1]
    default = plan_folds((16, 18, 7), 1, df, 4, 5)
    assert default.mapping == SCALESIM and list(default.col_block) == [0] * 5 + [1] * 5  # col outer, row inner


@pytest.mark.parametrize("dataflow", DATAFLOW_NAMES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("overlap", [False, True])
def test_mapped_trace_matches_brute_force(dataflow, order, overlap):
    layer = conv(c_in=2, c_out=5, hw=(4, 4), padding=(1, 1))  # M = 16, K = 18, N = 5
    masks = random_masks(layer, np.random.default_rng(7))
    profile = profile_for(dataflow, 4, 3, f"array.preload_overlap={str(overlap).lower()}")
    stream = get_dataflow(dataflow).dim_sizes(layer.gemm)[2]
    tiles = 2 if stream % 2 == 0 else 1
    mapping = Mapping(order, tiles)
    counts = simulate_layer(profile, layer, get_dataflow(dataflow), masks.weight_mask, masks.input_mask, mapping=mapping)
    ops = gemm_operands(layer, masks.weight_mask, masks.input_mask)
    trace, fold_effective = naive_mapped_trace(ops.x.astype(bool), ops.w.astype(bool), dataflow, 4, 3, order, tiles, overlap)
    assert np.array_equal(counts.trace, trace)
    assert list(counts.effective) == fold_effective
    fold = simulate_layer(profile, layer, get_dataflow(dataflow), masks.weight_mask, masks.input_mask, cycle_level=False, mapping=mapping)
    assert np.array_equal(fold.effective, counts.effective) and fold.accesses == counts.accesses


def test_preload_overlap_hides_every_preload_but_the_first():
    # fc 64 -> 10 on 16x16 WS: 4 row folds of 16 + 15 + 1 + 15 = 47 cycles; with overlap 31
    # after the first. SCALE-Sim's count is the last cycle's index (sum - 1).
    fc = linear(f_in=64, f_out=10)
    plain = layer_counts(fc, profile_for("ws", 16, 16), cycle_level=False)
    hidden = layer_counts(fc, profile_for("ws", 16, 16, "array.preload_overlap=true"), cycle_level=False)
    assert plain.compute_cycles == 4 * 47 - 1
    assert hidden.compute_cycles == 47 + 3 * 31 - 1
    os_ = profile_for("os", 16, 16)  # OS preloads nothing: the key changes nothing
    assert layer_counts(fc, os_).cycles == layer_counts(fc, profile_for("os", 16, 16, "array.preload_overlap=true")).cycles


# -- memory traffic under a mapping --------------------------------------------


CAPS = [(1000, 1000, 1000), (60, 1000, 1000), (1000, 40, 1000), (1000, 1000, 30), (40, 30, 0), (25, 12, 60)]


@pytest.mark.parametrize("dataflow", DATAFLOW_NAMES)
@pytest.mark.parametrize("caps", CAPS)
def test_mapped_traffic_matches_brute_force(dataflow, caps):
    layer = conv(c_in=3, c_out=7, hw=(6, 4), padding=(1, 0))  # M = 12, K = 27, N = 7
    profile = caps_profile(dataflow, 4, 3, *caps)
    stream = get_dataflow(dataflow).dim_sizes(layer.gemm)[2]
    for order in ORDERS:
        for tiles in (1, 2, 4) if stream % 4 == 0 else (1,):
            for buffering in BUFFERINGS:
                mapping = Mapping(order, tiles, buffering)
                counts = simulate_layer(profile, layer, get_dataflow(dataflow), cycle_level=False, mapping=mapping)
                naive = naive_mapped_traffic(layer, dataflow, 4, 3, order, tiles, caps, buffering == "single")
                fold = counts.traffic.fold_accesses["dram"]
                assert list(fold["inputs"]["reads"]) == naive["inputs"], mapping.name
                assert list(fold["weights"]["reads"]) == naive["weights"], mapping.name
                acc = counts.accesses
                outputs = (acc["dram"]["outputs"]["reads"], acc["dram"]["outputs"]["writes"],
                           acc["buffer"]["outputs"]["reads"], acc["buffer"]["outputs"]["writes"])  # fmt: skip
                assert outputs == naive["outputs"], mapping.name


def test_input_slices_reuse_what_the_previous_slice_left():
    # WS, 16x16, a 3x3 conv with 8 channels: K = 72 is 5 row blocks of 16 taps; channel c
    # has taps 9c..9c+8, so consecutive blocks share a channel and no channel spans three
    # blocks. The input (8 x 12 x 12 = 1152 words) does not fit 1000 words, but one slice
    # (<= 3 channels, 432 words) fits half of them: each col block fetches every element
    # once, so inputs come ceil(N/C) = 2 times (the section 4 table), where keeping only
    # identical slices fetched every slice whole.
    layer = conv(c_in=8, c_out=20, hw=(12, 12), padding=(1, 1))
    counts = layer_counts(layer, caps_profile("ws", 16, 16, 1000, 10**6, 10**6))
    footprint = int(input_footprint(layer).max())
    assert footprint == 1152 and not counts.traffic.resident["inputs"]
    assert counts.accesses["dram"]["inputs"]["reads"] == 2 * footprint
    whole_slices = int(dense_input_slices(layer, get_dataflow("ws"), 16, 16)[2].sum())
    assert whole_slices > 2 * footprint + 500


def test_spilled_partial_sums_are_charged_in_the_buffer():
    # WS 4x3, fc 8 -> 3 over 5 rows: K = 8 is two row folds into one 5 x 3 = 15-word tile.
    # Output buffer 20 words < 2 x 15: the first fold's partial sums go to DRAM through the
    # buffer (write + read), the second fold reads them back through it (write + read) and
    # writes the outputs out through it (write + read).
    fc = linear(f_in=8, f_out=3, rows=5)
    counts = layer_counts(fc, caps_profile("ws", 4, 3, 1000, 1000, 20))
    out = {lv: counts.accesses[lv]["outputs"] for lv in ("dram", "buffer")}
    assert out["dram"] == {"reads": 15, "writes": 30}
    assert out["buffer"] == {"reads": 45, "writes": 45}
    kept = layer_counts(fc, caps_profile("ws", 4, 3, 1000, 1000, 30))
    assert kept.accesses["dram"]["outputs"] == {"reads": 0, "writes": 15}
    assert kept.accesses["buffer"]["outputs"] == {"reads": 15 + 15, "writes": 30}


def test_stream_tiles_keep_partial_sums_on_chip():
    # The output tile O[:, Nb] of M = 16 rows x 3 cols = 48 words exceeds half of 60; four
    # stream tiles of 4 rows make it 12 words: partial sums stay on chip.
    layer = conv(c_in=3, c_out=3, hw=(4, 4), padding=(1, 1))
    profile = caps_profile("ws", 4, 3, 10**6, 10**6, 60)
    whole = simulate_layer(profile, layer, get_dataflow("ws"), cycle_level=False)
    tiled = simulate_layer(profile, layer, get_dataflow("ws"), cycle_level=False, mapping=Mapping(stream_tiles=4))
    assert not whole.traffic.resident["outputs"] and tiled.traffic.resident["outputs"]
    assert tiled.accesses["dram"]["outputs"] == {"reads": 0, "writes": 48}
    assert whole.accesses["dram"]["outputs"]["reads"] == (7 - 1) * 48  # K = 27: 7 row folds


def test_single_buffering_keeps_the_tile_in_the_whole_buffer_and_serialises_transfers():
    # The conv above, SCALE-Sim's loop order: 7 row folds (K = 27 on 4 rows) into one
    # 16 x 3 = 48-word output tile. 48 words > half of the 60-word output buffer: double
    # buffering spills 6 folds' partial sums (288 words read back, 7 x 48 written); single
    # buffering keeps the tile in all 60 words: a write per fold (336), a read back per
    # later fold plus the drain (6 x 48 + 48 = 336), DRAM sees the 48 outputs once. Inputs
    # (48 words) and weights (27 x 3 = 81) are resident. At 1 word/cycle no transfer
    # overlaps a fold: 7 folds of 4 + 3 + 16 + 2 = 25 cycles, then every DRAM word:
    # 175 + 48 + 81 + 48 cycles, the last cycle's index one less.
    layer = conv(c_in=3, c_out=3, hw=(4, 4), padding=(1, 1))
    profile = caps_profile("ws", 4, 3, 10**6, 10**6, 60, "memory.dram.bandwidth_words_per_cycle=1")
    df = get_dataflow("ws")
    double = simulate_layer(profile, layer, df, cycle_level=False, mapping=SCALESIM)
    single = simulate_layer(profile, layer, df, mapping=Mapping(SCALESIM.order, 1, "single"))
    assert double.accesses["dram"]["outputs"] == {"reads": 6 * 48, "writes": 7 * 48}
    assert single.traffic.resident["outputs"] and single.accesses["dram"]["outputs"] == {"reads": 0, "writes": 48}
    assert single.accesses["buffer"]["outputs"] == {"reads": 336, "writes": 336}
    assert single.compute_cycles == 7 * 25 - 1 and single.cycles == 7 * 25 + 48 + 81 + 48 - 1
    # Each fold starts once the one before it has ended and its own operands have arrived.
    reads = single.traffic.fold_dram_reads
    assert list(single.fold_start) == [int(reads[: f + 1].sum()) + 25 * f for f in range(7)]
    assert single.trace.shape[0] == single.cycles + 1 and single.trace[:, 0].sum() == single.effective_macs


def test_single_buffering_keeps_the_capacity_less_one_slice_of_weights():
    # fc 8 -> 6 over 4 rows on WS 4x3: 2 row blocks (K) x 2 col blocks (N) of 12-word weight
    # slices, 48 words > the 40-word filter buffer. Order rows > time > cols, 4 stream tiles:
    # each stream tile sweeps the 2 slices (24 words) of its row block. Double-buffered the
    # window is 20 words, one slice: every slice is fetched again in every tile, 2 x 4 x 24
    # = 192 words; single-buffered it is 40 - 12 = 28 words, both slices: 48, each once.
    fc = linear(f_in=8, f_out=6, rows=4)
    profile = caps_profile("ws", 4, 3, 10**6, 40, 10**6)
    df = get_dataflow("ws")
    words = {
        b: simulate_layer(profile, fc, df, cycle_level=False, mapping=Mapping(("rows", "time", "cols"), 4, b)).accesses["dram"]["weights"]["reads"]
        for b in BUFFERINGS
    }  # fmt: skip
    assert words == {"double": 192, "single": 48}


# -- invariants over the whole space --------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_mapping_keeps_the_invariants(data):
    layer = data.draw(layers())
    dataflow = data.draw(st.sampled_from(DATAFLOW_NAMES))
    rows, cols = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    caps = [data.draw(st.sampled_from([0, 8, 40, 10**6])) for _ in range(3)]
    profile = caps_profile(dataflow, rows, cols, max(caps[0], 1), max(caps[1], 1), caps[2])
    masks = random_masks(layer, np.random.default_rng(data.draw(st.integers(0, 99))))
    df = get_dataflow(dataflow)
    reference = None
    for mapping in mapping_space(layer, df, rows, cols):
        counts = simulate_layer(profile, layer, df, masks.weight_mask, masks.input_mask, cycle_level=False, mapping=mapping)
        assert counts.effective_macs + counts.gated_macs == counts.macs == int(np.prod(layer.gemm)) * layer.groups
        reference = counts.effective_macs if reference is None else reference
        assert counts.effective_macs == reference  # the mapping never changes which MACs are effective
        assert counts.accesses["dram"]["inputs"]["reads"] >= int(input_footprint(layer).sum())
        assert counts.accesses["dram"]["outputs"]["writes"] >= layer.groups * layer.gemm[0] * layer.gemm[2]


def test_space_is_distinct_and_starts_with_scalesim():
    layer = conv(c_in=3, c_out=7, hw=(6, 4), padding=(1, 0))
    space = mapping_space(layer, get_dataflow("ws"), 4, 3)
    assert space[0] == SCALESIM
    # stream M = 12: tiles 1, 2, 3, 4, 6, 12; 1 tile: 2 orders (time's place is moot), else 6;
    # each double- and single-buffered.
    assert len(space) == 2 * (2 + 5 * 6) == len(set(space))
    assert [m.buffering for m in space[:2]] == ["double", "single"] and space[1].order == SCALESIM.order
    fc = linear(f_in=30, f_out=3)  # one col block, stream 1: one order
    assert mapping_space(fc, get_dataflow("ws"), 4, 3) == [SCALESIM, Mapping(SCALESIM.order, 1, "single")]


# -- the search -------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["energy", "latency", "edp"])
def test_search_is_the_exhaustive_minimum(objective):
    layer = conv(c_in=3, c_out=7, hw=(6, 4), padding=(1, 0))
    profile = caps_profile("ws", 4, 3, 60, 40, 30, "memory.dram.bandwidth_words_per_cycle=2")
    df = get_dataflow("ws")
    best, evaluated = search_mapping(profile, layer, df, objective)
    brute = []
    for mapping in mapping_space(layer, df, 4, 3):
        counts = simulate_layer(profile, layer, df, cycle_level=False, mapping=mapping)
        energy = priced(profile, counts)
        brute.append({"energy": energy, "latency": counts.cycles, "edp": energy * counts.cycles}[objective])
    assert brute.index(min(brute)) == [m.name for m in mapping_space(layer, df, 4, 3)].index(best.name)
    assert search_mapping(profile, layer, df, objective)[0] == best  # deterministic
    assert search_mapping(profile, layer, df, objective, prune=False) == (best, [e for e in _all(profile, layer, df)])
    assert 1 <= len(evaluated) < len(brute)  # the bound spared some candidates


def _all(profile, layer, df):
    """Every candidate's energy and cycles, from simulate_layer and the pricing directly."""
    rows, cols = profile.array.rows, profile.array.cols
    out = []
    for mapping in mapping_space(layer, df, rows, cols):
        counts = simulate_layer(profile, layer, df, cycle_level=False, mapping=mapping)
        out.append({"mapping": mapping.name, "energy": priced(profile, counts), "cycles": counts.cycles})
    return out


#: Layers of the issue's kinds, small: a 3x3 conv with a large output, pointwise, fc,
#: depthwise, strided (and a batched fc with a stream to tile).
SEARCH_LAYERS = {
    "conv3x3": conv(c_in=4, c_out=9, hw=(12, 12), padding=(1, 1)),
    "pointwise": conv(c_in=10, c_out=6, hw=(6, 6), kernel=(1, 1)),
    "fc": linear(f_in=40, f_out=11),
    "fc-batch": linear(f_in=9, f_out=7, rows=12),
    "depthwise": conv(c_in=4, c_out=4, hw=(8, 8), padding=(1, 1), groups=4),
    "strided": conv(c_in=3, c_out=5, hw=(11, 9), kernel=(3, 3), stride=(2, 2), padding=(1, 0)),
}
SEARCH_PROFILES = {
    "tight": ("memory.buffer.ifmap_words=60", "memory.buffer.filter_words=40", "memory.buffer.ofmap_words=30",
              "memory.dram.bandwidth_words_per_cycle=2"),
    "no-ofmap": ("memory.buffer.ifmap_words=200", "memory.buffer.filter_words=20", "memory.buffer.ofmap_words=0",
                 "array.preload_overlap=true", "sparsity.weight_format=bitmask"),
    "shared": ("memory.buffer.shared_words=300", "memory.dram.bandwidth_words_per_cycle=4", "sparsity.skip_zero_tiles=true"),
}  # fmt: skip


@pytest.mark.parametrize("dataflow", DATAFLOW_NAMES)
@pytest.mark.parametrize("caps", sorted(SEARCH_PROFILES))
@pytest.mark.parametrize("name", sorted(SEARCH_LAYERS))
def test_search_evaluates_candidates_with_the_one_model(name, caps, dataflow):
    """Every candidate's energy and cycles in the search are simulate_layer's; the pruned search
    picks what the exhaustive one picks, for every objective."""
    layer, df = SEARCH_LAYERS[name], get_dataflow(dataflow)
    profile = profile_for(dataflow, 4, 3, *SEARCH_PROFILES[caps])
    everything = _all(profile, layer, df)
    for objective in ("energy", "latency", "edp"):
        best, evaluated = search_mapping(profile, layer, df, objective, prune=False)
        assert evaluated == everything
        value = {"energy": lambda e: e["energy"], "latency": lambda e: e["cycles"], "edp": lambda e: e["energy"] * e["cycles"]}[objective]
        values = [value(e) for e in everything]
        assert best.name == everything[values.index(min(values))]["mapping"]  # the first with the least
        pruned, some = search_mapping(profile, layer, df, objective)
        assert pruned == best and all(e in everything for e in some)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_bound_is_below_every_candidate_and_exact_where_it_says(data):
    """bound_counts never exceeds simulate_layer's dense counts, and equals them for MACs,
    register files, input buffer reads and outputs (and weights' buffer reads stored dense)."""
    layer = data.draw(layers())
    dataflow = data.draw(st.sampled_from(DATAFLOW_NAMES))
    rows, cols = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    if data.draw(st.booleans()):
        buffer = [f"memory.buffer.shared_words={data.draw(st.sampled_from([1, 30, 100, 10**6]))}"]
    else:
        buffer = [f"memory.buffer.{key}={data.draw(st.sampled_from([0, 8, 40, 10**6]))}" for key in ("ifmap_words", "filter_words", "ofmap_words")]
    bandwidth = data.draw(st.sampled_from(["1", "3", ".inf"]))
    weight_format = data.draw(st.sampled_from(["dense", "bitmask", "csr"]))
    profile = profile_for(dataflow, rows, cols, *buffer, f"memory.dram.bandwidth_words_per_cycle={bandwidth}",
                          f"array.preload_overlap={data.draw(st.sampled_from(['true', 'false']))}",
                          f"sparsity.weight_format={weight_format}")  # fmt: skip
    df = get_dataflow(dataflow)
    space = mapping_space(layer, df, rows, cols)
    bound = bound_counts(profile, layer, df, space)
    for i, mapping in enumerate(space):
        counts = simulate_layer(profile, layer, df, cycle_level=False, mapping=mapping)
        assert (bound.effective_macs[i], bound.gated_macs[i]) == (counts.effective_macs, counts.gated_macs)
        assert bound.cycles[i] <= counts.cycles
        for level, operands in counts.accesses.items():
            for operand, rw in operands.items():
                for kind, n in rw.items():
                    stored = operand != "weights" or weight_format == "dense"
                    exact = level == "rf" or operand == "outputs" or (level == "buffer" and kind == "reads" and stored)
                    got = bound.accesses[level][operand][kind][i]
                    assert got == n if exact else got <= n, (mapping.name, level, operand, kind)


def test_bound_cycles_count_the_first_fetch_and_the_last_write_back():
    # WS linear, 2 words/cycle: the DRAM channel keeps up with every fold but the first
    # (it waits for its 4x4 weights and 1x4 inputs: 10 cycles) and the last (its 1x4
    # outputs go back after it ends: 2 cycles), so the bound is the model's cycles; the
    # two loop orders tie and the search evaluates only the first.
    layer = linear(f_in=64, f_out=40)
    profile = profile_for("ws", 4, 4, "memory.dram.bandwidth_words_per_cycle=2")
    df = get_dataflow("ws")
    # Single-buffered, every transfer waits: the bound is the busy cycles plus all DRAM words.
    space = mapping_space(layer, df, 4, 4)
    busy = 16 * 10 * df.fold_cycles(4, 4, 1)
    for mapping, bound in zip(space, bound_counts(profile, layer, df, space).cycles):
        counts = simulate_layer(profile, layer, df, cycle_level=False, mapping=mapping)
        if mapping.single:
            dram = sum(rw["reads"] + rw["writes"] for rw in counts.accesses["dram"].values())
            assert busy + dram // 2 - 1 == bound <= counts.cycles
        else:
            assert bound == counts.cycles == busy + 10 + 2 - 1
    best, evaluated = search_mapping(profile, layer, df, "energy")
    assert len(space) == 4 and best == space[0] and [e["mapping"] for e in evaluated] == [space[0].name]


def test_searched_profile_reports_and_uses_its_mapping():
    layer = conv(c_in=3, c_out=3, hw=(4, 4), padding=(1, 1))
    base = ["memory.buffer.ifmap_words=100000", "memory.buffer.filter_words=100000", "memory.buffer.ofmap_words=60"]
    scalesim = estimate_layer(layer, profile_for("ws", 4, 3, *base))
    searched = estimate_layer(layer, profile_for("ws", 4, 3, *base, "mapping.search=energy"))
    assert scalesim.extra["mapping"]["name"] == "time>cols>rows/1" and scalesim.extra["mapping"]["search"] == "scalesim"
    assert searched.extra["mapping"]["search"] == "energy" and searched.extra["mapping"]["name"] != "time>cols>rows/1"
    assert searched.extra["partial_sums_on_chip"] and not scalesim.extra["partial_sums_on_chip"]
    assert searched.energy < scalesim.energy
    # A pattern is evaluated on the dense layer's mapping.
    masks = random_masks(layer, np.random.default_rng(1))
    sparse = estimate_layer(layer, profile_for("ws", 4, 3, *base, "mapping.search=energy"), masks)
    assert sparse.extra["mapping"] == searched.extra["mapping"]


def test_mapping_keys_are_validated():
    with pytest.raises(SpecError, match="mapping.search must be one of 'scalesim', 'energy', 'latency', 'edp', got 'fast'"):
        load_profile("edge-16x16", ["mapping.search=fast"])
    with pytest.raises(SpecError, match="array.preload_overlap must be true or false"):
        load_profile("edge-16x16", ["array.preload_overlap=3"])
    assert load_profile("edge-16x16").mapping.search == "scalesim"
    assert load_profile("edge-16x16").array.preload_overlap is False


def test_layer_counts_follow_the_profile_search():
    layer = conv(c_in=3, c_out=3, hw=(4, 4), padding=(1, 1))
    profile = caps_profile("ws", 4, 3, 10**6, 10**6, 60, "mapping.search=latency")
    counts = layer_counts(layer, profile, cycle_level=False)
    best, _ = search_mapping(profile, layer, get_dataflow("ws"), "latency")
    assert counts.plan.mapping == best


# -- downstream: the coefficient table -------------------------------------------


def test_table_records_its_mapping_and_refuses_another(lenet5, tmp_path):
    from energysim.coeffs import CoefficientTable, coefficient_table, verify_table

    searched = load_profile("edge-16x16", ["mapping.search=energy", "memory.buffer.ofmap_words=512"])
    table = coefficient_table(lenet5, searched)
    assert table.mapping == "energy"
    df = get_dataflow("ws")
    expected = {layer.name: search_mapping(searched, layer, df, "energy")[0].name for layer in lenet5.layers}
    assert table.mappings == expected and any(not name.endswith("/1") for name in expected.values())
    table.save(tmp_path / "t.json")
    assert CoefficientTable.load(tmp_path / "t.json", searched).to_dict() == table.to_dict()
    scalesim = load_profile("edge-16x16", ["memory.buffer.ofmap_words=512"])
    with pytest.raises(ValueError, match="stale coefficient table: built with mapping.search 'energy', the profile has 'scalesim'"):
        CoefficientTable.load(tmp_path / "t.json", scalesim)
    with pytest.raises(ValueError, match="mapping.search 'energy', verifying with 'scalesim'"):
        verify_table(table, lenet5, scalesim)
    # The table of the searched mapping predicts the estimator on that mapping.
    for row in verify_table(table, lenet5, searched, densities=(0.3, 1.0), seed=2):
        assert abs(row["worst"]["random"]) < 1e-2, row


def test_simulate_json_reports_the_chosen_mapping(tmp_path):
    import json

    from compress.cli import main

    out = tmp_path / "r.json"
    assert main(["simulate", "--model", "lenet5", "--profile", "edge-16x16", "--set", "mapping.search=energy",
                 "--json", str(out)]) == 0  # fmt: skip
    layers = json.loads(out.read_text())["layers"]
    assert all(l["extra"]["mapping"]["search"] == "energy" for l in layers)
    assert {"order", "stream_tiles", "name"} <= set(layers[0]["extra"]["mapping"])


@pytest.mark.parametrize("extra", [("mapping.search=energy", "memory.buffer.ofmap_words=40"), ("array.preload_overlap=true",)])
def test_skip_group_split_adds_up_on_any_mapping(extra):
    """The skip-group table of a searched mapping (or with preload overlap) still adds up: the
    constant is the layer with no weight, constant + every group + every shared item the layer
    with one weight per group (tests/test_groups.py checks the same on SCALE-Sim's mapping)."""
    import torch

    from energysim import extract_workload
    from energysim.coeffs import coefficient_table, pattern_features
    from energysim.model.groups import weight_groups

    model = torch.nn.Conv2d(3, 7, 3)
    workload = extract_workload(model, (3, 6, 6))
    layer = workload.layers[0]
    profile = load_profile("edge-16x16", ["array.rows=4", "array.cols=3", "sparsity.weight_format=dense", *extra])
    table = coefficient_table(workload, profile)
    coeffs = table.layer(layer.name)
    if "mapping.search=energy" in extra:
        assert not table.mappings[layer.name].endswith("/1")  # a stream-tiled mapping
    ids, _ = weight_groups(layer, profile, get_dataflow("ws"))
    none = np.zeros(layer.weight_shape, bool)
    probe = np.zeros(ids.size, bool)
    probe[np.unique(ids.reshape(-1), return_index=True)[1]] = True
    for weights in (none, probe.reshape(layer.weight_shape)):
        ls = LayerSparsity(weights, None)
        truth = estimate_layer(layer, profile, ls).energy
        assert coeffs.predict(pattern_features(layer, ls, profile)) == pytest.approx(truth, rel=1e-9)


@pytest.mark.parametrize("ifmap_words", [16, 40, 80])
def test_resweep_refetch_bounds_are_below_the_model_and_above_the_footprint(ifmap_words):
    # A 3x3 conv whose K blocks of one M block re-sweep more input words than the window
    # holds, and a 16-word weight buffer: §4b's re-sweep rules must bind (inputs and
    # weights above their footprints on many candidates) and never exceed the model.
    layer = conv(c_in=8, c_out=8, hw=(8, 8), padding=(1, 1))
    df = get_dataflow("ws")
    profile = profile_for("ws", 4, 4, f"memory.buffer.ifmap_words={ifmap_words}", "memory.buffer.filter_words=16",
                          "memory.buffer.ofmap_words=1000000")  # fmt: skip
    space = mapping_space(layer, df, 4, 4)
    bound = bound_counts(profile, layer, df, space)
    footprint = int(input_footprint(layer)[0])
    above = {"inputs": 0, "weights": 0}
    for i, mapping in enumerate(space):
        counts = simulate_layer(profile, layer, df, cycle_level=False, mapping=mapping)
        for operand, unique in (("inputs", footprint), ("weights", 8 * 8 * 9)):
            got = bound.accesses["dram"][operand]["reads"][i]
            assert unique <= got <= counts.accesses["dram"][operand]["reads"], (mapping.name, operand)
            above[operand] += got > unique
    assert min(above.values()) >= len(space) // 3, above
