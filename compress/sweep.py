"""Budget sweeps: every (variant, budget, seed) cell trained like ``ecc train``, in parallel,
resumable, collected into ``results.csv`` and ``summary.csv``.

A cell's :class:`Variant` says how it prunes: a projection method of
:data:`compress.pruner.METHODS`, with or without learned input masks, and a weight
structure of :data:`compress.pruner.STRUCTURES`. ``ecc sweep --methods ecc,ecc-mask``
spells variants by name (``ecc-mask`` is ``ecc`` with input masks); :meth:`Variant.parse`
reads a name into a value once, where it enters (``--methods``, ``sweep.json``,
``results.csv``), and every cell carries the value from there on.

Layout of a sweep directory::

    DIR/sweep.json                      the sweep's settings (a resumed sweep must match them)
    DIR/dense/seed<S>/                  the dense starting model of seed S (shared by every method)
    DIR/cells/<variant>/b<budget>_s<S>/ one `ecc train` run directory per cell (Variant.name);
                                        b<budget>_l<latency>_s<S> with a latency budget
    DIR/results.csv                     one row per finished cell
    DIR/summary.csv                     mean and std over seeds per (variant, budget)
    DIR/.locks/                         lock files: one per run folder, one for the files above

A cell is finished when its ``report.json`` exists; a resumed sweep skips it. A cell whose
training failed on its settings (a ``ValueError``, such as a budget below the floor of its
method) is finished too, with the reason in its ``error.json``: it is recorded with
``feasible = False``, never as a point above the budget, and a sweep that lists the cell
again retries it. Every method of a seed starts from the same dense checkpoint and trains
with the same schedule (epochs, optimizer, distillation, seed), so the methods differ only
in how they prune.

A directory accumulates: ``ecc sweep`` run again on it with more budgets, methods, structures or seeds
(and the same training settings, checked against ``sweep.json``) trains the new cells, and
``results.csv`` and ``summary.csv`` are rebuilt from every finished cell folder on disk,
whichever run trained it. Several ``ecc sweep`` processes may work on one directory at the
same time: a run folder is trained only under an exclusive lock on its file in ``.locks/``
(``fcntl.flock``, released by the kernel when its holder dies), so no two workers ever
train one cell; a worker that finds a cell locked waits, then takes the finished result.

Every cell runs with ``threads`` torch threads and alone in its process: CPU results
depend bitwise on the thread count, so fixing it makes a cell's numbers the same
whichever machine, executor or process runs it.

Across machines:

- ``shard=(i, n)`` (``ecc sweep --shard i/n``, one task of a job array) runs cells
  ``i, i + n, i + 2n, ...`` of the sweep's cell list (seeds x methods x structures x budgets, in the
  order given) in its own directory. Each shard trains there the dense models of the
  seeds its cells need: no two processes ever write one run folder, and since training
  is deterministic for a seed on CPU, two shards that need seed 0 train the same dense
  model bitwise. A directory records its shard in ``sweep.json`` and refuses another.
- :func:`merge_sweeps` (``ecc merge DIR... --out OUT``) combines the shard
  directories (or any sweeps of disjoint cells with the same settings) into one sweep
  directory: ``results.csv``, ``summary.csv``, ``sweep.json`` and relative symbolic links
  ``cells/...`` and ``dense/...`` to the shards' run folders, so ``ecc plot OUT`` draws
  it like any sweep. On CPU the merged results equal an unsharded sweep's.
- ``executor="dask"`` submits the cells to a running Dask cluster instead of local
  processes (:mod:`compress.executors`); the results are the same.

The files of a sweep directory are data: :func:`read_settings`, :func:`read_results`,
:func:`read_summary`, :func:`read_simulated` and :func:`read_json` check every field they return and raise
:class:`SweepFileError` naming the file, the line or field, what was expected and what
was found.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import numbers
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from energysim.files import atomic_write_json, atomic_write_text
from energysim.report import LEVELS
from energysim.workload import UnmodelledLayerWarning

from .executors import EXECUTORS, open_executor
from .pruner import METHODS as _PROJECTIONS
from .pruner import STRUCTURED_METHODS, STRUCTURES
from .rundir import RunFolder
from .schedule import check_relative_budgets, is_relative_budget
from .train import TrainConfig, train

__all__ = [
    "METHODS",
    "Cell",
    "SweepConfig",
    "SweepFileError",
    "Variant",
    "merge_sweeps",
    "read_json",
    "read_results",
    "read_settings",
    "read_simulated",
    "read_summary",
    "run_sweep",
    "summarize",
]

# Input masks are the paper's extension of its own projection: the sweep offers them with ecc.
_INPUT_MASK_METHODS = ("ecc",)
_INPUT_MASK_SUFFIX = "-mask"
_STRUCTURE_SEPARATOR = "+"
#: The names ``--methods`` accepts: each method of :data:`compress.pruner.METHODS`, and
#: ``ecc-mask`` (ecc with learned input masks, ``ecc train --input-mask``).
METHODS = tuple(
    name
    for method in _PROJECTIONS
    for name in (method, *([method + _INPUT_MASK_SUFFIX] if method in _INPUT_MASK_METHODS else []))
)

# The lists of sweep.json whose product is the cell list.
_CELL_AXES = ("budgets", "latency_budgets", "methods", "structures", "seeds")
_LOCKS = ".locks"
_DIRECTORY_LOCK = "sweep.lock"


class SweepFileError(ValueError):
    """A file of a sweep directory is unreadable, or not what ``ecc sweep`` writes."""


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_budget(value: Any) -> bool:
    return is_relative_budget(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _budget_name(budget: float) -> str:
    return f"b{budget:g}"


def _is_latency(value: Any) -> bool:
    """A latency axis entry: a relative latency budget, or None (no latency budget)."""
    return value is None or is_relative_budget(value)


def _without_default_axes(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as sweep.json stores them: no ``latency_budgets`` for a sweep without latency budgets."""
    if settings.get("latency_budgets") == [None]:
        return {k: v for k, v in settings.items() if k != "latency_budgets"}
    return settings


