"""Tests of compress.structured: tile and hybrid projection under a group-skipping energy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress import _kernels, projection, structured
from compress.structured import (
    GroupCost,
    GroupProjectionResult,
    InfeasibleBudgetError,
    group_energy,
    group_floor_energy,
    project_groups,
    proxy_group_energy,
)
from tests.naive import (
    naive_best_groups,
    naive_best_hybrid,
    naive_group_energy,
    naive_hybrid_masks,
    naive_hybrid_order,
    naive_tile_masks,
    naive_tile_order,
)

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODES = ["tile", "hybrid"]

# Few distinct values, so that ties (within groups, across groups and layers) are common.
TIE_PRONE = st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 1.5, 2.0, -2.0, 3.0])
WEIGHT_VALUE = st.one_of(TIE_PRONE, st.floats(-8.0, 8.0, width=32))
FREE_VALUE = st.one_of(st.just(0.0), st.floats(-8.0, 8.0, width=32))


def f64(values):
    return torch.tensor(values, dtype=torch.float64)


def cost_of(name, groups, group_cost, per_weight, constant):
    return GroupCost(name, torch.tensor(groups, dtype=torch.int64), f64(group_cost), per_weight, constant)


@st.composite
def group_instances(
    draw,
    max_layers=3,
    max_size=16,
    max_total=None,
    max_groups=None,
    dyadic=True,
    power_of_two_per_weight=False,
    weight_value=WEIGHT_VALUE,
):
    """(weights, costs, budget): 1-3 layers, random shapes and group maps (unused ids included).

    Dyadic numbers make every energy and value sum exact; a power-of-two
    per_weight also makes every w**2 / per_weight exact.
    """
    n_layers = draw(st.integers(1, max_layers))
    weights, costs = {}, {}
    total, groups_left = max_total, max_groups
    for i in range(n_layers):
        cap = max_size if total is None else max(1, min(max_size, total - (n_layers - 1 - i)))
        size = draw(st.integers(1, cap))
        if total is not None:
            total -= size
        values = draw(st.lists(weight_value, min_size=size, max_size=size))
        # Mostly float32; any float64 layer switches every ratio to float64.
        dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float64]))
        shape = draw(st.sampled_from([(size,)] + [(a, size // a) for a in range(2, size) if size % a == 0]))
        id_cap = size + 2 if groups_left is None else max(1, min(size + 2, groups_left - (n_layers - 1 - i)))
        n_groups = draw(st.integers(1, id_cap))
        if groups_left is not None:
            groups_left -= n_groups
        groups = draw(st.lists(st.integers(0, n_groups - 1), min_size=size, max_size=size))
        if dyadic:
            charges = draw(st.lists(st.integers(1, 16), min_size=n_groups, max_size=n_groups))
            charges = [c / 4 for c in charges]
            if power_of_two_per_weight:
                per_weight = draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 4.0]))
            else:
                per_weight = draw(st.integers(0, 12)) / 4
            constant = draw(st.integers(0, 40)) / 2
        else:
            exponent = st.floats(-2.0, 2.0)
            charges = [10**e for e in draw(st.lists(exponent, min_size=n_groups, max_size=n_groups))]
            per_weight = draw(st.just(0.0) | exponent.map(lambda e: 10**e))
            constant = draw(st.floats(0.0, 100.0))
        name = f"layer{i}"
        weights[name] = torch.tensor(values, dtype=dtype).reshape(shape)
        costs[name] = GroupCost(name, torch.tensor(groups).reshape(shape), f64(charges), per_weight, constant)
    floor = group_floor_energy(costs)
    dense = proxy_group_energy(weights, costs)
    if dyadic:
        budget = floor + draw(st.integers(0, int(4 * (dense - floor)) + 4)) / 4
    else:
        budget = floor + (dense - floor) * draw(st.floats(0.0, 1.1))
    return weights, costs, budget


def kept_value(weights, masks):
    return sum(float((w.double()[masks[n]] ** 2).sum()) for n, w in weights.items())


def masked(weights, masks):
    return {n: w * masks[n] for n, w in weights.items()}


# ---------------------------------------------------------------------------
# Hand-derived examples
# ---------------------------------------------------------------------------


def tile_example():
    # Layer a (constant 10, per_weight 1): group 0 = {3, -1}: value 10, cost 2 + 2 = 4,
    # ratio 2.5; group 1 = {2, 0}: value 4, one nonzero, cost 1 + 1 = 2, ratio 2;
    # group 2 = {0.5}: value 0.25, cost 0.25 + 1 = 1.25, ratio 0.2; id 3 is unused.
    # Layer b (constant 5, per_weight 1): group 0 = {4}: 16 / (3 + 1) = 4;
    # group 1 = {1}: 1 / (0.5 + 1) = 2/3.
    # Order b0, a0, a1, b1, a2 with cumulative costs 4, 8, 10, 11.5, 12.75 over the floor 15.
    weights = {"a": torch.tensor([3.0, -1.0, 2.0, 0.0, 0.5]), "b": torch.tensor([4.0, 1.0])}
    costs = {
        "a": cost_of("a", [0, 0, 1, 1, 2], [2.0, 1.0, 0.25, 5.0], 1.0, 10.0),
        "b": cost_of("b", [0, 1], [3.0, 0.5], 1.0, 5.0),
    }
    return weights, costs


def test_tile_hand_derived_example():
    weights, costs = tile_example()
    assert group_floor_energy(costs) == 15.0
    result = project_groups(weights, costs, 23.0, "tile")
    assert isinstance(result, GroupProjectionResult)
    assert result.masks["a"].tolist() == [True, True, False, False, False]
    assert result.masks["b"].tolist() == [True, False]
    assert (result.energy, result.kept, result.kept_groups) == (23.0, {"a": 2, "b": 1}, {"a": 1, "b": 1})
    # 25 for b0, a0, a1; b1 would reach 26.5 > 26.3, so the prefix stops there
    # although a2 (1.25) alone would still fit. The zero in group 1 is not kept.
    result = project_groups(weights, costs, 26.3, "tile")
    assert result.masks["a"].tolist() == [True, True, True, False, False]
    assert result.energy == 25.0 and result.kept_groups == {"a": 2, "b": 1}
    assert project_groups(weights, costs, 18.9, "tile").energy == 15.0
    result = project_groups(weights, costs, math.inf, "tile")
    assert result.masks["a"].tolist() == [True, True, True, False, True]
    assert result.energy == 27.75 and result.kept == {"a": 4, "b": 2}


def test_tile_ties_follow_layer_then_group_id():
    # Four groups, each of one nonzero 2: value 4, cost 3 + 1 = 4, ratio 1.
    weights = {"x": torch.tensor([2.0, 0.0, 0.0, 2.0]), "y": torch.tensor([2.0, -2.0])}
    costs = {
        "x": cost_of("x", [1, 1, 0, 0], [3.0, 3.0], 1.0, 0.0),
        "y": cost_of("y", [1, 0], [3.0, 3.0], 1.0, 0.0),
    }
    # Ties go by layer, then group id: x0 (flat 3), x1 (flat 0), y0, y1.
    result = project_groups(weights, costs, 8.0, "tile")
    assert result.masks["x"].tolist() == [True, False, False, True]
    assert result.masks["y"].tolist() == [False, False]
    result = project_groups(weights, costs, 12.0, "tile")
    assert result.masks["y"].tolist() == [False, True]


def hybrid_example():
    # Layer a (per_weight 1, constant 0): group 0 = {3, 1, 1}: V_j / (2 + j) =
    # 9/3 = 3, 10/4, 11/5, so the bundle is {3} (ratio 3, cost 3) and the ones are
    # singles of ratio 1 (cost 1 each, flat index 1 before 2). Group 1 = {2, 0}:
    # bundle {2}, 4 / (4 + 1) = 0.8, cost 5.
    # Layer b (per_weight 2, constant 1): group 0 = {2, 2, 1}: 4/6, 8/8 = 1, 9/10:
    # bundle {2, 2} (ratio 1, cost 8), single 1 of ratio 1/2 (cost 2).
    # Order: a.g0 (3), b.g0 (1, bundle first on the tie), a[1], a[2] (1), a.g1 (0.8),
    # b[2] (0.5); cumulative costs 3, 11, 12, 13, 18, 20 over the floor 1.
    weights = {"a": torch.tensor([3.0, 1.0, -1.0, 2.0, 0.0]), "b": torch.tensor([2.0, -2.0, 1.0])}
    costs = {
        "a": cost_of("a", [0, 0, 0, 1, 1], [2.0, 4.0], 1.0, 0.0),
        "b": cost_of("b", [0, 0, 0], [4.0], 2.0, 1.0),
    }
    return weights, costs


def test_hybrid_hand_derived_example():
    weights, costs = hybrid_example()
    result = project_groups(weights, costs, 4.0, "hybrid")
    assert result.masks["a"].tolist() == [True, False, False, False, False]
    assert result.masks["b"].tolist() == [False, False, False]
    assert (result.energy, result.kept_groups) == (4.0, {"a": 1, "b": 0})
    # The bundle of b costs 8 and is atomic: at 11.9 it does not fit, and the
    # singles of a (cost 1 each) come after it, so the prefix stops at 4.
    assert project_groups(weights, costs, 11.9, "hybrid").energy == 4.0
    result = project_groups(weights, costs, 13.5, "hybrid")
    assert result.masks["a"].tolist() == [True, True, False, False, False]
    assert result.masks["b"].tolist() == [True, True, False]
    assert (result.energy, result.kept, result.kept_groups) == (13.0, {"a": 2, "b": 2}, {"a": 1, "b": 1})
    assert project_groups(weights, costs, 18.5, "hybrid").energy == 14.0
    result = project_groups(weights, costs, math.inf, "hybrid")
    assert result.masks["a"].tolist() == [True, True, True, True, False]
    assert result.energy == 21.0 and result.kept == {"a": 4, "b": 3}


def test_hybrid_bundle_takes_the_largest_j_on_ties():
    # F = 3, c = 1, weights 2 and 1: V_1 / D_1 = 4/4 = 1 = V_2 / D_2 = 5/5, so
    # the bundle is both weights (cost 5), never the first alone (cost 4).
    weights = {"a": torch.tensor([1.0, 2.0])}
    costs = {"a": cost_of("a", [0, 0], [3.0], 1.0, 0.5)}
    assert project_groups(weights, costs, 4.5, "hybrid").kept == {"a": 0}
    assert project_groups(weights, costs, 5.5, "hybrid").masks["a"].tolist() == [True, True]


def test_hybrid_single_weight_ties_follow_group_id_then_rank():
    # Groups 0 = {flat 1: 1, flat 2: 3} and 1 = {flat 0: 1, flat 3: 3}, F = 2, c = 1:
    # bundles {3} of ratio 9/3 = 3 each, then singles 1 of ratio 1 each. With room
    # for one single, group 0's (flat 1) goes first although flat 0 comes earlier.
    weights = {"a": torch.tensor([1.0, -1.0, 3.0, 3.0])}
    costs = {"a": cost_of("a", [1, 0, 0, 1], [2.0, 2.0], 1.0, 0.0)}
    assert project_groups(weights, costs, 7.5, "hybrid").masks["a"].tolist() == [False, True, True, True]
    assert project_groups(weights, costs, 8.0, "hybrid").masks["a"].tolist() == [True, True, True, True]


def test_hybrid_orders_a_bundle_against_float32_singles_as_real_numbers():
    # Layer a: one weight 1 with F + c = 2.9999996, a bundle of ratio r* = 0.33333337777...,
    # which lies strictly between two float32 numbers. Layer b: bundle {3} (9 / 2), then
    # the single s of float32 ratio s**2 = 0.3333334029 > r*: the single comes before
    # a's bundle, although r* rounds up to the single's ratio in float32.
    s = torch.tensor(0.5773503, dtype=torch.float32)
    assert float(s * s) == float(torch.tensor(1 / 2.9999996, dtype=torch.float32).nextafter(torch.tensor(1.0)))
    weights = {"a": torch.tensor([1.0]), "b": torch.stack([torch.tensor(3.0), s])}
    costs = {"a": cost_of("a", [0], [2.0], 0.9999996, 0.0), "b": cost_of("b", [0, 0], [1.0], 1.0, 0.0)}
    result = project_groups(weights, costs, 3.0, "hybrid")
    assert result.masks["b"].tolist() == [True, True] and result.kept == {"a": 0, "b": 2}
    assert result.energy == 3.0


def test_hybrid_free_weights_bundle_the_whole_group():
    # per_weight 0: V_j / F only grows, so a group is all its nonzeros or nothing.
    weights = {"a": torch.tensor([1.0, 0.0, 3.0, 0.5, 2.0])}
    costs = {"a": cost_of("a", [0, 0, 0, 1, 1], [5.0, 1.0], 0.0, 0.0)}
    # Group 0: 10 / 5 = 2; group 1: 4.25 / 1.
    result = project_groups(weights, costs, 4.0, "hybrid")
    assert result.masks["a"].tolist() == [False, False, False, True, True]
    result = project_groups(weights, costs, 6.0, "hybrid")
    assert result.masks["a"].tolist() == [True, False, True, True, True] and result.energy == 6.0


def test_group_energy_numbers():
    cost = cost_of("fc", [[0, 1], [2, 2]], [1.0, 2.0, 4.0], 0.25, 3.0)
    assert group_energy(cost, torch.tensor([[True, False], [True, True]])) == 3.0 + 1.0 + 4.0 + 0.75
    assert group_energy(cost, torch.tensor([[0.0, -2.0], [0.0, 0.0]])) == 3.0 + 2.0 + 0.25
    assert group_energy(cost, torch.zeros(2, 2)) == 3.0
    other = cost_of("out", [0, 0], [1.5], 1.0, 0.5)
    weights = {"fc": torch.ones(2, 2), "out": torch.tensor([0.0, 1.0])}
    assert proxy_group_energy(weights, {"fc": cost, "out": other}) == 11.0 + 3.0
    assert group_floor_energy({"fc": cost, "out": other}) == 3.5
    with pytest.raises(ValueError, match=r"only in weights: \[\].*only in costs: \['out'\]"):
        proxy_group_energy({"fc": torch.ones(2, 2)}, {"fc": cost, "out": other})
    with pytest.raises(ValueError, match=r"'fc'.*shape \(4,\).*\(2, 2\)"):
        group_energy(cost, torch.ones(4))
    with pytest.raises(TypeError, match="bool or floating-point"):
        group_energy(cost, torch.ones(2, 2, dtype=torch.int64))


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_infeasible_budget_states_minimum_energy(mode):
    weights = {"a": torch.ones(4), "b": torch.ones(2)}
    costs = {"a": cost_of("a", [0, 0, 1, 1], [2.0, 2.0], 1.0, 10.0), "b": cost_of("b", [0, 0], [1.0], 3.0, 6.0)}
    # Floor 16; dense 16 + (4 + 4) + (1 + 6) = 31; 16 / 31 = 51.61 %.
    with pytest.raises(InfeasibleBudgetError) as info:
        project_groups(weights, costs, 15.0, mode)
    message = str(info.value)
    assert "16" in message and "31" in message and "51.61%" in message and "15" in message
    assert isinstance(info.value, ValueError)
    assert (info.value.min_energy, info.value.dense_energy) == (16.0, 31.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weight_names_the_layer(bad):
    weights = {"conv1.weight": torch.ones(2), "fc.weight": torch.tensor([1.0, bad])}
    costs = {n: cost_of(n, [0, 0], [1.0], 1.0, 0.0) for n in weights}
    with pytest.raises(ValueError, match=r"fc\.weight"):
        project_groups(weights, costs, 10.0, "hybrid")


def test_input_errors():
    costs = {"a": cost_of("a", [0], [1.0], 1.0, 0.0), "c": cost_of("c", [0], [1.0], 1.0, 0.0)}
    ok = {"a": torch.ones(1), "c": torch.ones(1)}
    with pytest.raises(ValueError, match=r"only in weights: \['b'\].*only in costs: \['c'\]"):
        project_groups({"a": torch.ones(1), "b": torch.ones(1)}, costs, 1.0, "tile")
    with pytest.raises(TypeError, match="floating-point"):
        project_groups({"a": torch.ones(1, dtype=torch.int64), "c": torch.ones(1)}, costs, 1.0, "tile")
    with pytest.raises(TypeError, match="GroupCost"):
        project_groups(ok, {"a": costs["a"], "c": projection.LayerCost("c", 1.0, 1.0, None, 0.0)}, 1.0, "tile")
    with pytest.raises(ValueError, match="budget"):
        project_groups(ok, costs, math.nan, "hybrid")
    with pytest.raises(ValueError, match=r"mode must be one of \['tile', 'hybrid'\], got 'tiles'"):
        project_groups(ok, costs, 1.0, "tiles")
    shape_message = r"weights\['c'\] has shape \(1, 1\) but its GroupCost groups has shape \(1,\)"
    with pytest.raises(ValueError, match=shape_message):
        project_groups({"a": torch.ones(1), "c": torch.ones(1, 1)}, costs, 1.0, "hybrid")


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        (([0, 1], [1.0, 1.0], -0.5, 0.0), ValueError, "'x': per_weight must"),
        (([0, 1], [1.0, 1.0], math.nan, 0.0), ValueError, "per_weight"),
        (([0, 1], [1.0, 1.0], 1.0, -1.0), ValueError, "'x': constant must"),
        (([0, 1], [1.0, 1.0], 1.0, math.inf), ValueError, "constant"),
        (([0, 1], [1.0, 0.0], 1.0, 0.0), ValueError, r"'x': group_cost entries must be finite numbers > 0, got 0\.0"),
        (([0, 1], [1.0, math.inf], 1.0, 0.0), ValueError, "group_cost entries"),
        (([0, 2], [1.0, 1.0], 1.0, 0.0), ValueError, r"'x': groups must be ids in \[0, 2\).*from 0 to 2"),
        (([-1, 0], [1.0, 1.0], 1.0, 0.0), ValueError, "from -1 to 0"),
    ],
)
def test_group_cost_validation(fields, error, match):
    groups, charges, per_weight, constant = fields
    with pytest.raises(error, match=match):
        cost_of("x", groups, charges, per_weight, constant)


def test_group_cost_types():
    with pytest.raises(TypeError, match="'x': groups must be an int64 torch.Tensor, got torch.int32"):
        GroupCost("x", torch.zeros(2, dtype=torch.int32), f64([1.0]), 1.0, 0.0)
    with pytest.raises(TypeError, match="'x': group_cost must be a float64 torch.Tensor, got torch.float32"):
        GroupCost("x", torch.zeros(2, dtype=torch.int64), torch.ones(1), 1.0, 0.0)
    with pytest.raises(ValueError, match="'x': group_cost must be 1-D"):
        GroupCost("x", torch.zeros(2, dtype=torch.int64), f64([[1.0]]), 1.0, 0.0)
    with pytest.raises(TypeError, match="per_weight|groups"):
        GroupCost("x", [0, 0], f64([1.0]), 1.0, 0.0)


# ---------------------------------------------------------------------------
# Invariants (hypothesis)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@SETTINGS
@given(instance=group_instances(dyadic=False))
def test_never_exceeds_budget_and_reports_consistently(mode, instance):
    weights, costs, budget = instance
    before = {n: w.clone() for n, w in weights.items()}
    result = project_groups(weights, costs, budget, mode)
    for name, w in weights.items():
        assert torch.equal(w, before[name]), "the weights are not modified"
    assert result.energy <= budget
    assert result.energy == proxy_group_energy(masked(weights, result.masks), costs)
    assert result.energy == pytest.approx(
        sum(naive_group_energy(costs[n], result.masks[n]) for n in weights), rel=1e-12
    )
    for name, w in weights.items():
        mask = result.masks[name]
        assert mask.dtype == torch.bool and mask.shape == w.shape and mask.device == w.device
        assert not bool((w[mask] == 0).any()), "zero weights are never kept"
        assert int(mask.sum()) == result.kept[name]
        assert len(set(costs[name].groups[mask].tolist())) == result.kept_groups[name]


@pytest.mark.parametrize("mode", MODES)
@SETTINGS
@given(instance=group_instances(dyadic=False))
def test_idempotent(mode, instance):
    weights, costs, budget = instance
    first = project_groups(weights, costs, budget, mode)
    second = project_groups(masked(weights, first.masks), costs, budget, mode)
    for name in weights:
        assert torch.equal(first.masks[name], second.masks[name]), name
    assert (second.energy, second.kept, second.kept_groups) == (first.energy, first.kept, first.kept_groups)


@pytest.mark.parametrize("mode", MODES)
@SETTINGS
@given(instance=group_instances(dyadic=False), extra_share=st.floats(0.0, 1.0))
def test_larger_budget_keeps_a_superset(mode, instance, extra_share):
    weights, costs, budget = instance
    dense = proxy_group_energy(weights, costs)
    larger = budget + extra_share * max(dense - budget, 1.0)
    small, large = project_groups(weights, costs, budget, mode), project_groups(weights, costs, larger, mode)
    for name in weights:
        assert not bool((small.masks[name] & ~large.masks[name]).any()), name
    assert kept_value(weights, large.masks) >= kept_value(weights, small.masks)
    assert large.energy >= small.energy


@SETTINGS
@given(instance=group_instances(dyadic=True))
def test_tile_equals_sorted_reference_exactly(instance):
    weights, costs, budget = instance
    result = project_groups(weights, costs, budget, "tile")
    expected = naive_tile_masks(weights, costs, budget)
    for name in weights:
        np.testing.assert_array_equal(result.masks[name].numpy(), expected[name], err_msg=name)


@SETTINGS
@given(instance=group_instances(dyadic=True, power_of_two_per_weight=True))
def test_hybrid_equals_explicit_hull_reference_exactly(instance):
    weights, costs, budget = instance
    result = project_groups(weights, costs, budget, "hybrid")
    expected = naive_hybrid_masks(weights, costs, budget)
    for name in weights:
        np.testing.assert_array_equal(result.masks[name].numpy(), expected[name], err_msg=name)


@SETTINGS
@given(instance=group_instances(max_groups=12, dyadic=False, weight_value=FREE_VALUE))
def test_tile_optimal_at_the_energy_it_spends(instance):
    weights, costs, budget = instance
    result = project_groups(weights, costs, budget, "tile")
    best = naive_best_groups(weights, costs, result.energy)
    assert kept_value(weights, result.masks) == pytest.approx(best, rel=1e-9, abs=1e-12)


@SETTINGS
@given(instance=group_instances(max_total=14, dyadic=False, weight_value=FREE_VALUE))
def test_hybrid_optimal_at_the_energy_it_spends(instance):
    weights, costs, budget = instance
    result = project_groups(weights, costs, budget, "hybrid")
    assert result.energy <= budget
    best = naive_best_hybrid(weights, costs, result.energy)
    assert kept_value(weights, result.masks) == pytest.approx(best, rel=1e-6, abs=1e-9)


def next_segment_value(weights, result, order):
    """sum w**2 of the first item of a greedy order (cost, name, indices) that the result does not keep."""
    for _, name, indices in order:
        kept = result.masks[name].reshape(-1)[list(indices)]
        if not bool(kept.all()):
            return float((weights[name].double().reshape(-1)[list(indices)] ** 2).sum())
    return 0.0


@pytest.mark.parametrize("mode", MODES)
@SETTINGS
@given(instance=group_instances(max_total=14, max_groups=12, dyadic=False, weight_value=FREE_VALUE))
def test_prefix_plus_next_item_bounds_the_optimum_at_the_budget(mode, instance):
    # The relaxation at the budget is the prefix plus a fraction of the next
    # item, so the optimum at the budget is at most prefix + next item.
    weights, costs, budget = instance
    result = project_groups(weights, costs, budget, mode)
    order = (naive_tile_order if mode == "tile" else naive_hybrid_order)(weights, costs)
    best = (naive_best_groups if mode == "tile" else naive_best_hybrid)(weights, costs, budget)
    value = kept_value(weights, result.masks)
    assert value <= best * (1 + 1e-9) + 1e-12
    assert best <= (value + next_segment_value(weights, result, order)) * (1 + 1e-9) + 1e-12


def test_hybrid_gap_to_optimum_at_budget():
    # Seeded random instances, 1-3 layers, 14 weights, budgets 5-95 % of the way
    # from the floor to dense: the relative value the hybrid leaves on the table
    # against the exhaustive optimum AT THE BUDGET. The prefix stops at the
    # first segment that does not fit, so where that is the first, atomic
    # bundle, it keeps nothing although part of that group would fit: gap 1.
    gen = np.random.default_rng(20240611)
    gaps, empty = [], 0
    for _ in range(300):
        n_layers = int(gen.integers(1, 4))
        sizes = gen.multinomial(14 - n_layers, [1 / n_layers] * n_layers) + 1
        weights, costs = {}, {}
        for i, size in enumerate(sizes):
            name = f"l{i}"
            n_groups = int(gen.integers(1, size + 1))
            weights[name] = torch.tensor(gen.normal(size=size), dtype=torch.float32)
            groups = torch.tensor(gen.integers(0, n_groups, size=size), dtype=torch.int64)
            charges = f64(10 ** gen.uniform(-1, 0.5, size=n_groups))
            costs[name] = GroupCost(name, groups, charges, float(10 ** gen.uniform(-1, 0.5)), float(gen.uniform(0, 5)))
        floor, dense = group_floor_energy(costs), proxy_group_energy(weights, costs)
        budget = floor + float(gen.uniform(0.05, 0.95)) * (dense - floor)
        result = project_groups(weights, costs, budget, "hybrid")
        best = naive_best_hybrid(weights, costs, budget)
        value = kept_value(weights, result.masks)
        assert value <= best * (1 + 1e-9)
        gaps.append(max(0.0, 1.0 - value / best) if best > 0 else 0.0)
        empty += sum(result.kept.values()) == 0
    gaps = np.array(gaps)
    kept_some = gaps[gaps < 1.0]
    print(
        f"\nhybrid gap to the exhaustive optimum at the budget, {gaps.size} instances: worst {gaps.max():.4f} "
        f"({int((gaps == 1.0).sum())} with nothing kept), mean {gaps.mean():.4f}, median {np.median(gaps):.4f}; "
        f"worst where something is kept {kept_some.max():.4f}"
    )
    assert gaps.max() <= 1.0
    # Sanity: a gap of 1 only where the prefix is empty, and most instances are close.
    assert int((gaps == 1.0).sum()) <= empty and np.median(gaps) < 0.01


# ---------------------------------------------------------------------------
# Larger instances, other dtypes, selection paths
# ---------------------------------------------------------------------------


def tiled(out_channels, fan_in, tile, gen, per_weight, charge, constant, name):
    """A weight [out, fan_in] with tile x tile groups of its GEMM view, as the benchmark builds them."""
    weight = torch.randn(out_channels, fan_in, generator=gen)
    n, k = torch.meshgrid(torch.arange(out_channels), torch.arange(fan_in), indexing="ij")
    cols = -(-out_channels // tile)
    groups = (k // tile) * cols + n // tile
    n_groups = -(-fan_in // tile) * cols + 1  # one unused id
    charges = f64([charge] * n_groups) * (1 + torch.rand(n_groups, generator=gen, dtype=torch.float64))
    return weight, GroupCost(name, groups, charges, per_weight, constant)


@pytest.mark.parametrize(
    ("window_items", "sample_items", "chunk"),
    [(0, 256, 100), (64, 256, 1000), (1 << 20, 1 << 18, structured._CHUNK)],
    ids=["full-bisection", "sample-then-window", "default"],
)
def test_search_paths_agree_with_reference(monkeypatch, window_items, sample_items, chunk):
    # Small window/sample limits force the counting passes that 61 M weights take,
    # and small chunks the chunked group sums.
    monkeypatch.setattr(projection, "_WINDOW_ITEMS", window_items)
    monkeypatch.setattr(projection, "_SAMPLE_ITEMS", sample_items)
    monkeypatch.setattr(structured, "_CHUNK", chunk)
    gen = torch.Generator().manual_seed(5)
    weights, costs = {}, {}
    layers = (("conv", 24, 36, 1.0, 8.0), ("fc", 40, 50, 0.5, 40.0), ("free", 8, 8, 0.0, 2.0))
    for name, out, fan_in, c, charge in layers:
        weights[name], costs[name] = tiled(out, fan_in, 4, gen, c, charge, 10.0, name)
    weights["fc"] = weights["fc"].round(decimals=1)  # many ties
    weights["conv"][weights["conv"].abs() < 0.3] = 0.0  # sparse: counted per chunk
    floor, dense = group_floor_energy(costs), proxy_group_energy(weights, costs)
    for share in (0.0, 0.01, 0.3, 0.77, 0.999):
        budget = floor + share * (dense - floor)
        for mode, reference in (("tile", naive_tile_masks), ("hybrid", naive_hybrid_masks)):
            result = project_groups(weights, costs, budget, mode)
            expected = reference(weights, costs, budget)
            assert result.energy <= budget
            for name in weights:
                np.testing.assert_array_equal(result.masks[name].numpy(), expected[name], err_msg=f"{mode} {name}")


def dinkelbach_instance(dtype):
    """Squares 0.9 ** sqrt(j) with a tiny group cost: the bundle of group 0 of layer a shrinks
    over 7 Dinkelbach passes; layer b is a ramp in three groups."""
    squares = 0.9 ** torch.arange(256, dtype=torch.float64).sqrt()
    signs = torch.where(torch.arange(256) % 3 == 0, -1.0, 1.0).double()
    weights = {"a": (squares.sqrt() * signs).to(dtype), "b": torch.linspace(-1, 1, 30, dtype=dtype)}
    costs = {
        "a": cost_of("a", [0] * 200 + [1] * 56, [0.001, 0.5], 0.01, 1.0),
        "b": cost_of("b", [i // 10 for i in range(30)], [0.1, 0.2, 0.3], 0.02, 2.0),
    }
    return weights, costs


@pytest.mark.parametrize("compact_share", [0, 8, 10**9], ids=["always-park", "default", "always-compact"])
def test_many_dinkelbach_passes_and_float64_weights_torch(monkeypatch, compact_share):
    # The torch path (devices other than the CPU, forced here): weights leaving the
    # candidate set are parked or compacted away. float64 weights switch every ratio to float64.
    monkeypatch.setattr(structured, "_KERNEL_DEVICES", ())
    monkeypatch.setattr(structured, "_COMPACT_SHARE", compact_share)
    passes = []
    threshold = structured._threshold
    monkeypatch.setattr(structured, "_threshold", lambda t, dtype: passes.append(1) or threshold(t, dtype))
    for dtype in (torch.float64, torch.float32):
        weights, costs = dinkelbach_instance(dtype)
        floor, dense = group_floor_energy(costs), proxy_group_energy(weights, costs)
        for share in (0.1, 0.5, 0.9):
            budget = floor + share * (dense - floor)
            passes.clear()
            result = project_groups(weights, costs, budget, "hybrid")
            assert len(passes) >= 8  # one threshold to start (all layers at once), then one per pass: 7 in layer a
            expected = naive_hybrid_masks(weights, costs, budget)
            for name in weights:
                np.testing.assert_array_equal(result.masks[name].numpy(), expected[name], err_msg=f"{dtype} {name}")


@pytest.mark.parametrize("parallel_weights", [0, 10**9], ids=["parallel", "serial"])
def test_many_dinkelbach_passes_and_float64_weights_kernel(monkeypatch, parallel_weights):
    monkeypatch.setattr(structured, "_PARALLEL_WEIGHTS", parallel_weights)
    for dtype in (torch.float64, torch.float32):
        weights, costs = dinkelbach_instance(dtype)
        cost, flat = costs["a"], weights["a"]
        ratio = structured._weight_ratios(flat, cost.per_weight)
        order, start, visit, _ = structured._group_order(cost.groups, 2)
        tiny = np.nextafter(np.zeros((), dtype=ratio.numpy().dtype), 1)
        *_, passes = _kernels.hybrid_bundles(
            ratio.numpy(), flat.numpy(), order, start, visit, cost.group_cost.numpy(), cost.per_weight, tiny
        )
        assert passes == 8  # 7 that shrink the set of group 0, and the one that finds it stable
        floor, dense = group_floor_energy(costs), proxy_group_energy(weights, costs)
        for share in (0.1, 0.5, 0.9):
            budget = floor + share * (dense - floor)
            result = project_groups(weights, costs, budget, "hybrid")
            expected = naive_hybrid_masks(weights, costs, budget)
            for name in weights:
                np.testing.assert_array_equal(result.masks[name].numpy(), expected[name], err_msg=f"{dtype} {name}")


def project_with_torch_bundles(weights, costs, budget):
    """project_groups(..., "hybrid") with the torch bundles (the code before the numba kernels)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(structured, "_KERNEL_DEVICES", ())
        return project_groups(weights, costs, budget, "hybrid")


