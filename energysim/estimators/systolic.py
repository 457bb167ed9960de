"""The cycle-level systolic-array estimator (``--estimator systolic``).

Dense timing follows SCALE-Sim (same folds, fill and drain, mapping efficiency,
utilization and ifmap/filter SRAM reads); on top of it: buffer capacity and refetch,
DRAM bandwidth stalls, and the actual sparsity pattern (effective vs clock-gated MACs,
skipped all-zero folds, compressed weight traffic). The model is documented in
``docs/systolic-model.md`` and implemented in :mod:`energysim.model`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..dataflow import get_dataflow
from ..model import LayerCounts, simulate_layer
from ..model.groups import group_counts, has_weight_groups
from ..model.nm import structure_mask, without_nm
from ..model.search import layer_mapping
from ..report import LayerReport
from ..sparsity import LayerSparsity, Sparsity
from ..spec import Profile, with_overrides
from ..workload import LayerSpec, Workload
from .pricing import AccessCounts, energy_breakdown

__all__ = ["access_counts", "coefficients", "estimate", "estimate_layer", "layer_counts", "utilization_trace"]


def layer_counts(
    layer: LayerSpec, profile: Profile, layer_sparsity: LayerSparsity | None = None, *, cycle_level: bool = True
) -> LayerCounts:
    """Raw counts of the systolic model for one layer (see :func:`energysim.model.simulate_layer`).

    Parameters
    ----------
    layer : LayerSpec
    profile : Profile
        Its ``array.dataflow`` selects the dataflow, its ``mapping.search`` the mapping
        (chosen once per dense layer, then used for every pattern).
    layer_sparsity : LayerSparsity, optional
        Weight and input masks; None (or None masks) is dense.
    cycle_level : bool, default True
        Step the array cycle by cycle; False gives the same numbers from fold-level
        closed forms, without a trace (faster inside a training loop).
    """
    ls = layer_sparsity if layer_sparsity is not None else LayerSparsity()
    dataflow = get_dataflow(profile.array.dataflow)
    return simulate_layer(
        profile,
        layer,
        dataflow,
        ls.weight_mask,
        ls.input_mask,
        cycle_level=cycle_level,
        mapping=layer_mapping(profile, layer, dataflow),
    )


def _typed(counts: LayerCounts) -> AccessCounts:
    """The priced part of the model's counts."""
    return AccessCounts(counts.accesses, counts.effective_macs, counts.gated_macs, counts.cycles, selections=counts.selections)


def access_counts(layer: LayerSpec, profile: Profile, layer_sparsity: LayerSparsity | None = None) -> AccessCounts:
    """The typed counts of one layer, from the fold-level closed forms (the cycle-level ones are identical)."""
    return _typed(layer_counts(layer, profile, layer_sparsity, cycle_level=False))


def _report(layer: LayerSpec, profile: Profile, counts: LayerCounts) -> LayerReport:
    """Turn the model's counts into a :class:`LayerReport` with energies."""
    energy, by_level, by_operand = energy_breakdown(profile, _typed(counts))
    plan = counts.plan
    return LayerReport(
        name=layer.name,
        kind=layer.kind,
        macs=counts.macs,
        effective_macs=counts.effective_macs,
        gated_macs=counts.gated_macs,
        cycles=counts.cycles,
        compute_cycles=counts.compute_cycles,
        stall_cycles=counts.stall_cycles,
        utilization=counts.utilization,
        energy=energy,
        energy_relaxed=energy,
        energy_by_level=by_level,
        energy_by_operand=by_operand,
        accesses=counts.accesses,
        extra={
            "dataflow": plan.dataflow.name,
            "gemm": list(plan.gemm),
            "groups": plan.groups,
            "folds": plan.count,
            "row_folds": plan.row_blocks,
            "col_folds": plan.col_blocks,
            "executed_folds": int(counts.executed.sum()),
            "fold_cycles": plan.fold_cycles,
            "preload_overlap": bool(profile.array.preload_overlap and plan.dataflow.preload),
            "mapping_efficiency": float(plan.mapping_efficiency.mean()),
            "inputs_resident": bool(counts.traffic.resident["inputs"]),
            "weights_resident": bool(counts.traffic.resident["weights"]),
            "partial_sums_on_chip": bool(counts.traffic.resident["outputs"]),
            "mapping": plan.mapping.to_dict() | {"name": plan.mapping.name, "search": profile.mapping.search},
        }
        | ({"nm": counts.nm is not None} if profile.sparsity.nm.enabled else {}),
    )


