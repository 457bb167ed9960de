"""``EnergyPruner``: energy-constrained pruning inside any training loop.

The user keeps the loop; the pruner owns the weight masks, the budget schedule and the
final verification on the simulator (the split of Torch-Pruning's ``pruner.step()``)::

    pruner = EnergyPruner(model, profile="edge-16x16", budget=0.4, input_shape=(1, 32, 32),
                          interval=10, total_steps=len(loader) * epochs)
    for x, y in loader:
        loss = criterion(model(x), y); opt.zero_grad(); loss.backward(); opt.step()
        pruner.step()              # anneals the budget, projects every `interval` steps
    report = pruner.finalize()     # exact target, verified on the simulator

Masks are stored the way ``torch.nn.utils.prune`` stores them (``weight_orig`` and the
buffer ``weight_mask``), so they are saved with the model's ``state_dict``; the pruner's
own position (step, schedule, verification) is :meth:`EnergyPruner.state_dict`. ``ecc
train`` is a loop around this class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from energysim import Profile, Report, Sparsity, load_profile, simulate
from energysim.estimators import ESTIMATORS
from energysim.workload import Workload, extract_workload

from .baselines import BASELINES, STRUCTURED_BASELINES
from .budget import EnergyModel
from .keep_layers import fill_groups, keep_every_layer, reserved_floor
from .latency import InfeasibleLatencyError, LatencyBudget, pattern_proxy as _pattern_proxy, project_both
from .masks import (
    add_weight_masks,
    effective_weights,
    input_mask_layers,
    input_masks,
    layer_weight,
    release_weight_masks,
    set_weight_masks,
    weight_masks,
)
from .projection import LayerCost, floor_energy, layer_energy, nonzero_counts, project, proxy_energy
from .nm import NMCost, asp_floor_energy, asp_magnitude_masks, nm_energy, nm_floor_energy, project_nm
from .structured import GroupCost, group_energy, group_sums, project_groups
from .schedule import (
    BudgetPlan,
    InfeasibleBudgetError,
    anneal,
    is_relative_budget,
    plan_budget,
    projection_index,
    projections_per_epoch,
)

__all__ = [
    "METHODS",
    "STRUCTURED_METHODS",
    "STRUCTURES",
    "BudgetNotMetError",
    "EnergyPruner",
    "ProjectFn",
    "meet_budget",
]

#: A projection method: ``(weights, costs, budget) -> masks`` with the weights and
#: bool masks keyed by layer name and ``costs`` the layers' :class:`LayerCost` for the
#: current input masks. It must never exceed the budget and never keep a zero weight.
ProjectFn = Callable[[Mapping[str, torch.Tensor], Mapping[str, LayerCost], float], dict[str, torch.Tensor]]


def _ecc_masks(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, LayerCost], budget: float
) -> dict[str, torch.Tensor]:
    """The weighted sparse projection (the paper's method)."""
    return project(weights, costs, budget).masks


#: Projection methods by name: ``ecc`` (the paper's weighted sparse projection) and
#: the baselines of :mod:`compress.baselines`.
METHODS: dict[str, ProjectFn] = {"ecc": _ecc_masks, **BASELINES}

#: Weight structures: ``none`` (single weights), ``tile`` (whole skip groups: the tiles an
#: array skips when all their weights are zero), ``hybrid`` (tiles, and single weights
#: inside the kept ones) and ``nm`` (on an N:M array: each layer N:M-compressed or
#: dense-pruned, :mod:`compress.nm`).
STRUCTURES = ("none", "tile", "hybrid", "nm")


def _ecc_tile_masks(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost], budget: float
) -> dict[str, torch.Tensor]:
    """The group knapsack over whole tiles (:func:`compress.structured.project_groups`, mode ``tile``)."""
    return project_groups(weights, costs, budget, "tile").masks


def _ecc_hybrid_masks(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost], budget: float
) -> dict[str, torch.Tensor]:
    """The fixed-charge knapsack of tiles and weights (:func:`compress.structured.project_groups`, mode ``hybrid``)."""
    return project_groups(weights, costs, budget, "hybrid").masks


def _ecc_nm_masks(
    weights: Mapping[str, torch.Tensor], costs: Mapping[str, NMCost], budget: float
) -> dict[str, torch.Tensor]:
    """Each layer N:M-compressed or dense-pruned, greedily by value per energy (:func:`compress.nm.project_nm`)."""
    return project_nm(weights, costs, budget).masks


#: Structured projection methods by (method, structure): on :class:`~compress.structured.GroupCost`
#: costs (tile, hybrid) ``ecc`` and the structured baselines of :mod:`compress.baselines`, each
#: keeping one tile in every layer (:mod:`compress.keep_layers`; ECC reserves its best value /
#: energy tile, magnitude its largest-norm tile); on :class:`~compress.nm.NMCost` costs (nm)
#: ``ecc`` and ``magnitude`` (NVIDIA ASP's rule, :func:`compress.nm.asp_magnitude_masks`).
STRUCTURED_METHODS: dict[tuple[str, str], Callable[..., dict[str, torch.Tensor]]] = {
    ("ecc", "tile"): keep_every_layer(_ecc_tile_masks, "ratio"),
    ("ecc", "hybrid"): keep_every_layer(_ecc_hybrid_masks, "ratio"),
    **{key: keep_every_layer(fn, "norm") for key, fn in STRUCTURED_BASELINES.items()},
    ("ecc", "nm"): _ecc_nm_masks,
    ("magnitude", "nm"): asp_magnitude_masks,
}

