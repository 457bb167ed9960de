"""compress: training DNNs under an energy budget measured on a simulated accelerator.

Public API
----------
project, LayerCost, InfeasibleBudgetError     weighted sparse projection (``compress.projection``)
EnergyModel                                   per-layer weight costs from ``energysim`` (``compress.budget``)
magnitude_masks, uniform_masks, energy_aware_masks   baselines at matched energy
load_dataset, DATASET_NAMES                   datasets (``compress.data``)
"""

from .baselines import BASELINES, energy_aware_masks, magnitude_masks, uniform_masks
from .budget import EnergyModel, geometric_budgets
from .data import (
    DATASET_NAMES,
    DataFileError,
    DatasetNotFoundError,
    DatasetPair,
    MissingDependencyError,
    load_dataset,
)
from .projection import InfeasibleBudgetError, LayerCost, ProjectionResult, project, project_masks_topk

__all__ = [
    "BASELINES",
    "DATASET_NAMES",
    "DataFileError",
    "DatasetNotFoundError",
    "DatasetPair",
    "EnergyModel",
    "InfeasibleBudgetError",
    "LayerCost",
    "MissingDependencyError",
    "ProjectionResult",
    "energy_aware_masks",
    "geometric_budgets",
    "load_dataset",
    "magnitude_masks",
    "project",
    "project_masks_topk",
    "uniform_masks",
]
