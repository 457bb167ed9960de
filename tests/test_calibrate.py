"""Calibration of profiles: recovery of known energies, identifiability, bad input, the CLI."""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

import compress.cli as cli
from compress.cli import calibrate as calibrate_cli
from energysim import load_profile
from energysim.calibrate import (
    PARAMETERS,
    Design,
    Measurement,
    Run,
    _resolve_run,
    calibrate,
    design_matrix,
    fit_design,
    parse_fix,
    read_measurements,
)
from energysim.simulate import simulate
from energysim.sparsity import Sparsity

# Smaller inputs for the ImageNet models keep the suite fast; all layers stay.
RUNS = (
    Run("lenet5"),
    Run("alexnet", (3, 95, 95)),
    Run("resnet18", (3, 64, 64)),
    Run("mobilenet_v2", (3, 64, 64)),
    Run("squeezenet", (3, 64, 64)),
)
# The same models pruned: gated MACs become a large share, which identifies their energy.
SPARSE_RUNS = tuple(Run(run.model, run.input_shape, 0.3, 0.5) for run in RUNS)
# "Chips" that differ from the base profiles in every parameter their estimator uses.
PAPER_CHIP = {
    "compute.mac": 1.2,
    "memory.rf.read": 1.3,
    "memory.buffer.read": 5.0,
    "memory.dram.read": 230.0,
    "memory.dram.write": 170.0,
}
PAPER_UNUSED = ("compute.gated_mac", "memory.rf.write", "memory.buffer.write", "leakage_mw")
SYSTOLIC_CHIP = PAPER_CHIP | {
    "compute.gated_mac": 0.15,
    "memory.rf.write": 0.8,
    "memory.buffer.write": 7.0,
    "leakage_mw": 20.0,
}


def run_sparsity(workload, run):
    """The pattern calibration simulates for a run: random, seed 0, at the run's densities."""
    if run.weight_density == 1 and run.input_density == 1:
        return Sparsity()
    return Sparsity.synthetic(workload, run.weight_density, run.input_density, "random", 0)


@pytest.fixture(scope="module")
def workloads():
    dense = {run: _resolve_run(run, "test") for run in RUNS}
    return dense | {sparse: dense[run] for run, sparse in zip(RUNS, SPARSE_RUNS)}


@pytest.fixture(scope="module")
def paper_chip_reports(workloads):
    chip = load_profile("eyeriss-iclr19", PAPER_CHIP)
    return {run: simulate(workloads[run], chip, "paper") for run in RUNS}


@pytest.fixture(scope="module")
def systolic_chip_reports(workloads):
    chip = load_profile("eyeriss-65nm", SYSTOLIC_CHIP)
    return {run: simulate(workloads[run], chip, "systolic", run_sparsity(workloads[run], run))
            for run in RUNS + SPARSE_RUNS}


@pytest.fixture
def ecc(monkeypatch):
    """``ecc`` with the calibrate subcommand registered (whether or not the package lists it yet)."""
    if calibrate_cli not in cli._COMMANDS:
        monkeypatch.setattr(cli, "_COMMANDS", (*cli._COMMANDS, calibrate_cli))
    return cli.main


def noisy(value, rng, noise=0.05):
    return value * (1 + noise * rng.standard_normal())


def test_recovers_paper_chip_within_2_percent_from_5_percent_noise(workloads, paper_chip_reports):
    rng = np.random.default_rng(0)
    rows = [
        Measurement(run, layer.name, noisy(layer.energy, rng),
                    {level: noisy(e, rng) for level, e in layer.energy_by_level.items()})
        for run, report in paper_chip_reports.items()
        for layer in report.layers
    ]
    assert len(rows) == 113
    base = load_profile("eyeriss-iclr19")
    result = calibrate(rows, base, "paper", workloads=workloads, date="2025-01-01")
    fitted = {p.key: p for p in result.parameters}
    for key, true in PAPER_CHIP.items():
        assert fitted[key].status == "fitted"
        assert fitted[key].value == pytest.approx(true, rel=0.02), key
        # The reported standard error is the right size for the actual miss.
        assert abs(fitted[key].value - true) < 4 * fitted[key].stderr, key
    # The paper model has no RF or buffer writes, no gated MACs and no time: held at BASE.
    for key in PAPER_UNUSED:
        assert fitted[key].status == "unidentifiable" and fitted[key].value == fitted[key].base
    assert result.unidentifiable == ((PAPER_UNUSED, "zero counts in every measured row"),)
    assert result.rms_error < 0.06 < 0.5 < result.base_rms_error
    assert result.profile.compute.mac == pytest.approx(fitted["compute.mac"].value, rel=1e-5)  # 6 digits
    assert "RMS relative error" in result.profile.source and "2025-01-01" in result.profile.source


