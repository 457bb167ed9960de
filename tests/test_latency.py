"""Tests of compress.latency: projection under an energy budget and a latency (cycles) budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress.baselines import tile_magnitude_masks
from compress.latency import InfeasibleLatencyError, LatencyBudget, combined_costs, pattern_proxy, project_both
from compress.structured import GroupCost, project_groups, proxy_group_energy
from tests.naive import naive_best_groups_two, naive_group_energy

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tile(w, c, b):
    return project_groups(w, c, b, "tile").masks


def hybrid(w, c, b):
    return project_groups(w, c, b, "hybrid").masks


METHODS = {"tile": tile, "hybrid": hybrid, "magnitude": tile_magnitude_masks}


def f64(values):
    return torch.tensor(values, dtype=torch.float64)


@st.composite
def two_cost_instances(draw, max_layers=2, max_groups=6, max_size=12):
    """(weights, energy costs, cycle costs): group maps over 1-2 layers, dyadic costs."""
    weights, energy, cycles = {}, {}, {}
    for i in range(draw(st.integers(1, max_layers))):
        name = f"l{i}"
        size = draw(st.integers(1, max_size))
        n_groups = draw(st.integers(1, max_groups))
        groups = torch.tensor(draw(st.lists(st.integers(0, n_groups - 1), min_size=size, max_size=size)))
        values = draw(st.lists(st.sampled_from([0.0, 0.5, -1.0, 1.5, 2.0, -3.0, 0.25]), min_size=size, max_size=size))
        weights[name] = torch.tensor(values, dtype=torch.float32)
        charge = lambda: f64(draw(st.lists(st.sampled_from([0.25, 1.0, 2.0, 3.5, 8.0]),  # noqa: E731
                                           min_size=n_groups, max_size=n_groups)))
        energy[name] = GroupCost(name, groups, charge(), draw(st.sampled_from([0.0, 0.125, 0.5])),
                                 draw(st.sampled_from([0.0, 1.0])))
        cycles[name] = GroupCost(name, groups, charge(), 0.0, draw(st.sampled_from([0.0, 2.0])))
    return weights, energy, cycles


def dense_of(weights, costs):
    return proxy_group_energy({n: w != 0 for n, w in weights.items()}, costs)


def floor_of(costs):
    return math.fsum(float(c.constant) for c in costs.values())


@given(two_cost_instances(), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.sampled_from(sorted(METHODS)))
@SETTINGS
def test_never_over_either_budget(instance, e_share, c_share, method):
    weights, energy, cycles = instance
    e_budget = floor_of(energy) + e_share * (dense_of(weights, energy) - floor_of(energy))
    c_budget = floor_of(cycles) + c_share * (dense_of(weights, cycles) - floor_of(cycles))
    masks = project_both(METHODS[method], weights, energy, e_budget, LatencyBudget(c_budget, cycles),
                         search=method != "magnitude")
    assert set(masks) == set(weights)
    kept = {n: weights[n] * masks[n] for n in weights}
    # Priced by the brute-force energy, not by the code under test.
    assert sum(naive_group_energy(energy[n], kept[n]) for n in kept) <= e_budget * (1 + 1e-12)
    assert sum(naive_group_energy(cycles[n], kept[n]) for n in kept) <= c_budget * (1 + 1e-12)
    for n in masks:  # never keeps a zero weight
        assert not bool((masks[n] & (weights[n] == 0)).any())


@given(two_cost_instances(), st.floats(0.0, 1.0), st.sampled_from(sorted(METHODS)))
@SETTINGS
def test_slack_latency_is_the_energy_projection(instance, share, method):
    weights, energy, cycles = instance
    e_budget = floor_of(energy) + share * (dense_of(weights, energy) - floor_of(energy))
    slack = LatencyBudget(dense_of(weights, cycles), cycles)
    masks = project_both(METHODS[method], weights, energy, e_budget, slack)
    alone = METHODS[method](weights, energy, e_budget)
    assert all(torch.equal(masks[n], alone[n]) for n in weights)


@given(two_cost_instances(), st.floats(0.0, 1.0), st.sampled_from(sorted(METHODS)))
@SETTINGS
def test_slack_energy_is_the_latency_projection(instance, share, method):
    weights, energy, cycles = instance
    c_budget = floor_of(cycles) + share * (dense_of(weights, cycles) - floor_of(cycles))
    masks = project_both(METHODS[method], weights, energy, dense_of(weights, energy), LatencyBudget(c_budget, cycles))
    alone = METHODS[method](weights, cycles, c_budget)
    assert all(torch.equal(masks[n], alone[n]) for n in weights)


def test_both_binding_by_hand():
    # Three tiles of one weight each: values 9, 4, 1 (w = 3, 2, 1); energy 4, 1, 1; cycles 1, 4, 1.
    groups = torch.tensor([0, 1, 2])
    weights = {"fc": torch.tensor([3.0, 2.0, 1.0])}
    energy = {"fc": GroupCost("fc", groups, f64([4.0, 1.0, 1.0]), 0.0, 0.0)}
    cycles = {"fc": GroupCost("fc", groups, f64([1.0, 4.0, 1.0]), 0.0, 0.0)}
    # E = 5, C = 5: energy alone (order by 9/4, 4/1, 1/1: tiles 1, 0, 2) keeps {1, 0}: E 5, C 5. Fits.
    assert project_both(tile, weights, energy, 5.0, LatencyBudget(5.0, cycles))["fc"].tolist() == [True, True, False]
    # E = 5, C = 3: {1, 0} is over on cycles; cycles alone (9/1, 4/4, 1/1: tiles 0, 1, 2) keeps {0}
    # (tile 1 does not fit, the prefix stops): E 4 fits, so that is the answer (value 9). The
    # optimum is {0, 2} (E 5, C 2, value 10): the prefix rule's gap, measured below.
    assert project_both(tile, weights, energy, 5.0, LatencyBudget(3.0, cycles))["fc"].tolist() == [True, False, False]
    # E = 4, C = 4: energy alone keeps {1} (then tile 0 does not fit): C 4 fits.
    assert project_both(tile, weights, energy, 4.0, LatencyBudget(4.0, cycles))["fc"].tolist() == [False, True, False]
    # E = 5, C = 2: energy alone {1, 0} is over (C 5), cycles alone keeps {0} (C 1, then tile 1
    # at C 5 does not fit)... E 4 fits: {0}. And with C = 0.5 nothing but the empty pattern fits.
    assert project_both(tile, weights, energy, 5.0, LatencyBudget(2.0, cycles))["fc"].tolist() == [True, False, False]
    assert project_both(tile, weights, energy, 5.0, LatencyBudget(0.5, cycles))["fc"].tolist() == [False] * 3


def test_lagrangian_when_both_bind():
    # Tiles (value, energy, cycles): A (16, 4, 1), B (9, 1, 4), C (4, 2, 2). E = 6, C = 5.
    # Energy alone (16/4=4, 9/1=9, 4/2=2: B, A, C) keeps {B, A}: E 5, C 5 fits. Tighten C to 4:
    # energy alone {B, A} is over on cycles (5); cycles alone (16/1, 9/4, 4/2: A, B, C) keeps
    # {A} then B (C 5) does not fit: {A}, E 4 fits -> {A}. Make cycles alone break energy:
    # A (16, 5, 1): cycles alone {A} has E 5 <= 6: still fits. With E = 4.5 it does not: the
    # Lagrangian runs; the best feasible patterns are {B, C} (E 3, C 6: over), {A} (E 5: over),
    # {B} (E 1, C 4, value 9) and {C} (value 4): the answer must be {B}.
    groups = torch.tensor([0, 1, 2])
    weights = {"fc": torch.tensor([4.0, 3.0, 2.0])}
    energy = {"fc": GroupCost("fc", groups, f64([5.0, 1.0, 2.0]), 0.0, 0.0)}
    cycles = {"fc": GroupCost("fc", groups, f64([1.0, 4.0, 2.0]), 0.0, 0.0)}
    masks = project_both(tile, weights, energy, 4.5, LatencyBudget(4.0, cycles))
    assert masks["fc"].tolist() == [False, True, False]


def test_combined_cost_is_the_weighted_sum():
    groups = torch.tensor([0, 1])
    energy = {"fc": GroupCost("fc", groups, f64([2.0, 6.0]), 0.5, 4.0)}
    cycles = {"fc": GroupCost("fc", groups, f64([10.0, 30.0]), 0.0, 20.0)}
    m = combined_costs(energy, cycles, 8.0, 40.0, 0.5)["fc"]
    assert m.group_cost.tolist() == [2 / 8 + 0.5 * 10 / 40, 6 / 8 + 0.5 * 30 / 40]
    assert (m.per_weight, m.constant) == (0.5 / 8, 4 / 8 + 0.5 * 20 / 40)


def test_infeasible_latency_names_the_minimum():
    groups = torch.tensor([0, 1])
    weights = {"fc": torch.tensor([1.0, 2.0])}
    energy = {"fc": GroupCost("fc", groups, f64([1.0, 1.0]), 0.0, 0.0)}
    cycles = {"fc": GroupCost("fc", groups, f64([5.0, 5.0]), 0.0, 7.0)}
    with pytest.raises(InfeasibleLatencyError) as info:
        project_both(tile, weights, energy, 10.0, LatencyBudget(6.0, cycles))
    assert info.value.min_cycles == 7.0 and info.value.dense_cycles == 17.0
    assert "7 cycles" in str(info.value) and "0.4118 of the dense 17" in str(info.value)


def _gap_instances(count, seed):
    """Tiny random tile instances (2-10 groups of two weights) whose cycle and energy costs are
    anti-correlated (a cheap tile in energy is a slow one), with both budgets at random shares."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(2, 11))
        groups = torch.arange(n).repeat_interleave(2)
        weights = {"fc": torch.from_numpy(rng.normal(size=2 * n).astype(np.float32))}
        charge = rng.uniform(0.2, 2.0, n)
        slow = np.clip(2.2 - charge + rng.normal(0, 0.2, n), 0.1, None)
        energy = {"fc": GroupCost("fc", groups, torch.from_numpy(charge), 0.1, 1.0)}
        cycles = {"fc": GroupCost("fc", groups, torch.from_numpy(slow), 0.0, 1.0)}
        e_budget = 1.0 + rng.uniform(0.2, 0.8) * (dense_of(weights, energy) - 1.0)
        c_budget = 1.0 + rng.uniform(0.2, 0.8) * (dense_of(weights, cycles) - 1.0)
        yield weights, energy, cycles, e_budget, c_budget


