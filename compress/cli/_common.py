"""Argument groups and output helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "add_json_arg",
    "add_model_args",
    "add_profile_args",
    "format_table",
    "model_from_args",
    "parse_shape",
    "profile_from_args",
    "write_json",
]


def add_profile_args(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """``--profile NAME|PATH`` and repeatable ``--set KEY=VALUE``."""
    parser.add_argument(
        "--profile",
        default=default,
        required=default is None,
        metavar="NAME|PATH",
        help="hardware profile: a shipped name (see `ecc profiles`) or a YAML file"
        + (f" (default: {default})" if default else ""),
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile key (dotted, e.g. array.rows=32); repeatable",
    )


def profile_from_args(args: argparse.Namespace):
    """Load the profile named by ``--profile`` with the ``--set`` overrides."""
    from energysim import load_profile

    return load_profile(args.profile, args.overrides)


def add_json_arg(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--json",
        metavar="PATH|-",
        default=None,
        help=f"also write {what} as JSON to PATH ('-' for stdout, replacing the table)",
    )


def write_json(obj: Any, dest: str) -> None:
    """Write ``obj`` as indented JSON to ``dest`` ('-' is stdout), atomically.

    JSON has no NaN or Infinity (Python writes them, other parsers reject them), so
    a non-finite float is written as ``null``: an undefined R^2 of a calibration, an
    unlimited DRAM bandwidth. Profiles admit no other non-finite number.
    """
    from energysim.files import atomic_write_text, json_text

    text = json_text(obj)
    if dest == "-":
        sys.stdout.write(text)
    else:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(dest, text)


def format_table(headers: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """Plain-text table; ``align`` has one 'l' or 'r' per column (default: first left, rest right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def add_model_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--model NAME|module:factory``, ``--input-shape`` and ``--strict``."""
    from energysim.zoo import MODEL_NAMES

    parser.add_argument(
        "--model",
        required=required,
        default=None if required else "lenet5",
        metavar="NAME|module:factory",
        help=f"a zoo model ({', '.join(MODEL_NAMES)}) or package.module:factory",
    )
    parser.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="C,H,W",
        help="per-sample input shape (default: the model's own, e.g. 1,32,32 for lenet5)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail instead of warning on layers the estimators do not model"
    )


def parse_shape(text: str) -> tuple[int, ...]:
    """'3,224,224' or '3x224x224' -> (3, 224, 224).

    Every part must be decimal digits (spaces around them allowed): an empty part
    ('1,,32') or one ``int`` alone would take ('+3', '1_0') is an error, not skipped.
    """
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    if not all(re.fullmatch(r"[0-9]+", p) and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 3,224,224, got {text!r}")
    return tuple(int(p) for p in parts)


def parse_floats(text: str) -> tuple[float, ...]:
    """'0.5,0.3,0.2' -> (0.5, 0.3, 0.2)."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.5,0.3,0.2, got {text!r}")


def parse_densities(text: str) -> tuple[float, ...]:
    """'0.05,0.5,1' -> (0.05, 0.5, 1.0): at least one number, each in (0, 1]."""
    values = parse_floats(text)
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated densities in (0, 1] like 0.05,0.5,1, got {text!r}")
    return values


def model_from_args(args: argparse.Namespace):
    """Build the model named by ``--model`` and extract its workload; unmodelled layers
    are reported as one line on stderr (or an error with ``--strict``).

    Returns
    -------
    (model, input_shape, workload)
    """
    import warnings

    from energysim.workload import UnmodelledLayerWarning, extract_workload
    from energysim.zoo import build_model

    channels = args.input_shape[0] if args.input_shape and len(args.input_shape) == 3 else None
    model, default_shape = build_model(args.model, in_channels=channels)
    shape = args.input_shape or default_shape
    if shape is None:
        raise ValueError(f"{args.model} does not say its input shape: pass --input-shape C,H,W")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnmodelledLayerWarning)
        workload = extract_workload(model, shape, name=args.model, strict=args.strict)
    for w in caught:
        if issubclass(w.category, UnmodelledLayerWarning):
            print(f"note: {w.message}", file=sys.stderr)
    return model, shape, workload
