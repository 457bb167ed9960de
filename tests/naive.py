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


# ---------------------------------------------------------------------------
# Systolic array, cycle by cycle (energysim.model, energysim.estimators.systolic)
#
# Plain loops over every PE of every cycle of every fold, from SCALE-Sim's
# conventions written out again here (nothing imported from energysim): WS maps
# (rows, cols, streamed) = (K, N, M), OS = (M, N, K), IS = (K, M, N); a fold is
# preload*R + (R - 1) + T + (C - 1) cycles and PE (r, c) does stream step t in
# fold cycle preload*R + r + c + t. Folds run back to back: column block outer,
# row block inner, groups one after another.
# ---------------------------------------------------------------------------

NAIVE_DATAFLOWS = {"ws": ("K", "N", "M", True), "os": ("M", "N", "K", False), "is": ("K", "M", "N", True)}


def naive_im2col(input_mask, layer):
    """X[g, m, k] for a conv layer (padding = False); K ordered (c, i, j) (the loops of :func:`naive_input_ids`)."""
    ids = naive_input_ids(layer)
    return (ids >= 0) & np.asarray(input_mask, bool).reshape(-1)[np.maximum(ids, 0)]


def naive_systolic_trace(x, w, dataflow, rows, cols):
    """Per-cycle (effective, gated, idle) PE counts and per-fold effective MACs.

    SCALE-Sim's fold order (column block outer, row block inner, one stream tile): the
    loops of :func:`naive_mapped_trace`, defined below.

    Parameters
    ----------
    x : bool array (G, M, K); w : bool array (G, K, N)
    dataflow : "ws", "os" or "is"
    rows, cols : array size

    Returns
    -------
    trace : int array (cycles, 3)
    fold_effective : list of int, in fold order
    """
    return naive_mapped_trace(x, w, dataflow, rows, cols, ("time", "cols", "rows"), 1)


# ---------------------------------------------------------------------------
# Skip groups of a systolic array (energysim.model.groups)
#
# Loops over every weight of the torch-shaped weight: its GEMM coordinates (group g,
# window index k, filter n within the group) and the block each falls in.
# ---------------------------------------------------------------------------


