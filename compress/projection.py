"""Weighted sparse projection of network weights onto an energy budget.

The energy of a layer is, for fixed input masks, a constant plus a per-weight
cost that is piecewise linear in its number of kept (nonzero) weights: the
first ``breakpoint`` kept weights (those that fit the weight buffer) cost
``per_weight`` each, any further ones ``per_weight_overflow``. Projecting the
weights onto ``energy <= budget`` while keeping as much of ``sum w**2`` as
possible is a knapsack that Yang, Zhu and Liu (ICLR 2019) solve greedily by
the ratio ``w_i**2 / c_i`` over all layers at once. :func:`project` returns
exactly the longest prefix of that greedy order which fits the budget; the
authors' code keeps one item fewer than fits, which is not reproduced here.

The order is found without a full sort: a threshold on the ratio is searched
with counting passes (guided by a strided sample), and only the items close
to the threshold are gathered and sorted. Everything stays on the device of
the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .schedule import InfeasibleBudgetError

__all__ = [
    "InfeasibleBudgetError",
    "LayerCost",
    "ProjectionResult",
    "floor_energy",
    "layer_energy",
    "nonzero_counts",
    "project",
    "project_masks_topk",
    "proxy_energy",
]

# Items in the bracket around the threshold below which they are gathered and
# sorted instead of counted by more passes over all the data.
_WINDOW_ITEMS = 1 << 20
# Size of the strided sample that guides the first counting passes.
_SAMPLE_ITEMS = 1 << 18
# Standard deviations of sampling error allowed for when bracketing from the sample.
_SAMPLE_SIGMAS = 4.0

_INT_VIEW = {torch.float32: torch.int32, torch.float64: torch.int64}


@dataclass(frozen=True)
class LayerCost:
    """Energy cost of one layer's weights, in the energy unit of the coefficient table.

    Parameters
    ----------
    name : str
        Layer name, used in messages.
    per_weight : float
        Energy per kept (nonzero) weight while the layer fits its weight buffer; > 0.
    per_weight_overflow : float
        Energy per kept weight beyond ``breakpoint`` kept weights; >= ``per_weight``.
    breakpoint : int or None
        Number of kept weights after which ``per_weight_overflow`` applies;
        None means never.
    constant : float
        Energy of the layer that does not depend on its weights (inputs,
        outputs, ...); >= 0.

    Raises
    ------
    ValueError
        If a number is outside the ranges above.
    TypeError
        If ``breakpoint`` is neither None nor an int.
    """

    name: str
    per_weight: float
    per_weight_overflow: float
    breakpoint: int | None
    constant: float

    def __post_init__(self) -> None:
        where = f"LayerCost {self.name!r}"
        if not _is_real(self.per_weight) or not math.isfinite(self.per_weight) or self.per_weight <= 0:
            raise ValueError(f"{where}: per_weight must be a finite number > 0, got {self.per_weight!r}")
        if (
            not _is_real(self.per_weight_overflow)
            or not math.isfinite(self.per_weight_overflow)
            or self.per_weight_overflow < self.per_weight
        ):
            raise ValueError(
                f"{where}: per_weight_overflow must be a finite number >= per_weight "
                f"({self.per_weight!r}), got {self.per_weight_overflow!r}"
            )
        if self.breakpoint is not None:
            if isinstance(self.breakpoint, bool) or not isinstance(self.breakpoint, (int, np.integer)):
                raise TypeError(f"{where}: breakpoint must be None or an int, got {self.breakpoint!r}")
            if self.breakpoint < 0:
                raise ValueError(f"{where}: breakpoint must be >= 0, got {self.breakpoint!r}")
        if not _is_real(self.constant) or not math.isfinite(self.constant) or self.constant < 0:
            raise ValueError(f"{where}: constant must be a finite number >= 0, got {self.constant!r}")


@dataclass(frozen=True)
class ProjectionResult:
    """Outcome of :func:`project`.

    Attributes
    ----------
    masks : dict of str to torch.Tensor
        Bool tensors shaped like each weight, on the weight's device; True = kept.
    energy : float
        Energy of the kept set, constants included; never above the budget.
    kept : dict of str to int
        Number of kept weights per layer.
    """

    masks: dict[str, torch.Tensor]
    energy: float
    kept: dict[str, int]


def layer_energy(cost: LayerCost, kept: int) -> float:
    """Energy of one layer with ``kept`` nonzero weights.

    Parameters
    ----------
    cost : LayerCost
        The layer's cost model.
    kept : int
        Number of kept weights, >= 0.

    Returns
    -------
    float
        ``constant + per_weight * min(kept, breakpoint)
        + per_weight_overflow * max(0, kept - breakpoint)``.

    Raises
    ------
    ValueError
        If ``kept`` is negative.

    Examples
    --------
    >>> layer_energy(LayerCost("fc", 1.0, 3.0, 2, 10.0), 5)
    21.0
    """
    if kept < 0:
        raise ValueError(f"kept must be >= 0 for layer {cost.name!r}, got {kept!r}")
    inside = kept if cost.breakpoint is None else min(kept, cost.breakpoint)
    return cost.constant + cost.per_weight * inside + cost.per_weight_overflow * (kept - inside)


def floor_energy(costs: Mapping[str, LayerCost]) -> float:
    """Energy with every weight pruned: the sum of the layer constants.

    Parameters
    ----------
    costs : mapping of str to LayerCost

    Returns
    -------
    float

    Examples
    --------
    >>> floor_energy({"a": LayerCost("a", 1.0, 1.0, None, 2.5), "b": LayerCost("b", 1.0, 1.0, None, 4.0)})
    6.5
    """
    return _total_energy(list(costs.values()), [0] * len(costs))


def proxy_energy(kept: Mapping[str, int], costs: Mapping[str, LayerCost]) -> float:
    """Energy of a pattern with ``kept[name]`` nonzero weights in each layer of ``costs``.

    The one place where a pattern's proxy energy is summed (correctly rounded, so it is
    monotone in every count and agrees with the projection's own bisection).

    Parameters
    ----------
    kept : mapping of str to int
        Kept weights per layer; every layer of ``costs`` must be present.
    costs : mapping of str to LayerCost

    Returns
    -------
    float

    Examples
    --------
    >>> proxy_energy({"a": 3}, {"a": LayerCost("a", 1.0, 3.0, 2, 10.0)})
    15.0
    """
    return _total_energy([costs[n] for n in costs], [kept[n] for n in costs])


def nonzero_counts(weights: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Number of nonzero entries of each tensor.

    >>> nonzero_counts({"a": torch.tensor([0.0, 2.0, -1.0])})
    {'a': 2}
    """
    return {name: int(torch.count_nonzero(w)) for name, w in weights.items()}


