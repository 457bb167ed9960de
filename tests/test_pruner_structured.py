"""EnergyPruner with --structure tile|hybrid: budgets met on the simulator, no wasted slack,
no layer collapse, one-line errors where the array gives no skipping."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from compress.baselines import hybrid_magnitude_masks, tile_magnitude_masks
from compress.budget import EnergyModel
from compress import pruner as pruner_module
from compress.keep_layers import fill_groups, keep_every_layer, reserved_floor
from compress.masks import effective_weights
from compress.pruner import STRUCTURED_METHODS, EnergyPruner
from compress.schedule import InfeasibleBudgetError
from compress.structured import GroupCost, proxy_group_energy
from energysim import build_model, extract_workload, load_profile

pytestmark = [pytest.mark.usefixtures("one_thread")]


def _lenet(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("lenet5")


@pytest.mark.parametrize("structure", ["none", "tile", "hybrid"])
@pytest.mark.parametrize("method", ["ecc", "magnitude"])
def test_final_energy_lands_in_the_last_three_percent_of_the_budget(method, structure):
    """On edge-16x16 (tile skipping on) the simulated energy ends in [0.97, 1] x budget."""
    model, shape = _lenet()
    budget = 0.4 if structure == "none" else 0.2
    pruner = EnergyPruner(model, "edge-16x16", budget=budget, input_shape=shape, method=method, structure=structure)
    report = pruner.finalize()
    assert 0.97 * budget <= report["energy_simulated_relative"] <= budget
    assert report["structure"] == structure
    # Every layer keeps a tile (structured runs reserve one; unstructured ones keep weights everywhere here).
    assert all(l["tiles_kept"] >= 1 for l in report["layers"]), report["layers"]
    assert all(l["tiles_total"] > 0 for l in report["layers"])


def test_unstructured_runs_no_longer_waste_the_budget():
    """Before the landing search, lenet5 at 0.3 on edge-16x16 ended at 0.16 of the dense energy
    (the table charged every tile, which the array skips): the search loosens the proxy budget."""
    model, shape = _lenet(1)
    pruner = EnergyPruner(model, "edge-16x16", budget=0.3, input_shape=shape)
    report = pruner.finalize()
    assert 0.291 <= report["energy_simulated_relative"] <= 0.3
    assert report["proxy_budget"] > report["budget_abs"]


def test_structured_budgets_reach_far_below_the_unstructured_floor():
    model, shape = _lenet()
    with pytest.raises(InfeasibleBudgetError, match="minimum achievable energy"):
        EnergyPruner(model, "edge-16x16", budget=0.15, input_shape=shape)
    pruner = EnergyPruner(model, "edge-16x16", budget=0.15, input_shape=shape, structure="tile")
    assert pruner.plan.floor / pruner.plan.dense < 0.1
    assert pruner.finalize()["energy_simulated_relative"] <= 0.15


@pytest.mark.parametrize(
    ("overrides", "estimator", "method", "message"),
    [
        (["sparsity.skip_zero_tiles=false"], "systolic", "ecc", "skip_zero_tiles: false"),
        ([], "paper", "ecc", "the 'paper' estimator has no array tiles"),
        (["array.dataflow=is"], "systolic", "ecc", "skips tiles of its inputs"),
        ([], "systolic", "uniform", "method 'uniform' has no 'tile' version"),
    ],
)
def test_a_structure_that_skips_nothing_is_a_one_line_error(overrides, estimator, method, message):
    model, shape = _lenet()
    with pytest.raises(ValueError, match=message) as caught:
        EnergyPruner(model, "edge-16x16", budget=0.5, input_shape=shape, estimator=estimator, method=method,
                     structure="tile", overrides=overrides)
    assert "\n" not in str(caught.value)
    assert not hasattr(model.conv1, "weight_mask")  # nothing was changed


def test_cli_train_with_a_structure_on_a_profile_without_skipping_exits_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "compress", "train", "--model", "lenet5", "--dataset", "digits", "--profile",
         "edge-16x16", "--set", "sparsity.skip_zero_tiles=false", "--budget", "0.5", "--structure", "hybrid",
         "--epochs", "1", "--pretrain-epochs", "0", "--out", str(tmp_path / "run"), "--quiet"],
        capture_output=True, text=True,
    )
    assert done.returncode == 2
    errors = [l for l in done.stderr.splitlines() if l and not l.startswith("note: ")]
    assert len(errors) == 1 and "skip_zero_tiles: false" in errors[0], done.stderr


@pytest.fixture(scope="module")
def lenet_costs():
    model, shape = _lenet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        energy = EnergyModel(extract_workload(model, shape), load_profile("edge-16x16"))
    weights = {n: model.get_submodule(n).weight.detach().clone() for n in energy.workload.layer_names}
    return weights, energy.group_costs()


def test_keep_every_layer_reserves_the_best_tile_of_each_layer(lenet_costs):
    weights, costs = lenet_costs
    floor = reserved_floor(costs, weights)
    assert reserved_floor(costs) <= floor
    for (method, structure), fn in STRUCTURED_METHODS.items():
        if structure == "nm":  # on NMCost prices (tests/test_pruner_nm.py)
            continue
        masks = fn(weights, costs, floor * 1.05)
        assert all(bool(m.any()) for m in masks.values()), (method, structure)
        assert proxy_group_energy({n: masks[n] for n in weights}, costs) <= floor * 1.05
    with pytest.raises(InfeasibleBudgetError) as caught:
        STRUCTURED_METHODS[("ecc", "tile")](weights, costs, floor * 0.99)
    assert caught.value.min_energy == pytest.approx(floor, rel=1e-12)


def test_the_reserved_tile_is_the_methods_first():
    """Two layers, two tiles each; the other tiles cost too much to keep: ECC reserves the tile of
    best value / energy, magnitude the tile of largest norm."""
    weights = {"a": torch.tensor([3.0, 3.0, 2.0, 0.0]), "b": torch.tensor([1.0, 1.0, 5.0, 5.0])}
    groups = torch.tensor([0, 0, 1, 1])
    costs = {n: GroupCost(n, groups, torch.tensor([100.0, 1.0], dtype=torch.float64), 0.0, 0.0) for n in weights}
    # a: values 18 (cost 100), 4 (cost 1): ratio prefers tile 1, norm tile 0; b: tile 1 either way.
    identity = lambda w, c, b: {n: torch.zeros_like(t, dtype=torch.bool) for n, t in w.items()}  # noqa: E731
    by_ratio = keep_every_layer(identity, "ratio")(weights, costs, 1000.0)
    by_norm = keep_every_layer(identity, "norm")(weights, costs, 1000.0)
    assert by_ratio["a"].tolist() == [False, False, True, False] and by_ratio["b"].tolist() == [False, False, True, True]
    assert by_norm["a"].tolist() == [True, True, False, False]
    # Too little for the ratio choice of "a" plus "b"'s best: each layer falls back to its cheapest tile.
    cheapest = keep_every_layer(identity, "norm")(weights, costs, 2.0)
    assert cheapest["a"].tolist() == [False, False, True, False]


def test_tile_magnitude_keeps_tiles_in_norm_order():
    weights = {"a": torch.tensor([1.0, 1.0, 3.0, 0.5, 2.0, 2.0])}
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    cost = GroupCost("a", groups, torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64), 1.0, 0.0)
    # norms: 2, 9.25, 8; each tile costs 1 + 2 = 3.
    assert tile_magnitude_masks(weights, {"a": cost}, 6.0)["a"].tolist() == [False, False, True, True, True, True]
    assert tile_magnitude_masks(weights, {"a": cost}, 5.9)["a"].tolist() == [False, False, True, True, False, False]


def test_hybrid_magnitude_never_exceeds_the_budget_and_uses_it(lenet_costs):
    weights, costs = lenet_costs
    dense = proxy_group_energy(weights, costs)
    for share in (0.3, 0.6, 0.9):
        masks = hybrid_magnitude_masks(weights, costs, share * dense)
        energy = proxy_group_energy({n: masks[n] for n in weights}, costs)
        assert 0.9 * share * dense <= energy <= share * dense


def test_structured_pruner_resumes_from_its_state(tmp_path):
    model, shape = _lenet()
    pruner = EnergyPruner(model, "edge-16x16", budget=0.2, input_shape=shape, structure="hybrid", interval=1,
                          total_steps=4)
    for _ in range(2):
        pruner.step()
    state, weights = pruner.state_dict(), {k: v.clone() for k, v in model.state_dict().items()}
    again, _ = _lenet(5)
    resumed = EnergyPruner(again, "edge-16x16", budget=0.2, input_shape=shape, structure="hybrid", interval=1,
                           total_steps=4)
    again.load_state_dict(weights)
    resumed.load_state_dict(state)
    for p in (pruner, resumed):
        for _ in range(2):
            p.step()
    np.testing.assert_array_equal(
        torch.cat([w.reshape(-1) for w in effective_weights(model).values()]).numpy(),
        torch.cat([w.reshape(-1) for w in effective_weights(again).values()]).numpy(),
    )
    assert pruner.finalize()["energy_simulated_relative"] <= 0.2


def test_fill_adds_whole_tiles_past_the_first_misfit_in_the_methods_order():
    """Tiles (value, energy): 0: (18, 1+2*1=3), 1: (4, 3+1=4), 2: (50, 20+2=22). From tile 0 kept,
    at budget 10 the ratio order is 2 (2.27) then 1 (1.0): 2 does not fit (3 + 22 > 10), 1 does."""
    weights = {"a": torch.tensor([3.0, 3.0, 2.0, 0.0, 5.0, 5.0])}
    cost = GroupCost("a", torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([1.0, 3.0, 20.0], dtype=torch.float64), 1.0, 0.0)
    start = {"a": torch.tensor([True, True, False, False, False, False])}
    filled = fill_groups(weights, {"a": cost}, start, 10.0, "ratio")
    assert filled["a"].tolist() == [True, True, True, False, False, False]  # the zero weight stays out
    assert proxy_group_energy({"a": weights["a"] * filled["a"]}, {"a": cost}) == 7.0
    # By norm tile 2 comes first and fits at 25; a budget below the start adds nothing.
    assert fill_groups(weights, {"a": cost}, start, 25.0, "norm")["a"].tolist() == [True, True, False, False, True, True]
    assert fill_groups(weights, {"a": cost}, start, 2.0, "ratio")["a"].tolist() == start["a"].tolist()


@pytest.mark.parametrize("method", ["ecc", "magnitude"])
def test_a_window_no_prefix_reaches_is_reached_by_the_fill(monkeypatch, method):
    """With the landing window narrowed to [0.995, 1], no prefix of lenet5's tiles at 0.2 lands
    in it (whole tiles jump over it); topping the best prefix up with tiles further down the
    method's order does."""
    monkeypatch.setattr(pruner_module, "_LANDING", 0.995)
    fills = []
    fill = EnergyPruner._fill
    monkeypatch.setattr(EnergyPruner, "_fill", lambda self, *a: fills.append(1) or fill(self, *a))
    model, shape = _lenet()
    pruner = EnergyPruner(model, "edge-16x16", budget=0.2, input_shape=shape, method=method, structure="tile", total_steps=1)
    report = pruner.finalize()
    assert fills, "the prefix landed by itself: the test no longer exercises the fill"
    assert 0.995 * 0.2 <= report["energy_simulated_relative"] <= 0.2
