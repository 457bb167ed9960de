"""Calibrate a profile's per-access energies against measured layer energies.

Energy is linear in the nine per-access parameters of a profile (:data:`PARAMETERS`):
for a layer, ``E = sum(count_p * value_p)`` where the counts (reads and writes per
memory level, effective and gated MACs, and the leakage time) depend only on the
workload, the sparsity and the profile's sizes. The estimator's typed counts of every
measured layer on the BASE profile (:meth:`energysim.estimators.Estimator.counts`),
arranged per parameter by :func:`energysim.estimators.pricing.parameter_counts` (the
pricing every estimator's energy goes through), are the design matrix; the fit finds
the non-negative values that best explain the measured energies, and writes them into
a copy of BASE. The estimator is never run with perturbed profiles: its energy is its
counts priced, by construction.

The design matrix has one row per measurement (a layer, a model ``total``, or one level
of a measured per-level split) and one column per parameter.

Weighting: each row is divided by its measured energy, so the fit minimises relative
errors: a 1 % miss on a small layer (or a small level of a split) counts as much as a
1 % miss on a large one, which is right for measurements whose noise is a percentage.
A level measured as 0 is weighted by its layer's energy instead. ``compute.gated_mac <=
compute.mac``, which every profile must satisfy, is a constraint of the fit.

Identifiability: a parameter is held at its BASE value and named, instead of being given
an arbitrary value, when its column is zero (no measured layer exercises it), when it
takes part in a null direction of the column-scaled weighted design matrix (singular
value below ``rcond`` times the largest: collinear counts, e.g. RF reads that always
equal the MACs), or when its fitted value's standard error (from the residual scatter)
exceeds ``max_relative_stderr`` of its size (the data cannot tell it from half or twice
its value). Held parameters are removed one at a time, weakest first, and the fit rerun;
a held parameter keeps exactly its BASE value. A fit with no spare row (as many rows as
free parameters) has no residual scatter to judge the standard errors by, and a fit whose
values, predictions or figures are not finite cannot be trusted: both are errors.

Rows that measure the same layer of the same run are fitted as repeated measurements,
with a warning naming them.
"""

from __future__ import annotations

import datetime
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear

from .estimators import Estimator, get_estimator
from .estimators.pricing import PARAMETERS, parameter_counts
from .measurements import CSV_COLUMNS, Measurement, Run, read_measurements
from .report import LEVELS
from .sparsity import Sparsity
from .spec import Profile
from .spec.schema import validate_tree
from .workload import UnmodelledLayerWarning, Workload, extract_workload

__all__ = [
    "CSV_COLUMNS",
    "GROUPS",
    "MAX_RELATIVE_STDERR",
    "PARAMETERS",
    "RCOND",
    "Calibration",
    "Design",
    "Measurement",
    "ParameterFit",
    "Residual",
    "Run",
    "calibrate",
    "design_matrix",
    "fit_design",
    "parse_fix",
    "read_measurements",
]

GROUPS: dict[str, tuple[str, ...]] = {
    "mac": ("compute.mac",),
    "gated_mac": ("compute.gated_mac",),
    "rf": ("memory.rf.read", "memory.rf.write"),
    "buffer": ("memory.buffer.read", "memory.buffer.write"),
    "dram": ("memory.dram.read", "memory.dram.write"),
    "leakage": ("leakage_mw",),
}

# A column-scaled singular value below RCOND x the largest is a null direction: numerically
# collinear counts (exact collinearity leaves ~1e-16; noise-free data cannot separate them).
RCOND = 1e-3

# A fitted value whose standard error exceeds this fraction of max(|value|, |base|) is
# not determined by the measurements (it could be half or twice as large).
MAX_RELATIVE_STDERR = 0.5

# A null vector's component above this names the parameter as part of the collinearity.
_NULL_COMPONENT = 0.1

_SIGNIFICANT_DIGITS = 6  # of the calibrated values written to the profile


