"""The lower bound on any table of the coefficient table's form (benchmarks/additive_bound.py)."""

import numpy as np
import pytest
import torch

from benchmarks.additive_bound import (
    energy_features,
    find_witnesses,
    interaction,
    layer_bounds,
    minimax_fit,
    nested_items_add_up,
)
from energysim import LayerSparsity, extract_workload, load_profile
from energysim.coeffs import coefficient_table, pattern_features
from energysim.dataflow import get_dataflow
from energysim.estimators.systolic import estimate_layer
from energysim.model.groups import weight_groups

pytestmark = [pytest.mark.usefixtures("one_thread")]


def _profile(rows: int, cols: int):
    """edge-16x16 resized, weight stationary, tile skipping on, no leakage (as tests/test_groups.py)."""
    return load_profile("edge-16x16", [f"array.rows={rows}", f"array.cols={cols}", "array.dataflow=ws",
                                       "leakage_mw=0", "sparsity.skip_zero_tiles=true"])


def _row(model, shape, profile):
    workload = extract_workload(model, shape)
    layer = workload.layers[0]
    return layer, coefficient_table(workload, profile).layer(layer.name)


def test_minimax_fit_is_the_least_worst_relative_error():
    # s = (1, 2, 4) against one column of ones: the best constant c has |c - 1| = |c - 4| / 4 -> c = 1.6, t = 0.6.
    t, x = minimax_fit(np.ones((3, 1)), np.array([1.0, 2.0, 4.0]))
    assert t == pytest.approx(0.6)
    assert x[0] == pytest.approx(1.6)
    # A duplicated column changes nothing; a second, independent one fits exactly.
    assert minimax_fit(np.ones((3, 2)), np.array([1.0, 2.0, 4.0]))[0] == pytest.approx(0.6)
    assert minimax_fit(np.c_[np.ones(3), [0.0, 1.0, 3.0]], np.array([1.0, 2.0, 4.0]))[0] == pytest.approx(0, abs=1e-9)


def test_where_the_counts_add_up_the_bound_is_zero_and_the_table_exact():
    """A linear layer with partial sums in the buffer (tests/test_groups.py's ADDITIVE "linear"):
    every count is a sum over the kept groups, so t* = 0 and our table is one of the optima."""
    profile = _profile(4, 3)
    layer, row = _row(torch.nn.Linear(23, 9), (23,), profile)
    res = layer_bounds(layer, profile, row, np.random.default_rng(0), max_patterns=400, witnesses=6)
    for key in ("energy_tiles", "energy_mixed"):
        assert res[key]["patterns"] >= 3 * res[key]["rank"], key
        assert res[key]["t_star"] == pytest.approx(0, abs=1e-9), key
        assert res[key]["ours"] == pytest.approx(0, abs=1e-9), key
    assert res["witness_energy_table"]["d"] == pytest.approx(0, abs=1e-6)


# A 3x3 kernel on one 6x6 channel, 4 array rows: three row blocks (skip groups) of the 9 taps,
# (0,0) (0,1) (0,2) (1,0) | (1,1) (1,2) (2,0) (2,1) | (2,2), all reading the one channel, which
# is resident: each input element is fetched from DRAM (and written into the buffer) once, if a
# kept tap reads it. Tap (i, j) reads rows i..i+3, columns j..j+3. By hand:
#   block 0 alone           rows 0-3 (24) + row 4 columns 0-3 (4)                = 28 elements
#   blocks 0, 1             every element but (5, 5)                             = 35
#   blocks 0, 2             every element but (5, 0), (5, 1)                     = 34
#   blocks 0, 1, 2          every element                                        = 36
# so with C = {0}, A = {1}, B = {2} the fetched words interact by 36 + 28 - 35 - 34 = -5. While
# the whole channel was one item, the table's features added up exactly there (a witness that no
# such table could be exact); the elements of the channel read by the same K blocks are one item
# each now, so the features interact as the words do and the table is exact on every subset.
UNION_INTERACTION_WORDS = 36 + 28 - 35 - 34


