"""``compress.EnergyPruner`` in a user's own loop, and the pure budget schedule."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import prune

from compress import EnergyPruner
from compress.budget import EnergyModel
from compress.masks import effective_weights, weight_masks
from compress.schedule import (
    InfeasibleBudgetError,
    after_weight_phase,
    anneal,
    mask_keep,
    plan_budget,
    projection_index,
    weight_target,
)
from energysim import Sparsity, load_profile, simulate
from energysim.workload import extract_workload
from energysim.zoo import build_model

REPO = Path(__file__).resolve().parents[1]
PAPER = dict(profile="eyeriss-iclr19", estimator="paper")
pytestmark = [
    pytest.mark.filterwarnings("ignore::energysim.workload.UnmodelledLayerWarning"),
    pytest.mark.usefixtures("one_thread"),
]


def _lenet(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("lenet5")


def _batches(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 1, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(n)]


def _loop(model, pruner, opt, batches):
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.step()


# -- the schedule, without training -------------------------------------------------------


def test_lenet5_floors_on_the_paper_profile():
    """15.23 % with every weight pruned; 13.31 % once three mask rounds keep 70 % of the input energy."""
    model, shape = build_model("lenet5")
    workload = extract_workload(model, shape)
    profile = load_profile("eyeriss-iclr19")
    energy = EnergyModel(workload, profile, "paper")
    dense = simulate(workload, profile, "paper", Sparsity()).energy
    floor = sum(c.constant for c in energy.costs().values())
    inputs = energy.input_costs()
    dense_inputs = sum(inputs[l.name] * math.prod(l.input_shape) for l in workload.layers if l.kind == "conv")
    assert floor / dense == pytest.approx(0.1523, abs=5e-5)
    with pytest.raises(InfeasibleBudgetError, match="15.23%"):
        plan_budget(0.15 * dense, dense, floor)
    last = mask_keep(0.9, 0.1, 3)
    plan = plan_budget(0.15 * dense, dense, floor, dense_input_energy=dense_inputs, last_keep=last)
    assert plan.reachable_floor / dense == pytest.approx(0.1331, abs=5e-5)
    assert plan.weight_allowance == pytest.approx(0.15 * dense - plan.reachable_floor)
    with pytest.raises(InfeasibleBudgetError, match="13.31%"):
        plan_budget(0.13 * dense, dense, floor, dense_input_energy=dense_inputs, last_keep=last)


def test_weight_target_waits_for_the_masks_then_lands_on_the_target():
    plan = plan_budget(14.0, 100.0, 15.0, dense_input_energy=10.0, last_keep=0.7)  # reachable 12, allowance 2
    assert weight_target(plan, 15.0, more_rounds=True) == 17.0
    assert weight_target(plan, 13.0, more_rounds=True) == 15.0
    assert weight_target(plan, 13.0, more_rounds=False) == 14.0
    assert weight_target(plan_budget(20.0, 100.0, 15.0), 15.0, more_rounds=True) == 20.0


def test_projection_points_every_interval_and_at_each_epoch_end():
    points = [s for s in range(14) if projection_index(s, 7, 3) is not None]
    assert points == [2, 5, 6, 9, 12, 13]
    assert [projection_index(s, 7, 3) for s in points] == [0, 1, 2, 3, 4, 5]


def test_anneal_is_geometric_and_ends_exactly_at_the_target():
    budgets = anneal(100.0, 20.0, 4)
    assert budgets[-1] == 20.0
    ratios = [b / a for a, b in zip([100.0] + budgets[:-1], budgets)]
    assert ratios == pytest.approx([ratios[0]] * 4)
    assert anneal(10.0, 20.0, 3) == [20.0] * 3


@pytest.mark.parametrize(
    "accuracy, best, met, more, expected",
    [
        (0.9, None, True, True, ("mask", True)),
        (0.9, 0.95, True, True, ("best", False)),
        (0.9, None, False, True, ("mask", False)),
        (0.9, None, False, False, ("infeasible", False)),
        (0.9, 0.8, True, False, ("best", True)),
    ],
)
def test_after_weight_phase(accuracy, best, met, more, expected):
    assert after_weight_phase(accuracy, best, met, more) == expected


# -- the pruner -----------------------------------------------------------------------------


def test_own_loop_ends_within_budget_on_the_simulator():
    model, shape = _lenet()
    batches = _batches(12)
    pruner = EnergyPruner(model, budget=0.3, input_shape=shape, interval=4, total_steps=len(batches), **PAPER)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    budgets = pruner.budgets()
    assert len(budgets) == 3 and budgets[-1] == pruner.plan.target and budgets[0] > budgets[1] > budgets[2]
    _loop(model, pruner, opt, batches)
    report = pruner.finalize()
    assert report["energy_simulated_relative"] <= 0.3
    assert report["energy_simulated"] <= pruner.plan.target
    assert report["energy_simulated"] == pytest.approx(pruner.simulated.energy)
    # The masks stay in place after the last projection and match the weights' zeros.
    for name, w in effective_weights(model).items():
        assert torch.equal(w != 0, weight_masks(model)[name] & (w != 0))
    assert {l["name"] for l in report["layers"]} == set(pruner.workload.layer_names)


def test_regrow_releases_masks_between_projections_but_not_after_the_last():
    model, shape = _lenet()
    batches = _batches(8)
    pruner = EnergyPruner(model, budget=0.4, input_shape=shape, interval=4, total_steps=8, **PAPER)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    _loop(model, pruner, opt, batches[:4])
    assert all(bool(m.all()) for m in weight_masks(model).values())  # released after projection 1 of 2
    assert any(bool((w == 0).any()) for w in effective_weights(model).values())  # but pruned weights are zero
    _loop(model, pruner, opt, batches[4:])
    assert not all(bool(m.all()) for m in weight_masks(model).values())


def test_state_dict_resume_equals_uninterrupted():
    batches = _batches(10)

    def fresh():
        model, shape = _lenet()
        pruner = EnergyPruner(model, budget=0.35, input_shape=shape, interval=3, total_steps=10, steps_per_epoch=5,
                              **PAPER)
        return model, pruner, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    model, pruner, opt = fresh()
    _loop(model, pruner, opt, batches)
    expected = copy.deepcopy(model.state_dict())

    model, pruner, opt = fresh()
    _loop(model, pruner, opt, batches[:6])
    saved = copy.deepcopy((model.state_dict(), pruner.state_dict(), opt.state_dict()))
    model, pruner, opt = fresh()
    model.load_state_dict(saved[0])
    pruner.load_state_dict(saved[1])
    opt.load_state_dict(saved[2])
    _loop(model, pruner, opt, batches[6:])
    state = model.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in state)


def test_load_state_dict_rejects_another_budget():
    model, shape = _lenet()
    state = EnergyPruner(model, budget=0.35, input_shape=shape, **PAPER).state_dict()
    other = EnergyPruner(_lenet()[0], budget=0.5, input_shape=shape, **PAPER)
    with pytest.raises(ValueError, match="budget"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="pruner state must have the keys"):
        other.load_state_dict({"step": 1})


def test_torch_prune_masks_are_kept_and_combined():
    model, shape = _lenet()
    prune.l1_unstructured(model.conv1, "weight", amount=0.5)
    prune.random_unstructured(model.fc1, "weight", amount=0.3)
    before = {"conv1": model.conv1.weight_mask.clone(), "fc1": model.fc1.weight_mask.clone()}
    pruner = EnergyPruner(model, budget=0.5, input_shape=shape, interval=2, total_steps=4, **PAPER)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    _loop(model, pruner, opt, _batches(4))
    pruner.release()  # even released, torch's masks stay in force
    for name, mask in before.items():
        assert not bool(((mask == 0) & (weight_masks(model)[name])).any())
    report = pruner.finalize()
    assert report["energy_simulated_relative"] <= 0.5
    for name, mask in before.items():
        assert not bool(((mask == 0) & (effective_weights(model)[name] != 0)).any())


def test_a_failing_pruner_leaves_the_model_untouched():
    model, shape = _lenet()
    prune.l1_unstructured(model.conv2, "weight", amount=0.5)
    keys = set(model.state_dict())
    with pytest.raises(InfeasibleBudgetError, match="minimum achievable energy"):
        EnergyPruner(model, budget=0.05, input_shape=shape, **PAPER)
    assert set(model.state_dict()) == keys


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(budget=1.5), "budget must be a number in \\(0, 1\\], got 1.5"),
        (dict(budget=0.3, budget_abs=10.0), "exactly one of budget and budget_abs"),
        (dict(budget=float("nan")), "budget must be"),
        (dict(budget=0.3, estimator="spice"), "estimator must be one of paper, systolic"),
        (dict(budget=0.3, method="random"), "method must be one of"),
        (dict(budget=0.3, interval=0), "interval must be an int >= 1"),
        (dict(budget=0.3, total_steps=2.5), "total_steps must be None or an int >= 1"),
        (dict(budget=0.3, input_shape=None), "input_shape must be a sequence of positive ints"),
        (dict(budget=0.3, structure="blocks"), "structure must be one of none"),
        (dict(budget=0.3, profile=3), "profile must be"),
    ],
)
def test_bad_arguments_are_one_line_errors_naming_the_argument(kwargs, message):
    model, shape = _lenet()
    args = dict(profile="eyeriss-iclr19", estimator="paper", input_shape=shape) | kwargs
    with pytest.raises(ValueError, match=message) as info:
        EnergyPruner(model, **args)
    assert "\n" not in str(info.value)
    assert not weight_masks(model)


def test_the_example_trains_with_its_own_loop_within_budget():
    spec = importlib.util.spec_from_file_location("own_loop", REPO / "examples" / "own_loop.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--budget", "0.4", "--pretrain-epochs", "1", "--epochs", "1"])
    assert result["energy_simulated_relative"] <= 0.4
    assert result["accuracy"] > 0.3  # far above chance (0.1) after two short epochs


def test_add_weight_masks_on_a_partly_pruned_model_changes_nothing():
    from compress.masks import add_weight_masks

    model, _ = _lenet()
    prune.l1_unstructured(model.fc1, "weight", amount=0.5)
    keys = set(model.state_dict())
    with pytest.raises(ValueError, match="'fc1' already has a weight mask"):
        add_weight_masks(model, ["conv1", "conv2", "fc1", "fc2"])
    assert set(model.state_dict()) == keys  # conv1 and conv2 were not masked half-way
