"""N:M-structured projection: every layer either N:M-compressed or dense-pruned, under one energy budget.

On an N:M array (profile key ``sparsity.nm``, :mod:`energysim.model.nm`) a layer whose
weights keep at most N of every M consecutive weights along K runs compressed; any other
pattern runs dense. :class:`NMCost` holds both prices of a layer (two
:class:`~compress.projection.LayerCost`, from the two rows of the coefficient table).

**The projection** (:func:`project_nm`). With a uniform cost per weight inside a mode,
the best ``k`` weights of a mode are its ``k`` largest: in *nm* mode among the N largest
of every group (a partition matroid, so greedy by ``|w|`` is optimal), in *dense* mode
among all weights, where only a top-``k`` that violates N:M is priced dense (``k >= k0``,
the first top-``k`` with N+1 weights in one group; smaller ones run compressed and are
dominated by the nm mode's own top-``k``). Each layer's achievable (energy, value = Σ w²)
points are the two modes' prefixes; the projection takes the upper concave hull of each
layer's points from its cheapest point, and spends the budget greedily over all layers'
hull segments by value per energy, keeping the longest prefix that fits (segments with no
value are never taken). Every layer ends on a hull vertex, a concrete (mode, k).

**Guarantee.** Never over budget (the result's proxy energy, constants included, is at
most the budget). At the energy ``E`` it spends, the result is optimal among all patterns
that choose, per layer, a mode and a set of weights priced by that mode: it ends on hull
vertices, so it attains the multiple-choice knapsack's concave (Lagrangian) relaxation at
``E``, which bounds every such pattern of energy ``<= E``. ``tests/test_nm_projection.py``
checks this against an exhaustive search on tiny instances.

**Baseline** (:func:`asp_magnitude_masks`, ``--method magnitude --structure nm``): the rule
of NVIDIA's ASP, keep the N largest of every M. Layers are converted one after the other,
the largest energy saving first, until the budget is met; if every layer converted still
exceeds it, global magnitude pruning inside the N:M candidates (the pattern stays N:M) down
to the budget. An N:M layer stores every slot, so its lowest reachable energy is every layer
N:M with nothing kept (:func:`asp_floor_energy`), above the projection's floor where a
sparse format stores pruned dense layers in fewer words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .projection import InfeasibleBudgetError, LayerCost, layer_energy

__all__ = [
    "NMCost",
    "NMProjectionResult",
    "asp_floor_energy",
    "asp_magnitude_masks",
    "nm_candidates",
    "nm_energy",
    "nm_floor_energy",
    "project_nm",
    "proxy_nm_energy",
]


@dataclass(frozen=True)
class NMCost:
    """The two prices of one layer on an N:M array.

    Parameters
    ----------
    name : str
    n, m : int
        The array's N:M.
    dense : LayerCost
        The layer run dense (a pattern that violates N:M).
    nm : LayerCost
        The layer N:M-compressed.
    """

    name: str
    n: int
    m: int
    dense: LayerCost
    nm: LayerCost


@dataclass(frozen=True)
class NMProjectionResult:
    """Outcome of :func:`project_nm`: ``masks`` (bool, True = kept), their proxy ``energy`` and, per layer,
    ``compressed`` (whether the layer is N:M) and ``kept`` (weights kept)."""

    masks: dict[str, torch.Tensor]
    energy: float
    compressed: dict[str, bool]
    kept: dict[str, int]


def _rows(weight: torch.Tensor) -> np.ndarray:
    """``|w|`` as (out, K) float64: row o is one GEMM column in K order."""
    return weight.detach().abs().double().reshape(weight.shape[0], -1).cpu().numpy()


def nm_candidates(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Bool mask of the N largest ``|w|`` of every group of M consecutive weights along K (ties: lower index), nonzero only.

    Examples
    --------
    >>> nm_candidates(torch.tensor([[0.1, -3.0, 2.0, 0.0, 5.0, 0.0]]), 2, 4).int().tolist()
    [[0, 1, 1, 0, 1, 0]]
    """
    a = _rows(weight)
    out, k = a.shape
    groups = -(-k // m)
    padded = np.full((out, groups * m), -1.0)
    padded[:, :k] = a
    blocks = padded.reshape(out, groups, m)
    order = np.argsort(-blocks, axis=2, kind="stable")
    keep = np.zeros(blocks.shape, bool)
    np.put_along_axis(keep, order[:, :, :n], True, axis=2)
    keep = keep.reshape(out, groups * m)[:, :k] & (a > 0)
    return torch.from_numpy(keep).reshape(weight.shape).to(weight.device)


def _is_nm(nonzero: np.ndarray, n: int, m: int) -> bool:
    """Whether the (out, K) bool ``nonzero`` keeps at most ``n`` of every ``m`` along K."""
    out, k = nonzero.shape
    padded = np.zeros((out, -(-k // m) * m), bool)
    padded[:, :k] = nonzero
    return bool((padded.reshape(out, -1, m).sum(axis=2) <= n).all())


def nm_energy(cost: NMCost, weight: torch.Tensor) -> float:
    """Proxy energy of one layer whose nonzeros are those of ``weight``: nm-priced when they satisfy N:M."""
    nonzero = _rows(weight) > 0
    mode = cost.nm if _is_nm(nonzero, cost.n, cost.m) else cost.dense
    return layer_energy(mode, int(nonzero.sum()))


def proxy_nm_energy(weights: Mapping[str, torch.Tensor], costs: Mapping[str, NMCost]) -> float:
    """The table's energy of the nonzeros of ``weights`` (every layer of ``costs``), correctly rounded."""
    return math.fsum(nm_energy(costs[name], weights[name]) for name in costs)


@dataclass
class _Curve:
    """A layer's hull: vertex energies and values, and the (mode, k) of each vertex."""

    energy: np.ndarray
    value: np.ndarray
    dense: np.ndarray  # bool per vertex: dense mode (else nm)
    k: np.ndarray


def _prefix_energy(cost: LayerCost, k: np.ndarray) -> np.ndarray:
    """``layer_energy(cost, k)`` for an array of counts."""
    inside = k if cost.breakpoint is None else np.minimum(k, cost.breakpoint)
    return cost.constant + cost.per_weight * inside + cost.per_weight_overflow * (k - inside)


def _first_violation(order: np.ndarray, group: np.ndarray, n: int) -> int:
    """Smallest k such that the first k of ``order`` put n + 1 items in one group (len + 1: never)."""
    g = group[order]
    by_group = np.argsort(g, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(g[by_group])) + 1]
    rank = np.arange(g.size) - np.repeat(starts, np.diff(np.r_[starts, g.size]))
    within = np.empty(g.size, np.int64)
    within[by_group] = rank
    over = np.flatnonzero(within >= n)
    return int(over[0]) + 1 if over.size else g.size + 1


def _upper_hull(energy: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Indices of the upper concave hull of the points, from the cheapest (most valuable on ties) rightwards."""
    order = np.lexsort((-value, energy))
    e, v = energy[order].tolist(), value[order].tolist()
    hull: list[int] = []
    best = -math.inf
    for i in range(len(e)):
        if hull and v[i] <= best:
            continue  # no more value for at least as much energy
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b is under the chord a -> i (or on it): drop it.
            if (v[b] - v[a]) * (e[i] - e[a]) <= (v[i] - v[a]) * (e[b] - e[a]):
                hull.pop()
            else:
                break
        hull.append(i)
        best = v[i]
    return order[np.asarray(hull, np.int64)]


def _layer_curve(weight: torch.Tensor, cost: NMCost) -> tuple[_Curve, np.ndarray, np.ndarray]:
    """The layer's hull, its weights' |w| order (dense mode) and its candidates' order (nm mode)."""
    a = _rows(weight).reshape(-1)
    k_size = _rows(weight).shape[1]
    nonzero = np.flatnonzero(a > 0)
    dense_order = nonzero[np.lexsort((nonzero, -a[nonzero]))]
    cand = np.flatnonzero(nm_candidates(weight, cost.n, cost.m).cpu().numpy().reshape(-1))
    nm_order = cand[np.lexsort((cand, -a[cand]))]
    squares_dense = np.r_[0.0, np.cumsum(a[dense_order] ** 2)]
    squares_nm = np.r_[0.0, np.cumsum(a[nm_order] ** 2)]
    k_nm = np.arange(nm_order.size + 1)
    group = (dense_order // k_size) * (-(-k_size // cost.m)) + (dense_order % k_size) // cost.m
    k0 = _first_violation(np.arange(dense_order.size), group, cost.n)
    k_dense = np.arange(min(k0, dense_order.size + 1), dense_order.size + 1)
    energy = np.r_[_prefix_energy(cost.nm, k_nm), _prefix_energy(cost.dense, k_dense)]
    value = np.r_[squares_nm, squares_dense[k_dense]]
    dense = np.r_[np.zeros(k_nm.size, bool), np.ones(k_dense.size, bool)]
    ks = np.r_[k_nm, k_dense]
    hull = _upper_hull(energy, value)
    return _Curve(energy[hull], value[hull], dense[hull], ks[hull]), dense_order, nm_order


def nm_floor_energy(costs: Mapping[str, NMCost], weights: Mapping[str, torch.Tensor]) -> float:
    """The least proxy energy of any pattern :func:`project_nm` can return for ``weights`` (each layer's cheapest point)."""
    return math.fsum(float(_layer_curve(weights[name], costs[name])[0].energy[0]) for name in costs)


def asp_floor_energy(costs: Mapping[str, NMCost]) -> float:
    """The least proxy energy :func:`asp_magnitude_masks` reaches: every layer N:M with no weight kept."""
    return math.fsum(c.nm.constant for c in costs.values())


def _masks_at(weights: Mapping[str, torch.Tensor], curves: dict, chosen: Mapping[str, int]) -> tuple[dict, dict, dict]:
    """Masks, modes and kept counts of every layer at hull vertex ``chosen[name]``."""
    masks, compressed, kept = {}, {}, {}
    for name, weight in weights.items():
        curve, dense_order, nm_order = curves[name]
        j = chosen[name]
        k = int(curve.k[j])
        order = dense_order if curve.dense[j] else nm_order
        flat = np.zeros(weight.numel(), bool)
        flat[order[:k]] = True
        masks[name] = torch.from_numpy(flat).reshape(weight.shape).to(weight.device)
        compressed[name] = not bool(curve.dense[j])
        kept[name] = k
    return masks, compressed, kept


def project_nm(weights: Mapping[str, torch.Tensor], costs: Mapping[str, NMCost], budget: float) -> NMProjectionResult:
    """Project ``weights`` onto ``energy <= budget`` on an N:M array (see the module docstring).

    Parameters
    ----------
    weights : mapping of str to torch.Tensor
        Per layer (torch-shaped; dim 0 the output channels, K the rest).
    costs : mapping of str to NMCost
        Same keys.
    budget : float

    Returns
    -------
    NMProjectionResult

    Raises
    ------
    InfeasibleBudgetError
        If the budget is below every layer's cheapest point.

    Examples
    --------
    >>> c = NMCost("fc", 2, 4, LayerCost("fc", 1.0, 1.0, None, 4.0), LayerCost("fc", 1.0, 1.0, None, 2.0))
    >>> r = project_nm({"fc": torch.tensor([[4.0, 3.0, 2.0, 1.0]])}, {"fc": c}, 5.0)
    >>> r.masks["fc"].int().tolist(), r.compressed, r.energy
    ([[1, 1, 0, 0]], {'fc': True}, 4.0)
    """
    names = list(costs)
    curves = {name: _layer_curve(weights[name], costs[name]) for name in names}
    floor = math.fsum(float(curves[n][0].energy[0]) for n in names)
    if budget < floor:
        dense = math.fsum(float(curves[n][0].energy[-1]) for n in names)
        raise InfeasibleBudgetError(budget, floor, dense)
    slopes, steps, owner, index = [], [], [], []
    for i, name in enumerate(names):
        curve = curves[name][0]
        d_energy, d_value = np.diff(curve.energy), np.diff(curve.value)
        slopes.append(d_value / d_energy)
        steps.append(d_energy)
        owner.append(np.full(d_energy.size, i))
        index.append(np.arange(1, d_energy.size + 1))
    slope, step, owner, index = (np.concatenate(x) if x else np.zeros(0) for x in (slopes, steps, owner, index))
    order = np.lexsort((index, owner, -slope))
    # Longest prefix whose energy fits, by exact (correctly rounded) sums; the cumulative sum only brackets it.
    spent = floor + np.cumsum(step[order])
    taken = int(np.searchsorted(spent, budget, side="right"))

    def energy_of(count: int) -> tuple[float, dict[str, int]]:
        """Proxy energy and per-layer hull vertex after the first ``count`` segments."""
        vertex = np.zeros(len(names), np.int64)
        np.maximum.at(vertex, owner[order[:count]].astype(np.int64), index[order[:count]].astype(np.int64))
        at = {n: int(vertex[i]) for i, n in enumerate(names)}
        return math.fsum(float(curves[n][0].energy[at[n]]) for n in names), at

    while taken > 0 and energy_of(taken)[0] > budget:
        taken -= 1
    while taken < order.size and slope[order[taken]] > 0 and energy_of(taken + 1)[0] <= budget:
        taken += 1
    while taken > 0 and slope[order[taken - 1]] <= 0:
        taken -= 1  # segments without value are not worth their energy
    energy, chosen = energy_of(taken)
    masks, compressed, kept = _masks_at(weights, curves, chosen)
    return NMProjectionResult(masks, energy, compressed, kept)


def asp_magnitude_masks(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, NMCost], budget: float
) -> dict[str, torch.Tensor]:
    """The ASP baseline at ``budget`` (see the module docstring): N:M magnitude pruning, layer by layer."""
    names = list(costs)
    candidates = {n: nm_candidates(weights[n], costs[n].n, costs[n].m) for n in names}
    current = {n: weights[n].detach() != 0 for n in names}

    def energy(masks: Mapping[str, torch.Tensor]) -> float:
        return proxy_nm_energy({n: masks[n].to(torch.float64) for n in names}, costs)

    saving = {n: nm_energy(costs[n], current[n].double()) - nm_energy(costs[n], candidates[n].double()) for n in names}
    masks = dict(current)
    if energy(masks) <= budget:
        return masks
    for name in sorted(names, key=lambda n: (-saving[n], names.index(n))):
        masks[name] = candidates[name]
        if energy(masks) <= budget:
            return masks
    # Every layer N:M: global magnitude inside the candidates, the longest |w| prefix that fits.
    values = torch.cat([(weights[n].detach().abs() * candidates[n]).flatten().double().cpu() for n in names])
    owner = torch.cat([torch.full((weights[n].numel(),), i) for i, n in enumerate(names)])
    flat_index = torch.cat([torch.arange(weights[n].numel()) for n in names])
    ranked = torch.argsort(values, descending=True, stable=True)
    ranked = ranked[values[ranked] > 0]

    def masks_of(count: int) -> dict[str, torch.Tensor]:
        out = {n: torch.zeros(weights[n].numel(), dtype=torch.bool) for n in names}
        for i, n in enumerate(names):
            mine = ranked[:count][owner[ranked[:count]] == i]
            out[n][flat_index[mine]] = True
        return {n: out[n].reshape(weights[n].shape).to(weights[n].device) for n in names}

    lo, hi = 0, int(ranked.numel())
    if asp_floor_energy(costs) > budget:
        raise InfeasibleBudgetError(budget, asp_floor_energy(costs), energy(current))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if energy(masks_of(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return masks_of(lo)