def estimate_layer(
    layer: LayerSpec, profile: Profile, layer_sparsity: LayerSparsity | None = None, *, cycle_level: bool = True
) -> LayerReport:
    """Energy, cycles and accesses of one layer on ``profile``'s systolic array.

    Parameters
    ----------
    layer : LayerSpec
    profile : Profile
    layer_sparsity : LayerSparsity, optional
        None is dense.
    cycle_level : bool, default True
        See :func:`layer_counts`; both settings give identical reports.

    Returns
    -------
    LayerReport
        ``extra`` holds dataflow, gemm, groups, folds, row_folds, col_folds,
        executed_folds, fold_cycles, mapping_efficiency and buffer residency; on a
        profile with ``sparsity.nm``, ``nm``: whether the layer ran N:M-compressed
        (``gemm`` and the folds are then the compressed ones).

    Examples
    --------
    >>> from energysim.spec import load_profile
    >>> from energysim.workload import LayerSpec
    >>> layer = LayerSpec("fc", "linear", (64,), (10,), 64, 10, (1, 1), (1, 1), (0, 0), (1, 1), 1, False)
    >>> report = estimate_layer(layer, load_profile("edge-16x16"))
    >>> report.macs, report.extra["folds"], report.compute_cycles
    (640, 4, 187)
    """
    return _report(layer, profile, layer_counts(layer, profile, layer_sparsity, cycle_level=cycle_level))


def coefficients(layer: LayerSpec, profile: Profile) -> dict[str, Any]:
    """Coefficients from the priced counts of the model (see :mod:`energysim.coeffs`).

    Four corner patterns counted with tile skipping off (no weights or all weights x no
    inputs or all inputs) give the cost per nonzero weight, per nonzero input and per
    effective MAC (the bilinear term: a MAC costs ``mac`` instead of ``gated_mac`` only
    when both operands are nonzero). Where the array skips all-zero weight groups (WS or OS
    with ``skip_zero_tiles``) the row also holds each group's cost, from the model's own
    per-fold counts (:func:`energysim.model.groups.group_counts`), and the constant is the
    layer with every group skipped. Where it skips on inputs (IS) the skipping is not
    modelled: the row is an upper bound (skipping only removes work) and says so.
    The latency coefficients (``cycles_constant``, ``group_cycles``, ``slice_cycles``) come
    from the same split; without weight groups the cycles are the dense pattern's.

    On a profile with ``sparsity.nm`` the row is the layer as the array runs it dense (the
    profile without the key: a pattern that violates N:M), and ``nm`` holds the same terms
    (energy and latency) for the layer N:M-compressed, its corners "all weights" being every
    slot kept (the first N of every group of M). Compressed, the weight words and the cycles
    do not depend on the pattern (only on which tiles are skipped), so these terms are exact;
    its skip groups need N to divide ``array.rows``, else the ``nm`` terms are an upper bound.
    """
    row = _coefficient_row(layer, without_nm(profile), np.ones(layer.weight_shape, bool))
    nm = profile.sparsity.nm
    row["nm"] = _coefficient_row(layer, profile, structure_mask(layer, nm)) if nm.enabled else None
    return row


