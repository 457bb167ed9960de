"""The budget schedule of energy-constrained training: pure arithmetic, no torch.

Everything here is a function of plain numbers, so the schedule is tested without
training anything:

- :func:`plan_budget` checks a target against the energy floors (every weight pruned,
  with dense inputs and with the least input energy the mask rounds can keep) and
  says how much energy the weights may keep when only the input masks can reach the
  target (:class:`BudgetPlan`);
- :func:`weight_target` is where one weight phase ends, given the floor the input
  masks have reached so far;
- :func:`mask_keep` is the share of the dense input energy a mask round keeps;
- :func:`projection_index` says after which optimizer steps the weights are projected,
  and :func:`anneal` gives the budget of each projection: geometric from the energy at
  the start of the phase down to exactly the target;
- :func:`after_weight_phase` decides what follows a weight phase of a run with input
  masks (another mask round, restore the best round, or give up).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BudgetPlan",
    "InfeasibleBudgetError",
    "after_weight_phase",
    "anneal",
    "check_relative_budgets",
    "geometric_budgets",
    "is_relative_budget",
    "mask_keep",
    "plan_budget",
    "projection_index",
    "projections_per_epoch",
    "weight_target",
]


class InfeasibleBudgetError(ValueError):
    """The budget is below the energy of the network with every weight pruned.

    Attributes
    ----------
    budget : float
        The budget asked for.
    min_energy : float
        The minimum achievable energy (all weights zero).
    dense_energy : float
        The energy with every weight kept.
    """

    def __init__(self, budget: float, min_energy: float, dense_energy: float) -> None:
        self.budget = budget
        self.min_energy = min_energy
        self.dense_energy = dense_energy
        share = f"{100.0 * min_energy / dense_energy:.4g}%" if dense_energy > 0 else "n/a"
        super().__init__(
            f"energy budget {budget:.6g} is below the minimum achievable energy {min_energy:.6g} "
            f"(every weight pruned; {share} of the dense energy {dense_energy:.6g})"
        )


def is_relative_budget(value: Any) -> bool:
    """Whether ``value`` is a relative energy budget: a finite real number in (0, 1].

    >>> [is_relative_budget(v) for v in (0.3, 1, 1.5, 0, float("nan"), True)]
    [True, True, False, False, False, False]
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and 0 < value <= 1


def check_relative_budgets(values: Sequence[float], *, name: str = "budgets") -> tuple[float, ...]:
    """Relative energy budgets checked to lie in (0, 1], as floats.

    A relative budget is a fraction of the dense model's energy: 1 keeps the dense model,
    and nothing can be pruned to more than it (an absolute budget, ``budget_abs``, has no
    such bound). ``ecc train --budget`` and ``ecc sweep --budgets`` both obey this rule.

    Parameters
    ----------
    values : sequence of float
    name : str, default "budgets"
        What the values are called in the error message, e.g. ``--budget``.

    Returns
    -------
    tuple of float

    Raises
    ------
    ValueError
        If ``values`` is empty, or one of them is not a number in (0, 1].

    Examples
    --------
    >>> check_relative_budgets([0.5, 1])
    (0.5, 1.0)
    """
    values = tuple(values)
    if not values or not all(is_relative_budget(v) for v in values):
        raise ValueError(
            f"{name} must be relative energies in (0, 1] (fractions of the dense model's energy; 1 prunes "
            f"nothing), got {list(values)}"
        )
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class BudgetPlan:
    """What a target energy means for one network, profile and set of input masks.

    Attributes
    ----------
    target : float
        The absolute energy budget.
    dense : float
        The dense network's energy (what relative budgets refer to).
    floor : float
        Energy with every weight pruned, at dense inputs.
    reachable_floor : float
        The least energy with every weight pruned once the last mask round has masked
        its share of the inputs (``floor`` without input masks).
    weight_allowance : float or None
        When ``target < floor``: the energy left for the weights on top of the
        reachable floor (each weight phase then aims at the current floor plus this);
        None when the weights alone can reach the target.
    """

    target: float
    dense: float
    floor: float
    reachable_floor: float
    weight_allowance: float | None


def plan_budget(
    target: float, dense: float, floor: float, *, dense_input_energy: float = 0.0, last_keep: float = 1.0
) -> BudgetPlan:
    """Check ``target`` against the floors and plan the weights' share of it.

    Parameters
    ----------
    target, dense, floor : float
        The absolute budget, the dense energy and the energy with every weight pruned.
    dense_input_energy : float
        Energy of the maskable inputs at density 1 (0 without input masks).
    last_keep : float
        Share of ``dense_input_energy`` the last mask round keeps (see :func:`mask_keep`).

    Returns
    -------
    BudgetPlan

    Raises
    ------
    InfeasibleBudgetError
        If ``target`` is below the reachable floor.

    Examples
    --------
    >>> plan_budget(20.0, 100.0, 15.0).weight_allowance is None
    True
    >>> plan_budget(14.0, 100.0, 15.0, dense_input_energy=10.0, last_keep=0.7).weight_allowance
    2.0
    """
    reachable = floor - (1.0 - max(last_keep, 0.0)) * dense_input_energy
    if target < reachable:
        raise InfeasibleBudgetError(float(target), reachable, dense)
    allowance = target - reachable if target < floor else None
    return BudgetPlan(float(target), float(dense), float(floor), float(reachable), allowance)


