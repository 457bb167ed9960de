"""`ecc simulate`: the table, JSON output, sparsity sources and one-line errors."""

import json

import pytest
import torch

from compress.cli import main
from energysim.zoo import build_model


def run_json(capsys, *argv):
    assert main(["simulate", *argv, "--json", "-"]) == 0
    return json.loads(capsys.readouterr().out)


def test_table_is_readable_in_100_columns(capsys):
    assert main(["simulate", "--model", "alexnet", "--profile", "eyeriss-iclr19", "--estimator", "paper"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(l) for l in lines) <= 100
    assert any(l.startswith("classifier.6") for l in lines) and any(l.startswith("total") for l in lines)


def test_json_matches_paper_figure(capsys):
    data = run_json(capsys, "--model", "lenet5", "--profile", "eyeriss-iclr19", "--estimator", "paper")
    assert data["total"]["energy_relaxed"] == pytest.approx(1.7108e7, rel=5e-5)
    assert [l["name"] for l in data["layers"]] == ["conv1", "conv2", "fc1", "fc2", "fc3"]


def test_synthetic_density_lowers_energy(capsys):
    dense = run_json(capsys, "--model", "lenet5", "--profile", "eyeriss-iclr19", "--estimator", "paper")
    sparse = run_json(capsys, "--model", "lenet5", "--profile", "eyeriss-iclr19", "--estimator", "paper",
                      "--weight-density", "0.2", "--input-density", "0.5", "--pattern", "channel")
    assert sparse["total"]["energy"] < dense["total"]["energy"]
    assert sparse["total"]["effective_macs"] < dense["total"]["effective_macs"]


def test_checkpoint_weights_are_used(tmp_path, capsys):
    model, _ = build_model("lenet5")
    with torch.no_grad():
        model.fc1.weight[:60] = 0
    torch.save(model.state_dict(), tmp_path / "w.pt")
    data = run_json(capsys, "--model", "lenet5", "--profile", "eyeriss-iclr19", "--estimator", "paper",
                    "--checkpoint", str(tmp_path / "w.pt"))
    fc1 = next(l for l in data["layers"] if l["name"] == "fc1")
    assert fc1["effective_macs"] == 60 * 400
    assert fc1["extra"]["weight_nnz"] == 60 * 400


def test_inputs_from_real_activations(capsys):
    data = run_json(capsys, "--model", "lenet5", "--profile", "eyeriss-iclr19", "--estimator", "paper",
                    "--inputs-from", "digits")
    conv2 = next(l for l in data["layers"] if l["name"] == "conv2")
    # ReLU + max-pool of a random-init network leave zeros in conv2's input.
    assert conv2["extra"]["input_nnz"] < 6 * 14 * 14


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--model", "nosuchpkg.mod:make"], "nosuchpkg"),
        (["--model", "lenet5", "--input-shape", "3,10,10"], "does not fit"),
        (["--model", "lenet5", "--weight-density", "1.5"], "weight density must be in (0, 1], got 1.5"),
        (["--model", "lenet5", "--input-density", "0"], "input density must be in (0, 1], got 0"),
        (["--model", "lenet5", "--checkpoint", "/nonexistent.pt"], "no such checkpoint file"),
    ],
)
def test_errors_are_one_line_exit_2(capsys, argv, message):
    assert main(["simulate", *argv, "--profile", "eyeriss-iclr19", "--estimator", "paper"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_checkpoint_that_does_not_match_the_model(tmp_path, capsys):
    model, _ = build_model("lenet300")
    torch.save(model.state_dict(), tmp_path / "other.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    assert main(["simulate", "--model", "lenet5", "--profile", "eyeriss-iclr19", "--estimator", "paper",
                 "--checkpoint", str(tmp_path / "other.pt")]) == 2
    assert "conv1.weight" in capsys.readouterr().err
    assert main(["simulate", "--model", "lenet5", "--profile", "eyeriss-iclr19", "--estimator", "paper",
                 "--checkpoint", str(tmp_path / "corrupt.pt")]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err


def test_activations_of_a_pruned_checkpoint_use_its_weights(tmp_path, capsys):
    """A checkpoint saved the torch.nn.utils.prune way (weight_orig + weight_mask) drives the
    activations too: with conv1 pruned entirely and a negative bias, conv2's input is all zero."""
    from compress.masks import add_weight_masks, set_weight_masks

    model, _ = build_model("lenet5")
    add_weight_masks(model, ["conv1"])
    with torch.no_grad():
        model.conv1.bias.fill_(-1.0)
    set_weight_masks(model, {"conv1": torch.zeros(6, 1, 5, 5, dtype=torch.bool)})
    torch.save(model.state_dict(), tmp_path / "pruned.pt")
    data = run_json(capsys, "--model", "lenet5", "--profile", "eyeriss-iclr19", "--estimator", "paper",
                    "--checkpoint", str(tmp_path / "pruned.pt"), "--inputs-from", "digits")
    conv2 = next(l for l in data["layers"] if l["name"] == "conv2")
    assert conv2["extra"]["input_nnz"] == 0  # conv1 outputs ReLU(-1) = 0 everywhere
