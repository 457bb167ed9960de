"""Sweep directories as data: extending one keeps every finished cell, concurrent sweeps never
train one cell twice, workers die with their parent, malformed files are one-line errors that
name the file and field, and `ecc train` and `ecc sweep` share one rule for relative budgets."""

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress import sweep
from compress.cli import main
from compress.sweep import (
    METHODS,
    SweepConfig,
    SweepFileError,
    merge_sweeps,
    read_results,
    read_settings,
    read_simulated,
    read_summary,
    run_sweep,
)
from compress.train import TrainConfig
from energysim.report import LEVELS

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TRAINING = dict(model="lenet5", dataset="digits", profile="eyeriss-iclr19", estimator="paper", budget=1.0,
                epochs=1, pretrain_epochs=2, quiet=True)
# The same settings on the command line (one method, one seed).
CLI = ["--model", "lenet5", "--dataset", "digits", "--profile", "eyeriss-iclr19", "--estimator", "paper",
       "--epochs", "1", "--pretrain-epochs", "2", "--methods", "ecc", "--quiet"]


def config(out, budgets, **kw) -> SweepConfig:
    return SweepConfig(TrainConfig(out=str(out), **TRAINING), budgets, ("ecc",), (0,), quiet=True, **kw)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """One directory grown by three runs: budgets 0.5,0.5; then, at the same time, 0.3 and 0.5,0.3."""
    out = tmp_path_factory.mktemp("grown")
    run_sweep(config(out, (0.5, 0.5)), out)
    first_summary = read_csv(out / "summary.csv")
    with ThreadPoolExecutor(2) as tasks:
        concurrent = list(tasks.map(lambda budgets: run_sweep(config(out, budgets), out), [(0.3,), (0.5, 0.3)]))
    return out, first_summary, concurrent


