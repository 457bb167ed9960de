"""Sweep cells are (method, input mask, structure) values: `--methods ecc,ecc-mask` is read into
them once, each cell trains its value, results.csv names both the variant and its parts, and
`--structures` is checked against compress.pruner.STRUCTURES."""

import csv
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress import sweep
from compress.cli import build_parser, main
from compress.pruner import METHODS as PROJECTIONS
from compress.pruner import STRUCTURES
from compress.sweep import METHODS, SweepConfig, SweepFileError, Variant, read_results, read_settings, run_sweep
from compress.train import TrainConfig

TRAINING = dict(model="lenet5", dataset="digits", profile="eyeriss-iclr19", estimator="paper", budget=1.0,
                epochs=1, pretrain_epochs=2, max_rounds=1, quiet=True)
CLI = ["--model", "lenet5", "--dataset", "digits", "--profile", "eyeriss-iclr19", "--estimator", "paper",
       "--epochs", "1", "--pretrain-epochs", "2", "--quiet"]


def config(out, methods, **kw) -> SweepConfig:
    return SweepConfig(TrainConfig(out=str(out), **TRAINING), (0.5,), methods, (0,), quiet=True, **kw)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_method_names_are_read_once_into_variants():
    c = config("x", ("ecc", "ecc-mask", "magnitude", "ecc-mask"))
    assert c.methods == ("ecc", "ecc-mask", "magnitude") and c.structures == ("none",)
    assert c.variants == (Variant("ecc"), Variant("ecc", input_mask=True), Variant("magnitude"))
    # Every name --methods accepts is one variant, and every variant has one name.
    assert {Variant.parse(name).method for name in METHODS} == set(PROJECTIONS)
    for name in METHODS:
        assert Variant.from_name(name).name == name == Variant.parse(name).method_name
    with pytest.raises(ValueError, match="'ecc\\+none' names the variant 'ecc'"):
        Variant.from_name("ecc+none")


def test_variants_are_checked():
    with pytest.raises(ValueError, match="input masks are swept with method ecc only, got method 'magnitude'"):
        Variant("magnitude", input_mask=True)
    with pytest.raises(ValueError, match="method must be one of ecc, magnitude"):
        Variant("ecc-mask")
    with pytest.raises(ValueError, match="structure must be one of none, tile, hybrid, nm, got 'channel'"):
        Variant("ecc", structure="channel")
    with pytest.raises(ValueError, match="method 'uniform' has no 'tile' structure"):
        Variant("uniform", structure="tile")
    assert Variant.from_name("magnitude+hybrid") == Variant("magnitude", False, "hybrid")
    with pytest.raises(ValueError, match=r"unknown methods \['magnitude-mask'\]"):
        config("x", ("magnitude-mask",))
    with pytest.raises(ValueError, match=r"unknown structures \['channel'\]; known: none, tile, hybrid, nm"):
        config("x", ("ecc",), structures=("none", "channel"))


def test_a_cell_trains_its_variant_in_the_folder_of_its_name(tmp_path):
    c = config(tmp_path, ("ecc-mask", "magnitude"))
    trained = [sweep._cell_config(c, tmp_path, sweep.Cell(v, 0.5, 0)) for v in c.variants]
    assert [(t.method, t.input_mask) for t in trained] == [("ecc", True), ("magnitude", False)]
    assert [Path(t.out) for t in trained] == [tmp_path / "cells" / n / "b0.5_s0" for n in ("ecc-mask", "magnitude")]