def assert_same_result(got, expected):
    assert (got.energy, got.kept, got.kept_groups) == (expected.energy, expected.kept, expected.kept_groups)
    for name, mask in expected.masks.items():
        assert torch.equal(got.masks[name], mask), name


@pytest.mark.parametrize("parallel_weights", [0, 10**9], ids=["parallel", "serial"])
@SETTINGS
@given(instance=st.one_of(group_instances(dyadic=False), group_instances(max_size=40, max_layers=4)))
def test_hybrid_kernel_equals_torch_bundles_bit_for_bit(parallel_weights, instance):
    # Random shapes and group maps, tie-prone values, several layers, float32 and float64:
    # the numba kernels make the same float operations in the same order as the torch code.
    weights, costs, budget = instance
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(structured, "_PARALLEL_WEIGHTS", parallel_weights)
        got = project_groups(weights, costs, budget, "hybrid")
    assert_same_result(got, project_with_torch_bundles(weights, costs, budget))


def test_hybrid_kernel_equals_torch_bundles_on_tiled_layers():
    # Tiled layers of some thousand weights (the parallel kernel), ties, zeros, and budgets
    # from the floor to dense.
    gen = torch.Generator().manual_seed(11)
    weights, costs = {}, {}
    for name, out, fan_in, c, charge in (("conv", 96, 300, 1.0, 30.0), ("fc", 120, 400, 0.5, 9.0)):
        weights[name], costs[name] = tiled(out, fan_in, 16, gen, c, charge, 10.0, name)
    weights["fc"] = weights["fc"].round(decimals=1)
    weights["conv"][weights["conv"].abs() < 0.2] = 0.0
    floor, dense = group_floor_energy(costs), proxy_group_energy(weights, costs)
    for share in (0.0, 0.02, 0.3, 0.8, 1.0):
        budget = floor + share * (dense - floor)
        got = project_groups(weights, costs, budget, "hybrid")
        assert_same_result(got, project_with_torch_bundles(weights, costs, budget))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_threshold_equals_torch_threshold(dtype):
    # Float64 t just above, at and below float32 numbers (float32(t) rounds down, exact, up),
    # subnormal, zero, huge and overflowing t: the least positive number of dtype >= t.
    near = torch.tensor([0.1, 1.0, 3.0e-39, 1.0e-45, 3.4028234663852886e38], dtype=torch.float32).double()
    t = torch.cat([near, near + near * 1e-12, near - near * 1e-12, f64([0.0, 1e-300, 1e300, 7.25])])
    expected = structured._threshold(t, dtype)
    for kernel in (_kernels.threshold, _kernels.threshold.py_func):
        out = np.empty(t.numel(), dtype=torch.empty(0, dtype=dtype).numpy().dtype)
        tiny = np.nextafter(out.dtype.type(0), out.dtype.type(1))
        with np.errstate(over="ignore"):  # plain Python warns on the overflowing t, numba does not
            for g, value in enumerate(t.tolist()):
                kernel(value, out, g, tiny)
        np.testing.assert_array_equal(out, expected.numpy())