def test_recovers_systolic_chip_within_2_percent_from_5_percent_noise(workloads, systolic_chip_reports):
    rng = np.random.default_rng(6)
    rows = [
        Measurement(run, layer.name, noisy(layer.energy, rng),
                    {level: noisy(e, rng) for level, e in layer.energy_by_level.items()})
        for run, report in systolic_chip_reports.items()
        for layer in report.layers
    ]
    assert len(rows) == 226
    result = calibrate(rows, load_profile("eyeriss-65nm"), "systolic", workloads=workloads)
    assert result.unidentifiable == ()
    for p in result.parameters:
        assert p.status == "fitted"
        # Spilled partial sums pass through the buffer both ways (a read and a write each),
        # so the buffer's read and write columns are partly collinear: at 5 % noise their
        # standard errors are about 2.3 %, and 3 % is what the fit can promise for them.
        tolerance = 0.03 if p.key.startswith("memory.buffer.") else 0.02
        assert p.value == pytest.approx(SYSTOLIC_CHIP[p.key], rel=tolerance), p.key
        assert abs(p.value - SYSTOLIC_CHIP[p.key]) < 4 * p.stderr, p.key
    assert result.rms_error < 0.06 < 0.1 < result.base_rms_error


def test_systolic_layer_totals_cannot_separate_mac_from_rf_reads(workloads, systolic_chip_reports):
    # The systolic model reads the RF once per effective MAC: identical columns.
    rng = np.random.default_rng(7)
    rows = [Measurement(run, layer.name, noisy(layer.energy, rng))
            for run in RUNS for layer in systolic_chip_reports[run].layers]
    result = calibrate(rows, load_profile("eyeriss-65nm"), "systolic", workloads=workloads)
    groups = dict(result.unidentifiable)
    assert groups[("compute.mac", "memory.rf.read")] == (
        "their counts are collinear in these measurements, so only a combination is determined")
    fitted = {p.key: p for p in result.parameters}
    assert fitted["compute.mac"].value == 1.0 and fitted["memory.rf.read"].value == 1.0
    assert "compute.mac, memory.rf.read are not identifiable (their counts are collinear" in result.warnings()[0]
    # Every value is either determined to +-50 % or named.
    for p in result.parameters:
        assert p.status == "unidentifiable" or p.stderr <= 0.5 * max(p.value, p.base)


def test_paper_layer_totals_cannot_separate_mac_from_rf(workloads, paper_chip_reports):
    # In the paper model RF reads are 2 x the MACs except at padded borders, so layer
    # totals determine mac + 2 rf.read (1.2 + 2.6 = 3.8) but hardly each one.
    rng = np.random.default_rng(1)
    rows = [Measurement(run, layer.name, noisy(layer.energy, rng))
            for run, report in paper_chip_reports.items() for layer in report.layers]
    result = calibrate(rows, load_profile("eyeriss-iclr19"), "paper", workloads=workloads)
    groups = dict(result.unidentifiable)
    assert groups[("memory.rf.read",)].startswith("these measurements leave it a +-")
    fitted = {p.key: p for p in result.parameters}
    assert fitted["memory.rf.read"].value == 1.0 and fitted["memory.rf.read"].status == "unidentifiable"
    assert fitted["compute.mac"].value + 2 * 1.0 == pytest.approx(3.8, rel=0.03)
    assert any(w.startswith("memory.rf.read is not identifiable (these measurements leave it a +-")
               and w.endswith("held at the eyeriss-iclr19 value") for w in result.warnings())
    assert fitted["memory.dram.read"].value == pytest.approx(230.0, rel=0.03)


