"""Mapping search: per layer, the legal :class:`Mapping` that minimises an objective for the dense layer.

The space (``docs/systolic-model.md`` §4b): every order of the three fold loops (rows,
cols, time) times every stream tiling ``stream_tiles`` that divides the stream length T,
up to :data:`MAX_STREAM_TILES`. Orders that give the same fold sequence are evaluated
once (provable pruning): a loop with one iteration has no place in the order, so two
orders that agree once such loops are dropped are the same mapping. Every candidate is
evaluated by the one model (:func:`energysim.model.simulate_layer`, fold-level counts)
and priced by :func:`energysim.estimators.pricing.energy_breakdown`; the first candidate
with the least objective wins, in a fixed enumeration order that starts with SCALE-Sim's
mapping, so the search is deterministic and never worse than SCALE-Sim's mapping.

A compiler fixes the mapping for the dense layer; every sparsity pattern is then
evaluated on it (the mapping does not follow the mask).
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import permutations

import numpy as np

from ..dataflow import Dataflow
from ..estimators.pricing import AccessCounts, energy_breakdown
from ..report import empty_accesses
from ..spec import Profile
from ..workload import LayerSpec
from .folds import LOOPS, SCALESIM, Mapping
from .gemm import gemm_operands, input_footprint
from .layer import simulate_layer
from .memory import buffer_capacities, rf_counts

__all__ = ["MAX_STREAM_TILES", "OBJECTIVES", "bound_counts", "layer_mapping", "mapping_space", "search_mapping"]

#: Stream tilings beyond this many tiles are not searched: each tile repays the fold's
#: fill and drain, and 64 tiles already cut the largest output tile of the zoo's models
#: (ResNet-18 conv1, 12,544 x 16 words) below half of a 4 KiB output buffer.
MAX_STREAM_TILES = 64

OBJECTIVES = ("energy", "latency", "edp")


def mapping_space(layer: LayerSpec, dataflow: Dataflow, rows: int, cols: int) -> list[Mapping]:
    """Every distinct mapping of the documented space, SCALE-Sim's first.

    Examples
    --------
    >>> from energysim.dataflow import get_dataflow
    >>> fc = LayerSpec("fc", "linear", (64,), (10,), 64, 10, (1, 1), (1, 1), (0, 0), (1, 1), 1, False)
    >>> [m.name for m in mapping_space(fc, get_dataflow("ws"), 16, 16)]
    ['time>cols>rows/1']
    """
    row_extent, col_extent, length = dataflow.dim_sizes(layer.gemm)
    tiles = [n for n in range(1, min(length, MAX_STREAM_TILES) + 1) if length % n == 0]
    counts = {"rows": -(-row_extent // rows), "cols": -(-col_extent // cols)}
    seen = set()
    space = []
    for n in tiles:
        orders = [SCALESIM.order] + [o for o in permutations(LOOPS) if o != SCALESIM.order]
        for order in orders:
            trips = dict(counts, time=n)
            canonical = (tuple(loop for loop in order if trips[loop] > 1), n)
            if canonical in seen:
                continue
            seen.add(canonical)
            space.append(Mapping(order, n))
    return space


@lru_cache(maxsize=256)
def _dense_totals(layer: LayerSpec) -> tuple[int, int, int, int]:
    """Mapping-independent counts of the dense layer: effective MACs, valid input entries
    of X, distinct input elements (the input footprint) and weights."""
    ops = gemm_operands(layer, None, None)
    per_k_inputs = ops.x.sum(axis=1, dtype=np.int64)  # (G, K)
    per_k_weights = ops.w.sum(axis=2, dtype=np.int64)  # (G, K)
    effective = int((per_k_inputs * per_k_weights).sum())
    return effective, int(per_k_inputs.sum()), int(input_footprint(layer).sum()), int(per_k_weights.sum())


def _live_output_words(dataflow: Dataflow, order: tuple[str, ...], trips: dict, extents: dict, blocks: dict) -> int:
    """Most partial-sum words live at once when every fold runs: :func:`memory.live_output_words`
    in closed form. Output tiles span the places of M and N; the accumulating loop (K's)
    opens and closes them. Inside it, one tile is live; outside both others, all of them;
    between, the inner loop's tiles of one outer block."""
    acc = dataflow.place_of("K")
    b, c = dataflow.place_of("M"), dataflow.place_of("N")
    tile = min(blocks[b], extents[b]) * min(blocks[c], extents[c])
    at = order.index(acc)
    if trips[acc] == 1 or at == 2:
        return tile
    if at == 0:
        return extents[b] * extents[c]
    outer, inner = order[0], order[2]
    return min(blocks[outer], extents[outer]) * extents[inner]


def bound_counts(profile: Profile, layer: LayerSpec, dataflow: Dataflow, mapping: Mapping) -> AccessCounts:
    """Counts no larger than :func:`simulate_layer`'s for the dense layer on ``mapping``, in closed form.

    Valid when every fold runs (no tile of the dense layer is skipped). Exact for MACs,
    register files, buffer reads of inputs, partial sums and outputs at every level (and
    of weights stored ``dense``); DRAM reads of inputs and weights (and their buffer
    writes) are their unique footprints, which the model never goes below; the cycles
    are the compute cycles, or the DRAM words of the bound over the bandwidth when more
    (the one DRAM channel moves every word). Priced by the one pricing, so the energy,
    the cycles and their product bound the candidate's from below (every price is >= 0).
    """
    rows, cols = profile.array.rows, profile.array.cols
    m_size, k_size, n_size = layer.gemm
    groups = layer.groups
    row_extent, col_extent, length = dataflow.dim_sizes(layer.gemm)
    tiles = mapping.stream_tiles
    extents = {"rows": row_extent, "cols": col_extent, "time": length}
    blocks = {"rows": rows, "cols": cols, "time": length // tiles}
    trips = {place: -(-extents[place] // blocks[place]) for place in LOOPS}
    folds = groups * trips["rows"] * trips["cols"] * trips["time"]
    effective, valid_inputs, input_words, weight_count = _dense_totals(layer)
    slots = m_size * k_size * n_size * groups

    acc = empty_accesses()
    acc["rf"] = rf_counts(dataflow, slots, row_extent * col_extent * groups * tiles, effective)
    # Every input entry is streamed once per block of N, every weight once per block of M.
    acc["buffer"]["inputs"] = {"reads": valid_inputs * trips[dataflow.place_of("N")], "writes": input_words}
    acc["buffer"]["weights"] = {"reads": weight_count * trips[dataflow.place_of("M")], "writes": weight_count}
    acc["dram"]["inputs"]["reads"] = input_words
    acc["dram"]["weights"]["reads"] = weight_count
    outputs = m_size * n_size * groups
    passes = trips[dataflow.place_of("K")]
    live = _live_output_words(dataflow, mapping.order, trips, extents, blocks)
    capacity = buffer_capacities(profile.memory.buffer, 0, 0, live).outputs
    if capacity > 0 and live <= capacity / 2:
        acc["buffer"]["outputs"] = {"reads": outputs * passes, "writes": outputs * passes}
        acc["dram"]["outputs"] = {"reads": 0, "writes": outputs}
    else:
        through = outputs * (2 * passes - 1) if capacity > 0 else 0
        acc["buffer"]["outputs"] = {"reads": through, "writes": through}
        acc["dram"]["outputs"] = {"reads": outputs * (passes - 1), "writes": outputs * passes}

    preload = int(dataflow.preload) * rows
    busy = folds * dataflow.fold_cycles(rows, cols, blocks["time"]) - (preload * (folds - 1) if profile.array.preload_overlap else 0)
    bandwidth = profile.memory.dram.bandwidth_words_per_cycle
    dram_words = sum(rw["reads"] + rw["writes"] for rw in acc["dram"].values())
    total = busy if math.isinf(bandwidth) else max(busy, math.ceil(dram_words / bandwidth))
    return AccessCounts(acc, effective, slots - effective, max(total - 1, 0))


def _objective(profile: Profile, counts, objective: str) -> tuple[float, float, int]:
    """(objective, energy, cycles) of ``counts`` (LayerCounts or AccessCounts)."""
    energy = energy_breakdown(profile, AccessCounts(counts.accesses, counts.effective_macs, counts.gated_macs, counts.cycles))[0]
    value = {"energy": energy, "latency": float(counts.cycles), "edp": energy * counts.cycles}[objective]
    return value, energy, counts.cycles


def _every_fold_runs(profile: Profile, dataflow: Dataflow) -> bool:
    """Whether the dense layer runs every fold: no tile skipping, or skipping by weights (dense
    weight slices are never empty); input slices of a dense layer can be all padding."""
    return not profile.sparsity.skip_zero_tiles or dataflow.skip_operand == "weights"


def search_mapping(
    profile: Profile, layer: LayerSpec, dataflow: Dataflow, objective: str, *, prune: bool = True
) -> tuple[Mapping, list[dict]]:
    """The mapping of :func:`mapping_space` minimising ``objective`` for the dense layer.

    Candidates are evaluated by :func:`simulate_layer` (fold level) in the order of their
    :func:`bound_counts` objective; once a candidate's bound exceeds the best objective
    found (or equals it and the candidate comes later in :func:`mapping_space`), it and
    every later one cannot win and are not evaluated. The result is the first candidate
    of :func:`mapping_space` with the least objective, as without pruning.

    Parameters
    ----------
    profile : Profile
    layer : LayerSpec
    dataflow : Dataflow
    objective : {"energy", "latency", "edp"}
    prune : bool, default True
        False evaluates every candidate (the bound is used only when every fold of the
        dense layer runs, see :func:`bound_counts`).

    Returns
    -------
    best : Mapping
    evaluated : list of dict
        Per evaluated candidate, in :func:`mapping_space` order: ``mapping`` (its name),
        ``energy``, ``cycles``.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    rows, cols = profile.array.rows, profile.array.cols
    space = mapping_space(layer, dataflow, rows, cols)
    if prune and _every_fold_runs(profile, dataflow):
        bounds = [_objective(profile, bound_counts(profile, layer, dataflow, m), objective)[0] for m in space]
        visit = sorted(range(len(space)), key=lambda i: (bounds[i], i))
    else:
        bounds, visit = None, range(len(space))
    best, evaluated = None, {}
    for i in visit:
        if best is not None and bounds is not None and (bounds[i], i) > best:
            break  # sorted by (bound, index): no later candidate can win either
        counts = simulate_layer(profile, layer, dataflow, cycle_level=False, mapping=space[i])
        value, energy, cycles = _objective(profile, counts, objective)
        evaluated[i] = {"mapping": space[i].name, "energy": energy, "cycles": cycles}
        if best is None or (value, i) < best:
            best = (value, i)
    return space[best[1]], [evaluated[i] for i in sorted(evaluated)]


@lru_cache(maxsize=4096)
def layer_mapping(profile: Profile, layer: LayerSpec, dataflow: Dataflow) -> Mapping:
    """The mapping ``profile.mapping.search`` gives ``layer``: SCALE-Sim's, or the searched one."""
    if profile.mapping.search == "scalesim":
        return SCALESIM
    return search_mapping(profile, layer, dataflow, profile.mapping.search)[0]
