"""Skip groups and their costs in the coefficient table (energysim.model.groups, energysim.coeffs)."""


import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energysim import LayerSparsity, extract_workload, load_profile
from energysim.coeffs import CoefficientTable, coefficient_table, pattern_features, verify_table
from energysim.dataflow import get_dataflow
from energysim.estimators import get_estimator
from energysim.model.groups import FIT_EACH_GROUP, group_counts, kept_groups, weight_groups
from tests.naive import naive_weight_groups

pytestmark = [pytest.mark.usefixtures("one_thread")]

SYSTOLIC = get_estimator("systolic")


def _layer(model: torch.nn.Module, shape: tuple[int, ...]):
    return extract_workload(model, shape).layers[0]


def _profile(rows: int, cols: int, dataflow: str = "ws", *extra: str):
    """edge-16x16 resized, tile skipping on, no leakage (stall cycles, which depend on the
    order of the folds, cost nothing), unless ``extra`` says otherwise."""
    return load_profile("edge-16x16", [f"array.rows={rows}", f"array.cols={cols}", f"array.dataflow={dataflow}",
                                       "leakage_mw=0", *extra])


LAYERS = {
    "conv": (torch.nn.Conv2d(3, 10, 3, padding=1), (3, 6, 6)),
    "grouped": (torch.nn.Conv2d(4, 6, 3, groups=2), (4, 5, 5)),
    "pointwise": (torch.nn.Conv2d(12, 7, 1), (12, 4, 4)),
    "linear": (torch.nn.Linear(23, 9), (23,)),
}