def _coefficient_row(layer: LayerSpec, profile: Profile, all_weights: np.ndarray) -> dict[str, Any]:
    """The terms of :func:`coefficients` on ``profile``, with ``all_weights`` the "all weights" corner."""
    dataflow = get_dataflow(profile.array.dataflow)
    grouped = has_weight_groups(profile, dataflow) and (
        not profile.sparsity.nm.enabled or profile.array.rows % profile.sparsity.nm.n == 0
    )
    upper_bound = profile.sparsity.skip_zero_tiles and not grouped
    corners = with_overrides(profile, {"sparsity.skip_zero_tiles": False}) if profile.sparsity.skip_zero_tiles else profile
    none_w, all_w = np.zeros(layer.weight_shape, bool), all_weights
    none_x, all_x = np.zeros(layer.input_shape, bool), np.ones(layer.input_shape, bool)

    def energy(w: np.ndarray, x: np.ndarray) -> float:
        return energy_breakdown(corners, access_counts(layer, corners, LayerSparsity(w, x)))[0]

    e00, e10, e01 = energy(none_w, none_x), energy(all_w, none_x), energy(none_w, all_x)
    dense = layer_counts(layer, corners, LayerSparsity(all_w, all_x), cycle_level=False)
    e11, dense_levels, _ = energy_breakdown(corners, _typed(dense))
    per_weight = (e10 - e00) / int(all_w.sum())
    per_effective_mac = (e11 - e10 - e01 + e00) / dense.effective_macs if dense.effective_macs else 0.0
    constant, group_cost, slice_cost = e00, None, None
    # Without weight groups the cycles are the dense pattern's: sparsity only removes weight
    # traffic, so stalls, and an upper bound.
    cycles_constant, group_cycles, slice_cycles = float(dense.cycles), None, None
    if grouped:
        split = group_counts(layer, profile, dataflow)
        constant = energy_breakdown(profile, _typed(split.constant))[0]

        def priced(c: dict) -> np.ndarray:
            counts = AccessCounts(c["accesses"], c["effective_macs"], c["gated_macs"], c["cycles"], selections=c["selections"])
            return energy_breakdown(profile, counts)[0]

        # Groups are counted with one nonzero weight each: its per-weight and per-MAC parts are not the group's.
        groups = priced(split.groups) - per_weight - per_effective_mac * split.groups["effective_macs"]
        group_cost = groups.tolist()
        slice_cost = {op: np.asarray(priced(c), np.float64).tolist() for op, c in split.slices.items()}
        cycles_constant = float(split.constant.cycles)
        group_cycles = np.asarray(split.latency["groups"], np.float64).tolist()
        slice_cycles = {op: np.asarray(c, np.float64).tolist() for op, c in split.latency["slices"].items()}
    elif upper_bound and dense.cycles:
        # Bandwidth stalls grow faster than linearly when one fold's traffic exceeds the
        # average, so a pattern can stall a little more than the corners suggest. No fold
        # carries more traffic than dense, so the leakage of the dense stalls bounds it.
        constant += dense_levels["leakage"] * dense.stall_cycles / dense.cycles
    return dict(
        constant=constant,
        per_weight=per_weight,
        per_weight_overflow=per_weight,
        weight_breakpoint=None,
        per_input=(e01 - e00) / int(np.prod(layer.input_shape)),
        per_input_overflow=0.0,
        input_breakpoint=None,
        per_input_use=0.0,
        per_input_refetch=0.0,
        per_effective_mac=per_effective_mac,
        group_cost=group_cost,
        slice_cost=slice_cost,
        upper_bound=upper_bound,
        cycles_constant=cycles_constant,
        group_cycles=group_cycles,
        slice_cycles=slice_cycles,
    )


def utilization_trace(layer: LayerSpec, profile: Profile, layer_sparsity: LayerSparsity | None = None) -> np.ndarray:
    """Per-cycle PE activity of one layer, stepped cycle by cycle.

    Returns
    -------
    numpy.ndarray of int64, shape (cycles + 1, 3)
        Columns: PEs doing an effective MAC, a clock-gated MAC, idling (stalls and
        fill/drain included); each row sums to rows x cols. Row ``i`` is cycle ``i``
        (``cycles`` is the index of the last cycle, SCALE-Sim's convention).
    """
    return layer_counts(layer, profile, layer_sparsity, cycle_level=True).trace


def estimate(workload: Workload, profile: Profile, sparsity: Sparsity | None = None) -> list[LayerReport]:
    """One :class:`LayerReport` per layer of ``workload`` (the estimator interface).

    Parameters
    ----------
    workload : Workload
    profile : Profile
    sparsity : Sparsity, optional
        Per-layer masks; layers not listed (or None) are dense.
    """
    sparsity = sparsity if sparsity is not None else Sparsity()
    return [estimate_layer(layer, profile, sparsity[layer.name]) for layer in workload.layers]
