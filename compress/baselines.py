"""Pruning baselines that stop where the energy model says the budget is met.

Each baseline ranks weights its own way and keeps the longest ranking prefix whose
energy (the same per-layer costs the weighted projection uses) fits the budget; the
trainer then verifies the final pattern on the full simulator, exactly as for ``ecc``.

- ``magnitude``: global magnitude pruning, one ranking of ``|w|`` over all layers.
- ``uniform``: the same density in every layer (top ``|w|`` within each layer).
- ``energy-aware``: layers pruned one after the other in order of their energy (most
  first), by magnitude within a layer, each down to ``min_density`` before the next
  one is touched, in the spirit of energy-aware pruning (Yang, Chen, Sze, CVPR 2017).

With a weight structure (``--structure tile|hybrid``, on arrays that skip all-zero
tiles) the costs are :class:`compress.structured.GroupCost` and ``magnitude`` becomes:

- ``tile``: the tiles of largest L2 norm over all layers, whole (their nonzero weights),
  the longest norm-ranked prefix whose energy fits;
- ``hybrid``: tiles by L2 norm, then weights by magnitude, at one keep ratio ``rho``: the
  top ``rho`` of the tiles (by norm, over all layers), and inside them the top ``rho`` of
  their nonzero weights (by ``|w|``, over all kept tiles); ``rho`` is the largest that fits,
  found by bisection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from .projection import InfeasibleBudgetError, LayerCost, floor_energy, layer_energy, proxy_energy
from .structured import GroupCost, group_floor_energy, group_sums, proxy_group_energy

__all__ = [
    "BASELINES",
    "STRUCTURED_BASELINES",
    "energy_aware_masks",
    "hybrid_magnitude_masks",
    "magnitude_masks",
    "tile_magnitude_masks",
    "uniform_masks",
]


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


def _check_group_feasible(weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost], budget: float) -> None:
    floor = group_floor_energy(costs)
    if budget < floor:
        raise InfeasibleBudgetError(budget, floor, proxy_group_energy(weights, costs))


def _tile_ranking(weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every tile with a nonzero weight, by L2 norm descending (ties: layer order, then id): (layer index, group id)."""
    norms, owners, ids = [], [], []
    for i, name in enumerate(weights):
        norm = group_sums(weights[name], costs[name])[0].cpu()
        live = torch.nonzero(norm > 0).reshape(-1)
        norms.append(norm[live])
        owners.append(torch.full((live.numel(),), i))
        ids.append(live)
    order = torch.argsort(torch.cat(norms), descending=True, stable=True)
    return torch.cat(owners)[order], torch.cat(ids)[order]


def _tile_masks(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost], ranking: tuple[torch.Tensor, torch.Tensor], m: int
) -> dict[str, torch.Tensor]:
    """Masks keeping the nonzero weights of the first ``m`` tiles of ``ranking``."""
    owner, group = ranking[0][:m], ranking[1][:m]
    masks = {}
    for i, name in enumerate(weights):
        keep = torch.zeros(costs[name].group_cost.numel(), dtype=torch.bool)
        keep[group[owner == i]] = True
        w = weights[name].detach()
        masks[name] = keep.to(w.device)[costs[name].groups.to(w.device)] & (w != 0)
    return masks


def _energy(weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost], masks: Mapping[str, torch.Tensor]) -> float:
    return proxy_group_energy({n: masks[n] for n in weights}, costs)


def tile_magnitude_masks(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost], budget: float
) -> dict[str, torch.Tensor]:
    """Tiles of largest L2 norm, whole: the longest norm-ranked prefix whose energy fits ``budget``."""
    _check_group_feasible(weights, costs, budget)
    ranking = _tile_ranking(weights, costs)
    n = _largest_fitting(ranking[0].numel(), lambda m: _energy(weights, costs, _tile_masks(weights, costs, ranking, m)), budget)
    return _tile_masks(weights, costs, ranking, n)


def _hybrid_at(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost], ranking: tuple[torch.Tensor, torch.Tensor], rho: float
) -> dict[str, torch.Tensor]:
    """The top ``rho`` of the tiles, and inside them the top ``rho`` of their nonzero weights by ``|w|``."""
    tiles = _tile_masks(weights, costs, ranking, round(rho * ranking[0].numel()))
    inside = torch.cat([weights[n].detach().abs().reshape(-1).float()[tiles[n].reshape(-1)].cpu() for n in weights])
    keep = round(rho * inside.numel())
    if keep == 0:
        return {n: torch.zeros_like(t) for n, t in tiles.items()}
    threshold = float(torch.topk(inside, keep, sorted=True).values[-1])
    return {n: tiles[n] & (weights[n].detach().abs() >= threshold) for n in weights}


def hybrid_magnitude_masks(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost], budget: float
) -> dict[str, torch.Tensor]:
    """Tiles by L2 norm, then weights by magnitude, at the largest common keep ratio that fits ``budget``."""
    _check_group_feasible(weights, costs, budget)
    ranking = _tile_ranking(weights, costs)
    full = _hybrid_at(weights, costs, ranking, 1.0)
    if _energy(weights, costs, full) <= budget:
        return full
    best = {n: torch.zeros_like(m) for n, m in full.items()}
    lo, hi = 0.0, 1.0
    total = sum(int(m.sum()) for m in full.values())
    # Stop once the ratio resolves single weights: finer steps change nothing.
    while (hi - lo) * total >= 0.5:
        mid = (lo + hi) / 2
        masks = _hybrid_at(weights, costs, ranking, mid)
        if _energy(weights, costs, masks) <= budget:
            lo, best = mid, masks
        else:
            hi = mid
    return best


#: The structured versions of the baselines, by (name, structure).
STRUCTURED_BASELINES: dict[tuple[str, str], Callable[..., dict[str, torch.Tensor]]] = {
    ("magnitude", "tile"): tile_magnitude_masks,
    ("magnitude", "hybrid"): hybrid_magnitude_masks,
}