@pytest.mark.parametrize("dataflow", ["ws", "os"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_weight_groups_are_the_blocks_of_the_gemm_view(name, dataflow):
    model, shape = LAYERS[name]
    layer = _layer(model, shape)
    profile = _profile(4, 3, dataflow)
    ids, count = weight_groups(layer, profile, get_dataflow(dataflow))
    expected = naive_weight_groups(layer.weight_shape, layer.groups, dataflow, 4, 3)
    np.testing.assert_array_equal(ids, expected)
    assert count == expected.max() + 1
    mask = np.random.default_rng(0).random(layer.weight_shape) < 0.2
    np.testing.assert_array_equal(kept_groups(layer, profile, get_dataflow(dataflow), mask),
                                  np.bincount(expected[mask], minlength=count) > 0)


def test_profiles_without_weight_skipping_have_no_groups():
    layer = _layer(*LAYERS["linear"])
    with pytest.raises(ValueError, match="skip_zero_tiles: false"):
        weight_groups(layer, _profile(4, 4, "ws", "sparsity.skip_zero_tiles=false"), get_dataflow("ws"))
    with pytest.raises(ValueError, match="skips on its inputs"):
        weight_groups(layer, _profile(4, 4, "is"), get_dataflow("is"))


def _tile_pattern(layer, profile, rng, density, inside=1.0):
    ids, count = weight_groups(layer, profile, get_dataflow(profile.array.dataflow))
    mask = (rng.random(count) < density)[ids]
    return mask & (rng.random(layer.weight_shape) < inside) if inside < 1 else mask


def _error(table, layer, profile, ls):
    truth = SYSTOLIC.estimate_layer(layer, profile, ls).energy
    predicted = table.layer(layer.name).predict(pattern_features(layer, ls, profile))
    return (predicted - truth) / truth


ADDITIVE = {
    # Disjoint input slices, partial sums in the buffer: every count is a sum over the kept groups.
    "linear": (LAYERS["linear"], ()),
    # Partial sums spilled to DRAM (no output buffer): the first fold of a tile is not read back.
    "pointwise spilling": (LAYERS["pointwise"], ("memory.buffer.ofmap_words=0",)),
    # Inputs too large for their buffer: every fold fetches its slice.
    "linear streaming": (LAYERS["linear"], ("memory.buffer.ifmap_words=8",)),
    # Resident inputs: each element is fetched once, by the first kept K block whose taps'
    # windows cover it (the elements of a channel read by the same K blocks are one item).
    "conv resident": (LAYERS["conv"], ()),
    "grouped resident": (LAYERS["grouped"], ()),
}


@pytest.mark.parametrize("dataflow", ["ws", "os"])
@pytest.mark.parametrize("case", list(ADDITIVE))
def test_table_is_exact_where_the_counts_add_up(case, dataflow):
    """Where no count depends on the order of the kept folds, constant + groups + shared items
    + per-weight and per-MAC terms is the simulator's energy, for tiles and mixed patterns."""
    (model, shape), extra = ADDITIVE[case]
    layer = _layer(model, shape)
    profile = _profile(4, 3, dataflow, *extra)
    workload = extract_workload(model, shape)
    table = coefficient_table(workload, profile)
    rng = np.random.default_rng(1)
    for density in (0.0, 0.2, 0.5, 1.0):
        for inside in (1.0, 0.5):
            for inputs in (None, rng.random(layer.input_shape) < 0.6):
                ls = LayerSparsity(_tile_pattern(layer, profile, rng, density, inside), inputs)
                if density in (0.0, 1.0) or dataflow == "os" or case != "linear streaming":
                    assert _error(table, layer, profile, ls) == pytest.approx(0, abs=1e-9), (density, inside)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    c_in=st.integers(1, 6), c_out=st.integers(1, 9), kernel=st.integers(1, 3), size=st.integers(3, 7),
    rows=st.integers(2, 6), cols=st.integers(2, 6), dataflow=st.sampled_from(["ws", "os"]),
    ofmap=st.sampled_from([0, 64, 4096]), seed=st.integers(0, 100),
)
def test_the_split_adds_up_to_the_layer_with_and_without_every_group(c_in, c_out, kernel, size, rows, cols,
                                                                      dataflow, ofmap, seed):
    """The constant is the layer with no weight; constant + every group + every shared item is
    the layer with one weight per group (the counts are split, none lost or counted twice)."""
    model = torch.nn.Conv2d(c_in, c_out, kernel)
    layer = _layer(model, (c_in, size, size))
    profile = _profile(rows, cols, dataflow, f"memory.buffer.ofmap_words={ofmap}")
    flow = get_dataflow(dataflow)
    split = group_counts(layer, profile, flow)
    rows_of = {k: split.slices[k] for k in split.slices}
    table = coefficient_table(extract_workload(model, (c_in, size, size)), profile)
    coeffs = table.layer(layer.name)
    none = np.zeros(layer.weight_shape, bool)
    assert coeffs.predict(pattern_features(layer, LayerSparsity(none, None), profile)) == pytest.approx(
        SYSTOLIC.estimate_layer(layer, profile, LayerSparsity(none, None)).energy, rel=1e-12)
    ids, count = weight_groups(layer, profile, flow)
    probe = np.zeros(ids.size, bool)
    probe[np.unique(ids.reshape(-1), return_index=True)[1]] = True
    ls = LayerSparsity(probe.reshape(layer.weight_shape), None)
    truth = SYSTOLIC.estimate_layer(layer, profile, ls).energy
    assert coeffs.predict(pattern_features(layer, ls, profile)) == pytest.approx(truth, rel=1e-9)
    assert set(rows_of) <= {"inputs", "channels", "outputs", "first", "last", "layer"}
    assert len(coeffs.group_cost) == count and all(np.isfinite(coeffs.group_cost))


def test_lenet5_table_on_edge_16x16_within_the_measured_error(lenet5):
    """The error figures of docs/systolic-model.md §6 for lenet5 (worst -0.6 %, fc3 tiles): a
    regression guard; it was +6.2 % (conv2 mixed) while a resident input channel was one item,
    and up to +92 % before the shared items were split out."""
    profile = load_profile("edge-16x16")
    table = coefficient_table(lenet5, profile)
    assert not any(l.upper_bound for l in table.layers)
    rows = verify_table(table, lenet5, profile, densities=(0.05, 0.25, 1.0), seed=4)
    for row in rows:
        assert set(row["worst"]) == {"random", "tiles", "mixed"}
        assert abs(row["worst"]["random"]) < 1e-3, row
        assert abs(row["max_rel_error"]) < 0.01, row


def test_table_with_groups_round_trips_through_json(lenet5, tmp_path):
    profile = load_profile("edge-16x16")
    table = coefficient_table(lenet5, profile)
    table.save(tmp_path / "t.json")
    again = CoefficientTable.load(tmp_path / "t.json", profile)
    assert again.to_dict() == table.to_dict()
    assert again.layer("fc1").group_cost == table.layer("fc1").group_cost
    assert set(again.layer("fc1").slice_cost) == {"channels", "outputs", "first", "last", "layer"}


def test_the_floor_with_tile_skipping_is_far_below_the_unstructured_one(lenet5):
    """Every tile skipped: only the outputs' zeros and the leakage of writing them remain."""
    on = coefficient_table(lenet5, load_profile("edge-16x16"))
    off = coefficient_table(lenet5, load_profile("edge-16x16", ["sparsity.skip_zero_tiles=false"]))
    assert on.floor_energy / on.dense_energy < 0.1 < 0.25 < off.floor_energy / off.dense_energy


def _exact_on(k: int, n: int, overrides: list[str], patterns, rel: float) -> list[int]:
    """Linear k -> n on edge-16x16 with ``overrides`` (dense weights): assert the table's energy and
    cycles equal the simulator's on every pattern (lists of kept groups, or a callable of the group
    count giving them); return the simulated cycles of the one-group patterns."""
    model = torch.nn.Linear(k, n)
    profile = load_profile("edge-16x16", [*overrides, "sparsity.weight_format=dense"])
    workload = extract_workload(model, (k,))
    layer = workload.layers[0]
    row = coefficient_table(workload, profile).layer(layer.name)
    ids, count = weight_groups(layer, profile, get_dataflow("ws"))
    alone = []
    for kept in patterns(count):
        ls = LayerSparsity(np.isin(ids, kept), None)
        report = SYSTOLIC.estimate_layer(layer, profile, ls)
        features = pattern_features(layer, ls, profile)
        assert row.predict(features) == pytest.approx(report.energy, rel=rel), kept
        assert row.predict_cycles(features) == pytest.approx(report.cycles, rel=rel), kept
        if len(kept) == 1:
            alone.append(report.cycles)
    return alone


def test_the_first_fold_fetch_is_priced_by_the_group_that_runs_first():
    """Linear 140 -> 6 on an 8x8 array, 4 words/cycle: 17 K blocks of 8 rows and one of 4 (18 skip
    groups, more than FIT_EACH_GROUP, so no group has a fitted correction), compute-bound in
    steady state, so the layer's cycles are the first executed fold's fetch + 23 cycles per fold
    + the write-back. The first fetch depends on which group runs first (48 + 8 words for a full
    block, 24 + 4 for the last): one kept group alone simulates at 38 cycles, the last one at 31.
    The nested ``first`` items give that value exactly, so energy and cycles of the table are
    exact on every single group and on random subsets (a table with one value for the layer's
    once-only cycles misses the last block alone by +23 %)."""
    rng = np.random.default_rng(0)

    def patterns(count):
        assert count == 18 > FIT_EACH_GROUP
        return [[g] for g in range(count)] + [np.flatnonzero(rng.random(count) < d) for d in (0.1, 0.3, 0.6, 1.0)]

    overrides = ["array.rows=8", "array.cols=8", "memory.dram.bandwidth_words_per_cycle=4"]
    assert _exact_on(140, 6, overrides, patterns, 1e-12) == [38] * 17 + [31]


def test_a_layer_of_two_groups_is_exact_on_every_pattern():
    """Linear 8 -> 20 on an 8x16 array at 2 words/cycle: one K block, N blocks of 16 and 4 columns
    (two skip groups), bandwidth-bound. With every group alone in the fit and a correction per
    group, the table's energy and cycles are the simulator's on all four patterns."""
    def patterns(count):
        assert count == 2
        return ([], [0], [1], [0, 1])

    _exact_on(8, 20, ["array.rows=8", "array.cols=16", "memory.dram.bandwidth_words_per_cycle=2"], patterns, 1e-9)


def test_a_channel_wider_than_the_set_codes_is_refused_with_its_reason():
    """An 11x11 kernel on a one-row array: a channel's 121 taps span 121 K blocks, more than the
    62-bit codes of the resident-input sets hold: a one-line ValueError, not a wrong table."""
    model = torch.nn.Conv2d(1, 2, 11)
    workload = extract_workload(model, (1, 12, 12))
    with pytest.raises(ValueError, match="121 taps span more than 62 blocks of 1 array rows"):
        coefficient_table(workload, _profile(1, 4))