@pytest.mark.parametrize("estimator, run", [("paper", RUNS[0]), ("systolic", RUNS[0]), ("systolic", SPARSE_RUNS[0])])
def test_design_rows_are_the_estimator_energies(workloads, estimator, run):
    base = load_profile("eyeriss-65nm", ["memory.dram.write=150", "memory.rf.write=1.4"])
    report = simulate(workloads[run], base, estimator, run_sparsity(workloads[run], run))
    rows = [Measurement(run, l.name, l.energy, dict(l.energy_by_level)) for l in report.layers]
    rows.append(Measurement(run, "total", report.energy))
    design = design_matrix(rows, base, estimator, workloads)
    values = np.array([base.to_flat()[p] for p in PARAMETERS])
    np.testing.assert_allclose(design.matrix @ values, design.measured, rtol=1e-12)
    np.testing.assert_allclose(design.matrix[-1], design.matrix[:-1:6].sum(axis=0))
    assert [level for _, level in design.labels[:6]] == [None, "dram", "buffer", "rf", "mac", "leakage"]
    if estimator == "systolic":  # leakage column = cycles / clock (us) x 1000 pJ per mW us
        cycles = np.array([l.cycles for l in report.layers])
        np.testing.assert_allclose(design.matrix[:-1:6, -1], cycles / base.clock_mhz * 1e3, rtol=1e-12)


def _design(matrix, measured):
    matrix = np.asarray(matrix, float)
    label = Measurement(Run("lenet5"), "conv1", 1.0)
    return Design(matrix, np.asarray(measured, float), 1 / np.asarray(measured, float), (label,) * len(measured))


def test_exactly_collinear_columns_are_named_and_held():
    rng = np.random.default_rng(2)
    counts = rng.uniform(1, 10, size=(12, len(PARAMETERS)))
    rf_read, rf_write = PARAMETERS.index("memory.rf.read"), PARAMETERS.index("memory.rf.write")
    counts[:, rf_write] = counts[:, rf_read]
    truth = np.array([2.0, 0.5, 1.0, 1.0, 6.0, 7.0, 200.0, 210.0, 3.0])
    base = load_profile("eyeriss-65nm")  # rf read and write 1.0: the truth's combined value
    parameters, held = fit_design(_design(counts, counts @ truth), base)
    assert held == ((("memory.rf.read", "memory.rf.write"), held[0][1]),)
    for p, true in zip(parameters, truth):
        assert p.status == ("unidentifiable" if "rf" in p.key else "fitted")
        assert p.value == pytest.approx(true, rel=1e-9)


def test_fixed_parameters_keep_base_values():
    rng = np.random.default_rng(3)
    counts = rng.uniform(1, 10, size=(20, len(PARAMETERS)))
    base = load_profile("eyeriss-65nm", ["memory.dram.write=210", "leakage_mw=3"])
    truth = np.array([2.0, 0.5, 1.5, 1.2, 6.0, 7.0, 200.0, 210.0, 3.0])  # BASE's DRAM and leakage
    parameters, held = fit_design(_design(counts, counts @ truth), base, parse_fix("dram,leakage"))
    assert held == ()
    for p, true in zip(parameters, truth):
        if p.key.startswith("memory.dram") or p.key == "leakage_mw":
            assert p.status == "fixed" and p.value == p.base and p.stderr is None
        else:
            assert p.status == "fitted" and p.value == pytest.approx(true, rel=1e-9)