def test_group_order_is_cached_per_group_map():
    groups = torch.tensor([[2, 0], [2, 1]])
    first = structured._group_order(groups, 4)
    assert [a.tolist() for a in first] == [[1, 3, 0, 2], [0, 1, 2, 4, 4], [2, 0, 1], [1, 2, 0, 0]]
    assert structured._group_order(groups, 4) is first
    groups[0, 1] = 1  # an in-place change is seen
    assert structured._group_order(groups, 4)[1].tolist() == [0, 0, 2, 4, 4]
    key = id(groups)
    del groups
    assert key not in structured._ORDERS


@pytest.mark.parametrize("mode", MODES)
def test_infinite_budget_keeps_every_nonzero(mode):
    gen = torch.Generator().manual_seed(2)
    weight, cost = tiled(12, 20, 4, gen, 0.5, 3.0, 1.0, "w")
    weight[weight.abs() < 0.5] = 0.0
    result = project_groups({"w": weight}, {"w": cost}, math.inf, mode)
    assert torch.equal(result.masks["w"], weight != 0)
    assert result.energy == proxy_group_energy({"w": weight}, {"w": cost})


@pytest.mark.parametrize("mode", MODES)
def test_other_dtypes_layouts_and_empty_layers(mode):
    gen = torch.Generator().manual_seed(1)
    base, cost = tiled(6, 10, 3, gen, 1.0, 2.0, 0.0, "a")
    empty = GroupCost("e", torch.zeros(0, 3, dtype=torch.int64), f64([1.0]), 1.0, 1.0)
    costs = {"a": cost, "e": empty}
    budget = 20.0
    plain = project_groups({"a": base, "e": torch.zeros(0, 3)}, costs, budget, mode)
    assert plain.masks["e"].shape == (0, 3) and plain.kept["e"] == 0 and plain.kept_groups["e"] == 0
    strided_weights = {"a": base.t().contiguous().t().requires_grad_(), "e": torch.zeros(0, 3)}
    strided = project_groups(strided_weights, costs, budget, mode)
    assert torch.equal(plain.masks["a"], strided.masks["a"])
    half = project_groups({"a": base.half(), "e": torch.zeros(0, 3)}, costs, budget, mode)
    upcast = project_groups({"a": base.half().float(), "e": torch.zeros(0, 3)}, costs, budget, mode)
    assert torch.equal(half.masks["a"], upcast.masks["a"])
    assert project_groups({}, {}, 0.0, mode) == GroupProjectionResult({}, 0.0, {}, {})


def test_structured_exports():
    assert set(structured.__all__) >= {
        "GroupCost", "GroupProjectionResult", "group_energy", "group_floor_energy",
        "project_groups", "proxy_group_energy",
    }
