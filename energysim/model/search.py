"""Mapping search: per layer, the legal :class:`Mapping` that minimises an objective for the dense layer.

The space (``docs/systolic-model.md`` §4b): every order of the three fold loops (rows,
cols, time) times every stream tiling ``stream_tiles`` that divides the stream length T,
up to :data:`MAX_STREAM_TILES`, times the two bufferings (double, single). Orders that
give the same fold sequence are evaluated once (provable pruning): a loop with one
iteration has no place in the order, so two orders that agree once such loops are
dropped are the same mapping. Every candidate it
evaluates is counted by the one model (:func:`energysim.model.simulate_layer`, fold-level
counts) and priced by :func:`energysim.estimators.pricing.energy_breakdown`; the first
candidate with the least objective wins, in a fixed enumeration order that starts with
SCALE-Sim's mapping, so the search is deterministic and never worse than SCALE-Sim's
mapping. Candidates that provably cannot win are not evaluated: :func:`bound_counts`
gives, in closed form, counts never above the model's, and the search stops once the
bound of every remaining candidate exceeds the best objective found
(``docs/systolic-model.md`` §4b has the proof).

A compiler fixes the mapping for the dense layer; every sparsity pattern is then
evaluated on it (the mapping does not follow the mask).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import permutations

import numpy as np

from .. import _kernels
from ..dataflow import Dataflow
from ..estimators.pricing import AccessCounts, energy_breakdown
from ..report import empty_accesses
from ..spec import Profile
from ..workload import LayerSpec
from .folds import BUFFERINGS, LOOPS, SCALESIM, Mapping
from .gemm import input_footprint, input_index
from .layer import _dense_operands, simulate_layer
from .memory import buffer_capacities, outputs_fit, rf_counts, weight_words, window_words

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
    ['time>cols>rows/1', 'time>cols>rows/1/single']
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
            for buffering in BUFFERINGS:
                canonical = (tuple(loop for loop in order if trips[loop] > 1), n, buffering)
                if canonical in seen:
                    continue
                seen.add(canonical)
                space.append(Mapping(order, n, buffering))
    return space


@dataclass(frozen=True)
class _DenseFacts:
    """Mapping-independent counts of a dense layer (per group where an array)."""

    effective: int  # effective MACs
    valid_inputs: int  # valid (non-padding) entries of X
    footprint: np.ndarray  # (G,) distinct input elements
    weights: int  # weights, all groups
    prefix_m: np.ndarray  # (G, M + 1) running valid entries of X along M
    prefix_k: np.ndarray  # (G, K + 1) running valid entries of X along K
    multiplicity: int  # at least the most X entries one input element fills (kh * kw for a stride-1 conv)
    taps: int  # K entries per input channel (kh * kw; 1 for a linear layer): channel c is K's [c taps, (c + 1) taps)
    prefix_taps: np.ndarray  # (M + 1, taps) running valid entries of each tap of channel 0 (group 0) along M


def _multiplicity(layer: LayerSpec) -> int:
    """At least the most entries of X one input element fills: per spatial axis, the most taps
    of one residue modulo the stride (a linear layer's entries are distinct elements)."""
    if layer.kind in ("linear", "matmul"):
        return 1
    most = 1
    for taps, stride, dilation in zip(layer.kernel, layer.stride, layer.dilation):
        most *= int(np.bincount(np.arange(taps) * dilation % stride).max())
    return most


@lru_cache(maxsize=256)
def _dense_facts(layer: LayerSpec, dataflow: Dataflow) -> _DenseFacts:
    x = _dense_operands(layer, dataflow)[0].x
    per_k_inputs = x.sum(axis=1, dtype=np.int64)  # (G, K)
    per_m_inputs = x.sum(axis=2, dtype=np.int64)  # (G, M)
    zero = np.zeros((layer.groups, 1), np.int64)
    _, k_size, n_size = layer.gemm
    valid = int(per_k_inputs.sum())
    taps = 1 if layer.kind in ("linear", "matmul") else int(np.prod(layer.kernel))
    prefix_taps = np.zeros((x.shape[1] + 1, taps), np.int64)
    np.cumsum(x[0, :, :taps], axis=0, out=prefix_taps[1:])
    return _DenseFacts(
        effective=valid * n_size,  # every weight is nonzero: each valid X entry meets N of them
        valid_inputs=valid,
        footprint=input_footprint(layer),
        weights=layer.groups * k_size * n_size,
        prefix_m=np.concatenate([zero, per_m_inputs.cumsum(axis=1)], axis=1),
        prefix_k=np.concatenate([zero, per_k_inputs.cumsum(axis=1)], axis=1),
        multiplicity=_multiplicity(layer),
        taps=taps,
        prefix_taps=prefix_taps,
    )


def _block_sizes(extent: int, block: int) -> np.ndarray:
    """Sizes of the consecutive blocks of ``block`` that cut ``extent`` (the last may be short)."""
    edges = np.minimum(np.arange(0, extent + block, block), extent)
    return np.diff(edges[: -(-extent // block) + 1])


@dataclass(frozen=True)
class _Refetch:
    """What :func:`_refetch_words` needs of one operand under one stream tiling: the place of
    its reuse loop and, per place whose blocks a sweep can cover (``"whole"``: the whole
    group), the words the sweeps of one trip of the reuse loop fetch again, at least."""

    reuse: str
    excess: dict


def _refetch_words(order: tuple[str, ...], trips: dict, refetch: _Refetch | None) -> int:
    """Words an operand that is not resident must fetch beyond its footprint, at least.

    Its slices repeat along the reuse loop (the dimension it does not span): each trip of
    that loop after the first sweeps again the slices under one block of the loop outside
    it (or the whole group when it is outermost), and fetches at least ``excess`` of that
    place (``docs/systolic-model.md`` §4b). Innermost, consecutive folds share the slice:
    no bound.
    """
    if refetch is None:
        return 0
    loops = [loop for loop in order if trips[loop] > 1]
    reuse = refetch.reuse
    if reuse not in loops or loops.index(reuse) == len(loops) - 1:
        return 0
    swept = "whole" if loops.index(reuse) == 0 else loops[0]
    return (trips[reuse] - 1) * refetch.excess[swept]


def _weight_refetch(sizes: dict[str, np.ndarray], whole: np.ndarray, window: float, reuse: str) -> _Refetch:
    """:class:`_Refetch` of the weights (disjoint slices): ``sizes[place]`` (G, blocks) are the
    dense words under each block of ``place``, ``whole`` (G,) per group. A sweep of more
    than ``window`` words fetches every slice again: between two visits of a slice the
    sweep visits every other slice once, so a window reaching back to the last visit would
    hold all of them; stored words are at least the dense ones."""
    excess = {place: int(np.where(words > window, words, 0).sum()) for place, words in sizes.items()}
    excess["whole"] = int(np.where(whole > window, whole, 0).sum())
    return _Refetch(reuse, excess)


def _input_refetch(
    layer: LayerSpec, dataflow: Dataflow, facts: _DenseFacts, blocks: dict, trips: dict, windows: tuple[float, ...]
) -> list[_Refetch]:
    """:class:`_Refetch` of the inputs for each of ``windows``: per sweep the larger of two bounds.

    - The sweep's distinct words minus the window (the window holds at most its words
      when the sweep starts, and only moves on); a sweep's words are at least its valid
      X entries over the multiplicity.
    - A sweep of the K blocks of one M block (the outer loop is M's, or M has one block)
      whose slices add up to more than the window fetches, in every trip after the first,
      each slice's *private* elements (those no other K block of the sweep reads): the
      window never reaches back to the slice's last visit (:func:`_weight_refetch`), so it
      holds only the sweep's other slices. :func:`_sweep_counts` bounds both sums (once
      for all the windows).
    """
    m_size, k_size, _ = layer.gemm
    place_m, place_k = dataflow.place_of("M"), dataflow.place_of("K")
    m_edges = np.minimum(np.arange(trips[place_m] + 1) * blocks[place_m], m_size)
    k_edges = np.minimum(np.arange(trips[place_k] + 1) * blocks[place_k], k_size)
    m_valid, k_valid = np.diff(facts.prefix_m[:, m_edges], axis=1), np.diff(facts.prefix_k[:, k_edges], axis=1)
    # An input element fills at most `multiplicity` entries of X.
    distinct = {place_m: -(-m_valid // facts.multiplicity), place_k: -(-k_valid // facts.multiplicity)}
    several = min(blocks[place_k], k_size) < k_size  # one K block: the sweep has no other slice
    sweeps = _sweep_counts(layer, facts, m_edges, blocks[place_k]) if several else None
    out = []
    for window in windows:
        excess = {place: np.maximum(words - window, 0) for place, words in distinct.items()}
        excess["whole"] = np.maximum(facts.footprint - window, 0)
        if sweeps is not None:
            slices, private = sweeps
            again = np.where(slices > window, private, 0)  # (M blocks,), the same in every group
            excess[place_m] = np.maximum(excess[place_m], again[None, :])
            if trips[place_m] == 1:
                excess["whole"] = np.maximum(excess["whole"], again[0])
        out.append(_Refetch(dataflow.place_of("N"), {place: int(words.sum()) for place, words in excess.items()}))
    return out


def _sweep_counts(layer: LayerSpec, facts: _DenseFacts, m_edges: np.ndarray, k_block: int) -> tuple[np.ndarray, np.ndarray]:
    """Per M block (``m_edges``) of a group, at least the summed distinct elements of its K
    blocks' slices, and at least its private elements (read by one K block only).

    Channel c of a group is K's taps ``[c T, (c + 1) T)``; every channel reads the same
    positions (its offset aside), ``F`` distinct ones in the M block (counted on channel 0),
    and tap q reads ``V_q`` distinct ones (a tap reads each position once). A channel whose
    taps lie in one K block adds ``F`` to that slice, all of them private; a channel split
    over several K blocks adds to each at least the sum, over the residue classes of its
    taps there (:func:`_tap_residues`), of the largest ``V_q`` of the class, and at least
    ``F`` to all of them together.
    """
    taps = facts.taps
    channels = layer.gemm[1] // taps
    index = input_index(layer)
    starts = m_edges[:-1]
    zero = np.zeros(starts.size, np.int64)
    offsets, _ = _kernels.slice_elements(
        index, zero, starts, m_edges[1:], zero, np.full(starts.size, taps, np.int64), int(np.prod(layer.input_shape)),
        int(np.diff(m_edges).sum()) * taps,
    )  # fmt: skip
    reach = np.diff(offsets)  # F per M block
    per_tap = facts.prefix_taps[m_edges[1:]] - facts.prefix_taps[starts]  # V_q per M block, (blocks, taps)
    first = np.arange(channels) * taps // k_block
    last = (np.arange(channels) * taps + taps - 1) // k_block
    whole = int((first == last).sum())
    slices = whole * reach
    split = {}
    for c in np.flatnonzero(first != last):
        cuts = tuple(sorted({0, taps, *(b * k_block - c * taps for b in range(first[c] + 1, last[c] + 1))}))
        split[cuts] = split.get(cuts, 0) + 1
    residue = _tap_residues(layer, taps)
    for cuts, count in split.items():
        parts = sum(
            per_tap[:, lo:hi][:, residue[lo:hi] == r].max(axis=1) for lo, hi in zip(cuts, cuts[1:]) for r in np.unique(residue[lo:hi])
        )
        slices = slices + count * np.maximum(reach, parts)
    return slices, whole * reach


def _tap_residues(layer: LayerSpec, taps: int) -> np.ndarray:
    """Per tap of a channel, the residues of its positions modulo the stride (one class id): taps
    of different classes read disjoint positions (tap (i, j) reads rows = i d - p mod s)."""
    if layer.kind in ("linear", "matmul"):
        return np.zeros(taps, np.int64)
    (_, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
    i, j = np.divmod(np.arange(taps), kw)
    return (i * dh % sh) * sw + j * dw % sw


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


@dataclass(frozen=True)
class _TilingBound:
    """The parts of :func:`bound_counts` that every loop order of one stream tiling shares
    (the refetch bounds per buffering: ``inputs[single]``, ``weights[single]``)."""

    extents: dict
    blocks: dict
    trips: dict
    rf: dict
    inputs: dict
    weights: dict
    edges: tuple[int, int]
    busy: int


def _tiling_bound(profile: Profile, layer: LayerSpec, dataflow: Dataflow, tiles: int, first_inputs: int) -> _TilingBound:
    """:class:`_TilingBound` of ``tiles`` stream tiles; ``first_inputs``: the distinct valid
    input elements of the first fold's X block. The refetch bounds of each buffering take
    the window of a slice of no words (:func:`window_words`): never smaller than the
    model's, so they stay bounds."""
    rows, cols = profile.array.rows, profile.array.cols
    m_size, k_size, n_size = layer.gemm
    groups = layer.groups
    row_extent, col_extent, length = dataflow.dim_sizes(layer.gemm)
    extents = {"rows": row_extent, "cols": col_extent, "time": length}
    blocks = {"rows": rows, "cols": cols, "time": length // tiles}
    trips = {place: -(-extents[place] // blocks[place]) for place in LOOPS}
    place = {dim: dataflow.place_of(dim) for dim in "MKN"}
    facts = _dense_facts(layer, dataflow)
    slots = m_size * k_size * n_size * groups

    singles = (False, True)
    inputs = weights = dict.fromkeys(singles)
    buffer = profile.memory.buffer
    if not buffer.is_shared:
        # Refetch bounds need capacities that do not depend on the mapping.
        if int(facts.footprint.max()) > buffer.ifmap_words:
            windows = tuple(window_words(buffer.ifmap_words, single, 0) for single in singles)
            inputs = dict(zip(singles, _input_refetch(layer, dataflow, facts, blocks, trips, windows)))
        if k_size * n_size > buffer.filter_words:
            sizes = {
                place["K"]: np.tile(_block_sizes(k_size, blocks[place["K"]]) * n_size, (groups, 1)),
                place["N"]: np.tile(_block_sizes(n_size, blocks[place["N"]]) * k_size, (groups, 1)),
            }
            whole = np.full(groups, k_size * n_size, np.int64)
            weights = {single: _weight_refetch(sizes, whole, window_words(buffer.filter_words, single, 0), place["M"]) for single in singles}

    folds = groups * trips["rows"] * trips["cols"] * trips["time"]
    busy = folds * dataflow.fold_cycles(rows, cols, blocks["time"])
    if profile.array.preload_overlap:
        busy -= int(dataflow.preload) * rows * (folds - 1)  # only the first fold pays its preload
    return _TilingBound(
        extents=extents,
        blocks=blocks,
        trips=trips,
        rf=rf_counts(dataflow, slots, row_extent * col_extent * groups * tiles, facts.effective),
        inputs=inputs,
        weights=weights,
        edges=_edge_fold_words(profile, layer, dataflow, blocks, extents, trips, first_inputs),
        busy=busy,
    )


def _first_fold_inputs(layer: LayerSpec, dataflow: Dataflow, rows: int, cols: int, tilings: list[int]) -> dict[int, int]:
    """Per stream tiling, the distinct valid input elements of the first fold's X block
    ``[:m, :k]`` of group 0 (one element pass over those blocks)."""
    m_size, k_size, _ = layer.gemm
    length = dataflow.dim_sizes(layer.gemm)[2]
    blocks = {"rows": rows, "cols": cols}
    size = {}
    for dim, extent in (("M", m_size), ("K", k_size)):
        place = dataflow.place_of(dim)
        size[dim] = [min(extent, blocks[place] if place != "time" else length // n) for n in tilings]
    m_stop, k_stop = np.array(size["M"], np.int64), np.array(size["K"], np.int64)
    zero = np.zeros(len(tilings), np.int64)
    offsets, _ = _kernels.slice_elements(
        input_index(layer), zero, zero, m_stop, zero, k_stop, int(np.prod(layer.input_shape)), int((m_stop * k_stop).sum())
    )
    return dict(zip(tilings, np.diff(offsets).tolist()))


def bound_counts(profile: Profile, layer: LayerSpec, dataflow: Dataflow, mappings: list[Mapping]) -> AccessCounts:
    """Counts no larger than :func:`simulate_layer`'s for the dense layer on each of ``mappings``, in closed form.

    Valid when every fold runs (no tile of the dense layer is skipped). Exact for MACs,
    register files, buffer reads of inputs, partial sums and outputs at every level (and
    of weights stored ``dense``); DRAM reads of inputs and weights (and their buffer
    writes) are their unique footprints plus, for an operand that is not resident in a
    per-operand buffer, the refetch its loop order forces (:func:`_refetch_words`); the
    cycles are the compute cycles plus the first fold's fetch and the last fold's write
    back, or the DRAM words of the bound over the bandwidth when more (the one DRAM
    channel moves every word); single-buffered, the compute cycles plus those DRAM words
    over the bandwidth (no transfer overlaps a fold). Priced by the one pricing, so the energy, the cycles and
    their product bound the candidate's from below (every price is >= 0).

    Returns
    -------
    AccessCounts
        Every count an int64 array with one entry per mapping (the pricing prices them
        all in one pass).
    """
    m_size, k_size, n_size = layer.gemm
    groups = layer.groups
    place = {dim: dataflow.place_of(dim) for dim in "MKN"}
    facts = _dense_facts(layer, dataflow)
    slots = m_size * k_size * n_size * groups
    bandwidth = profile.memory.dram.bandwidth_words_per_cycle
    tilings = sorted({m.stream_tiles for m in mappings})
    first = _first_fold_inputs(layer, dataflow, profile.array.rows, profile.array.cols, tilings)
    shared = {n: _tiling_bound(profile, layer, dataflow, n, first[n]) for n in tilings}
    outputs = m_size * n_size * groups
    rows = []
    for mapping in mappings:
        t = shared[mapping.stream_tiles]
        input_words = int(facts.footprint.sum()) + _refetch_words(mapping.order, t.trips, t.inputs[mapping.single])
        weight_words = facts.weights + _refetch_words(mapping.order, t.trips, t.weights[mapping.single])
        acc = empty_accesses()
        acc["rf"] = t.rf
        # Every input entry is streamed once per block of N, every weight once per block of M.
        acc["buffer"]["inputs"] = {"reads": facts.valid_inputs * t.trips[place["N"]], "writes": input_words}
        acc["buffer"]["weights"] = {"reads": facts.weights * t.trips[place["M"]], "writes": weight_words}
        acc["dram"]["inputs"]["reads"] = input_words
        acc["dram"]["weights"]["reads"] = weight_words
        passes = t.trips[place["K"]]
        live = _live_output_words(dataflow, mapping.order, t.trips, t.extents, t.blocks)
        capacity = buffer_capacities(profile.memory.buffer, 0, 0, live, mapping.single).outputs
        if outputs_fit(live, capacity, mapping.single):
            acc["buffer"]["outputs"] = {"reads": outputs * passes, "writes": outputs * passes}
            acc["dram"]["outputs"] = {"reads": 0, "writes": outputs}
        else:
            through = outputs * (2 * passes - 1) if capacity > 0 else 0
            acc["buffer"]["outputs"] = {"reads": through, "writes": through}
            acc["dram"]["outputs"] = {"reads": outputs * (passes - 1), "writes": outputs * passes}
        total = t.busy
        if not math.isinf(bandwidth):
            dram_words = sum(rw["reads"] + rw["writes"] for rw in acc["dram"].values())
            if mapping.single:  # no transfer overlaps a fold
                total = t.busy + math.ceil(dram_words / bandwidth)
            else:
                edges = sum(math.ceil(words / bandwidth) for words in t.edges)
                total = max(t.busy + edges, math.ceil(dram_words / bandwidth))
        rows.append((acc, max(total - 1, 0)))
    stacked = {
        level: {op: {kind: np.array([acc[level][op][kind] for acc, _ in rows], np.int64) for kind in rw} for op, rw in ops.items()}
        for level, ops in rows[0][0].items()
    }
    n = len(mappings)
    effective = np.full(n, facts.effective, np.int64)
    return AccessCounts(stacked, effective, slots - effective, np.array([c for _, c in rows], np.int64))


def _edge_fold_words(
    profile: Profile, layer: LayerSpec, dataflow: Dataflow, blocks: dict, extents: dict, trips: dict, first_inputs: int
) -> tuple[int, int]:
    """DRAM words, at least, fetched before the first fold and written after the last one.

    The first fold (group 0, block 0 of every loop) finds nothing on chip: it fetches its
    whole weight slice and every distinct valid element of its input slice
    (``first_inputs``). The last fold (the last block of every loop) ends its output
    tile: it writes the tile back.
    """
    first = {dim: min(blocks[dataflow.place_of(dim)], extents[dataflow.place_of(dim)]) for dim in "KN"}
    last = {}
    for dim in "MN":
        place = dataflow.place_of(dim)
        last[dim] = extents[place] - (trips[place] - 1) * blocks[place]
    k = first["K"]
    weights = weight_words(
        np.array([k * first["N"]]), np.array([k]), np.array([first["N"]]), profile.sparsity.weight_format, profile.word_bits
    )
    return int(weights[0]) + first_inputs, last["M"] * last["N"]


def _objective(profile: Profile, counts, objective: str):
    """(objective, energy, cycles) of ``counts`` (LayerCounts or AccessCounts; arrays price elementwise)."""
    energy = energy_breakdown(profile, AccessCounts(counts.accesses, counts.effective_macs, counts.gated_macs, counts.cycles))[0]
    value = {"energy": energy, "latency": counts.cycles * 1.0, "edp": energy * counts.cycles}[objective]
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
        bounds = _objective(profile, bound_counts(profile, layer, dataflow, space), objective)[0].tolist()
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