def _check_cell_names(budgets: Sequence[float]) -> None:
    """Refuse budgets that differ but would train into one cell folder (named with 6 digits)."""
    seen: dict[str, float] = {}
    for budget in budgets:
        other = seen.setdefault(_budget_name(budget), budget)
        if other != budget:
            raise ValueError(
                f"budgets {other!r} and {budget!r} would share the cell folders {_budget_name(budget)}_s<S>: "
                "give budgets that differ within 6 significant digits"
            )


@dataclass(frozen=True)
class Variant:
    """How a sweep cell prunes: a projection method, input masks or none, a weight structure.

    Parameters
    ----------
    method : str
        A key of :data:`compress.pruner.METHODS`.
    input_mask : bool, default False
        Learn input masks between the weight phases (with ``ecc`` only).
    structure : str, default "none"
        One of :data:`compress.pruner.STRUCTURES`.

    Raises
    ------
    ValueError
        For an unknown method or structure, or input masks with another method than ecc.

    Examples
    --------
    >>> Variant.parse("ecc-mask")
    Variant(method='ecc', input_mask=True, structure='none')
    >>> Variant("ecc", input_mask=True).name
    'ecc-mask'
    """

    method: str
    input_mask: bool = False
    structure: str = "none"

    def __post_init__(self) -> None:
        if self.method not in _PROJECTIONS:
            raise ValueError(f"method must be one of {', '.join(_PROJECTIONS)}, got {self.method!r}")
        if not isinstance(self.input_mask, bool):
            raise TypeError(f"input_mask must be True or False, got {self.input_mask!r}")
        if self.input_mask and self.method not in _INPUT_MASK_METHODS:
            raise ValueError(f"input masks are swept with method {' or '.join(_INPUT_MASK_METHODS)} only, "
                             f"got method {self.method!r}")
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {', '.join(STRUCTURES)}, got {self.structure!r}")
        if self.structure != "none" and (self.method, self.structure) not in STRUCTURED_METHODS:
            names = sorted({m for m, _ in STRUCTURED_METHODS})
            raise ValueError(f"method {self.method!r} has no {self.structure!r} structure (methods with one: "
                             f"{', '.join(names)})")

    @classmethod
    def parse(cls, name: str, structure: str = "none") -> Variant:
        """The variant that a ``--methods`` name (one of :data:`METHODS`) spells, with ``structure``.

        Raises
        ------
        ValueError
            If ``name`` is not in :data:`METHODS` or ``structure`` not in :data:`compress.pruner.STRUCTURES`.
        """
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
        method = name.removesuffix(_INPUT_MASK_SUFFIX) if name not in _PROJECTIONS else name
        return cls(method, method != name, structure)

    @classmethod
    def from_name(cls, name: str) -> Variant:
        """The variant whose :attr:`name` is ``name`` (a ``cells/`` folder, a ``method`` of ``results.csv``).

        Raises
        ------
        ValueError
            If no variant has that name.
        """
        method, separator, structure = name.partition(_STRUCTURE_SEPARATOR)
        variant = cls.parse(method, structure if separator else "none")
        if variant.name != name:  # one spelling per variant: "ecc+none" is "ecc"
            raise ValueError(f"{name!r} names the variant {variant.name!r}")
        return variant

    @property
    def method_name(self) -> str:
        """The ``--methods`` name: the method, ``-mask`` appended with input masks."""
        return self.method + (_INPUT_MASK_SUFFIX if self.input_mask else "")

    @property
    def name(self) -> str:
        """The cells' folder under ``cells/`` and their ``method`` in ``results.csv``: :attr:`method_name`,
        and ``+structure`` for a structure other than ``none``."""
        suffix = "" if self.structure == "none" else _STRUCTURE_SEPARATOR + self.structure
        return self.method_name + suffix


