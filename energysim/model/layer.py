"""One layer on one array: folds, MACs, memory traffic, stalls and (optionally) the cycle trace.

Pure: (profile, layer, dataflow, masks) in, :class:`LayerCounts` out. Groups of a
grouped convolution run one after the other (their folds are concatenated in group
order).

Cycle convention (SCALE-Sim's): ``compute_cycles`` is the sum of the executed folds'
lengths minus one, because SCALE-Sim reports the 0-based index of the last cycle;
likewise ``cycles = compute_cycles + stall_cycles``, and the per-cycle trace has
``cycles + 1`` entries (cycles 0 to ``cycles``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import _kernels
from ..dataflow import Dataflow
from ..spec import Profile
from ..workload import LayerSpec
from .folds import SCALESIM, FoldPlan, Mapping, plan_folds
from .gemm import GemmOperands, gemm_operands, input_footprint, input_index
from .macs import block_effective_macs, fold_effective_macs, fold_slice_sums, weighted_block_sums
from .memory import (
    MemoryTraffic,
    buffer_capacities,
    first_occurrence_words,
    first_positions,
    output_tile_spans,
    rf_accesses,
    slice_elements,
    weight_words,
    window_words,
)
from .nm import NMView, nm_view

__all__ = ["LayerCounts", "cycle_trace", "fold_lead_cycles", "simulate_layer"]

# Above this many MAC slots the parallel trace kernel pays for its thread start-up.
_PARALLEL_SLOTS = 2_000_000


@dataclass
class LayerCounts:
    """Everything the systolic model counts for one layer.

    Attributes
    ----------
    plan : FoldPlan
    executed : numpy.ndarray of bool (F,)
        False for folds skipped as all-zero (``skip_zero_tiles``).
    effective : numpy.ndarray of int64 (F,)
        Effective MACs per fold (0 for skipped folds).
    fold_start : numpy.ndarray of int64 (F,)
        Start cycle of each executed fold after stalls (-1 for skipped folds).
    macs : int
        Nominal MACs, M*K*N*groups.
    effective_macs, gated_macs : int
        MAC slots of executed folds with both operands nonzero / with a zero operand.
    compute_cycles, stall_cycles, cycles : int
        See the module docstring for the convention.
    accesses : dict
        ``accesses[level][operand] = {"reads", "writes"}`` for dram, buffer, rf.
    traffic : MemoryTraffic
    trace : numpy.ndarray of int64 (cycles + 1, 3) or None
        Per cycle: effective, gated and idle PEs (only when simulated at cycle level).
    nm : NMView or None
        The compressed view when the profile's N:M array runs the layer compressed
        (:mod:`energysim.model.nm`); None when it runs dense.
    selections : int
        N:M operand selections: the MAC slots of the executed folds of a compressed layer, else 0.
    """

    plan: FoldPlan
    executed: np.ndarray
    effective: np.ndarray
    fold_start: np.ndarray
    macs: int
    effective_macs: int
    gated_macs: int
    compute_cycles: int
    stall_cycles: int
    cycles: int
    accesses: dict
    traffic: MemoryTraffic
    trace: np.ndarray | None = None
    nm: NMView | None = None
    selections: int = 0

    @property
    def utilization(self) -> float:
        """MAC slots executed / (PEs x cycles): SCALE-Sim's overall utilization when dense."""
        pes = self.plan.array_rows * self.plan.array_cols
        return (self.effective_macs + self.gated_macs) / (pes * self.cycles) if self.cycles else 0.0


@lru_cache(maxsize=1024)
def dense_input_slices(
    layer: LayerSpec, dataflow: Dataflow, rows: int, cols: int, mapping: Mapping = SCALESIM, window_words: float = 0.0
) -> tuple[np.ndarray, ...]:
    """Mask-independent input-slice counts (all folds executed): keys, valid words, and the
    distinct, first-touch and fetched elements (buffer window ``window_words``)."""
    plan = plan_folds(layer.gemm, layer.groups, dataflow, rows, cols, mapping)
    keys = plan.slice_key(("M", "K"))
    # The dense X is 1 at every valid (non-padding) entry.
    valid_words = fold_slice_sums(plan, None, ("M", "K"), _dense_block_sums(layer, dataflow, plan, "inputs"))
    unique, first, fetched = _input_slice_unique(layer, plan, keys, np.ones(plan.count, bool), window_words)
    for array in (keys, valid_words, unique, first, fetched):
        array.setflags(write=False)
    return keys, valid_words, unique, first, fetched