def test_cli_structures(tmp_path, capsys):
    args = build_parser().parse_args(["sweep", *CLI, "--budgets", "0.5", "--out", "x"])
    assert args.structures == ("none",) and args.methods == ("ecc", "magnitude")
    args = build_parser().parse_args(["sweep", *CLI, "--budgets", "0.5", "--methods", "ecc, ecc-mask",
                                      "--structures", "none", "--out", "x"])
    assert (args.methods, args.structures) == (("ecc", "ecc-mask"), ("none",))
    assert main(["sweep", *CLI, "--budgets", "0.5", "--structures", "channel", "--out", str(tmp_path / "s")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]
    assert errors == ["ecc sweep: error: unknown structures ['channel']; known: none, tile, hybrid, nm"]
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def masked(tmp_path_factory):
    """A sweep of ecc and ecc-mask at one budget (one input-mask round)."""
    out = tmp_path_factory.mktemp("masked")
    rows = run_sweep(config(out, ("ecc-mask", "ecc"), jobs=2), out)
    return out, rows


def test_the_input_masked_cell_trains_with_input_masks(masked):
    out, rows = masked
    assert [(r["method"], r["input_mask"], r["structure"]) for r in rows] == [("ecc-mask", True, "none"),
                                                                              ("ecc", False, "none")]
    for name, input_mask in (("ecc-mask", True), ("ecc", False)):
        trained = json.loads((out / "cells" / name / "b0.5_s0" / "config.json").read_text())
        assert (trained["method"], trained["input_mask"]) == ("ecc", input_mask)
    assert all(r["feasible"] and r["energy_simulated_relative"] <= 0.5 + 1e-12 for r in rows)
    # The masked cell pruned inputs too: some layer reads fewer than all of its inputs.
    report = json.loads((out / "cells" / "ecc-mask" / "b0.5_s0" / "report.json").read_text())
    assert min(layer["input_density"] for layer in report["layers"]) < 1


def test_results_csv_names_the_variant_and_its_parts(masked):
    out, rows = masked
    written = read_csv(out / "results.csv")
    assert [(r["method"], r["input_mask"], r["structure"]) for r in written] == [("ecc-mask", "True", "none"),
                                                                                 ("ecc", "False", "none")]
    assert [{k: v for k, v in r.items() if v is not None} for r in read_results(out)] == [
        {k: v for k, v in r.items() if v is not None} for r in rows
    ]
    assert read_settings(out)["structures"] == ["none"]
    assert json.loads((out / "sweep.json").read_text())["structures"] == ["none"]


def test_files_of_earlier_sweeps_read_with_the_variant_parts(masked, tmp_path):
    """A results.csv without input_mask and structure, and a sweep.json without structures."""
    out, _ = masked
    old = tmp_path / "old"
    old.mkdir()
    records = read_csv(out / "results.csv")
    columns = [c for c in records[0] if c not in ("input_mask", "structure")]
    with open(old / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    assert [(r["method"], r["input_mask"], r["structure"]) for r in read_results(old)] == [
        ("ecc-mask", True, "none"), ("ecc", False, "none")
    ]
    settings_ = json.loads((out / "sweep.json").read_text())
    del settings_["structures"]
    (old / "sweep.json").write_text(json.dumps(settings_))
    assert read_settings(old)["structures"] == ["none"]


@pytest.mark.parametrize("column, value, message", [
    ("input_mask", "False", "line 2, column 'input_mask' must be True for method 'ecc-mask', got False"),
    ("structure", "channel", "line 2, column 'structure' must be one of none, tile, hybrid, nm, got 'channel'"),
    ("method", "ecc+none", "line 2, column 'method' must be one of ecc, ecc-mask"),
])
def test_a_row_whose_parts_contradict_its_variant_is_named(masked, tmp_path, column, value, message):
    out, _ = masked
    records = read_csv(out / "results.csv")
    records[0][column] = value
    with open(tmp_path / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    with pytest.raises(SweepFileError) as caught:
        read_results(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'results.csv'}: {message}") and "\n" not in str(caught.value)


def test_sweep_json_structures_are_checked(masked, tmp_path):
    out, _ = masked
    settings_ = json.loads((out / "sweep.json").read_text())
    (tmp_path / "sweep.json").write_text(json.dumps({**settings_, "structures": ["none", "channel"]}))
    with pytest.raises(SweepFileError, match=r"field structures must be a non-empty list of distinct values, "
                                             r"each one of none, tile, hybrid, nm, got \['none', 'channel'\]"):
        read_settings(tmp_path)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from([*METHODS, "ecc+none", "ecc-mask-mask", ""]) | st.text(max_size=6),
       input_mask=st.sampled_from(["True", "False", "", "true", "1"]),
       structure=st.sampled_from([*STRUCTURES, "", "channel"]) | st.text(max_size=4))
def test_fuzzed_variant_columns_give_a_clean_error_or_a_consistent_row(tmp_path, method, input_mask, structure):
    with open(tmp_path / "results.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "budget", "seed", "input_mask", "structure", "feasible"])
        writer.writerow([method, "0.5", "0", input_mask, structure, "False"])
    try:
        (row,) = read_results(tmp_path)
    except SweepFileError as exc:
        assert str(exc).startswith(f"{tmp_path / 'results.csv'}: line ") and "\n" not in str(exc)
        return
    variant = Variant.from_name(row["method"])
    assert (row["input_mask"], row["structure"]) == (variant.input_mask, variant.structure)
