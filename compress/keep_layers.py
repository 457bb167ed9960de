"""Structured pruning without layer collapse: every layer keeps at least one skip group.

A layer whose every tile is dropped computes nothing but its bias, and a network without a
path around that layer then answers the same for every input (chance accuracy). Dropping
whole tiles makes that easy: on ``edge-16x16`` LeNet-5's ``conv1`` is two tiles. So the
structured projections (``--structure tile|hybrid``, ECC and the magnitude baselines alike)
run with one group per layer reserved:

1. in each layer, the group the method ranks first is reserved (:data:`RANKINGS`: ECC's
   largest value / energy, magnitude's largest L2 norm), kept whole (its nonzero weights);
2. its energy moves into the layer's constant and its weights are hidden from the method,
   which projects the rest of the network onto the budget as usual;
3. if the budget cannot pay for the reserved groups, each layer reserves its cheapest group
   instead; below that, :class:`~compress.schedule.InfeasibleBudgetError` states the
   minimum (:func:`reserved_floor`).

The result is the method's own projection of everything but the reserved groups, so its
guarantees (never over budget; ECC's optimality at the energy it spends) hold for that part.

Landing (:func:`fill_groups`): the trainer's last projection of a phase must end in
[0.97, 1] x its target on the simulator. Whole tiles are coarse steps, so the longest
prefix that fits can stop well below it, the next tile of the order jumping over the
window. The landing then tops the prefix up, in the method's own ranking, with the whole
groups further down the order that still fit (a greedy fill past the first misfit).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace

import torch

from .schedule import InfeasibleBudgetError
from .structured import GroupCost, group_floor_energy, group_sums, proxy_group_energy

__all__ = ["RANKINGS", "fill_groups", "keep_every_layer", "reserved_floor"]


def _group_sums(weight: torch.Tensor, cost: GroupCost) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group: sum of w**2 and number of nonzero weights (float64, on the CPU)."""
    value, count = group_sums(weight, cost)
    return value.cpu(), count.cpu().double()


def _energies(cost: GroupCost, nonzero: torch.Tensor) -> torch.Tensor:
    """Energy each group adds when kept whole."""
    return cost.group_cost.cpu() + cost.per_weight * nonzero


#: How a method ranks the groups of a layer (higher first): from (value, energy) per group.
RANKINGS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ratio": lambda value, energy: value / energy,
    "norm": lambda value, energy: value,
}


def reserved_floor(costs: Mapping[str, GroupCost], weights: Mapping[str, torch.Tensor] | None = None) -> float:
    """Least energy with one group kept per layer: the constants plus each layer's cheapest group,
    with its nonzero ``weights`` (the exact minimum of :func:`keep_every_layer`), or with a single
    weight when no weights are given (a lower bound)."""
    cheapest = []
    for name, cost in costs.items():
        if weights is None:
            if cost.group_cost.numel():
                cheapest.append(float((cost.group_cost.min() + cost.per_weight).item()))
            continue
        _, nonzero = _group_sums(weights[name], cost)
        live = nonzero > 0
        if bool(live.any()):
            cheapest.append(float(_energies(cost, nonzero)[live].min()))
    return math.fsum([group_floor_energy(costs), *cheapest])


def _choose(weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost], rank: str, budget: float) -> dict[str, int]:
    """The reserved group of each layer (see the module docstring), or InfeasibleBudgetError."""
    chosen: dict[str, tuple[int, int]] = {}  # by rank, cheapest
    spend: dict[str, tuple[float, float]] = {}
    for name, w in weights.items():
        value, nonzero = _group_sums(w, costs[name])
        live = torch.nonzero(nonzero > 0).reshape(-1)
        if live.numel() == 0:
            continue
        energy = _energies(costs[name], nonzero)
        score = RANKINGS[rank](value[live], energy[live])
        best = int(live[torch.argmax(score)])  # argmax returns the first maximum: lowest id on ties
        cheap = int(live[torch.argmin(energy[live])])
        chosen[name] = (best, cheap)
        spend[name] = (float(energy[best]), float(energy[cheap]))
    floor = group_floor_energy(costs)
    for pick in (0, 1):
        if math.fsum([floor, *(s[pick] for s in spend.values())]) <= budget:
            return {name: c[pick] for name, c in chosen.items()}
    minimum = math.fsum([floor, *(s[1] for s in spend.values())])
    raise InfeasibleBudgetError(float(budget), minimum, proxy_group_energy(weights, costs))


