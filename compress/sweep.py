"""Budget sweeps: every (method, budget, seed) cell trained like ``ecc train``, in parallel,
resumable, collected into ``results.csv`` and ``summary.csv``.

Layout of a sweep directory::

    DIR/sweep.json                      the sweep's settings (a resumed sweep must match them)
    DIR/dense/seed<S>/                  the dense starting model of seed S (shared by every method)
    DIR/cells/<method>/b<budget>_s<S>/  one `ecc train` run directory per cell
    DIR/results.csv                     one row per cell
    DIR/summary.csv                     mean and std over seeds per (method, budget)

A cell is finished when its ``report.json`` exists; a resumed sweep skips it. Every
method of a seed starts from the same dense checkpoint and trains with the same schedule
(epochs, optimizer, distillation, seed), so the methods differ only in how they prune.
A cell whose budget cannot be reached (below the floor of its method) is recorded with
``feasible = False`` and the reason, never as a point above the budget.

Every cell runs with ``threads`` torch threads and alone in its process: CPU results
depend bitwise on the thread count, so fixing it makes a cell's numbers the same
whichever machine, executor or process runs it.

Across machines:

- ``shard=(i, n)`` (``ecc sweep --shard i/n``, one task of a job array) runs cells
  ``i, i + n, i + 2n, ...`` of the sweep's cell list (seeds x methods x budgets, in the
  order given) in its own directory. Each shard trains there the dense models of the
  seeds its cells need: no two processes ever write one run folder, and since training
  is deterministic for a seed on CPU, two shards that need seed 0 train the same dense
  model bitwise. A directory records its shard in ``sweep.json`` and refuses another.
- :func:`merge_sweeps` (``ecc sweep --merge DIR... --out OUT``) combines the shard
  directories (or any sweeps of disjoint cells with the same settings) into one sweep
  directory: ``results.csv``, ``summary.csv``, ``sweep.json`` and relative symbolic links
  ``cells/...`` and ``dense/...`` to the shards' run folders, so ``ecc plot OUT`` draws
  it like any sweep. On CPU the merged results equal an unsharded sweep's.
- ``executor="dask"`` submits the cells to a running Dask cluster instead of local
  processes (:mod:`compress.executors`); the results are the same.
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from energysim.workload import UnmodelledLayerWarning

from .executors import EXECUTORS, open_executor
from .train import TrainConfig, train

__all__ = ["METHODS", "Cell", "SweepConfig", "merge_sweeps", "run_sweep", "summarize"]

METHODS = ("ecc", "ecc-mask", "magnitude", "uniform", "energy-aware")


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep and where to run it.

    Parameters
    ----------
    base : TrainConfig
        The training settings shared by every cell.
    budgets : tuple of float
        Relative energy budgets in (0, 1].
    methods : tuple of str
        Names from :data:`METHODS`.
    seeds : tuple of int
    jobs : int
        Local worker processes (``executor="local"``).
    quiet : bool
        No progress bar.
    threads : int
        torch threads of every cell, >= 1; part of the sweep's settings (results depend on it).
    shard : tuple of int
        ``(i, n)``: run only cells ``i, i + n, ...``; ``(0, 1)`` runs all.
    executor : {"local", "dask"}
    scheduler : str, optional
        Dask scheduler address (``executor="dask"``).
    """

    base: TrainConfig
    budgets: tuple[float, ...]
    methods: tuple[str, ...] = ("ecc", "magnitude")
    seeds: tuple[int, ...] = (0,)
    jobs: int = 1
    quiet: bool = False
    threads: int = 1
    shard: tuple[int, int] = (0, 1)
    executor: str = "local"
    scheduler: str | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
        bad = [b for b in self.budgets if not (isinstance(b, (int, float)) and 0 < b <= 1)]
        if bad or not self.budgets:
            raise ValueError(f"budgets must be relative energies in (0, 1], got {list(self.budgets)}")
        if not self.methods or not self.seeds:
            raise ValueError("a sweep needs at least one method and one seed")
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {self.threads!r}")
        shard = tuple(self.shard)
        if not (len(shard) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
                and 0 <= shard[0] < shard[1]):
            raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {self.shard!r}")
        object.__setattr__(self, "shard", shard)
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.executor == "dask" and not self.scheduler:
            raise ValueError("executor 'dask' needs the address of a running scheduler, e.g. tcp://HOST:8786")


