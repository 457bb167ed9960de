"""Pure systolic-array model: (profile, layer, dataflow, mapping, masks) -> fold-level counts.

See ``docs/systolic-model.md`` for the mapping, fold timing, loop order and refetch,
partial sums, stalls and sparsity. The model counts; :mod:`energysim.estimators.pricing`
prices the counts into energy.
"""

from .folds import SCALESIM, FoldPlan, Mapping, plan_folds
from .gemm import GemmOperands, gemm_operands, input_footprint, input_index
from .layer import LayerCounts, cycle_trace, simulate_layer
from .macs import block_sums, fold_effective_macs, fold_slice_sums
from .memory import WEIGHT_FORMATS, Capacities, MemoryTraffic, buffer_capacities, weight_words
from .search import layer_mapping, mapping_space, search_mapping

__all__ = [
    "SCALESIM",
    "WEIGHT_FORMATS",
    "Capacities",
    "FoldPlan",
    "GemmOperands",
    "LayerCounts",
    "Mapping",
    "MemoryTraffic",
    "block_sums",
    "buffer_capacities",
    "cycle_trace",
    "fold_effective_macs",
    "fold_slice_sums",
    "gemm_operands",
    "input_footprint",
    "input_index",
    "layer_mapping",
    "mapping_space",
    "plan_folds",
    "search_mapping",
    "simulate_layer",
    "weight_words",
]
