"""Measurement files are untrusted data: they name no code, hold only finite energies, and a
fit that cannot be trusted writes nothing.

``ecc calibrate`` reads a CSV or an ``ecc simulate --json`` report. Its ``model`` column may name
only zoo models, or a ``package.module:factory`` the user gave on the command line with
``--model``; the fuzz tests feed random bytes and random CSV and JSON structures to the reader and
accept only a valid result or a one-line error naming the file, with nothing written.
"""

import importlib
import json
import math
import os
import resource
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress.cli import main as ecc
from energysim import MODEL_NAMES, load_profile
from energysim.calibrate import PARAMETERS, Design, Measurement, Run, calibrate, design_matrix, fit_design, parse_fix
from energysim.measurements import CSV_COLUMNS, read_measurements
from energysim.simulate import simulate
from energysim.workload import UnmodelledLayerWarning, extract_workload
from energysim.zoo import build_model

TESTS = Path(__file__).resolve().parent
HEADER = "model,layer,energy,unit\n"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])


def _write(folder, text, name="m.csv"):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _paper_rows(model="lenet5", shape=None, chip=None):
    """CSV lines measuring every layer of ``model`` and its split, as the paper estimator with ``chip`` gives."""
    chip = chip or load_profile("eyeriss-iclr19", {"compute.mac": 1.2, "memory.dram.read": 230.0})
    module, default_shape = build_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmodelledLayerWarning)
        workload = extract_workload(module, shape or default_shape, name=model)
    lines = []
    rng = np.random.default_rng(0)
    for layer in simulate(workload, chip, "paper").layers:
        split = [layer.energy_by_level[k] * (1 + 0.01 * rng.standard_normal()) for k in ("mac", "rf", "dram", "buffer")]
        lines.append(",".join([model, layer.name, f"{layer.energy:.6g}", "normalized", *(f"{v:.6g}" for v in split)]))
    return lines


SPLIT_HEADER = "model,layer,energy,unit,energy_mac,energy_rf,energy_dram,energy_buffer\n"


def _calibrate_argv(measurements, out, *extra):
    return ["calibrate", "--profile", "eyeriss-iclr19", "--measurements", str(measurements), "--out", str(out),
            "--estimator", "paper", *extra]


