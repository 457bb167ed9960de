"""Slow, obvious reference implementations that fast code is tested against.

Each section below is self-contained and serves one module.
"""

from __future__ import annotations

import itertools

import numpy as np

# ---------------------------------------------------------------------------
# Weighted sparse projection (compress.projection)
#
# Costs are read by attribute (name, per_weight, per_weight_overflow,
# breakpoint, constant), weights and scores are torch tensors; nothing here
# imports the code under test.
# ---------------------------------------------------------------------------


def _ratio_dtype(weights):
    """The precision compress.projection documents: float64 if any weight is float64, else float32."""
    return np.float64 if any(str(w.dtype) == "torch.float64" for w in weights.values()) else np.float32


def naive_layer_energy(cost, kept):
    """constant + per_weight for the first `breakpoint` kept weights + overflow cost for the rest."""
    energy = cost.constant
    for position in range(kept):
        in_buffer = cost.breakpoint is None or position < cost.breakpoint
        energy += cost.per_weight if in_buffer else cost.per_weight_overflow
    return energy


def naive_greedy_order(weights, costs):
    """Every weight of every layer as (name, flat_index, cost, ratio), in greedy order.

    Within a layer weights are ranked by |w| descending then flat index; the
    rank decides the cost. The global order is ratio descending, then layer
    order, then rank. Zero-ratio items are left out (they are never kept).
    """
    dtype = _ratio_dtype(weights)
    items = []
    for layer, (name, tensor) in enumerate(weights.items()):
        cost = costs[name]
        values = tensor.detach().cpu().double().reshape(-1).numpy().astype(dtype)
        ranked = sorted(range(values.size), key=lambda i: (-abs(float(values[i])), i))
        for rank, index in enumerate(ranked):
            in_buffer = cost.breakpoint is None or rank < cost.breakpoint
            c = cost.per_weight if in_buffer else cost.per_weight_overflow
            ratio = (values[index] * values[index]) / dtype(c)
            if ratio > 0:
                items.append((-float(ratio), layer, rank, name, index, c, float(ratio)))
    items.sort()
    return [(name, index, c, ratio) for _, _, _, name, index, c, ratio in items]


def naive_greedy_masks(weights, costs, budget):
    """Sort + cumulative sum: keep items in greedy order while constants + cumsum <= budget."""
    masks = {name: np.zeros(tuple(w.shape), dtype=bool) for name, w in weights.items()}
    spent = sum(cost.constant for cost in costs.values())
    for name, index, c, _ in naive_greedy_order(weights, costs):
        if spent + c > budget:
            break
        spent += c
        masks[name].reshape(-1)[index] = True
    return masks


def exhaustive_best_value(weights, costs, capacity):
    """Max sum of w**2 over all subsets of weights whose energy is <= capacity (n <= 12)."""
    names = list(weights)
    values = [w.detach().cpu().double().reshape(-1).numpy() for w in weights.values()]
    sizes = [v.size for v in values]
    n = sum(sizes)
    if n > 12:
        raise ValueError(f"exhaustive search is for at most 12 weights, got {n}")
    squares = np.concatenate(values) ** 2 if n else np.zeros(0)
    subsets = np.array(list(itertools.product((False, True), repeat=n)), dtype=bool).reshape(-1, n)
    energy = np.zeros(len(subsets))
    start = 0
    for name, size in zip(names, sizes):
        per_count = np.array([naive_layer_energy(costs[name], j) for j in range(size + 1)])
        energy += per_count[subsets[:, start : start + size].sum(axis=1)]
        start += size
    feasible = energy <= capacity * (1 + 1e-12) + 1e-12
    return float((subsets[feasible] @ squares).max())


def naive_topk_masks(scores, k):
    """Sort all entries by (score descending, tensor order, flat index) and keep the first k."""
    entries = []
    for position, (name, tensor) in enumerate(scores.items()):
        values = tensor.detach().cpu().double().reshape(-1).numpy()
        entries.extend((-float(v), position, i, name) for i, v in enumerate(values))
    entries.sort()
    masks = {name: np.zeros(tuple(t.shape), dtype=bool) for name, t in scores.items()}
    for _, _, index, name in entries[:k]:
        masks[name].reshape(-1)[index] = True
    return masks