def copy_of(grown, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(grown[0], target)
    return target


def one_line_error(capsys, command) -> str:
    """The stderr of an `ecc` command that must fail with exit status 2 and one line (notes aside)."""
    assert main(command) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith(f"ecc {command[0]}: error: "), lines
    return lines[0]


# --- item 4: a sweep directory accumulates every finished cell ---------------------------------------------


def test_repeated_budgets_methods_and_seeds_count_once(grown):
    _, first_summary, _ = grown
    assert [(s["budget"], s["seeds"]) for s in first_summary] == [("0.5", "1")]
    c = SweepConfig(TrainConfig(out="x", **TRAINING), (0.5, 0.5, 0.25), ("ecc", "magnitude", "ecc"), (1, 0, 1))
    assert (c.budgets, c.methods, c.seeds) == ((0.5, 0.25), ("ecc", "magnitude"), (1, 0))


def test_extending_a_sweep_keeps_the_earlier_cells(grown):
    out, _, _ = grown
    assert [(r["method"], r["budget"], r["seed"]) for r in read_csv(out / "results.csv")] == [
        ("ecc", "0.5", "0"), ("ecc", "0.3", "0")
    ]
    assert [(s["budget"], s["seeds"]) for s in read_csv(out / "summary.csv")] == [("0.3", "1"), ("0.5", "1")]
    assert json.loads((out / "sweep.json").read_text())["budgets"] == [0.5, 0.3]


def test_concurrent_sweeps_train_a_shared_cell_once(grown):
    out, _, concurrent = grown
    # Each run reports the shared cell as trained, by itself or by the other.
    for rows in concurrent:
        assert [(r["budget"], r["feasible"], r["reason"]) for r in rows if r["budget"] == 0.3] == [(0.3, True, "")]
    assert all(r["feasible"] == "True" and r["reason"] == "" for r in read_csv(out / "results.csv"))
    cells = out / "cells" / "ecc"
    assert not list(cells.glob("*/error.json"))
    # One training of the same schedule writes as many log lines for 0.3 as for 0.5.
    lines = {b: len((cells / f"b{b}_s0" / "log.jsonl").read_text().splitlines()) for b in ("0.5", "0.3")}
    assert lines["0.3"] == lines["0.5"] > 0


def test_a_run_folder_is_trained_only_under_its_lock(tmp_path, monkeypatch):
    """A worker waits while another process holds the cell's lock, then takes its finished result."""
    calls = []

    def fake_train(config, resume):
        calls.append(config.out)
        Path(config.out).mkdir(parents=True)
        (Path(config.out) / "report.json").write_text("{}")

    monkeypatch.setattr(sweep, "train", fake_train)
    cell = TrainConfig(out=str(tmp_path / "cells" / "ecc" / "b0.5_s0"), **{**TRAINING, "budget": 0.5})
    lock = sweep._lock_file(tmp_path, Path(cell.out))
    with sweep._locked(lock):  # held as another process would hold it
        worker = threading.Thread(target=sweep._run, args=(cell, 1, str(lock)))
        worker.start()
        time.sleep(0.5)
        assert calls == [] and worker.is_alive()
    worker.join(10)
    assert calls == [cell.out]
    assert sweep._run(cell, 1, str(lock)) is None and calls == [cell.out]  # finished: not trained again


def test_an_incompatible_extension_is_refused_naming_what_differs(grown):
    out, _, _ = grown
    before = (out / "sweep.json").read_bytes()
    other = SweepConfig(TrainConfig(out=str(out), **{**TRAINING, "lr": 0.5}), (0.2,), ("ecc",), (0,), quiet=True)
    with pytest.raises(ValueError, match=r"other training settings \(lr: 0.01 in the directory, 0.5 given\)"):
        run_sweep(other, out)
    with pytest.raises(ValueError, match=r"threads: 1 in the directory, 2 given"):
        run_sweep(config(out, (0.2,), threads=2), out)
    assert (out / "sweep.json").read_bytes() == before and not (out / "cells" / "ecc" / "b0.2_s0").exists()


def test_budgets_that_share_a_cell_folder_are_refused(grown):
    with pytest.raises(ValueError, match="would share the cell folders b0.123456_s<S>"):
        config("x", (0.123456, 0.1234564))
    out, _, _ = grown
    with pytest.raises(ValueError, match="would share the cell folders b0.5_s<S>"):
        run_sweep(config(out, (0.5000001,)), out)


def test_a_merged_directory_is_not_trained_into(grown, tmp_path):
    out, _, _ = grown
    merged = tmp_path / "merged"
    merge_sweeps([out], merged)
    with pytest.raises(ValueError, match="this directory merges 1 sweeps"):
        run_sweep(config(merged, (0.2,)), merged)


def test_collapsed_cells_are_flagged(grown, tmp_path, capsys):
    out = copy_of(grown, tmp_path)
    report_path = out / "cells" / "ecc" / "b0.3_s0" / "report.json"
    report_path.write_text(json.dumps({**json.loads(report_path.read_text()), "collapsed": True}))
    assert main(["sweep", *CLI, "--budgets", "0.3", "--out", str(out)]) == 0  # nothing left to train
    assert "warning: 1 cell(s) collapsed to chance accuracy" in capsys.readouterr().err.replace("\n", " ")
    assert [(r["budget"], r["collapsed"]) for r in read_csv(out / "results.csv")] == [("0.5", "False"),
                                                                                       ("0.3", "True")]
    assert [(s["budget"], s["collapsed_seeds"]) for s in read_csv(out / "summary.csv")] == [("0.3", "1"), ("0.5", "0")]


def test_the_accumulated_directory_plots(grown, tmp_path, capsys):
    out, _, _ = grown
    assert main(["plot", str(out), "--out", str(tmp_path / "figures")]) == 0
    names = {Path(p).name for p in capsys.readouterr().out.split()}
    assert {"energy_accuracy.png", "density_b0.3.png", "layer_energy_ecc_b0.3.png"} <= names


# --- item 6: a malformed file is a one-line error naming the file and field -------------------------------


@pytest.mark.parametrize("content, named", [
    ("{not json", "not a JSON file"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"accuracy": 0.9}', "field energy_simulated_relative is missing"),
])
def test_a_corrupt_cell_report_is_named(grown, tmp_path, capsys, content, named):
    out = copy_of(grown, tmp_path)
    report_path = out / "cells" / "ecc" / "b0.3_s0" / "report.json"
    report_path.write_text(content)
    before = (out / "results.csv").read_bytes()
    err = one_line_error(capsys, ["sweep", *CLI, "--budgets", "0.3", "--out", str(out)])
    assert str(report_path) in err and named in err
    assert (out / "results.csv").read_bytes() == before


@pytest.fixture(scope="module")
def fuzzed(grown, tmp_path_factory):
    """A copy of the grown directory whose 0.3 report the fuzz tests overwrite."""
    out = tmp_path_factory.mktemp("fuzzed") / "sweep"
    shutil.copytree(grown[0], out)
    report_path = out / "cells" / "ecc" / "b0.3_s0" / "report.json"
    return out, report_path, json.loads(report_path.read_text())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(data=st.data())
def test_fuzzed_cell_reports_give_a_clean_error_or_a_typed_row(fuzzed, data):
    out, report_path, valid = fuzzed
    report = dict(valid)
    key = data.draw(st.sampled_from(sorted(valid)), label="key")
    if data.draw(st.booleans(), label="delete"):
        del report[key]
    else:
        report[key] = data.draw(json_values, label="value")
    if data.draw(st.booleans(), label="layers"):
        report["layers"] = data.draw(st.lists(json_values, max_size=3), label="layer list")
    report_path.write_text(json.dumps(report))
    before = (out / "results.csv").read_bytes()
    try:
        rows = run_sweep(config(out, (0.3,)), out)
    except SweepFileError as exc:
        assert str(exc).startswith(f"{report_path}: ") and "\n" not in str(exc)
        assert (out / "results.csv").read_bytes() == before
        return
    row = rows[-1]
    assert isinstance(row["feasible"], bool) and isinstance(row["collapsed"], bool)
    assert 0 <= row["accuracy"] <= 1 and row["energy_simulated_relative"] > 0
    assert all(0 <= v <= 1 for k, v in row.items() if k.startswith("density:"))
    filled = [{k: v for k, v in r.items() if v is not None} for r in rows]
    assert [{k: v for k, v in r.items() if v is not None} for r in read_results(out)] == filled


@FUZZ
@given(data=st.data())
def test_fuzzed_sweep_json_gives_a_clean_error_or_checked_settings(fuzzed, data):
    out, _, _ = fuzzed
    root = out.parent / "settings"
    root.mkdir(exist_ok=True)
    valid = json.loads((out / "sweep.json").read_text())
    settings_ = json.loads(json.dumps(valid))
    where = settings_ if data.draw(st.booleans(), label="top") else settings_["base"]
    key = data.draw(st.sampled_from(sorted(where) + ["shard", "extra"]), label="key")
    if data.draw(st.booleans(), label="delete"):
        where.pop(key, None)
    else:
        where[key] = data.draw(json_values, label="value")
    (root / "sweep.json").write_text(json.dumps(settings_))
    try:
        checked = read_settings(root)
    except SweepFileError as exc:
        assert str(exc).startswith(f"{root / 'sweep.json'}: ") and "\n" not in str(exc)
        return
    assert all(0 < b <= 1 for b in checked["budgets"]) and set(checked["methods"]) <= set(METHODS)
    assert all(isinstance(checked["base"][k], str) for k in ("model", "dataset", "profile", "estimator"))


@FUZZ
@given(data=st.data())
def test_fuzzed_simulated_json_gives_a_clean_error_or_a_checked_report(fuzzed, data):
    out, _, _ = fuzzed
    report = json.loads((out / "dense" / "seed0" / "simulated.json").read_text())
    layer = data.draw(st.sampled_from(report["layers"]), label="layer")
    where = data.draw(st.sampled_from([report, layer, layer["energy_by_level"]]), label="where")
    key = data.draw(st.sampled_from(sorted(where)), label="key")
    if data.draw(st.booleans(), label="delete"):
        del where[key]
    else:
        where[key] = data.draw(json_values, label="value")
    path = out.parent / "simulated.json"
    path.write_text(json.dumps(report))
    try:
        checked = read_simulated(path)
    except SweepFileError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    assert checked["layers"] and all(isinstance(l["name"], str) for l in checked["layers"])
    assert all(math.isfinite(l["energy_by_level"][v]) and l["energy_by_level"][v] >= 0
               for l in checked["layers"] for v in LEVELS)


RESULT_COLUMNS = ["method", "budget", "seed", "feasible", "reason", "collapsed", "accuracy", "dense_accuracy",
                  "energy_simulated_relative", "density:conv1", "junk"]
SUMMARY_COLUMNS = ["method", "budget", "seeds", "feasible_seeds", "collapsed_seeds", "accuracy_mean", "accuracy_std",
                   "energy_mean", "energy_std", "junk"]
cell_text = st.sampled_from(["", "ecc", "magnitude", "True", "False", "0", "1", "2", "0.5", "0.3", "1.5", "-1",
                             "nan", "inf", "x"]) | st.text(max_size=5)


def csv_text(columns):
    header = st.lists(st.sampled_from(columns), min_size=0, max_size=len(columns))
    return header.flatmap(lambda names: st.tuples(
        st.just(names), st.lists(st.lists(cell_text, min_size=len(names), max_size=len(names) + 1), max_size=4)
    ))


def write_csv(path, header, records):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(records)


@FUZZ
@given(table=csv_text(RESULT_COLUMNS), raw=st.binary(max_size=40))
def test_fuzzed_results_csv_gives_a_clean_error_or_typed_rows(fuzzed, table, raw):
    root = fuzzed[0].parent / "results"
    root.mkdir(exist_ok=True)
    for write in (lambda p: write_csv(p, *table), lambda p: p.write_bytes(raw)):
        write(root / "results.csv")
        try:
            rows = read_results(root)
        except SweepFileError as exc:
            assert str(exc).startswith(f"{root / 'results.csv'}: ") and "\n" not in str(exc)
            continue
        keys = [(r["method"], r["budget"], r["seed"]) for r in rows]
        assert len(set(keys)) == len(keys)
        for r in rows:
            assert r["method"] in METHODS and 0 < r["budget"] <= 1 and isinstance(r["seed"], int)
            assert isinstance(r["feasible"], bool)
            if r["feasible"]:
                assert 0 <= r["accuracy"] <= 1 and r["energy_simulated_relative"] > 0


@FUZZ
@given(table=csv_text(SUMMARY_COLUMNS))
def test_fuzzed_summary_csv_gives_a_clean_error_or_typed_rows(fuzzed, table):
    root = fuzzed[0].parent / "summary"
    root.mkdir(exist_ok=True)
    write_csv(root / "summary.csv", *table)
    try:
        rows = read_summary(root)
    except SweepFileError as exc:
        assert str(exc).startswith(f"{root / 'summary.csv'}: ") and "\n" not in str(exc)
        return
    for r in rows:
        assert 0 <= r["feasible_seeds"] <= r["seeds"]
        if r["feasible_seeds"]:
            assert 0 <= r["accuracy_mean"] <= 1 and r["energy_mean"] > 0 and math.isfinite(r["energy_std"])


@pytest.mark.parametrize("name, content, named", [
    ("results.csv", "a,b\n1,2\n", "unknown column 'a'"),
    ("results.csv", "method,budget,seed,feasible\necc,0.3,0,True\n", "column 'accuracy' must be a number in [0, 1]"),
    ("results.csv", "method,budget,seed,feasible\necc,0.3,zero,False\n", "line 2, column 'seed' must be an int"),
    ("summary.csv", "method,budget\necc,0.3\n", "lacks column(s) seeds"),
    ("sweep.json", '{"base": {}}', "field threads is missing"),
    ("sweep.json", "\xff", "not a JSON file"),
    ("dense/seed0/simulated.json", '{"model": "m"}', "field profile is missing; expected a string"),
    ("cells/ecc/b0.3_s0/simulated.json", '{"model": "m", "profile": "p", "estimator": "e", "units": "pJ", '
     '"layers": [{"name": "conv1", "energy_by_level": {"dram": -1}}]}', "field layers[0].energy_by_level.dram must be"),
    ("cells/ecc/b0.3_s0/simulated.json", "[]", "expected a JSON object"),
])
def test_plot_of_a_malformed_file_is_a_one_line_error(grown, tmp_path, capsys, name, content, named):
    out = copy_of(grown, tmp_path)
    (out / name).write_text(content, encoding="latin-1")
    err = one_line_error(capsys, ["plot", str(out), "--out", str(tmp_path / "figures")])
    assert str(out / name) in err and named in err
    assert not (tmp_path / "figures").exists()


def test_plot_of_a_budget_not_in_the_sweep_writes_nothing(grown, tmp_path, capsys):
    err = one_line_error(capsys, ["plot", str(grown[0]), "--budget", "0.7", "--out", str(tmp_path / "figures")])
    assert "--budget 0.7 is not in the sweep; budgets: 0.3, 0.5" in err
    assert not (tmp_path / "figures").exists()


# --- item 10: one rule for relative budgets ---------------------------------------------------------------


@pytest.mark.parametrize("budget", ["1.5", "0", "-0.5", "nan"])
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_train_and_sweep_share_the_relative_budget_rule(tmp_path, capsys, command, budget):
    options = ["--budget", budget] if command == "train" else ["--budgets", budget]
    err = one_line_error(capsys, [command, "--model", "lenet5", "--dataset", "digits", "--profile", "eyeriss-iclr19",
                                  "--estimator", "paper", "--epochs", "1", "--pretrain-epochs", "0", "--quiet",
                                  *options, "--out", str(tmp_path / "out")])
    assert "must be relative energies in (0, 1]" in err
    assert not (tmp_path / "out").exists()


# --- item 9: workers die with the sweep -------------------------------------------------------------------


def _children(pid: int) -> dict[int, str]:
    """Live child processes of ``pid`` and their command lines (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] != "Z" and int(fields[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie has exited, whoever reaps it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_sigkill_of_a_sweep_leaves_no_worker_running(tmp_path):
    command = [sys.executable, "-m", "compress", "sweep", *CLI, "--budgets", "0.5,0.3", "--jobs", "2",
               "--out", str(tmp_path / "sweep")]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              cwd=Path(__file__).parent.parent)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not workers and time.monotonic() < deadline and parent.poll() is None:
            workers = [p for p, cmd in _children(parent.pid).items() if "spawn_main" in cmd]
            time.sleep(0.2)
        assert workers, "the sweep started no worker"
        time.sleep(1.0)  # let the workers get going
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in workers if _alive(p)]
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
