"""Measured energies to calibrate against: CSV files and ``ecc simulate --json`` reports.

These files are data, not code: their ``model`` column names a zoo model, or a
``package.module:factory`` only when the caller allows that factory (``ecc calibrate
--model``), so a file cannot choose code to import. Every energy is finite after
conversion to the profile's unit, a per-level split does not exceed its energy, and
measured layers do not exceed their model's measured ``total``. Every problem is one
``ValueError`` line naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .report import LEVELS
from .zoo import MODEL_NAMES

__all__ = ["CSV_COLUMNS", "PARTS_TOLERANCE", "Measurement", "Run", "read_measurements"]

_REQUIRED_COLUMNS = ("model", "layer", "energy", "unit")
_SPLIT_COLUMNS = tuple(f"energy_{level}" for level in LEVELS)
_RUN_COLUMNS = ("input_shape", "weight_density", "input_density")
CSV_COLUMNS: tuple[str, ...] = _REQUIRED_COLUMNS + _SPLIT_COLUMNS + _RUN_COLUMNS

# Accepted measurement units per profile unit, and their factor to the profile's unit.
_UNITS = {
    "pJ": {"pJ": 1.0, "nJ": 1e3, "uJ": 1e6, "µJ": 1e6, "mJ": 1e9, "J": 1e12},
    "normalized": {"normalized": 1.0},
}

# Measured parts carry their own noise, so a split may add up to a little more than its
# energy (the shipped example, 3 % noise on each value, reaches +7 %), and so may measured
# layers against their model's total. Parts more than 25 % above their total cannot be a
# split of it: a wrong unit, a swapped column or a total of another run.
PARTS_TOLERANCE = 0.25

# A data file's input shape is simulated with a real forward pass: 2**24 elements (e.g.
# 3x2048x2048, 64 MiB of float32) bound the memory a file can make it take.
_MAX_INPUT_ELEMENTS = 2**24


@dataclass(frozen=True)
class Run:
    """One simulation the measurements refer to: a model, its input shape and densities.

    ``input_shape`` None means the model's default; densities below 1 simulate a random
    pattern (seed 0) with that fraction of nonzero weights or inputs in every layer.
    """

    model: str
    input_shape: tuple[int, ...] | None = None
    weight_density: float = 1.0
    input_density: float = 1.0

    def describe(self) -> str:
        parts = [self.model]
        if self.input_shape is not None:
            parts.append("x".join(map(str, self.input_shape)))
        if self.weight_density != 1 or self.input_density != 1:
            parts.append(f"w={self.weight_density:g} x={self.input_density:g}")
        return " ".join(parts)


@dataclass(frozen=True)
class Measurement:
    """One measured energy, in the profile's unit.

    Attributes
    ----------
    run : Run
    layer : str
        A compute layer name, or ``"total"`` for the sum of the model's layers.
    energy : float
        Measured energy of the layer (> 0).
    levels : dict of str to float
        Measured per-level split where given (keys from ``energysim.report.LEVELS``).
    where : str
        Origin for messages, e.g. ``"meas.csv row 4"``.
    macs : int or None
        MAC count stated by the source (a JSON report), checked against the workload.
    """

    run: Run
    layer: str
    energy: float
    levels: dict[str, float] = field(default_factory=dict)
    where: str = ""
    macs: int | None = None


def read_measurements(path: str | Path, units: str, models: Iterable[str] = ()) -> list[Measurement]:
    """Read measured energies from a CSV file or an ``ecc simulate --json`` report.

    CSV: a header row, then one measurement per line (no line breaks inside cells); ``#``
    lines are comments.
    Columns ``model`` (a zoo name, or a factory listed in ``models``), ``layer`` (a compute
    layer name or ``total``), ``energy`` (> 0) and ``unit`` are required; optional are
    ``energy_dram``, ``energy_buffer``, ``energy_rf``, ``energy_mac``, ``energy_leakage``
    (a per-level split, in the row's unit; empty cells are not measured),
    ``input_shape`` (``3x64x64``, at most 2**24 elements; default: the model's own),
    ``weight_density`` and ``input_density`` (in (0, 1]; default 1, dense). Row numbers in
    messages count the header as row 1.

    JSON: one report as ``ecc simulate --json`` writes it (or a list of them): its
    ``model``, ``units`` and per-layer ``energy`` (and ``energy_by_level`` when present);
    the layers are taken as dense runs of the model's default input shape, and each
    layer's ``macs``, when present, must match that.

    A row's split may add up to at most ``1 + PARTS_TOLERANCE`` times its energy, and the
    layers measured of a run (the smallest reading of each) to at most that times each
    ``total`` measured of the run.

    Parameters
    ----------
    path : str or Path
    units : {"pJ", "normalized"}
        The profile's unit. With ``pJ``, rows may be in pJ, nJ, uJ (µJ), mJ or J and are
        converted; with ``normalized`` only ``normalized`` is accepted.
    models : iterable of str, optional
        Model factories (``package.module:factory``) the file may name besides the zoo
        models: those the user gave explicitly. Any other name is refused before
        anything is imported.

    Returns
    -------
    list of Measurement

    Raises
    ------
    ValueError
        One line naming the file, the row and the column: empty file, missing or
        unknown columns, a model that is neither a zoo model nor in ``models``,
        non-numeric, negative, zero or (after unit conversion) non-finite energies, a
        unit that does not match the profile, a bad input shape or density, parts
        larger than their total.
    OSError
        The file does not exist or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such measurements file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file; expected a CSV or JSON file of measurements") from None
    if not text.strip():
        raise ValueError(f"{path}: file is empty; expected a CSV with columns {', '.join(_REQUIRED_COLUMNS)}")
    models = frozenset(models)
    if path.suffix.lower() == ".json" or text.lstrip()[0] in "[{":
        measurements = _read_json(path, text, units, models)
    else:
        measurements = _read_csv(path, text, units, models)
    _check_totals(path, measurements, units)
    return measurements


def _check_totals(path: Path, measurements: list[Measurement], units: str) -> None:
    """Raise when the layers measured of a run add up to more than a ``total`` measured of it."""
    layers: dict[Run, dict[str, Measurement]] = {}
    for m in measurements:
        if m.layer != "total":
            smallest = layers.setdefault(m.run, {}).get(m.layer)
            if smallest is None or m.energy < smallest.energy:
                layers[m.run][m.layer] = m
    for m in measurements:
        parts = list(layers.get(m.run, {}).values()) if m.layer == "total" else []
        added = sum(p.energy for p in parts)
        if added > (1 + PARTS_TOLERANCE) * m.energy:
            rows = ", ".join(p.where.removeprefix(f"{path} ") for p in parts)
            raise ValueError(
                f"{m.where}: the total of {m.run.describe()} ({m.energy:.3g} {units}) is "
                f"{100 * (1 - m.energy / added):.0f} % less than the sum of its layers in {rows} ({added:.3g} {units})"
            )


def _read_csv(path: Path, text: str, units: str, models: frozenset[str]) -> list[Measurement]:
    lines = [
        (i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise ValueError(
            f"{path}: file holds only comments; expected a CSV with columns {', '.join(_REQUIRED_COLUMNS)}"
        )
    rows = []
    for line_no, line in lines:
        try:
            rows.append(next(csv.reader([line])))
        except csv.Error as exc:
            raise ValueError(f"{path} row {line_no}: not a CSV row: {exc}") from None
    header_line, header = lines[0][0], [h.strip() for h in rows[0]]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise ValueError(
            f"{path}: row {header_line}: unknown column{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; known columns: {', '.join(CSV_COLUMNS)}"
        )
    missing = [c for c in _REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"{path}: row {header_line}: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))}; "
            f"required: {', '.join(_REQUIRED_COLUMNS)}"
        )
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise ValueError(f"{path}: row {header_line}: column {duplicated[0]!r} appears twice")
    if len(rows) == 1:
        raise ValueError(f"{path}: has a header but no measurements")
    measurements = []
    for (line_no, _), cells in zip(lines[1:], rows[1:]):
        where = f"{path} row {line_no}"
        if len(cells) != len(header):
            raise ValueError(f"{where}: has {len(cells)} cells, the header has {len(header)} columns")
        measurements.append(_csv_measurement(dict(zip(header, (c.strip() for c in cells))), where, units, models))
    return measurements


def _csv_measurement(row: dict[str, str], where: str, units: str, models: frozenset[str]) -> Measurement:
    """One validated CSV row."""
    for column in ("model", "layer"):
        if not row[column]:
            raise ValueError(f"{where}: column {column!r} is empty")
    _check_model(row["model"], models, f"{where}: column 'model'")
    scale = _unit_scale(row["unit"], units, f"{where}: column 'unit'")
    unit = (row["unit"], units)
    energy = _energy(row["energy"], scale, unit, f"{where}: column 'energy'", positive=True)
    levels = {
        level: _energy(row[f"energy_{level}"], scale, unit, f"{where}: column 'energy_{level}'")
        for level in LEVELS
        if row.get(f"energy_{level}")
    }
    _check_split(levels, energy, units, where, "energy_{}", "column 'energy'")
    shape = _shape(row["input_shape"], f"{where}: column 'input_shape'") if row.get("input_shape") else None
    densities = [
        _density(row[c], f"{where}: column {c!r}") if row.get(c) else 1.0 for c in ("weight_density", "input_density")
    ]
    return Measurement(Run(row["model"], shape, *densities), row["layer"], energy, levels, where)


def _check_model(name: str, models: frozenset[str], where: str) -> None:
    """Raise unless a data file may name ``name``: a zoo model or one of ``models``."""
    if name in MODEL_NAMES or name in models:
        return
    if ":" in name:
        raise ValueError(
            f"{where}: {name!r} names code to import (package.module:factory); a measurements file may name "
            f"only zoo models ({', '.join(MODEL_NAMES)}) or a factory given on the command line "
            f"(ecc calibrate --model {name})"
        )
    raise ValueError(f"{where}: unknown model {name!r}: expected one of {', '.join(MODEL_NAMES)}")


def _check_split(levels: dict[str, float], energy: float, units: str, where: str, name: str, total: str) -> None:
    """Raise when a per-level split adds up to more than ``1 + PARTS_TOLERANCE`` times its energy."""
    added = sum(levels.values())
    if added > (1 + PARTS_TOLERANCE) * energy:
        raise ValueError(
            f"{where}: the parts {', '.join(name.format(level) for level in levels)} add up to {added:.3g} {units}, "
            f"{100 * (added / energy - 1):.0f} % more than {total} ({energy:.3g} {units}); "
            "a split is part of the energy, in the same unit"
        )


def _read_json(path: Path, text: str, units: str, models: frozenset[str]) -> list[Measurement]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply; expected `ecc simulate --json` reports") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ValueError(f"{path}: not valid JSON: {str(exc).splitlines()[0]}") from None
    reports = data if isinstance(data, list) else [data]
    if not reports:
        raise ValueError(f"{path}: an empty list; expected `ecc simulate --json` reports")
    measurements = []
    for i, report in enumerate(reports):
        where = f"{path} report {i}" if isinstance(data, list) else str(path)
        if not isinstance(report, dict):
            raise ValueError(
                f"{where}: expected a report object (as `ecc simulate --json` writes), got {type(report).__name__}"
            )
        missing = [k for k in ("model", "units", "layers") if k not in report]
        if missing:
            raise ValueError(f"{where}: missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                             "of an `ecc simulate --json` report")
        if not isinstance(report["model"], str) or not report["model"]:
            raise ValueError(f"{where}: field 'model' must be a model name, got {report['model']!r}")
        _check_model(report["model"], models, f"{where}: field 'model'")
        scale = _unit_scale(report["units"], units, f"{where}: field 'units'")
        if not isinstance(report["layers"], list) or not report["layers"]:
            raise ValueError(f"{where}: field 'layers' must be a non-empty list of layer reports")
        for j, layer in enumerate(report["layers"]):
            unit = (report["units"], units)
            measurements.append(_json_measurement(report["model"], layer, f"{where} layers[{j}]", scale, unit))
    return measurements


def _json_measurement(model: str, layer: Any, where: str, scale: float, unit: tuple[str, str]) -> Measurement:
    """One validated layer of a JSON report."""
    if not isinstance(layer, dict) or not isinstance(layer.get("name"), str) or "energy" not in layer:
        raise ValueError(f"{where}: expected a layer report with fields 'name' and 'energy'")
    if not layer["name"] or not layer["name"].isprintable():
        raise ValueError(f"{where}: field 'name' must be a layer name, got {layer['name']!r}")
    where = f"{where} ({layer['name']})"
    energy = _energy(layer["energy"], scale, unit, f"{where}: field 'energy'", positive=True)
    split = layer.get("energy_by_level") or {}
    if not isinstance(split, dict) or set(split) - set(LEVELS):
        raise ValueError(f"{where}: field 'energy_by_level' must map levels among {', '.join(LEVELS)} to energies, "
                         f"got {split!r}")
    levels = {k: _energy(v, scale, unit, f"{where}: field 'energy_by_level.{k}'") for k, v in split.items()}
    _check_split(levels, energy, unit[1], where, "energy_by_level.{}", "field 'energy'")
    macs = layer.get("macs")
    if macs is not None and (not isinstance(macs, int) or isinstance(macs, bool) or macs < 0):
        raise ValueError(f"{where}: field 'macs' must be a non-negative integer, got {macs!r}")
    return Measurement(Run(model), layer["name"], energy, levels, where, macs)


def _unit_scale(unit: Any, units: str, where: str) -> float:
    accepted = _UNITS[units]
    if not isinstance(unit, str) or unit not in accepted:
        raise ValueError(
            f"{where}: {unit!r} does not match the profile's units ({units}); expected one of {', '.join(accepted)}"
        )
    return accepted[unit]


def _number(raw: Any, where: str, positive: bool = False) -> float:
    """A finite number >= 0 (> 0 with ``positive``) from a CSV cell or a JSON value."""
    expected = "a number > 0" if positive else "a number >= 0"
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{where}: expected {expected}, got {raw!r}")
    return value


def _energy(raw: Any, scale: float, unit: tuple[str, str], where: str, positive: bool = False) -> float:
    """``_number`` converted to the profile's unit (``unit`` is (the row's, the profile's)); finite there too."""
    value = _number(raw, where, positive) * scale
    if not math.isfinite(value):
        raise ValueError(f"{where}: {raw!r} {unit[0]} is not a finite number of {unit[1]}")
    return value


def _shape(raw: str, where: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in raw.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"{where}: expected positive integers like 3x64x64, got {raw!r}")
    if math.prod(shape) > _MAX_INPUT_ELEMENTS:
        raise ValueError(
            f"{where}: {raw!r} has {math.prod(shape)} elements; a measurements file may name at most "
            f"{_MAX_INPUT_ELEMENTS} (e.g. 3x2048x2048)"
        )
    return shape


def _density(raw: str, where: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise ValueError(f"{where}: expected a density in (0, 1], got {raw!r}")
    return value