def _leftovers(folder, *keep):
    """Files under ``folder`` other than ``keep``: temporaries, partial or stray outputs."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p not in keep)


@pytest.fixture
def factories_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


@pytest.fixture
def imports(monkeypatch):
    """Names passed to ``importlib.import_module`` during the test (imports still happen)."""
    seen = []
    real = importlib.import_module

    def record(name, *args, **kwargs):
        seen.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", record)
    return seen


# ---------------------------------------------------------------- item 2: a data file names no code


@pytest.mark.parametrize(
    "name, text, where",
    [
        ("m.csv", HEADER + "lenet5,conv1,1e6,pJ\nos:getcwd,conv1,1e6,pJ\n", "m.csv row 3: column 'model'"),
        ("m.json", json.dumps({"model": "os:getcwd", "units": "pJ", "layers": [{"name": "conv1", "energy": 1e6}]}),
         "m.json: field 'model'"),
        ("list.json", json.dumps([{"model": "lenet5", "units": "pJ", "layers": [{"name": "conv1", "energy": 1e6}]},
                                  {"model": "os.path:join", "units": "pJ", "layers": [{"name": "x", "energy": 1}]}]),
         "list.json report 1: field 'model'"),
    ],
)
def test_data_file_naming_code_is_refused_before_any_import(tmp_path, imports, name, text, where):
    path = _write(tmp_path, text, name)
    with pytest.raises(ValueError) as info:
        calibrate(read_measurements(path, "pJ"), load_profile("eyeriss-65nm"), source=str(path))
    message = str(info.value)
    assert where in message and "names code to import" in message and "lenet5" in message, message
    assert "\n" not in message
    assert not any(n == "os" or n.startswith("os.") for n in imports), imports


@pytest.mark.parametrize("factory", ["os:abort", "sys:exit"])
def test_ecc_calibrate_with_a_code_row_fails_cleanly_and_writes_nothing(tmp_path, factory):
    # In a subprocess: before the fix os:abort killed the process and sys:exit ended it with 0.
    measurements = _write(tmp_path, HEADER + f"lenet5,conv1,1e6,normalized\n{factory},conv1,1e6,normalized\n")
    out = tmp_path / "o.yaml"
    script = "import sys; from compress.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", script, *_calibrate_argv(measurements, out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.strip().splitlines() == [
        f"ecc calibrate: error: {measurements} row 3: column 'model': {factory!r} names code to import "
        f"(package.module:factory); a measurements file may name only zoo models ({', '.join(MODEL_NAMES)}) "
        f"or a factory given on the command line (ecc calibrate --model {factory})"
    ]
    assert _leftovers(tmp_path, measurements) == []


def test_a_factory_given_with_model_may_be_named(tmp_path, capsys, factories_on_path):
    measurements = _write(tmp_path, SPLIT_HEADER + "\n".join(_paper_rows("factories:tiny")) + "\n")
    out = tmp_path / "o.yaml"
    assert ecc(_calibrate_argv(measurements, out, "--fix", "dram")) == 2
    assert "'factories:tiny' names code to import" in capsys.readouterr().err and not out.exists()
    assert ecc(_calibrate_argv(measurements, out, "--fix", "dram", "--model", "factories:tiny")) == 0
    assert load_profile(out).name == "eyeriss-iclr19-calibrated"
    rows = read_measurements(measurements, "normalized", models=["factories:tiny"])
    assert {m.run.model for m in rows} == {"factories:tiny"}


def test_reader_still_names_unknown_zoo_models(tmp_path):
    path = _write(tmp_path, HEADER + "lenet5,conv1,1,pJ\nvgg16,conv1,1,pJ\n")
    with pytest.raises(ValueError, match=r"m.csv row 3: column 'model': unknown model 'vgg16': expected one of lenet5"):
        read_measurements(path, "pJ")


# ---------------------------------------------------------------- item 10: PYTHONPATH hint


@pytest.fixture
def cwd_off_path(tmp_path, monkeypatch):
    """The test in ``tmp_path``, which is not on ``sys.path`` (as under the ``ecc`` script)."""
    monkeypatch.chdir(tmp_path)
    here = {"", ".", str(tmp_path), os.path.realpath(tmp_path)}
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in here])
    return tmp_path


def test_factory_module_in_the_current_folder_gets_a_pythonpath_hint(cwd_off_path):
    (cwd_off_path / "my_local_models.py").write_text("def net():\n    raise AssertionError('not reached')\n")
    with pytest.raises(ValueError) as info:
        build_model("my_local_models:net")
    message = str(info.value)
    assert message.startswith("cannot import module 'my_local_models' for model factory 'my_local_models:net'")
    assert "my_local_models.py is in the current folder" in message and "PYTHONPATH=." in message
    assert "\n" not in message
    (cwd_off_path / "local_pkg").mkdir()
    (cwd_off_path / "local_pkg" / "__init__.py").write_text("")
    with pytest.raises(ValueError, match=r"local_pkg/ is in the current folder.*PYTHONPATH=\."):
        build_model("local_pkg.models:net")


def test_factory_module_found_nowhere_gets_a_pythonpath_hint(cwd_off_path, capsys):
    with pytest.raises(ValueError, match=r"cannot import module 'no_such_module_xyz'.*PYTHONPATH"):
        build_model("no_such_module_xyz:net")
    assert ecc(["simulate", "--model", "no_such_module_xyz:net", "--profile", "eyeriss-65nm"]) == 2
    err = capsys.readouterr().err
    assert "PYTHONPATH" in err and len(err.strip().splitlines()) == 1


def test_missing_dependency_of_a_factory_module_gets_no_pythonpath_hint(cwd_off_path, monkeypatch):
    # The module itself is found: telling the user to change PYTHONPATH would mislead.
    (cwd_off_path / "needs_dep.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(cwd_off_path))
    with pytest.raises(ValueError) as info:
        build_model("needs_dep:net")
    assert "no_such_dependency_xyz" in str(info.value) and "PYTHONPATH" not in str(info.value)


# ---------------------------------------------------------------- item 3: finite energies, a trustworthy fit


@pytest.mark.parametrize(
    "row, column",
    [("lenet5,conv1,1e308,uJ,", "energy"), ("lenet5,conv1,1,uJ,1e308", "energy_dram"),
     ("lenet5,conv1,1e300,J,", "energy")],
)
def test_energy_that_overflows_after_unit_conversion_is_refused(tmp_path, row, column):
    path = _write(tmp_path, "model,layer,energy,unit,energy_dram\n" + row + "\n")
    with pytest.raises(ValueError) as info:
        read_measurements(path, "pJ")
    cells = row.split(",")
    raw = cells[2 if column == "energy" else 4]
    assert f"m.csv row 2: column {column!r}: {raw!r} {cells[3]} is not a finite number of pJ" in str(info.value)


def test_ecc_calibrate_one_row_of_1e308_uj_writes_nothing(tmp_path, capsys):
    # The case: R^2 nan, exit 0 and a profile written.
    measurements = _write(tmp_path, HEADER + "lenet5,conv1,1e308,uJ\n")
    out = tmp_path / "o.yaml"
    assert ecc(["calibrate", "--profile", "eyeriss-65nm", "--measurements", str(measurements), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "row 2: column 'energy'" in err and len(err.strip().splitlines()) == 1
    assert _leftovers(tmp_path, measurements) == []


def test_non_finite_measurements_given_in_code_are_refused():
    rows = [Measurement(Run("lenet5"), "conv1", math.inf, where="bench conv1"),
            Measurement(Run("lenet5"), "conv2", 1e6, {"dram": math.nan}, where="bench conv2")]
    for row in rows:
        with pytest.raises(ValueError, match=r"^bench conv\d: .*finite") as info:
            design_matrix([row], load_profile("eyeriss-65nm"))
        assert "\n" not in str(info.value)


def _one_column_design(measured, column="leakage_mw"):
    counts = np.zeros((len(measured), len(PARAMETERS)))
    counts[:, PARAMETERS.index(column)] = 1.0
    measured = np.asarray(measured, float)
    label = Measurement(Run("lenet5"), "conv1", 1.0)
    return Design(counts, measured, 1 / measured, (label,) * len(measured))


def test_a_parameter_held_for_its_uncertainty_keeps_the_base_value():
    # Leakage is the only free parameter; the scattered rows leave it +-93 %, so it is held.
    # Before the fix the last parameter dropped from the fit kept its fitted value (+110 %).
    base = load_profile("eyeriss-65nm", ["leakage_mw=0.5"])
    parameters, held = fit_design(_one_column_design([1.0, 30.0, 60.0]), base, PARAMETERS[:-1])
    leakage = parameters[-1]
    assert held == ((("leakage_mw",), "these measurements leave it a +-93 % uncertainty"),)
    assert leakage.status == "unidentifiable" and leakage.value == leakage.base == 0.5
    assert leakage.stderr is None


def test_held_and_fixed_parameters_are_written_exactly_as_the_base(tmp_path):
    # 6 significant digits are kept of fitted values; held ones must be the base's, unrounded.
    measurements = _write(tmp_path, SPLIT_HEADER + "\n".join(_paper_rows()) + "\n")
    base = load_profile("eyeriss-iclr19", ["memory.dram.write=123.4567891", "leakage_mw=0.123456789"])
    result = calibrate(read_measurements(measurements, "normalized"), base, "paper", parse_fix("dram"))
    flat = result.profile.to_flat()
    statuses = {p.key: p.status for p in result.parameters}
    assert statuses["memory.dram.write"] == "fixed" and statuses["leakage_mw"] == "unidentifiable"
    for p in result.parameters:
        if p.status != "fitted":
            assert flat[p.key] == p.value == p.base, p.key


def test_a_fit_without_spare_rows_is_refused():
    # As many rows as free parameters: no residual scatter, so no standard error to check them by.
    counts = np.diag([1.0, 2.0, 3.0])
    design = Design(np.pad(counts, ((0, 0), (0, len(PARAMETERS) - 3))), np.array([1.0, 2.0, 3.0]),
                    np.array([1.0, 0.5, 1 / 3]), (Measurement(Run("lenet5"), "conv1", 1.0),) * 3)
    with pytest.raises(ValueError, match=r"bench: 3 measurement rows for 3 free parameters .* no spare row"):
        fit_design(design, load_profile("eyeriss-65nm"), PARAMETERS[3:], where="bench")


def test_huge_finite_energies_give_finite_fit_figures_or_an_error(tmp_path):
    lines = [",".join([m, layer, f"{float(e) * 1e290:.6g}", *rest]) for m, layer, e, *rest in
             (line.split(",") for line in _paper_rows())]
    measurements = _write(tmp_path, SPLIT_HEADER + "\n".join(lines) + "\n")
    try:
        result = calibrate(read_measurements(measurements, "normalized"), load_profile("eyeriss-iclr19"), "paper")
    except ValueError as exc:
        assert str(measurements) in str(exc) and "\n" not in str(exc)
    else:
        assert math.isfinite(result.r2) and math.isfinite(result.rms_error) and math.isfinite(result.base_rms_error)
        assert all(math.isfinite(v) for v in result.profile.to_flat().values() if isinstance(v, float))


# ---------------------------------------------------------------- item 3: duplicates and parts


def test_duplicate_rows_are_named_in_a_warning(tmp_path, capsys):
    lines = _paper_rows()
    conflicting = lines[1].split(",")
    conflicting[2] = f"{2 * float(conflicting[2]):.6g}"
    measurements = _write(tmp_path, SPLIT_HEADER + "\n".join([*lines, ",".join(conflicting)]) + "\n")
    out = tmp_path / "o.yaml"
    assert ecc(_calibrate_argv(measurements, out, "--fix", "dram")) == 0
    err = capsys.readouterr().err
    assert (f"warning: lenet5 conv2 is measured by 2 rows ({measurements} row 3, {measurements} row 7) "
            "whose energies differ by up to 100 %: fitted as repeated measurements") in err


@pytest.mark.parametrize(
    "text, message",
    [
        (SPLIT_HEADER + "lenet5,conv1,1e6,pJ,,,2e6,\n",
         "row 2: the parts energy_dram add up to 2e+06 pJ, 100 % more than column 'energy' (1e+06 pJ)"),
        (SPLIT_HEADER + "lenet5,conv1,1,uJ,0.1,0.5,0.5,0.3\n",
         "row 2: the parts energy_dram, energy_buffer, energy_rf, energy_mac add up to 1.4e+06 pJ, 40 % more"),
        (HEADER + "lenet5,conv1,1e6,pJ\nlenet5,conv2,2e6,pJ\nlenet5,total,1e6,pJ\n",
         "row 4: the total of lenet5 (1e+06 pJ) is 67 % less than the sum of its layers in row 2, row 3 (3e+06 pJ)"),
    ],
)
def test_parts_larger_than_their_total_are_errors_naming_the_rows(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        read_measurements(path, "pJ")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_parts_within_measurement_noise_of_their_total_are_accepted(tmp_path):
    path = _write(tmp_path, SPLIT_HEADER + "lenet5,conv1,1,uJ,0.1,0.5,0.3,0.2\n")
    (row,) = read_measurements(path, "pJ")
    assert sum(row.levels.values()) == pytest.approx(1.1e6)


# ---------------------------------------------------------------- item 9: --out


def test_out_that_is_a_folder_is_an_error_naming_it(tmp_path, capsys):
    measurements = _write(tmp_path, SPLIT_HEADER + "\n".join(_paper_rows()) + "\n")
    folder = tmp_path / "profiles"
    folder.mkdir()
    assert ecc(_calibrate_argv(measurements, folder)) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"ecc calibrate: error: --out {folder} is a folder; expected a file path "
                                        f"such as {folder / 'calibrated.yaml'}"]
    assert _leftovers(tmp_path, measurements) == []


def test_out_under_a_regular_file_is_an_error_naming_it(tmp_path, capsys):
    # Stands in for a read-only folder: tests run as root, where chmod does not stop writes.
    measurements = _write(tmp_path, SPLIT_HEADER + "\n".join(_paper_rows()) + "\n")
    out = measurements / "o.yaml"
    assert ecc(_calibrate_argv(measurements, out)) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"ecc calibrate: error: --out {out}: cannot write there: "
                                        f"{measurements} is not a folder"]
    assert _leftovers(tmp_path, measurements) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; see the test above")
def test_out_in_a_read_only_folder_is_an_error_naming_it(tmp_path, capsys):
    measurements = _write(tmp_path, SPLIT_HEADER + "\n".join(_paper_rows()) + "\n")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert ecc(_calibrate_argv(measurements, folder / "o.yaml")) == 2
    finally:
        folder.chmod(0o755)
    assert f"--out {folder / 'o.yaml'}: cannot write the calibrated profile: " in capsys.readouterr().err
    assert _leftovers(tmp_path, measurements) == []


def test_out_on_a_full_disk_is_an_error_naming_it_and_leaves_nothing(tmp_path, capsys):
    measurements = _write(tmp_path, SPLIT_HEADER + "\n".join(_paper_rows()) + "\n")
    assert ecc(_calibrate_argv(measurements, tmp_path / "warm-up.yaml")) == 0  # compiles and imports everything
    (tmp_path / "warm-up.yaml").unlink()
    capsys.readouterr()
    out = tmp_path / "o.yaml"
    # A file size limit makes writes past 64 bytes fail (EFBIG), as a full disk does (ENOSPC).
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
    try:
        status = ecc(_calibrate_argv(measurements, out))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip().splitlines() == [f"ecc calibrate: error: --out {out}: cannot write the calibrated profile: "
                                        "File too large"]
    assert _leftovers(tmp_path, measurements) == []


def test_out_that_is_the_measurements_file_is_refused(tmp_path, capsys):
    measurements = _write(tmp_path, SPLIT_HEADER + "\n".join(_paper_rows()) + "\n")
    before = measurements.read_text()
    assert ecc(_calibrate_argv(measurements, measurements)) == 2
    assert f"--out {measurements} is the measurements file" in capsys.readouterr().err
    assert measurements.read_text() == before


# ---------------------------------------------------------------- fuzz: the reader never crashes


def _check_outcome(path, units, models=()):
    """Read ``path``: a valid result or a one-line ValueError/OSError naming it; nothing else written."""
    folder = path.parent
    try:
        rows = read_measurements(path, units, models=models)
    except (ValueError, OSError) as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message, message
        assert str(path) in message, message
    else:
        assert rows
        for m in rows:
            assert m.run.model in MODEL_NAMES or m.run.model in models
            assert math.isfinite(m.energy) and m.energy > 0
            assert all(math.isfinite(v) and v >= 0 for v in m.levels.values())
            assert m.run.input_shape is None or all(d > 0 for d in m.run.input_shape)
            assert 0 < m.run.weight_density <= 1 and 0 < m.run.input_density <= 1
            assert str(path) in m.where
    assert sorted(folder.iterdir()) == [path]


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".json", ".txt"]))
def test_fuzz_random_bytes(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"m{suffix}"
    path.write_bytes(data)
    _check_outcome(path, "pJ")


_GOOD = {
    "model": st.sampled_from(["lenet5", "alexnet", "factories:tiny"]),
    "layer": st.sampled_from(["conv1", "conv2", "fc3", "total"]),
    "unit": st.sampled_from(["pJ", "nJ", "uJ", "µJ", "J"]),
    "energy": st.floats(1, 1e3).map(repr),
    "part": st.floats(0, 0.2).map(repr) | st.just(""),
    "input_shape": st.sampled_from(["", "1x32x32", "3x64x64"]),
    "weight_density": st.sampled_from(["", "0.5", "1"]),
    "input_density": st.sampled_from(["", "0.5", "1"]),
}
_BAD = {
    "model": st.sampled_from(["os:abort", "sys:exit", "vgg16", "", "lenet5 "]),
    "layer": st.sampled_from(["", "conv9", "\x07"]),
    "unit": st.sampled_from(["kJ", "normalized", "", "pj"]),
    "energy": st.sampled_from(["", "0", "-1", "1e308", "1e-320", "nan", "inf", "1" + "0" * 400, "lots"])
    | st.floats(allow_nan=True, allow_infinity=True).map(repr),
    "input_shape": st.sampled_from(["3x100000x100000", "3x-1", "x", "1e3", "3x2x2"]),
    "density": st.sampled_from(["0", "1.5", "nan", "-0", "inf"]),
    "odd": st.text(max_size=8) | st.sampled_from(['"', '"a,b"', "#", "\x00", "\u2028", "p" * 140_000]),
}
_OPTIONAL = [c for c in CSV_COLUMNS if c not in ("model", "layer", "energy", "unit")]


def _kind(column):
    """The key of ``column`` in _GOOD and _BAD."""
    return "part" if column.startswith("energy_") else column


@st.composite
def _csv_text(draw):
    """A valid measurements CSV (the real columns in any order, plausible cells), or one damaged in one
    place: a column missing, unknown or repeated, a bad or odd cell, a row one cell short or long."""
    columns = draw(st.permutations(["model", "layer", "energy", "unit",
                                    *draw(st.lists(st.sampled_from(_OPTIONAL), unique=True, max_size=4))]))
    rows = [[draw(_GOOD[_kind(c)]) for c in columns] for _ in range(draw(st.integers(1, 4)))]
    damage = draw(st.sampled_from(["none", "none", "cell", "cell", "odd", "header", "width"]))
    r, c = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(columns) - 1))
    if damage == "cell":
        kind = _kind(columns[c])
        rows[r][c] = draw(_BAD["energy" if kind == "part" else "density" if "density" in kind else kind])
    elif damage == "odd":
        rows[r][c] = draw(_BAD["odd"])
    elif damage == "header":
        columns = [*columns[:c], *columns[c + 1:]] if draw(st.booleans()) else [*columns, draw(st.sampled_from(
            ["volts", "", "model"]))]
    elif damage == "width":
        rows[r] = rows[r][:-1] if draw(st.booleans()) else [*rows[r], "1"]
    lines = [",".join(columns), *(",".join(row) for row in rows)]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), "# a comment")
    return draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)


@FUZZ
@given(text=_csv_text(), allow=st.booleans())
def test_fuzz_random_csv(tmp_path_factory, text, allow):
    path = tmp_path_factory.mktemp("fuzz") / "m.csv"
    path.write_text(text, encoding="utf-8")
    _check_outcome(path, "pJ", models=("factories:tiny",) if allow else ())


_JSON_KEYS = st.sampled_from(["model", "units", "layers", "name", "energy", "energy_by_level", "macs", "dram",
                              "mac", "rf", "other"])
_JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from(["lenet5", "os:abort", "conv1", "pJ", "normalized", "total", "a\nb"]),
)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_JSON_KEYS, children, max_size=5)),
    max_leaves=25,
)


def _mostly(good, bad):
    """``good`` nine times in ten, else ``bad``."""
    return st.integers(0, 9).flatmap(lambda i: bad if i == 0 else good)


_JSON_ENERGY = _mostly(st.floats(1, 1e6), st.floats(min_value=1e300) | st.integers(1, 10**400) | _JSON_LEAF)


def _report_like():
    """A dict shaped like an ``ecc simulate --json`` report, its values mostly plausible."""
    layer = st.fixed_dictionaries(
        {"name": _mostly(st.sampled_from(["conv1", "conv2", "fc3", "total"]), st.sampled_from(["", "a\nb", "x"])),
         "energy": _JSON_ENERGY},
        optional={
            "energy_by_level": _mostly(st.dictionaries(st.sampled_from(["dram", "buffer", "rf", "mac", "leakage"]),
                                                       st.floats(0, 0.2), max_size=3),
                                       st.dictionaries(_JSON_KEYS, _JSON_ENERGY, max_size=3) | _JSON_LEAF),
            "macs": _mostly(st.integers(0, 10**6), _JSON_LEAF),
        },
    )
    return st.fixed_dictionaries(
        {"model": _mostly(st.sampled_from(["lenet5", "resnet18"]), st.sampled_from(["os:abort", ""]) | _JSON_LEAF),
         "units": _mostly(st.sampled_from(["pJ", "uJ", "J"]), _JSON_LEAF | st.lists(_JSON_LEAF, max_size=1)),
         "layers": _mostly(st.lists(layer, min_size=1, max_size=4), _JSON_LEAF)},
    )


@FUZZ
@given(document=st.one_of(_JSON, _report_like(), st.lists(_report_like(), max_size=3)))
def test_fuzz_random_json(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("fuzz") / "m.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    _check_outcome(path, "pJ")


def test_deeply_nested_json_is_a_clean_error(tmp_path):
    path = _write(tmp_path, "[" * 100_000 + "]" * 100_000, "m.json")
    with pytest.raises(ValueError, match=r"m.json: .*nested too deeply"):
        read_measurements(path, "pJ")