def test_gated_mac_never_exceeds_mac_and_matches_a_constrained_solver():
    # Data that an unconstrained fit explains with gated_mac > mac.
    rng = np.random.default_rng(4)
    counts = rng.uniform(1, 10, size=(15, len(PARAMETERS)))
    truth = np.array([1.0, 3.0, 1.5, 1.2, 6.0, 7.0, 200.0, 210.0, 3.0])
    measured = counts @ truth
    base = load_profile("eyeriss-65nm")
    parameters, _ = fit_design(_design(counts, measured), base)
    theta = np.array([p.value for p in parameters])
    assert theta[1] <= theta[0] + 1e-12 and (theta >= 0).all()

    def objective(x):
        return np.sum(((counts @ x - measured) / measured) ** 2)

    reference = minimize(
        objective, np.full(len(PARAMETERS), 1.0), method="SLSQP",
        bounds=[(0, None)] * len(PARAMETERS),
        constraints=[{"type": "ineq", "fun": lambda x: x[0] - x[1]}],
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert objective(theta) <= reference.fun * (1 + 1e-6) + 1e-12
    np.testing.assert_allclose(theta, reference.x, rtol=1e-3, atol=1e-6)


def test_units_are_converted(tmp_path):
    base = load_profile("eyeriss-65nm")
    pj = tmp_path / "pj.csv"
    nj = tmp_path / "nj.csv"
    pj.write_text("model,layer,energy,unit,energy_dram\nlenet5,conv1,1500,pJ,1000\n")
    nj.write_text("# a comment\nmodel,layer,energy,unit,energy_dram\n\nlenet5,conv1,1.5,nJ,1\n")
    a, b = read_measurements(pj, base.units), read_measurements(nj, base.units)
    assert a[0].energy == b[0].energy == 1500 and a[0].levels == b[0].levels == {"dram": 1000}
    assert b[0].where == f"{nj} row 4"


def _write(tmp_path, text, name="m.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


HEADER = "model,layer,energy,unit\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "file is empty"),
        (HEADER, "has a header but no measurements"),
        ("model,layer,unit\nlenet5,conv1,pJ\n", "row 1: missing column 'energy'"),
        ("model,layer,energy,unit,volts\nlenet5,conv1,1,pJ,3\n", "row 1: unknown column 'volts'; known columns: model"),
        (HEADER + "lenet5,conv1,-4,pJ\n", "row 2: column 'energy': expected a number > 0, got '-4'"),
        (HEADER + "lenet5,conv1,1e3,pJ\nlenet5,conv2,lots,pJ\n", "row 3: column 'energy': expected a number > 0, got 'lots'"),
        (HEADER + "lenet5,conv1,1,normalized\n", "row 2: column 'unit': 'normalized' does not match the profile's units (pJ)"),
        (HEADER + "lenet5,conv1,1,pJ,9\n", "row 2: has 5 cells, the header has 4 columns"),
        ("model,layer,energy,unit,energy_dram\nlenet5,conv1,1,pJ,x\n", "row 2: column 'energy_dram': expected a number >= 0"),
        ("model,layer,energy,unit,input_density\nlenet5,conv1,1,pJ,1.5\n", "column 'input_density': expected a density in (0, 1]"),
        ("model,layer,energy,unit,input_shape\nlenet5,conv1,1,pJ,3x-1\n", "column 'input_shape': expected positive integers"),
        (HEADER + ",conv1,1,pJ\n", "row 2: column 'model' is empty"),
    ],
)
def test_bad_csv_is_one_clear_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        read_measurements(path, "pJ")
    assert str(path) in str(info.value) and message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [
        (HEADER + "lenet5,conv1,1,pJ\nlenet6,conv1,1,pJ\n", "row 3: column 'model': unknown model 'lenet6'"),
        (HEADER + "lenet5,conv1,1,pJ\nlenet5,conv9,1,pJ\n", "row 3: column 'layer': lenet5 has no compute layer 'conv9'; "
                                                          "expected 'total' or one of conv1, conv2"),
        ("model,layer,energy,unit,input_shape\nlenet5,conv1,1,pJ,1x4x4\n", "row 2: column 'input_shape':"),
        (HEADER + "lenet5,conv1,1,pJ\nlenet5,conv2,2,pJ\n", "2 measurement rows cannot determine 5 free parameters"),
    ],
)
def test_measurements_that_do_not_fit_the_model(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        calibrate(read_measurements(path, "pJ"), load_profile("eyeriss-65nm"), "paper", source=str(path))
    assert str(path) in str(info.value) and message in str(info.value)


def _report_json(tmp_path, workloads, profile, name="report.json", **changes):
    data = simulate(workloads[RUNS[0]], profile, "paper").to_dict()
    data.update(changes)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_bad_json_reports(tmp_path, workloads):
    base = load_profile("eyeriss-iclr19")
    path = _report_json(tmp_path, workloads, base, units="pJ")
    with pytest.raises(ValueError, match=r"report.json: field 'units': 'pJ' does not match the profile's units \(normalized\)"):
        read_measurements(path, "normalized")
    path = _report_json(tmp_path, workloads, base)
    data = json.loads(path.read_text())
    del data["layers"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="missing field 'layers'"):
        read_measurements(path, "normalized")
    data = json.loads(_report_json(tmp_path, workloads, base).read_text())
    data["layers"][1]["energy"] = "much"
    data["layers"][2]["macs"] += 1
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"layers\[1\] \(conv2\): field 'energy': expected a number > 0, got 'much'"):
        read_measurements(path, "normalized")
    data["layers"][1]["energy"] = 1e7  # above its split (2.5e6): only the MAC count is wrong
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"layers\[2\] \(fc1\): field 'macs': 48001 MACs, but layer fc1 of lenet5"):
        calibrate(read_measurements(path, "normalized"), base, "paper")
    (tmp_path / "broken.json").write_text("{\"model\": ")
    with pytest.raises(ValueError, match="broken.json: not valid JSON at line 1"):
        read_measurements(tmp_path / "broken.json", "normalized")