def test_a_channel_read_by_two_row_blocks_is_priced_by_the_union_of_its_windows():
    profile = _profile(4, 3)
    layer, row = _row(torch.nn.Conv2d(1, 1, 3), (1, 6, 6), profile)
    ids, count = weight_groups(layer, profile, get_dataflow("ws"))
    assert count == 3
    rows, values, fetched = [], [], []
    for kept in ([0], [0, 1], [0, 2], [0, 1, 2]):
        ls = LayerSparsity(np.isin(ids, kept), None)
        features = pattern_features(layer, ls, profile)
        rows.append(energy_features(row, features, np.array([features["weights"]])))
        report = estimate_layer(layer, profile, ls, cycle_level=False)
        values.append(report.energy_relaxed)
        fetched.append(report.accesses["dram"]["inputs"]["reads"])
        assert row.predict(features) == pytest.approx(values[-1], rel=1e-12), kept
    assert fetched == [28, 35, 34, 36]
    per_word = profile.memory.dram.read + profile.memory.buffer.write  # 64 + 4.2 pJ
    assert interaction(values) == pytest.approx(UNION_INTERACTION_WORDS * per_word)
    assert np.any(interaction(rows) != 0)
    t_star, _ = minimax_fit(np.array(rows), np.array(values))
    assert t_star == pytest.approx(0, abs=1e-9)


def test_nested_first_and_last_items_add_up_unless_a_and_b_both_come_first():
    # Ranks of groups 0..3 in the order of their first fold and in the backward order of their last.
    forward, backward = np.array([0, 1, 2, 3]), np.array([3, 2, 1, 0])
    ranks = (forward, backward)
    # C = {1} between a = 0 and b = 2 in both orders: a pattern's first group is 0 or 1, its last 2 or 1,
    # and the items from those ranks on cancel over the four patterns.
    assert nested_items_add_up(ranks, np.array([1]), 0, 2)
    # C = {3}: a = 0 and b = 1 both start before it, so C∪{a,b} and C∪{a} start at 0, C∪{b} at 1, C at 3:
    # items 1 and 2 are used by C∪{a,b}, C∪{a}, C∪{b} and not by C: 1 + 0 - 1 - 1 = -1, no witness.
    assert not nested_items_add_up(ranks, np.array([3]), 0, 1)
    # ... and backwards: C = {0}, a = 2, b = 3 both end after it.
    assert not nested_items_add_up(ranks, np.array([0]), 2, 3)
    assert not nested_items_add_up(ranks, np.array([], np.int64), 0, 2)  # C empty: a pattern's first is a or b


def test_the_plain_form_cannot_price_a_shared_channel_and_the_table_can():
    """The 3x3 conv of the test above: the issues' plain form (constant, groups, weights) sees no
    interaction, so its witness is at least the by-hand one; ours prices the union, so none of its
    witnesses has d != 0 there."""
    profile = _profile(4, 3)
    layer, row = _row(torch.nn.Conv2d(1, 1, 3), (1, 6, 6), profile)
    ids, count = weight_groups(layer, profile, get_dataflow("ws"))
    found = find_witnesses(layer, profile, row, ids, count, np.random.default_rng(0), candidates=24)
    by_hand = []
    for kept in ([0], [0, 1], [0, 2], [0, 1, 2]):
        by_hand.append(estimate_layer(layer, profile, LayerSparsity(np.isin(ids, kept), None), cycle_level=False).energy_relaxed)
    per_word = profile.memory.dram.read + profile.memory.buffer.write
    assert found["energy_plain"].bound >= abs(UNION_INTERACTION_WORDS * per_word) / sum(by_hand) - 1e-12
    assert found["energy_table"] is not None
    assert found["energy_table"].d == pytest.approx(0, abs=1e-6)
