"""Sweeps across machines: shards and their merge, and the Dask executor, give the results of
one unsharded local sweep (compared row by row, wall times aside)."""

import csv
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from compress.cli import main
from compress.executors import open_executor
from compress.sweep import SweepConfig, merge_sweeps, run_sweep
from compress.train import TrainConfig

BUDGETS = (0.5, 0.25)
METHODS = ("ecc", "magnitude")
# The cell list is seeds x methods x budgets: shard 0 of 2 takes cells 0 and 2, shard 1 cells 1 and 3.
SHARD_CELLS = ([("ecc", 0.5), ("magnitude", 0.5)], [("ecc", 0.25), ("magnitude", 0.25)])


def sweep_config(out, **kw) -> SweepConfig:
    base = TrainConfig(
        model="lenet5", dataset="digits", profile="eyeriss-iclr19", estimator="paper", out=str(out),
        budget=1.0, epochs=1, pretrain_epochs=2, quiet=True,
    )
    return SweepConfig(base, BUDGETS, METHODS, (0,), quiet=True, **{"jobs": 2, **kw})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("unsharded")
    run_sweep(sweep_config(out), out)
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two shards running at the same time, as two tasks of a job array would."""
    root = tmp_path_factory.mktemp("sharded")
    dirs = [root / "shard-0", root / "shard-1"]
    with ThreadPoolExecutor(2) as tasks:
        rows = list(tasks.map(lambda i: run_sweep(sweep_config(dirs[i], shard=(i, 2), jobs=1), dirs[i]), range(2)))
    return dirs, rows


def read_rows(path):
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in csv.DictReader(fh)]


def final_state(run_dir):
    return torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]


def assert_same_models(run_dirs, other_dirs):
    """Bitwise the same final models: stricter than results.csv, whose accuracies and energies
    would not notice a last-bit difference (such as one from a different number of threads)."""
    for a, b in zip(run_dirs, other_dirs, strict=True):
        first, second = final_state(a), final_state(b)
        assert list(first) == list(second), (a, b)
        assert all(torch.equal(first[k], second[k]) for k in first), (a, b)


def cell_dirs(sweep_dir, cells):
    return [sweep_dir / "cells" / m / f"b{b:g}_s0" for m, b in cells]


def test_each_shard_runs_its_share_and_trains_its_own_dense_model(shards):
    dirs, rows = shards
    for share, shard_rows in zip(SHARD_CELLS, rows):
        assert [(r["method"], r["budget"]) for r in shard_rows] == share
    for share, d in zip(SHARD_CELLS, dirs):
        trained = {(p.parent.name, p.name) for p in d.glob("cells/*/*")}
        assert trained == {(m, f"b{b:g}_s0") for m, b in share}
    # Both shards needed seed 0: each trained it, bitwise the same.
    assert_same_models([dirs[0] / "dense" / "seed0"], [dirs[1] / "dense" / "seed0"])


def test_merged_shards_equal_the_unsharded_sweep(reference, shards, tmp_path):
    dirs, _ = shards
    merged = tmp_path / "merged"
    rows = merge_sweeps(dirs[::-1], merged)  # the order of the directories does not matter
    assert [(r["method"], r["budget"]) for r in rows] == [(m, b) for m in METHODS for b in BUDGETS]
    assert read_rows(merged / "results.csv") == read_rows(reference / "results.csv")
    assert read_rows(merged / "summary.csv") == read_rows(reference / "summary.csv")
    everything = [(m, b) for m in METHODS for b in BUDGETS]
    assert_same_models(cell_dirs(merged, everything), cell_dirs(reference, everything))
    # The merged directory links to the shards' run folders, so it reads like any sweep.
    link = merged / "cells" / "magnitude" / "b0.25_s0"
    assert link.is_symlink() and link.resolve() == (dirs[1] / "cells" / "magnitude" / "b0.25_s0").resolve()
    assert (merged / "dense" / "seed0" / "report.json").is_file()
    # Merging again into the same folder replaces the links.
    assert read_rows(merged / "results.csv") == [
        {k: str(v) for k, v in r.items() if k != "wall_time_s"} for r in merge_sweeps(dirs, merged)
    ]


def test_merge_refuses_incomplete_or_overlapping_shards(shards, tmp_path):
    dirs, _ = shards
    with pytest.raises(ValueError, match="shard\\(s\\) 1/2 missing"):
        merge_sweeps(dirs[:1], tmp_path / "m1")
    with pytest.raises(ValueError, match="given twice"):
        merge_sweeps([dirs[0], dirs[0], dirs[1]], tmp_path / "m2")
    with pytest.raises(ValueError, match="must not be one of the directories"):
        merge_sweeps(dirs, dirs[0])
    with pytest.raises(FileNotFoundError, match="not a sweep directory"):
        merge_sweeps([*dirs, tmp_path], tmp_path / "m3")


def test_a_shard_directory_refuses_another_shard(shards):
    dirs, _ = shards
    with pytest.raises(ValueError, match="holds shard 0/2 of a sweep, not 1/2"):
        run_sweep(sweep_config(dirs[0], shard=(1, 2)), dirs[0])


def test_cli_shard_and_merge(shards, tmp_path, capsys):
    dirs, _ = shards
    assert main(["merge", *map(str, dirs), "--out", str(tmp_path / "m")]) == 0
    assert "merged 2 directories" in capsys.readouterr().out
    assert (tmp_path / "m" / "results.csv").is_file()
    with pytest.raises(SystemExit):
        main(["merge", str(dirs[0]), "--model", "lenet5", "--out", str(tmp_path / "m4")])
    assert "unrecognized arguments: --model lenet5" in capsys.readouterr().err
    # The spelling before `ecc merge` is a usage error that names it, whatever else is missing.
    with pytest.raises(SystemExit):
        main(["sweep", "--merge", *map(str, dirs), "--out", str(tmp_path / "m7")])
    assert "--merge is now a command of its own: ecc merge DIR... --out DIR" in capsys.readouterr().err
    assert not (tmp_path / "m4").exists() and not (tmp_path / "m7").exists()
    with pytest.raises(SystemExit):
        main(["sweep", "--out", str(tmp_path / "m5")])
    assert "required: --model, --dataset, --profile, --budgets" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "--model", "lenet5", "--dataset", "digits", "--profile", "eyeriss-iclr19", "--budgets", "0.5",
              "--shard", "2/2", "--out", str(tmp_path / "m6")])
    assert "0 <= I < N" in capsys.readouterr().err


def test_sweep_config_checks_the_scale_out_fields(tmp_path):
    with pytest.raises(ValueError, match="needs the address of a running scheduler"):
        sweep_config(tmp_path, executor="dask")
    with pytest.raises(ValueError, match="executor must be one of local, dask"):
        sweep_config(tmp_path, executor="slurm")
    with pytest.raises(ValueError, match=r"shard must be \(i, n\)"):
        sweep_config(tmp_path, shard=(2, 2))
    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        sweep_config(tmp_path, threads=0)


def test_dask_executor_without_dask_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'energy-constrained-compression\[dask\]'"):
        with open_executor("dask", scheduler="tcp://127.0.0.1:1"):
            pass


def test_dask_executor_equals_the_local_one(reference, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the optional dask extra is not installed")
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        run_sweep(sweep_config(out, executor="dask", scheduler=cluster.scheduler_address), out)
    assert read_rows(out / "results.csv") == read_rows(reference / "results.csv")
    assert read_rows(out / "summary.csv") == read_rows(reference / "summary.csv")
    everything = [(m, b) for m in METHODS for b in BUDGETS]
    assert_same_models(cell_dirs(out, everything) + [out / "dense" / "seed0"],
                       cell_dirs(reference, everything) + [reference / "dense" / "seed0"])
