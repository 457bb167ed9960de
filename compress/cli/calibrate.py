"""``ecc calibrate``: fit a profile's per-access energies to measured layer energies."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import add_json_arg, add_profile_args, format_table, profile_from_args, write_json
from .simulate import si

__all__ = ["register", "render"]


def register(sub: argparse._SubParsersAction) -> None:
    from energysim.calibrate import CSV_COLUMNS, GROUPS
    from energysim.estimators import ESTIMATORS

    parser = sub.add_parser(
        "calibrate",
        help="fit a profile's per-access energies to measured layer energies",
        description=(
            "Fit the per-access energies of a base profile (MAC, gated MAC, RF, buffer and DRAM reads and writes, "
            "leakage) to measured energies by non-negative least squares on relative errors, and write the calibrated "
            "profile. The measurements are a CSV (columns: " + ", ".join(CSV_COLUMNS) + "; the first four required) "
            "or a report written by `ecc simulate --json`; it may name zoo models, and factories only when given "
            "with --model. Parameters the measurements cannot determine are named and kept at the base values."
        ),
    )
    add_profile_args(parser)
    parser.add_argument(
        "--measurements", required=True, metavar="FILE",
        help="CSV of measured energies or an `ecc simulate --json` report",
    )
    parser.add_argument(
        "--model", action="append", default=[], metavar="package.module:factory",
        help="a model factory the measurements may name (repeatable); otherwise they may name only zoo models",
    )
    parser.add_argument("--out", required=True, metavar="NEW.yaml", help="where to write the calibrated profile")
    parser.add_argument(
        "--estimator", choices=list(ESTIMATORS), default="systolic",
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
    import yaml

    from compress.checkpoint import atomic_write_text
    from energysim import dump_profile
    from energysim.calibrate import calibrate, parse_fix, read_measurements
    from energysim.spec.schema import validate_tree

    base = profile_from_args(args)
    fixed = parse_fix(args.fix)
    if args.worst is not None and args.worst < 0:
        raise ValueError(f"--worst must be a count >= 0, got {args.worst}")
    out = Path(args.out)
    _check_destination(out, "--out", "calibrated.yaml")
    if args.json not in (None, "-"):
        _check_destination(Path(args.json), "--json", "fit.json")
    for path, what in ((args.profile, "the base profile's file"), (args.measurements, "the measurements file")):
        if out.exists() and Path(path).exists() and out.resolve() == Path(path).resolve():
            raise ValueError(f"--out {out} is {what}; write the calibrated profile elsewhere")
    measurements = read_measurements(args.measurements, base.units, models=args.model)
    result = calibrate(measurements, base, args.estimator, fixed, name=args.name, source=str(args.measurements))
    text = dump_profile(result.profile)
    validate_tree(yaml.safe_load(text), str(out))  # the text must load back as a valid profile
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, text)
    except OSError as exc:
        raise type(exc)(f"--out {out}: cannot write the calibrated profile: {exc.strerror or exc}") from None
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


def _check_destination(path: Path, flag: str, example: str) -> None:
    """Raise, before any work, when ``path`` cannot be a file: a folder, or under a file."""
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; expected a file path such as {path / example}")
    existing = next(parent for parent in path.parents if parent.exists())
    if not existing.is_dir():
        raise NotADirectoryError(f"{flag} {path}: cannot write there: {existing} is not a folder")


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