def project(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, LayerCost], budget: float
) -> ProjectionResult:
    """Keep the weights of largest ``sum w**2`` whose energy fits the budget.

    Within a layer, weights are ranked by ``|w|`` descending (ties: lower flat
    index first); the first ``breakpoint`` of the ranking cost ``per_weight``,
    the rest ``per_weight_overflow``. All weights of all layers are then
    ordered by the ratio ``w**2 / cost`` descending, ties broken by the
    iteration order of ``weights`` and then by the rank within the layer. The
    result is the longest prefix of this order whose energy (constants
    included) is ``<= budget``: the next item in the order would not fit.
    Such a prefix keeps the top-ranked weights of each layer, so its energy is
    ``sum(layer_energy(cost, kept))``, and it is the exact optimum of the
    knapsack at the energy it uses.

    Weights whose ratio is zero (``w == 0``, or ``w**2`` underflowing in the
    working precision) carry no value and are never kept, so the masks are
    consistent with the nonzeros of ``w * mask`` and projecting
    ``w * mask`` again returns the same mask. Ratios are computed in float32
    (float64 if any weight is float64).

    Parameters
    ----------
    weights : mapping of str to torch.Tensor
        Floating-point weight tensors, on any device(s).
    costs : mapping of str to LayerCost
        One cost per weight, same keys as ``weights``.
    budget : float
        Energy budget, in the unit of ``costs``; ``inf`` keeps every nonzero.

    Returns
    -------
    ProjectionResult

    Raises
    ------
    InfeasibleBudgetError
        If ``budget`` is below :func:`floor_energy` of ``costs``.
    ValueError
        If keys differ, a weight is not finite (the layer is named) or the
        budget is NaN.
    TypeError
        If a weight is not a floating-point tensor or a cost not a LayerCost.

    Examples
    --------
    >>> w = {"a": torch.tensor([3.0, -1.0, 2.0]), "b": torch.tensor([4.0, 1.0])}
    >>> c = {"a": LayerCost("a", 1.0, 2.0, 2, 10.0), "b": LayerCost("b", 4.0, 4.0, None, 5.0)}
    >>> r = project(w, c, budget=21.0)
    >>> r.kept, r.energy
    ({'a': 2, 'b': 1}, 21.0)
    """
    names = _check_keys(weights, costs, "weights", "costs")
    layer_costs = [costs[n] for n in names]
    for name, cost in zip(names, layer_costs):
        if not isinstance(cost, LayerCost):
            raise TypeError(f"costs[{name!r}] must be a LayerCost, got {type(cost).__name__}")
    tensors = [_check_tensor(weights[n], n, "weights") for n in names]
    if not _is_real(budget) or math.isnan(budget):
        raise ValueError(f"budget must be a real number, got {budget!r}")
    min_energy = _total_energy(layer_costs, [0] * len(names))
    if budget < min_energy:
        dense = _total_energy(layer_costs, [t.numel() for t in tensors])
        raise InfeasibleBudgetError(float(budget), min_energy, dense)

    dtype = _working_dtype(tensors)
    flats = [t.detach().reshape(-1).to(dtype) for t in tensors]
    ratios = [_ratios(flat, cost) for flat, cost in zip(flats, layer_costs)]
    keys = [r.view(_INT_VIEW[dtype]) for r in ratios]

    def fits(counts: Sequence[int]) -> bool:
        return _total_energy(layer_costs, counts) <= budget

    def rank_order(layer: int, idx: torch.Tensor) -> torch.Tensor:
        magnitude = flats[layer][idx].abs()
        return idx[torch.sort(magnitude, descending=True, stable=True).indices]

    # Key 1 is the smallest positive ratio: zero-ratio items are never kept.
    flat_masks, kept = _select_prefix(keys, fits, floor_key=1, tie_order=rank_order)
    return ProjectionResult(
        masks={n: m.view(t.shape) for n, m, t in zip(names, flat_masks, tensors)},
        energy=_total_energy(layer_costs, kept),
        kept=dict(zip(names, kept)),
    )