@dataclass(frozen=True)
class Cell:
    method: str
    budget: float
    seed: int

    def directory(self, root: Path) -> Path:
        return root / "cells" / self.method / f"b{self.budget:g}_s{self.seed}"


def _dense_config(config: SweepConfig, root: Path, seed: int) -> TrainConfig:
    """The shared starting point of a seed: dense pretraining, then one epoch at the full budget."""
    return replace(config.base, seed=seed, budget=1.0, budget_abs=None, epochs=1, input_mask=False,
                   method="ecc", checkpoint=None, out=str(root / "dense" / f"seed{seed}"), quiet=True)


def _cell_config(config: SweepConfig, root: Path, cell: Cell) -> TrainConfig:
    method = "ecc" if cell.method == "ecc-mask" else cell.method
    return replace(
        config.base,
        seed=cell.seed,
        budget=cell.budget,
        budget_abs=None,
        method=method,
        input_mask=cell.method == "ecc-mask",
        checkpoint=str(root / "dense" / f"seed{cell.seed}"),
        pretrain_epochs=0,
        out=str(cell.directory(root)),
        quiet=True,
    )


# torch's RNG and thread count belong to the process: a worker with several threads (a Dask
# worker started with --nthreads 2) must still train one cell at a time.
_ONE_CELL_AT_A_TIME = threading.Lock()


def _run(config: TrainConfig, threads: int) -> dict[str, Any]:
    """Train one run directory (in a worker) with ``threads`` torch threads; its report, or why it failed."""
    report_path = Path(config.out) / "report.json"
    if report_path.is_file():
        return json.loads(report_path.read_text())
    with _ONE_CELL_AT_A_TIME:
        resume = (Path(config.out) / "config.json").is_file()
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with warnings.catch_warnings():
                # The unmodelled layers (pooling, activations) are the same in every cell: not news.
                warnings.simplefilter("ignore", UnmodelledLayerWarning)
                train(config, resume=resume)
        except ValueError as exc:  # an infeasible budget or other bad setting of this one cell
            return {"error": str(exc).splitlines()[0]}
        finally:
            torch.set_num_threads(previous)
    return json.loads(report_path.read_text())


# Fields of a cell's config that the sweep sets itself, or that say only where and how fast
# it runs (a resumed cell may change them too).
_NOT_SETTINGS = ("out", "quiet", "seed", "budget", "budget_abs", "method", "input_mask", "checkpoint", "device",
                 "workers")


def _settings(config: SweepConfig) -> dict[str, Any]:
    base = asdict(config.base)
    for key in _NOT_SETTINGS:
        base.pop(key, None)
    settings = {
        "base": base,
        "threads": config.threads,
        "budgets": list(config.budgets),
        "methods": list(config.methods),
        "seeds": list(config.seeds),
    }
    return json.loads(json.dumps(settings))  # tuples become lists, as in the saved file


