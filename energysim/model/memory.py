"""Memory traffic of a layer: DRAM, global buffer and register-file accesses per operand.

The model (docs/systolic-model.md has the worked version):

- **Slices.** Each fold reads a slice of every operand: the fold's block along each
  array-mapped dimension and its stream tile of the streamed one (SCALE-Sim: all of it;
  WS: ``X[:, Kb]`` and
  ``W[Kb, Nb]``; OS: ``X[Mb, :]`` and ``W[:, Nb]``; IS: ``X[Mb, Kb]`` and ``W[Kb, :]``).
- **Buffer reads** are the words streamed into the array: the slice's valid input
  words (padding is generated, not read) and the slice's stored weight words. Dense,
  these are SCALE-Sim's ifmap and filter SRAM reads.
- **Weight storage.** ``dense``: every word; ``bitmask``: nonzeros plus one bit per
  position (``ceil(size / word_bits)`` words); ``csr``: nonzeros plus one column
  index each plus ``rows + 1`` row pointers, per fold slice (rows along K).
- **DRAM reads (refetch by loop order).** An operand whose per-group footprint fits
  its buffer capacity is *resident*: each word comes from DRAM once (the first fold
  that touches it). Otherwise the buffer keeps a window: before each fold it holds the
  slices of the most recent executed folds whose distinct slices add up to at most
  :func:`window_words` (double buffering, the default: half its capacity, the other half
  being filled; a single-buffered mapping: the capacity less the operand's largest slice,
  where the fold's own slice arrives), and the fold fetches the words of its slice that
  no fold of the window touched. Input slices overlap
  (im2col), so their DRAM words are counted element by element
  (:func:`energysim._kernels.slice_unique_counts`): a slice reuses whatever the window
  left of it. Weight slices are disjoint (:func:`fetch_words`).
- **Outputs.** Folds that differ only in the accumulated dimension add partial sums into
  the same output tile ``O[M block, N block]``. A tile is live from its first executed
  fold to its last; if the most words live at once (:func:`live_output_words`) fit half
  the output buffer (all of it when single-buffered, :func:`outputs_fit`), partial sums
  stay in the buffer (a write per fold, a read back per later fold, a read to drain) and
  DRAM sees the final outputs once; otherwise every
  fold writes its partial sums to DRAM and every later fold reads them back, passing
  through the buffer both ways (a write and a read each way), unless the output buffer
  has no words. Output tiles with no executed fold are still written (zeros).
- **Register files** (per PE): the stationary operand is written once per mapped PE
  per fold; a moving operand (and the partial sums moving down the columns in WS/IS)
  is latched once per MAC slot, gated or not; an effective MAC reads its weight, its
  input and its partial sum (OS also writes its accumulator; it is read once more to
  drain at the end of the fold). Gated MACs read nothing.
- **Shared buffer.** Twice the most live output words (once when single-buffered) are
  reserved first, if that fits in half the buffer; the rest is divided between inputs and
  weights in proportion to their footprints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _kernels
from ..report import OPERANDS, empty_accesses
from .folds import FoldPlan

__all__ = [
    "WEIGHT_FORMATS",
    "Capacities",
    "MemoryTraffic",
    "buffer_capacities",
    "fetch_words",
    "first_occurrence_words",
    "first_positions",
    "live_output_words",
    "output_tile_spans",
    "output_traffic",
    "outputs_fit",
    "rf_accesses",
    "rf_counts",
    "rf_fold_accesses",
    "slice_elements",
    "weight_words",
    "window_words",
]

WEIGHT_FORMATS = ("dense", "bitmask", "csr")


def weight_words(nnz: np.ndarray, k_extent: np.ndarray, n_extent: np.ndarray, weight_format: str, word_bits: int) -> np.ndarray:
    """Stored words of weight slices with ``nnz`` nonzeros and shape ``k_extent x n_extent``.

    Examples
    --------
    >>> import numpy as np
    >>> weight_words(np.array([3]), np.array([4]), np.array([4]), "bitmask", 8)
    array([5])
    """
    size = k_extent * n_extent
    if weight_format == "dense":
        return size.astype(np.int64)
    if weight_format == "bitmask":
        return (nnz + -(-size // word_bits)).astype(np.int64)
    if weight_format == "csr":
        return (2 * nnz + k_extent + 1).astype(np.int64)
    raise ValueError(f"weight_format must be one of {', '.join(WEIGHT_FORMATS)}, got {weight_format!r}")


@dataclass(frozen=True)
class Capacities:
    """Buffer words available to each operand."""

    inputs: float
    weights: float
    outputs: float


def buffer_capacities(buffer, input_footprint: int, weight_footprint: int, output_tile_words: int, single: bool = False) -> Capacities:
    """Per-operand capacities of the global buffer (``profile.memory.buffer``).

    A shared buffer first reserves twice ``output_tile_words`` (the most output words live
    at once; once if ``single``-buffered) when that fits in half of it, then splits the
    rest between inputs and weights in proportion to their footprints.
    """
    if not buffer.is_shared:
        return Capacities(buffer.ifmap_words, buffer.filter_words, buffer.ofmap_words)
    total = buffer.shared_words
    reserved = output_tile_words * (1 if single else 2)
    outputs = reserved if reserved <= total / 2 else 0
    rest = total - outputs
    share = input_footprint / max(1, input_footprint + weight_footprint)
    return Capacities(rest * share, rest * (1 - share), outputs)


def window_words(capacity: float, single: bool, largest_slice: int) -> float:
    """Buffer words that keep an operand's recent slices (the window of the module docstring).

    Double-buffered, half of ``capacity`` (the other half receives the next fold's slice
    while the array computes); ``single``-buffered, the rest of the buffer once the fold's
    own slice (at most ``largest_slice`` words) has arrived.

    Examples
    --------
    >>> window_words(1000, False, 300), window_words(1000, True, 300)
    (500.0, 700.0)
    """
    return max(float(capacity) - largest_slice, 0.0) if single else capacity / 2


def outputs_fit(live: int, capacity: float, single: bool) -> bool:
    """Whether ``live`` partial-sum words stay in an output buffer of ``capacity`` words:
    half of it when double-buffered (the other half drains finished tiles), all of it when
    ``single``-buffered (finished tiles drain before the next fold starts)."""
    return capacity > 0 and live <= (capacity if single else capacity / 2)


def fetch_words(
    keys: np.ndarray,
    slice_words: np.ndarray,
    first_words: np.ndarray,
    executed: np.ndarray,
    resident: bool,
    window: float,
) -> np.ndarray:
    """DRAM words each fold fetches for an operand with disjoint slices (see the module docstring).

    Parameters
    ----------
    keys : int array (F,)
        Slice identity per fold.
    slice_words : int array (F,)
        Words of the fold's slice.
    first_words : int array (F,)
        Words of the slice no earlier executed fold fetched.
    executed : bool array (F,)
    resident : bool
        Whether the operand's per-group footprint fits its buffer.
    window : float
        Buffer words that keep the most recent slices (:func:`window_words`).
    """
    if resident:
        return np.where(executed, first_words, 0)
    n_keys = int(keys.max(initial=-1)) + 1
    return _kernels.window_fetch(keys, slice_words.astype(np.int64), executed, float(window), n_keys)


def _first_last(keys: np.ndarray, at: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Per key, the first and the last of the positions ``at`` (in order) holding it; -1 for none."""
    first = np.full(n_keys, -1, np.int64)
    last = np.full(n_keys, -1, np.int64)
    first[keys[at][::-1]] = at[::-1]  # the last assignment of a key wins: its first position
    last[keys[at]] = at
    return first, last


