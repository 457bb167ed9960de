"""Baselines stop at the budget: never above it, and one more weight would not fit."""


import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compress.baselines import BASELINES, energy_aware_masks, magnitude_masks, uniform_masks
from compress.projection import InfeasibleBudgetError, LayerCost, floor_energy, layer_energy


def make_layers(seed, sizes=(30, 50, 20)):
    gen = torch.Generator().manual_seed(seed)
    weights = {f"l{i}": torch.randn(n, generator=gen) for i, n in enumerate(sizes)}
    costs = {
        "l0": LayerCost("l0", 5.0, 9.0, 10, 40.0),
        "l1": LayerCost("l1", 1.0, 1.0, None, 10.0),
        "l2": LayerCost("l2", 3.0, 3.0, None, 0.0),
    }
    return weights, costs


def energy(masks, costs):
    return sum(layer_energy(costs[n], int(m.sum())) for n, m in masks.items())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 1000), fraction=st.floats(0.0, 1.0), method=st.sampled_from(sorted(BASELINES)))
def test_never_above_budget(seed, fraction, method):
    weights, costs = make_layers(seed)
    dense = energy({n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}, costs)
    budget = floor_energy(costs) + fraction * (dense - floor_energy(costs))
    masks = BASELINES[method](weights, costs, budget)
    assert energy(masks, costs) <= budget + 1e-9
    assert all(m.dtype == torch.bool and m.shape == weights[n].shape for n, m in masks.items())


def test_magnitude_keeps_a_global_magnitude_prefix_and_one_more_would_not_fit():
    weights, costs = make_layers(3)
    budget = 200.0
    masks = magnitude_masks(weights, costs, budget)
    kept = torch.cat([weights[n].abs()[masks[n]] for n in weights])
    dropped = torch.cat([weights[n].abs()[~masks[n]] for n in weights])
    assert kept.min() >= dropped.max()
    # The largest dropped weight would push the energy over the budget.
    name = max(weights, key=lambda n: weights[n].abs()[~masks[n]].max() if (~masks[n]).any() else -1)
    extra = {n: int(m.sum()) + (n == name) for n, m in masks.items()}
    assert sum(layer_energy(costs[n], k) for n, k in extra.items()) > budget


def test_uniform_has_equal_density():
    weights, costs = make_layers(4, sizes=(100, 200, 400))
    masks = uniform_masks(weights, costs, 500.0)
    densities = [m.float().mean().item() for m in masks.values()]
    assert max(densities) - min(densities) < 0.011


def test_energy_aware_prunes_the_costliest_layer_first():
    weights, costs = make_layers(5)
    dense_kept = {n: w.numel() for n, w in weights.items()}
    masks = energy_aware_masks(weights, costs, energy({n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}, costs) - 20)
    # l0 costs the most (30 weights at 5-9): it alone is pruned a little, the others stay dense.
    assert int(masks["l0"].sum()) < dense_kept["l0"]
    assert int(masks["l1"].sum()) == dense_kept["l1"] and int(masks["l2"].sum()) == dense_kept["l2"]


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_infeasible_budget_states_the_minimum(method):
    weights, costs = make_layers(0)
    with pytest.raises(InfeasibleBudgetError, match="50"):
        BASELINES[method](weights, costs, 10.0)