def run_sweep(config: SweepConfig, out: str | Path) -> list[dict[str, Any]]:
    """Run every cell not yet finished and write ``results.csv`` and ``summary.csv``.

    Parameters
    ----------
    config : SweepConfig
    out : str or Path
        The sweep directory; an existing one is resumed when its settings match.

    Returns
    -------
    list of dict
        The rows of ``results.csv``: this shard's cells only.

    Raises
    ------
    ValueError
        If ``out`` holds a sweep with other settings, or another shard.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    settings_path = root / "sweep.json"
    settings = _settings(config)
    if settings_path.is_file():
        previous = json.loads(settings_path.read_text())
        if previous["base"] != settings["base"] or previous.get("threads") != settings["threads"]:
            raise ValueError(
                f"{settings_path}: this directory holds a sweep with other training settings; use another --out"
            )
        shard = tuple(previous.get("shard", (0, 1)))
        if shard != config.shard:
            raise ValueError(
                f"{settings_path}: this directory holds shard {_shard_text(shard)} of a sweep, not "
                f"{_shard_text(config.shard)}: give every shard its own --out"
            )
        # A resumed sweep may add budgets, methods or seeds; the union is recorded.
        for key in ("budgets", "methods", "seeds"):
            settings[key] = sorted(set(previous[key]) | set(settings[key]), key=lambda v: (str(type(v)), v))
    if config.shard != (0, 1):
        settings["shard"] = list(config.shard)
    settings_path.write_text(json.dumps(settings, indent=2) + "\n")

    index, count = config.shard
    cells = [Cell(m, b, s) for s in config.seeds for m in config.methods for b in config.budgets][index::count]
    seeds = list(dict.fromkeys(c.seed for c in cells))  # the dense models this shard needs
    bar = tqdm(total=len(seeds) + len(cells), desc="sweep", unit="run", disable=config.quiet)
    with open_executor(config.executor, jobs=config.jobs, scheduler=config.scheduler) as pool:
        dense = {pool.submit(_run, _dense_config(config, root, s), config.threads): s for s in seeds}
        dense_reports = {}
        for future in as_completed(dense):
            dense_reports[dense[future]] = future.result()
            bar.update()
        failed = {s: r["error"] for s, r in dense_reports.items() if "error" in r}
        if failed:
            raise ValueError(f"dense model of seed {min(failed)} failed: {failed[min(failed)]}")
        futures = {pool.submit(_run, _cell_config(config, root, c), config.threads): c for c in cells}
        reports = {}
        for future in as_completed(futures):
            reports[futures[future]] = future.result()
            bar.update()
    bar.close()
    rows = [_row(c, reports[c], dense_reports[c.seed]) for c in cells]
    _write_csv(root / "results.csv", rows)
    _write_csv(root / "summary.csv", summarize(rows))
    return rows


def _shard_text(shard: Sequence[int]) -> str:
    return f"{shard[0]}/{shard[1]}"


def merge_sweeps(dirs: Sequence[str | Path], out: str | Path) -> list[dict[str, Any]]:
    """Combine finished sweep directories (the shards of one sweep) into one sweep directory.

    Parameters
    ----------
    dirs : sequence of str or Path
        Sweep directories with the same settings and no cell in common: every shard
        ``0/n .. n-1/n`` of a sharded sweep, or sweeps of disjoint budgets, methods or seeds.
    out : str or Path
        The merged directory (created; not one of ``dirs``). It receives ``results.csv``,
        ``summary.csv``, ``sweep.json`` (with ``merged_from``) and relative symbolic
        links ``cells/<method>/<cell>`` and ``dense/seed<S>`` to the run folders; links
        from an earlier merge are replaced.

    Returns
    -------
    list of dict
        The rows of the merged ``results.csv``, ordered as an unsharded sweep orders them
        (seeds, then methods, then budgets, in the order of the sweeps' settings).

    Raises
    ------
    FileNotFoundError
        If a directory is not a sweep, or has no ``results.csv`` (not finished).
    ValueError
        If the settings differ, a shard is missing or given twice, a cell is in two
        directories, or ``out`` is one of ``dirs``.
    FileExistsError
        If ``out`` holds a real folder where a link goes.
    """
    sources = [Path(d) for d in dirs]
    root = Path(out)
    if not sources:
        raise ValueError("merge needs at least one sweep directory")
    if root.resolve() in {d.resolve() for d in sources}:
        raise ValueError(f"the merged directory {root} must not be one of the directories merged")
    settings = [_read_settings(d) for d in sources]
    for d, other in zip(sources[1:], settings[1:]):
        if (other["base"], other.get("threads")) != (settings[0]["base"], settings[0].get("threads")):
            raise ValueError(f"{d} and {sources[0]} hold sweeps with different training settings; cannot merge them")
    _check_shards(sources, [tuple(s.get("shard", (0, 1))) for s in settings])
    merged = {key: settings[0][key] for key in ("base", "threads")}
    for key in ("budgets", "methods", "seeds"):
        merged[key] = list(dict.fromkeys(v for s in settings for v in s[key]))
    merged["merged_from"] = [str(d) for d in sources]

    owner: dict[Cell, Path] = {}
    rows = []
    for d in sources:
        for row in _read_rows(d / "results.csv"):
            cell = Cell(row["method"], row["budget"], row["seed"])
            if cell in owner:
                raise ValueError(f"cell {cell.method} @ {cell.budget:g} seed {cell.seed} is in both {owner[cell]} "
                                 f"and {d}; merge each cell once")
            owner[cell] = d
            rows.append(row)
    position = {key: {v: i for i, v in enumerate(merged[key])} for key in ("budgets", "methods", "seeds")}
    rows.sort(key=lambda r: (position["seeds"][r["seed"]], position["methods"][r["method"]],
                             position["budgets"][r["budget"]]))

    root.mkdir(parents=True, exist_ok=True)
    for cell, d in owner.items():
        if cell.directory(d).is_dir():
            _link(cell.directory(d), cell.directory(root))
    for seed in merged["seeds"]:
        dense = next((d / "dense" / f"seed{seed}" for d in sources if (d / "dense" / f"seed{seed}").is_dir()), None)
        if dense is not None:
            _link(dense, root / "dense" / f"seed{seed}")
    (root / "sweep.json").write_text(json.dumps(merged, indent=2) + "\n")
    _write_csv(root / "results.csv", rows)
    _write_csv(root / "summary.csv", summarize(rows))
    return rows


def _read_settings(root: Path) -> dict[str, Any]:
    path = root / "sweep.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root}: not a sweep directory (no sweep.json)")
    if not (root / "results.csv").is_file():
        raise FileNotFoundError(f"{root}: the sweep has not finished (no results.csv); run it to the end first")
    return json.loads(path.read_text())


def _check_shards(sources: Sequence[Path], shards: Sequence[tuple[int, int]]) -> None:
    """Every shard of each shard count given exactly once."""
    seen: dict[int, list[int]] = {}
    for index, count in shards:
        if count > 1:
            seen.setdefault(count, []).append(index)
    for count, indices in seen.items():
        missing = [f"{i}/{count}" for i in range(count) if i not in indices]
        twice = [f"{i}/{count}" for i in sorted(set(indices)) if indices.count(i) > 1]
        if missing or twice:
            problems = ([f"shard(s) {', '.join(missing)} missing"] if missing else []) + (
                [f"shard(s) {', '.join(twice)} given twice"] if twice else []
            )
            raise ValueError(f"cannot merge {len(sources)} directories: {'; '.join(problems)}")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a results.csv with their values typed back (bool, int, float; text stays text)."""
    with path.open(newline="") as fh:
        return [{k: _typed(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _typed(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _link(target: Path, link: Path) -> None:
    """A relative symbolic link ``link -> target``, replacing an earlier link."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise FileExistsError(f"{link} exists and is not a link from an earlier merge; merge into another --out")
    link.symlink_to(os.path.relpath(target.resolve(), link.parent.resolve()), target_is_directory=True)


def _row(cell: Cell, report: dict[str, Any], dense: dict[str, Any]) -> dict[str, Any]:
    row = {"method": cell.method, "budget": cell.budget, "seed": cell.seed}
    if "error" in report:
        return row | {"feasible": False, "reason": report["error"], "dense_accuracy": dense.get("accuracy")}
    row |= {
        "feasible": report["energy_simulated_relative"] <= cell.budget * (1 + 1e-9),
        "reason": "",
        "accuracy": report["accuracy"],
        "dense_accuracy": dense.get("accuracy"),
        "energy_simulated": report["energy_simulated"],
        "energy_simulated_relative": report["energy_simulated_relative"],
        "energy_proxy": report["energy_proxy"],
        "energy_dense": report["energy_dense"],
        "wall_time_s": report.get("wall_time_s"),
    }
    row |= {f"density:{l['name']}": l["density"] for l in report["layers"]}
    return row


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and (sample) standard deviation over seeds of each (method, budget)."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["budget"]), []).append(row)
    summary = []
    for (method, budget), group in sorted(groups.items()):
        done = [r for r in group if r.get("feasible")]
        entry = {"method": method, "budget": budget, "seeds": len(group), "feasible_seeds": len(done)}
        for key, name in (("accuracy", "accuracy"), ("energy_simulated_relative", "energy")):
            values = [float(r[key]) for r in done]
            mean = sum(values) / len(values) if values else math.nan
            var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
            entry[f"{name}_mean"], entry[f"{name}_std"] = mean, math.sqrt(var)
        summary.append(entry)
    return summary


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
