"""The compressor's view of energy: per-layer weight costs for the projection, and the
full simulation that verifies the final pattern.

:class:`EnergyModel` turns an ``energysim`` coefficient table into the
:class:`~compress.projection.LayerCost` of each layer *for the current input masks*:
with the inputs fixed, a layer's energy is a constant plus a piecewise-linear cost per
nonzero weight, which is what the weighted sparse projection needs. The bilinear term
of the table (per effective MAC) is folded into the per-weight cost as the average
number of effective MACs a nonzero weight takes part in for those inputs.

Where the array skips all-zero weight tiles, :meth:`EnergyModel.group_costs` gives the
structured view the tile and hybrid projections need (:class:`compress.structured.GroupCost`):
each skip group's cost, with the cost of the items several groups share (an input slice
or channel, an output tile) split evenly among the groups that use them, and the constant
of the layer with every group skipped. :meth:`EnergyModel.costs` stays the unstructured
view: there every group is charged, as if kept (an upper bound of the group terms).

On an N:M array (``sparsity.nm``), :meth:`EnergyModel.nm_costs` gives each layer's two
prices (:class:`compress.nm.NMCost`): run dense (the table's row) and N:M-compressed (its
``nm`` terms, every compressed tile charged as kept); the skip groups of the other views
are those of the dense mapping.

Layers without weights (a ``matmul`` of two activations: Q K^T, attention x V) are
constants of the table; their energy is added to the constant of the weighted layer that
runs last before them (the first weighted layer for those that run before any), so every
cost, proxy and floor includes it while the projection sees only layers it can prune.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from energysim import Profile, Report, Sparsity, Workload, simulate
from energysim.coeffs import CoefficientTable, LayerCoefficients, coefficient_table, pattern_features
from energysim.sparsity import LayerSparsity

from energysim.dataflow import get_dataflow
from energysim.model.groups import shared_incidence, weight_groups
from energysim.model.nm import structure_mask, without_nm

from .nm import NMCost
from .projection import LayerCost, floor_energy, nonzero_counts, proxy_energy
from .structured import GroupCost, nonzero_groups

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
        self._groups: dict[tuple[str, str], tuple[torch.Tensor, np.ndarray, list]] = {}
        # The dense mapping (the array without N:M), whose skip groups the table's rows price.
        self._dense_profile = without_nm(profile)
        if not workload.weight_layers:
            raise ValueError(f"model {workload.model!r} has no layer with weights to prune")
        self._weighted = [self.table.layer(l.name) for l in workload.weight_layers]
        self._fixed = _attach_weightless(workload, self.table)
        self._fixed_cycles = _attach_weightless(workload, self.table, "cycles_constant")

    @property
    def has_groups(self) -> bool:
        """Whether the table has skip-group costs (the array skips all-zero weight tiles)."""
        return any(c.group_cost is not None for c in self.table.layers)

    def _group_structure(
        self, name: str, what: str = "energy"
    ) -> tuple[torch.Tensor, np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """The layer's weight-to-group map, its groups' own costs (``what``: energy or cycles), and
        per shared item kind the (group, item) pairs with each pair's item cost."""
        if (name, what) not in self._groups:
            coeffs = self.table.layer(name)
            own, items_cost = (
                (coeffs.group_cost, coeffs.slice_cost) if what == "energy" else (coeffs.group_cycles, coeffs.slice_cycles)
            )
            layer = self.workload.layer(name)
            dataflow = get_dataflow(self.profile.array.dataflow)
            ids, _ = weight_groups(layer, self._dense_profile, dataflow)
            shared = []
            for kind, (groups, keys, items) in shared_incidence(layer, self._dense_profile, dataflow).items():
                if kind in items_cost:
                    pairs = np.unique(groups * items + keys)
                    shared.append((pairs // items, pairs % items, np.asarray(items_cost[kind], np.float64)))
            self._groups[name, what] = (torch.from_numpy(ids), np.asarray(own, np.float64), shared)
        return self._groups[name, what]

    def _shared_split(self, name: str, kept: np.ndarray | None, what: str = "energy") -> np.ndarray:
        """Each group's cost with the cost of the items it shares split among the kept groups using them.

        An item no kept group uses is charged in full to each group that would use it (the first
        one to come pays it); with ``kept`` None every group counts as kept (the even split).
        """
        _, own, shared = self._group_structure(name, what)
        cost = own.copy()
        for group, item, item_cost in shared:
            users = np.bincount(item if kept is None else item[kept[group]], minlength=item_cost.size)
            cost += np.bincount(group, weights=item_cost[item] / np.maximum(users[item], 1), minlength=own.size)
        return cost

    def cycle_costs(self, kept: Mapping[str, np.ndarray] | None = None) -> dict[str, GroupCost]:
        """Per-layer cycle costs for the latency budget (:mod:`compress.latency`), as GroupCosts.

        ``group_cost`` is each skip group's cycles (with the cycles of the items several groups
        share split as in :meth:`group_costs`), ``per_weight`` 0 (a weight pruned inside a kept
        tile saves no cycle), ``constant`` the layer's cycles with every group skipped. On an
        array that skips no weight tiles, each layer is one group holding all its weights, of
        1e-12 of its cycles, and its constant the rest: pruning cannot shorten it.

        Raises
        ------
        ValueError
            If the estimator counts no cycles (the ``paper`` model).
        """
        out = {}
        for coeffs in self._weighted:
            fixed = self._fixed_cycles.get(coeffs.name, 0.0)
            if coeffs.cycles_constant is None:
                raise ValueError(f"the {self.estimator!r} estimator counts no cycles: a latency budget needs "
                                 "--estimator systolic")
            dense = max(coeffs.predict_cycles(self._features(coeffs.name, None)), 1.0)
            if coeffs.group_cycles is None:
                shape = self.workload.layer(coeffs.name).weight_shape
                own = np.full(1, _FREE_WEIGHT * dense)
                out[coeffs.name] = GroupCost(coeffs.name, torch.zeros(shape, dtype=torch.int64), torch.from_numpy(own),
                                             0.0, max(float(coeffs.cycles_constant) - own[0], 0.0) + fixed)
                continue
            ids = self._group_structure(coeffs.name, "cycles")[0]
            cycles = self._shared_split(coeffs.name, None if kept is None else kept[coeffs.name], "cycles")
            out[coeffs.name] = GroupCost(
                name=coeffs.name,
                groups=ids,
                group_cost=torch.from_numpy(np.maximum(cycles, _FREE_WEIGHT * dense)),
                per_weight=0.0,
                constant=max(float(coeffs.cycles_constant), 0.0) + fixed,
            )
        return out

    def tiles(self, weights: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, int]]:
        """Per layer, the skip groups (tiles) keeping a nonzero weight and the number of groups."""
        return {name: (int(kept.sum()), int(kept.size)) for name, kept in self.kept_groups(weights).items()}

    def kept_groups(self, weights: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Per layer, bool per skip group: whether it keeps a nonzero weight of ``weights``."""
        out = {}
        for c in self._weighted:
            ids, own, _ = self._group_structure(c.name)  # the map of energysim's weight_groups (dense mapping), cached
            out[c.name] = nonzero_groups(weights[c.name].detach().cpu(), ids, own.size)
        return out

    def group_costs(
        self,
        input_masks: Mapping[str, np.ndarray | None] | None = None,
        kept: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, GroupCost]:
        """Per-layer skip-group costs for the tile and hybrid projections, given the current input masks.

        ``kept`` (per layer, bool per group: the current pattern's groups, see
        :meth:`kept_groups`) decides how the cost of an item several groups share is split:
        among the kept groups that use it, in full for an item none of them uses. The proxy
        energy of the current pattern is then the table's. None splits evenly among all.

        Raises
        ------
        ValueError
            If the table has no group costs (see :attr:`has_groups`).
        """
        if not self.has_groups:
            raise ValueError(f"profile {self.profile.name!r} skips no weight tiles: there are no group costs")
        input_masks = input_masks or {}
        out = {}
        for coeffs in self._weighted:
            ids = self._group_structure(coeffs.name)[0]
            group_cost = self._shared_split(coeffs.name, None if kept is None else kept[coeffs.name])
            features = self._features(coeffs.name, input_masks.get(coeffs.name))
            cost = self._layer_cost(coeffs, features)
            empty = features | {
                "weights": 0,
                "effective_macs": 0,
                "kept_groups": np.zeros_like(features["kept_groups"]),
                "used_slices": {k: np.zeros_like(v) for k, v in features["used_slices"].items()},
            }
            floor = _FREE_WEIGHT * coeffs.dense_energy
            out[coeffs.name] = GroupCost(
                name=coeffs.name,
                groups=ids,
                group_cost=torch.from_numpy(np.maximum(group_cost, floor)),
                per_weight=cost.per_weight,
                constant=max(coeffs.predict(empty), 0.0) + self._fixed.get(coeffs.name, 0.0),
            )
        return out

    @property
    def has_nm(self) -> bool:
        """Whether the table prices N:M-compressed layers (an N:M array and the systolic estimator)."""
        return all(c.nm is not None for c in self._weighted)

    def nm_costs(self, input_masks: Mapping[str, np.ndarray | None] | None = None) -> dict[str, NMCost]:
        """Per-layer prices dense and N:M-compressed, given the current input masks (see the module docstring).

        Raises
        ------
        ValueError
            If the table has no N:M terms (see :attr:`has_nm`).
        """
        if not self.has_nm:
            raise ValueError(f"profile {self.profile.name!r} with the {self.estimator!r} estimator prices no N:M layers")
        input_masks = input_masks or {}
        nm = self.profile.sparsity.nm
        dense = self.costs(input_masks)
        out = {}
        for coeffs in self._weighted:
            layer = self.workload.layer(coeffs.name)
            mask = input_masks.get(coeffs.name)
            # Every slot filled keeps every compressed tile; the effective MACs per weight stay the layer's average.
            full = pattern_features(layer, LayerSparsity(structure_mask(layer, nm), mask), self.profile)
            features = full | {"effective_macs": self._features(coeffs.name, mask)["effective_macs"]}
            out[coeffs.name] = NMCost(coeffs.name, nm.n, nm.m, dense[coeffs.name], self._layer_cost(coeffs.nm_row(), features))
        return out

    def _features(self, name: str, input_mask: np.ndarray | None, weight_nnz: int | None = None) -> dict[str, int]:
        layer = self.workload.layer(name)
        features = pattern_features(layer, LayerSparsity(None, input_mask), self.profile)
        if weight_nnz is not None:
            features = features | {"weights": weight_nnz}
        return features

    def costs(self, input_masks: Mapping[str, np.ndarray | None] | None = None) -> dict[str, LayerCost]:
        """Per-layer weight costs for the projection, given the current input masks."""
        input_masks = input_masks or {}
        return {
            c.name: self._layer_cost(c, self._features(c.name, input_masks.get(c.name))) for c in self._weighted
        }

    def _layer_cost(self, coeffs: LayerCoefficients, features: dict) -> LayerCost:
        """A layer's :class:`LayerCost` for the pattern ``features`` describes (its input masks)."""
        macs_per_weight = features["effective_macs"] / coeffs.weight_count
        zero_weights = features | {"weights": 0, "effective_macs": 0}
        floor = _FREE_WEIGHT * coeffs.dense_energy
        per_weight = max(coeffs.per_weight + coeffs.per_effective_mac * macs_per_weight, floor)
        overflow = max(coeffs.per_weight_overflow + coeffs.per_effective_mac * macs_per_weight, per_weight)
        return LayerCost(
            name=coeffs.name,
            per_weight=per_weight,
            per_weight_overflow=overflow,
            breakpoint=coeffs.weight_breakpoint,
            constant=max(coeffs.predict(zero_weights), 0.0) + self._fixed.get(coeffs.name, 0.0),
        )

    def proxy_energy(
        self, weight_masks: Mapping[str, torch.Tensor], input_masks: Mapping[str, np.ndarray | None] | None = None
    ) -> float:
        """The table's energy of these weight masks (nonzero = kept; a layer not given is
        dense) and input masks (:func:`compress.projection.proxy_energy`)."""
        kept = {c.name: c.weight_count for c in self._weighted} | nonzero_counts(weight_masks)
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
        for c in self._weighted:
            features = self._features(c.name, None)
            macs_per_input = features["effective_macs"] / features["inputs"] if features["inputs"] else 0.0
            per_input = c.input_energy_per_nonzero(features) + c.per_effective_mac * macs_per_input
            costs[c.name] = max(per_input, _FREE_WEIGHT * c.dense_energy)
        return costs

    def simulate(self, model: torch.nn.Module) -> Report:
        """The full estimator on the model's real weight pattern and input masks."""
        return simulate(self.workload, self.profile, self.estimator, Sparsity.from_model(model, self.workload))


def _attach_weightless(workload: Workload, table: CoefficientTable, what: str = "constant") -> dict[str, float]:
    """Weighted layer name -> the summed energy (``what="constant"``) or cycles (``"cycles_constant"``)
    of the weightless layers attached to it (see the module docstring)."""
    fixed: dict[str, float] = {}
    owner = workload.weight_layers[0].name
    for layer in workload.layers:
        if layer.has_weights:
            owner = layer.name
        else:
            fixed[owner] = fixed.get(owner, 0.0) + float(getattr(table.layer(layer.name), what) or 0.0)
    return fixed