def _unknown(kind: str, given: Sequence[Any], known: Sequence[str]) -> None:
    """Refuse the values of ``given`` that ``known`` lacks, naming them and the known ones."""
    unknown = [v for v in given if v not in known]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; known: {', '.join(known)}")


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep and where to run it.

    Parameters
    ----------
    base : TrainConfig
        The training settings shared by every cell.
    budgets : tuple of float
        Relative energy budgets in (0, 1]; repeated values count once.
    methods : tuple of str
        Names from :data:`METHODS`; repeated names count once.
    seeds : tuple of int
        Repeated seeds count once.
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
    structures : tuple of str
        Weight structures from :data:`compress.pruner.STRUCTURES`; each method is swept with each.
    latency_budgets : tuple of float or None
        Relative latency budgets in (0, 1] (of the dense model's simulated cycles), each crossed
        with every energy budget; None is a cell without a latency budget (the default, alone).

    Attributes
    ----------
    variants : tuple of Variant
        Every (method, structure) pair, methods outer, as the cells train them.
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
    structures: tuple[str, ...] = ("none",)
    latency_budgets: tuple[float | None, ...] = (None,)
    variants: tuple[Variant, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _unknown("methods", self.methods, METHODS)
        _unknown("structures", self.structures, STRUCTURES)
        # One cell per (method, budget, seed): `--budgets 0.5,0.5` is one budget, not two seeds.
        object.__setattr__(self, "budgets", tuple(dict.fromkeys(check_relative_budgets(self.budgets))))
        _check_cell_names(self.budgets)
        object.__setattr__(self, "methods", tuple(dict.fromkeys(self.methods)))
        latency = tuple(dict.fromkeys(self.latency_budgets))
        if not latency or not all(_is_latency(v) for v in latency):
            raise ValueError(f"latency_budgets must be numbers in (0, 1] or None, got {list(self.latency_budgets)}")
        _check_cell_names([v for v in latency if v is not None])
        object.__setattr__(self, "latency_budgets", latency)
        object.__setattr__(self, "structures", tuple(dict.fromkeys(self.structures)))
        object.__setattr__(self, "variants",
                           tuple(Variant.parse(m, s) for m in self.methods for s in self.structures))
        if not all(_is_int(s) for s in self.seeds):
            raise ValueError(f"seeds must be ints, got {list(self.seeds)}")
        object.__setattr__(self, "seeds", tuple(dict.fromkeys(int(s) for s in self.seeds)))
        if not self.methods or not self.structures or not self.seeds:
            raise ValueError("a sweep needs at least one method, one structure and one seed")
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
    """One run of a sweep: a variant at a budget (and a latency budget, or None) with a seed."""

    variant: Variant
    budget: float
    seed: int
    latency: float | None = None

    def directory(self, root: Path) -> Path:
        """The cell's run folder in the sweep directory ``root`` (``b<budget>[_l<latency>]_s<seed>``)."""
        latency = "" if self.latency is None else f"_l{self.latency:g}"
        return root / "cells" / self.variant.name / f"{_budget_name(self.budget)}{latency}_s{self.seed}"

    def __str__(self) -> str:
        latency = "" if self.latency is None else f" latency {self.latency:g}"
        return f"{self.variant.name} @ {self.budget:g}{latency} seed {self.seed}"


def _dense_dir(root: Path, seed: int) -> Path:
    return root / "dense" / f"seed{seed}"


def _dense_config(config: SweepConfig, root: Path, seed: int) -> TrainConfig:
    """The shared starting point of a seed: dense pretraining, then one epoch at the full budget."""
    return replace(config.base, seed=seed, budget=1.0, budget_abs=None, epochs=1, input_mask=False,
                   method="ecc", checkpoint=None, out=str(_dense_dir(root, seed)), quiet=True,
                   latency_budget=None, latency_budget_abs=None, latency_budget_ms=None)


def _cell_config(config: SweepConfig, root: Path, cell: Cell) -> TrainConfig:
    """The training of one cell: its seed, budget and variant (method, input masks, structure)."""
    return replace(
        config.base,
        seed=cell.seed,
        budget=cell.budget,
        budget_abs=None,
        latency_budget=cell.latency,
        latency_budget_abs=None,
        latency_budget_ms=None,
        method=cell.variant.method,
        structure=cell.variant.structure,
        input_mask=cell.variant.input_mask,
        checkpoint=str(_dense_dir(root, cell.seed)),
        pretrain_epochs=0,
        out=str(cell.directory(root)),
        quiet=True,
    )


def _lock_file(root: Path, run_dir: Path) -> Path:
    """The lock of a run folder: outside it, since `ecc train` wants a new run folder empty."""
    relative = run_dir.relative_to(root)
    return root / _LOCKS / relative.parent / f"{relative.name}.lock"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if absent), waiting for another holder.

    flock locks belong to the open file: a holder that dies, even by SIGKILL, releases its
    lock, so no stale lock outlives a crashed sweep. The file itself stays: removing it
    while another process waits on it would let a third lock a new file at the same time.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# torch's RNG and thread count belong to the process: a worker with several threads (a Dask
# worker started with --nthreads 2) must still train one cell at a time.
_ONE_CELL_AT_A_TIME = threading.Lock()


def _run(config: TrainConfig, threads: int, lock: str) -> str | None:
    """Train one run directory (in a worker) with ``threads`` torch threads; None, or why it failed.

    The process's turn comes first, then the run folder's lock: a thread waiting for a
    folder that another process trains holds no lock that process could need.
    """
    run_dir = Path(config.out)
    files = RunFolder(run_dir)
    with _ONE_CELL_AT_A_TIME, _locked(Path(lock)):
        if files.report.is_file():  # finished, perhaps by another process while this one waited
            return None
        files.error.unlink(missing_ok=True)  # a failed run is retried from where it stopped
        resume = files.config.is_file()
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with warnings.catch_warnings():
                # The unmodelled layers (pooling, activations) are the same in every cell: not news.
                warnings.simplefilter("ignore", UnmodelledLayerWarning)
                train(config, resume=resume)
        except ValueError as exc:  # an infeasible budget or other bad setting of this one run
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(files.error, {"error": reason})
            return reason
        finally:
            torch.set_num_threads(previous)
    return None


# Fields of a cell's config that the sweep sets itself, or that say only where and how fast
# it runs (a resumed cell may change them too).
_NOT_SETTINGS = ("out", "quiet", "seed", "budget", "budget_abs", "method", "input_mask", "checkpoint", "device",
                 "workers", "latency_budget", "latency_budget_abs", "latency_budget_ms")


def _settings(config: SweepConfig) -> dict[str, Any]:
    base = asdict(config.base)
    for key in _NOT_SETTINGS:
        base.pop(key, None)
    settings = {
        "base": base,
        "threads": config.threads,
        "budgets": list(config.budgets),
        "methods": list(config.methods),
        "structures": list(config.structures),
        "seeds": list(config.seeds),
        "latency_budgets": list(config.latency_budgets),
    }
    return json.loads(json.dumps(settings))  # tuples become lists, as in the saved file


def run_sweep(config: SweepConfig, out: str | Path) -> list[dict[str, Any]]:
    """Run every cell not yet finished and rebuild ``results.csv`` and ``summary.csv``.

    Parameters
    ----------
    config : SweepConfig
    out : str or Path
        The sweep directory; an existing one is resumed, or extended by the budgets,
        methods and seeds it lacks, when its training settings match. Other ``run_sweep``
        calls (other processes, other machines) may work on it at the same time.

    Returns
    -------
    list of dict
        The rows of ``results.csv``: every finished cell of the directory (this shard's
        cells, cells of earlier or concurrent runs), ordered by seed, method and budget in
        the order of ``sweep.json`` (settings first given first).

    Raises
    ------
    ValueError
        If ``out`` holds a sweep with other settings (the message names them), another
        shard, or a merge; or if the dense model of a seed fails.
    SweepFileError
        If a file of ``out`` (``sweep.json``, a ``report.json``) is malformed.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / _LOCKS / _DIRECTORY_LOCK):
        _extend_settings(root, config)

    index, count = config.shard
    cells = [Cell(v, b, s, t) for s in config.seeds for v in config.variants for b in config.budgets
             for t in config.latency_budgets][index::count]
    seeds = list(dict.fromkeys(c.seed for c in cells))  # the dense models this shard needs
    # A report.json is never removed: a run that has one needs no worker, nor its lock.
    seeds = [s for s in seeds if not RunFolder(_dense_dir(root, s)).report.is_file()]
    cells = [c for c in cells if not RunFolder(c.directory(root)).report.is_file()]
    if seeds or cells:
        with tqdm(total=len(seeds) + len(cells), desc="sweep", unit="run", disable=config.quiet) as bar, \
                open_executor(config.executor, jobs=config.jobs, scheduler=config.scheduler) as pool:
            dense = {}
            for s in seeds:
                run_dir = _dense_dir(root, s)
                dense[pool.submit(_run, _dense_config(config, root, s), config.threads,
                                  str(_lock_file(root, run_dir)))] = s
            failed = {}
            for future in as_completed(dense):
                error = future.result()
                if error is not None:
                    failed[dense[future]] = error
                bar.update()
            if failed:
                seed = min(failed)
                raise ValueError(f"{_dense_dir(root, seed)}: the dense model of seed {seed} failed: {failed[seed]}")
            futures = [
                pool.submit(_run, _cell_config(config, root, c), config.threads,
                            str(_lock_file(root, c.directory(root))))
                for c in cells
            ]
            for future in as_completed(futures):
                future.result()
                bar.update()
    with _locked(root / _LOCKS / _DIRECTORY_LOCK):
        # sweep.json is read again: a concurrent run may have extended it meanwhile.
        rows = _collect(root, read_settings(root))
        _write_csv(root / "results.csv", rows)
        _write_csv(root / "summary.csv", summarize(rows))
    return rows


def _extend_settings(root: Path, config: SweepConfig) -> None:
    """Check ``config`` against the directory's ``sweep.json`` and record the union of both."""
    path = root / "sweep.json"
    settings = _settings(config)
    if path.is_file():
        previous = read_settings(root)
        if "merged_from" in previous:
            raise ValueError(
                f"{path}: this directory merges {len(previous['merged_from'])} sweeps; extend the sweeps it merges, "
                "then merge them again"
            )
        differences = _differences(previous, settings)
        if differences:
            raise ValueError(
                f"{path}: this directory holds a sweep with other training settings ({'; '.join(differences)}); "
                "use another --out"
            )
        shard = tuple(previous.get("shard", (0, 1)))
        if shard != config.shard:
            raise ValueError(
                f"{path}: this directory holds shard {_shard_text(shard)} of a sweep, not "
                f"{_shard_text(config.shard)}: give every shard its own --out"
            )
        # A resumed sweep may add budgets, methods, structures or seeds; the union is recorded, earlier ones first.
        for key in _CELL_AXES:
            settings[key] = list(dict.fromkeys([*previous[key], *settings[key]]))
        _check_cell_names(settings["budgets"])
    if config.shard != (0, 1):
        settings["shard"] = list(config.shard)
    atomic_write_json(path, _without_default_axes(settings))


def _differences(first: dict[str, Any], second: dict[str, Any],
                 where: tuple[str, str] = ("in the directory", "given")) -> list[str]:
    """'field: A in the directory, B given' for each training setting in which two sweeps differ."""
    a = {**first["base"], "threads": first["threads"]}
    b = {**second["base"], "threads": second["threads"]}
    absent = object()

    def shown(value: Any) -> str:
        return "absent" if value is absent else _shown_value(value)

    return [
        f"{key}: {shown(a.get(key, absent))} {where[0]}, {shown(b.get(key, absent))} {where[1]}"
        for key in sorted(set(a) | set(b))
        if a.get(key, absent) != b.get(key, absent)
    ]


def _cells(settings: dict[str, Any]) -> list[Cell]:
    """Every cell of checked settings (``read_settings``), in the order a sweep runs them."""
    variants = [Variant.parse(m, s) for m in settings["methods"] for s in settings["structures"]]
    return [Cell(v, b, seed, t) for seed in settings["seeds"] for v in variants for b in settings["budgets"]
            for t in settings["latency_budgets"]]


def _collect(root: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per finished cell folder of the directory, in the order of its settings."""
    dense_accuracy: dict[int, float | None] = {}
    rows = []
    for cell in _cells(settings):
        run_dir = cell.directory(root)
        if not (RunFolder(run_dir).report.is_file() or RunFolder(run_dir).error.is_file()):
            continue
        if cell.seed not in dense_accuracy:
            dense_report = RunFolder(_dense_dir(root, cell.seed)).report
            dense_accuracy[cell.seed] = (
                _field(dense_report, read_json(dense_report), "accuracy", _FRACTION)
                if dense_report.is_file() else None
            )
        rows.append(_row(cell, run_dir, dense_accuracy[cell.seed]))
    return rows


def _shard_text(shard: Sequence[int]) -> str:
    return f"{shard[0]}/{shard[1]}"


def merge_sweeps(dirs: Sequence[str | Path], out: str | Path) -> list[dict[str, Any]]:
    """Combine finished sweep directories (the shards of one sweep) into one sweep directory.

    Parameters
    ----------
    dirs : sequence of str or Path
        Sweep directories with the same settings and no cell in common: every shard
        ``0/n .. n-1/n`` of a sharded sweep, or sweeps of disjoint budgets, methods, structures or seeds.
    out : str or Path
        The merged directory (created; not one of ``dirs``). It receives ``results.csv``,
        ``summary.csv``, ``sweep.json`` (with ``merged_from``) and relative symbolic
        links ``cells/<variant>/<cell>`` and ``dense/seed<S>`` to the run folders; links
        from an earlier merge are replaced.

    Returns
    -------
    list of dict
        The rows of the merged ``results.csv``, ordered as an unsharded sweep orders them
        (seeds, then methods, structures and budgets, in the order of the sweeps' settings).

    Raises
    ------
    FileNotFoundError
        If a directory is not a sweep, or has no ``results.csv`` (not finished).
    ValueError
        If the settings differ, a shard is missing or given twice, a cell is in two
        directories, or ``out`` is one of ``dirs``.
    SweepFileError
        If a ``sweep.json`` or ``results.csv`` is malformed, or a row names a cell that
        its directory's ``sweep.json`` does not list.
    FileExistsError
        If ``out`` holds a real folder where a link goes.
    """
    sources = [Path(d) for d in dirs]
    root = Path(out)
    if not sources:
        raise ValueError("merge needs at least one sweep directory")
    if root.resolve() in {d.resolve() for d in sources}:
        raise ValueError(f"the merged directory {root} must not be one of the directories merged")
    settings = [_finished_settings(d) for d in sources]
    for d, other in zip(sources[1:], settings[1:]):
        differences = _differences(other, settings[0], (f"in {d}", f"in {sources[0]}"))
        if differences:
            raise ValueError(f"{d} and {sources[0]} hold sweeps with different training settings "
                             f"({'; '.join(differences)}); cannot merge them")
    _check_shards(sources, [tuple(s.get("shard", (0, 1))) for s in settings])
    merged = {key: settings[0][key] for key in ("base", "threads")}
    for key in _CELL_AXES:
        merged[key] = list(dict.fromkeys(v for s in settings for v in s[key]))
    _check_cell_names(merged["budgets"])
    merged["merged_from"] = [str(d) for d in sources]

    owner: dict[Cell, Path] = {}
    found: dict[Cell, dict[str, Any]] = {}
    for d, own in zip(sources, settings):
        listed = set(_cells(own))
        for row in read_results(d):
            cell = _row_cell(row)
            if cell not in listed:
                raise SweepFileError(f"{d / 'results.csv'}: cell {cell} is not among the methods, structures, "
                                     f"budgets and seeds of {d / 'sweep.json'}")
            if cell in owner:
                raise ValueError(f"cell {cell} is in both {owner[cell]} and {d}; merge each cell once")
            owner[cell] = d
            found[cell] = row
    rows = [found[cell] for cell in _cells(merged) if cell in found]

    root.mkdir(parents=True, exist_ok=True)
    for cell, d in owner.items():
        if cell.directory(d).is_dir():
            _link(cell.directory(d), cell.directory(root))
    for seed in merged["seeds"]:
        dense = next((_dense_dir(d, seed) for d in sources if _dense_dir(d, seed).is_dir()), None)
        if dense is not None:
            _link(dense, _dense_dir(root, seed))
    atomic_write_json(root / "sweep.json", _without_default_axes(merged))
    _write_csv(root / "results.csv", rows)
    _write_csv(root / "summary.csv", summarize(rows))
    return rows


def _finished_settings(root: Path) -> dict[str, Any]:
    """The settings of a sweep directory that has written its results."""
    settings = read_settings(root)
    if not (root / "results.csv").is_file():
        raise FileNotFoundError(f"{root}: the sweep has not finished (no results.csv); run it to the end first")
    return settings


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


def _link(target: Path, link: Path) -> None:
    """A relative symbolic link ``link -> target``, replacing an earlier link."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise FileExistsError(f"{link} exists and is not a link from an earlier merge; merge into another --out")
    link.symlink_to(os.path.relpath(target.resolve(), link.parent.resolve()), target_is_directory=True)


def _row_cell(row: dict[str, Any]) -> Cell:
    """The cell of a row of ``read_results``."""
    return Cell(Variant.from_name(row["method"]), row["budget"], row["seed"], row.get("latency_budget"))


def _row(cell: Cell, run_dir: Path, dense_accuracy: float | None) -> dict[str, Any]:
    """The results.csv row of a finished cell, from its report.json or error.json."""
    row = {"method": cell.variant.name, "budget": cell.budget, "seed": cell.seed,
           "input_mask": cell.variant.input_mask, "structure": cell.variant.structure}
    if cell.latency is not None:
        row["latency_budget"] = cell.latency
    path = RunFolder(run_dir).report
    if not path.is_file():
        path = RunFolder(run_dir).error
        reason = _field(path, read_json(path), "error", _TEXT)
        return row | {"feasible": False, "reason": reason, "collapsed": False, "dense_accuracy": dense_accuracy}
    report = read_json(path)

    def field(key: str, check: _Check, **default: Any) -> Any:
        return _field(path, report, key, check, **default)

    energy_relative = field("energy_simulated_relative", _POSITIVE)
    feasible = energy_relative <= cell.budget * (1 + 1e-9)
    if cell.latency is not None:
        cycles_relative = field("cycles_simulated_relative", _POSITIVE)
        feasible = feasible and cycles_relative <= cell.latency * (1 + 1e-9)
        row |= {"cycles_simulated_relative": cycles_relative, "latency_ms": field("latency_ms", _POSITIVE)}
    row |= {
        "feasible": feasible,
        "reason": "",
        # True when the final accuracy fell to chance while the dense model was far above it.
        "collapsed": field("collapsed", _BOOL, default=False),
        "accuracy": field("accuracy", _FRACTION),
        "dense_accuracy": dense_accuracy,
        "energy_simulated": field("energy_simulated", _NON_NEGATIVE),
        "energy_simulated_relative": energy_relative,
        "energy_proxy": field("energy_proxy", _NON_NEGATIVE),
        "energy_dense": field("energy_dense", _POSITIVE),
        "wall_time_s": field("wall_time_s", _NON_NEGATIVE, default=None),
    }
    for i, layer in enumerate(field("layers", _LIST)):
        name = _field(path, layer, "name", _NAME, prefix=f"layers[{i}].")
        row[f"{_DENSITY_PREFIX}{name}"] = _field(path, layer, "density", _FRACTION, prefix=f"layers[{i}].")
        if "tiles_kept" in layer:  # on an array that skips all-zero tiles: the share of tiles kept
            kept = _field(path, layer, "tiles_kept", _NON_NEGATIVE, prefix=f"layers[{i}].")
            total = _field(path, layer, "tiles_total", _POSITIVE, prefix=f"layers[{i}].")
            row[f"{_TILES_PREFIX}{name}"] = kept / total
    return row


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and (sample) standard deviation over seeds of each (method, budget[, latency budget]).

    ``collapsed_seeds`` counts the seeds whose cell collapsed to chance accuracy. Where a row
    has a ``latency_budget`` the entry has it too, with ``latency_mean`` and ``latency_std``
    (the simulated cycles relative to dense).
    """
    groups: dict[tuple[str, float, float], list[dict[str, Any]]] = {}
    for row in rows:
        latency = row.get("latency_budget")
        groups.setdefault((row["method"], row["budget"], math.inf if latency is None else latency), []).append(row)
    summary = []
    for (method, budget, latency), group in sorted(groups.items()):
        done = [r for r in group if r.get("feasible")]
        entry = {"method": method, "structure": Variant.from_name(method).structure, "budget": budget,
                 "seeds": len(group), "feasible_seeds": len(done),
                 "collapsed_seeds": sum(r.get("collapsed") is True for r in group)}
        stats = [("accuracy", "accuracy"), ("energy_simulated_relative", "energy")]
        if latency != math.inf:
            entry["latency_budget"] = latency
            stats.append(("cycles_simulated_relative", "latency"))
        for key, name in stats:
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
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


# Reading the files back. A check is (predicate, what it accepts); the readers raise
# SweepFileError with the file, the field and both what was expected and what was found.

_Check = tuple[Callable[[Any], bool], str]
# A column of a CSV file: (parse its text to a value or raise ValueError, what it accepts).
_Column = tuple[Callable[[str], Any], str]

_FRACTION: _Check = (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
_POSITIVE: _Check = (lambda v: _is_number(v) and v > 0, "a finite number > 0")
_NON_NEGATIVE: _Check = (lambda v: _is_number(v) and v >= 0, "a finite number >= 0")
_BOOL: _Check = (lambda v: isinstance(v, bool), "true or false")
_TEXT: _Check = (lambda v: isinstance(v, str), "a string")
_NAME: _Check = (lambda v: isinstance(v, str) and v != "", "a non-empty string")
_OBJECT: _Check = (lambda v: isinstance(v, dict), "an object")
_LIST: _Check = (lambda v: isinstance(v, list), "a list")
_NON_EMPTY_LIST: _Check = (lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list")
_POSITIVE_INT: _Check = (lambda v: _is_int(v) and v >= 1, "an int >= 1")


def _distinct_list(item: _Check) -> _Check:
    def ok(value: Any) -> bool:
        return (isinstance(value, list) and len(value) > 0 and all(item[0](v) for v in value)
                and len(set(value)) == len(value))

    return ok, f"a non-empty list of distinct values, each {item[1]}"


_SETTINGS_FIELDS: dict[str, _Check] = {
    "base": _OBJECT,
    "threads": _POSITIVE_INT,
    "budgets": _distinct_list((_is_budget, "a number in (0, 1]")),
    "methods": _distinct_list((lambda v: isinstance(v, str) and v in METHODS, f"one of {', '.join(METHODS)}")),
    "structures": _distinct_list((lambda v: isinstance(v, str) and v in STRUCTURES,
                                  f"one of {', '.join(STRUCTURES)}")),
    "seeds": _distinct_list((_is_int, "an int")),
    "latency_budgets": _distinct_list((_is_latency, "null or a number in (0, 1]")),
    "shard": (lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(i) for i in v) and 0 <= v[0] < v[1],
              "[i, n] with 0 <= i < n"),
    "merged_from": (lambda v: isinstance(v, list) and all(isinstance(d, str) for d in v), "a list of paths"),
}
# Optional fields; "structures" is absent from sweeps written before there was a choice of them.
_OPTIONAL_SETTINGS = ("structures", "shard", "merged_from", "latency_budgets")
# The training settings a figure's title names.
_TITLE_FIELDS = ("model", "dataset", "profile", "estimator")
_MISSING = object()


def _shown_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field(path: Path, data: Any, key: str, check: _Check, *, prefix: str = "", default: Any = _MISSING) -> Any:
    """``data[key]``, checked; a missing field takes ``default`` or is an error naming ``path`` and the field."""
    if not isinstance(data, dict):
        raise SweepFileError(f"{path}: field {prefix.rstrip('.') or '(top level)'} must be an object, "
                             f"got {_shown_value(data)}")
    if key not in data:
        if default is not _MISSING:
            return default
        raise SweepFileError(f"{path}: field {prefix}{key} is missing; expected {check[1]}")
    value = data[key]
    if not check[0](value):
        raise SweepFileError(f"{path}: field {prefix}{key} must be {check[1]}, got {_shown_value(value)}")
    return value


def read_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path`` (a ``sweep.json``, ``report.json``, ``simulated.json``, ...).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict

    Raises
    ------
    SweepFileError
        If the file is not UTF-8 JSON holding an object; the message names the file.
    OSError
        If the file cannot be read.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SweepFileError(f"{path}: not a JSON file ({exc})") from None
    except RecursionError:
        raise SweepFileError(f"{path}: not a JSON file (nested too deeply)") from None
    if not isinstance(data, dict):
        raise SweepFileError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_settings(root: str | Path) -> dict[str, Any]:
    """The checked ``sweep.json`` of a sweep directory.

    Parameters
    ----------
    root : str or Path
        The sweep directory.

    Returns
    -------
    dict
        ``base`` (the training settings, with at least ``model``, ``dataset``, ``profile``
        and ``estimator``), ``threads``, ``budgets``, ``methods``, ``structures``
        (``["none"]`` where the file has none), ``seeds``, and the optional ``shard`` and
        ``merged_from``.

    Raises
    ------
    FileNotFoundError
        If ``root`` has no ``sweep.json``.
    SweepFileError
        If a field is missing, unknown or malformed, or two budgets share a cell folder.
    """
    root = Path(root)
    path = root / "sweep.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root}: not a sweep directory (no sweep.json)")
    data = read_json(path)
    unknown = sorted(set(data) - set(_SETTINGS_FIELDS))
    if unknown:
        raise SweepFileError(f"{path}: unknown field(s) {', '.join(map(repr, unknown))}; known: "
                             f"{', '.join(_SETTINGS_FIELDS)}")
    for key, check in _SETTINGS_FIELDS.items():
        if key in data or key not in _OPTIONAL_SETTINGS:
            _field(path, data, key, check)
    for key in _TITLE_FIELDS:
        _field(path, data["base"], key, _TEXT, prefix="base.")
    try:
        _check_cell_names(data["budgets"])
    except ValueError as exc:
        raise SweepFileError(f"{path}: field budgets: {exc}") from None
    data.setdefault("structures", ["none"])
    data.setdefault("latency_budgets", [None])
    return data


def read_simulated(path: str | Path) -> dict[str, Any]:
    """A run folder's ``simulated.json`` (an ``energysim`` report), checked for what ``ecc plot`` draws.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict
        With ``model``, ``profile``, ``estimator`` and ``units`` (strings) and ``layers``:
        each with a ``name`` and ``energy_by_level`` holding a number >= 0 per level of
        :data:`energysim.report.LEVELS`.

    Raises
    ------
    SweepFileError
        If one of these fields is missing or malformed; the message names the file and field.
    """
    path = Path(path)
    report = read_json(path)
    for key in ("model", "profile", "estimator", "units"):
        _field(path, report, key, _TEXT)
    for i, layer in enumerate(_field(path, report, "layers", _NON_EMPTY_LIST)):
        _field(path, layer, "name", _NAME, prefix=f"layers[{i}].")
        levels = _field(path, layer, "energy_by_level", _OBJECT, prefix=f"layers[{i}].")
        for level in LEVELS:
            _field(path, levels, level, _NON_NEGATIVE, prefix=f"layers[{i}].energy_by_level.")
    return report


def _parsed(parse: Callable[[str], Any], check: _Check) -> _Column:
    """A column whose text is ``parse``d, then the value checked with ``check``."""
    def convert(text: str) -> Any:
        value = parse(text)
        if not check[0](value):
            raise ValueError(text)
        return value

    return convert, check[1]


def _parse_bool(text: str) -> bool:
    if text not in ("True", "False"):
        raise ValueError(text)
    return text == "True"


def _parse_variant(text: str) -> str:
    """The ``method`` column: a :attr:`Variant.name`, kept as text."""
    Variant.from_name(text)
    return text


def _parse_structure(text: str) -> str:
    if text not in STRUCTURES:
        raise ValueError(text)
    return text


def _optional(column: _Column) -> _Column:
    """An empty cell reads as None."""
    convert, what = column
    return (lambda text: None if text == "" else convert(text)), f"empty or {what}"


_ANY_FLOAT: _Column = (float, "a number")
_CSV_FRACTION = _parsed(float, _FRACTION)
_DENSITY_PREFIX = "density:"
_TILES_PREFIX = "tiles:"

# Columns of results.csv: the first four are required, the others optional (older files lack `collapsed`,
# `input_mask` and `structure`).
_RESULT_COLUMNS: dict[str, _Column] = {
    "method": (_parse_variant, f"one of {', '.join(METHODS)}"),
    "budget": _parsed(float, (_is_budget, "a number in (0, 1]")),
    "seed": (int, "an int"),
    "input_mask": (_parse_bool, "True or False"),
    "structure": (_parse_structure, f"one of {', '.join(STRUCTURES)}"),
    "feasible": (_parse_bool, "True or False"),
    "reason": (str, "text"),
    "collapsed": (_parse_bool, "True or False"),
    "accuracy": _optional(_CSV_FRACTION),
    "dense_accuracy": _optional(_CSV_FRACTION),
    "energy_simulated": _optional(_parsed(float, _NON_NEGATIVE)),
    "energy_simulated_relative": _optional(_parsed(float, _POSITIVE)),
    "energy_proxy": _optional(_parsed(float, _NON_NEGATIVE)),
    "energy_dense": _optional(_parsed(float, _POSITIVE)),
    "wall_time_s": _optional(_parsed(float, _NON_NEGATIVE)),
    "latency_budget": _optional(_parsed(float, (_is_budget, "a number in (0, 1]"))),
    "cycles_simulated_relative": _optional(_parsed(float, _POSITIVE)),
    "latency_ms": _optional(_parsed(float, _POSITIVE)),
}
_RESULT_REQUIRED = ("method", "budget", "seed", "feasible")
# Columns a feasible cell must fill.
_FEASIBLE_REQUIRED = ("accuracy", "energy_simulated_relative")

_SUMMARY_COLUMNS: dict[str, _Column] = {
    "method": (_parse_variant, f"one of {', '.join(METHODS)}"),
    "structure": (_parse_structure, f"one of {', '.join(STRUCTURES)}"),
    "budget": _parsed(float, (_is_budget, "a number in (0, 1]")),
    "seeds": _parsed(int, _POSITIVE_INT),
    "feasible_seeds": _parsed(int, (lambda v: v >= 0, "an int >= 0")),
    "collapsed_seeds": _parsed(int, (lambda v: v >= 0, "an int >= 0")),
    "accuracy_mean": _ANY_FLOAT,
    "accuracy_std": _ANY_FLOAT,
    "energy_mean": _ANY_FLOAT,
    "energy_std": _ANY_FLOAT,
    "latency_budget": _optional(_parsed(float, (_is_budget, "a number in (0, 1]"))),
    "latency_mean": _optional(_ANY_FLOAT),
    "latency_std": _optional(_ANY_FLOAT),
}
_SUMMARY_OPTIONAL = ("collapsed_seeds", "structure", "latency_budget", "latency_mean", "latency_std")
# Where feasible_seeds > 0 the means and deviations are numbers (nan only where no seed is feasible).
_SUMMARY_STATISTICS: dict[str, _Check] = {
    "accuracy_mean": _FRACTION, "accuracy_std": _NON_NEGATIVE, "energy_mean": _POSITIVE, "energy_std": _NON_NEGATIVE,
}


def _read_table(path: Path, columns: dict[str, _Column], required: Sequence[str],
                prefixes: Sequence[tuple[str, _Column]] = ()) -> list[tuple[int, dict[str, Any]]]:
    """(line, typed row) of every row of a CSV file whose header names only ``columns``
    (and columns starting with one of the ``prefixes``' names), ``required`` among them."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; is {path.parent} a sweep directory written by `ecc sweep`?")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SweepFileError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = next(reader, None)
        if not header:
            raise SweepFileError(f"{path}: no header line; expected columns {', '.join(required)}, ...")
        checks = []
        for name in header:
            prefixed = [check for start, check in prefixes if name.startswith(start) and len(name) > len(start)]
            if name in columns:
                checks.append(columns[name])
            elif prefixed:
                checks.append(prefixed[0])
            else:
                known = ", ".join([*columns, *(start + "<layer>" for start, _ in prefixes)])
                raise SweepFileError(f"{path}: unknown column {_shown_value(name)}; known: {known}")
        repeated = sorted({n for n in header if header.count(n) > 1})
        missing = [n for n in required if n not in header]
        if repeated or missing:
            problem = (f"names column(s) {', '.join(repeated)} twice" if repeated
                       else f"lacks column(s) {', '.join(missing)}")
            raise SweepFileError(f"{path}: the header {problem}")
        for record in reader:
            if not record:  # a blank line
                continue
            line = reader.line_num
            if len(record) != len(header):
                raise SweepFileError(f"{path}: line {line} has {len(record)} field(s), the header {len(header)}")
            row = {}
            for name, (convert, what), text_value in zip(header, checks, record):
                try:
                    row[name] = convert(text_value)
                except ValueError:
                    raise SweepFileError(
                        f"{path}: line {line}, column {name!r} must be {what}, got {_shown_value(text_value)}"
                    ) from None
            rows.append((line, row))
    except csv.Error as exc:
        raise SweepFileError(f"{path}: not a CSV file (line {reader.line_num}: {exc})") from None
    return rows


def read_results(root: str | Path) -> list[dict[str, Any]]:
    """The checked rows of a sweep directory's ``results.csv``, typed.

    Parameters
    ----------
    root : str or Path
        The sweep directory.

    Returns
    -------
    list of dict
        One per cell: ``method`` (a :attr:`Variant.name`), ``budget``, ``seed``,
        ``input_mask``, ``structure`` (from ``method`` where the file lacks these columns)
        and ``feasible`` always; the other columns where the file has them (None where a
        cell leaves them empty; a feasible cell always has ``accuracy`` and
        ``energy_simulated_relative``).

    Raises
    ------
    FileNotFoundError
        If there is no ``results.csv``.
    SweepFileError
        If a column is unknown or missing, a value is malformed, ``input_mask`` or
        ``structure`` contradicts ``method``, or a cell is repeated.
    """
    path = Path(root) / "results.csv"
    rows = _read_table(path, _RESULT_COLUMNS, _RESULT_REQUIRED,
                       [(_DENSITY_PREFIX, _optional(_CSV_FRACTION)), (_TILES_PREFIX, _optional(_CSV_FRACTION))])
    first: dict[tuple[str, float, int, float | None], int] = {}
    for line, row in rows:
        key = (row["method"], row["budget"], row["seed"], row.get("latency_budget"))
        if key in first:
            latency = "" if key[3] is None else f" latency {key[3]:g}"
            raise SweepFileError(f"{path}: line {line} repeats the cell {key[0]} @ {key[1]:g}{latency} seed {key[2]} "
                                 f"of line {first[key]}")
        first[key] = line
        variant = Variant.from_name(row["method"])
        for name, value in (("input_mask", variant.input_mask), ("structure", variant.structure)):
            if row.setdefault(name, value) != value:
                raise SweepFileError(f"{path}: line {line}, column {name!r} must be {value} for method "
                                     f"{row['method']!r}, got {row[name]}")
        if row["feasible"]:
            for name in _FEASIBLE_REQUIRED:
                if row.get(name) is None:
                    what = _RESULT_COLUMNS[name][1].removeprefix("empty or ")
                    raise SweepFileError(f"{path}: line {line}, column {name!r} must be {what} for a feasible cell, "
                                         "got ''")
    return [row for _, row in rows]


def read_summary(root: str | Path) -> list[dict[str, Any]]:
    """The checked rows of a sweep directory's ``summary.csv``, typed.

    Parameters
    ----------
    root : str or Path
        The sweep directory.

    Returns
    -------
    list of dict
        One per (method, budget): ``seeds``, ``feasible_seeds`` (and ``collapsed_seeds``
        where the file has it), and the mean and std of ``accuracy`` and ``energy``
        (numbers where ``feasible_seeds > 0``, else possibly nan).

    Raises
    ------
    FileNotFoundError
        If there is no ``summary.csv``.
    SweepFileError
        If a column is unknown or missing, a value is malformed, or a (method, budget) is repeated.
    """
    path = Path(root) / "summary.csv"
    required = [n for n in _SUMMARY_COLUMNS if n not in _SUMMARY_OPTIONAL]
    rows = _read_table(path, _SUMMARY_COLUMNS, required)
    first: dict[tuple[str, float, float | None], int] = {}
    for line, row in rows:
        key = (row["method"], row["budget"], row.get("latency_budget"))
        if key in first:
            latency = "" if key[2] is None else f" latency {key[2]:g}"
            raise SweepFileError(f"{path}: line {line} repeats {key[0]} @ {key[1]:g}{latency} of line {first[key]}")
        first[key] = line
        for name in ("feasible_seeds", "collapsed_seeds"):
            if row.get(name, 0) > row["seeds"]:
                raise SweepFileError(f"{path}: line {line}, column {name!r} must be at most seeds ({row['seeds']}), "
                                     f"got {row[name]}")
        if row["feasible_seeds"] > 0:
            for name, (ok, what) in _SUMMARY_STATISTICS.items():
                if not ok(row[name]):
                    raise SweepFileError(f"{path}: line {line}, column {name!r} must be {what} where "
                                         f"feasible_seeds > 0, got {row[name]!r}")
    return [row for _, row in rows]