def naive_weight_groups(weight_shape, conv_groups, dataflow, rows, cols):
    """Skip group of every weight: WS tiles (g, k // rows, n // cols); OS slices (g, n // cols)."""
    out_channels = weight_shape[0]
    k_total = int(np.prod(weight_shape[1:]))
    n_total = out_channels // conv_groups
    k_block = rows if dataflow == "ws" else k_total
    k_blocks = -(-k_total // k_block)
    n_blocks = -(-n_total // cols)
    ids = np.zeros((out_channels, k_total), np.int64)
    for o in range(out_channels):
        g, n = divmod(o, n_total)
        for k in range(k_total):
            ids[o, k] = (g * k_blocks + k // k_block) * n_blocks + n // cols
    return ids.reshape(weight_shape)


# ---------------------------------------------------------------------------
# Structured projection (compress.structured)
#
# Costs are read by attribute (name, groups, group_cost, per_weight,
# constant); weights are torch tensors. Plain loops over weights and groups,
# explicit hulls and exhaustive subset searches; nothing imported from the
# code under test.
# ---------------------------------------------------------------------------


def _structured_layers(weights, costs):
    """Per layer: (name, float64 values, group ids, group costs, per_weight, constant), flat, as lists."""
    layers = []
    for name, tensor in weights.items():
        cost = costs[name]
        values = tensor.detach().cpu().double().reshape(-1).tolist()
        groups = cost.groups.detach().cpu().reshape(-1).tolist()
        layers.append((name, values, groups, cost.group_cost.tolist(), float(cost.per_weight), float(cost.constant)))
    return layers


def naive_group_energy(cost, pattern):
    """constant + per_weight per nonzero + group_cost once for each group holding a nonzero."""
    values = pattern.detach().cpu().reshape(-1).tolist()
    groups = cost.groups.detach().cpu().reshape(-1).tolist()
    charges = cost.group_cost.tolist()
    energy = float(cost.constant)
    paid = set()
    for value, group in zip(values, groups):
        if value != 0:
            energy += float(cost.per_weight)
            if group not in paid:
                paid.add(group)
                energy += charges[group]
    return energy


def _greedy_prefix(weights, costs, items, budget):
    """Keep items (cost, name, flat indices) in the given order while constants + cumsum <= budget."""
    masks = {name: np.zeros(tuple(w.shape), dtype=bool) for name, w in weights.items()}
    spent = sum(float(c.constant) for c in costs.values())
    for item_cost, name, indices in items:
        if spent + item_cost > budget:
            break
        spent += item_cost
        masks[name].reshape(-1)[list(indices)] = True
    return masks


def naive_tile_order(weights, costs):
    """Whole groups as (cost, name, nonzero flat indices), by value / cost descending, then layer, group id."""
    items = []
    for layer, (name, values, groups, charges, per_weight, _) in enumerate(_structured_layers(weights, costs)):
        for group in range(len(charges)):
            indices = [i for i, g in enumerate(groups) if g == group and values[i] != 0]
            value = sum(values[i] ** 2 for i in indices)
            if value > 0:
                cost = charges[group] + per_weight * len(indices)
                items.append((-(value / cost), layer, group, cost, name, indices))
    items.sort(key=lambda item: item[:3])
    return [(cost, name, indices) for _, _, _, cost, name, indices in items]


def naive_tile_masks(weights, costs, budget):
    """Sort groups by value / cost and keep the longest prefix that fits (cumulative sum)."""
    return _greedy_prefix(weights, costs, naive_tile_order(weights, costs), budget)


def naive_hybrid_order(weights, costs):
    """Hull segments of every group as (cost, name, flat indices), in greedy order.

    Per group, positive-ratio weights are ranked by |w| descending then flat
    index; the bundle is the top j maximising V_j / (F + j c), the largest j
    on ties (scanned one j at a time); every later weight is its own segment
    of ratio w**2 / c. Single-weight ratios are computed in the working
    precision, bundle ratios in float64. Order: ratio descending, bundle
    before singles, layer, group id, rank.
    """
    dtype = _ratio_dtype(weights)
    items = []
    for layer, (name, values, groups, charges, per_weight, _) in enumerate(_structured_layers(weights, costs)):
        ratios = []
        for v in values:
            square = dtype(v) * dtype(v)
            if per_weight == 0:
                ratios.append(np.inf if square > 0 else 0.0)
            else:
                ratios.append(float(square / dtype(per_weight)))
        for group in range(len(charges)):
            members = [i for i, g in enumerate(groups) if g == group and ratios[i] > 0]
            ranked = sorted(members, key=lambda i: (-abs(values[i]), i))
            best, best_j, value = -1.0, 0, 0.0
            for j, i in enumerate(ranked, start=1):
                value += values[i] ** 2
                ratio = value / (charges[group] + j * per_weight)
                if ratio >= best:
                    best, best_j = ratio, j
            if best_j == 0:
                continue
            cost = charges[group] + best_j * per_weight
            items.append(((-best, 0, layer, group, 0), cost, name, ranked[:best_j]))
            for rank in range(best_j, len(ranked)):
                i = ranked[rank]
                items.append(((-ratios[i], 1, layer, group, rank), per_weight, name, [i]))
    items.sort(key=lambda item: item[0])
    return [(cost, name, indices) for _, cost, name, indices in items]


def naive_hybrid_masks(weights, costs, budget):
    """Explicit hulls, sorted segments, longest prefix that fits (cumulative sum)."""
    return _greedy_prefix(weights, costs, naive_hybrid_order(weights, costs), budget)


def _feasible(energy, capacity):
    return energy <= capacity * (1 + 1e-12) + 1e-12


def naive_best_groups(weights, costs, capacity):
    """Max sum of w**2 over all sets of whole groups whose energy is <= capacity (<= 12 nonzero groups)."""
    items = []
    for name, values, groups, charges, per_weight, _ in _structured_layers(weights, costs):
        for group in range(len(charges)):
            indices = [i for i, g in enumerate(groups) if g == group and values[i] != 0]
            if indices:
                items.append((sum(values[i] ** 2 for i in indices), charges[group] + per_weight * len(indices)))
    if len(items) > 12:
        raise ValueError(f"exhaustive search is for at most 12 nonzero groups, got {len(items)}")
    floor = sum(float(c.constant) for c in costs.values())
    best = 0.0
    for chosen in itertools.product((False, True), repeat=len(items)):
        energy = floor + sum(cost for (_, cost), keep in zip(items, chosen) if keep)
        if _feasible(energy, capacity):
            best = max(best, sum(value for (value, _), keep in zip(items, chosen) if keep))
    return best


def naive_best_hybrid(weights, costs, capacity):
    """Max sum of w**2 over all subsets of the nonzero weights whose energy is <= capacity (<= 14 weights)."""
    entries = []  # (layer, group, square, per_weight)
    charges_of = {}
    for layer, (_, values, groups, charges, per_weight, _) in enumerate(_structured_layers(weights, costs)):
        for i, v in enumerate(values):
            if v != 0:
                entries.append((layer, groups[i], v * v, per_weight))
                charges_of[(layer, groups[i])] = charges[groups[i]]
    n = len(entries)
    if n > 14:
        raise ValueError(f"exhaustive search is for at most 14 nonzero weights, got {n}")
    if n == 0:
        return 0.0
    subsets = np.array(list(itertools.product((False, True), repeat=n)), dtype=bool).reshape(-1, n)
    squares = np.array([e[2] for e in entries])
    energy = np.full(len(subsets), sum(float(c.constant) for c in costs.values()))
    energy += subsets @ np.array([e[3] for e in entries])
    for key, charge in charges_of.items():
        columns = [k for k, e in enumerate(entries) if (e[0], e[1]) == key]
        energy += charge * subsets[:, columns].any(axis=1)
    feasible = _feasible(energy, capacity)
    return float((subsets[feasible] @ squares).max())


# ---------------------------------------------------------------------------
# N:M-compressed weight-stationary array (energysim.model.nm)
#
# Written out again from the definition: every group of m consecutive
# weights along K of a column holds at most n nonzeros; a column is stored as n
# slots per group (the group's nonzeros in K order, then empty slots), the last
# group min(K % m, n) slots; the array maps the slots to its rows (WS), every PE
# of slot row s sees the m input columns of its group and multiplies the one its
# weight came from. Plain loops over columns, groups, folds, cycles and PEs.
# ---------------------------------------------------------------------------


def naive_nm_compress(w, n, m):
    """Per group g: (slots, select) lists of K' x N (slot holds a weight, its K index), or None if w violates n:m."""
    groups, k_size, n_size = w.shape
    slots_per_column = (k_size // m) * n + min(k_size % m, n)
    out = []
    for g in range(groups):
        slots = [[False] * n_size for _ in range(slots_per_column)]
        select = [[0] * n_size for _ in range(slots_per_column)]
        for col in range(n_size):
            slot = 0
            for start in range(0, k_size, m):
                kept = [k for k in range(start, min(start + m, k_size)) if w[g, k, col]]
                if len(kept) > n:
                    return None
                width = min(n, min(start + m, k_size) - start)
                for j in range(width):
                    if j < len(kept):
                        slots[slot][col] = True
                        select[slot][col] = kept[j]
                    else:
                        select[slot][col] = start
                    slot += 1
        out.append((slots, select))
    return out


def naive_nm_systolic(x, elements, w, n, m, rows, cols, word_bits, skip_zero_tiles=False):
    """An n:m layer on a rows x cols WS array with unlimited bandwidth, cycle by cycle.

    Parameters
    ----------
    x : bool (G, M, K), the nonzero inputs (im2col view)
    elements : int (G, M, K), the input element of each entry, -1 for padding
    w : bool (G, K, N), n:m-compliant

    Returns
    -------
    dict: trace (cycles, 3) of (effective, gated, idle) PEs, fold_effective (executed folds),
    cycles (SCALE-Sim's last-cycle index), effective_macs, gated_macs, selections,
    input_buffer_reads, weight_buffer_reads (slots + index bits per fold slice),
    input_elements (distinct input elements the executed folds read)
    """
    compressed = naive_nm_compress(w, n, m)
    groups, m_size, k_size = x.shape
    n_size = w.shape[2]
    slots_per_column = len(compressed[0][0])
    fold_len = rows + rows - 1 + m_size + cols - 1
    index_bits = (m - 1).bit_length()
    trace, fold_effective = [], []
    result = dict(effective_macs=0, gated_macs=0, selections=0, input_buffer_reads=0, weight_buffer_reads=0)
    touched = set()
    for g in range(groups):
        slots, select = compressed[g]
        for cb in range(-(-n_size // cols)):
            for rb in range(-(-slots_per_column // rows)):
                rows_here = [s for s in range(rb * rows, (rb + 1) * rows) if s < slots_per_column]
                cols_here = [c for c in range(cb * cols, (cb + 1) * cols) if c < n_size]
                if skip_zero_tiles and not any(slots[s][c] for s in rows_here for c in cols_here):
                    continue
                # Input columns of the groups the fold's slot rows belong to.
                k_lo = rows_here[0] // n * m
                k_hi = min(rows_here[-1] // n * m + m, k_size)
                for i in range(m_size):
                    for k in range(k_lo, k_hi):
                        if elements[g, i, k] >= 0:
                            result["input_buffer_reads"] += 1
                            touched.add(int(elements[g, i, k]))
                tile = len(rows_here) * len(cols_here)
                result["weight_buffer_reads"] += tile + -(-tile * index_bits // word_bits)
                eff_fold = 0
                for tau in range(fold_len):
                    counts = [0, 0, 0]
                    for r in range(rows):
                        for c in range(cols):
                            t = tau - rows - r - c
                            s, col = rb * rows + r, cb * cols + c
                            if not (0 <= t < m_size and s < slots_per_column and col < n_size):
                                counts[2] += 1
                                continue
                            result["selections"] += 1
                            if slots[s][col] and x[g, t, select[s][col]]:
                                counts[0] += 1
                                eff_fold += 1
                            else:
                                counts[1] += 1
                    trace.append(counts)
                fold_effective.append(eff_fold)
                result["effective_macs"] += eff_fold
                result["gated_macs"] += tile * m_size - eff_fold
    result["trace"] = np.array(trace, dtype=np.int64).reshape(-1, 3)
    result["fold_effective"] = fold_effective
    result["cycles"] = max(len(trace) - 1, 0)
    result["input_elements"] = len(touched)
    return result


# ---------------------------------------------------------------------------
# N:M-structured projection (compress.nm)
#
# Costs are read by attribute (n, m, dense and nm, each with per_weight,
# per_weight_overflow, breakpoint, constant); weights are torch tensors whose rows
# (dim 0) are GEMM columns and whose flattened rest is K. Exhaustive subset
# searches; nothing imported from the code under test.
# ---------------------------------------------------------------------------


def _naive_rows(weight):
    values = weight.detach().cpu().double().reshape(weight.shape[0], -1).numpy()
    return [list(map(float, row)) for row in values]


def naive_is_nm(kept_rows, n, m):
    """Whether every run of m consecutive K positions of every row keeps at most n (kept_rows: lists of bool)."""
    return all(sum(row[s : s + m]) <= n for row in kept_rows for s in range(0, len(row), m))


def naive_nm_price(cost, kept_rows):
    """Energy of one layer keeping kept_rows: the nm price when N:M, else the dense price."""
    mode = cost.nm if naive_is_nm(kept_rows, cost.n, cost.m) else cost.dense
    return naive_layer_energy(mode, sum(map(sum, kept_rows)))


def _naive_first_violation(rows, n, m):
    """Smallest k whose top-k by |w| (ties: lower flat index) violates n:m; len + 1 when none does."""
    flat = [(abs(v), i) for i, v in enumerate(x for row in rows for x in row) if v != 0]
    flat.sort(key=lambda t: (-t[0], t[1]))
    width = len(rows[0])
    kept = [[False] * width for _ in rows]
    for k, (_, i) in enumerate(flat, start=1):
        kept[i // width][i % width] = True
        if not naive_is_nm(kept, n, m):
            return k
    return len(flat) + 1


def naive_nm_options(weight, cost, family_only):
    """Every (energy, value, kept_rows) of one layer: all subsets of its nonzero weights, priced as the
    array runs them; with family_only, violating subsets smaller than the first violating top-k are left out."""
    rows = _naive_rows(weight)
    width = len(rows[0])
    nonzero = [i for i, v in enumerate(x for row in rows for x in row) if v != 0]
    k0 = _naive_first_violation(rows, cost.n, cost.m)
    options = []
    for chosen in itertools.product((False, True), repeat=len(nonzero)):
        kept = [[False] * width for _ in rows]
        value = 0.0
        for take, i in zip(chosen, nonzero):
            if take:
                kept[i // width][i % width] = True
                value += rows[i // width][i % width] ** 2
        if family_only and not naive_is_nm(kept, cost.n, cost.m) and sum(chosen) < k0:
            continue
        options.append((naive_nm_price(cost, kept), value, kept))
    return options


def naive_best_nm(weights, costs, capacity, family_only=True):
    """Max total value over one option per layer with total energy <= capacity (None if none fits)."""
    per_layer = [naive_nm_options(weights[name], costs[name], family_only) for name in weights]
    best = None
    for combo in itertools.product(*per_layer):
        if sum(o[0] for o in combo) <= capacity * (1 + 1e-12):
            value = sum(o[1] for o in combo)
            best = value if best is None else max(best, value)
    return best


# ---------------------------------------------------------------------------
# Mapped folds and their memory traffic (energysim.model.folds.Mapping, energysim.model.memory)
#
# Folds are generated by explicit nested loops in the mapping's order, slices are Python
# sets of element ids, and the buffer is replayed fold by fold. Dense weights, per-operand
# buffers, every fold executed.
# ---------------------------------------------------------------------------


def naive_mapped_folds(sizes, groups, dataflow, rows, cols, order, stream_tiles):
    """Folds as (g, row block, col block, stream tile) tuples in execution order."""
    row_dim, col_dim, stream_dim, _ = NAIVE_DATAFLOWS[dataflow]
    trips = {"rows": -(-sizes[row_dim] // rows), "cols": -(-sizes[col_dim] // cols), "time": stream_tiles}
    folds = []
    for g in range(groups):
        for i0 in range(trips[order[0]]):
            for i1 in range(trips[order[1]]):
                for i2 in range(trips[order[2]]):
                    at = dict(zip(order, (i0, i1, i2)))
                    folds.append((g, at["rows"], at["cols"], at["time"]))
    return folds


def _fold_ranges(fold, sizes, dataflow, rows, cols, stream_tiles):
    """Index range of M, K and N a fold covers."""
    row_dim, col_dim, stream_dim, _ = NAIVE_DATAFLOWS[dataflow]
    _, rb, cb, sb = fold
    tile = sizes[stream_dim] // stream_tiles
    return {
        row_dim: range(rb * rows, min(sizes[row_dim], (rb + 1) * rows)),
        col_dim: range(cb * cols, min(sizes[col_dim], (cb + 1) * cols)),
        stream_dim: range(sb * tile, (sb + 1) * tile),
    }


def naive_mapped_trace(x, w, dataflow, rows, cols, order, stream_tiles, preload_overlap=False):
    """Per-cycle (effective, gated, idle) PE counts and per-fold effective MACs under a mapping.

    Like :func:`naive_systolic_trace`, with the folds of :func:`naive_mapped_folds`; with
    ``preload_overlap`` only the first fold spends R cycles on the preload.
    """
    row_dim, col_dim, stream_dim, preload = NAIVE_DATAFLOWS[dataflow]
    groups, m_size, k_size = x.shape
    sizes = {"M": m_size, "K": k_size, "N": w.shape[2]}
    stream = sizes[stream_dim] // stream_tiles
    trace, fold_effective = [], []
    for number, fold in enumerate(naive_mapped_folds(sizes, groups, dataflow, rows, cols, order, stream_tiles)):
        g, rb, cb, sb = fold
        lead = rows if preload and not (preload_overlap and number > 0) else 0
        eff_fold = 0
        for tau in range(lead + rows - 1 + stream + cols - 1):
            counts = [0, 0, 0]
            for r in range(rows):
                for c in range(cols):
                    t = tau - lead - r - c
                    idx = {row_dim: rb * rows + r, col_dim: cb * cols + c, stream_dim: sb * stream + t}
                    if not (0 <= t < stream and idx[row_dim] < sizes[row_dim] and idx[col_dim] < sizes[col_dim]):
                        counts[2] += 1
                        continue
                    if x[g, idx["M"], idx["K"]] and w[g, idx["K"], idx["N"]]:
                        counts[0] += 1
                        eff_fold += 1
                    else:
                        counts[1] += 1
            trace.append(counts)
        fold_effective.append(eff_fold)
    return np.array(trace, dtype=np.int64).reshape(-1, 3), fold_effective


def naive_input_ids(layer):
    """Flat input element id of every X[g, m, k] (-1 for padding), by explicit loops."""
    if layer.kind == "linear":
        m, k, _ = layer.gemm
        return np.arange(m * k).reshape(1, m, k)
    c_in, h, w = layer.input_shape
    _, h_out, w_out = layer.output_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel, layer.stride, layer.padding, layer.dilation
    cg = c_in // layer.groups
    ids = np.full((layer.groups, h_out * w_out, cg * kh * kw), -1)
    for g in range(layer.groups):
        for ho in range(h_out):
            for wo in range(w_out):
                for c in range(cg):
                    for i in range(kh):
                        for j in range(kw):
                            row, col = ho * sh - ph + i * dh, wo * sw - pw + j * dw
                            if 0 <= row < h and 0 <= col < w:
                                ids[g, ho * w_out + wo, (c * kh + i) * kw + j] = ((g * cg + c) * h + row) * w + col
    return ids


def _replay(slices, capacity, single=False):
    """DRAM words per fold of one operand: ``slices`` (key, set of element ids) in fold order.

    Resident (the largest group's distinct elements fit ``capacity``, the caller says so by
    passing capacity=None): an element comes once. Otherwise the buffer keeps the most
    recent folds whose distinct slices add up to at most capacity / 2 (``single``-buffered:
    capacity less the largest slice), and a fold fetches the elements no fold of that
    window touched.
    """
    fetched, seen = [], set()
    if capacity is not None:
        window = max(capacity - max(len(e) for _, e in slices), 0) if single else capacity / 2
    for f, (_, elements) in enumerate(slices):
        if capacity is None:
            fetched.append(len(elements - seen))
            seen |= elements
            continue
        on_chip, total, counted = set(), 0, set()
        for key, earlier in reversed(slices[:f]):
            if key not in counted:
                if total + len(earlier) > window:
                    break
                total += len(earlier)
                counted.add(key)
            on_chip |= earlier
        fetched.append(len(elements - on_chip))
    return fetched


def naive_mapped_traffic(layer, dataflow, rows, cols, order, stream_tiles, caps, single=False):
    """DRAM reads of inputs and weights per fold, and the output counts, of a dense layer.

    ``caps`` = (input, weight, output) buffer words; ``single``: single-buffered (the whole
    buffer keeps live data). Returns a dict with ``inputs`` and ``weights`` (lists per
    fold) and ``outputs`` (dram reads, dram writes, buffer reads, buffer writes: totals).
    """
    ids = naive_input_ids(layer)
    groups = ids.shape[0]
    m_size, k_size, n_size = layer.gemm
    sizes = {"M": m_size, "K": k_size, "N": n_size}
    folds = naive_mapped_folds(sizes, groups, dataflow, rows, cols, order, stream_tiles)
    x_slices, w_slices, o_slices = [], [], []
    for fold in folds:
        g = fold[0]
        span = _fold_ranges(fold, sizes, dataflow, rows, cols, stream_tiles)
        xs = {int(ids[g, m, k]) for m in span["M"] for k in span["K"] if ids[g, m, k] >= 0}
        x_slices.append(((g, span["M"].start, span["K"].start), xs))
        w_slices.append(((g, span["K"].start, span["N"].start), {(g, k, n) for k in span["K"] for n in span["N"]}))
        o_slices.append(((g, span["M"].start, span["N"].start), len(span["M"]) * len(span["N"])))
    x_footprint = max(len({int(i) for i in ids[g].ravel() if i >= 0}) for g in range(groups))
    out = {
        "inputs": _replay(x_slices, None if x_footprint <= caps[0] else caps[0], single),
        "weights": _replay(w_slices, None if k_size * n_size <= caps[1] else caps[1], single),
    }
    first = {key: f for f, (key, _) in reversed(list(enumerate(o_slices)))}
    last = {key: f for f, (key, _) in enumerate(o_slices)}
    live = max(sum(words for key, words in dict(o_slices).items() if first[key] <= f <= last[key]) for f in range(len(folds)))
    tile_words = [words for _, words in o_slices]
    back = sum(words for f, (key, words) in enumerate(o_slices) if first[key] != f)
    if caps[2] > 0 and live <= (caps[2] if single else caps[2] / 2):
        drained = sum(words for f, (key, words) in enumerate(o_slices) if last[key] == f)
        out["outputs"] = (0, drained, back + drained, sum(tile_words))
    elif caps[2] > 0:
        out["outputs"] = (back, sum(tile_words), sum(tile_words) + back, sum(tile_words) + back)
    else:
        out["outputs"] = (back, sum(tile_words), 0, 0)
    return out


# ---------------------------------------------------------------------------
# Two-budget projection (compress.latency)
#
# Whole groups priced twice (energy and cycles, both read by attribute as in
# the structured section); an exhaustive subset search.
# ---------------------------------------------------------------------------


def naive_best_groups_two(weights, energy_costs, cycle_costs, energy_cap, cycle_cap):
    """Max sum of w**2 over the sets of whole groups with energy <= energy_cap and cycles <= cycle_cap (<= 12 groups)."""
    items = []
    for name, values, groups, charges, per_weight, _ in _structured_layers(weights, energy_costs):
        cycles = cycle_costs[name]
        cycle_charges = cycles.group_cost.tolist()
        for group in range(len(charges)):
            indices = [i for i, g in enumerate(groups) if g == group and values[i] != 0]
            if indices:
                items.append((
                    sum(values[i] ** 2 for i in indices),
                    charges[group] + per_weight * len(indices),
                    cycle_charges[group] + float(cycles.per_weight) * len(indices),
                ))
    if len(items) > 12:
        raise ValueError(f"exhaustive search is for at most 12 nonzero groups, got {len(items)}")
    energy_floor = sum(float(c.constant) for c in energy_costs.values())
    cycle_floor = sum(float(c.constant) for c in cycle_costs.values())
    best = 0.0
    for chosen in itertools.product((False, True), repeat=len(items)):
        kept = [item for item, keep in zip(items, chosen) if keep]
        if _feasible(energy_floor + sum(i[1] for i in kept), energy_cap) and _feasible(
            cycle_floor + sum(i[2] for i in kept), cycle_cap
        ):
            best = max(best, sum(i[0] for i in kept))
    return best
