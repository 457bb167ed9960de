"""``ecc sweep``: every (method, structure, budget, seed) cell of a budget sweep, resumable and in parallel."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ._common import model_from_args, parse_floats
from .train import add_training_options, config_from_args

__all__ = ["print_summary", "register", "run"]


def _latencies(text: str) -> tuple[float | None, ...]:
    """``0.5,none`` as (0.5, None)."""
    try:
        return tuple(None if v.strip().lower() == "none" else float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers or 'none' like 0.5,0.3,none, got {text!r}")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2, got {text!r}")


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 0/4 (shard I of N, from 0), got {text!r}")
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N, got {text!r}")
    return index, count


def _names(text: str) -> tuple[str, ...]:
    """``a,b,c`` as ("a", "b", "c"); SweepConfig checks the names."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


class _MovedToMerge(argparse.Action):
    """``ecc sweep --merge``, the spelling before ``ecc merge``: a usage error that names the new one."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is now a command of its own: ecc merge DIR... --out DIR")


def register(sub: argparse._SubParsersAction) -> None:
    from compress.executors import EXECUTORS
    from compress.pruner import STRUCTURES
    from compress.sweep import METHODS

    parser = sub.add_parser(
        "sweep",
        help="train every (method, structure, budget, latency budget, seed) cell of a budget sweep",
        description=(
            "Run an `ecc train`-style run for every (method, structure, budget, seed) in DIR/cells/, all methods "
            "of a seed starting from the same dense model (DIR/dense/seed<S>) with the same schedule. Finished "
            "cells are skipped, so an interrupted sweep resumes where it stopped, and a sweep run again on DIR with "
            "more budgets, methods, structures or seeds (same training settings) adds them; several sweeps may run "
            "on one DIR at once, each cell trained by one of them. Writes DIR/results.csv (one row per finished "
            "cell of DIR) "
            "and DIR/summary.csv (mean and std over seeds); `ecc plot DIR` draws them. Across machines: "
            "--shard I/N runs every N-th cell (one task of a job array, each with its own --out), "
            "`ecc merge DIR... --out DIR` combines the shards, and --executor dask --scheduler ADDRESS runs "
            "the cells on a Dask cluster."
        ),
    )
    add_training_options(parser)
    parser.add_argument("--budgets", type=parse_floats, required=True, metavar="B,B,...",
                        help="relative energy budgets in (0, 1], e.g. 0.5,0.3,0.2")
    parser.add_argument("--latency-budgets", type=_latencies, default=(None,), metavar="L,L,...",
                        help="relative latency budgets in (0, 1] (of the dense model's simulated cycles), each "
                             "crossed with every energy budget; 'none' is a cell without one (default: none)")
    parser.add_argument("--methods", type=_names, default=("ecc", "magnitude"), metavar="M,M,...",
                        help=f"methods among {', '.join(METHODS)} (default: ecc,magnitude); ecc-mask is ecc "
                             "with learned input masks")
    parser.add_argument("--structures", type=_names, default=("none",), metavar="S,S,...",
                        help=f"weight structures among {', '.join(STRUCTURES)}, each swept with every method "
                             "(default: none, unstructured)")
    parser.add_argument("--seeds", type=_ints, default=(0,), metavar="S,S,...", help="seeds (default: 0)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="cells trained in parallel processes (default 1)")
    parser.add_argument(
        "--threads", type=int, default=1, metavar="N",
        help="torch threads per cell (default 1); results depend on it, so it is part of the sweep's settings",
    )
    parser.add_argument(
        "--shard", type=_shard, default=(0, 1), metavar="I/N",
        help="run only cells I, I+N, I+2N, ... (from 0; e.g. --shard $SLURM_ARRAY_TASK_ID/8), each shard with its "
             "own --out",
    )
    parser.add_argument("--merge", nargs="*", action=_MovedToMerge, help=argparse.SUPPRESS)
    parser.add_argument(
        "--executor", choices=EXECUTORS, default="local",
        help="local worker processes (default) or dask: the cells are tasks on a running Dask cluster",
    )
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler address for --executor dask, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--out", required=True, metavar="DIR", help="sweep directory (resumed if it exists)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from compress.schedule import check_relative_budgets
    from compress.sweep import SweepConfig, run_sweep

    check_relative_budgets(args.budgets)  # a wrong budget is reported before the model is built
    latency = [v for v in args.latency_budgets if v is not None]
    if latency:
        check_relative_budgets(latency, name="--latency-budgets")
    # The cells ignore the unmodelled-layer note (the same in each): it is printed here, once,
    # and --strict, a bad model or input shape fail before any file is written.
    model_from_args(args)
    args.budget = 1.0  # placeholders; every cell sets its own budget and run folder
    base = dataclasses.replace(config_from_args(args), quiet=True)
    config = SweepConfig(
        base=base,
        budgets=args.budgets,
        methods=args.methods,
        seeds=args.seeds,
        jobs=args.jobs,
        quiet=args.quiet,
        threads=args.threads,
        shard=args.shard,
        executor=args.executor,
        scheduler=args.scheduler,
        structures=args.structures,
        latency_budgets=args.latency_budgets,
    )
    rows = run_sweep(config, args.out)
    print_summary(rows)
    print(f"results: {args.out}/results.csv, summary: {args.out}/summary.csv")
    return 0


def print_summary(rows: list[dict]) -> None:
    """Print the mean accuracy and energy of each (method, budget); unreached budgets and collapsed cells on stderr.

    Parameters
    ----------
    rows : list of dict
        Rows of ``results.csv``, as :func:`compress.sweep.run_sweep` and
        :func:`compress.sweep.merge_sweeps` return them.
    """
    from compress.sweep import summarize

    for entry in summarize(rows):
        latency = entry.get("latency_budget")
        where = f"{entry['budget']:<5g}" + ("" if latency is None else f" latency {latency:<5g}")
        if entry["feasible_seeds"]:
            cycles = "" if latency is None else f"  cycles {entry['latency_mean']:.4f} ± {entry['latency_std']:.4f}"
            print(
                f"{entry['method']:>13} @ {where} accuracy {100 * entry['accuracy_mean']:.2f} "
                f"± {100 * entry['accuracy_std']:.2f} %  energy {entry['energy_mean']:.4f} ± {entry['energy_std']:.4f}"
                f"{cycles}"
            )
        else:
            reason = next(r["reason"] for r in rows if r["method"] == entry["method"] and r["budget"] == entry["budget"]
                          and r.get("latency_budget") == latency)
            print(f"{entry['method']:>13} @ {where} not reached: {reason}", file=sys.stderr)
    collapsed = [f"{r['method']} @ {r['budget']:g} seed {r['seed']}" for r in rows if r.get("collapsed")]
    if collapsed:
        print(
            f"warning: {len(collapsed)} cell(s) collapsed to chance accuracy while the dense model was far above "
            f"it: {', '.join(collapsed)}",
            file=sys.stderr,
        )