def weight_target(plan: BudgetPlan, floor_now: float, more_rounds: bool) -> float:
    """The energy a weight phase ends at.

    The target, unless it lies below the weight floor and the mask rounds have not yet
    lowered the floor enough: then the current floor plus the weights' allowance, so that
    the next mask rounds lower the floor first. The last phase (no more rounds) aims at
    the target whenever the floor allows it.

    Examples
    --------
    >>> plan = BudgetPlan(14.0, 100.0, 15.0, 12.0, 2.0)
    >>> weight_target(plan, floor_now=15.0, more_rounds=True)
    17.0
    >>> weight_target(plan, floor_now=13.5, more_rounds=False)
    14.0
    """
    if plan.weight_allowance is None:
        return plan.target
    if not more_rounds and floor_now <= plan.target:
        return plan.target
    return max(plan.target, floor_now + plan.weight_allowance)


def mask_keep(first: float, step: float, round_: int) -> float:
    """Share of the dense input energy that mask round ``round_`` (from 1) keeps.

    >>> round(mask_keep(0.9, 0.1, 3), 10)
    0.7
    """
    return first - step * (round_ - 1)


def geometric_budgets(start: float, target: float, steps: int) -> list[float]:
    """``steps`` budgets falling geometrically from ``start`` to exactly ``target``.

    Examples
    --------
    >>> [round(b) for b in geometric_budgets(1000, 10, 3)]
    [215, 46, 10]
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not (start > 0 and target > 0):
        raise ValueError(f"budgets must be > 0, got start={start}, target={target}")
    ratio = (target / start) ** (1.0 / steps)
    budgets = [start * ratio ** (i + 1) for i in range(steps)]
    budgets[-1] = target
    return budgets


def anneal(start: float, target: float, projections: int) -> list[float]:
    """The budget of each of ``projections`` projections of one weight phase.

    Geometric from ``start`` (the energy when the phase begins) to ``target``; constant
    at ``target`` when the phase starts at or below it.

    >>> anneal(10.0, 20.0, 2)
    [20.0, 20.0]
    """
    if start <= target:
        return [target] * projections
    return geometric_budgets(start, target, projections)


def projections_per_epoch(steps_per_epoch: int, interval: int) -> int:
    """Projections in one epoch of ``steps_per_epoch`` steps: every ``interval`` steps and
    after the last.

    >>> projections_per_epoch(25, 10)
    3
    """
    return math.ceil(steps_per_epoch / interval)


def projection_index(step: int, steps_per_epoch: int, interval: int) -> int | None:
    """Which projection (from 0) follows optimizer step ``step`` (from 0), or None.

    Within each epoch the weights are projected after every ``interval``-th step and after
    the epoch's last step.

    Examples
    --------
    >>> [projection_index(s, 5, 2) for s in range(10)]
    [0, None, 1, None, 2, 3, None, 4, None, 5]
    """
    epoch, b = divmod(step, steps_per_epoch)
    if (b + 1) % interval and b != steps_per_epoch - 1:
        return None
    return epoch * projections_per_epoch(steps_per_epoch, interval) + b // interval


def after_weight_phase(
    accuracy: float, best_accuracy: float | None, met: bool, more_rounds: bool
) -> tuple[str, bool]:
    """What follows a weight phase of a run with input masks.

    Parameters
    ----------
    accuracy : float
        Validation accuracy after the phase.
    best_accuracy : float or None
        The best accuracy of a phase that met the target so far.
    met : bool
        Whether the phase ended at the target (not at an intermediate floor).
    more_rounds : bool
        Whether another mask round may follow.

    Returns
    -------
    (next, improved)
        ``next`` is ``"mask"`` (another mask round), ``"best"`` (restore the best
        phase and verify it) or ``"infeasible"`` (no phase met the target and no round
        is left); ``improved`` says whether this phase is the new best.

    Examples
    --------
    >>> after_weight_phase(0.9, 0.8, met=True, more_rounds=True)
    ('mask', True)
    >>> after_weight_phase(0.7, 0.8, met=True, more_rounds=True)
    ('best', False)
    >>> after_weight_phase(0.7, None, met=False, more_rounds=False)
    ('infeasible', False)
    """
    improved = met and (best_accuracy is None or accuracy > best_accuracy)
    if (improved or not met) and more_rounds:
        return "mask", improved
    if best_accuracy is None and not improved:
        return "infeasible", improved
    return "best", improved
