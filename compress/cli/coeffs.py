"""``ecc coeffs``: the per-layer energy coefficient table the compressor uses."""

from __future__ import annotations

import argparse

from ._common import (
    add_json_arg, add_model_args, add_profile_args, format_table, model_from_args, parse_densities, profile_from_args,
    write_json,
)
from .simulate import si

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from energysim.coeffs import VERIFY_DENSITIES, VERIFY_KINDS
    from energysim.estimators import ESTIMATORS

    parser = sub.add_parser(
        "coeffs",
        help="per-layer energy coefficients (per nonzero weight / input) for the compressor",
        description=(
            "Derive each layer's energy coefficients from an estimator: a constant, the energy per nonzero "
            "weight (piecewise past the weight buffer), per nonzero input, per effective MAC; with the dense "
            "energy and the floor (all weights zero); where the array skips all-zero weight tiles, the cost of "
            "each tile (skip group) and of the inputs and output tiles several tiles share. --verify compares "
            "the table with the full estimator on random patterns of every pair of weight and input density (--densities) (and, with tile costs, "
            "on patterns of whole tiles and of tiles with random zeros inside; on an N:M array, with sparsity.nm, "
            "on random N:M patterns and on whole compressed tiles of N:M patterns), and the table's cycles (the "
            "latency coefficients: constant cycles plus each kept tile's) with the simulated cycles."
        ),
    )
    add_model_args(parser)
    add_profile_args(parser)
    parser.add_argument("--estimator", choices=list(ESTIMATORS), default="systolic", help="estimator (default: systolic)")
    parser.add_argument("--out", metavar="PATH", default=None, help="write the table as JSON here")
    parser.add_argument("--verify", action="store_true", help="check the table against the full estimator")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --verify patterns")
    parser.add_argument("--densities", type=parse_densities, default=VERIFY_DENSITIES, metavar="D,D,...",
                        help="weight and input densities of the --verify patterns, every pair drawn for every "
                             "layer and pattern kind (default: " + ",".join(f"{d:g}" for d in VERIFY_DENSITIES) + ")")
    parser.add_argument("--kinds", type=_kinds(VERIFY_KINDS), default=None, metavar="K,K,...",
                        help="pattern kinds of --verify among " + ", ".join(VERIFY_KINDS) + " (default: every kind "
                             "the layer's table has)")
    add_json_arg(parser, "the table (and the verification)")
    parser.set_defaults(run=run)


def _kinds(known: tuple[str, ...]):
    """A parser of comma-separated pattern kinds among ``known``."""

    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        if not values or any(v not in known for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated kinds among {', '.join(known)}, got {text!r}")
        return values

    return parse


def run(args: argparse.Namespace) -> int:
    from energysim.coeffs import VERIFY_KINDS, coefficient_table, verify_table

    profile = profile_from_args(args)
    _, _, workload = model_from_args(args)
    table = coefficient_table(workload, profile, args.estimator)
    if args.out:
        table.save(args.out)
    checks = None
    if args.verify:
        checks = verify_table(table, workload, profile, densities=args.densities, seed=args.seed, kinds=args.kinds)
    if args.json:
        write_json(table.to_dict() | ({"verify": checks} if checks is not None else {}), args.json)
    if args.json == "-":
        return 0
    total = table.dense_energy
    rows = []
    for c in table.layers:
        overflow = "" if c.weight_breakpoint is None or c.weight_breakpoint >= c.weight_count else (
            f"{si(c.per_weight_overflow)}>{si(c.weight_breakpoint)}"
        )
        rows.append([
            c.name, si(c.constant), si(c.per_weight), overflow or "-", si(c.per_input),
            si(c.per_input_use) if c.per_input_use else "-", si(c.per_effective_mac) if c.per_effective_mac else "-",
            si(c.dense_energy), f"{100 * c.floor_energy / c.dense_energy:.1f}", f"{100 * c.dense_energy / total:.1f}",
        ])
    print(f"{table.model} on {table.profile} ({table.estimator} estimator, energy in {table.units})")
    print(format_table(
        ["layer", "const", "/weight", "/w past buf", "/input", "/in.use", "/eff.MAC", "dense", "floor%", "share%"], rows
    ))
    print(f"dense energy {total:.6g}; floor (all weights zero) {table.floor_energy:.6g} "
          f"= {100 * table.floor_energy / total:.2f}% of dense")
    if any(c.upper_bound for c in table.layers):
        print("note: skip_zero_tiles is on but the array skips on inputs: the costs are upper bounds")
    grouped = [c for c in table.layers if c.group_cost is not None]
    if grouped:
        groups = sum(len(c.group_cost) for c in grouped)
        print(f"tile skipping: {groups} skip groups in {len(grouped)} layers; the floor keeps no group")
    if args.out:
        print(f"table written to {args.out}")
    if checks == []:
        print(f"\nno layer's table has the pattern kinds {','.join(args.kinds)}: nothing verified")
    elif checks is not None:
        print()
        print("verification against the full estimator (signed relative error, >0 = table over-estimates):")
        kinds = [k for k in VERIFY_KINDS if any(k in r["worst"] for r in checks)]
        print(format_table(
            ["layer", "worst error", "lowest", *[f"worst {k}" for k in kinds], "patterns"],
            [[r["name"], f"{r['max_rel_error']:+.2e}", f"{r['min_rel_error']:+.2e}",
              *[f"{r['worst'][k]:+.2e}" if k in r["worst"] else "-" for k in kinds], r["patterns"]] for r in checks],
        ))
        worst = max(checks, key=lambda r: abs(r["max_rel_error"]))
        print(f"worst layer: {worst['name']} {worst['max_rel_error']:+.2e}")
        timed = [r for r in checks if "cycles_worst" in r]
        if timed:
            print()
            print("cycles (latency coefficients) against the full estimator (signed relative error; exact for whole "
                  "tiles up to the layer's first fetch, an upper bound with weights pruned inside kept tiles):")
            print(format_table(
                ["layer", *[f"worst {k}" for k in kinds]],
                [[r["name"], *[f"{r['cycles_worst'][k]:+.2e}" if k in r["cycles_worst"] else "-" for k in kinds]]
                 for r in timed],
            ))
            key = next(k for k in ("tiles", "random", "nm-tiles", "nm", "mixed") if k in kinds)
            worst = max(timed, key=lambda r: abs(r["cycles_worst"].get(key, 0.0)))
            print(f"worst layer ({key}): {worst['name']} {worst['cycles_worst'].get(key, 0.0):+.2e}")
    return 0
