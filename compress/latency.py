"""Projection under an energy budget *and* a latency (cycles) budget.

The coefficient table prices a pattern twice, with the same skip groups
(:mod:`energysim.coeffs`): energy ``E(S) = constant + sum of group costs + per_weight * nnz``
and cycles ``C(S) = cycles_constant + sum of group cycles`` over the kept groups ``S``
(a pruned weight inside a kept group saves energy, never cycles: cycles only fall when
a whole fold is skipped). Both are :class:`~compress.structured.GroupCost` s, so any
single-budget projection ``project_fn(weights, costs, budget)`` (ECC's tile and hybrid
knapsacks, the magnitude baselines) can be driven by them. :func:`project_both` keeps
the weights of largest value with ``E <= E_max`` and ``C <= C_max``:

1. **Energy alone.** Project on the energy budget; if its cycles fit, that is the answer.
2. **Cycles alone** (structured costs). Project on the cycle budget; if its energy fits,
   that is the answer. So with one budget slack the result *is* the single-budget
   projection (same masks, bit for bit).
3. **Both bind: Lagrangian.** For a multiplier ``lam >= 0`` the combined cost
   ``c_energy / E_max + lam * c_cycles / C_max`` is again a GroupCost, and any pattern
   meeting both budgets has combined cost ``<= 1 + lam``. ``lam`` is found by bisection
   (geometric, :data:`_LAMBDA_STEPS` projections) between the point where the combined
   projection at ``1 + lam`` still breaks the cycle budget (``lam`` too small) and the
   point where it breaks the energy budget (too large).
4. **Repair.** At the last ``lam`` on each side the combined budget ``b`` is shrunk by
   bisection (:data:`_REPAIR_STEPS` projections) to the largest one whose projection meets
   both budgets; then (ECC) whole dropped groups are added back, best value per combined
   cost first, while both budgets still hold (a fill of what the prefix left unspent), and
   the better of the two sides (value ``sum w**2``) is kept.

What it guarantees
    * Never over either budget: every returned pattern has been priced exactly (the
      correctly rounded sums of :func:`~compress.structured.proxy_group_energy`) on both
      costs, and a pattern over either is never returned.
    * With one budget slack: exactly the single-budget projection (steps 1, 2).
    * For ECC's nested projections, a pattern on the combined order at ``lam``: the prefix
      is optimal for the combined cost at what it spends (the knapsack guarantee of
      :mod:`compress.structured`), hence for any pair of budgets it spends exactly; the
      gap to the two-budget optimum is what the repair leaves unspent. Not an exact
      two-constraint knapsack (NP-hard); ``tests/test_latency.py`` measures the gap against
      brute force on tiny instances.
    * For the magnitude baselines, whose order does not depend on the costs, the repair
      finds the longest ranked prefix meeting both budgets ("stop where both proxies meet
      their budgets").

Unstructured projections (``structure="none"``, per-weight :class:`~compress.projection.LayerCost`)
have no group items to combine: steps 2 and 3 are skipped and the repair shrinks the energy
budget until the cycles (of the groups the pattern leaves non-empty) fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from .nm import NMCost, proxy_nm_energy
from .projection import LayerCost, nonzero_counts, proxy_energy
from .schedule import InfeasibleBudgetError
from .structured import GroupCost, proxy_group_energy

__all__ = [
    "InfeasibleLatencyError",
    "LatencyBudget",
    "combined_costs",
    "pattern_proxy",
    "project_both",
]

# Geometric bisection steps on the multiplier, and bisection steps of the repair.
_LAMBDA_STEPS = 12
_REPAIR_STEPS = 16
# The multiplier's search range: cycles count from weightless to dominant.
_LAMBDA_RANGE = (1e-4, 1e4)


class InfeasibleLatencyError(ValueError):
    """The latency budget is below the cycles of the network with every prunable weight pruned.

    Attributes
    ----------
    budget : float
        The latency budget asked for, in cycles.
    min_cycles : float
        The minimum achievable cycles.
    dense_cycles : float
        The dense model's cycles.
    """

    def __init__(self, budget: float, min_cycles: float, dense_cycles: float) -> None:
        self.budget, self.min_cycles, self.dense_cycles = float(budget), float(min_cycles), float(dense_cycles)
        share = f"{min_cycles / dense_cycles:.4g}" if dense_cycles > 0 else "n/a"
        super().__init__(
            f"latency budget {budget:.6g} cycles ({budget / dense_cycles:.4g} of dense) is below the minimum "
            f"achievable {min_cycles:.6g} cycles ({share} of the dense {dense_cycles:.6g}: every prunable tile "
            "skipped, fixed cycles and stalls remain)"
        )


@dataclass(frozen=True)
class LatencyBudget:
    """A cycle budget and the per-layer cycle costs it is measured with.

    Attributes
    ----------
    cycles : float
        The budget, in cycles (of the coefficient table's proxy).
    costs : dict of str to GroupCost
        Per layer: ``group_cost`` the cycles of each skip group, ``per_weight`` 0,
        ``constant`` the cycles with every group skipped.
    """

    cycles: float
    costs: Mapping[str, GroupCost]


def pattern_proxy(weights: Mapping[str, torch.Tensor], costs: Mapping[str, LayerCost | GroupCost | NMCost]) -> float:
    """The proxy energy (or cycles) of the nonzeros of ``weights`` under ``costs`` (per-weight, per-group or N:M)."""
    if all(isinstance(c, GroupCost) for c in costs.values()):
        return proxy_group_energy(weights, costs)
    if all(isinstance(c, NMCost) for c in costs.values()):
        return proxy_nm_energy(weights, costs)
    return proxy_energy(nonzero_counts(weights), costs)


def combined_costs(
    energy: Mapping[str, GroupCost], cycles: Mapping[str, GroupCost], energy_budget: float, cycle_budget: float,
    lam: float,
) -> dict[str, GroupCost]:
    """The Lagrangian cost ``c_energy / energy_budget + lam * c_cycles / cycle_budget`` of every layer.

    >>> one = lambda v: torch.tensor([v], dtype=torch.float64)
    >>> e = {"fc": GroupCost("fc", torch.tensor([0, 0]), one(4.0), 1.0, 2.0)}
    >>> c = {"fc": GroupCost("fc", torch.tensor([0, 0]), one(10.0), 0.0, 5.0)}
    >>> m = combined_costs(e, c, 10.0, 20.0, 2.0)["fc"]
    >>> m.group_cost.tolist(), m.per_weight, m.constant
    ([1.4], 0.1, 0.7)
    """
    out = {}
    for name, e in energy.items():
        c = cycles[name]
        out[name] = GroupCost(
            name=name,
            groups=e.groups,
            group_cost=e.group_cost / energy_budget + (lam / cycle_budget) * c.group_cost.to(e.group_cost.device),
            per_weight=float(e.per_weight) / energy_budget + lam * float(c.per_weight) / cycle_budget,
            constant=float(e.constant) / energy_budget + lam * float(c.constant) / cycle_budget,
        )
    return out


def _value(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> float:
    """Sum of w**2 over the kept weights (float64)."""
    return math.fsum(
        float(weights[n].detach().double().square().mul(masks[n].to(weights[n].device)).sum()) for n in masks
    )


def project_both(
    project_fn: Callable[..., dict[str, torch.Tensor]],
    weights: Mapping[str, torch.Tensor],
    costs: Mapping[str, LayerCost | GroupCost],
    budget: float,
    latency: LatencyBudget,
    *,
    search: bool = True,
) -> dict[str, torch.Tensor]:
    """Masks meeting both the energy ``budget`` and ``latency``, by the method of the module docstring.

    Parameters
    ----------
    project_fn : callable
        A single-budget projection ``(weights, costs, budget) -> masks`` whose kept set grows
        with the budget (every method of :mod:`compress.pruner`).
    weights : mapping of str to torch.Tensor
    costs : mapping of str to LayerCost or GroupCost
        The energy costs (the kind ``project_fn`` takes).
    budget : float
        Energy budget.
    latency : LatencyBudget
    search : bool, default True
        Search the multiplier (step 3); False repairs at ``lam = 1`` only (enough for a
        projection whose order does not depend on the costs, such as magnitude).

    Returns
    -------
    dict of str to torch.Tensor
        Bool masks with proxy energy ``<= budget`` and proxy cycles ``<= latency.cycles``.

    Raises
    ------
    InfeasibleBudgetError
        From ``project_fn``, for an energy budget below its floor.
    InfeasibleLatencyError
        If even the sparsest pattern ``project_fn`` returns breaks the cycle budget.
    """
    limit = float(latency.cycles)

    def fits(masks: Mapping[str, torch.Tensor]) -> tuple[bool, bool]:
        return pattern_proxy(masks, costs) <= budget, pattern_proxy(masks, latency.costs) <= limit

    masks = project_fn(weights, costs, budget)
    if fits(masks)[1]:
        return masks
    structured = all(isinstance(c, GroupCost) for c in costs.values())
    if not structured:
        return _repair(lambda b: project_fn(weights, costs, b), _floor(costs), budget, fits, latency, weights)
    try:
        alone = project_fn(weights, latency.costs, limit)
    except InfeasibleBudgetError as exc:
        dense = pattern_proxy({n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}, latency.costs)
        raise InfeasibleLatencyError(limit, exc.min_energy, dense) from None
    if fits(alone)[0]:
        return alone

    def combined(lam: float) -> Callable[[float], dict[str, torch.Tensor]]:
        priced = combined_costs(costs, latency.costs, budget, limit, lam)
        return lambda b: project_fn(weights, priced, b)

    sides = [1.0]
    if search:
        lo, hi = _LAMBDA_RANGE
        low_side, high_side = None, None
        for _ in range(_LAMBDA_STEPS):
            lam = math.sqrt(lo * hi)
            energy_ok, cycles_ok = fits(combined(lam)(1.0 + lam))
            if energy_ok and cycles_ok:
                low_side = high_side = lam
                break
            if cycles_ok:  # over on energy: cycles weigh too much
                hi, high_side = lam, lam
            else:
                lo, low_side = lam, lam
        sides = sorted({s for s in (low_side, high_side) if s is not None}) or [1.0]
    best, best_value = None, -1.0
    for lam in sides:
        priced = combined_costs(costs, latency.costs, budget, limit, lam)
        masks = _repair(combined(lam), _floor(priced), 1.0 + lam, fits, latency, weights)
        if search:
            masks = _fill(masks, weights, costs, budget, latency, lam, fits)
        value = _value(weights, masks)
        if value > best_value:
            best, best_value = masks, value
    return best


def _fill(
    masks: dict[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor],
    costs: Mapping[str, GroupCost],
    budget: float,
    latency: LatencyBudget,
    lam: float,
    fits: Callable[[Mapping[str, torch.Tensor]], tuple[bool, bool]],
) -> dict[str, torch.Tensor]:
    """Add whole dropped groups (their nonzero weights), best value per combined cost first, while both budgets hold."""
    energy_left = budget - pattern_proxy(masks, costs)
    cycles_left = latency.cycles - pattern_proxy(masks, latency.costs)
    candidates = []
    for name, w in weights.items():
        e, c = costs[name], latency.costs[name]
        groups = e.groups.reshape(-1).cpu()
        flat = w.detach().reshape(-1).cpu()
        nonzero = flat != 0
        kept = torch.zeros(e.group_cost.numel(), dtype=torch.bool)
        kept[groups[masks[name].reshape(-1).cpu()]] = True
        value = torch.zeros(e.group_cost.numel(), dtype=torch.float64).index_add_(0, groups, flat.double().square())
        count = torch.bincount(groups[nonzero], minlength=e.group_cost.numel()).double()
        d_energy = e.group_cost.cpu() + e.per_weight * count
        d_cycles = c.group_cost.cpu() + c.per_weight * count
        for g in torch.nonzero(~kept & (value > 0)).reshape(-1).tolist():
            score = float(value[g]) / (float(d_energy[g]) / budget + lam * float(d_cycles[g]) / latency.cycles)
            candidates.append((-score, name, g, float(d_energy[g]), float(d_cycles[g])))
    candidates.sort()
    added = {name: [] for name in weights}
    for _, name, g, d_energy, d_cycles in candidates:
        if d_energy <= energy_left and d_cycles <= cycles_left:
            energy_left -= d_energy
            cycles_left -= d_cycles
            added[name].append(g)
    if not any(added.values()):
        return masks
    filled = dict(masks)
    for name, ids in added.items():
        if ids:
            groups = costs[name].groups.to(masks[name].device)
            inside = torch.isin(groups, torch.tensor(ids, device=groups.device))
            filled[name] = masks[name] | (inside & (weights[name].detach() != 0))
    return filled if all(fits(filled)) else masks  # the sums above are not correctly rounded: check exactly


def _floor(costs: Mapping[str, LayerCost | GroupCost]) -> float:
    """The least budget a projection accepts for ``costs`` (the sum of the constants)."""
    return math.fsum(float(c.constant) for c in costs.values())


def _repair(
    at: Callable[[float], dict[str, torch.Tensor]],
    low: float,
    high: float,
    fits: Callable[[Mapping[str, torch.Tensor]], tuple[bool, bool]],
    latency: LatencyBudget,
    weights: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The projection at the largest budget in [low, high] meeting both budgets (bisection)."""
    masks = at(high)
    if all(fits(masks)):
        return masks
    best = None
    lo, hi = low, high
    for _ in range(_REPAIR_STEPS):
        mid = (lo + hi) / 2
        try:
            masks = at(mid)
        except InfeasibleBudgetError as exc:  # a reservation (one tile per layer) lifts the floor
            lo = max(lo, exc.min_energy)
            continue
        if all(fits(masks)):
            lo, best = mid, masks
        else:
            hi = mid
    if best is None:
        try:
            masks = at(lo)
        except InfeasibleBudgetError as exc:
            masks = at(exc.min_energy)
        if not all(fits(masks)):  # the sparsest pattern of the projection: its cycles are the minimum
            dense = pattern_proxy({n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}, latency.costs)
            raise InfeasibleLatencyError(latency.cycles, pattern_proxy(masks, latency.costs), dense)
        best = masks
    return best
