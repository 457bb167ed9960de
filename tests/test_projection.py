"""Tests of compress.projection: budget, optimality, idempotence, exact greedy prefix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress import projection
from compress.projection import (
    InfeasibleBudgetError,
    LayerCost,
    ProjectionResult,
    floor_energy,
    layer_energy,
    project,
    project_masks_topk,
)
from tests.naive import (
    exhaustive_best_value,
    naive_greedy_masks,
    naive_greedy_order,
    naive_layer_energy,
    naive_topk_masks,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Few distinct values, so that ties (within and across layers) are common.
TIE_PRONE = st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 1.5, 2.0, -2.0, 3.0])
WEIGHT_VALUE = st.one_of(TIE_PRONE, st.floats(-8.0, 8.0, width=32))


@st.composite
def layer_costs(draw, name, size, dyadic):
    """A LayerCost; dyadic numbers make every energy sum exact in float64."""
    if dyadic:
        per_weight = draw(st.integers(1, 16)) / 4
        overflow = per_weight + draw(st.integers(0, 12)) / 4
        constant = draw(st.integers(0, 40)) / 2
    else:
        per_weight = 10 ** draw(st.floats(-2.0, 2.0))  # log-uniform: costs differ between layers
        overflow = per_weight * draw(st.floats(1.0, 8.0))
        constant = draw(st.floats(0.0, 100.0))
    breakpoint = draw(st.none() | st.integers(0, size + 2))
    return LayerCost(name, per_weight, overflow, breakpoint, constant)


@st.composite
def instances(
    draw, min_layers=1, max_layers=4, max_size=30, max_total=None, dyadic=True, weight_value=WEIGHT_VALUE
):
    """(weights, costs, budget) with a feasible budget between the floor and beyond dense."""
    n_layers = draw(st.integers(min_layers, max_layers))
    weights, costs = {}, {}
    remaining = max_total
    for i in range(n_layers):
        cap = max_size if remaining is None else min(max_size, remaining - (n_layers - 1 - i))
        size = draw(st.integers(1 if max_total else 0, cap))
        if remaining is not None:
            remaining -= size
        values = draw(st.lists(weight_value, min_size=size, max_size=size))
        shape = (2, size // 2) if size % 2 == 0 and size > 0 else (size,)
        name = f"layer{i}"
        weights[name] = torch.tensor(values, dtype=torch.float32).reshape(shape)
        costs[name] = draw(layer_costs(name, size, dyadic))
    floor = floor_energy(costs)
    dense = sum(layer_energy(costs[n], w.numel()) for n, w in weights.items())
    if dyadic:
        budget = floor + draw(st.integers(0, int(4 * (dense - floor)) + 4)) / 4
    else:
        budget = floor + (dense - floor) * draw(st.floats(0.0, 1.1))
    return weights, costs, budget


def as_numpy(masks):
    return {name: m.cpu().numpy() for name, m in masks.items()}


def test_hand_derived_example():
    # Layer a: ranks by |w| are 3, 2, -1, 0.5; breakpoint 2, so 3 and 2 cost 1
    # and -1, 0.5 cost 2: ratios 9, 4, 0.5, 0.125. The zero is never kept.
    # Layer b: 4 and 1 cost 4 each: ratios 4, 0.25.
    # Greedy order (ratio 4 tie: layer a first): a:3, a:2, b:4, a:-1, b:1, a:0.5
    # with cumulative weight costs 1, 2, 6, 8, 12, 14; constants 10 + 5 = 15.
    weights = {"a": torch.tensor([3.0, -1.0, 2.0, 0.5, 0.0]), "b": torch.tensor([4.0, 1.0])}
    costs = {"a": LayerCost("a", 1.0, 2.0, 2, 10.0), "b": LayerCost("b", 4.0, 4.0, None, 5.0)}
    assert floor_energy(costs) == 15.0
    # Budget 21 leaves exactly 6 for weights: the first three fit (the paper's
    # `nonzero(cumsum <= bound).max()` would keep only two).
    result = project(weights, costs, 21.0)
    assert isinstance(result, ProjectionResult)
    assert result.masks["a"].tolist() == [True, False, True, False, False]
    assert result.masks["b"].tolist() == [True, False]
    assert result.kept == {"a": 2, "b": 1}
    assert result.energy == 21.0
    # Budget 22 (7 for weights): the fourth item would reach 8, so still three.
    assert project(weights, costs, 22.0).kept == {"a": 2, "b": 1}
    # Budget 23: a:-1 (overflow cost 2) joins, 23 exactly.
    result = project(weights, costs, 23.0)
    assert result.kept == {"a": 3, "b": 1} and result.energy == 23.0
    # Budget 26 (11 for weights): b:1 would reach 12, so the prefix stops at 8
    # even though a:0.5 (cost 2) alone would still fit.
    result = project(weights, costs, 26.0)
    assert result.masks["a"].tolist() == [True, True, True, False, False]
    assert result.kept == {"a": 3, "b": 1} and result.energy == 23.0
    # Budget 17.5 (2.5 for weights): a:3 and a:2 fit; the tie at ratio 4 goes to layer a.
    result = project(weights, costs, 17.5)
    assert result.kept == {"a": 2, "b": 0} and result.energy == 17.0
    # Budget 15: nothing but the constants.
    assert project(weights, costs, 15.0).kept == {"a": 0, "b": 0}
    # Infinite budget keeps every nonzero: 15 + 1 + 1 + 2 + 2 + 4 + 4 = 29.
    result = project(weights, costs, math.inf)
    assert result.kept == {"a": 4, "b": 2} and result.energy == 29.0


def test_equal_ratios_follow_the_magnitude_rank():
    # Both squares round to the same subnormal float32, so the ratios tie although
    # |w| differs; the rank (|w| descending) must decide, not the flat index.
    weights = {"a": torch.tensor([1.499999e-20, 1.5e-20, 0.0])}
    assert weights["a"][0] < weights["a"][1] and weights["a"][0] ** 2 == weights["a"][1] ** 2
    costs = {"a": LayerCost("a", 1.0, 1.0, None, 0.0)}
    assert project(weights, costs, 1.0).masks["a"].tolist() == [False, True, False]


def test_layer_energy_piecewise_numbers():
    cost = LayerCost("fc", 1.5, 4.0, 3, 7.0)
    assert layer_energy(cost, 0) == 7.0
    assert layer_energy(cost, 3) == 7.0 + 3 * 1.5
    assert layer_energy(cost, 5) == 7.0 + 3 * 1.5 + 2 * 4.0
    assert layer_energy(LayerCost("c", 2.0, 2.0, None, 1.0), 10) == 21.0
    with pytest.raises(ValueError, match="kept"):
        layer_energy(cost, -1)


@SETTINGS
@given(instances(dyadic=False))
def test_never_exceeds_budget_and_reports_consistently(instance):
    weights, costs, budget = instance
    result = project(weights, costs, budget)
    assert result.energy <= budget
    for name, w in weights.items():
        mask = result.masks[name]
        assert mask.dtype == torch.bool and mask.shape == w.shape and mask.device == w.device
        assert int(mask.sum()) == result.kept[name]
        assert not bool((w[mask] == 0).any()), "zero weights are never kept"
    assert result.energy == pytest.approx(
        sum(naive_layer_energy(costs[n], k) for n, k in result.kept.items()), rel=1e-12
    )


@SETTINGS
@given(instances(dyadic=True))
def test_equals_sort_cumsum_reference_exactly(instance):
    weights, costs, budget = instance
    result = project(weights, costs, budget)
    expected = naive_greedy_masks(weights, costs, budget)
    for name in weights:
        np.testing.assert_array_equal(result.masks[name].numpy(), expected[name], err_msg=name)
    # Longest prefix: the next item of the greedy order would exceed the budget.
    order = naive_greedy_order(weights, costs)
    not_kept = [(n, i, c) for n, i, c, _ in order if not bool(result.masks[n].reshape(-1)[i])]
    if not_kept:
        next_name, _, _ = not_kept[0]
        more = dict(result.kept, **{next_name: result.kept[next_name] + 1})
        assert sum(naive_layer_energy(costs[n], k) for n, k in more.items()) > budget


@SETTINGS
@given(instances(2, 3, max_total=12, dyadic=False, weight_value=st.floats(-8.0, 8.0, width=32)))
def test_optimal_at_the_energy_it_uses(instance):
    weights, costs, budget = instance
    result = project(weights, costs, budget)
    kept_value = sum(float((w.double()[result.masks[n]] ** 2).sum()) for n, w in weights.items())
    best = exhaustive_best_value(weights, costs, result.energy)
    assert kept_value == pytest.approx(best, rel=1e-6, abs=1e-12)


@SETTINGS
@given(instances(dyadic=False))
def test_idempotent(instance):
    weights, costs, budget = instance
    first = project(weights, costs, budget)
    masked = {n: w * first.masks[n] for n, w in weights.items()}
    second = project(masked, costs, budget)
    for name in weights:
        assert torch.equal(first.masks[name], second.masks[name]), name
    assert second.energy == first.energy and second.kept == first.kept


@SETTINGS
@given(instances(dyadic=False), st.floats(0.0, 1.0))
def test_larger_budget_keeps_a_superset(instance, extra_share):
    weights, costs, budget = instance
    dense = sum(layer_energy(costs[n], w.numel()) for n, w in weights.items())
    larger = budget + extra_share * max(dense - budget, 1.0)
    small, large = project(weights, costs, budget), project(weights, costs, larger)
    for name in weights:
        assert not bool((small.masks[name] & ~large.masks[name]).any()), name
    assert sum(large.kept.values()) >= sum(small.kept.values())


@pytest.mark.parametrize(
    ("window_items", "sample_items"),
    [(0, 256), (64, 256), (64, 1 << 18), (1 << 20, 1 << 18)],
    ids=["full-bisection", "sample-then-window", "exact-sample", "default"],
)
def test_search_paths_agree_with_reference(monkeypatch, window_items, sample_items):
    # Small window/sample limits force the counting passes that 61 M weights take.
    monkeypatch.setattr(projection, "_WINDOW_ITEMS", window_items)
    monkeypatch.setattr(projection, "_SAMPLE_ITEMS", sample_items)
    gen = torch.Generator().manual_seed(3)
    weights = {
        "conv": torch.randn(8, 4, 3, 3, generator=gen),
        "fc1": torch.randn(300, 10, generator=gen).round(decimals=1),  # many ties
        "fc2": torch.randn(1000, generator=gen) * 0.1,
    }
    costs = {
        "conv": LayerCost("conv", 2.0, 5.0, 100, 30.0),
        "fc1": LayerCost("fc1", 1.0, 3.0, 1000, 20.0),
        "fc2": LayerCost("fc2", 0.25, 0.25, None, 10.0),
    }
    for budget in (60.0, 60.25, 400.0, 1777.75, 5000.0):
        result = project(weights, costs, budget)
        expected = naive_greedy_masks(weights, costs, budget)
        for name in weights:
            np.testing.assert_array_equal(result.masks[name].numpy(), expected[name], err_msg=name)


def test_other_dtypes_and_layouts():
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(6, 5, generator=gen)
    costs = {"a": LayerCost("a", 1.0, 2.0, 7, 0.0), "b": LayerCost("b", 0.5, 0.5, None, 1.0)}
    budget = 20.0
    plain = project({"a": base, "b": base[0].clone()}, costs, budget)
    # Non-contiguous input and a weight that requires grad give the same masks.
    strided = project({"a": base.t().contiguous().t(), "b": base[0].clone().requires_grad_()}, costs, budget)
    assert all(torch.equal(plain.masks[n], strided.masks[n]) for n in costs)
    # float64 weights switch the ratios to float64; the reference follows.
    doubled = {"a": base.double(), "b": base[0].clone()}
    result = project(doubled, costs, budget)
    expected = naive_greedy_masks(doubled, costs, budget)
    for name in costs:
        np.testing.assert_array_equal(result.masks[name].numpy(), expected[name])
    # Half-precision weights are ranked exactly as their float32 values.
    half = {"a": base.half(), "b": base[0].half()}
    upcast = {"a": base.half().float(), "b": base[0].half().float()}
    half_masks, upcast_masks = project(half, costs, budget).masks, project(upcast, costs, budget).masks
    assert all(torch.equal(half_masks[n], upcast_masks[n]) for n in costs)


def test_empty_and_all_zero_layers():
    weights = {"empty": torch.zeros(0, 3), "zeros": torch.zeros(4), "w": torch.tensor([1.0, -2.0])}
    costs = {n: LayerCost(n, 1.0, 1.0, None, 1.0) for n in weights}
    result = project(weights, costs, 4.0)
    assert result.kept == {"empty": 0, "zeros": 0, "w": 1}
    assert result.masks["w"].tolist() == [False, True]
    assert result.masks["empty"].shape == (0, 3)


def test_infeasible_budget_states_minimum_energy():
    weights = {"a": torch.ones(4), "b": torch.ones(2)}
    costs = {"a": LayerCost("a", 1.0, 1.0, None, 10.0), "b": LayerCost("b", 3.0, 3.0, None, 6.0)}
    # Floor 16; dense 16 + 4 + 6 = 26; 16 / 26 = 61.54 %.
    with pytest.raises(InfeasibleBudgetError) as info:
        project(weights, costs, 15.0)
    message = str(info.value)
    assert "16" in message and "26" in message and "61.54%" in message and "15" in message
    assert isinstance(info.value, ValueError)
    assert (info.value.min_energy, info.value.dense_energy) == (16.0, 26.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weight_names_the_layer(bad):
    weights = {"conv1.weight": torch.ones(3), "fc.weight": torch.tensor([1.0, bad])}
    costs = {n: LayerCost(n, 1.0, 1.0, None, 0.0) for n in weights}
    with pytest.raises(ValueError, match=r"fc\.weight"):
        project(weights, costs, 10.0)


def test_input_errors():
    costs = {"a": LayerCost("a", 1.0, 1.0, None, 0.0), "c": LayerCost("c", 1.0, 1.0, None, 0.0)}
    with pytest.raises(ValueError, match=r"only in weights: \['b'\].*only in costs: \['c'\]"):
        project({"a": torch.ones(1), "b": torch.ones(1)}, costs, 1.0)
    with pytest.raises(TypeError, match="floating-point"):
        project({"a": torch.ones(1, dtype=torch.int64), "c": torch.ones(1)}, costs, 1.0)
    with pytest.raises(TypeError, match="LayerCost"):
        project({"a": torch.ones(1), "c": torch.ones(1)}, {"a": costs["a"], "c": (1.0, 1.0)}, 1.0)
    with pytest.raises(ValueError, match="budget"):
        project({"a": torch.ones(1), "c": torch.ones(1)}, costs, math.nan)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ((0.0, 1.0, None, 0.0), "per_weight must"),
        ((2.0, 1.0, None, 0.0), "per_weight_overflow"),
        ((1.0, math.inf, None, 0.0), "per_weight_overflow"),
        ((1.0, 1.0, -1, 0.0), "breakpoint"),
        ((1.0, 1.0, None, -0.5), "constant"),
        ((1.0, 1.0, None, math.nan), "constant"),
    ],
)
def test_layer_cost_validation(fields, match):
    with pytest.raises(ValueError, match=match):
        LayerCost("x", *fields)
    with pytest.raises(TypeError, match="breakpoint"):
        LayerCost("x", 1.0, 1.0, 2.5, 0.0)


@st.composite
def score_sets(draw):
    n_tensors = draw(st.integers(1, 4))
    scores = {}
    for i in range(n_tensors):
        size = draw(st.integers(0, 25))
        value = st.one_of(TIE_PRONE, st.floats(allow_nan=False, width=32))
        values = draw(st.lists(value, min_size=size, max_size=size))
        scores[f"s{i}"] = torch.tensor(values, dtype=torch.float32)
    total = sum(t.numel() for t in scores.values())
    return scores, draw(st.integers(0, total))


@SETTINGS
@given(score_sets())
def test_topk_equals_sorted_reference(instance):
    scores, k = instance
    masks = project_masks_topk(scores, k)
    expected = naive_topk_masks(scores, k)
    assert sum(int(m.sum()) for m in masks.values()) == k
    for name in scores:
        assert masks[name].dtype == torch.bool
        np.testing.assert_array_equal(masks[name].numpy(), expected[name], err_msg=name)


def test_topk_hand_example_and_errors():
    scores = {"a": torch.tensor([[0.5, -1.0], [2.0, 0.5]]), "b": torch.tensor([0.5, 3.0])}
    # Order: b[1]=3, a[1,0]=2, then the 0.5 ties a[0,0], a[1,1], b[0] in that order.
    masks = project_masks_topk(scores, 4)
    assert masks["a"].tolist() == [[True, False], [True, True]]
    assert masks["b"].tolist() == [False, True]
    with pytest.raises(ValueError, match="between 0 and .*6"):
        project_masks_topk(scores, 7)
    with pytest.raises(ValueError, match="'b'"):
        project_masks_topk({"a": torch.ones(2), "b": torch.tensor([math.nan])}, 1)
    with pytest.raises(TypeError, match="k must be an int"):
        project_masks_topk(scores, 2.0)