def test_json_report_of_another_profile_is_recovered_exactly(tmp_path, workloads):
    # Another tool's per-level numbers determine every parameter the model uses.
    chip = load_profile("eyeriss-iclr19", PAPER_CHIP)
    path = _report_json(tmp_path, workloads, chip)
    result = calibrate(read_measurements(path, "normalized"), load_profile("eyeriss-iclr19"), "paper", workloads=workloads)
    fitted = {p.key: p.value for p in result.parameters}
    for key, true in PAPER_CHIP.items():
        assert fitted[key] == pytest.approx(true, rel=1e-6), key
    assert result.rms_error < 1e-9 and result.r2 == pytest.approx(1.0)


def test_cli_round_trip_writes_a_loadable_profile(tmp_path, capsys, ecc, workloads):
    rng = np.random.default_rng(5)
    chip = load_profile("eyeriss-iclr19", PAPER_CHIP)
    lines = ["model,layer,energy,unit,energy_mac,energy_rf,energy_dram,energy_buffer,input_shape"]
    for run in RUNS[:2]:
        shape = "" if run.input_shape is None else "x".join(map(str, run.input_shape))
        for layer in simulate(workloads[run], chip, "paper").layers:
            split = [noisy(layer.energy_by_level[k], rng, 0.01) for k in ("mac", "rf", "dram", "buffer")]
            cells = [run.model, layer.name, noisy(layer.energy, rng, 0.01), "normalized", *split, shape]
            lines.append(",".join(f"{c:.6g}" if isinstance(c, float) else c for c in cells))
    measurements = _write(tmp_path, "\n".join(lines) + "\n")
    out = tmp_path / "profiles" / "chip.yaml"
    argv = ["calibrate", "--profile", "eyeriss-iclr19", "--measurements", str(measurements), "--out", str(out),
            "--estimator", "paper", "--fix", "dram", "--json", str(tmp_path / "fit.json"), "--worst", "2"]
    assert ecc(argv) == 0
    captured = capsys.readouterr()
    loaded = load_profile(out)
    assert loaded.name == "eyeriss-iclr19-calibrated"
    assert loaded.memory.dram.read == 200.0  # fixed
    assert loaded.compute.mac == pytest.approx(1.2, rel=0.02)
    assert str(measurements) in loaded.source and "R^2" in loaded.source
    assert ("warning: compute.gated_mac, memory.rf.write, memory.buffer.write, leakage_mw are not identifiable "
            "(zero counts in every measured row); held at the eyeriss-iclr19 values") in captured.err
    assert "compute.mac" in captured.out and f"wrote {out}" in captured.out
    listed = captured.out.split("the 2 rows with the largest errors:\n")[1].splitlines()
    assert len(listed) == 2 + 2 + 1  # header, rule, two rows, "wrote ..."
    assert max(len(line) for line in captured.out.splitlines()[1:13]) <= 100  # the parameter table
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["profile_digest"] == loaded.digest
    assert {p["key"]: p["status"] for p in fit["parameters"]}["memory.dram.write"] == "fixed"
    # DRAM held at 200 while the chip's is 230/170: the fit improves on BASE but cannot be exact.
    assert len(fit["residuals"]) == 13 * 5
    assert 0.01 < fit["fit"]["rms_relative_error"] < 0.5 * fit["fit"]["base_rms_relative_error"]
    assert fit["warnings"] and fit["unidentifiable"][0]["parameters"] == list(PAPER_UNUSED)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--measurements", "/nonexistent.csv"], "/nonexistent.csv: no such measurements file"),
        (["--fix", "mac,sram"], "--fix 'sram': expected a group (mac, gated_mac, rf, buffer, dram, leakage)"),
        (["--fix", "mac,gated_mac,rf,buffer,dram,leakage"], "--fix holds every parameter"),
    ],
)
def test_cli_errors_exit_2(tmp_path, capsys, ecc, argv, message):
    measurements = _write(tmp_path, HEADER + "lenet5,conv1,1e6,normalized\n")
    full = ["calibrate", "--profile", "eyeriss-iclr19", "--measurements", str(measurements),
            "--out", str(tmp_path / "o.yaml"), "--estimator", "paper", *argv]
    assert ecc(full) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.yaml").exists()