def keep_every_layer(
    project_fn: Callable[..., dict[str, torch.Tensor]], rank: str
) -> Callable[[Mapping[str, torch.Tensor], Mapping[str, GroupCost], float], dict[str, torch.Tensor]]:
    """``project_fn`` (weights, group costs, budget -> masks) with one group per layer reserved.

    Parameters
    ----------
    project_fn : callable
        A structured projection on :class:`~compress.structured.GroupCost` costs.
    rank : str
        Key of :data:`RANKINGS`: how the method ranks a layer's groups.
    """
    if rank not in RANKINGS:
        raise ValueError(f"rank must be one of {', '.join(RANKINGS)}, got {rank!r}")

    def projected(
        weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost], budget: float
    ) -> dict[str, torch.Tensor]:
        reserved = _choose(weights, costs, rank, budget)
        rest, moved, whole = {}, {}, {}
        for name, w in weights.items():
            cost = costs[name]
            if name not in reserved:
                rest[name], moved[name], whole[name] = w, cost, None
                continue
            group = reserved[name]
            inside = (cost.groups == group).to(w.device)
            whole[name] = inside & (w.detach() != 0)
            nonzero = int(whole[name].sum())
            extra = float(cost.group_cost[group]) + cost.per_weight * nonzero
            rest[name] = torch.where(inside, torch.zeros_like(w), w.detach())
            moved[name] = replace(cost, constant=cost.constant + extra)
        masks = project_fn(rest, moved, budget)
        return {n: m if whole[n] is None else m | whole[n].to(m.device) for n, m in masks.items()}

    projected.rank = rank  # for fill_groups, at the landing
    return projected


def fill_groups(
    weights: Mapping[str, torch.Tensor],
    costs: Mapping[str, GroupCost],
    masks: Mapping[str, torch.Tensor],
    budget: float,
    rank: str,
) -> dict[str, torch.Tensor]:
    """``masks`` plus whole groups not yet kept, best first by ``rank``, each added while it fits.

    Every group with a nonzero weight that ``masks`` keeps nothing of is a candidate; in
    the order of :data:`RANKINGS` ``[rank]`` (ties: layer order, then group id) each is
    added, all its nonzero weights, if the proxy energy stays ``<= budget``. The result
    keeps a superset of ``masks`` and its proxy energy (:func:`proxy_group_energy`) is
    ``<= max(budget, energy of masks)``.
    """
    names = list(weights)
    candidates, tables = [], {}
    for i, name in enumerate(names):
        cost, w = costs[name], weights[name].detach()
        value, nonzero = _group_sums(w, cost)
        kept = torch.zeros(cost.group_cost.numel(), dtype=torch.bool)
        kept[cost.groups[masks[name].cpu()]] = True
        free = torch.nonzero((nonzero > 0) & ~kept).reshape(-1)
        energy = _energies(cost, nonzero)[free]
        score = RANKINGS[rank](value[free], energy)
        candidates += [(-float(sc), i, int(g), float(e)) for sc, g, e in zip(score, free, energy)]
        tables[name] = torch.zeros_like(kept)
    spent = proxy_group_energy({n: weights[n].detach() * masks[n] for n in names}, costs)
    for _, i, group, energy in sorted(candidates):
        if spent + energy <= budget:
            tables[names[i]][group] = True
            spent += energy

    def filled() -> dict[str, torch.Tensor]:
        out = {}
        for n in names:
            w = weights[n].detach()
            add = tables[n].to(w.device).index_select(0, costs[n].groups.reshape(-1).to(w.device)).view(w.shape)
            out[n] = masks[n] | (add & (w != 0))
        return out

    out = filled()
    # The running sum rounds; the exact proxy decides (drop the last additions while over).
    for _, i, group, _ in sorted(candidates, reverse=True):
        if proxy_group_energy({n: weights[n].detach() * out[n] for n in names}, costs) <= budget:
            break
        if tables[names[i]][group]:
            tables[names[i]][group] = False
            out = filled()
    return out
