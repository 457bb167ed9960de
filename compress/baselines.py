"""Pruning baselines that stop where the energy model says the budget is met.

Each baseline ranks weights its own way and keeps the longest ranking prefix whose
energy (the same per-layer costs the weighted projection uses) fits the budget; the
trainer then verifies the final pattern on the full simulator, exactly as for ``ecc``.

- ``magnitude``: global magnitude pruning, one ranking of ``|w|`` over all layers.
- ``uniform``: the same density in every layer (top ``|w|`` within each layer).
- ``energy-aware``: layers pruned one after the other in order of their energy (most
  first), by magnitude within a layer, each down to ``min_density`` before the next
  one is touched, in the spirit of energy-aware pruning (Yang, Chen, Sze, CVPR 2017).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from .projection import InfeasibleBudgetError, LayerCost, floor_energy, layer_energy, proxy_energy

__all__ = ["BASELINES", "energy_aware_masks", "magnitude_masks", "uniform_masks"]

# Lowest density the energy-aware baseline gives a layer before it moves to the next one.
_ENERGY_AWARE_MIN_DENSITY = 0.05


def _check_feasible(weights: Mapping[str, torch.Tensor], costs: Mapping[str, LayerCost], budget: float) -> None:
    floor = floor_energy(costs)
    if budget < floor:
        dense = proxy_energy({n: w.numel() for n, w in weights.items()}, costs)
        raise InfeasibleBudgetError(budget, floor, dense)


def _largest_fitting(count_max: int, energy_of: Callable[[int], float], budget: float) -> int:
    """Largest n in [0, count_max] with energy_of(n) <= budget (energy_of is nondecreasing)."""
    lo, hi = 0, count_max
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if energy_of(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _top_k_mask(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the ``k`` largest ``|w|`` (ties: lower flat index first)."""
    flat = weight.detach().abs().flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if k > 0:
        order = torch.argsort(flat, descending=True, stable=True)
        mask[order[:k]] = True
    return mask.view_as(weight)


def magnitude_masks(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, LayerCost], budget: float
) -> dict[str, torch.Tensor]:
    """Global magnitude pruning: the largest prefix of one ``|w|`` ranking that fits ``budget``."""
    _check_feasible(weights, costs, budget)
    names = list(weights)
    values = torch.cat([weights[n].detach().abs().flatten().float().cpu() for n in names])
    owner = torch.cat([torch.full((weights[n].numel(),), i) for i, n in enumerate(names)])
    order = torch.argsort(values, descending=True, stable=True)
    owner_sorted = owner[order]
    # Positions in the ranking of each layer's weights: the first n of the ranking hold
    # searchsorted(positions, n) weights of that layer.
    positions = [torch.nonzero(owner_sorted == i).flatten() for i in range(len(names))]

    def kept_after(n: int) -> dict[str, int]:
        bound = torch.tensor([n])
        return {name: int(torch.searchsorted(positions[i], bound)) for i, name in enumerate(names)}

    n = _largest_fitting(len(order), lambda m: proxy_energy(kept_after(m), costs), budget)
    kept = kept_after(n)
    return {name: _top_k_mask(weights[name], kept[name]) for name in names}


def uniform_masks(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, LayerCost], budget: float
) -> dict[str, torch.Tensor]:
    """The same density in every layer, the highest that fits ``budget``."""
    _check_feasible(weights, costs, budget)
    steps = 10_000  # density resolution

    def kept_at(step: int) -> dict[str, int]:
        return {n: (w.numel() * step) // steps for n, w in weights.items()}

    step = _largest_fitting(steps, lambda s: proxy_energy(kept_at(s), costs), budget)
    kept = kept_at(step)
    return {name: _top_k_mask(weights[name], kept[name]) for name in weights}


def energy_aware_masks(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, LayerCost], budget: float
) -> dict[str, torch.Tensor]:
    """Prune the most energy-hungry layer first (down to 5 % density), then the next, ...

    When every layer at 5 % still exceeds the budget, the same order is repeated down
    to zero density.
    """
    _check_feasible(weights, costs, budget)
    kept = {n: w.numel() for n, w in weights.items()}
    order = sorted(weights, key=lambda n: layer_energy(costs[n], kept[n]), reverse=True)
    for min_density in (_ENERGY_AWARE_MIN_DENSITY, 0.0):
        for name in order:
            if proxy_energy(kept, costs) <= budget:
                break
            low = int(weights[name].numel() * min_density)
            top = kept[name]

            def energy_with(k: int, name: str = name) -> float:
                return proxy_energy(kept | {name: k}, costs)

            if energy_with(low) > budget:
                kept[name] = min(low, top)
            else:
                kept[name] = low + _largest_fitting(top - low, lambda m: energy_with(low + m), budget)
    return {name: _top_k_mask(weights[name], kept[name]) for name in weights}


BASELINES: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    "magnitude": magnitude_masks,
    "uniform": uniform_masks,
    "energy-aware": energy_aware_masks,
}
