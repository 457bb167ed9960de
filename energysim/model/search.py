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

from functools import lru_cache
from itertools import permutations

from ..dataflow import Dataflow
from ..estimators.pricing import AccessCounts, energy_breakdown
from ..spec import Profile
from ..workload import LayerSpec
from .folds import LOOPS, SCALESIM, Mapping
from .layer import simulate_layer

__all__ = ["MAX_STREAM_TILES", "OBJECTIVES", "layer_mapping", "mapping_space", "search_mapping"]

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


def _objective(profile: Profile, counts, objective: str) -> float:
    energy = energy_breakdown(profile, AccessCounts(counts.accesses, counts.effective_macs, counts.gated_macs, counts.cycles))[0]
    if objective == "energy":
        return energy
    if objective == "latency":
        return float(counts.cycles)
    return energy * counts.cycles


def search_mapping(profile: Profile, layer: LayerSpec, dataflow: Dataflow, objective: str) -> tuple[Mapping, list[dict]]:
    """The mapping of :func:`mapping_space` minimising ``objective`` for the dense layer.

    Parameters
    ----------
    profile : Profile
    layer : LayerSpec
    dataflow : Dataflow
    objective : {"energy", "latency", "edp"}

    Returns
    -------
    best : Mapping
    evaluated : list of dict
        Per candidate, in enumeration order: ``mapping`` (its name), ``energy``, ``cycles``.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    rows, cols = profile.array.rows, profile.array.cols
    best, best_value, evaluated = None, None, []
    for mapping in mapping_space(layer, dataflow, rows, cols):
        counts = simulate_layer(profile, layer, dataflow, cycle_level=False, mapping=mapping)
        value = _objective(profile, counts, objective)
        evaluated.append({"mapping": mapping.name, "energy": _objective(profile, counts, "energy"), "cycles": counts.cycles})
        if best_value is None or value < best_value:
            best, best_value = mapping, value
    return best, evaluated


@lru_cache(maxsize=4096)
def layer_mapping(profile: Profile, layer: LayerSpec, dataflow: Dataflow) -> Mapping:
    """The mapping ``profile.mapping.search`` gives ``layer``: SCALE-Sim's, or the searched one."""
    if profile.mapping.search == "scalesim":
        return SCALESIM
    return search_mapping(profile, layer, dataflow, profile.mapping.search)[0]