# Re-projections the guarantee may take before giving up (each drops >= 1 weight).
_MAX_TIGHTEN_STEPS = 25
# Simulations the last projection of a phase may take to land in [_LANDING, 1] x target.
_MAX_LANDING_STEPS = 12
_LANDING = 0.97
_STATE_VERSION = 2


class BudgetNotMetError(ValueError):
    """The simulated energy cannot be brought within the budget by re-projection."""


def meet_budget(
    model: nn.Module,
    energy_model: EnergyModel,
    project_fn: ProjectFn,
    costs: Mapping[str, LayerCost],
    budget: float,
    max_steps: int = _MAX_TIGHTEN_STEPS,
) -> tuple[Any, float, int]:
    """Re-project the model's weights until the full estimator says it fits ``budget``.

    Each step projects at ``proxy * budget / simulated``, where ``proxy`` is the
    proxy energy of the current pattern: a budget below the current pattern's own
    energy, so every step drops at least one weight, and it aims where the
    simulation would meet the budget if the ratio simulated/proxy stayed the same.

    Parameters
    ----------
    model : torch.nn.Module
        A model with weight masks (see :mod:`compress.masks`); changed in place.
    energy_model : EnergyModel
    project_fn : ProjectFn
    costs : mapping of str to LayerCost or to GroupCost
        The layers' costs for the model's current input masks (the kind ``project_fn`` takes).
    budget : float
        The energy the simulated pattern must not exceed.
    max_steps : int
        Re-projections allowed.

    Returns
    -------
    report : energysim Report
        The simulation of the final pattern; ``report.energy <= budget``.
    proxy_budget : float
        The budget of the last re-projection, or ``budget`` when none was needed.
    steps : int
        Number of re-projections.

    Raises
    ------
    BudgetNotMetError
        If the simulation is still above the budget after ``max_steps``
        re-projections, or the next proxy budget is below the energy floor.
    """
    report = energy_model.simulate(model)
    proxy_budget = float(budget)
    steps = 0
    while report.energy > budget:
        if steps == max_steps:
            raise BudgetNotMetError(
                f"simulated energy {report.energy:.6g} still exceeds the budget {budget:.6g} after {steps} "
                f"re-projections (proxy budget {proxy_budget:.6g})"
            )
        weights = effective_weights(model)
        proxy_budget = _pattern_proxy(weights, costs) * budget / report.energy
        try:
            masks = project_fn(weights, costs, proxy_budget)
        except InfeasibleBudgetError as exc:
            raise BudgetNotMetError(
                f"simulated energy {report.energy:.6g} exceeds the budget {budget:.6g}, and the proxy budget "
                f"{proxy_budget:.6g} that would meet it is below the minimum achievable energy "
                f"{exc.min_energy:.6g}: choose a larger budget"
            ) from None
        set_weight_masks(model, masks)
        report = energy_model.simulate(model)
        steps += 1
    return report, proxy_budget, steps


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class EnergyPruner:
    """Prune a model to an energy budget on a simulated accelerator, in your own loop.

    Parameters
    ----------
    model : torch.nn.Module
        The model to prune (or its DistributedDataParallel wrapper). Every conv and
        linear layer of its workload gets a weight mask; layers already masked by
        ``torch.nn.utils.prune`` keep their mask, and weights it pruned stay pruned.
    profile : str or energysim.Profile
        Hardware profile: a shipped name, a YAML path, or a loaded profile.
    budget : float, optional
        Energy budget relative to the dense model's simulated energy, in (0, 1].
    budget_abs : float, optional
        Absolute energy budget in the profile's unit; exactly one of the two, or neither
        with a latency budget (the energy is then held at the dense model's).
    latency_budget : float, optional
        Latency budget relative to the dense model's simulated cycles, in (0, 1].
    latency_budget_abs : float, optional
        Absolute latency budget in cycles; at most one of the two. The projection then
        meets both budgets (:func:`compress.latency.project_both`), the latency budget
        anneals like the energy budget, and :meth:`verify` re-projects until the simulated
        energy *and* cycles fit. Needs an estimator that counts cycles (``systolic``).
    input_shape : sequence of int
        Shape of one input sample, e.g. ``(1, 32, 32)``.
    estimator : {"systolic", "paper"}
        The estimator behind the energy model and the final verification.
    method : str
        Projection method, a key of :data:`METHODS` (``ecc``: the weighted sparse
        projection; the others are the baselines).
    structure : str
        Weight structure, one of :data:`STRUCTURES`. ``tile`` and ``hybrid`` need an
        array that skips all-zero weight tiles (``sparsity.skip_zero_tiles`` with the WS or
        OS dataflow, ``systolic`` estimator) and a method with a structured version
        (:data:`STRUCTURED_METHODS`: ``ecc``, ``magnitude``); ``nm`` needs an N:M array
        (``sparsity.nm``, ``systolic`` estimator) and ``ecc`` or ``magnitude`` (ASP).
    interval : int
        Optimizer steps between projections, >= 1.
    total_steps : int, optional
        Steps of the pruning phase; the budget anneals geometrically from the current
        energy to the target over them. None: every projection is at the target.
    steps_per_epoch : int, optional
        With it, each epoch also ends with a projection (as ``ecc train`` does).
    regrow : bool
        Let pruned weights regrow between projections (the paper's behaviour): the
        masks are released after each projection but the last one; pruned weights are
        set to zero by every projection, so the network computes the pruned function
        until SGD moves them.
    overrides : sequence of str, optional
        Profile overrides ``KEY=VALUE`` (with a profile name or path).
    input_mask_keep : float, optional
        For ``ecc train --input-mask``: the share of the dense input energy that the last
        input-mask round keeps, which lowers the floor a budget may lie above.
    energy_model : EnergyModel, optional
        A prebuilt energy model of this model and profile (skips building the table).
    energy_dense : float, optional
        The dense model's simulated energy, when already known.
    cycles_dense : float, optional
        The dense model's simulated cycles, when already known.

    Attributes
    ----------
    energy : EnergyModel
    plan : compress.schedule.BudgetPlan
    workload : energysim.Workload

    Raises
    ------
    ValueError
        For a bad argument (the message names it), a model without maskable layers, or
        an infeasible budget (:class:`~compress.schedule.InfeasibleBudgetError`, which
        states the minimum achievable energy) or latency budget
        (:class:`~compress.latency.InfeasibleLatencyError`, the minimum achievable cycles).

    Examples
    --------
    >>> from energysim.zoo import build_model
    >>> model, shape = build_model("lenet5")
    >>> pruner = EnergyPruner(model, "eyeriss-iclr19", budget=0.5, input_shape=shape, estimator="paper")
    >>> report = pruner.finalize()
    >>> report["energy_simulated_relative"] <= 0.5
    True
    """

    def __init__(
        self,
        model: nn.Module,
        profile: str | Profile,
        budget: float | None = None,
        *,
        budget_abs: float | None = None,
        input_shape: Sequence[int] | None = None,
        estimator: str = "systolic",
        method: str = "ecc",
        structure: str = "none",
        interval: int = 10,
        total_steps: int | None = None,
        steps_per_epoch: int | None = None,
        regrow: bool = True,
        overrides: Sequence[str] | None = None,
        input_mask_keep: float | None = None,
        energy_model: EnergyModel | None = None,
        energy_dense: float | None = None,
        latency_budget: float | None = None,
        latency_budget_abs: float | None = None,
        cycles_dense: float | None = None,
    ) -> None:
        _check_arguments(
            model=model, profile=profile, budget=budget, budget_abs=budget_abs, input_shape=input_shape,
            estimator=estimator, method=method, structure=structure, interval=interval, total_steps=total_steps,
            steps_per_epoch=steps_per_epoch, regrow=regrow, overrides=overrides, input_mask_keep=input_mask_keep,
            energy_dense=energy_dense, latency_budget=latency_budget, latency_budget_abs=latency_budget_abs,
            cycles_dense=cycles_dense,
        )
        self.model = _unwrap(model)
        self.method = method
        self.structure = structure
        self.interval = int(interval)
        self.regrow = regrow
        if energy_model is None:
            if not isinstance(profile, Profile):
                profile = load_profile(profile, list(overrides or ()))
            workload = extract_workload(self.model, tuple(input_shape))
            energy_model = EnergyModel(workload, profile, estimator)
        self.energy = energy_model
        self.workload: Workload = energy_model.workload
        _check_structure(method, structure, energy_model)
        self.project_fn = METHODS[method] if structure == "none" else STRUCTURED_METHODS[(method, structure)]
        # Landing the last projection in [0.97, 1] x target: for an estimator whose table models
        # its energy, not for the paper's, whose projection keeps to its relaxed bound.
        self._lands = not ESTIMATORS[energy_model.estimator].relaxed_bound
        if energy_dense is None or cycles_dense is None:
            dense_report = simulate(self.workload, energy_model.profile, energy_model.estimator, Sparsity())
            energy_dense = dense_report.energy if energy_dense is None else energy_dense
            cycles_dense = dense_report.cycles if cycles_dense is None else cycles_dense
        #: The dense model's simulated cycles (None: the estimator counts none).
        self.cycles_dense = None if cycles_dense is None else float(cycles_dense)
        target = budget_abs if budget_abs is not None else (1.0 if budget is None else budget) * energy_dense
        dense_inputs = 0.0
        if input_mask_keep is not None:
            costs = energy_model.input_costs()
            dense_inputs = math.fsum(
                costs[name] * math.prod(shape) for name, shape in input_mask_layers(self.workload).items()
            )
        self._costs_key: bytes | None = None
        self._costs: dict[str, LayerCost | GroupCost] = {}
        self._cycle_costs: dict[str, GroupCost] = {}
        #: The latency budget in cycles (None: none), and the proxy cycle budget of the final
        #: projections (the target, until :meth:`verify` tightens it).
        self.latency_target: float | None = None
        self.latency_proxy: float | None = None
        if latency_budget is not None or latency_budget_abs is not None:
            if self.cycles_dense is None:
                raise ValueError(f"the {energy_model.estimator!r} estimator counts no cycles: a latency budget "
                                 "needs --estimator systolic")
            self.latency_target = float(latency_budget_abs if latency_budget_abs is not None
                                        else latency_budget * self.cycles_dense)
        self._latency_now: float | None = self.latency_target
        self._latency_budgets: tuple[tuple, list[float]] = ((), [])
        self.plan: BudgetPlan = plan_budget(
            float(target), float(energy_dense), self.floor_energy(),
            dense_input_energy=dense_inputs, last_keep=1.0 if input_mask_keep is None else input_mask_keep,
        )
        if self.latency_target is not None:
            least = self.min_cycles()
            if self.latency_target < least:
                raise InfeasibleLatencyError(self.latency_target, least, self.cycles_dense)
            self.latency_proxy = self.latency_target
        # Last: every check above leaves the model untouched when it fails.
        self._base = _install_masks(self.model, [l.name for l in self.workload.weight_layers])
        self.step_count = 0
        self.proxy_budget: float | None = None
        self.tighten_steps = 0
        self.simulated: Report | None = None
        self._schedule = (0.0, self.plan.target, 0, None)  # start, target, projections, steps per epoch
        self._latency_schedule: tuple = (self.latency_proxy, self.latency_proxy, 0)  # start, target, projections
        self._budgets: tuple[tuple, list[float]] = ((), [])  # (the schedule they belong to, budgets)
        self._final = False  # the masks are those of the phase's last projection (or of finalize)
        self.anneal(total_steps, steps_per_epoch)

    # -- costs ------------------------------------------------------------------------

    def input_mask_arrays(self) -> dict[str, np.ndarray]:
        """The model's current input masks as bool arrays (nonzero = kept)."""
        return {n: (m.detach() != 0).cpu().numpy() for n, m in input_masks(self.model).items()}

    def costs(self) -> dict[str, LayerCost | GroupCost]:
        """Per-layer costs for the model's current pattern (rebuilt when it changes): a
        :class:`LayerCost` per layer for ``structure="none"`` (which depends on the input
        masks), a :class:`GroupCost` otherwise (which also depends on the kept tiles: the
        cost of what several tiles share is split among the kept ones,
        :meth:`EnergyModel.group_costs`)."""
        arrays = self.input_mask_arrays()
        parts = [n.encode() + b"\0" + np.packbits(a).tobytes() for n, a in arrays.items()]
        kept = None
        weights = effective_weights(self.model)
        # Tile structures split shared costs among the kept tiles; a latency budget prices the kept tiles' cycles.
        split = self.structure in ("tile", "hybrid") or (self.latency_target is not None and self.energy.has_groups)
        if split and set(weights) >= {l.name for l in self.workload.weight_layers}:  # (before the masks: even split)
            kept = self.energy.kept_groups(weights)
            parts += [b"\1" + np.packbits(k).tobytes() for k in kept.values()]
        key = b"".join(parts)
        if key != self._costs_key:
            if self.structure == "none":
                costs = self.energy.costs(arrays)
            elif self.structure == "nm":
                costs = self.energy.nm_costs(arrays)
            else:
                costs = self.energy.group_costs(arrays, kept)
            if self.latency_target is not None:
                self._cycle_costs = self.energy.cycle_costs(kept)
            self._costs, self._costs_key = costs, key
        return self._costs

    def cycle_costs(self) -> dict[str, GroupCost]:
        """Per-layer cycle costs of the current pattern (:meth:`EnergyModel.cycle_costs`); latency budgets only."""
        self.costs()
        return self._cycle_costs

    def proxy_cycles(self) -> float | None:
        """The coefficient table's cycles of the current weight pattern (None without a latency budget)."""
        if self.latency_target is None:
            return None
        return _pattern_proxy(effective_weights(self.model), self.cycle_costs())

    def min_cycles(self) -> float:
        """Least proxy cycles of a pattern: every tile skipped; when structured, but the fastest of
        each layer (:mod:`compress.keep_layers` keeps one), priced with what its tiles share in full."""
        weights = effective_weights(self.model) or {
            n: self.model.get_submodule(n).weight for n in self.workload.layer_names
        }
        costs = self.energy.cycle_costs()
        masks = {}
        for name, cost in costs.items():
            w = weights[name].detach()
            masks[name] = torch.zeros(w.shape, dtype=torch.bool)
            if self.structure == "none":
                continue
            _, count = group_sums(w, cost)
            live = torch.nonzero(count.cpu() > 0).reshape(-1)
            if live.numel():
                fastest = int(live[torch.argmin(cost.group_cost[live])])
                masks[name] = (cost.groups == fastest) & (w.cpu() != 0)
        kept = self.energy.kept_groups(masks) if self.energy.has_groups else None
        return _pattern_proxy(masks, self.energy.cycle_costs(kept))

    def _masks(
        self, weights: Mapping[str, torch.Tensor], costs: Mapping[str, LayerCost | GroupCost], budget: float
    ) -> dict[str, torch.Tensor]:
        """The method's projection at the energy ``budget``, and at the current latency budget when there is one."""
        if self.latency_target is None:
            return self.project_fn(weights, costs, budget)
        latency = LatencyBudget(float(self._latency_now), self.cycle_costs())
        return project_both(self.project_fn, weights, costs, budget, latency, search=self.method == "ecc")

    def proxy_energy(self) -> float:
        """The coefficient table's energy of the current weight and input pattern."""
        return _pattern_proxy(effective_weights(self.model), self.costs())

    def floor_energy(self) -> float:
        """Energy with every weight pruned, for the current input masks; when structured, with
        every tile skipped but the cheapest of each layer (:mod:`compress.keep_layers`)."""
        costs = self.costs()
        if self.structure == "none":
            return floor_energy(costs)
        weights = effective_weights(self.model) or {  # before the masks are installed: the weights themselves
            l.name: layer_weight(self.model, l.name) for l in self.workload.weight_layers
        }
        if self.structure == "nm":
            return asp_floor_energy(costs) if self.method == "magnitude" else nm_floor_energy(costs, weights)
        return reserved_floor(costs, weights)

    # -- schedule ---------------------------------------------------------------------

    def anneal(
        self, total_steps: int | None, steps_per_epoch: int | None = None, target: float | None = None
    ) -> list[float]:
        """Start a pruning phase of ``total_steps`` steps from the current pattern.

        The budget falls geometrically from the current proxy energy to ``target``
        (default: the plan's target) over the phase's projections. ``ecc train`` calls
        this at the start of each weight phase; in a plain loop the constructor does. With
        ``regrow`` the masks are released first.

        Returns
        -------
        list of float
            The budget of each projection of the phase.
        """
        target = self.plan.target if target is None else float(target)
        self.step_count = 0
        self._final = False
        if self.regrow:  # the previous phase left its masks in place; this phase may regrow them
            self.release()
        if total_steps is None:
            self._schedule = (target, target, 0, None)
            self._latency_schedule = (self.latency_proxy, self.latency_proxy, 0)
            return []
        per_epoch = steps_per_epoch or total_steps
        projections = projections_per_epoch(per_epoch, self.interval) * math.ceil(total_steps / per_epoch)
        self._schedule = (self.proxy_energy(), target, projections, per_epoch)
        if self.latency_target is not None:
            self._latency_schedule = (max(self.proxy_cycles(), self.latency_proxy), self.latency_proxy, projections)
        return self.budgets()

    def latency_budgets(self) -> list[float]:
        """The latency budget (proxy cycles) of each projection of the current phase; [] without one."""
        if self.latency_target is None:
            return []
        if self._latency_budgets[0] != self._latency_schedule:
            start, target, projections = self._latency_schedule
            self._latency_budgets = (self._latency_schedule, anneal(start, target, projections) if projections else [])
        return self._latency_budgets[1]

    def budgets(self) -> list[float]:
        """The budget of each projection of the current phase."""
        return list(self._phase_budgets())

    def _phase_budgets(self) -> list[float]:
        """The phase's budgets, computed once per schedule rather than at every projection."""
        if self._budgets[0] != self._schedule:
            start, target, projections, _ = self._schedule
            self._budgets = (self._schedule, anneal(start, target, projections) if projections else [])
        return self._budgets[1]

    @property
    def target(self) -> float:
        """The energy the current phase ends at."""
        return self._schedule[1]

    def step(self) -> float | None:
        """Call after every optimizer step: projects the weights when the schedule says so.

        Returns
        -------
        float or None
            The budget of the projection made now, or None.
        """
        _, target, projections, per_epoch = self._schedule
        step = self.step_count
        self.step_count += 1
        if per_epoch is None:
            index = None if (step + 1) % self.interval else projections
        else:
            index = projection_index(step, per_epoch, self.interval)
        if index is None:
            return None
        last = index >= projections - 1
        budget = target if last else self._phase_budgets()[index]
        if self.latency_target is not None:
            self._latency_now = self.latency_proxy if last else self.latency_budgets()[index]
        self._project(budget, land=last)
        self._final = last
        if self.regrow and not last:
            self.release()
        return budget

    def _project(self, budget: float, land: bool = False) -> None:
        """Project at ``budget``; with ``land``, then move the proxy budget until the
        simulated energy lies in [0.97, 1] x the phase's target (see :meth:`_land`)."""
        # A copy: installing masks zeroes the pruned weights in place, which a second try must undo.
        weights = {n: w.detach().clone() for n, w in effective_weights(self.model).items()}
        costs = self.costs()

        def install(proxy_budget: float) -> dict[str, torch.Tensor]:
            masks = self._masks(weights, costs, proxy_budget)
            self._install(masks, weights)
            return masks

        masks = install(budget)
        self.proxy_budget = float(budget)
        if land and self._lands:
            fit = self._land(install, budget, masks)
            rank = getattr(self.project_fn, "rank", None)  # a structured method (keep_every_layer)
            # With a latency budget the two-budget projection fills within both budgets itself.
            if rank is not None and fit is not None and fit.energy < _LANDING * self.target and self.latency_target is None:
                self._fill(weights, costs, rank, fit)

    def _install(self, masks: dict[str, torch.Tensor], weights: Mapping[str, torch.Tensor]) -> None:
        """Install ``masks`` (within the ``torch.nn.utils.prune`` masks) on ``weights``."""
        for name, base in self._base.items():
            masks[name] = masks[name] & base.to(masks[name].device)
        set_weight_masks(self.model, masks, weights)

    def _land(self, install: Callable[[float], dict[str, torch.Tensor]], budget: float, masks: dict) -> Report | None:
        """Search the proxy budget whose projection the simulator puts in [0.97, 1] x target.

        Projections at a larger budget keep a superset (the greedy prefixes are nested) and
        a sparser pattern never costs more on the simulator, so the simulated energy is
        monotone in the proxy budget: the search brackets the target (steps of
        target / simulated, squared each time the pattern does not change) and then
        interpolates between the two sides. It keeps the best
        pattern that fits and returns its simulation, or leaves the pattern for :meth:`verify`
        to tighten when none did within the allowed simulations (and returns None).
        """
        target = self.target
        floor = self.floor_energy()
        proxy, report = budget, self.energy.simulate(self.model)
        below: tuple[float, float, Report] | None = None  # proxy budget, energy, report of the best fit
        above: tuple[float, float] | None = None  # proxy budget, energy of the lowest one over
        power = 1  # grows while a smaller proxy budget keeps the same pattern (tiles are coarse)
        for _ in range(_MAX_LANDING_STEPS):
            energy = report.energy
            if energy <= target:
                if below is None or energy > below[1]:
                    below = (proxy, energy, report)
            elif above is None or proxy < above[0]:
                above = (proxy, energy)
            if _LANDING * target <= energy <= target:
                break
            if above is None:
                step = proxy * target / energy if energy > 0 else 2 * proxy
            elif below is None:
                step = max(floor, proxy * (target / energy) ** power)
            else:
                (p0, e0, _), (p1, e1) = below, above
                step = p0 + (p1 - p0) * ((1 + _LANDING) / 2 * target - e0) / (e1 - e0)
                if not p0 < step < p1:
                    step = (p0 + p1) / 2
            if step == proxy:
                break
            try:
                previous, masks = masks, install(step)
            except InfeasibleBudgetError as exc:  # the floor for these weights lies above the bound
                floor = step = exc.min_energy
                if step == proxy:
                    break
                previous, masks = masks, install(step)
            proxy = step
            if all(torch.equal(masks[n], previous[n]) for n in masks):
                if above is None:
                    break  # a larger budget keeps nothing more: every nonzero weight is in
                if below is None:
                    power *= 2  # still over: the same simulation, a bolder step
                    continue
            report = self.energy.simulate(self.model)
        if below is not None and below[0] != proxy:
            install(below[0])
        if below is not None:
            self.proxy_budget, self.simulated = float(below[0]), below[2]
        return None if below is None else below[2]

    def _fill(self, weights: Mapping[str, torch.Tensor], costs: Mapping[str, GroupCost], rank: str, best: Report) -> None:
        """Land a tile pattern that no prefix lands (see :func:`compress.keep_layers.fill_groups`):
        top the current pattern, the best that fits (simulated: ``best``), up with whole groups
        further down the method's order, the fill's proxy budget searched on the simulator
        (scaled by target / simulated, then bisected). Keeps the best pattern that fits."""
        target = self.target
        base = {n: m.detach() != 0 for n, m in weight_masks(self.model).items()}
        low, high, kept = _pattern_proxy({n: weights[n] * base[n] for n in base}, costs), math.inf, base
        for _ in range(_MAX_LANDING_STEPS):
            step = low * (1 + _LANDING) / 2 * target / best.energy if high == math.inf else (low + high) / 2
            self._install(fill_groups(weights, costs, base, step, rank), weights)
            report = self.energy.simulate(self.model)
            if report.energy > target:
                high = step
                continue
            low = step
            if report.energy > best.energy:
                best, kept = report, {n: m.detach() != 0 for n, m in weight_masks(self.model).items()}
            if report.energy >= _LANDING * target:
                break
        self._install(dict(kept), weights)
        self.simulated = best

    def release(self) -> None:
        """Let pruned weights regrow: every mask back to all ones (or to its ``torch.nn.utils.prune`` mask)."""
        release_weight_masks(self.model)
        if self._base:
            set_weight_masks(self.model, {n: b.to(layer_weight(self.model, n).device)
                                          for n, b in self._base.items()})

    # -- verification -----------------------------------------------------------------

    def verify(self) -> tuple[Report, int]:
        """Simulate the current pattern and re-project until the simulation fits the target.

        Returns
        -------
        (report, steps)
            The simulation of the final pattern and the number of re-projections.
        """
        if self.latency_target is not None:
            report, proxy_budget, steps = self._meet_both()
        else:
            report, proxy_budget, steps = meet_budget(self.model, self.energy, self.project_fn, self.costs(), self.target)
        if steps:
            self.tighten_steps += steps
            self.proxy_budget = proxy_budget
        self.simulated = report
        return report, steps

    def _meet_both(self) -> tuple[Report, float, int]:
        """:func:`meet_budget` for both budgets: re-project until the simulated energy and cycles fit.

        A step tightens each proxy budget the simulation breaks by the ratio budget / simulated
        (from the current pattern's own proxy, so the step drops at least one weight or tile).
        """
        report = self.energy.simulate(self.model)
        proxy_budget = float(self.proxy_budget if self.proxy_budget is not None else self.target)
        steps = 0
        target, limit = self.target, self.latency_target
        while report.energy > target or report.cycles > limit:
            if steps == _MAX_TIGHTEN_STEPS:
                raise BudgetNotMetError(
                    f"simulated energy {report.energy:.6g} (budget {target:.6g}) and cycles {report.cycles} (latency "
                    f"budget {limit:.6g}) still do not both fit after {steps} re-projections"
                )
            weights = effective_weights(self.model)
            costs = self.costs()
            if report.energy > target:
                proxy_budget = _pattern_proxy(weights, costs) * target / report.energy
            if report.cycles > limit:
                self.latency_proxy = min(self.latency_proxy, self.proxy_cycles()) * limit / report.cycles
            self._latency_now = self.latency_proxy
            try:
                masks = self._masks(weights, costs, proxy_budget)
            except (InfeasibleBudgetError, InfeasibleLatencyError) as exc:
                raise BudgetNotMetError(
                    f"simulated energy {report.energy:.6g} / cycles {report.cycles} do not fit the budgets "
                    f"({target:.6g}, {limit:.6g} cycles), and the proxy budgets that would are infeasible: {exc}"
                ) from None
            set_weight_masks(self.model, masks)
            report = self.energy.simulate(self.model)
            steps += 1
        return report, proxy_budget, steps

    def finalize(self) -> dict[str, Any]:
        """Project at exactly the target (unless the last projection was), verify on the
        simulator, re-project until it fits; return the summary (see :meth:`summary`)."""
        if not self._final:
            self._latency_now = self.latency_proxy
            self._project(self.target, land=True)
            self._final = True
        self.verify()
        return self.summary()

    def summary(self, simulated: Report | None = None) -> dict[str, Any]:
        """Energies of the current pattern and per-layer densities.

        Returns
        -------
        dict
            ``budget`` (relative), ``budget_abs``, ``energy_dense``, ``energy_proxy``,
            ``energy_proxy_relative``, ``energy_simulated``, ``energy_simulated_relative``,
            ``proxy_budget`` (of the last projection), ``structure``, ``tighten_steps``,
            ``weights_kept``, ``weights_total``, ``units``; ``cycles_dense``, ``cycles_simulated``,
            ``cycles_simulated_relative``, ``latency_ms`` (simulated cycles at the profile's clock),
            ``latency_budget`` (relative; None without one), ``latency_budget_abs`` (cycles),
            ``cycles_proxy`` and ``latency_proxy_budget`` (of the last projection) with a latency
            budget; and ``layers`` (per layer ``name``,
            ``density``, ``input_density``, ``energy`` (simulated), ``energy_proxy``, and on
            an array that skips all-zero tiles ``tiles_kept`` and ``tiles_total``).
        """
        simulated = simulated or self.simulated or self.energy.simulate(self.model)
        weights = effective_weights(self.model)
        counts = nonzero_counts(weights)
        costs = self.costs()
        masks_in = input_masks(self.model)
        dense = self.plan.dense
        tiles = self.energy.tiles(weights) if self.energy.has_groups else {}
        layers = []
        for layer in simulated.layers:
            m = masks_in.get(layer.name)
            if layer.name not in weights:  # a matmul of two activations: no weights, a constant of the table
                layers.append({"name": layer.name, "density": 1.0, "input_density": 1.0, "energy": layer.energy,
                               "energy_proxy": self.energy.table.layer(layer.name).dense_energy})
                continue
            cost = costs[layer.name]
            row = {
                "name": layer.name,
                "density": counts[layer.name] / weights[layer.name].numel(),
                "input_density": 1.0 if m is None else float(torch.count_nonzero(m)) / m.numel(),
                "energy": layer.energy,
                "energy_proxy": group_energy(cost, weights[layer.name]) if isinstance(cost, GroupCost)
                else nm_energy(cost, weights[layer.name]) if isinstance(cost, NMCost)
                else layer_energy(cost, counts[layer.name]),
            }
            if "nm" in layer.extra:
                row["nm"] = layer.extra["nm"]
            if layer.name in tiles:
                row["tiles_kept"], row["tiles_total"] = tiles[layer.name]
            layers.append(row)
        proxy = _pattern_proxy(weights, costs)
        return {
            "budget": self.plan.target / dense,
            "budget_abs": self.plan.target,
            "units": self.energy.profile.units,
            "energy_dense": dense,
            "energy_proxy": proxy,
            "energy_proxy_relative": proxy / dense,
            "energy_simulated": simulated.energy,
            "energy_simulated_relative": simulated.energy / dense,
            "proxy_budget": self.plan.target if self.proxy_budget is None else self.proxy_budget,
            "structure": self.structure,
            "tighten_steps": self.tighten_steps,
            "weights_kept": sum(counts.values()),
            "weights_total": sum(w.numel() for w in weights.values()),
            **self._latency_summary(simulated),
            "layers": layers,
        }

    def _latency_summary(self, simulated: Report) -> dict[str, Any]:
        """The cycle fields of :meth:`summary`."""
        cycles, dense, limit = simulated.cycles, self.cycles_dense, self.latency_target
        clock_mhz = self.energy.profile.clock_mhz
        return {
            "cycles_dense": dense,
            "cycles_simulated": cycles,
            "cycles_simulated_relative": None if cycles is None or not dense else cycles / dense,
            "latency_ms": None if cycles is None else cycles / (clock_mhz * 1e3),
            "latency_budget": None if limit is None else limit / dense,
            "latency_budget_abs": limit,
            "cycles_proxy": self.proxy_cycles(),
            "latency_proxy_budget": self.latency_proxy,
        }

    # -- state ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The pruner's position (plain values and the pre-existing masks); the weight
        masks themselves are in the model's ``state_dict``."""
        start, target, projections, per_epoch = self._schedule
        return {
            "version": _STATE_VERSION,
            "budget_abs": self.plan.target,
            "step": self.step_count,
            "schedule": [start, target, projections, per_epoch],
            "final": self._final,
            "proxy_budget": self.proxy_budget,
            "tighten_steps": self.tighten_steps,
            "base_masks": {n: b.cpu() for n, b in self._base.items()},
            "latency_abs": self.latency_target,
            "latency_proxy": self.latency_proxy,
            "latency_schedule": list(self._latency_schedule),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict` (load the model's ``state_dict`` as well)."""
        expected = set(self.state_dict())
        if not isinstance(state, Mapping) or set(state) != expected:
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"pruner state must have the keys {', '.join(sorted(expected))}, got {got}")
        if state["version"] != _STATE_VERSION:
            raise ValueError(f"pruner state version must be {_STATE_VERSION}, got {state['version']!r}")
        if not math.isclose(state["budget_abs"], self.plan.target, rel_tol=1e-12):
            raise ValueError(
                f"pruner state is for the budget {state['budget_abs']:.6g}, this pruner's is {self.plan.target:.6g}"
            )
        if state["latency_abs"] != self.latency_target and not (
            state["latency_abs"] is not None and self.latency_target is not None
            and math.isclose(state["latency_abs"], self.latency_target, rel_tol=1e-12)
        ):
            raise ValueError(f"pruner state is for the latency budget {state['latency_abs']!r}, this pruner's is "
                             f"{self.latency_target!r}")
        if set(state["base_masks"]) != set(self._base):
            raise ValueError("pruner state was saved for a model with other torch.nn.utils.prune masks")
        start, target, projections, per_epoch = state["schedule"]
        self._schedule = (float(start), float(target), int(projections), None if per_epoch is None else int(per_epoch))
        self.step_count = int(state["step"])
        self._final = bool(state["final"])
        self.proxy_budget = state["proxy_budget"]
        self.tighten_steps = int(state["tighten_steps"])
        self._base = {n: b.clone() for n, b in state["base_masks"].items()}
        self.latency_proxy = state["latency_proxy"]
        start, target, projections = state["latency_schedule"]
        self._latency_schedule = (start, target, int(projections))
        self._latency_now = self.latency_proxy


def _install_masks(model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Give every named layer a weight mask, all or nothing; return the masks that layers
    already had (from ``torch.nn.utils.prune``), which stay in force."""
    existing = weight_masks(model)
    problems = []
    for name in names:
        try:
            weight = layer_weight(model, name)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        except KeyError:
            weight = None
        if name not in existing and not isinstance(weight, torch.Tensor):
            problems.append(f"layer {name!r} has no 'weight' parameter to mask")
    if problems:
        raise ValueError("; ".join(problems))
    add_weight_masks(model, [n for n in names if n not in existing])
    return {n: existing[n].clone() for n in names if n in existing}


def _check_structure(method: str, structure: str, energy_model: EnergyModel) -> None:
    """One-line ValueError when ``structure`` gives no skipping here, or ``method`` has no such version."""
    if structure == "none":
        return
    profile = energy_model.profile
    why = None
    if structure == "nm":
        if not profile.sparsity.nm.enabled:
            why = (f"profile {profile.name!r} has no sparsity.nm, so no layer runs N:M-compressed "
                   "(an N:M array sets sparsity.nm: {n: N, m: M}, e.g. the shipped nm-32x32)")
        elif not energy_model.has_nm:
            why = f"the {energy_model.estimator!r} estimator does not model N:M arrays (use --estimator systolic)"
        elif (method, structure) not in STRUCTURED_METHODS:
            names = sorted({m for m, s in STRUCTURED_METHODS if s == "nm"})
            why = f"method {method!r} has no {structure!r} version (methods with one: {', '.join(names)})"
    elif energy_model.estimator != "systolic":
        why = f"the {energy_model.estimator!r} estimator has no array tiles (use --estimator systolic)"
    elif not profile.sparsity.skip_zero_tiles:
        why = (f"profile {profile.name!r} has sparsity.skip_zero_tiles: false, so an all-zero tile saves nothing "
               "(set it: --set sparsity.skip_zero_tiles=true)")
    elif not energy_model.has_groups:
        why = (f"profile {profile.name!r} uses the {profile.array.dataflow!r} dataflow, which skips tiles of its "
               "inputs, not of its weights")
    elif (method, structure) not in STRUCTURED_METHODS:
        names = sorted({m for m, _ in STRUCTURED_METHODS})
        why = f"method {method!r} has no {structure!r} version (methods with one: {', '.join(names)})"
    if why:
        raise ValueError(f"structure {structure!r} cannot be used: {why}")


def _check_arguments(**args: Any) -> None:
    """One-line ValueError/TypeError naming every bad argument of :class:`EnergyPruner`."""
    problems = []

    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            problems.append(f"{name} must be {what}, got {args[name]!r}")

    need(isinstance(args["model"], nn.Module), "model", "a torch.nn.Module")
    need(isinstance(args["profile"], (str, Profile)), "profile", "a profile name, a YAML path or an energysim.Profile")
    budget, budget_abs = args["budget"], args["budget_abs"]
    latency, latency_abs = args["latency_budget"], args["latency_budget_abs"]
    timed = latency is not None or latency_abs is not None
    if (budget is None) == (budget_abs is None) and not (timed and budget is None):
        problems.append(f"exactly one of budget and budget_abs must be given (or neither, with a latency budget), "
                        f"got budget={budget!r}, budget_abs={budget_abs!r}")
    if latency is not None and latency_abs is not None:
        problems.append(f"at most one of latency_budget and latency_budget_abs may be given, got "
                        f"latency_budget={latency!r}, latency_budget_abs={latency_abs!r}")
    need(latency is None or is_relative_budget(latency), "latency_budget", "None or a number in (0, 1]")
    need(latency_abs is None or (_is_number(latency_abs) and latency_abs > 0), "latency_budget_abs",
         "None or a number > 0 (cycles)")
    cycles = args["cycles_dense"]
    need(cycles is None or (_is_number(cycles) and cycles > 0), "cycles_dense", "None or a number > 0")
    need(budget is None or is_relative_budget(budget), "budget", "a number in (0, 1]")
    need(budget_abs is None or (_is_number(budget_abs) and budget_abs > 0), "budget_abs", "a number > 0")
    shape = args["input_shape"]
    need(shape is not None and isinstance(shape, Sequence) and len(shape) > 0
         and all(_is_count(s) and s > 0 for s in shape), "input_shape", "a sequence of positive ints")
    need(args["estimator"] in ESTIMATORS, "estimator", f"one of {', '.join(ESTIMATORS)}")
    need(args["method"] in METHODS, "method", f"one of {', '.join(METHODS)}")
    need(args["structure"] in STRUCTURES, "structure", f"one of {', '.join(STRUCTURES)}")
    need(_is_count(args["interval"]) and args["interval"] >= 1, "interval", "an int >= 1")
    for name in ("total_steps", "steps_per_epoch"):
        need(args[name] is None or (_is_count(args[name]) and args[name] >= 1), name, "None or an int >= 1")
    need(isinstance(args["regrow"], bool), "regrow", "True or False")
    overrides = args["overrides"]
    need(overrides is None or (not isinstance(overrides, str) and all(isinstance(o, str) for o in overrides)),
         "overrides", "a sequence of 'KEY=VALUE' strings")
    keep = args["input_mask_keep"]
    need(keep is None or (_is_number(keep) and keep <= 1), "input_mask_keep", "None or a number <= 1")
    dense = args["energy_dense"]
    need(dense is None or (_is_number(dense) and dense > 0), "energy_dense", "None or a number > 0")
    if problems:
        raise ValueError("EnergyPruner: " + "; ".join(problems))
