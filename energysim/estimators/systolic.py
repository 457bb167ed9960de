"""The cycle-level systolic-array estimator (``--estimator systolic``).

Dense timing follows SCALE-Sim (same folds, fill and drain, mapping efficiency,
utilization and ifmap/filter SRAM reads); on top of it: buffer capacity and refetch,
DRAM bandwidth stalls, and the actual sparsity pattern (effective vs clock-gated MACs,
skipped all-zero folds, compressed weight traffic). The model is documented in
``docs/systolic-model.md`` and implemented in :mod:`energysim.model`.
"""

from __future__ import annotations

import numpy as np

from ..dataflow import get_dataflow
from ..model import LayerCounts, energy_breakdown, simulate_layer
from ..report import LayerReport
from ..sparsity import LayerSparsity, Sparsity
from ..spec import Profile
from ..workload import LayerSpec, Workload

__all__ = ["estimate", "estimate_layer", "layer_counts", "utilization_trace"]

TRACE_COLUMNS = ("effective", "gated", "idle")


def layer_counts(
    layer: LayerSpec, profile: Profile, layer_sparsity: LayerSparsity | None = None, *, cycle_level: bool = True
) -> LayerCounts:
    """Raw counts of the systolic model for one layer (see :func:`energysim.model.simulate_layer`).

    Parameters
    ----------
    layer : LayerSpec
    profile : Profile
        Its ``array.dataflow`` selects the dataflow.
    layer_sparsity : LayerSparsity, optional
        Weight and input masks; None (or None masks) is dense.
    cycle_level : bool, default True
        Step the array cycle by cycle; False gives the same numbers from fold-level
        closed forms, without a trace (faster inside a training loop).
    """
    ls = layer_sparsity if layer_sparsity is not None else LayerSparsity()
    return simulate_layer(
        profile,
        layer,
        get_dataflow(profile.array.dataflow),
        ls.weight_mask,
        ls.input_mask,
        cycle_level=cycle_level,
    )


def _report(layer: LayerSpec, profile: Profile, counts: LayerCounts) -> LayerReport:
    """Turn the model's counts into a :class:`LayerReport` with energies."""
    energy, by_level, by_operand = energy_breakdown(
        profile, counts.accesses, counts.effective_macs, counts.gated_macs, counts.cycles
    )
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
            "mapping_efficiency": float(plan.mapping_efficiency.mean()),
            "inputs_resident": bool(counts.traffic.resident["inputs"]),
            "weights_resident": bool(counts.traffic.resident["weights"]),
        },
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
        executed_folds, fold_cycles, mapping_efficiency and buffer residency.

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