def _largest_input_slice(layer: LayerSpec, plan: FoldPlan, executed: np.ndarray, nm: NMView | None) -> int:
    """The most distinct input elements of one fold's slice (what a single-buffered input
    buffer must leave free for the fold's own slice, :func:`window_words`); 0 when
    double-buffered, where the window does not depend on it."""
    if not plan.mapping.single:
        return 0
    if nm is not None:
        return int(nm.input_slices(layer, plan, executed)[2].max(initial=0))
    offsets = _slice_elements(layer, plan.dataflow, plan.array_rows, plan.array_cols, plan.mapping.stream_tiles)[0]
    return int(np.diff(offsets).max(initial=0))


def _input_slice_unique(layer: LayerSpec, plan: FoldPlan, keys: np.ndarray, executed: np.ndarray, window_words: float):
    """Distinct, first-touched and fetched input elements of each fold's X slice (numba kernel)."""
    offsets, elements = _slice_elements(layer, plan.dataflow, plan.array_rows, plan.array_cols, plan.mapping.stream_tiles)
    n_elements = int(np.prod(layer.input_shape))
    return _kernels.slice_unique_counts(offsets, elements, keys, executed, n_elements, float(window_words))


@lru_cache(maxsize=16)
def _slice_elements(layer: LayerSpec, dataflow: Dataflow, rows: int, cols: int, stream_tiles: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`slice_elements` of the layer's input slices, cached: the slices (and their keys)
    depend on the blocks only, so every loop order of a stream tiling shares them."""
    plan = plan_folds(layer.gemm, layer.groups, dataflow, rows, cols, Mapping(stream_tiles=stream_tiles))
    m_start, k_start = plan.start_of("M"), plan.start_of("K")
    stop = (m_start + plan.extent_of("M"), k_start + plan.extent_of("K"))
    n_elements = int(np.prod(layer.input_shape))
    keys = plan.slice_key(("M", "K"))
    offsets, elements = slice_elements(input_index(layer), n_elements, keys, plan.group, m_start, stop[0], k_start, stop[1])
    for array in (offsets, elements):
        array.setflags(write=False)
    return offsets, elements


@lru_cache(maxsize=8)
def _dense_operands(layer: LayerSpec, dataflow: Dataflow) -> tuple[GemmOperands, dict[str, np.ndarray]]:
    """The dense layer's operands and their arrangement, read-only: a mapping search
    evaluates them once per candidate."""
    ops = gemm_operands(layer, None, None)
    arranged = dataflow.arrange(ops.x, ops.w)
    for array in (ops.x, ops.w, *arranged.values()):
        array.setflags(write=False)
    return ops, arranged


_SLICE_DIMS = {"inputs": ("M", "K"), "weights": ("K", "N")}


def _dense_block_sums(layer: LayerSpec, dataflow: Dataflow, plan: FoldPlan, operand: str) -> np.ndarray:
    """:func:`slice_block_sums` of the dense layer's ``operand`` under ``plan``'s blocks, cached:
    every loop order of a stream tiling (a mapping search's candidates) shares them."""
    d1, d2 = _SLICE_DIMS[operand]
    return _dense_block_sums_of(layer, dataflow, operand, plan.block_size_of(d1), plan.block_size_of(d2))


@lru_cache(maxsize=64)
def _dense_block_sums_of(layer: LayerSpec, dataflow: Dataflow, operand: str, size1: int, size2: int) -> np.ndarray:
    ops = _dense_operands(layer, dataflow)[0]
    summed = weighted_block_sums(ops.x if operand == "inputs" else ops.w, size1, size2)
    summed.setflags(write=False)
    return summed


@lru_cache(maxsize=64)
def _dense_block_effective(layer: LayerSpec, dataflow: Dataflow, rows: int, cols: int, tiles: int) -> np.ndarray:
    """:func:`block_effective_macs` of the dense layer (cached like :func:`_dense_block_sums`)."""
    per_block = block_effective_macs(_dense_operands(layer, dataflow)[1], rows, cols, tiles)
    per_block.setflags(write=False)
    return per_block


def _weight_slices(
    plan: FoldPlan, w: np.ndarray, profile: Profile, executed: np.ndarray, nm: NMView | None, summed: np.ndarray | None = None
) -> tuple[dict, int]:
    """Per-fold weight slice words (stored format; N:M slots and indices when compressed) and the largest per-group footprint."""
    keys = plan.slice_key(("K", "N"))
    nnz = fold_slice_sums(plan, w, ("K", "N"), summed)
    if nm is None:
        words = weight_words(nnz, plan.extent_of("K"), plan.extent_of("N"), profile.sparsity.weight_format, profile.word_bits)
    else:
        words = nm.stored_words(plan, profile.word_bits)
    at = first_positions(keys, plan.count)
    footprint = int(np.bincount(plan.group[at], weights=words[at], minlength=plan.groups).max(initial=0))
    info = {
        "keys": keys,
        "nnz": nnz,
        "buffer_words": words,
        "slice_words": words,
        "first_words": first_occurrence_words(keys, words, executed),
    }
    return info, footprint


def _transfer_cycles(words: np.ndarray | int, bandwidth: float) -> np.ndarray:
    """Whole cycles to move ``words`` over DRAM at ``bandwidth`` words/cycle (0 when unlimited)."""
    words = np.asarray(words, dtype=np.float64)
    if math.isinf(bandwidth):
        return np.zeros(words.shape, np.int64)
    return np.ceil(words / bandwidth).astype(np.int64)


def fold_lead_cycles(plan: FoldPlan, executed: np.ndarray, preload_overlap: bool) -> np.ndarray:
    """Per executed fold, the cycles of stationary preload before its skew starts (int64).

    R for every fold of a preloading dataflow (SCALE-Sim's timing); with
    ``preload_overlap`` (double-buffered PE registers) only the first executed fold pays
    it: every later tile is shifted in while the fold before it computes (a fold lasts at
    least R cycles, so the shift always fits).
    """
    lead = np.full(int(executed.sum()), int(plan.dataflow.preload) * plan.array_rows, np.int64)
    if preload_overlap:
        lead[1:] = 0
    return lead


def cycle_trace(
    plan: FoldPlan,
    arranged: dict[str, np.ndarray],
    executed: np.ndarray,
    fold_start: np.ndarray,
    length: int,
    dense: np.ndarray | None = None,
    nm: NMView | None = None,
    lead: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Step every executed fold cycle by cycle (numba): effective MACs and busy PEs per cycle.

    ``dense`` (bool per fold, optional) marks folds whose operand slices have no zero:
    their effective MACs equal their busy PEs, which the kernel then uses directly.
    ``nm`` (a compressed N:M layer): each PE multiplies the input row it selects.
    ``lead`` (per executed fold, default :func:`fold_lead_cycles` without overlap) is the
    preload before each fold's skew.

    Returns
    -------
    effective, active : numpy.ndarray of int32 (length,)
    """
    dummy = np.zeros((1, 1, 1), np.uint8)
    select = np.zeros((1, 1, 1), np.int32) if nm is None else nm.select
    origin = np.zeros(1, np.int64) if nm is None else nm.origin
    effective = np.zeros(length, np.int32)
    active = np.zeros(length, np.int32)
    run = np.flatnonzero(executed)
    dense = np.zeros(plan.count, bool) if dense is None else dense
    # Dense folds cost O(R + C + T) in the kernel; only the others are worth threads.
    slots = int(plan.mac_slots[run][~dense[run]].sum())
    kernel = _kernels.fold_trace_parallel if slots > _PARALLEL_SLOTS and run.size > 1 else _kernels.fold_trace
    lead = fold_lead_cycles(plan, executed, False) if lead is None else lead
    streamed = plan.dataflow.streamed
    kernel(
        arranged.get("stationary", dummy),
        arranged.get("row_stream", dummy),
        arranged.get("col_stream", dummy),
        "stationary" in arranged,
        "row_stream" in arranged,
        "col_stream" in arranged,
        dense[run],
        plan.group[run],
        plan.row_start[run],
        plan.rows_used[run],
        plan.col_start[run],
        plan.cols_used[run],
        plan.start_of(streamed)[run],
        fold_start[run],
        lead,
        plan.stream,
        effective,
        active,
        select,
        origin,
        0 if nm is None else nm.m,
    )
    return effective, active


def simulate_layer(
    profile: Profile,
    layer: LayerSpec,
    dataflow: Dataflow,
    weight_mask: np.ndarray | None = None,
    input_mask: np.ndarray | None = None,
    *,
    cycle_level: bool = True,
    mapping: Mapping = SCALESIM,
) -> LayerCounts:
    """Simulate one layer on ``profile``'s array with ``dataflow`` and ``mapping``.

    A layer whose weights satisfy the profile's ``sparsity.nm`` runs compressed along K
    (:mod:`energysim.model.nm`), its compressed GEMM folded under the same ``mapping``; any
    other layer (a weightless matmul included) runs as on the array without N:M.

    Parameters
    ----------
    profile : Profile
        Array size, buffers, DRAM bandwidth, weight format, ``skip_zero_tiles`` and ``nm``.
    layer : LayerSpec
    dataflow : Dataflow
    weight_mask, input_mask : numpy.ndarray of bool, optional
        Nonzero patterns shaped like the torch weight and one input sample; None is dense.
    cycle_level : bool, default True
        Step the array cycle by cycle (numba) and take the MAC counts and the trace
        from it; False counts the same MACs per fold in closed form (no trace).
    mapping : Mapping, default SCALESIM
        Loop order and stream tiling of the folds (one code path for any mapping;
        :func:`energysim.model.search.layer_mapping` picks one per ``mapping.search``).

    Returns
    -------
    LayerCounts
    """
    rows, cols = profile.array.rows, profile.array.cols
    unmasked = weight_mask is None and input_mask is None
    if unmasked:
        ops, arranged = _dense_operands(layer, dataflow)
    else:
        ops = gemm_operands(layer, weight_mask, input_mask)
        arranged = dataflow.arrange(ops.x, ops.w)
    # N:M compresses stored weights only: a matmul's second operand is an activation, run dense.
    compress = profile.sparsity.nm.enabled and layer.has_weights and weight_mask is not None
    nm = nm_view(ops.w, profile.sparsity.nm) if compress else None
    w = ops.w
    if nm is None:
        plan = plan_folds(layer.gemm, layer.groups, dataflow, rows, cols, mapping)
    else:
        # N:M: the GEMM view is compressed along K (M, K', N) and folded under the same mapping.
        m_size, _, n_size = layer.gemm
        plan = plan_folds((m_size, nm.slots, n_size), layer.groups, dataflow, rows, cols, mapping)
        w = nm.weights
        arranged = dataflow.arrange(ops.x, w)

    executed = np.ones(plan.count, bool)
    if profile.sparsity.skip_zero_tiles:
        skip_source = w if dataflow.skip_operand == "weights" else ops.x
        skip_dims = _SLICE_DIMS[dataflow.skip_operand]
        summed = _dense_block_sums(layer, dataflow, plan, dataflow.skip_operand) if unmasked else None
        executed = fold_slice_sums(plan, skip_source, skip_dims, summed) > 0

    summed = _dense_block_sums(layer, dataflow, plan, "weights") if unmasked else None
    weights, weight_footprint = _weight_slices(plan, w, profile, executed, nm, summed)
    in_footprint = int(input_footprint(layer).max())
    spans = output_tile_spans(plan, executed)
    caps = buffer_capacities(profile.memory.buffer, in_footprint, weight_footprint, spans[4], mapping.single)
    resident = {"inputs": in_footprint <= caps.inputs, "weights": weight_footprint <= caps.weights}
    window = 0.0 if resident["inputs"] else window_words(caps.inputs, mapping.single, _largest_input_slice(layer, plan, executed, nm))
    if nm is None:
        keys, valid_words, unique, first, fetched = dense_input_slices(layer, dataflow, rows, cols, mapping, window)
        if not executed.all():
            unique, first, fetched = _input_slice_unique(layer, plan, keys, executed, window)
    else:
        keys, valid_words, unique, first, fetched = nm.input_slices(layer, plan, executed, window)
    inputs = {"keys": keys, "buffer_words": valid_words, "slice_words": unique, "first_words": first, "fetched": fetched}
    traffic = MemoryTraffic.build(plan, executed, inputs, weights, resident, caps, spans)

    bandwidth = profile.memory.dram.bandwidth_words_per_cycle
    run = np.flatnonzero(executed)
    lead = fold_lead_cycles(plan, executed, profile.array.preload_overlap)
    fold_cycles = np.full(run.size, plan.fold_cycles, np.int64) - (int(plan.dataflow.preload) * rows - lead)
    start_run, total = _kernels.schedule_folds(
        fold_cycles,
        _transfer_cycles(traffic.fold_dram_reads[run], bandwidth),
        _transfer_cycles(traffic.fold_dram_writes[run], bandwidth),
        int(_transfer_cycles(traffic.final_dram_writes, bandwidth)),
        not mapping.single,
    )
    fold_start = np.full(plan.count, -1, np.int64)
    fold_start[run] = start_run
    busy = int(fold_cycles.sum())
    compute_cycles = max(busy - 1, 0)
    cycles = max(int(total) - 1, 0)

    trace = None
    if cycle_level:
        if nm is None:
            x_size = plan.extent_of("M") * plan.extent_of("K")
            x_nnz = valid_words if ops.dense_inputs else fold_slice_sums(plan, ops.x, ("M", "K"))
        else:
            k_lo, k_hi = nm.k_range(plan)
            x_size = plan.extent_of("M") * (k_hi - k_lo)
            x_nnz = valid_words if ops.dense_inputs else nm.input_slice_sums(plan, ops.x)
        w_size = plan.extent_of("K") * plan.extent_of("N")
        dense = (x_nnz == x_size) & (weights["nnz"] == w_size)
        eff_cycle, active = cycle_trace(plan, arranged, executed, fold_start, int(total), dense, nm, lead)
        effective = np.zeros(plan.count, np.int64)
        if run.size:
            # Each fold's sum runs to the next fold's start; stall cycles in between add 0.
            effective[run] = np.add.reduceat(eff_cycle, start_run, dtype=np.int64)
        pes = rows * cols
        trace = np.stack([eff_cycle, active - eff_cycle, pes - active], axis=1).astype(np.int64)
    else:
        if nm is not None:
            per_fold = nm.fold_effective_macs(plan, ops.x)
        else:
            per_block = _dense_block_effective(layer, dataflow, rows, cols, mapping.stream_tiles) if unmasked else None
            per_fold = fold_effective_macs(plan, arranged, per_block)
        effective = np.where(executed, per_fold, 0)

    slots = int(plan.mac_slots[executed].sum())
    effective_macs = int(effective.sum())
    accesses = traffic.accesses
    accesses["rf"] = rf_accesses(plan, executed, effective)
    return LayerCounts(
        plan=plan,
        executed=executed,
        effective=effective,
        fold_start=fold_start,
        macs=int(np.prod(layer.gemm)) * layer.groups,
        effective_macs=effective_macs,
        gated_macs=slots - effective_macs,
        compute_cycles=compute_cycles,
        stall_cycles=cycles - compute_cycles,
        cycles=cycles,
        accesses=accesses,
        traffic=traffic,
        trace=trace,
        nm=nm,
        selections=0 if nm is None else slots,
    )
