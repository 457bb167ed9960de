"""Energy projection for accelerators that skip all-zero weight tiles.

A systolic array that skips a weight tile ("group") whose weights are all
zero pays, for fixed input masks, per layer

    E = constant + sum of group_cost[g] over groups g keeping a nonzero weight
                 + per_weight * (number of nonzero weights).

:func:`project_groups` keeps as much of ``sum w**2`` as it can while
``sum of E <= budget``, greedily over all layers at once, in one of two modes.

Mode "tile" (a 0/1 knapsack over groups)
    Items are whole groups: a group is worth ``V_g = sum of w**2`` over it and
    costs ``group_cost[g] + per_weight * nnz_g``; a kept group keeps all its
    nonzero weights. Groups are ordered by ``V_g / cost_g`` descending (ties:
    layer order, then group id) and the longest prefix that fits is kept.

Mode "hybrid" (a fixed-charge knapsack: groups in or out, weights inside kept groups)
    In group g (charge ``F = group_cost[g]``, ``c = per_weight``) rank the
    weights by ``|w|`` descending (ties: lower flat index first). Keeping the
    top ``j`` costs ``F + j*c`` and is worth ``V_j`` (their ``sum w**2``); any
    other ``j`` weights are worth no more. Draw the points ``(F + j*c, V_j)``
    and the origin (group dropped). Their upper concave hull from the origin is:

    * a first segment, the *bundle*, to ``j* = argmax_j V_j / (F + j*c)``
      (the largest such ``j``), of slope ``r* = V_j* / (F + j* c)``; then
    * one segment per remaining weight in rank order, of slope ``w**2 / c``.

    Proof (the mediant argument). Write ``D_j = F + j*c`` and
    ``a_j = w_(j)**2 / c``, non-increasing in ``j``. Going from ``j - 1`` to
    ``j`` adds ``c`` to the cost and ``c*a_j`` to the value, so ``V_j / D_j`` is
    the mediant of ``V_{j-1} / D_{j-1}`` and ``a_j`` and lies between them:
    ``V_j / D_j > V_{j-1} / D_{j-1}`` exactly when ``a_j > V_{j-1} / D_{j-1}``.
    Hence, once the ratio drops (``a_{j+1} < V_j / D_j``), the new ratio lies
    in ``(a_{j+1}, V_j / D_j)`` and ``a_{j+2} <= a_{j+1}`` keeps it dropping:
    the ratio rises (weakly) up to ``j*`` and falls strictly after it, so
    ``j*`` is a global maximum. The weights up to ``j*`` have ``a_j >= r*``
    (``r*`` is the mediant of ``V_{j*-1} / D_{j*-1} <= a_j*`` and ``a_j*``),
    those after it ``a_j < r*`` (as ``V_{j*+1} / D_{j*+1} < r*``), so the
    bundle is exactly ``{w : w**2 / c >= r*}``; ``j*`` largest puts the
    weights with ``w**2 / c == r*`` in it. As the ``a_j`` after ``j*`` do not
    increase and start below ``r*``, the chain from the origin through ``j*``
    and then one weight at a time has non-increasing slopes: it is concave
    and lies on or above every point, i.e. it is the hull. With ``c == 0``
    the ratio ``V_j / F`` only grows, so the bundle holds every nonzero
    weight of the group.

    All segments of all groups of all layers are ordered by slope descending
    (ties: bundles before single weights, then layer order, group id, rank)
    and the longest prefix that fits is kept. A group's single weights always
    follow its bundle, so every prefix is a real pattern.

What each mode guarantees
    * Never over budget: the energy of the kept pattern, constants included,
      is ``<= budget``, and the next item of the order would not fit.
      ``result.energy`` is exactly ``proxy_group_energy(w * mask, costs)``:
      energies are correctly rounded sums (:func:`math.fsum`), so the search
      is exact, not a cumulative sum with rounding drift.
    * Exact optimum at the energy it spends, ``E = result.energy``. Tile: a
      ratio-ordered prefix of whole items is the fractional-knapsack optimum at
      capacity ``E`` with no item split, so no set of whole groups of energy
      ``<= E`` keeps more. Hybrid: the prefix ends on hull vertices in every
      group, so its value equals the concave-hull (Lagrangian) relaxation at
      ``E``, which bounds the value of every pattern (any weights, any groups)
      of energy ``<= E``.
    * Not the optimum at the *budget*: the energy left unspent is less than
      the next item's cost, and the optimum at the budget is at most the kept
      value plus the next item's value (the relaxation at the budget takes a
      fraction of it). Across a network's many groups that is a sliver; on a
      tiny instance whose first item (say a large atomic bundle) does not fit,
      nothing is kept although part of that group would fit.
    * Nested: the order does not depend on the budget, so a larger budget keeps
      a superset of the weights and never less value.
    * Idempotent: masks are True only on kept nonzero weights (and, in hybrid
      mode, only on weights whose ``w**2 / c`` is positive in the working
      precision), so projecting ``w * mask`` at the same budget returns the
      same masks.

How it is computed
    Group values and counts are ``bincount`` passes; the tile order is a sort
    of the groups. In hybrid mode ``r*`` of every group is found at once by
    Dinkelbach iteration ``t <- V(t) / (F + c n(t))``, where ``V(t), n(t)`` are
    the value and count of the group's weights with ``w**2 / c >= t``:
    ``t`` never falls and the set only shrinks, so it stops (after a few passes
    in practice; at most one per weight of the largest group) when no weight
    leaves, at the fixed point ``{w**2 / c >= t} = bundle``, ``t = r*``. A
    weight of group g is then kept at slope threshold ``t`` iff
    ``min(r*_g, w**2 / c) >= t``, so the prefix is found with the selection of
    :mod:`compress.projection` (counting passes, no full sort), the bundles of
    all layers forming one extra, pre-sorted item list.

    On the CPU the group sums and the bundles are numba kernels
    (:mod:`compress._kernels`): the bundles group by group, each group's
    iteration in cache, on a counting-sort order of the group map that is
    cached while the ``groups`` tensor lives unchanged (training projects with
    the same map every time), in parallel over groups for large layers. On
    other devices they are torch passes over all layers at once. Both add the
    float64 squares of a group in ascending index order and make the same
    divisions and roundings, so the masks are the same bit for bit (tested).

    Precision: group values, bundle slopes and tile ratios are float64;
    per-weight slopes ``w**2 / c`` are float32 (float64 if any weight is
    float64), as in :func:`compress.projection.project`. Bundle slopes are
    compared with float32 slopes as real numbers. On CUDA, ``bincount`` adds in
    a non-deterministic order, so near-ties may resolve differently between runs.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from ._kernels import group_order, hybrid_bundles, hybrid_bundles_parallel, mark_kept
from ._kernels import group_sums as kernel_group_sums
from .projection import (
    _INT_VIEW,
    _check_keys,
    _check_tensor,
    _is_real,
    _select_prefix,
    _smallest_true,
    _working_dtype,
)
from .schedule import InfeasibleBudgetError

__all__ = [
    "group_sums",
    "nonzero_groups",
    "GroupCost",
    "GroupProjectionResult",
    "InfeasibleBudgetError",
    "group_energy",
    "group_floor_energy",
    "project_groups",
    "proxy_group_energy",
]

_MODES = ("tile", "hybrid")

# Bits per limb of the exact prefix sums of group costs: a cumulative sum of
# 2**31 limbs of 32 bits still fits an int64.
_LIMB_BITS = 32
_HALF = (1 << _LIMB_BITS) - 1
# Weights per chunk when float64 squares are summed on CPU (8 MiB of float64).
_CHUNK = 1 << 20
# Dinkelbach passes compact their candidates when more than 1 / _COMPACT_SHARE of them leave.
_COMPACT_SHARE = 8
# Devices whose layers find their bundles with the numba kernels (the others with torch).
_KERNEL_DEVICES = ("cpu",)
# Layers with more weights than this find their bundles with the parallel kernel.
_PARALLEL_WEIGHTS = 1 << 16


@dataclass(frozen=True, eq=False)
class GroupCost:
    """Energy cost of one layer whose all-zero weight groups (tiles) are skipped.

    Compared by identity (``eq=False``): the fields are tensors.

    Parameters
    ----------
    name : str
        Layer name, used in messages.
    groups : torch.Tensor
        int64, shaped like the layer's weight: the group id of every weight,
        ``0 <= id < len(group_cost)``. Ids used by no weight are allowed (such
        groups are never kept). Keep it on the weight's device: it is moved
        there at every projection otherwise.
    group_cost : torch.Tensor
        float64, 1-D, every entry finite and > 0: paid once by a group that
        keeps any nonzero weight.
    per_weight : float
        Paid per kept (nonzero) weight; finite, >= 0.
    constant : float
        Energy of the layer that does not depend on its weights; finite, >= 0.

    Raises
    ------
    TypeError
        If a tensor has the wrong type or dtype, or ``name`` is not a str.
    ValueError
        If a number or group id is out of range.

    Examples
    --------
    >>> cost = GroupCost("fc", torch.tensor([0, 0, 1, 1]), torch.tensor([2.0, 3.0], dtype=torch.float64), 0.5, 10.0)
    >>> group_energy(cost, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    12.5
    """

    name: str
    groups: torch.Tensor
    group_cost: torch.Tensor
    per_weight: float
    constant: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"GroupCost name must be a str, got {type(self.name).__name__}")
        where = f"GroupCost {self.name!r}"
        if not isinstance(self.groups, torch.Tensor) or self.groups.dtype != torch.int64:
            got = self.groups.dtype if isinstance(self.groups, torch.Tensor) else type(self.groups).__name__
            raise TypeError(f"{where}: groups must be an int64 torch.Tensor, got {got}")
        cost = self.group_cost
        if not isinstance(cost, torch.Tensor) or cost.dtype != torch.float64:
            got = cost.dtype if isinstance(cost, torch.Tensor) else type(cost).__name__
            raise TypeError(f"{where}: group_cost must be a float64 torch.Tensor, got {got}")
        if cost.dim() != 1:
            raise ValueError(f"{where}: group_cost must be 1-D, got shape {tuple(cost.shape)}")
        if cost.numel() and not bool((torch.isfinite(cost) & (cost > 0)).all()):
            bad = cost[~(torch.isfinite(cost) & (cost > 0))][0].item()
            raise ValueError(f"{where}: group_cost entries must be finite numbers > 0, got {bad!r}")
        if self.groups.numel():
            low, high = (int(v) for v in torch.aminmax(self.groups))
            if low < 0 or high >= cost.numel():
                raise ValueError(
                    f"{where}: groups must be ids in [0, {cost.numel()}) (len(group_cost)), "
                    f"got ids from {low} to {high}"
                )
        if not _is_real(self.per_weight) or not math.isfinite(self.per_weight) or self.per_weight < 0:
            raise ValueError(f"{where}: per_weight must be a finite number >= 0, got {self.per_weight!r}")
        if not _is_real(self.constant) or not math.isfinite(self.constant) or self.constant < 0:
            raise ValueError(f"{where}: constant must be a finite number >= 0, got {self.constant!r}")


@dataclass(frozen=True)
class GroupProjectionResult:
    """Outcome of :func:`project_groups`.

    Attributes
    ----------
    masks : dict of str to torch.Tensor
        Bool tensors shaped like each weight, on the weight's device; True only
        on kept nonzero weights.
    energy : float
        Energy of the kept pattern, constants included; never above the budget.
        Equal to ``proxy_group_energy({n: w * masks[n]}, costs)``.
    kept : dict of str to int
        Nonzero weights kept per layer.
    kept_groups : dict of str to int
        Groups keeping at least one weight, per layer.
    """

    masks: dict[str, torch.Tensor]
    energy: float
    kept: dict[str, int]
    kept_groups: dict[str, int]


def group_energy(cost: GroupCost, mask_or_weights: torch.Tensor) -> float:
    """Energy of one layer whose nonzero weights are the nonzeros of ``mask_or_weights``.

    Parameters
    ----------
    cost : GroupCost
        The layer's cost model.
    mask_or_weights : torch.Tensor
        A bool mask or floating-point weights (without NaN), shaped like ``cost.groups``.

    Returns
    -------
    float
        ``constant + per_weight * nnz + sum of group_cost over groups with a
        nonzero``, correctly rounded.

    Raises
    ------
    TypeError
        If ``cost`` is not a GroupCost or the tensor neither bool nor floating.
    ValueError
        If the shape differs from ``cost.groups`` or a weight is NaN.

    Examples
    --------
    >>> charges = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    >>> cost = GroupCost("fc", torch.tensor([[0, 1], [2, 2]]), charges, 0.25, 3.0)
    >>> group_energy(cost, torch.tensor([[True, False], [True, True]]))
    8.75
    """
    if not isinstance(cost, GroupCost):
        raise TypeError(f"cost must be a GroupCost, got {type(cost).__name__}")
    tensor = mask_or_weights
    if not isinstance(tensor, torch.Tensor) or not (tensor.dtype == torch.bool or tensor.is_floating_point()):
        got = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise TypeError(
            f"mask_or_weights for layer {cost.name!r} must be a bool or floating-point torch.Tensor, got {got}"
        )
    _check_shape(cost, tensor, "mask_or_weights")
    if tensor.is_floating_point():
        _check_tensor(tensor, cost.name, "mask_or_weights", allow_inf=True)
    nonzero = tensor.detach().reshape(-1) != 0
    groups = cost.groups.reshape(-1).to(nonzero.device)
    touched = torch.zeros(cost.group_cost.numel(), dtype=torch.bool, device=nonzero.device)
    touched[groups[nonzero]] = True
    charges = cost.group_cost.to(touched.device)[touched].tolist()
    return math.fsum([float(cost.constant), float(cost.per_weight) * int(nonzero.sum()), *charges])


def group_floor_energy(costs: Mapping[str, GroupCost]) -> float:
    """Energy with every weight pruned: the sum of the layer constants.

    Examples
    --------
    >>> one = torch.ones(1, dtype=torch.float64)
    >>> group_floor_energy({"a": GroupCost("a", torch.zeros(2, dtype=torch.int64), one, 1.0, 2.5),
    ...                     "b": GroupCost("b", torch.zeros(3, dtype=torch.int64), one, 1.0, 4.0)})
    6.5
    """
    return math.fsum(float(cost.constant) for cost in costs.values())


def proxy_group_energy(weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost]) -> float:
    """Energy of a pattern: the correctly rounded sum of :func:`group_energy` over the layers.

    The one place where the structured proxy energy of a pattern is summed;
    :func:`project_groups` reports exactly this number for its masks.

    Parameters
    ----------
    weights : mapping of str to torch.Tensor
        Bool masks or floating-point weights; the same keys as ``costs``.
    costs : mapping of str to GroupCost

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the keys differ (the difference is listed).

    Examples
    --------
    >>> cost = GroupCost("a", torch.tensor([0, 1]), torch.tensor([1.0, 1.0], dtype=torch.float64), 2.0, 5.0)
    >>> proxy_group_energy({"a": torch.tensor([0.5, -1.0])}, {"a": cost})
    11.0
    """
    names = _check_keys(weights, costs, "weights", "costs")
    return math.fsum(group_energy(costs[n], weights[n]) for n in names)


def project_groups(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost], budget: float, mode: str
) -> GroupProjectionResult:
    """Keep the weights of largest ``sum w**2`` whose group-skipping energy fits the budget.

    See the module docstring for the two modes, their order and what they
    guarantee. In short: ``mode="tile"`` keeps or drops whole groups by
    ``value / cost``; ``mode="hybrid"`` keeps, per group, the weights of
    largest ``|w|`` along the group's concave value-vs-energy hull. Either way
    the result is the longest prefix of a budget-independent order whose
    energy (constants included) is ``<= budget``.

    Parameters
    ----------
    weights : mapping of str to torch.Tensor
        Floating-point weight tensors, on any device(s).
    costs : mapping of str to GroupCost
        One cost per weight, same keys as ``weights``; ``groups`` shaped like the weight.
    budget : float
        Energy budget, in the unit of ``costs``; ``inf`` keeps every nonzero
        weight (in hybrid mode: whose ``w**2 / per_weight`` does not underflow).
    mode : {"tile", "hybrid"}

    Returns
    -------
    GroupProjectionResult

    Raises
    ------
    InfeasibleBudgetError
        If ``budget`` is below :func:`group_floor_energy` of ``costs``.
    ValueError
        If keys differ, a weight is not finite (the layer is named), a
        ``groups`` tensor is not shaped like its weight, the budget is NaN or
        ``mode`` is unknown.
    TypeError
        If a weight is not a floating-point tensor or a cost not a GroupCost.

    Examples
    --------
    >>> cost = GroupCost("fc", torch.tensor([0, 0, 1, 1]), torch.tensor([1.0, 1.0], dtype=torch.float64), 1.0, 0.0)
    >>> w = {"fc": torch.tensor([3.0, 1.0, 2.0, 0.0])}
    >>> r = project_groups(w, {"fc": cost}, budget=3.0, mode="tile")
    >>> r.masks["fc"].tolist(), r.energy
    ([True, True, False, False], 3.0)
    >>> r = project_groups(w, {"fc": cost}, budget=4.0, mode="hybrid")
    >>> r.masks["fc"].tolist(), r.energy, r.kept_groups
    ([True, False, True, False], 4.0, {'fc': 2})
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
    names = _check_keys(weights, costs, "weights", "costs")
    layer_costs = [costs[n] for n in names]
    for name, cost in zip(names, layer_costs):
        if not isinstance(cost, GroupCost):
            raise TypeError(f"costs[{name!r}] must be a GroupCost, got {type(cost).__name__}")
    tensors = [_check_tensor(weights[n], n, "weights") for n in names]
    for cost, tensor in zip(layer_costs, tensors):
        _check_shape(cost, tensor, "weights")
    if not _is_real(budget) or math.isnan(budget):
        raise ValueError(f"budget must be a real number, got {budget!r}")
    floor = group_floor_energy(costs)
    if budget < floor:
        dense = math.fsum(
            group_energy(cost, torch.ones(t.shape, dtype=torch.bool, device=t.device))
            for cost, t in zip(layer_costs, tensors)
        )
        raise InfeasibleBudgetError(float(budget), floor, dense)

    if not names:
        return GroupProjectionResult(masks={}, energy=0.0, kept={}, kept_groups={})
    dtype = _working_dtype(tensors)
    flats = [t.detach().reshape(-1).to(dtype) for t in tensors]
    group_ids = [cost.groups.reshape(-1).to(flat.device) for cost, flat in zip(layer_costs, flats)]
    if mode == "tile":
        masks, kept, kept_groups, energy = _project_tile(flats, group_ids, layer_costs, budget)
    else:
        masks, kept, kept_groups, energy = _project_hybrid(flats, group_ids, layer_costs, budget)
    return GroupProjectionResult(
        masks={n: m.view(t.shape) for n, m, t in zip(names, masks, tensors)},
        energy=energy,
        kept=dict(zip(names, kept)),
        kept_groups=dict(zip(names, kept_groups)),
    )


def _check_shape(cost: GroupCost, tensor: torch.Tensor, what: str) -> None:
    """ValueError naming the layer if ``tensor`` is not shaped like ``cost.groups``."""
    if tuple(tensor.shape) != tuple(cost.groups.shape):
        raise ValueError(
            f"{what}[{cost.name!r}] has shape {tuple(tensor.shape)} but its GroupCost groups "
            f"has shape {tuple(cost.groups.shape)}"
        )


def _project_tile(
    flats: Sequence[torch.Tensor], group_ids: Sequence[torch.Tensor], costs: Sequence[GroupCost], budget: float
) -> tuple[list[torch.Tensor], list[int], list[int], float]:
    """Longest fitting prefix of whole groups by value / cost, then the masks."""
    sums = [_group_sums(flat, groups, cost.group_cost.numel()) for flat, groups, cost in zip(flats, group_ids, costs)]
    # Items in layer order then group id; a stable sort by ratio keeps that order on ties.
    layer, gid, charge, size, ratio = [], [], [], [], []
    for i, ((value, count, _), cost) in enumerate(zip(sums, costs)):
        value, count = value.cpu().numpy(), count.cpu().numpy()
        ids = np.flatnonzero(value > 0)
        charge_i = cost.group_cost.cpu().numpy()[ids]
        layer.append(np.full(ids.size, i))
        gid.append(ids)
        charge.append(charge_i)
        size.append(count[ids])
        ratio.append(value[ids] / (charge_i + float(cost.per_weight) * count[ids]))
    order = np.argsort(-np.concatenate(ratio), kind="stable")
    layer, gid = np.concatenate(layer)[order], np.concatenate(gid)[order]
    prefix = _GroupPrefix(layer, np.concatenate(charge)[order], np.concatenate(size)[order], costs)
    no_singles = [0] * len(costs)
    items = layer.size
    if prefix.energy(items, no_singles) <= budget:
        taken = items
    else:
        taken = _smallest_true(0, items, lambda k: prefix.energy(k, no_singles) > budget) - 1
    masks = []
    for i, (groups, (_, _, nonzero), cost) in enumerate(zip(group_ids, sums, costs)):
        keep = _kept_table(gid[:taken][layer[:taken] == i], cost.group_cost.numel(), groups.device)
        mask = keep.index_select(0, groups)
        masks.append(mask if nonzero is None else mask.logical_and_(nonzero))
    kept, kept_groups = prefix.layer_counts(taken, no_singles)
    return masks, kept, kept_groups, prefix.energy(taken, no_singles)


def _project_hybrid(
    flats: Sequence[torch.Tensor], group_ids: Sequence[torch.Tensor], costs: Sequence[GroupCost], budget: float
) -> tuple[list[torch.Tensor], list[int], list[int], float]:
    """Bundles by Dinkelbach, then the longest fitting prefix of bundles and single weights."""
    dtype = flats[0].dtype
    ratios = [_weight_ratios(flat, float(cost.per_weight)) for flat, cost in zip(flats, costs)]
    bundles = _network_bundles(ratios, flats, group_ids, costs)
    singles, markers = [], []
    layer, gid, charge, size, slope = [], [], [], [], []
    for i, (ratio, cost, (r_star, count, mark)) in enumerate(zip(ratios, costs, bundles)):
        # Bundle members have left the single-weight items: what remains has ratio < r*.
        singles.append(ratio.view(_INT_VIEW[dtype]))
        markers.append(mark)
        ids = _flat_nonzero(count > 0)
        layer.append(np.full(ids.numel(), i))
        gid.append(ids.cpu().numpy())
        charge.append(cost.group_cost.cpu().numpy()[ids.cpu().numpy()])
        size.append(count[ids].cpu().numpy())
        slope.append(r_star[ids].cpu().numpy())
    r_star = np.concatenate(slope)
    order = np.argsort(-r_star, kind="stable")
    layer, gid = np.concatenate(layer)[order], np.concatenate(gid)[order]
    prefix = _GroupPrefix(layer, np.concatenate(charge)[order], np.concatenate(size)[order], costs)
    # Bundle keys rounded down to the weights' precision keep every single weight
    # of slope > r* before the bundle and every one of slope <= r* after it (ties:
    # bundles first); bundles of equal rounded key stay in their sorted order.
    rounded = _round_to(torch.from_numpy(r_star[order]), dtype, up=False)
    rounded = torch.maximum(rounded, _smallest_positive(dtype, rounded.device))
    keys = [rounded.view(_INT_VIEW[dtype]), *singles]

    def fits(counts: Sequence[int]) -> bool:
        return prefix.energy(counts[0], counts[1:]) <= budget

    def tie_order(i: int, idx: torch.Tensor) -> torch.Tensor:
        if i == 0:
            return idx
        flat, groups = flats[i - 1], group_ids[i - 1]
        idx = idx[torch.sort(flat[idx].abs(), descending=True, stable=True).indices]
        return idx[torch.sort(groups[idx], stable=True).indices]

    # Key 1 is the smallest positive slope: zero-value items are never kept.
    flat_masks, counts = _select_prefix(keys, fits, floor_key=1, tie_order=tie_order)
    taken = counts[0]
    masks = []
    for i, (mask, mark) in enumerate(zip(flat_masks[1:], markers)):
        # Members are no single items: their mask entries are False until their bundle is kept.
        mark(mask, gid[:taken][layer[:taken] == i])
        masks.append(mask)
    kept, kept_groups = prefix.layer_counts(taken, counts[1:])
    return masks, kept, kept_groups, prefix.energy(taken, counts[1:])


def _kept_table(ids: np.ndarray, n_groups: int, device: torch.device) -> torch.Tensor:
    """Bool tensor over the group ids of a layer, True on ``ids``."""
    keep = torch.zeros(n_groups, dtype=torch.bool)
    keep[torch.from_numpy(ids)] = True
    return keep.to(device)


def _flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Indices of the True entries of a 1-D bool tensor, ascending (int64)."""
    if mask.device.type == "cpu":
        # numpy's flatnonzero is several times faster than torch.nonzero on CPU.
        return torch.from_numpy(np.flatnonzero(mask.cpu().numpy()))
    return torch.nonzero(mask).view(-1)


def _group_sums(
    flat: torch.Tensor, groups: torch.Tensor, n_groups: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per group, sum of w**2 (float64) and number of nonzero weights; the nonzero mask (None if all are).

    On the CPU one pass of :func:`compress._kernels.group_sums`; elsewhere ``index_add_``,
    the float64 squares made in chunks (one large temporary costs more than the sums). Both
    add in ascending index order.
    """
    if flat.device.type in _KERNEL_DEVICES:
        exact = flat if flat.dtype in (torch.float32, torch.float64) else flat.double()  # numba: no half floats
        value, count = (torch.from_numpy(a) for a in kernel_group_sums(
            exact.contiguous().cpu().numpy(), groups.contiguous().cpu().numpy(), n_groups))
        dense = int(count.sum()) == flat.numel()
        return value, count, None if dense else flat != 0
    nonzero = flat != 0
    dense = bool(nonzero.all())
    value = torch.zeros(n_groups, dtype=torch.float64, device=flat.device)
    count = torch.bincount(groups, minlength=n_groups) if dense else torch.zeros_like(value, dtype=torch.int64)
    step = _CHUNK if flat.device.type == "cpu" else max(1, flat.numel())
    for start in range(0, flat.numel(), step):
        part = slice(start, start + step)
        value.index_add_(0, groups[part], flat[part].to(torch.float64, copy=True).square_())
        if not dense:
            count.index_add_(0, groups[part], nonzero[part].long())
    return value, count, None if dense else nonzero


def group_sums(weight: torch.Tensor, cost: GroupCost) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group of ``cost``: the sum of ``w**2`` (float64) and the number of nonzero weights (int64).

    >>> cost = GroupCost("fc", torch.tensor([0, 0, 1]), torch.tensor([1.0, 1.0], dtype=torch.float64), 0.0, 0.0)
    >>> [t.tolist() for t in group_sums(torch.tensor([3.0, 0.0, 2.0]), cost)]
    [[9.0, 4.0], [1, 1]]
    """
    flat = weight.detach().reshape(-1)
    value, count, _ = _group_sums(flat, cost.groups.reshape(-1).to(flat.device), cost.group_cost.numel())
    return value, count


def nonzero_groups(weight: torch.Tensor, groups: torch.Tensor, n_groups: int) -> np.ndarray:
    """Per group id ``< n_groups`` of ``groups`` (int64, shaped like ``weight``): whether it holds a nonzero weight.

    >>> nonzero_groups(torch.tensor([0.0, 2.0, 0.0]), torch.tensor([0, 1, 2]), 4).tolist()
    [False, True, False, False]
    """
    flat = weight.detach().reshape(-1)
    count = _group_sums(flat, groups.reshape(-1).to(flat.device), n_groups)[1]
    return (count > 0).cpu().numpy()


def _weight_ratios(flat: torch.Tensor, per_weight: float) -> torch.Tensor:
    """w**2 / per_weight in the working precision; inf for nonzero w**2 when per_weight is 0."""
    square = flat.square()
    if per_weight == 0:
        return torch.where(square > 0, math.inf, 0.0).to(flat.dtype)
    # A cost tensor (not a Python scalar) keeps the division exact on CUDA too.
    return square.div_(torch.tensor(per_weight, dtype=flat.dtype, device=flat.device))


def _network_bundles(
    ratios: Sequence[torch.Tensor], flats: Sequence[torch.Tensor], group_ids: Sequence[torch.Tensor],
    costs: Sequence[GroupCost],
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The bundles of every layer, and the members' ratios set to 0 (they leave the single items).

    Per layer: r* and size per group (float64, int64) and ``mark(mask, ids)``, which sets
    a layer's flat bool mask True on the members of the bundles of the group ids ``ids``. On the CPU a numba kernel per layer (:func:`compress._kernels.hybrid_bundles`,
    group by group on the cached :func:`_group_order`); elsewhere :func:`_bundles` on the
    layers of one device at once (groups are independent, so this is the per-layer result;
    one pass saves the per-call overhead of many small layers). Both make the same float
    operations in the same order, so their results are identical.
    """
    out: list = [None] * len(flats)
    for device in dict.fromkeys(f.device for f in flats):
        part = [i for i, f in enumerate(flats) if f.device == device]
        if device.type in _KERNEL_DEVICES:
            for i in part:
                order, start, visit, rank = _group_order(costs[i].groups, costs[i].group_cost.numel())
                tiny = np.nextafter(np.zeros((), dtype=ratios[i].cpu().numpy().dtype), 1)
                kernel = hybrid_bundles_parallel if flats[i].numel() > _PARALLEL_WEIGHTS else hybrid_bundles
                r_star, count, members, _ = kernel(
                    ratios[i].cpu().numpy(), flats[i].contiguous().cpu().numpy(), order, start, visit,
                    costs[i].group_cost.cpu().numpy(), float(costs[i].per_weight), tiny,
                )
                out[i] = (torch.from_numpy(r_star), torch.from_numpy(count), _cpu_marker(members, start, count, rank))
            continue
        sizes = [costs[i].group_cost.numel() for i in part]
        starts = np.concatenate(([0], np.cumsum([flats[i].numel() for i in part])))
        group_starts = np.concatenate(([0], np.cumsum(sizes)))
        r_star, count, idx, _ = _bundles(
            torch.cat([ratios[i] for i in part]),
            torch.cat([flats[i] for i in part]),
            torch.cat([group_ids[i] + int(g) for i, g in zip(part, group_starts)]),
            torch.cat([costs[i].group_cost.to(device) for i in part]),
            torch.cat([torch.full((n,), float(costs[i].per_weight), dtype=torch.float64, device=device)
                       for i, n in zip(part, sizes)]),
        )
        # Members come out in ascending flat order, so each layer's are one run.
        cuts = torch.searchsorted(idx, torch.from_numpy(starts).to(device)).tolist()
        for j, i in enumerate(part):
            local = idx[cuts[j]:cuts[j + 1]] - int(starts[j])
            ratios[i].index_fill_(0, local, 0)
            member = torch.zeros(flats[i].numel(), dtype=torch.bool, device=device).index_fill_(0, local, True)
            g0, g1 = int(group_starts[j]), int(group_starts[j + 1])
            out[i] = (r_star[g0:g1], count[g0:g1], _torch_marker(member, group_ids[i], costs[i].group_cost.numel()))
    return out


def _cpu_marker(members: np.ndarray, start: np.ndarray, size: np.ndarray, rank: np.ndarray):
    """``mark`` of :func:`_network_bundles` from the bundle kernel's member lists; groups in
    memory order (``rank``: a group's place in the order of first weights)."""

    def mark(mask: torch.Tensor, ids: np.ndarray) -> None:
        mark_kept(mask.cpu().numpy(), members, start, size, ids[np.argsort(rank[ids], kind="stable")])

    return mark


def _torch_marker(member: torch.Tensor, groups: torch.Tensor, n_groups: int):
    """``mark`` of :func:`_network_bundles` from a bool member mask and the group map."""

    def mark(mask: torch.Tensor, ids: np.ndarray) -> None:
        mask.logical_or_(member.logical_and_(_kept_table(ids, n_groups, mask.device).index_select(0, groups)))

    return mark


# The group order of recently projected group maps, by the id of their tensor (see _group_order).
_ORDERS: dict[int, tuple] = {}


def _group_order(groups: torch.Tensor, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`compress._kernels.group_order` of a group map (``GroupCost.groups``), and each
    group's place in the visiting order, cached while the tensor lives unchanged.

    Training projects with the same group map over and over (the energy model caches it),
    so the counting sort is paid once per map. The entry is keyed by the tensor's id and
    checked against its identity and in-place version counter; it is dropped with the tensor.
    """
    key = id(groups)
    entry = _ORDERS.get(key)
    if entry is not None and entry[0]() is groups and entry[1] == (groups._version, n_groups):
        return entry[2]
    flat = groups.detach().reshape(-1).contiguous().cpu().numpy()
    # int32 indices (when they fit) halve the memory the bundle kernel walks.
    order, start, visit = group_order(flat, n_groups, np.empty(flat.size, dtype=np.int32 if flat.size < 2**31 else np.int64))
    rank = np.zeros(n_groups, dtype=np.int64)
    rank[visit] = np.arange(visit.size)
    order = (order, start, visit, rank)
    _ORDERS[key] = (weakref.ref(groups, lambda _, key=key: _ORDERS.pop(key, None)), (groups._version, n_groups), order)
    return order


def _bundles(
    ratio: torch.Tensor, flat: torch.Tensor, groups: torch.Tensor, charges: torch.Tensor, per_weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per group: bundle slope r* and size (float64, int64), and the members' flat indices and group ids.

    ``ratio`` is ``w**2 / c`` of every weight (:func:`_weight_ratios`), ``per_weight`` the
    cost ``c`` of each group's weights (float64, per group). Dinkelbach from below:
    ``S = {ratio >= t}``, ``t <- max(t, V(S) / (F + c|S|))`` until no weight leaves ``S``,
    starting from ``t = V / (F + c n)`` of all nonzero weights (a lower bound of r*).
    Groups without a positive ratio get size 0.
    """
    n_groups = charges.numel()
    value, count, _ = _group_sums(flat, groups, n_groups)
    t = value / (charges + per_weight * count.double())
    idx = _flat_nonzero(ratio >= _threshold(t, ratio.dtype).index_select(0, groups))
    # The candidates' group ids as int32 (when they fit) make every pass lighter.
    small = torch.int32 if n_groups < 2**31 - 1 else torch.int64
    idx_groups = groups.index_select(0, idx).to(small)
    idx_ratio = ratio.index_select(0, idx)
    values = flat.index_select(0, idx).to(torch.float64).square_()
    # A weight leaving its group's set moves to the spare group n_groups (threshold 0, so it
    # never leaves again and is counted nowhere), unless enough leave to pay for compacting.
    spare = torch.zeros(1, dtype=ratio.dtype, device=ratio.device)
    parked = False
    while True:
        count = torch.bincount(idx_groups, minlength=n_groups + 1)[:n_groups]
        value = torch.bincount(idx_groups, weights=values, minlength=n_groups + 1)[:n_groups]
        t = torch.maximum(t, value / (charges + per_weight * count.double()))
        thresholds = torch.cat([_threshold(t, ratio.dtype), spare])
        stay = idx_ratio >= thresholds.index_select(0, idx_groups)
        leaving = stay.numel() - int(torch.count_nonzero(stay))
        if leaving == 0:
            break
        if leaving * _COMPACT_SHARE < stay.numel():
            idx_groups.masked_fill_(~stay, n_groups)
            parked = True
            continue
        if parked:
            stay &= idx_groups != n_groups
            parked = False
        sel = _flat_nonzero(stay)
        idx, idx_groups, idx_ratio, values = (a.index_select(0, sel) for a in (idx, idx_groups, idx_ratio, values))
    if parked:
        sel = _flat_nonzero(idx_groups != n_groups)
        idx, idx_groups = idx.index_select(0, sel), idx_groups.index_select(0, sel)
    return t, count, idx, idx_groups


def _threshold(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Per group, the least positive x of ``dtype`` with ``x >= t``: ``ratio >= it`` iff ratio >= t and > 0."""
    return torch.maximum(_round_to(t, dtype, up=True), _smallest_positive(dtype, t.device))


def _round_to(t: torch.Tensor, dtype: torch.dtype, up: bool) -> torch.Tensor:
    """float64 ``t`` rounded to ``dtype`` towards +inf (up) or -inf, so comparisons with ``dtype`` values are exact."""
    rounded = t.to(dtype)
    if dtype == torch.float64:
        return rounded
    back = rounded.double()
    off = back < t if up else back > t
    toward = torch.full_like(rounded, math.inf if up else -math.inf)
    return torch.where(off, torch.nextafter(rounded, toward), rounded)


def _smallest_positive(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The smallest positive (subnormal) number of ``dtype``."""
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.nextafter(zero, torch.ones_like(zero))


class _GroupPrefix:
    """Energy of the first ``k`` groups of a sorted list (plus single weights per layer), exactly.

    ``layer``, ``charge`` and ``size`` describe the sorted groups: layer index,
    group cost and the number of weights the group keeps. Sums of group costs
    are exact (integer limbs), so energies are correctly rounded and monotone in
    ``k`` and in every single-weight count.
    """

    def __init__(self, layer: np.ndarray, charge: np.ndarray, size: np.ndarray, costs: Sequence[GroupCost]) -> None:
        self.costs = costs
        self.positions = [np.flatnonzero(layer == i) for i in range(len(costs))]
        self.sizes = [np.concatenate(([0], np.cumsum(size[p]))) for p in self.positions]
        self.charges = _ExactCumsum(charge, self.positions)

    def _taken(self, i: int, k: int) -> int:
        """Groups of layer i among the first k."""
        return int(np.searchsorted(self.positions[i], k))

    def layer_counts(self, k: int, singles: Sequence[int]) -> tuple[list[int], list[int]]:
        """Kept weights and kept groups per layer."""
        groups = [self._taken(i, k) for i in range(len(self.costs))]
        weights = [int(s[j]) + n for s, j, n in zip(self.sizes, groups, singles)]
        return weights, groups

    def energy(self, k: int, singles: Sequence[int]) -> float:
        """``proxy_group_energy`` of the first k groups plus ``singles[i]`` more weights in layer i."""
        weights, groups = self.layer_counts(k, singles)
        # Each layer's energy is the correctly rounded sum of its exact parts (fsum), as in
        # group_energy; the group costs' prefix sum enters as exact float pieces.
        layers = [
            math.fsum([float(cost.constant), float(cost.per_weight) * n, *self.charges.prefix(i, j)])
            for i, (cost, n, j) in enumerate(zip(self.costs, weights, groups))
        ]
        return math.fsum(layers)


class _ExactCumsum:
    """Exact prefix sums of parts of an array of positive finite float64 numbers.

    Each number is an integer multiple of ``2**low`` (``low`` the smallest
    exponent of a last mantissa bit); that integer is split into 32-bit limbs
    (once, for all parts) whose cumulative sums over each part (int64) are exact.
    """

    def __init__(self, x: np.ndarray, parts: Sequence[np.ndarray]) -> None:
        mantissa, exponent = np.frexp(x)
        digits = (mantissa * 2.0**53).astype(np.int64)
        exponent = exponent.astype(np.int64) - 53
        self.low = int(exponent.min()) if x.size else 0
        shift = exponent - self.low
        width = 53 + int(shift.max()) if x.size else 0
        limbs = np.zeros((-(-width // _LIMB_BITS), x.size), dtype=np.int64)
        for i in range(limbs.shape[0]):
            # Bits [B i, B i + B) of digits << shift are bits [s, s + B) of digits.
            s = _LIMB_BITS * i - shift
            down = np.right_shift(digits, np.clip(s, 0, 63)) & np.int64(_HALF)
            low_bits = digits & ((np.int64(1) << np.clip(_LIMB_BITS + s, 0, _LIMB_BITS)) - 1)
            up = np.left_shift(low_bits, np.clip(-s, 0, _LIMB_BITS - 1))
            limbs[i] = np.where(s >= 0, down, np.where(s > -_LIMB_BITS, up, 0))
        self.sums = []
        for part in parts:
            sums = np.zeros((limbs.shape[0], part.size + 1), dtype=np.int64)
            np.cumsum(limbs[:, part], axis=1, out=sums[:, 1:])
            self.sums.append(sums)
        # Halves of the limb sums, scaled, stay exact floats while none is subnormal (costs above ~1e-290).
        self.exact_pieces = self.low > -900

    def prefix(self, part: int, j: int) -> list[float]:
        """The sum of the first j numbers of a part, as floats whose exact sum it is (for ``math.fsum``)."""
        column = self.sums[part][:, j].tolist()  # Python ints: cheaper to take apart one by one
        if self.exact_pieces:
            pieces, scale = [], self.low
            for limb in column:
                pieces += (math.ldexp(limb & _HALF, scale), math.ldexp(limb >> _LIMB_BITS, scale + _LIMB_BITS))
                scale += _LIMB_BITS
            return pieces
        total = 0
        for limb in reversed(column):
            total = (total << _LIMB_BITS) + limb
        rest, pieces = Fraction(total, 1 << -self.low), []
        while rest:  # on the float64 grid: every remainder is a float again, so this ends
            pieces.append(float(rest))
            rest -= Fraction(pieces[-1])
        return pieces