def first_positions(keys: np.ndarray, count: int) -> np.ndarray:
    """The first of the positions ``0 .. count-1`` holding each key present in ``keys``, in key order."""
    first, _ = _first_last(keys, np.arange(count), int(keys.max(initial=-1)) + 1)
    return first[first >= 0]


def first_occurrence_words(keys: np.ndarray, slice_words: np.ndarray, executed: np.ndarray) -> np.ndarray:
    """``slice_words`` at the first executed fold of each key, 0 elsewhere (disjoint slices)."""
    words = np.zeros_like(slice_words)
    first, _ = _first_last(keys, np.flatnonzero(executed), int(keys.max(initial=-1)) + 1)
    at = first[first >= 0]
    words[at] = slice_words[at]
    return words


def slice_elements(
    index: np.ndarray, n_elements: int, keys: np.ndarray, group: np.ndarray, m_start: np.ndarray, m_stop: np.ndarray, k_start: np.ndarray, k_stop: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per slice key, the distinct valid input elements of the X slice of the folds holding it.

    ``index`` is :func:`energysim.model.gemm.input_index` (G, M, K) of an input of
    ``n_elements`` elements; the other arrays are per
    fold (equal keys are equal slices ``index[group, m_start:m_stop, k_start:k_stop]``).
    Returns ``offsets`` (n_keys + 1,) and ``elements`` (int32) as
    :func:`energysim._kernels.slice_elements`; a key no fold holds has none.
    """
    n_keys = int(keys.max(initial=-1)) + 1
    first, _ = _first_last(keys, np.arange(keys.size), n_keys)
    held = first >= 0
    at = np.where(held, first, 0)
    m_lo, m_hi = np.where(held, m_start[at], 0), np.where(held, m_stop[at], 0)
    k_lo, k_hi = np.where(held, k_start[at], 0), np.where(held, k_stop[at], 0)
    size = int(((m_hi - m_lo) * (k_hi - k_lo)).sum())
    return _kernels.slice_elements(index, group[at], m_lo, m_hi, k_lo, k_hi, n_elements, size)


def output_tile_spans(plan: FoldPlan, executed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Output-tile keys and words per fold, whether each executed fold is its tile's first /
    last, and the most words live at once (:func:`live_output_words`)."""
    keys = plan.slice_key(("M", "N"))
    tile = plan.extent_of("M") * plan.extent_of("N")
    at_first, at_last = _first_last(keys, np.flatnonzero(executed), int(keys.max(initial=-1)) + 1)
    first = np.zeros(plan.count, bool)
    last = np.zeros(plan.count, bool)
    first[at_first[at_first >= 0]] = True
    last[at_last[at_last >= 0]] = True
    return keys, tile, first, last, _live_words(tile, first, last, executed)


def _live_words(tile: np.ndarray, first: np.ndarray, last: np.ndarray, executed: np.ndarray) -> int:
    if not executed.any():
        return 0
    change = np.where(first, tile, 0) - np.where(last, tile, 0)
    return int((np.cumsum(change[executed]) + np.where(last, tile, 0)[executed]).max())


def live_output_words(plan: FoldPlan, executed: np.ndarray) -> int:
    """Most partial-sum words live at once: tiles between their first and last executed fold.

    With SCALE-Sim's order a tile's folds are consecutive and this is one tile; with the
    row loop outside the column loop (WS, IS) every column block's tile is live at once.
    """
    return output_tile_spans(plan, executed)[4]


def output_traffic(plan: FoldPlan, executed: np.ndarray, capacity: float, spans: tuple | None = None) -> dict[str, np.ndarray | int]:
    """Partial-sum and output traffic per fold (see the module docstring); ``spans`` is
    :func:`output_tile_spans` of the same folds, when the caller has it.

    Returns
    -------
    dict
        ``buffer_reads``, ``buffer_writes``, ``dram_reads`` (needed before the fold),
        ``dram_writes`` (after the fold): int64 arrays (F,); ``final_dram_writes``:
        words of output tiles no executed fold produced; ``tile_words``: the most words
        live at once; ``on_chip``: whether partial sums stay in the buffer.
    """
    keys, tile, first, last, live = output_tile_spans(plan, executed) if spans is None else spans
    zero = np.zeros(plan.count, np.int64)
    fits = outputs_fit(live, capacity, plan.mapping.single)
    produced_words = np.where(executed, tile, 0)
    read_back = np.where(executed & ~first, tile, 0)
    if fits:
        buffer_writes = produced_words
        buffer_reads = read_back + np.where(last, tile, 0)
        dram_reads = zero
        dram_writes = np.where(last, tile, 0)
    else:
        dram_reads = read_back
        dram_writes = produced_words
        if capacity > 0:
            # Spilled partial sums pass through the buffer both ways: written from the
            # array and read out to DRAM; read back from DRAM into it and out to the array.
            buffer_writes = produced_words + read_back
            buffer_reads = produced_words + read_back
        else:
            buffer_writes = buffer_reads = zero
    n_keys = int(keys.max(initial=-1)) + 1
    produced = np.zeros(n_keys, bool)
    produced[keys[executed]] = True
    any_fold, _ = _first_last(keys, np.arange(plan.count), n_keys)
    final = int(tile[any_fold[~produced]].sum())
    return {
        "buffer_reads": buffer_reads,
        "buffer_writes": buffer_writes,
        "dram_reads": dram_reads,
        "dram_writes": dram_writes,
        "final_dram_writes": final,
        "tile_words": live,
        "on_chip": bool(fits),
    }


def rf_counts(dataflow, slots, mapped, effective) -> dict:
    """Register-file reads and writes per operand from MAC slots, mapped PEs and effective MACs
    (ints, or arrays per fold): the rule of the module docstring."""
    counts = {}
    for operand in OPERANDS:
        stationary = dataflow.role(operand) == "stationary"
        if operand == "outputs":
            counts[operand] = {"reads": effective + mapped, "writes": effective} if stationary else {"reads": effective, "writes": slots}
        else:
            counts[operand] = {"reads": effective, "writes": mapped if stationary else slots}
    return counts


def rf_fold_accesses(plan: FoldPlan, executed: np.ndarray, effective: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Register-file reads and writes per operand and fold, int64 arrays (F,) (see the module docstring)."""
    slots = np.where(executed, plan.mac_slots, 0)
    mapped = np.where(executed, plan.rows_used * plan.cols_used, 0)
    return rf_counts(plan.dataflow, slots, mapped, np.where(executed, effective, 0))


def rf_accesses(plan: FoldPlan, executed: np.ndarray, effective: np.ndarray) -> dict[str, dict[str, int]]:
    """Register-file reads and writes per operand: :func:`rf_fold_accesses` summed over the folds."""
    return _summed(rf_fold_accesses(plan, executed, effective))


def _summed(per_fold: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, int]]:
    """Per operand, reads and writes summed over the folds."""
    return {op: {kind: int(a.sum()) for kind, a in rw.items()} for op, rw in per_fold.items()}


@dataclass
class MemoryTraffic:
    """Access counts of a layer and the DRAM words each fold moves.

    Attributes
    ----------
    accesses : dict
        ``accesses[level][operand] = {"reads": int, "writes": int}``.
    fold_accesses : dict
        The same for dram and buffer per fold: int64 arrays (F,), 0 for skipped folds.
        Their sums are ``accesses`` except the final output writes.
    fold_dram_reads, fold_dram_writes : numpy.ndarray of int64 (F,)
        DRAM words fetched before each fold / written back after it (all operands).
    final_dram_writes : int
        Output words written at the end (tiles no executed fold produced).
    resident : dict
        Per operand (inputs, weights), whether its footprint fits its buffer; for
        outputs, whether the partial sums stay in the buffer.
    capacities : Capacities
    """

    accesses: dict
    fold_accesses: dict
    fold_dram_reads: np.ndarray
    fold_dram_writes: np.ndarray
    final_dram_writes: int
    resident: dict
    capacities: Capacities

    @classmethod
    def build(
        cls,
        plan: FoldPlan,
        executed: np.ndarray,
        inputs: dict[str, np.ndarray],
        weights: dict[str, np.ndarray],
        resident: dict[str, bool],
        caps: Capacities,
        spans: tuple | None = None,
    ) -> "MemoryTraffic":
        """Assemble the DRAM and buffer counts (the caller adds ``rf_accesses``).

        ``inputs`` and ``weights`` hold per-fold ``keys``, ``buffer_words`` (streamed
        into the array), ``slice_words`` (DRAM words of the slice) and ``first_words``;
        ``inputs`` also ``fetched`` (its slices overlap, so the words not on chip are
        counted element by element, :func:`energysim._kernels.slice_unique_counts`).
        ``resident`` says, per operand, whether its largest per-group footprint fits its
        capacity in ``caps`` (:func:`buffer_capacities`); ``spans`` as in :func:`output_traffic`.
        """
        per_fold = {level: {} for level in ("dram", "buffer")}
        fold_reads = np.zeros(plan.count, np.int64)
        for operand, info, cap in (("inputs", inputs, caps.inputs), ("weights", weights, caps.weights)):
            if resident[operand]:
                dram = np.where(executed, info["first_words"], 0)
            elif "fetched" in info:
                dram = np.where(executed, info["fetched"], 0)
            else:
                window = window_words(cap, plan.mapping.single, int(info["slice_words"].max(initial=0)))
                dram = fetch_words(info["keys"], info["slice_words"], info["first_words"], executed, False, window)
            fold_reads += dram
            per_fold["dram"][operand] = {"reads": dram, "writes": np.zeros(plan.count, np.int64)}
            per_fold["buffer"][operand] = {"reads": np.where(executed, info["buffer_words"], 0), "writes": dram}
        outputs = output_traffic(plan, executed, caps.outputs, spans)
        fold_reads += outputs["dram_reads"]
        per_fold["dram"]["outputs"] = {"reads": outputs["dram_reads"], "writes": outputs["dram_writes"]}
        per_fold["buffer"]["outputs"] = {"reads": outputs["buffer_reads"], "writes": outputs["buffer_writes"]}
        accesses = empty_accesses()
        for level, operands in per_fold.items():
            accesses[level] |= _summed(operands)
        accesses["dram"]["outputs"]["writes"] += outputs["final_dram_writes"]
        resident = dict(resident, outputs=outputs["on_chip"])
        return cls(accesses, per_fold, fold_reads, outputs["dram_writes"], outputs["final_dram_writes"], resident, caps)