def test_cli_bad_row_exit_2(tmp_path, capsys, ecc):
    measurements = _write(tmp_path, HEADER + "lenet5,conv1,1e6,pJ\n")
    assert ecc(["calibrate", "--profile", "eyeriss-iclr19", "--measurements", str(measurements),
                "--out", str(tmp_path / "o.yaml"), "--estimator", "paper"]) == 2
    err = capsys.readouterr().err
    assert f"{measurements} row 2: column 'unit': 'pJ' does not match the profile's units (normalized)" in err


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "measurements"


def test_shipped_example_recovers_chip_a(tmp_path, capsys, ecc):
    # The README's worked example: a power simulation of 26 layers with 3 % noise.
    chip = runpy.run_path(str(EXAMPLES / "generate.py"))["CHIP_A"]
    assert ecc(["calibrate", "--profile", "eyeriss-65nm", "--measurements", str(EXAMPLES / "chip-a-power-sim.csv"),
                "--out", str(tmp_path / "chip-a.yaml"), "--name", "chip-a", "--json", str(tmp_path / "fit.json")]) == 0
    assert "warning" not in capsys.readouterr().err
    fit = json.loads((tmp_path / "fit.json").read_text())
    for p in fit["parameters"]:
        assert p["status"] == "fitted" and p["value"] == pytest.approx(chip[p["key"]], rel=0.05), p["key"]
    assert load_profile(tmp_path / "chip-a.yaml").name == "chip-a"


@pytest.mark.slow
def test_shipped_board_example_names_what_it_cannot_determine(tmp_path, capsys, ecc):
    assert ecc(["calibrate", "--profile", "eyeriss-65nm", "--measurements", str(EXAMPLES / "chip-a-board.csv"),
                "--out", str(tmp_path / "chip-a.yaml")]) == 0
    err = capsys.readouterr().err
    assert "warning: compute.mac, memory.rf.read are not identifiable (their counts are collinear" in err
    assert load_profile(tmp_path / "chip-a.yaml").memory.dram.read == pytest.approx(160, rel=0.03)
