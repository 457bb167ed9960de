"""``ecc sweep``: every (method, budget, seed) cell of a budget sweep, resumable and in parallel."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .train import add_training_options, config_from_args

__all__ = ["register", "run"]


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.5,0.3,0.2, got {text!r}")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2, got {text!r}")


def register(sub: argparse._SubParsersAction) -> None:
    from compress.sweep import METHODS

    parser = sub.add_parser(
        "sweep",
        help="train every (method, budget, seed) cell of a budget sweep",
        description=(
            "Run an `ecc train`-style run for every (method, budget, seed) in DIR/cells/, all methods of a seed "
            "starting from the same dense model (DIR/dense/seed<S>) with the same schedule. Finished cells are "
            "skipped, so an interrupted sweep resumes where it stopped. Writes DIR/results.csv (one row per cell) "
            "and DIR/summary.csv (mean and std over seeds); `ecc plot DIR` draws them."
        ),
    )
    add_training_options(parser)
    parser.add_argument("--budgets", type=_floats, required=True, metavar="B,B,...",
                        help="relative energy budgets, e.g. 0.5,0.3,0.2")
    parser.add_argument("--methods", default="ecc,magnitude", metavar="M,M,...",
                        help=f"methods among {', '.join(METHODS)} (default: ecc,magnitude)")
    parser.add_argument("--seeds", type=_ints, default=(0,), metavar="S,S,...", help="seeds (default: 0)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="cells trained in parallel processes (default 1)")
    parser.add_argument("--out", required=True, metavar="DIR", help="sweep directory (resumed if it exists)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from compress.sweep import SweepConfig, run_sweep, summarize

    args.budget = 1.0  # placeholders; every cell sets its own budget and run folder
    base = dataclasses.replace(config_from_args(args), quiet=True)
    config = SweepConfig(
        base=base,
        budgets=args.budgets,
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        seeds=args.seeds,
        jobs=args.jobs,
        quiet=args.quiet,
    )
    rows = run_sweep(config, args.out)
    for entry in summarize(rows):
        if entry["feasible_seeds"]:
            print(
                f"{entry['method']:>13} @ {entry['budget']:<5g} accuracy {100 * entry['accuracy_mean']:.2f} "
                f"± {100 * entry['accuracy_std']:.2f} %  energy {entry['energy_mean']:.4f} ± {entry['energy_std']:.4f}"
            )
        else:
            reason = next(r["reason"] for r in rows if r["method"] == entry["method"] and r["budget"] == entry["budget"])
            print(f"{entry['method']:>13} @ {entry['budget']:<5g} not reached: {reason}", file=sys.stderr)
    print(f"results: {args.out}/results.csv, summary: {args.out}/summary.csv")
    return 0
