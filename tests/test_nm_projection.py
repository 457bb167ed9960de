"""The N:M-structured projection and the ASP baseline (compress.nm), against exhaustive searches in tests/naive.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress.nm import NMCost, asp_magnitude_masks, nm_candidates, nm_energy, nm_floor_energy, project_nm, proxy_nm_energy
from compress.projection import InfeasibleBudgetError, LayerCost
from naive import naive_best_nm, naive_is_nm, naive_nm_price

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def instances(draw):
    """One or two tiny layers (<= 12 weights in all) with random prices dense and N:M."""
    n, m = draw(st.sampled_from([(1, 2), (2, 4), (1, 4)]))
    layers = draw(st.integers(1, 2))
    weights, costs = {}, {}
    for i in range(layers):
        rows = draw(st.integers(1, 2))
        width = draw(st.integers(2, 6 // layers if layers == 2 else 6))
        values = draw(st.lists(st.sampled_from([0.0, 0.5, -1.0, 1.5, 2.0, -3.0, 0.25]), min_size=rows * width,
                               max_size=rows * width))
        name = f"l{i}"
        weights[name] = torch.tensor(values, dtype=torch.float64).reshape(rows, width)

        def price(lo):
            per = draw(st.floats(0.1, 3.0))
            overflow = per + draw(st.floats(0.0, 2.0))
            breakpoint = draw(st.one_of(st.none(), st.integers(0, rows * width)))
            return LayerCost(name, per, overflow, breakpoint, draw(st.floats(lo, lo + 5.0)))

        costs[name] = NMCost(name, n, m, price(0.0), price(0.0))
    return weights, costs


def value(weights, masks):
    return sum(float((weights[n][masks[n]] ** 2).sum()) for n in weights)


def kept_rows(mask):
    return [list(map(bool, row)) for row in mask.reshape(mask.shape[0], -1).tolist()]


@SETTINGS
@given(instance=instances(), share=st.floats(0.0, 1.2))
def test_projection_is_optimal_at_the_energy_it_spends(instance, share):
    weights, costs = instance
    floor = nm_floor_energy(costs, weights)
    dense = proxy_nm_energy(weights, costs)
    budget = floor + share * max(dense - floor, 1.0)
    result = project_nm(weights, costs, budget)
    # Never over budget, never a zero weight, the energy is the pattern's own.
    assert result.energy <= budget
    for name, mask in result.masks.items():
        assert not bool((mask & (weights[name] == 0)).any())
        assert result.compressed[name] == naive_is_nm(kept_rows(mask), costs[name].n, costs[name].m) or not mask.any()
    priced = sum(naive_nm_price(costs[n], kept_rows(result.masks[n])) for n in weights)
    assert priced == pytest.approx(result.energy, rel=1e-12, abs=1e-12)
    # Optimal at the energy spent over every pattern priced by the mode it runs in (the documented family)...
    got = value(weights, result.masks)
    assert got >= naive_best_nm(weights, costs, result.energy) - 1e-9
    # ... and never better than the best pattern of any kind at that energy (a sanity bound).
    assert got <= naive_best_nm(weights, costs, result.energy, family_only=False) + 1e-9


def test_projection_below_the_floor_says_the_floor():
    cost = NMCost("fc", 2, 4, LayerCost("fc", 1.0, 1.0, None, 4.0), LayerCost("fc", 1.0, 1.0, None, 2.0))
    with pytest.raises(InfeasibleBudgetError, match="minimum achievable energy 2"):
        project_nm({"fc": torch.tensor([[4.0, 3.0, 2.0, 1.0]])}, {"fc": cost}, 1.5)


def test_projection_chooses_the_mode_per_layer_by_hand():
    # Layer a: N:M is cheap (constant 2 vs 10): compressed. Layer b: N:M costs more per weight than
    # dense and keeping three of one group is worth it: dense-pruned.
    a = NMCost("a", 2, 4, LayerCost("a", 1.0, 1.0, None, 10.0), LayerCost("a", 1.0, 1.0, None, 2.0))
    b = NMCost("b", 2, 4, LayerCost("b", 1.0, 1.0, None, 1.0), LayerCost("b", 5.0, 5.0, None, 1.0))
    weights = {"a": torch.tensor([[3.0, 2.0, 1.0, 0.5]]), "b": torch.tensor([[3.0, 3.0, 3.0, 0.1]])}
    result = project_nm(weights, {"a": a, "b": b}, 2.0 + 2.0 + 1.0 + 3.0)
    assert result.compressed == {"a": True, "b": False}
    assert result.masks["a"].tolist() == [[True, True, False, False]]
    assert result.masks["b"].tolist() == [[True, True, True, False]]
    assert result.energy == 8.0


def test_candidates_are_the_n_largest_of_every_group():
    w = torch.tensor([[0.1, -3.0, 2.0, 0.0, 5.0, 0.0], [1.0, 1.0, 1.0, 1.0, -2.0, 0.5]])
    assert nm_candidates(w, 2, 4).tolist() == [
        [False, True, True, False, True, False],
        [True, True, False, False, True, True],
    ]
    # A conv weight: K is (in, kh, kw) flattened, in torch order.
    conv = torch.arange(2 * 1 * 2 * 2, dtype=torch.float64).reshape(2, 1, 2, 2)
    assert nm_candidates(conv, 1, 4).reshape(2, 4).tolist() == [[False, False, False, True]] * 2


def _asp_costs():
    cheap = lambda name: NMCost(name, 2, 4, LayerCost(name, 1.0, 1.0, None, 8.0), LayerCost(name, 0.5, 0.5, None, 2.0))  # noqa: E731
    return {"a": cheap("a"), "b": cheap("b")}


def test_asp_baseline_converts_layers_then_prunes_by_magnitude():
    weights = {"a": torch.tensor([[4.0, 3.0, 2.0, 1.0] * 2]), "b": torch.tensor([[1.0, 2.0, 3.0, 4.0] * 2])}
    costs = _asp_costs()
    dense = proxy_nm_energy(weights, costs)
    assert dense == 2 * (8.0 + 8.0)
    assert {n: bool(m.all()) for n, m in asp_magnitude_masks(weights, costs, dense).items()} == {"a": True, "b": True}
    # One layer 2:4 (2 + 0.5 * 4 = 4 instead of 16): 20 fits, and layer a goes first (ties: layer order).
    masks = asp_magnitude_masks(weights, costs, 20.0)
    assert masks["a"].tolist() == [[True, True, False, False] * 2] and bool(masks["b"].all())
    # Both 2:4 is 8; below it, magnitude inside the candidates: 7 keeps the six largest candidates (2 + 2 + 0.5 * 6).
    masks = asp_magnitude_masks(weights, costs, 7.0)
    assert all(naive_is_nm(kept_rows(m), 2, 4) for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == 6
    assert proxy_nm_energy({n: m.double() for n, m in masks.items()}, costs) <= 7.0
    # Candidates 4, 3 of a's groups and 3, 4 of b's; ties of |w| keep the earlier layer's first.
    assert masks["a"].tolist() == [[True, True, False, False] * 2]
    assert masks["b"].tolist() == [[False, False, False, True] * 2]
    with pytest.raises(InfeasibleBudgetError):
        asp_magnitude_masks(weights, costs, 3.0)


def test_nm_energy_prices_by_the_pattern():
    cost = _asp_costs()["a"]
    assert nm_energy(cost, torch.tensor([[1.0, 1.0, 0.0, 0.0]])) == 2.0 + 2 * 0.5
    assert nm_energy(cost, torch.tensor([[1.0, 1.0, 1.0, 0.0]])) == 8.0 + 3 * 1.0


def test_floor_takes_a_cheap_dense_pattern_when_there_is_one():
    # Dense-priced patterns cheaper than the empty N:M layer: the floor is the cheapest violating top-k.
    cost = NMCost("a", 1, 2, LayerCost("a", 0.1, 0.1, None, 0.0), LayerCost("a", 1.0, 1.0, None, 5.0))
    weights = {"a": torch.tensor([[3.0, 2.0, 1.0, 0.0]])}
    assert nm_floor_energy({"a": cost}, weights) == pytest.approx(0.2)
    result = project_nm(weights, {"a": cost}, 0.2)
    assert result.compressed == {"a": False} and result.masks["a"].tolist() == [[True, True, False, False]]
    assert np.isclose(result.energy, 0.2)
