"""Energy-constrained training (compress.train) and ``ecc train``."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from compress.budget import EnergyModel
from compress.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from compress.cli import main
from compress.masks import add_weight_masks, effective_weights, input_masks
from compress.projection import InfeasibleBudgetError, LayerCost, layer_energy, project
from compress.rundir import model_file
from compress.train import (
    METHODS,
    BudgetNotMetError,
    _DEFAULT_PRETRAIN_EPOCHS,
    TrainConfig,
    _Run,
    meet_budget,
    train,
)
from energysim import load_profile
from energysim.simulate import simulate
from energysim.sparsity import Sparsity
from energysim.workload import extract_workload
from energysim.zoo import build_model

pytestmark = [
    pytest.mark.filterwarnings("ignore::energysim.workload.UnmodelledLayerWarning"),
    pytest.mark.usefixtures("one_thread"),
]

REPO = Path(__file__).resolve().parents[1]
# A short lenet5 run on digits with the paper's model (each epoch takes well under a second).
FAST = dict(model="lenet5", dataset="digits", profile="eyeriss-iclr19", estimator="paper", quiet=True)


def _config(out: Path, **kw) -> TrainConfig:
    return TrainConfig(out=str(out), **{**FAST, **kw})


def _state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _report_without_time(report: dict) -> dict:
    return {k: v for k, v in report.items() if not k.startswith("wall_time")}


# -- the guarantee ------------------------------------------------------------------


class _PessimisticSimulator:
    """A stand-in energy model whose 'simulated' energy is 1.25 x the proxy energy."""

    def __init__(self, costs):
        self.costs = costs
        self.calls = 0

    def simulate(self, model):
        self.calls += 1
        weights = effective_weights(model)
        proxy = math.fsum(layer_energy(c, int(torch.count_nonzero(weights[n]))) for n, c in self.costs.items())
        return SimpleNamespace(energy=1.25 * proxy)


def _tiny_masked_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    add_weight_masks(model, ["0", "2"])
    costs = {"0": LayerCost("0", 2.0, 2.0, None, 10.0), "2": LayerCost("2", 1.0, 1.0, None, 5.0)}
    return model, costs


def test_meet_budget_reprojects_until_the_simulation_fits():
    model, costs = _tiny_masked_model()
    dense = {n: w.clone() for n, w in effective_weights(model).items()}
    sim = _PessimisticSimulator(costs)
    # Dense proxy: 10 + 2*48 + 5 + 1*18 = 129, simulated 161.25 > 100: one re-projection at the proxy
    # budget 129 * 100 / 161.25 = 80, whose simulation (1.25 * proxy <= 100) fits.
    report, proxy_budget, steps = meet_budget(model, sim, METHODS["ecc"], costs, 100.0)
    assert (steps, sim.calls) == (1, 2) and proxy_budget == pytest.approx(80.0)
    expected = project(dense, costs, proxy_budget)
    for n, w in effective_weights(model).items():
        assert torch.equal(w != 0, expected.masks[n])
    assert report.energy == 1.25 * expected.energy <= 100.0


def test_meet_budget_does_nothing_when_the_simulation_fits():
    model, costs = _tiny_masked_model()
    before = {n: w.clone() for n, w in effective_weights(model).items()}
    report, proxy_budget, steps = meet_budget(model, _PessimisticSimulator(costs), METHODS["ecc"], costs, 1000.0)
    assert (steps, proxy_budget, report.energy) == (0, 1000.0, 1.25 * 129)
    for n, w in effective_weights(model).items():
        assert torch.equal(w, before[n])


def test_meet_budget_below_the_floor_is_a_clear_error():
    model, costs = _tiny_masked_model()
    # The floor is 15 (simulated 18.75): a budget of 16 cannot be met.
    with pytest.raises(BudgetNotMetError, match="minimum achievable energy 15"):
        meet_budget(model, _PessimisticSimulator(costs), METHODS["ecc"], costs, 16.0)


# -- checkpoint files ---------------------------------------------------------------


def test_checkpoint_round_trip_and_atomic_write_leaves_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"state": {"epoch": 3}, "model": {"w": torch.arange(4.0)}})
    save_checkpoint(path, {"state": {"epoch": 4}, "model": {"w": torch.arange(5.0)}})
    loaded = load_checkpoint(path)
    assert loaded["state"] == {"epoch": 4} and torch.equal(loaded["model"]["w"], torch.arange(5.0))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would create it, not mkstemp's 0600


def test_truncated_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(1000)}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{path}: not a readable checkpoint"):
        load_checkpoint(path)
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an `ecc train` checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


# -- configuration ------------------------------------------------------------------


def test_config_reports_every_problem(tmp_path):
    with pytest.raises(ValueError) as info:
        TrainConfig(
            model="lenet5", dataset="nope", profile="eyeriss-iclr19", out=str(tmp_path),
            budget=0.2, budget_abs=5.0, method="random", epochs=0,
        )
    text = str(info.value)
    for fragment in ("dataset must be one of digits", "exactly one of budget and budget_abs",
                     "method must be one of ecc", "epochs must be an int >= 1, got 0"):
        assert fragment in text


# -- training runs ------------------------------------------------------------------


def test_lenet5_digits_meets_the_budget(tmp_path):
    out = tmp_path / "run"
    result = train(_config(out, budget=0.3, pretrain_epochs=2, epochs=2))
    r = result.report
    for key in ("accuracy", "dense_accuracy", "budget", "budget_abs", "energy_proxy", "energy_simulated",
                "energy_dense", "energy_simulated_relative", "estimator", "profile", "layers",
                "wall_time_s", "epochs", "seed", "method"):
        assert key in r
    assert r["budget"] == pytest.approx(0.3)
    assert r["energy_simulated"] <= r["budget_abs"] and r["energy_proxy"] <= r["budget_abs"]
    assert r["energy_simulated_relative"] == pytest.approx(r["energy_simulated"] / r["energy_dense"])
    assert r["epochs"] == 4 and r["estimator"] == "paper" and r["profile"] == "eyeriss-iclr19"
    assert r["accuracy"] > 0.5  # ten classes: chance is 0.1

    # The saved model, read the way `ecc simulate --checkpoint RUN_DIR` reads it, gives the same energy.
    profile = load_profile("eyeriss-iclr19")
    model, shape = build_model("lenet5")
    workload = extract_workload(model, shape, name="lenet5")
    report = simulate(workload, profile, "paper", Sparsity.from_checkpoint(model_file(out), workload))
    assert report.energy == r["energy_simulated"]
    assert [l["name"] for l in r["layers"]] == list(workload.layer_names)
    assert [l["energy"] for l in r["layers"]] == [l.energy for l in report.layers]
    assert math.fsum(l["energy"] for l in r["layers"]) == pytest.approx(r["energy_simulated"])

    # One log row per epoch; the budget anneals and the last projection is exactly at the target.
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["phase"] for row in rows] == ["pretrain", "pretrain", "weights", "weights"]
    assert rows[2]["budget"] > rows[3]["budget"] == r["budget_abs"]
    assert rows[1]["energy_proxy"] == r["energy_dense"] > rows[2]["energy_proxy"] > rows[3]["energy_proxy"]
    assert rows[3]["energy_proxy"] <= r["budget_abs"]
    csv_lines = (out / "log.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and "density.conv1" in csv_lines[0].split(",")
    assert json.loads((out / "report.json").read_text()) == r
    assert json.loads((out / "config.json").read_text())["budget"] == 0.3


def test_input_mask_phase_gives_binary_masks_within_the_mask_budget(tmp_path):
    config = _config(tmp_path / "run", budget=0.4, input_mask=True, pretrain_epochs=1, epochs=1, max_rounds=1,
                     mask_keep=0.8)
    result = train(config)
    masks = input_masks(result.model)
    assert list(masks) == ["conv1", "conv2"]
    for m in masks.values():
        assert set(m.detach().unique().tolist()) <= {0.0, 1.0}
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [row["phase"] for row in rows] == ["pretrain", "weights", "mask", "weights"]

    model, shape = build_model("lenet5")
    energy = EnergyModel(extract_workload(model, shape, name="lenet5"), load_profile("eyeriss-iclr19"), "paper")
    costs = energy.input_costs()
    kept = math.fsum(costs[n] * int(torch.count_nonzero(m)) for n, m in masks.items())
    dense = math.fsum(costs[n] * m.numel() for n, m in masks.items())
    assert 0 < kept <= 0.8 * dense
    r = result.report
    assert r["energy_simulated"] <= r["budget_abs"]
    assert r["input_mask_rounds"] == 1
    for layer in r["layers"]:
        if layer["name"] in masks:
            m = masks[layer["name"]]
            assert layer["input_density"] == float(torch.count_nonzero(m)) / m.numel()


def test_start_from_a_run_folder_and_a_baseline_method(tmp_path):
    first = train(_config(tmp_path / "first", budget=0.5, pretrain_epochs=1, epochs=1))
    second = train(_config(tmp_path / "second", budget=0.3, epochs=1, checkpoint=str(tmp_path / "first"),
                           method="magnitude"))
    r = second.report
    # No pretraining: the starting model is the first run's final one, evaluated the same way.
    assert r["epochs_by_phase"] == {"weights": 1} and r["dense_accuracy"] == first.report["accuracy"]
    assert r["method"] == "magnitude" and r["energy_simulated"] <= r["budget_abs"]


class _Stop(Exception):
    pass


@pytest.mark.parametrize(
    "kw",
    [
        dict(budget=0.3, pretrain_epochs=1, epochs=3),
        dict(budget=0.4, pretrain_epochs=1, epochs=1, input_mask=True, max_rounds=1),
    ],
    ids=["weights", "input-mask"],
)
def test_resume_equals_uninterrupted(tmp_path, monkeypatch, kw):
    whole = train(_config(tmp_path / "whole", **kw))

    original = _Run._epoch
    calls = []

    def stop_after_two(self):
        if len(calls) == 2:
            raise _Stop
        calls.append(1)
        original(self)

    monkeypatch.setattr(_Run, "_epoch", stop_after_two)
    with pytest.raises(_Stop):
        train(_config(tmp_path / "parts", **kw))
    monkeypatch.setattr(_Run, "_epoch", original)
    assert load_checkpoint(tmp_path / "parts" / "checkpoint.pt")["state"]["epochs_done"] == 2
    resumed = train(_config(tmp_path / "parts", **kw, quiet=False), resume=True)

    _assert_same_state(_state(tmp_path / "whole"), _state(tmp_path / "parts"))
    assert _report_without_time(resumed.report) == _report_without_time(whole.report)
    logs = [
        [{k: v for k, v in json.loads(line).items() if k != "wall_s"} for line in (d / "log.jsonl").open()]
        for d in (tmp_path / "whole", tmp_path / "parts")
    ]
    assert logs[0] == logs[1]


def test_resume_of_a_finished_run_returns_its_report(tmp_path):
    config = _config(tmp_path / "run", budget=0.5, pretrain_epochs=1, epochs=1)
    first = train(config)
    again = train(config, resume=True)
    assert again.report == first.report


# -- the command line ---------------------------------------------------------------

_CLI = ["train", "--model", "lenet5", "--dataset", "digits", "--profile", "eyeriss-iclr19", "--estimator", "paper",
        "--quiet"]


def test_cli_help_states_the_config_defaults():
    import argparse
    import dataclasses
    import re

    from compress.cli import train as train_cli

    sub = argparse.ArgumentParser().add_subparsers()
    train_cli.register(sub)
    parser = sub.choices["train"]
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    defaults["pretrain_epochs"] = _DEFAULT_PRETRAIN_EPOCHS  # None in the config: 10, or 0 from a checkpoint
    checked = 0
    for action in parser._actions:
        found = re.search(r"default:? ([0-9][0-9.e-]*)", action.help or "")
        if found and action.dest in defaults:
            assert float(found.group(1)) == defaults[action.dest], action.dest
            checked += 1
    assert checked >= 10


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return next(line for line in err if line.startswith("ecc train: error:"))


def test_cli_refuses_a_non_empty_out_dir(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(_CLI + ["--budget", "0.3", "--out", str(tmp_path)]) == 2
    line = _error_line(capsys)
    assert str(tmp_path) in line and "--resume" in line
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_cli_infeasible_budget_states_the_minimum(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_CLI + ["--budget", "0.05", "--out", str(out)]) == 2
    line = _error_line(capsys)
    # lenet5 on eyeriss-iclr19 (paper model): the constants sum to 2,604,944 of 17,107,544 (15.23 %).
    assert "minimum achievable energy 2.60494e+06" in line and "15.23%" in line
    assert not out.exists()


def test_cli_unknown_dataset(tmp_path, capsys):
    assert main(["train", "--model", "lenet5", "--dataset", "nope", "--profile", "eyeriss-iclr19", "--budget", "0.3",
                 "--out", str(tmp_path / "run")]) == 2
    assert "dataset must be one of digits" in capsys.readouterr().err


def test_cli_input_mask_needs_conv_layers(tmp_path, capsys):
    args = ["train", "--model", "lenet300", "--dataset", "digits", "--profile", "eyeriss-iclr19", "--estimator",
            "paper", "--budget", "0.5", "--input-mask", "--out", str(tmp_path / "run")]
    assert main(args) == 2
    assert "lenet300 has none: drop --input-mask" in _error_line(capsys)


def test_cli_missing_dataset_files(tmp_path, capsys):
    args = ["train", "--model", "lenet300", "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "none"),
            "--profile", "eyeriss-iclr19", "--budget", "0.3", "--out", str(tmp_path / "run")]
    assert main(args) == 2
    assert str(tmp_path / "none") in _error_line(capsys)


def test_cli_corrupt_checkpoint_names_the_file(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    assert main(_CLI + ["--budget", "0.3", "--out", str(tmp_path), "--resume"]) == 2
    assert str(tmp_path / "checkpoint.pt") in _error_line(capsys)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def test_cli_resume_with_other_options_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_CLI + ["--budget", "0.5", "--epochs", "1", "--pretrain-epochs", "1", "--out", str(out)]) == 0
    assert "accuracy" in capsys.readouterr().out
    changed = ["--budget", "0.4", "--epochs", "1", "--pretrain-epochs", "1", "--out", str(out), "--resume"]
    assert main(_CLI + changed) == 2
    out_err = capsys.readouterr().err
    assert "cannot resume with a different configuration" in out_err and "budget: the run has 0.5, got 0.4" in out_err


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    args = ["--budget", "0.3", "--pretrain-epochs", "2", "--epochs", "1", "--seed", "3"]
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "compress"] + _CLI + args + ["--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Kill in the second epoch: after the first epoch's checkpoint and log row are written.
        deadline = time.monotonic() + 120
        log = out / "log.jsonl"
        while not (log.is_file() and log.read_text().count("\n") >= 1):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run wrote no log row in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["state"]["phase"] != "done"

    done = subprocess.run(cmd + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(out / "checkpoint.pt")["state"]["phase"] == "done"

    whole = train(_config(tmp_path / "whole", budget=0.3, pretrain_epochs=2, epochs=1, seed=3))
    _assert_same_state(_state(tmp_path / "whole"), _state(out))
    report = json.loads((out / "report.json").read_text())
    assert _report_without_time(report) == _report_without_time(whole.report)


def test_input_masks_reach_budgets_below_the_weight_floor(tmp_path):
    """lenet5 on eyeriss-iclr19: pruning every weight leaves 15.23 % of the dense energy; masking
    conv inputs (down to 70 % of their energy in the third round) lowers the floor to 13.31 %."""
    with pytest.raises(InfeasibleBudgetError, match="15.23%"):
        train(_config(tmp_path / "weights-only", budget=0.15, epochs=1, pretrain_epochs=1))
    with pytest.raises(InfeasibleBudgetError, match="13.31%"):
        train(_config(tmp_path / "too-low", budget=0.1, input_mask=True, epochs=1, pretrain_epochs=1))
    report = train(_config(tmp_path / "masked", budget=0.15, input_mask=True, epochs=1, pretrain_epochs=1)).report
    assert report["energy_simulated"] <= report["budget_abs"]
    assert report["best_round"] == report["input_mask_rounds"] == 3  # every round was needed to get there
    assert any(l["input_density"] < 1 for l in report["layers"] if l["name"] in ("conv1", "conv2"))