def project_masks_topk(scores: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Masks of the ``k`` largest scores over several tensors together.

    Ties are broken deterministically: by the iteration order of ``scores``,
    then by flat index (lower first). ``-0.0`` and ``0.0`` are equal.

    Parameters
    ----------
    scores : mapping of str to torch.Tensor
        Floating-point score tensors, on any device(s), without NaN.
    k : int
        Number of entries to keep, ``0 <= k <=`` total number of entries.

    Returns
    -------
    dict of str to torch.Tensor
        Bool tensors shaped like each score tensor; exactly ``k`` True in total.

    Raises
    ------
    ValueError
        If ``k`` is out of range or a score is NaN (the tensor is named).
    TypeError
        If ``k`` is not an int or a score is not a floating-point tensor.

    Examples
    --------
    >>> m = project_masks_topk({"a": torch.tensor([1.0, 5.0]), "b": torch.tensor([5.0, 2.0])}, 2)
    >>> m["a"].tolist(), m["b"].tolist()
    ([False, True], [True, False])
    """
    names = list(scores)
    tensors = [_check_tensor(scores[n], n, "scores", allow_inf=True) for n in names]
    total = sum(t.numel() for t in tensors)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {k!r}")
    if not 0 <= k <= total:
        raise ValueError(f"k must be between 0 and the total number of scores ({total}), got {k}")
    dtype = _working_dtype(tensors)
    keys = [_ordered_int_keys(t.detach().reshape(-1).to(dtype)) for t in tensors]
    floor_key = int(_ordered_int_keys(torch.tensor([-math.inf], dtype=dtype)).item())
    flat_masks, _ = _select_prefix(keys, lambda counts: sum(counts) <= k, floor_key, _keep_index_order)
    return {n: m.view(t.shape) for n, m, t in zip(names, flat_masks, tensors)}


def _is_real(x: object) -> bool:
    """True for int and float numbers (numpy ones included), not bool."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _check_keys(a: Mapping, b: Mapping, a_name: str, b_name: str) -> list[str]:
    """Keys of ``a`` in order; ValueError listing the difference if ``b`` differs."""
    only_a = [n for n in a if n not in b]
    only_b = [n for n in b if n not in a]
    if only_a or only_b:
        raise ValueError(
            f"{a_name} and {b_name} must have the same keys; only in {a_name}: {only_a}, "
            f"only in {b_name}: {only_b}"
        )
    return list(a)


def _check_tensor(t: object, name: str, what: str, allow_inf: bool = False) -> torch.Tensor:
    """A floating tensor without NaN (and without inf unless allowed), or an error naming it."""
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
        raise TypeError(f"{what}[{name!r}] must be a floating-point torch.Tensor, got {got}")
    bad = torch.isnan(t).any() if allow_inf else ~torch.isfinite(t).all()
    if bool(bad):
        allowed = "NaN" if allow_inf else "NaN or inf"
        raise ValueError(f"{what}[{name!r}] contains {allowed} values")
    return t


def _working_dtype(tensors: Sequence[torch.Tensor]) -> torch.dtype:
    """float64 if any tensor is float64, else float32 (keys must be comparable across tensors)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _total_energy(costs: Sequence[LayerCost], counts: Sequence[int]) -> float:
    """Correctly rounded sum of layer energies: monotone in every count, so bisection is valid."""
    return math.fsum(layer_energy(c, n) for c, n in zip(costs, counts))


def _ratios(flat: torch.Tensor, cost: LayerCost) -> torch.Tensor:
    """w**2 / cost of each weight, where cost depends on the weight's rank in its layer."""
    device, dtype = flat.device, flat.dtype
    # Cost tensors (not Python scalars) keep the division exact on every device:
    # CUDA turns division by a host scalar into multiplication by its reciprocal.
    low = torch.tensor(cost.per_weight, dtype=dtype, device=device)
    high = torch.tensor(cost.per_weight_overflow, dtype=dtype, device=device)
    bp = cost.breakpoint
    if bp is None or bp >= flat.numel() or cost.per_weight_overflow == cost.per_weight:
        per_item = low
    elif bp == 0:
        per_item = high
    else:
        magnitude_keys = [flat.abs().view(_INT_VIEW[dtype])]
        top, _ = _select_prefix(magnitude_keys, lambda counts: counts[0] <= bp, 1, _keep_index_order)
        per_item = torch.where(top[0], low, high)
    return flat.square().div_(per_item)


def _ordered_int_keys(values: torch.Tensor) -> torch.Tensor:
    """Integers in the same order as the float values (no NaN); -0.0 maps like 0.0."""
    bits = (values + 0.0).view(_INT_VIEW[values.dtype])
    # Negative floats have sign-magnitude bits: flipping the magnitude bits reverses their order.
    magnitude_bits = torch.iinfo(bits.dtype).max
    return torch.where(bits < 0, bits ^ magnitude_bits, bits)


def _keep_index_order(layer: int, idx: torch.Tensor) -> torch.Tensor:
    """Tie order by flat index (the order ``nonzero`` already returns)."""
    return idx


def _count_at_least(keys: Sequence[torch.Tensor], v: int) -> list[int]:
    """Per tensor, how many keys are >= v (one pass over all data)."""
    counts = [torch.count_nonzero(k >= v) for k in keys]
    return [int(c) for c in counts]


def _smallest_true(lo: int, hi: int, pred: Callable[[int], bool]) -> int:
    """Smallest v in (lo, hi] with pred(v), for pred monotone false -> true and pred(hi) true."""
    while hi - lo > 1:
        mid = lo + (hi - lo) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _sorted_host(t: torch.Tensor) -> np.ndarray:
    """Sorted copy of a small tensor as a host array, for cheap repeated counting."""
    return torch.sort(t).values.cpu().numpy()


def _count_sorted(arr: np.ndarray, v: int) -> int:
    """How many entries of a sorted array are >= v."""
    return int(arr.size - np.searchsorted(arr, v, side="left"))


def _sample_bracket(
    keys: Sequence[torch.Tensor], fits: Callable[[Sequence[int]], bool], lo: int, hi: int
) -> tuple[int, int]:
    """Two probe keys likely just below and at the threshold, from a strided sample."""
    sizes = [k.numel() for k in keys]
    stride = max(1, math.ceil(sum(sizes) / _SAMPLE_ITEMS))
    samples = [_sorted_host(k[::stride]) for k in keys]

    def estimate(v: int, side: float) -> list[int]:
        out = []
        for arr, n in zip(samples, sizes):
            m = arr.size
            if m == 0:
                out.append(0)
                continue
            share = _count_sorted(arr, v) / m
            spread = n * math.sqrt(share * (1.0 - share) / m * max(0.0, 1.0 - m / n))
            guess = share * n + side * (_SAMPLE_SIGMAS * spread + stride)
            out.append(int(min(n, max(0.0, guess))))
        return out

    upper = _smallest_true(lo, hi, lambda v: fits(estimate(v, +1.0)))
    lower = _smallest_true(lo, hi, lambda v: fits(estimate(v, -1.0))) - 1
    return lower, upper


def _threshold(
    keys: Sequence[torch.Tensor],
    fits: Callable[[Sequence[int]], bool],
    lo: int,
    counts_lo: list[int],
    hi: int,
    counts_hi: list[int],
) -> tuple[int, list[int], list[int]]:
    """Smallest v in (lo, hi] whose counts fit, with the counts at v and at v - 1.

    Requires ``fits(counts_lo)`` false and ``fits(counts_hi)`` true.
    """

    def narrow(v: int) -> None:
        nonlocal lo, counts_lo, hi, counts_hi
        if lo < v < hi:
            counts = _count_at_least(keys, v)
            if fits(counts):
                hi, counts_hi = v, counts
            else:
                lo, counts_lo = v, counts

    def window_items() -> int:
        return sum(counts_lo) - sum(counts_hi)

    if window_items() > _WINDOW_ITEMS:
        for probe in _sample_bracket(keys, fits, lo, hi):
            narrow(probe)
    while window_items() > _WINDOW_ITEMS and hi - lo > 1:
        narrow(lo + (hi - lo) // 2)
    if hi - lo == 1:
        return hi, counts_hi, counts_lo
    window = [_sorted_host(k[(k > lo) & (k < hi)]) for k in keys]

    def counts_at(v: int) -> list[int]:
        if v == lo:
            return counts_lo
        return [c + _count_sorted(arr, v) for c, arr in zip(counts_hi, window)]

    v = _smallest_true(lo, hi, lambda v: fits(counts_at(v)))
    return v, counts_at(v), counts_at(v - 1)


def _select_prefix(
    keys: Sequence[torch.Tensor],
    fits: Callable[[Sequence[int]], bool],
    floor_key: int,
    tie_order: Callable[[int, torch.Tensor], torch.Tensor],
) -> tuple[list[torch.Tensor], list[int]]:
    """Longest prefix that fits of the order (key descending, tensor, tie_order).

    ``keys`` are 1-D integer tensors; only keys >= ``floor_key`` are eligible.
    ``fits`` takes per-tensor counts and must be monotone (true for fewer
    items if true for more) and true for no items. ``tie_order(i, idx)``
    orders the flat indices ``idx`` (ascending) of equal keys of tensor i.
    Returns bool masks and per-tensor counts.
    """
    counts_floor = _count_at_least(keys, floor_key)
    if fits(counts_floor):
        return [k >= floor_key for k in keys], counts_floor
    hi = int(torch.iinfo(keys[0].dtype).max)
    counts_hi = [0] * len(keys)
    v, counts, counts_tie = _threshold(keys, fits, floor_key, counts_floor, hi, counts_hi)
    masks = [k >= v for k in keys]
    # Items with key v - 1 come next in the order; take them by tensor, then tie order.
    for i, key in enumerate(keys):
        tied = counts_tie[i] - counts[i]
        if tied == 0:
            continue

        def fits_with(j: int, i: int = i) -> bool:
            return fits([*counts[:i], counts[i] + j, *counts[i + 1 :]])

        if fits_with(tied):
            taken = tied
        else:
            taken = _smallest_true(0, tied, lambda j: not fits_with(j)) - 1
        if taken > 0:
            idx = torch.nonzero(key == v - 1).view(-1)
            if taken < tied:
                idx = tie_order(i, idx)[:taken]
            masks[i][idx] = True
            counts[i] += taken
        if taken < tied:
            break
    return masks, counts