@dataclass(frozen=True)
class Design:
    """The weighted least-squares problem: ``measured ~ matrix @ values``.

    Attributes
    ----------
    matrix : numpy.ndarray, shape (rows, len(PARAMETERS))
        Energy per unit of each parameter, in the profile's unit.
    measured : numpy.ndarray, shape (rows,)
    weight : numpy.ndarray, shape (rows,)
        1 / the row's measured energy (1 / its layer's energy for a level measured as 0).
    labels : tuple of (Measurement, str or None)
        The measurement of each row and its level (None for the whole energy).
    notes : tuple of str
        Caveats found while building it (e.g. a ``total`` of a model with unmodelled modules).
    warnings : tuple of str
        Doubts about the measurements, naming their rows (e.g. one layer measured twice).
    """

    matrix: np.ndarray
    measured: np.ndarray
    weight: np.ndarray
    labels: tuple[tuple[Measurement, str | None], ...]
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParameterFit:
    """One parameter's outcome.

    ``status`` is ``fitted``, ``fixed`` (held by the caller) or ``unidentifiable``
    (held at BASE because the measurements cannot determine it); a held ``value`` is
    ``base``. ``stderr`` is the standard error of a fitted value from the residual
    scatter (None when not fitted).
    """

    key: str
    base: float
    value: float
    status: str
    stderr: float | None = None

    @property
    def change_pct(self) -> float | None:
        """Change from BASE in percent (None when BASE is 0)."""
        return 100.0 * (self.value - self.base) / self.base if self.base else None


@dataclass(frozen=True)
class Residual:
    """Measured and predicted energy of one row; ``error`` is relative to ``reference``, the
    measured energy (the layer's energy for a level measured as 0).

    ``run`` is the model name, with the input shape and densities when they are not the defaults.
    """

    run: str
    layer: str
    level: str | None
    where: str
    measured: float
    predicted: float
    base_predicted: float
    reference: float

    @property
    def error(self) -> float:
        return (self.predicted - self.measured) / self.reference

    @property
    def base_error(self) -> float:
        return (self.base_predicted - self.measured) / self.reference


@dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate`: the fitted parameters, the fit quality and the new profile.

    ``data_warnings`` are doubts about the measurements (see :class:`Design`).
    """

    base: Profile
    profile: Profile
    estimator: str
    measurements: str
    date: str
    parameters: tuple[ParameterFit, ...]
    unidentifiable: tuple[tuple[tuple[str, ...], str], ...]
    residuals: tuple[Residual, ...]
    r2: float
    notes: tuple[str, ...] = ()
    data_warnings: tuple[str, ...] = ()

    @property
    def rms_error(self) -> float:
        """Root-mean-square relative error of the calibrated profile over all rows."""
        return float(np.sqrt(np.mean([r.error**2 for r in self.residuals])))

    @property
    def max_error(self) -> float:
        """Largest absolute relative error of the calibrated profile."""
        return max(abs(r.error) for r in self.residuals)

    @property
    def base_rms_error(self) -> float:
        """Root-mean-square relative error of BASE over the same rows."""
        return float(np.sqrt(np.mean([r.base_error**2 for r in self.residuals])))

    def warnings(self) -> list[str]:
        """The data warnings, then one line per group of parameters held at BASE because the
        data cannot determine them."""
        return [*self.data_warnings] + [
            f"{', '.join(keys)} {'is' if len(keys) == 1 else 'are'} not identifiable ({reason}); "
            f"held at the {self.base.name} value{'s' if len(keys) > 1 else ''}"
            for keys, reason in self.unidentifiable
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of everything above."""
        return {
            "base_profile": self.base.name,
            "base_digest": self.base.digest,
            "profile": self.profile.name,
            "profile_digest": self.profile.digest,
            "estimator": self.estimator,
            "units": self.profile.units,
            "measurements": self.measurements,
            "date": self.date,
            "parameters": [
                {"key": p.key, "base": p.base, "value": p.value, "change_pct": p.change_pct,
                 "stderr": p.stderr, "status": p.status}
                for p in self.parameters
            ],
            "unidentifiable": [{"parameters": list(keys), "reason": reason} for keys, reason in self.unidentifiable],
            "warnings": self.warnings(),
            "notes": list(self.notes),
            "fit": {
                "rows": len(self.residuals),
                "free_parameters": sum(p.status == "fitted" for p in self.parameters),
                "r2": self.r2,
                "rms_relative_error": self.rms_error,
                "max_relative_error": self.max_error,
                "base_rms_relative_error": self.base_rms_error,
            },
            "residuals": [
                {"run": r.run, "layer": r.layer, "level": r.level, "where": r.where, "measured": r.measured,
                 "predicted": r.predicted, "base_predicted": r.base_predicted, "relative_error": r.error}
                for r in self.residuals
            ],
        }


# -- design matrix ------------------------------------------------------------------


def _where(m: Measurement) -> str:
    """``m``'s origin for messages (its run and layer when built in code without one)."""
    return m.where or f"{m.run.describe()} {m.layer}"


def _check_measurement(m: Measurement) -> None:
    """Raise unless ``m``'s energy is finite and > 0 and its split finite, >= 0 and of known levels.

    :func:`read_measurements` guarantees this; rows built in code are checked here.
    """
    if not (math.isfinite(m.energy) and m.energy > 0):
        raise ValueError(f"{_where(m)}: energy must be a finite number > 0, got {m.energy!r}")
    for level, value in m.levels.items():
        if level not in LEVELS:
            raise ValueError(f"{_where(m)}: unknown level {level!r} in the split; expected one of {', '.join(LEVELS)}")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{_where(m)}: level {level!r}: energy must be a finite number >= 0, got {value!r}")


def _duplicate_warnings(measurements: Sequence[Measurement]) -> list[str]:
    """One line per layer of a run measured by more than one row, naming the rows."""
    groups: dict[tuple[Run, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.run, m.layer), []).append(m)
    lines = []
    for (run, layer), rows in groups.items():
        if len(rows) > 1:
            energies = [m.energy for m in rows]
            spread = max(energies) / min(energies) - 1
            lines.append(
                f"{run.describe()} {layer} is measured by {len(rows)} rows ({', '.join(map(_where, rows))}) "
                + (f"whose energies differ by up to {100 * spread:.0f} %" if spread else "of equal energy")
                + ": fitted as repeated measurements"
            )
    return lines


def _resolve_run(run: Run, where: str) -> Workload:
    """The workload of ``run`` (errors name the measurement's origin)."""
    from .zoo import build_model

    try:
        model, default_shape = build_model(run.model)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: column 'model': {str(exc).splitlines()[0]}") from None
    shape = run.input_shape or default_shape
    if shape is None:
        raise ValueError(f"{where}: column 'input_shape' is needed: the factory of {run.model} returns no input shape")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmodelledLayerWarning)
        try:
            return extract_workload(model, shape, name=run.model)
        except ValueError as exc:
            raise ValueError(f"{where}: column 'input_shape': {str(exc).splitlines()[0]}") from None


def _level_columns(units: dict[str, dict[str, float]]) -> dict[str, np.ndarray]:
    """Per energy level, the layer's energy per unit of each parameter (in :data:`PARAMETERS` order)."""
    return {level: np.array([float(units[level].get(p, 0)) for p in PARAMETERS]) for level in LEVELS}


def _run_columns(
    workload: Workload, run: Run, profile: Profile, estimator: Estimator
) -> dict[str, dict[str, np.ndarray]]:
    """layer name -> level -> design vector, from the estimator's counts of the run's pattern."""
    dense = run.weight_density == 1 and run.input_density == 1
    sparsity = Sparsity() if dense else Sparsity.synthetic(workload, run.weight_density, run.input_density, "random", 0)
    return {
        layer.name: _level_columns(parameter_counts(profile, estimator.counts(layer, profile, sparsity[layer.name])))
        for layer in workload.layers
    }


def design_matrix(
    measurements: Sequence[Measurement],
    profile: Profile,
    estimator: str = "systolic",
    workloads: Mapping[Run, Workload] | None = None,
) -> Design:
    """Build the weighted least-squares problem of :func:`calibrate`.

    Parameters
    ----------
    measurements : sequence of Measurement
        From :func:`read_measurements`; energies in ``profile``'s unit.
    profile : Profile
        The BASE profile: its sizes decide the access counts (its energies do not matter).
    estimator : str
        A key of :data:`energysim.estimators.ESTIMATORS`.
    workloads : mapping of Run to Workload, optional
        Ready workloads (to reuse extractions); others are built from the zoo.

    Returns
    -------
    Design
        One row per measurement, plus one per measured level of a per-level split.

    Raises
    ------
    ValueError
        Unknown estimator, model, layer or input shape, a non-finite, zero or negative
        energy, or a report's MAC count that does not match the model, naming the
        measurement's file and row.
    """
    counter = get_estimator(estimator)
    if not measurements:
        raise ValueError("no measurements to calibrate against")
    for m in measurements:
        _check_measurement(m)
    workloads = dict(workloads or {})
    columns: dict[Run, dict[str, dict[str, np.ndarray]]] = {}
    rows, measured, weight, labels, notes = [], [], [], [], []
    for m in measurements:
        if m.run not in columns:
            if m.run not in workloads:
                workloads[m.run] = _resolve_run(m.run, m.where)
            columns[m.run] = _run_columns(workloads[m.run], m.run, profile, counter)
        workload, per_layer = workloads[m.run], columns[m.run]
        if m.layer == "total":
            levels = {level: sum(c[level] for c in per_layer.values()) for level in LEVELS}
            if workload.unmodelled:
                note = (f"{m.run.describe()}: the total covers only the {len(workload.layers)} GEMM layers "
                        "(conv, linear, matmul); "
                        f"the {len(workload.unmodelled)} unmodelled modules (pooling, activations, ...) are not in it")
                if note not in notes:
                    notes.append(note)
        elif m.layer in per_layer:
            levels = per_layer[m.layer]
            if m.macs is not None and m.macs != workload.layer(m.layer).macs:
                raise ValueError(
                    f"{m.where}: field 'macs': {m.macs} MACs, but layer {m.layer} of {m.run.model} at input shape "
                    f"{'x'.join(map(str, workload.input_shape))} has {workload.layer(m.layer).macs}; "
                    "the report was made for another input shape"
                )
        else:
            raise ValueError(
                f"{m.where}: column 'layer': {m.run.model} has no compute layer {m.layer!r}; "
                f"expected 'total' or one of {', '.join(workload.layer_names)}"
            )
        for level, value in [(None, m.energy), *m.levels.items()]:
            rows.append(sum(levels.values()) if level is None else levels[level])
            measured.append(value)
            weight.append(1.0 / (value if value > 0 else m.energy))
            labels.append((m, level))
    return Design(np.array(rows), np.array(measured), np.array(weight), tuple(labels), tuple(notes),
                  tuple(_duplicate_warnings(measurements)))


# -- the fit ---------------------------------------------------------------------------


def parse_fix(items: str | Iterable[str] | None) -> frozenset[str]:
    """Parameters named by ``--fix``: groups (``mac,rf``) or full keys (``memory.rf.write``).

    Raises
    ------
    ValueError
        An unknown name, listing the groups and keys.
    """
    if items is None:
        return frozenset()
    names = [n.strip() for item in ([items] if isinstance(items, str) else items) for n in item.split(",") if n.strip()]
    fixed = set()
    for name in names:
        if name in GROUPS:
            fixed.update(GROUPS[name])
        elif name in PARAMETERS:
            fixed.add(name)
        else:
            raise ValueError(
                f"--fix {name!r}: expected a group ({', '.join(GROUPS)}) or a key ({', '.join(PARAMETERS)})"
            )
    return frozenset(fixed)


def _weakest_direction(a: np.ndarray, free: list[int], rcond: float) -> list[int]:
    """Columns of ``free`` taking part in the weakest direction of the column-scaled
    matrix, or [] when its singular value is at least ``rcond`` times the largest."""
    scaled = a[:, free] / np.linalg.norm(a[:, free], axis=0)
    _, singular, vt = np.linalg.svd(scaled, full_matrices=True)
    singular = np.concatenate([singular, np.zeros(len(free) - len(singular))])
    if singular[-1] >= rcond * singular[0]:
        return []
    return [free[k] for k in np.flatnonzero(np.abs(vt[-1]) > _NULL_COMPONENT)]


def _identify(a: np.ndarray, free: list[int], rcond: float) -> tuple[list[int], list[tuple[tuple[str, ...], str]]]:
    """Split ``free`` into identifiable columns and named groups held at BASE.

    Null directions are removed weakest first, one at a time: holding the parameters
    of an exact collinearity often makes the next-weakest direction well determined.
    """
    held = []
    unexercised = [j for j in free if not np.any(a[:, j])]
    if unexercised:
        held.append((tuple(PARAMETERS[j] for j in unexercised), "zero counts in every measured row"))
    free = [j for j in free if j not in unexercised]
    while free:
        group = _weakest_direction(a, free, rcond)
        if not group:
            break
        keys = tuple(PARAMETERS[j] for j in group)
        reason = ("its counts are proportional to those of held parameters" if len(keys) == 1 else
                  "their counts are collinear in these measurements, so only a combination is determined")
        held.append((keys, reason))
        free = [j for j in free if j not in group]
    return free, held


def _bounded_fit(
    a: np.ndarray, b: np.ndarray, free: list[int], values: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Non-negative least squares on the ``free`` columns with ``gated_mac <= mac``.

    When both MAC parameters are free the fit runs on (mac - gated_mac, gated_mac), both
    >= 0; when one is held, the other is bounded by it. Returns the free values and
    their standard errors (None without spare rows).
    """
    mac, gated = PARAMETERS.index("compute.mac"), PARAMETERS.index("compute.gated_mac")
    n = len(free)
    transform = np.eye(n)
    lower, upper = np.zeros(n), np.full(n, np.inf)
    if mac in free and gated in free:
        transform[free.index(mac), free.index(gated)] = 1.0
    elif mac in free:
        lower[free.index(mac)] = values[gated]
    elif gated in free:
        upper[free.index(gated)] = values[mac]
    matrix = a[:, free] @ transform
    norms = np.linalg.norm(matrix, axis=0)
    scaled = matrix / norms
    solution = lsq_linear(scaled, b, bounds=(lower * norms, upper * norms), method="bvls")
    theta = transform @ (solution.x / norms)
    dof = len(b) - n
    if dof <= 0:
        return theta, None
    residual = scaled @ solution.x - b
    covariance = (residual @ residual / dof) * np.linalg.pinv(scaled.T @ scaled)
    covariance = transform @ (covariance / np.outer(norms, norms)) @ transform.T
    return theta, np.sqrt(np.clip(np.diag(covariance), 0.0, None))


def fit_design(
    design: Design,
    base: Profile,
    fixed: Iterable[str] = (),
    rcond: float = RCOND,
    max_relative_stderr: float = MAX_RELATIVE_STDERR,
    where: str = "measurements",
) -> tuple[tuple[ParameterFit, ...], tuple[tuple[tuple[str, ...], str], ...]]:
    """Fit the per-access energies of ``design``, holding ``fixed`` and unidentifiable ones at BASE.

    Parameters
    ----------
    design : Design
    base : Profile
        Supplies the values of held parameters.
    fixed : iterable of str
        Keys of :data:`PARAMETERS` to hold (see :func:`parse_fix`).
    rcond : float, default RCOND
        Relative singular-value threshold below which a direction is collinear.
    max_relative_stderr : float, default MAX_RELATIVE_STDERR
        Largest standard error, as a fraction of max(|value|, |base|), of a fitted value.
    where : str
        Name of the measurements for messages.

    Returns
    -------
    parameters : tuple of ParameterFit
        In :data:`PARAMETERS` order.
    unidentifiable : tuple of (tuple of str, str)
        Groups of parameters held at BASE and why.

    Raises
    ------
    ValueError
        Every parameter fixed, fewer rows than exercised free parameters, or no spare
        row to estimate the standard errors of the identifiable ones by.
    """
    fixed = set(fixed)
    base_values = np.array([base.to_flat()[p] for p in PARAMETERS], dtype=float)
    free = [j for j, p in enumerate(PARAMETERS) if p not in fixed]
    if not free:
        raise ValueError("--fix holds every parameter: nothing left to calibrate")
    a = design.matrix * design.weight[:, None]
    b = design.measured * design.weight
    exercised = [j for j in free if np.any(a[:, j])]
    if len(b) < len(exercised):
        raise ValueError(
            f"{where}: {len(b)} measurement rows cannot determine {len(exercised)} free parameters "
            f"({', '.join(PARAMETERS[j] for j in exercised)}); add measurements or hold some with --fix"
        )
    free, held = _identify(a, free, rcond)
    # Only the accepted fit sets values: a parameter dropped on the way keeps BASE exactly.
    values, stderr = base_values.copy(), np.full(len(PARAMETERS), np.nan)
    while free:
        rest = [j for j in range(len(PARAMETERS)) if j not in free]
        theta, errors = _bounded_fit(a, b - a[:, rest] @ base_values[rest], free, base_values)
        if errors is None:
            raise ValueError(
                f"{where}: {len(b)} measurement rows for {len(free)} free parameters "
                f"({', '.join(PARAMETERS[j] for j in free)}) leave no spare row to estimate their uncertainty, "
                "so nothing tells whether they are determined; add measurements or hold some with --fix"
            )
        scale = np.maximum(np.abs(theta), np.abs(base_values[free]))
        relative = np.divide(errors, scale, out=np.where(errors > 0, np.inf, 0.0), where=scale > 0)
        worst = int(np.argmax(relative))
        if relative[worst] <= max_relative_stderr:
            values[free], stderr[free] = theta, errors
            break
        spread = "an unbounded" if np.isinf(relative[worst]) else f"a +-{100 * relative[worst]:.0f} %"
        held.append(((PARAMETERS[free[worst]],), f"these measurements leave it {spread} uncertainty"))
        free = free[:worst] + free[worst + 1:]
    held_keys = {k for keys, _ in held for k in keys}
    parameters = tuple(
        ParameterFit(
            key=p,
            base=float(base_values[j]),
            value=float(values[j]),
            status="fixed" if p in fixed else "unidentifiable" if p in held_keys else "fitted",
            stderr=None if np.isnan(stderr[j]) else float(stderr[j]),
        )
        for j, p in enumerate(PARAMETERS)
    )
    return parameters, tuple(held)


# -- the calibrated profile -------------------------------------------------------------


def _round(value: float) -> float:
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def _calibrated_profile(base: Profile, parameters: Sequence[ParameterFit], name: str, source: str) -> Profile:
    """BASE with the fitted values (rounded) and the held ones unchanged, validated through the profile schema."""
    fitted = {p.key: _round(p.value) for p in parameters if p.status == "fitted"}
    flat = base.to_flat() | fitted | {"name": name, "source": source}
    tree = Profile.from_flat(flat).to_dict()
    return Profile.from_flat(validate_tree(tree, f"calibrated profile {name}"))


def calibrate(
    measurements: Sequence[Measurement],
    base: Profile,
    estimator: str = "systolic",
    fixed: Iterable[str] = (),
    *,
    name: str | None = None,
    source: str = "measurements",
    date: str | None = None,
    rcond: float = RCOND,
    max_relative_stderr: float = MAX_RELATIVE_STDERR,
    workloads: Mapping[Run, Workload] | None = None,
) -> Calibration:
    """Fit ``base``'s per-access energies to measured energies.

    Parameters
    ----------
    measurements : sequence of Measurement
        From :func:`read_measurements` (energies in ``base``'s unit).
    base : Profile
        The profile to calibrate: its sizes give the access counts, its energies are
        the starting point and the values of held parameters.
    estimator : str
        A key of :data:`energysim.estimators.ESTIMATORS`.
    fixed : iterable of str
        Parameter keys to hold at BASE (see :func:`parse_fix`).
    name : str, optional
        Name of the calibrated profile; default ``<base>-calibrated``.
    source : str
        What the measurements are (the file name), recorded in the profile's ``source``.
    date : str, optional
        ISO date recorded in ``source``; default today.
    rcond, max_relative_stderr : float
        Identifiability thresholds, see :func:`fit_design`.
    workloads : mapping of Run to Workload, optional
        Ready workloads, see :func:`design_matrix`.

    Returns
    -------
    Calibration

    Raises
    ------
    ValueError
        Bad measurements (naming file, row and column), too few rows, ``fixed`` covering
        every parameter, or a fit that is not finite (values, predictions or figures).

    Examples
    --------
    >>> from energysim import load_profile
    >>> from energysim.calibrate import Measurement, Run, calibrate
    >>> truth = [("conv1", 1.2e6), ("conv2", 2.4e6), ("fc1", 9.8e6), ("fc2", 2.6e6), ("fc3", 2.2e5)]
    >>> rows = [Measurement(Run("lenet5"), layer, energy) for layer, energy in truth]
    >>> result = calibrate(rows, load_profile("eyeriss-iclr19"), "paper", fixed=["mac", "rf"], date="2025-01-01")
    >>> result.profile.name
    'eyeriss-iclr19-calibrated'
    """
    if base.sparsity.nm.enabled:
        # The design has no column for compute.nm_select: the fit would put the selections' energy elsewhere.
        raise ValueError(
            f"{base.name}: calibration of an N:M array (sparsity.nm) is not supported: compute.nm_select is not "
            "fitted; calibrate the profile without sparsity.nm (--set sparsity.nm.n=null --set sparsity.nm.m=null)"
        )
    design = design_matrix(measurements, base, estimator, workloads)
    parameters, held = fit_design(design, base, fixed, rcond, max_relative_stderr, where=source)
    date = date or datetime.date.today().isoformat()
    values = np.array([p.value for p in parameters])
    base_values = np.array([p.base for p in parameters])
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by _check_finite
        predicted = design.matrix @ values
        base_predicted = design.matrix @ base_values
    residuals = tuple(
        Residual(m.run.describe(), m.layer, level, m.where, float(y), float(p), float(q), float(1 / w))
        for (m, level), y, p, q, w in zip(design.labels, design.measured, predicted, base_predicted, design.weight)
    )
    r2 = _r2(design.measured, predicted)
    _check_finite(parameters, residuals, r2, design.measured, source, base.units)
    rms = float(np.sqrt(np.mean([r.error**2 for r in residuals])))
    name = name or f"{base.name}-calibrated"
    held_text = ", ".join(k for keys, _ in held for k in keys)
    fixed_text = ", ".join(p.key for p in parameters if p.status == "fixed")
    record = (
        f"Calibrated on {date} from {base.name} (digest {base.digest}) against {source} with the {estimator} "
        f"estimator: {len(residuals)} rows, R^2 {r2:.4f}, RMS relative error {100 * rms:.2f} % "
        f"(base: {100 * float(np.sqrt(np.mean([r.base_error**2 for r in residuals]))):.2f} %)"
        + (f"; fixed: {fixed_text}" if fixed_text else "")
        + (f"; held at base (not identifiable): {held_text}" if held_text else "")
        + f". Base source: {base.source}"
    )
    profile = _calibrated_profile(base, parameters, name, record)
    return Calibration(base, profile, estimator, source, date, parameters, held, residuals, r2, design.notes,
                       design.warnings)


def _r2(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination; NaN when every row measures the same energy.

    Both are divided by the largest measured energy first, so that squares of energies
    near the float range do not overflow (R^2 does not depend on the scale).
    """
    scale = float(np.max(measured))
    with np.errstate(over="ignore", invalid="ignore"):
        y, p = measured / scale, predicted / scale
        spread = float(np.sum((y - y.mean()) ** 2))
        return 1.0 - float(np.sum((y - p) ** 2)) / spread if spread > 0 else math.nan


def _check_finite(
    parameters: Sequence[ParameterFit], residuals: Sequence[Residual], r2: float, measured: np.ndarray, source: str,
    units: str,
) -> None:
    """Raise when a fitted value, a prediction or a fit figure is not finite (e.g. energies near the float range)."""
    with np.errstate(over="ignore", invalid="ignore"):
        figures = {
            "a fitted value": np.array([p.value for p in parameters]),
            "a predicted energy": np.array([r.predicted for r in residuals]),
            "a base prediction": np.array([r.base_predicted for r in residuals]),
            "the RMS relative error": np.mean(np.array([r.error for r in residuals]) ** 2),
            "the base RMS relative error": np.mean(np.array([r.base_error for r in residuals]) ** 2),
        }
    problems = [name for name, value in figures.items() if not np.all(np.isfinite(value))]
    if math.isnan(r2):
        problems.append("R^2 (every row measures the same energy)" if np.ptp(measured) == 0 else "R^2")
    if problems:
        raise ValueError(
            f"{source}: the fit cannot be trusted: {', '.join(problems)} is not finite "
            f"(measured energies from {measured.min():.3g} to {measured.max():.3g} {units})"
        )