def gap_to_optimum(count=300, seed=0):
    """Relative gaps (optimum - kept) / optimum of ECC's two-budget tile projection vs brute force,
    split by where it answers: the instances where both budgets bind (the Lagrangian, repair and
    fill), and those where one is slack (the single-budget projection, which it equals)."""
    both, one = [], []
    for weights, energy, cycles, e_budget, c_budget in _gap_instances(count, seed):
        best = naive_best_groups_two(weights, energy, cycles, e_budget, c_budget)
        masks = project_both(tile, weights, energy, e_budget, LatencyBudget(c_budget, cycles))
        value = float((weights["fc"].double() ** 2)[masks["fc"]].sum())
        assert value <= best * (1 + 1e-9) + 1e-12  # brute force is the optimum
        binding = (pattern_proxy(tile(weights, energy, e_budget), cycles) > c_budget
                   and pattern_proxy(tile(weights, cycles, c_budget), energy) > e_budget)
        (both if binding else one).append((best - value) / best if best > 0 else 0.0)
    return np.array(both), np.array(one)


def test_gap_to_brute_force_optimum():
    # Figures (seed 0, 300 instances) are in the closing note of issue 14 and docs/ARCHITECTURE.md.
    both, one = gap_to_optimum()
    print(f"both budgets bind: {both.size} instances, worst gap {both.max():.4f}, mean {both.mean():.4f}, "
          f"exact {np.mean(both == 0):.3f}; one slack: {one.size}, worst {one.max():.4f}, mean {one.mean():.4f}")
    assert both.size >= 30
    # Measured: 58 instances, worst 0.357, mean 0.017, 74 % exact (the single-budget projection on
    # the one-slack instances: worst 1.0, mean 0.068, its prefix rule's gap on tiny instances).
    assert both.mean() < 0.03 and both.max() < 0.5
