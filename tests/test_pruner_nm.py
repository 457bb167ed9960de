"""EnergyPruner with --structure nm on an N:M array: prices that match the simulator, budgets met, one-line errors."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from compress.budget import EnergyModel
from compress.nm import nm_candidates, nm_energy
from compress.pruner import EnergyPruner
from compress.schedule import InfeasibleBudgetError
from energysim import build_model, load_profile
from energysim.estimators.systolic import estimate_layer
from energysim.model.nm import nm_compliant
from energysim.sparsity import LayerSparsity
from energysim.workload import LayerSpec, Workload

pytestmark = [pytest.mark.usefixtures("one_thread")]


def _lenet(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("lenet5")


def test_nm_prices_of_a_linear_layer_are_the_simulators():
    """fc 96 -> 40 (K' = 48 slots: two row tiles, two column tiles): every weight takes part in one MAC, so the
    N:M price is exact for any N:M pattern that keeps every tile; the dense price is the table's row, whose
    bitmask weight words make the stalls depend a little on where the zeros are (within 1e-4 here)."""
    fc = LayerSpec("fc", "linear", (96,), (40,), 96, 40, (1, 1), (1, 1), (0, 0), (1, 1), 1, False)
    profile = load_profile("nm-32x32")
    energy = EnergyModel(Workload("fc", (96,), (fc,)), profile)
    cost = energy.nm_costs()["fc"]
    rng = np.random.default_rng(0)
    weight = torch.from_numpy(rng.normal(size=(40, 96)))
    nm = weight * nm_candidates(weight, 2, 4) * torch.from_numpy(rng.random((40, 96)) < 0.8)
    assert nm_compliant((nm != 0).numpy().T[None], 2, 4)
    dense = weight * torch.from_numpy(rng.random((40, 96)) < 0.7)
    for w, rel in ((nm, 1e-12), (dense, 1e-4)):
        truth = estimate_layer(fc, profile, LayerSparsity((w != 0).numpy(), None)).energy
        assert nm_energy(cost, w) == pytest.approx(truth, rel=rel)


@pytest.mark.parametrize("method, budget", [("ecc", 0.45), ("magnitude", 0.7)])
def test_nm_runs_meet_the_budget_on_the_simulator(method, budget):
    model, shape = _lenet()
    pruner = EnergyPruner(model, "nm-32x32", budget=budget, input_shape=shape, method=method, structure="nm")
    report = pruner.finalize()
    assert report["energy_simulated_relative"] <= budget
    assert report["structure"] == "nm"
    assert all("nm" in layer for layer in report["layers"])
    if method == "magnitude":
        # ASP: the converted layers keep at most 2 of every 4.
        assert any(layer["nm"] for layer in report["layers"])


def test_asp_floor_is_every_layer_nm_with_nothing_kept():
    model, shape = _lenet()
    with pytest.raises(InfeasibleBudgetError, match="minimum achievable energy"):
        EnergyPruner(model, "nm-32x32", budget=0.45, input_shape=shape, method="magnitude", structure="nm")


@pytest.mark.parametrize("profile, overrides", [("edge-16x16", []), ("nm-32x32", ["sparsity.nm.n=null", "sparsity.nm.m=null"])])
def test_nm_structure_needs_an_nm_array(profile, overrides):
    model, shape = _lenet()
    with pytest.raises(ValueError, match="has no sparsity.nm") as caught:
        EnergyPruner(model, profile, budget=0.5, input_shape=shape, structure="nm", overrides=overrides)
    assert "\n" not in str(caught.value) and profile in str(caught.value)
    with pytest.raises(ValueError, match="method 'uniform' has no 'nm' version"):
        EnergyPruner(model, "nm-32x32", budget=0.5, input_shape=shape, structure="nm", method="uniform")
    with pytest.raises(ValueError, match="'paper' estimator does not model N:M"):
        EnergyPruner(model, "nm-32x32", budget=0.5, input_shape=shape, structure="nm", estimator="paper")


def test_cli_train_nm_on_a_profile_without_nm_exits_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "compress", "train", "--model", "lenet5", "--dataset", "digits", "--profile",
         "edge-16x16", "--budget", "0.5", "--structure", "nm", "--epochs", "1", "--pretrain-epochs", "0",
         "--out", str(tmp_path / "run"), "--quiet"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    errors = [l for l in done.stderr.splitlines() if l and not l.startswith("note: ")]
    assert len(errors) == 1 and "'edge-16x16' has no sparsity.nm" in errors[0], done.stderr
