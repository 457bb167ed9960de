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
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from energysim.workload import UnmodelledLayerWarning

from .train import TrainConfig, train

__all__ = ["METHODS", "Cell", "SweepConfig", "run_sweep", "summarize"]

METHODS = ("ecc", "ecc-mask", "magnitude", "uniform", "energy-aware")


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep; ``base`` holds the training settings shared by every cell."""

    base: TrainConfig
    budgets: tuple[float, ...]
    methods: tuple[str, ...] = ("ecc", "magnitude")
    seeds: tuple[int, ...] = (0,)
    jobs: int = 1
    quiet: bool = False

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


def _run(config: TrainConfig) -> dict[str, Any]:
    """Train one run directory (in a worker process) and return its report, or the reason it failed."""
    report_path = Path(config.out) / "report.json"
    if report_path.is_file():
        return json.loads(report_path.read_text())
    resume = (Path(config.out) / "config.json").is_file()
    try:
        with warnings.catch_warnings():
            # The unmodelled layers (pooling, activations) are the same in every cell: not news.
            warnings.simplefilter("ignore", UnmodelledLayerWarning)
            train(config, resume=resume)
    except ValueError as exc:  # an infeasible budget or other bad setting of this one cell
        return {"error": str(exc).splitlines()[0]}
    return json.loads(report_path.read_text())


def _settings(config: SweepConfig) -> dict[str, Any]:
    base = asdict(config.base)
    for key in ("out", "quiet", "seed", "budget", "budget_abs", "method", "input_mask", "checkpoint"):
        base.pop(key, None)
    settings = {"base": base, "budgets": list(config.budgets), "methods": list(config.methods), "seeds": list(config.seeds)}
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
        The rows of ``results.csv``.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    settings_path = root / "sweep.json"
    settings = _settings(config)
    if settings_path.is_file():
        previous = json.loads(settings_path.read_text())
        if previous["base"] != settings["base"]:
            raise ValueError(
                f"{settings_path}: this directory holds a sweep with other training settings; use another --out"
            )
        # A resumed sweep may add budgets, methods or seeds; the union is recorded.
        for key in ("budgets", "methods", "seeds"):
            settings[key] = sorted(set(previous[key]) | set(settings[key]), key=lambda v: (str(type(v)), v))
    settings_path.write_text(json.dumps(settings, indent=2) + "\n")

    cells = [Cell(m, b, s) for s in config.seeds for m in config.methods for b in config.budgets]
    context = multiprocessing.get_context("spawn")
    bar = tqdm(total=len(config.seeds) + len(cells), desc="sweep", unit="run", disable=config.quiet)
    with ProcessPoolExecutor(max_workers=config.jobs, mp_context=context) as pool:
        dense = {pool.submit(_run, _dense_config(config, root, s)): s for s in config.seeds}
        dense_reports = {}
        for future in as_completed(dense):
            dense_reports[dense[future]] = future.result()
            bar.update()
        failed = {s: r["error"] for s, r in dense_reports.items() if "error" in r}
        if failed:
            raise ValueError(f"dense model of seed {min(failed)} failed: {failed[min(failed)]}")
        futures = {pool.submit(_run, _cell_config(config, root, c)): c for c in cells}
        reports = {}
        for future in as_completed(futures):
            reports[futures[future]] = future.result()
            bar.update()
    bar.close()
    rows = [_row(c, reports[c], dense_reports[c.seed]) for c in cells]
    _write_csv(root / "results.csv", rows)
    _write_csv(root / "summary.csv", summarize(rows))
    return rows


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
