"""Command-line inputs the ``ecc`` front end must refuse, and notes it must print once.

Covers ``--input-shape`` parsing, ``--input-density`` against ``--inputs-from`` in
``ecc simulate``, and the "not modelled" note: one line per model and command
invocation, whatever the command does with the workload afterwards.
"""

from __future__ import annotations

import argparse
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from compress.cli import main
from compress.cli._common import parse_shape

PAPER = ["--profile", "eyeriss-iclr19", "--estimator", "paper"]
# The note model_from_args and ecc train print for a model with unmodelled modules.
NOTE = re.compile(r"^note: model \S+: \d+ modules compute but are not modelled \(operator, output elements\): ")


def tiny(num_classes=10):
    """A digits-sized (1x8x8) conv + linear model whose ReLU computes but is not modelled."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, num_classes))
    return model, (1, 8, 8)


TINY = "test_trust_cli:tiny"


def notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if NOTE.match(line)]


# -- --input-shape ----------------------------------------------------------------


@pytest.mark.parametrize("text", ["1,,32", ",1,32", "1,32,", "1x,32", "1, ,32", "1,32,+3", "1_0,32,32", "3,٣,3"])
def test_input_shape_with_an_empty_or_non_decimal_part_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text))):
        parse_shape(text)


@pytest.mark.parametrize("text, shape", [("3,224,224", (3, 224, 224)), ("3x32x32", (3, 32, 32)), (" 1, 8 ,8 ", (1, 8, 8)),
                                         ("784", (784,))])
def test_input_shape_accepts_commas_or_x(text, shape):
    assert parse_shape(text) == shape


def test_cli_input_shape_with_an_empty_part_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--model", "lenet5", *PAPER, "--input-shape", "1,,32"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --input-shape: expected comma-separated positive integers" in err and "'1,,32'" in err
    assert "Traceback" not in err


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=5), st.sampled_from([",", "x", " , ", ", "]))
def test_parse_shape_reads_back_any_written_shape(shape, separator):
    assert parse_shape(separator.join(map(str, shape))) == tuple(shape)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789,x -+_.a٣"), max_size=12) | st.text(max_size=12))
def test_parse_shape_fuzz(text):
    """Either the positive ints the parts spell, or one clean line naming the text."""
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    valid = all(re.fullmatch(r"[0-9]+", p) and int(p) > 0 for p in parts)
    try:
        shape = parse_shape(text)
    except argparse.ArgumentTypeError as exc:
        assert not valid
        assert "\n" not in str(exc) and repr(text) in str(exc)
    else:
        assert valid and shape == tuple(int(p) for p in parts)


# -- ecc simulate: one source of input sparsity ------------------------------------


def test_input_density_with_inputs_from_is_an_error(tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["simulate", "--model", "lenet5", *PAPER, "--inputs-from", "digits", "--input-density", "0.5",
            "--json", str(out), "--plot", str(tmp_path / "fig")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("ecc simulate: error:")]
    assert len(errors) == 1 and "--input-density" in errors[0] and "--inputs-from" in errors[0]
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_weight_density_with_inputs_from_is_still_allowed(capsys):
    """Only the input density competes with the activations; synthetic weights may drive them."""
    assert main(["simulate", "--model", "lenet5", *PAPER, "--inputs-from", "digits", "--weight-density", "0.5"]) == 0


# -- the "not modelled" note: once per model and command ---------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--model", TINY, *PAPER],
        ["simulate", "--model", TINY, *PAPER, "--inputs-from", "digits", "--trace", "0", "--estimator", "systolic"],
        ["coeffs", "--model", TINY, "--profile", "eyeriss-iclr19", "--verify"],
        ["coeffs", "--model", TINY, "--profile", "eyeriss-iclr19", "--estimator", "paper", "--verify"],
    ],
    ids=["simulate", "simulate-activations-trace", "coeffs-verify", "coeffs-paper-verify"],
)
def test_note_is_printed_once(capsys, argv):
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert notes(err) == ["note: model test_trust_cli:tiny: 1 modules compute but are not modelled (operator, "
                          "output elements): 1 (ReLU): relu 144; their cost is not in the workload"]


def test_note_is_printed_once_per_train_invocation(tmp_path, capsys):
    """A run, its resumption and a run started from its folder (read back by the run-folder reader)."""
    common = ["--model", TINY, "--dataset", "digits", *PAPER, "--budget", "0.9", "--epochs", "1",
              "--pretrain-epochs", "1", "--max-rounds", "1", "--quiet"]
    for extra in (["--out", str(tmp_path / "a")], ["--out", str(tmp_path / "a"), "--resume"],
                  ["--out", str(tmp_path / "b"), "--checkpoint", str(tmp_path / "a"), "--pretrain-epochs", "0"]):
        assert main(["train", *common, *extra]) == 0
        assert len(notes(capsys.readouterr().err)) == 1, extra


def test_note_is_printed_once_per_sweep(tmp_path, capsys, monkeypatch):
    """The cells train in worker processes that ignore the note (it is the same in every cell):
    the command itself must print it, once, before any cell runs."""
    configs = []
    monkeypatch.setattr("compress.sweep.run_sweep", lambda config, out: configs.append(config) or [])
    argv = ["sweep", "--model", TINY, "--dataset", "digits", *PAPER, "--budgets", "0.5,0.3", "--seeds", "0,1",
            "--out", str(tmp_path / "s")]
    assert main(argv) == 0
    assert len(configs) == 1
    assert len(notes(capsys.readouterr().err)) == 1


def test_strict_sweep_fails_before_writing_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("compress.sweep.run_sweep", lambda config, out: pytest.fail("a cell ran"))
    argv = ["sweep", "--model", TINY, "--dataset", "digits", *PAPER, "--budgets", "0.5", "--strict",
            "--out", str(tmp_path / "s")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ecc sweep: error: model test_trust_cli:tiny: 1 modules compute but are not modelled" in err
    assert not (tmp_path / "s").exists()
