"""``ecc merge``: combine finished sweep directories (the shards of one sweep) into one."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "merge",
        help="combine finished sweep (shard) directories into one sweep directory",
        description=(
            "Combine sweep directories of the same training settings and disjoint cells (every shard of an "
            "`ecc sweep --shard I/N` job array, or sweeps of other budgets, methods or seeds) into OUT: "
            "results.csv, summary.csv, sweep.json and relative links to the run folders, so that "
            "`ecc plot OUT` draws it like any sweep. Nothing is trained."
        ),
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="finished sweep directories")
    parser.add_argument("--out", required=True, metavar="OUT", help="the merged directory (not one of DIR)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from compress.sweep import merge_sweeps

    from .sweep import print_summary

    rows = merge_sweeps(args.dirs, args.out)
    print_summary(rows)
    print(f"merged {len(args.dirs)} directories into {args.out}: results.csv, summary.csv")
    return 0
