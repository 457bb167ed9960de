"""``ecc calibrate``: fit a profile's per-access energies to measured layer energies."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._common import add_json_arg, add_profile_args, format_table, profile_from_args, write_json
from .simulate import si

__all__ = ["register", "render"]


def register(sub: argparse._SubParsersAction) -> None:
    from energysim.calibrate import CSV_COLUMNS, GROUPS

    parser = sub.add_parser(
        "calibrate",
        help="fit a profile's per-access energies to measured layer energies",
        description=(
            "Fit the per-access energies of a base profile (MAC, gated MAC, RF, buffer and DRAM reads and writes, "
            "leakage) to measured energies by non-negative least squares on relative errors, and write the calibrated "
            "profile. The measurements are a CSV (columns: " + ", ".join(CSV_COLUMNS) + "; the first four required) "
            "or a report written by `ecc simulate --json`. Parameters the measurements cannot determine are named "
            "and kept at the base values."
        ),
    )
    add_profile_args(parser)
    parser.add_argument(
        "--measurements", required=True, metavar="FILE",
        help="CSV of measured energies or an `ecc simulate --json` report",
    )
    parser.add_argument("--out", required=True, metavar="NEW.yaml", help="where to write the calibrated profile")
    parser.add_argument(
        "--estimator", choices=("systolic", "paper"), default="systolic",
        help="estimator whose access counts are fitted (default: systolic)",
    )
    parser.add_argument(
        "--fix", action="append", default=[], metavar="GROUP[,GROUP]",
        help=f"hold these at the base values: groups ({', '.join(GROUPS)}) or dotted keys; repeatable",
    )
    parser.add_argument("--name", default=None, help="name of the calibrated profile (default: BASE-calibrated)")
    parser.add_argument(
        "--worst", type=int, default=None, metavar="N",
        help="list only the N rows the calibrated profile misses most (default: every row)",
    )
    add_json_arg(parser, "the fit (parameters, fit figures, residuals, warnings)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from energysim import dump_profile, load_profile
    from energysim.calibrate import calibrate, parse_fix, read_measurements

    base = profile_from_args(args)
    fixed = parse_fix(args.fix)
    if args.worst is not None and args.worst < 0:
        raise ValueError(f"--worst must be a count >= 0, got {args.worst}")
    out = Path(args.out)
    if out.exists() and Path(args.profile).exists() and out.resolve() == Path(args.profile).resolve():
        raise ValueError(f"--out {out} is the base profile's file; write the calibrated profile elsewhere")
    measurements = read_measurements(args.measurements, base.units)
    result = calibrate(measurements, base, args.estimator, fixed, name=args.name, source=str(args.measurements))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(dump_profile(result.profile), encoding="utf-8")
    os.replace(partial, out)
    load_profile(out.resolve())  # the file must load back as a valid profile (a path, never a shipped name)
    for line in result.warnings():
        print(f"warning: {line}", file=sys.stderr)
    for line in result.notes:
        print(f"note: {line}", file=sys.stderr)
    if args.json:
        write_json(result.to_dict(), args.json)
    if args.json != "-":
        print(render(result, args.worst))
        print(f"wrote {out}")
    return 0


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def render(result, worst: int | None = None) -> str:
    """The parameter table, the fit figures and the per-row residuals (only the ``worst`` N if given)."""
    rows = [
        [
            p.key,
            _value(p.base),
            _value(p.value),
            "-" if p.change_pct is None else f"{round(p.change_pct, 1) + 0.0:+.1f}",
            "-" if p.stderr is None or not p.value else f"{100 * p.stderr / p.value:.1f}",
            p.status,
        ]
        for p in result.parameters
    ]
    unit = result.profile.units
    lines = [
        f"{result.base.name} -> {result.profile.name} against {result.measurements} "
        f"({result.estimator} estimator, energy in {unit})",
        format_table(["parameter", "base", "fitted", "change%", "+-%", "status"], rows, "lrrrrl"),
        f"fit over {len(result.residuals)} rows: R^2 {result.r2:.4f}, "
        f"RMS relative error {100 * result.rms_error:.2f} % "
        f"(base {100 * result.base_rms_error:.2f} %), max {100 * result.max_error:.2f} %",
        "",
    ]
    residuals = list(result.residuals)
    if worst is not None:
        residuals = sorted(residuals, key=lambda r: -abs(r.error))[:worst]
        lines.append(f"the {len(residuals)} rows with the largest errors:")
    residual_rows = [
        [r.run, r.layer + (f" [{r.level}]" if r.level else ""), si(r.measured), si(r.predicted),
         f"{100 * r.error:+.1f}", f"{100 * r.base_error:+.1f}"]
        for r in residuals
    ]
    lines.append(format_table(["run", "layer", "measured", "fitted", "error%", "base error%"], residual_rows, "llrrrr"))
    return "\n".join(lines)
