"""Every numba kernel of compress. Arrays and scalars in, arrays out; no globals.

Each kernel also runs as plain Python (``NUMBA_DISABLE_JIT=1``, see
tests/test_kernels_nojit.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from energysim._kernels import _named


@njit(cache=True)
def threshold(t, out, g, tiny):
    """out[g] = the least positive number of out's dtype that is >= t (float64, >= 0), so that
    ``ratio >= out[g]`` iff ``ratio >= t and ratio > 0`` for ratios of that dtype (``tiny``,
    the smallest positive one, has that dtype)."""
    out[g] = t  # rounded to nearest
    if np.float64(out[g]) < t:
        # Towards 2 * out[g] (same dtype, larger; np.inf would make numba step in float64).
        out[g] = np.nextafter(out[g], out[g] + out[g])
    if out[g] < tiny:
        out[g] = tiny


@njit(cache=True)
def group_order(groups, n_groups, order):
    """Weight indices sorted by group id, ascending within a group (a counting sort) into
    ``order`` (an int array as long as ``groups``), each group's start in that order
    (``order[start[g]:start[g + 1]]`` are the weights of group g), and the used groups by
    their first weight (the visiting order that walks memory forwards)."""
    start = np.zeros(n_groups + 1, dtype=np.int64)
    visit = np.empty(n_groups, dtype=np.int64)
    used = 0
    for i in range(groups.size):
        g = groups[i]
        if start[g + 1] == 0:
            visit[used] = g
            used += 1
        start[g + 1] += 1
    for g in range(n_groups):
        start[g + 1] += start[g]
    fill = start[:-1].copy()
    for i in range(groups.size):
        g = groups[i]
        order[fill[g]] = i
        fill[g] += 1
    return order, start, visit[:used]


def _hybrid_bundles(ratio, flat, order, start, visit, charges, per_weight, tiny):
    """Bundle of every group of one layer by Dinkelbach iteration; zeroes the members' ratios.

    ``ratio`` (w**2 / c, float32 or float64) and ``flat`` (the weights, same dtype) of
    one layer, its groups as :func:`group_order` gives them (only the groups of ``visit``
    are worked on: the others hold no weight); ``charges`` float64 per group;
    ``per_weight`` the float64 cost c; ``tiny`` the smallest positive ratio. Per group,
    with ``S(t) = {ratio >= t}`` (t rounded up to the ratio dtype, and at least
    ``tiny``): ``t0 = V / (F + c nnz)`` over the whole group, then
    ``t <- max(t, V(S) / (F + c |S|))`` until no weight leaves S. Sums of ``w**2`` are
    float64 in ascending index order. Returns ``(r_star, size, members, passes)``: per
    group the final t and |S| (float64, int64; 0 for unused groups), the members (group
    g's are ``members[start[g]:start[g] + size[g]]``, ascending) and the most filtering
    passes a group took. ``ratio`` is 0 at the members on return. Groups are independent: the parallel variant gives the same
    result.
    """
    n_groups = charges.size
    t = np.zeros(n_groups)
    size = np.zeros(n_groups, dtype=np.int64)
    passes = np.zeros(n_groups, dtype=np.int64)
    thr = np.empty(n_groups, dtype=ratio.dtype)
    candidates = np.empty(flat.size, dtype=order.dtype)
    for v in prange(visit.size):
        g = visit[v]
        a, b = start[g], start[g + 1]
        value = 0.0
        nonzero = 0
        for j in range(a, b):
            x = np.float64(flat[order[j]])
            value += x * x
            nonzero += x != 0
            candidates[j] = order[j]
        t[g] = value / (charges[g] + per_weight * np.float64(nonzero))
        # Each pass keeps the candidates at or above the threshold and sums them for the next t.
        n = b - a
        while True:
            threshold(t[g], thr, g, tiny)
            cut = thr[g]
            kept = a
            value = 0.0
            for j in range(a, a + n):
                i = candidates[j]
                candidates[kept] = i
                stay = ratio[i] >= cut
                x = np.float64(flat[i])
                value += x * x if stay else 0.0
                kept += stay
            passes[g] += 1
            if kept - a == n and passes[g] > 1:
                break
            n = kept - a
            if n == 0:
                break
            t[g] = max(t[g], value / (charges[g] + per_weight * np.float64(n)))
        size[g] = n
        for j in range(a, a + n):
            i = candidates[j]
            ratio[i] = 0
    return t, size, candidates, passes.max() if n_groups else 0


# Serial and parallel wraps under their own names (see energysim._kernels: one cache entry per name).
hybrid_bundles = njit(cache=True)(_named(_hybrid_bundles, "hybrid_bundles"))
hybrid_bundles_parallel = njit(cache=True, parallel=True)(_named(_hybrid_bundles, "hybrid_bundles_parallel"))


@njit(cache=True)
def mark_kept(mask, members, start, size, kept):
    """``mask[i] = True`` on the members of the groups ``kept`` (as :func:`hybrid_bundles` returns them)."""
    for g in kept:
        for j in range(start[g], start[g] + size[g]):
            mask[members[j]] = True


@njit(cache=True)
def group_sums(flat, groups, n_groups):
    """Per group: the sum of ``w**2`` (float64, in ascending index order) and the number of nonzero weights."""
    value = np.zeros(n_groups)
    count = np.zeros(n_groups, dtype=np.int64)
    for i in range(flat.size):
        x = np.float64(flat[i])
        value[groups[i]] += x * x
        count[groups[i]] += x != 0
    return value, count
