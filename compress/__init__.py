"""compress: training DNNs under an energy budget measured on a simulated accelerator.

Public API
----------
project, LayerCost, InfeasibleBudgetError     weighted sparse projection (``compress.projection``)
EnergyModel                                   per-layer weight costs from ``energysim`` (``compress.budget``)
EnergyPruner                                  pruning to an energy budget in your own loop (``compress.pruner``)
add_weight_masks, weight_masks, effective_weights, set_weight_masks, input_masks   masks (``compress.masks``)
plan_budget, BudgetPlan, geometric_budgets    the budget schedule (``compress.schedule``)
magnitude_masks, uniform_masks, energy_aware_masks   baselines at matched energy
load_dataset, DATASET_NAMES                   datasets (``compress.data``)
"""

from .baselines import BASELINES, energy_aware_masks, magnitude_masks, uniform_masks
from .budget import EnergyModel
from .data import (
    DATASET_NAMES,
    DataFileError,
    DatasetNotFoundError,
    DatasetPair,
    MissingDependencyError,
    load_dataset,
)
from .masks import add_weight_masks, effective_weights, input_masks, set_weight_masks, weight_masks
from .projection import LayerCost, ProjectionResult, project, project_masks_topk, proxy_energy
from .pruner import BudgetNotMetError, EnergyPruner
from .schedule import BudgetPlan, InfeasibleBudgetError, geometric_budgets, plan_budget

__all__ = [
    "BASELINES",
    "BudgetNotMetError",
    "BudgetPlan",
    "DATASET_NAMES",
    "DataFileError",
    "DatasetNotFoundError",
    "DatasetPair",
    "EnergyModel",
    "EnergyPruner",
    "InfeasibleBudgetError",
    "LayerCost",
    "MissingDependencyError",
    "ProjectionResult",
    "add_weight_masks",
    "effective_weights",
    "energy_aware_masks",
    "geometric_budgets",
    "input_masks",
    "load_dataset",
    "magnitude_masks",
    "plan_budget",
    "project",
    "project_masks_topk",
    "proxy_energy",
    "set_weight_masks",
    "uniform_masks",
    "weight_masks",
]
