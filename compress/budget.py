"""The compressor's view of energy: per-layer weight costs for the projection, and the
full simulation that verifies the final pattern.

:class:`EnergyModel` turns an ``energysim`` coefficient table into the
:class:`~compress.projection.LayerCost` of each layer *for the current input masks*:
with the inputs fixed, a layer's energy is a constant plus a piecewise-linear cost per
nonzero weight, which is what the weighted sparse projection needs. The bilinear term
of the table (per effective MAC) is folded into the per-weight cost as the average
number of effective MACs a nonzero weight takes part in for those inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from energysim import Profile, Report, Sparsity, Workload, simulate
from energysim.coeffs import CoefficientTable, coefficient_table, pattern_features
from energysim.sparsity import LayerSparsity

from .projection import LayerCost, floor_energy, nonzero_counts, proxy_energy

__all__ = ["EnergyModel"]

# A weight whose modelled cost is zero (e.g. dense weight storage, where traffic does not
# depend on the zeros, and zero inputs) is given this tiny cost relative to the layer's
# dense energy, so the projection keeps it first and never prefers it to a real saving.
_FREE_WEIGHT = 1e-12


class EnergyModel:
    """Energy of a network's weight and input pattern on one profile and estimator.

    Parameters
    ----------
    workload : Workload
        The compute layers (names are the model's module names).
    profile : Profile
    estimator : str, default "systolic"
        A key of :data:`energysim.estimators.ESTIMATORS`: the estimator behind the
        coefficient table and the final verification (the same default as ``ecc`` and
        :class:`compress.EnergyPruner`).
    """

    def __init__(self, workload: Workload, profile: Profile, estimator: str = "systolic"):
        self.workload = workload
        self.profile = profile
        self.estimator = estimator
        self.table: CoefficientTable = coefficient_table(workload, profile, estimator)

    def _features(self, name: str, input_mask: np.ndarray | None, weight_nnz: int | None = None) -> dict[str, int]:
        layer = self.workload.layer(name)
        features = pattern_features(layer, LayerSparsity(None, input_mask), self.profile)
        if weight_nnz is not None:
            features = features | {"weights": weight_nnz}
        return features

    def costs(self, input_masks: Mapping[str, np.ndarray | None] | None = None) -> dict[str, LayerCost]:
        """Per-layer weight costs for the projection, given the current input masks."""
        input_masks = input_masks or {}
        costs = {}
        for coeffs in self.table.layers:
            features = self._features(coeffs.name, input_masks.get(coeffs.name))
            macs_per_weight = features["effective_macs"] / coeffs.weight_count
            zero_weights = features | {"weights": 0, "effective_macs": 0}
            floor = _FREE_WEIGHT * coeffs.dense_energy
            per_weight = max(coeffs.per_weight + coeffs.per_effective_mac * macs_per_weight, floor)
            overflow = max(coeffs.per_weight_overflow + coeffs.per_effective_mac * macs_per_weight, per_weight)
            costs[coeffs.name] = LayerCost(
                name=coeffs.name,
                per_weight=per_weight,
                per_weight_overflow=overflow,
                breakpoint=coeffs.weight_breakpoint,
                constant=max(coeffs.predict(zero_weights), 0.0),
            )
        return costs

    def proxy_energy(
        self, weight_masks: Mapping[str, torch.Tensor], input_masks: Mapping[str, np.ndarray | None] | None = None
    ) -> float:
        """The table's energy of these weight masks (nonzero = kept; a layer not given is
        dense) and input masks (:func:`compress.projection.proxy_energy`)."""
        kept = {c.name: c.weight_count for c in self.table.layers} | nonzero_counts(weight_masks)
        return proxy_energy(kept, self.costs(input_masks))

    def dense_energy(self, input_masks: Mapping[str, np.ndarray | None] | None = None) -> float:
        """Proxy energy with every weight kept."""
        return self.proxy_energy({}, input_masks)

    def floor_energy(self, input_masks: Mapping[str, np.ndarray | None] | None = None) -> float:
        """Proxy energy with every weight pruned: the least any weight projection reaches
        (:func:`compress.projection.floor_energy`)."""
        return floor_energy(self.costs(input_masks))

    def input_costs(self) -> dict[str, float]:
        """Energy per nonzero input of each layer (dense pattern), for input-mask budgets.

        Traffic and buffer/RF uses of the input, plus the MACs it makes effective (with
        dense weights): on an array that moves inputs dense, zeroing an input saves only
        the difference between an effective and a clock-gated MAC.
        """
        costs = {}
        for c in self.table.layers:
            features = self._features(c.name, None)
            macs_per_input = features["effective_macs"] / features["inputs"] if features["inputs"] else 0.0
            per_input = c.input_energy_per_nonzero(features) + c.per_effective_mac * macs_per_input
            costs[c.name] = max(per_input, _FREE_WEIGHT * c.dense_energy)
        return costs

    def simulate(self, model: torch.nn.Module) -> Report:
        """The full estimator on the model's real weight pattern and input masks."""
        return simulate(self.workload, self.profile, self.estimator, Sparsity.from_model(model, self.workload))
