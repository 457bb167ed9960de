"""Per-layer energy coefficients: the bridge from an estimator to the compressor.

For each layer the energy is modelled as a function of its nonzero pattern::

    E = constant
      + per_weight * min(nnz(W), weight_breakpoint) + per_weight_overflow * max(0, nnz(W) - weight_breakpoint)
      + per_input * nnz(X) + per_input_overflow * (nonzeros past input_breakpoint)
      + per_input_use * nnz(unfold(X)) + per_input_refetch * (refetched nonzeros)
      + per_effective_mac * effective MACs
      + sum of group_cost[g] over the kept skip groups g
      + sum of slice_cost[kind][i] over the shared items i the kept groups use

and its cycles (the *latency* coefficients, estimators that count cycles) as::

    cycles = cycles_constant + sum of group_cycles[g] over the kept skip groups g
                             + sum of slice_cycles[kind][i] over the shared items i the kept groups use

The terms a layer does not need are 0 (None for the group terms). On a profile with
``sparsity.nm`` a layer has two sets of terms: the row itself (the layer run dense, for a
pattern that violates N:M) and ``nm`` (the same terms, energy and latency, for the layer
N:M-compressed, with its skip groups in the compressed mapping); :func:`pattern_features`
says which one a pattern takes (``nm``). Each estimator derives its rows
(:meth:`energysim.estimators.Estimator.coefficients`):

- ``paper`` (:func:`energysim.estimators.paper.coefficients`): read off the paper model's
  access counts in closed form (its relaxed energy is exactly this expression: per-weight
  costs with the weight-buffer kink, a cost per nonzero input fetched from DRAM, per
  nonzero *use* of an input in a window (buffer and RF reads), per refetched input row,
  outputs as a constant).
- ``systolic`` (:func:`energysim.estimators.systolic.coefficients`): from the priced
  counts of four corner patterns (no weights or all weights x no inputs or all inputs,
  tile skipping off): the cost per nonzero weight, per nonzero input and per effective
  MAC. Where the array skips all-zero weight groups (WS, OS with ``skip_zero_tiles``) the
  row also holds the cost of each *skip group* (a WS tile, an OS ``W[:, Nb]`` slice) and
  of each item several groups share (an input slice or channel, an output tile), from the
  model's own per-fold counts (:mod:`energysim.model.groups`); the constant is then the
  layer with every group skipped. A kept group is one with a nonzero weight
  (``pattern_features``' ``kept_groups``). Where the array skips on inputs (IS) the
  skipping is not modelled and the row is an upper bound that says so.
  The latency coefficients come from the same split (:func:`energysim.model.groups.group_counts`):
  each group's steady-state fold cycles (its fold length or its DRAM transfer, whichever is
  longer), the cycles a used shared item adds or saves and the cycles the layer pays once
  (fitted to the simulated cycles of a few patterns), and the cycles of the layer with every
  group skipped. Without weight groups the cycles are the dense pattern's (a constant, an upper
  bound: sparsity only removes weight traffic, hence stalls).

A layer without weights (a ``matmul`` of two activations: Q K^T, attention x V) has only a
constant: its energy at dense operands on the estimator; its ``weight_count`` is 0.

The table models each estimator's relaxed energy (``LayerReport.energy_relaxed``), which
is its energy for an estimator without a relaxed bound.

The table is JSON with a schema version, model, profile name and profile digest, and the
``mapping.search`` it was built with (plus each layer's chosen mapping); loading it
against a different profile, or a profile with another ``mapping.search``, is refused as
stale.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._naming import find_named
from .estimators import get_estimator
from .files import atomic_write_json
from .estimators.paper import paper_constants, pattern_counts
from .dataflow import get_dataflow
from .model.gemm import gemm_operands
from .model.groups import has_weight_groups, kept_groups, shared_incidence, used_shared, weight_groups
from .model.nm import nm_compliant, without_nm
from .model.search import layer_mapping
from .sparsity import LayerSparsity, nm_mask
from .spec import Profile, load_profile
from .workload import LayerSpec, Workload

__all__ = [
    "TABLE_VERSION",
    "VERIFY_DENSITIES",
    "VERIFY_KINDS",
    "CoefficientTable",
    "LayerCoefficients",
    "coefficient_table",
    "draw_pattern",
    "pattern_features",
    "verify_table",
]

TABLE_VERSION = 6  # 6: a resident-input item is the elements of a channel read by the same K blocks (5: steady-state fold cycles)


@dataclass(frozen=True)
class LayerCoefficients:
    """Energy coefficients of one layer (see the module docstring for the expression)."""

    name: str
    kind: str
    weight_count: int
    input_count: int
    constant: float
    per_weight: float
    per_weight_overflow: float
    weight_breakpoint: int | None
    per_input: float
    per_input_overflow: float
    input_breakpoint: int | None
    per_input_use: float
    per_input_refetch: float
    per_effective_mac: float
    dense_energy: float
    floor_energy: float
    upper_bound: bool
    group_cost: list[float] | None = None
    slice_cost: dict[str, list[float]] | None = None
    cycles_constant: float | None = None
    group_cycles: list[float] | None = None
    slice_cycles: dict[str, list[float]] | None = None
    nm: dict[str, Any] | None = None

    def nm_row(self) -> "LayerCoefficients":
        """The terms of the layer N:M-compressed, as a row of their own (``nm`` must be set)."""
        return replace(self, **self.nm, nm=None)

    def row_for(self, features: dict[str, Any]) -> "LayerCoefficients":
        """The row that prices the pattern ``features`` describes: :meth:`nm_row` when it runs N:M-compressed."""
        return self.nm_row() if features.get("nm") and self.nm is not None else self

    def weight_energy(self, weight_nnz: int) -> float:
        """The part of the energy proportional to the nonzero weights (piecewise)."""
        if self.weight_breakpoint is None:
            return self.per_weight * weight_nnz
        inside = min(weight_nnz, self.weight_breakpoint)
        return self.per_weight * inside + self.per_weight_overflow * (weight_nnz - inside)

    def predict(self, features: dict[str, Any]) -> float:
        """Energy of a pattern described by :func:`pattern_features`."""
        if features.get("nm") and self.nm is not None:
            return self.nm_row().predict(features)
        groups = 0.0
        if self.group_cost is not None:
            groups = _kept_sum(self.group_cost, self.slice_cost, features)
        return (
            self.constant
            + groups
            + self.weight_energy(features["weights"])
            + self.per_input * features["inputs"]
            + self.per_input_overflow * features["input_overflow"]
            + self.per_input_use * features["input_uses"]
            + self.per_input_refetch * features["input_refetch"]
            + self.per_effective_mac * features["effective_macs"]
        )

    def predict_cycles(self, features: dict[str, Any]) -> float | None:
        """Cycles of a pattern described by :func:`pattern_features` (None: the estimator counts none)."""
        if features.get("nm") and self.nm is not None:
            return self.nm_row().predict_cycles(features)
        if self.cycles_constant is None:
            return None
        if self.group_cycles is None:
            return float(self.cycles_constant)
        return math.fsum([self.cycles_constant, _kept_sum(self.group_cycles, self.slice_cycles, features)])

    def input_energy_per_nonzero(self, features: dict[str, int]) -> float:
        """Average energy of one nonzero input for this pattern (uses and refetches included)."""
        if not features["inputs"]:
            return self.per_input
        spent = (
            self.per_input * features["inputs"]
            + self.per_input_overflow * features["input_overflow"]
            + self.per_input_use * features["input_uses"]
            + self.per_input_refetch * features["input_refetch"]
        )
        return spent / features["inputs"]


def _kept_sum(per_group: list[float], per_slice: dict[str, list[float]], features: dict[str, Any]) -> float:
    """Sum of ``per_group`` over the kept groups and of ``per_slice`` over the used shared items."""
    total = math.fsum(np.asarray(per_group)[features["kept_groups"]])
    return total + math.fsum(
        math.fsum(np.asarray(cost)[features["used_slices"][op]]) for op, cost in per_slice.items()
    )


def pattern_features(layer: LayerSpec, ls: LayerSparsity, profile: Profile) -> dict[str, Any]:
    """The counts the coefficients multiply, for one layer's pattern.

    ``kept_groups`` (bool per skip group, see :func:`energysim.model.groups.weight_groups`)
    is present where the profile's array skips all-zero weight groups. On a profile with
    ``sparsity.nm``, ``nm`` says whether the weights satisfy N:M (a weight mask of None is
    dense, which does not), and the groups are those of the mapping the layer then runs.
    """
    counts = pattern_counts(layer, ls, paper_constants(profile))
    extra = counts["extra"]
    features: dict[str, Any] = {
        "weights": extra["weight_nnz"],
        "inputs": extra["input_nnz"],
        "input_overflow": extra.get("input_overflow_nnz", 0),
        "input_uses": extra.get("unfold_nnz", 0),
        "input_refetch": extra.get("refetched_input_nnz", 0),
        "effective_macs": counts["effective_macs"],
    }
    dataflow = get_dataflow(profile.array.dataflow)
    nm = profile.sparsity.nm
    if nm.enabled:
        features["nm"] = (
            layer.has_weights
            and ls.weight_mask is not None
            and nm_compliant(gemm_operands(layer, ls.weight_mask, None).w, nm.n, nm.m)
        )
        if not features["nm"]:
            profile = without_nm(profile)
        elif profile.array.rows % nm.n:
            return features  # the N:M terms have no skip groups here (an upper bound)
    if layer.has_weights and has_weight_groups(profile, dataflow):
        kept = kept_groups(layer, profile, dataflow, ls.weight_mask)
        features["kept_groups"] = kept
        features["used_slices"] = {
            kind: used_shared(pairs, kept) for kind, pairs in shared_incidence(layer, profile, dataflow).items()
        }
    return features


@dataclass
class CoefficientTable:
    """Coefficients of every layer of a workload on one profile and estimator."""

    model: str
    profile: str
    profile_digest: str
    estimator: str
    units: str
    layers: list[LayerCoefficients]
    mapping: str = "scalesim"
    mappings: dict[str, str] | None = None

    def layer(self, name: str) -> LayerCoefficients:
        return find_named(self.layers, name, f"the coefficient table of {self.model!r}")

    @property
    def dense_energy(self) -> float:
        """The table's energy of the dense pattern (correctly rounded sum of the layers')."""
        return math.fsum(l.dense_energy for l in self.layers)

    @property
    def floor_energy(self) -> float:
        """The table's energy with every weight zero, at dense inputs (correctly rounded)."""
        return math.fsum(l.floor_energy for l in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": TABLE_VERSION,
            "model": self.model,
            "profile": self.profile,
            "profile_digest": self.profile_digest,
            "estimator": self.estimator,
            "units": self.units,
            "mapping": self.mapping,
            "mappings": self.mappings,
            "layers": [asdict(l) for l in self.layers],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "coefficient table") -> "CoefficientTable":
        if not isinstance(data, dict) or data.get("schema_version") != TABLE_VERSION:
            got = data.get("schema_version") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{where}: schema_version must be {TABLE_VERSION}, got {got!r}")
        names = [f.name for f in fields(LayerCoefficients)]
        layers = []
        for i, layer in enumerate(data.get("layers", [])):
            missing = [n for n in names if n not in layer]
            if missing:
                raise ValueError(f"{where}: layers[{i}] lacks {', '.join(missing)}")
            layers.append(LayerCoefficients(**{n: layer[n] for n in names}))
        return cls(
            model=data["model"],
            profile=data["profile"],
            profile_digest=data["profile_digest"],
            estimator=data["estimator"],
            units=data["units"],
            layers=layers,
            mapping=data.get("mapping", "scalesim"),
            mappings=data.get("mappings"),
        )

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, profile: Profile | None = None) -> "CoefficientTable":
        """Read a table; with ``profile``, refuse a table derived from another profile."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable coefficient table ({exc})") from None
        table = cls.from_dict(data, str(path))
        if profile is not None and table.mapping != profile.mapping.search:
            raise ValueError(
                f"{path}: stale coefficient table: built with mapping.search {table.mapping!r}, the profile has "
                f"{profile.mapping.search!r}; regenerate it"
            )
        if profile is not None and table.profile_digest != profile.digest:
            raise ValueError(
                f"{path}: stale coefficient table: derived from profile {table.profile!r} (digest "
                f"{table.profile_digest}), not from {profile.name!r} (digest {profile.digest}); regenerate it"
            )
        return table


def coefficient_table(workload: Workload, profile: Profile | str, estimator: str = "systolic") -> CoefficientTable:
    """Derive the per-layer coefficient table of ``workload`` on ``profile``.

    Parameters
    ----------
    workload : Workload
    profile : Profile or str
    estimator : str, default "systolic"
        A key of :data:`energysim.estimators.ESTIMATORS`, which derives the rows (the
        default of ``ecc coeffs`` and :func:`energysim.simulate` too).

    Returns
    -------
    CoefficientTable
        Dense energy and floor (all weights zero, dense inputs) per layer included.
    """
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    chosen = get_estimator(estimator)
    layers = []
    for layer in workload.layers:
        row = (
            chosen.coefficients(layer, profile)
            if layer.has_weights
            else _constant_row(chosen.estimate_layer(layer, profile, LayerSparsity()))
        )
        coeffs = LayerCoefficients(
            name=layer.name,
            kind=layer.kind,
            weight_count=layer.weight_count if layer.has_weights else 0,
            input_count=int(np.prod(layer.input_shape)),
            dense_energy=0.0,
            floor_energy=0.0,
            **row,
        )
        dense = pattern_features(layer, LayerSparsity(), profile)
        # No weight: N:M-compliant on an N:M array, which then runs the layer compressed.
        # A weightless layer is a constant (its floor is its dense pattern without weights).
        floor = (
            pattern_features(layer, LayerSparsity(np.zeros(layer.weight_shape, bool), None), profile)
            if layer.has_weights
            else dense | {"weights": 0, "effective_macs": 0}
        )
        layers.append(replace(coeffs, dense_energy=coeffs.predict(dense), floor_energy=coeffs.predict(floor)))
    return CoefficientTable(
        workload.model, profile.name, profile.digest, estimator, profile.units, layers,
        mapping=profile.mapping.search, mappings=_layer_mappings(workload, profile, estimator),
    )  # fmt: skip


def _layer_mappings(workload: Workload, profile: Profile, estimator: str) -> dict[str, str] | None:
    """The mapping each layer's row was derived on (systolic estimator), by name."""
    if estimator != "systolic":
        return None
    dataflow = get_dataflow(profile.array.dataflow)
    return {layer.name: layer_mapping(profile, layer, dataflow).name for layer in workload.layers}


def _constant_row(report: Any) -> dict[str, Any]:
    """The coefficients of a layer whose energy (and cycles, where counted) is one constant: its dense ``report``."""
    return dict(
        constant=report.energy_relaxed, per_weight=0.0, per_weight_overflow=0.0, weight_breakpoint=None, per_input=0.0,
        per_input_overflow=0.0, input_breakpoint=None, per_input_use=0.0, per_input_refetch=0.0,
        per_effective_mac=0.0, group_cost=None, slice_cost=None, upper_bound=False,
        cycles_constant=None if report.cycles is None else float(report.cycles),
    )


VERIFY_DENSITIES = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
"""Weight and input densities of :func:`verify_table`'s patterns (every pair is drawn)."""

VERIFY_KINDS = ("random", "tiles", "mixed", "nm", "nm-tiles")
"""The pattern kinds of :func:`verify_table`."""


def draw_pattern(
    layer: LayerSpec,
    kind: str,
    weight_density: float,
    input_density: float,
    rng: np.random.Generator,
    groups: tuple[np.ndarray, int] | None = None,
    nm_groups: tuple[np.ndarray, int] | None = None,
    nm: tuple[int, int] | None = None,
) -> LayerSparsity:
    """One random pattern of :func:`verify_table` (``kind`` among :data:`VERIFY_KINDS`).

    ``random``: each weight kept with probability ``weight_density``; ``tiles``: each skip
    group (``groups``: :func:`energysim.model.groups.weight_groups`' ids and count) kept with
    that probability, dense inside; ``mixed``: the same, then every weight with probability
    one half; ``nm``: a random N:M pattern (``nm`` = (N, M)) thinned to ``weight_density``;
    ``nm-tiles``: a random N:M pattern in that share of the compressed tiles (``nm_groups``),
    every slot with probability one half. The input mask keeps each input with probability
    ``input_density``.
    """
    if kind == "random":
        weights = rng.random(layer.weight_shape) < weight_density
    elif kind == "nm":
        weights = nm_mask(layer, nm, rng) & (rng.random(layer.weight_shape) < weight_density)
    elif kind == "nm-tiles":
        nm_ids, nm_count = nm_groups
        weights = nm_mask(layer, nm, rng) & (rng.random(nm_count) < weight_density)[nm_ids]
        weights &= rng.random(layer.weight_shape) < 0.5
    else:
        ids, count = groups
        weights = (rng.random(count) < weight_density)[ids]
        if kind == "mixed":
            weights &= rng.random(layer.weight_shape) < 0.5
    return LayerSparsity(weights, rng.random(layer.input_shape) < input_density)


def verify_table(
    table: CoefficientTable,
    workload: Workload,
    profile: Profile,
    densities: tuple[float, ...] = VERIFY_DENSITIES,
    seed: int = 0,
    kinds: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """Compare the table with the full estimator on random patterns.

    For every layer and every (weight density, input density) pair of ``densities``,
    draws a random pattern, predicts its energy from the table and simulates it (its
    relaxed energy, which is what the table models). Where the table has skip-group
    costs it also draws, for every pair, a *tile* pattern (that share of the groups kept,
    dense inside) and a *mixed* one (that share of the groups kept, half of their weights
    zero at random). Where it has N:M terms it draws an *nm* pattern (a random N:M pattern
    keeping that share of the N candidates of every group) and, where those terms have
    skip groups, an *nm-tiles* one (that share of the compressed tiles kept, every slot of a
    kept tile drawn with probability one half). ``kinds`` (among :data:`VERIFY_KINDS`; None:
    all) keeps only those kinds; a layer whose table supports none of them has no row.

    Returns
    -------
    list of dict
        Per layer: ``name``, ``max_rel_error`` (signed: >0 means the table over-estimates,
        the largest in magnitude), ``min_rel_error``, ``upper_bound``, ``patterns``, and
        ``worst`` (the signed worst error per pattern kind: random, and tiles and mixed
        where the table has group costs, nm and nm-tiles where it has N:M terms); where the
        estimator counts cycles, ``cycles_worst``: the same for the table's cycles
        (:meth:`LayerCoefficients.predict_cycles`, relative to the simulated cycles, or to one
        cycle where they are 0). The table's cycles are exact on dense patterns and an upper
        bound for weights pruned inside kept groups (mixed, random), so the figure of merit is
        the tiles column.
    """
    if table.mapping != profile.mapping.search:
        raise ValueError(f"table built with mapping.search {table.mapping!r}, verifying with {profile.mapping.search!r}")
    if table.profile_digest != profile.digest:
        raise ValueError(f"table derived from profile {table.profile!r}, verifying against {profile.name!r}")
    estimator = get_estimator(table.estimator)
    dataflow = get_dataflow(profile.array.dataflow)
    rng = np.random.default_rng(seed)
    kinds_wanted = None if kinds is None else set(kinds)
    rows = []
    for layer in workload.layers:
        coeffs = table.layer(layer.name)
        kinds, groups, nm_groups = ["random"], None, None
        if coeffs.group_cost is not None:
            groups = weight_groups(layer, without_nm(profile), dataflow)
            kinds += ["tiles", "mixed"]
        nm = (profile.sparsity.nm.n, profile.sparsity.nm.m)
        if coeffs.nm is not None:
            kinds += ["nm"]
            if coeffs.nm["group_cost"] is not None:
                nm_groups = weight_groups(layer, profile, dataflow)
                kinds += ["nm-tiles"]
        if kinds_wanted is not None:
            kinds = [kind for kind in kinds if kind in kinds_wanted]
            if not kinds:
                continue
        errors: dict[str, list[float]] = {kind: [] for kind in kinds}
        cycle_errors: dict[str, list[float]] = {kind: [] for kind in kinds}
        # A layer without weights is a constant: the table claims only its dense energy.
        pairs = [(wd, xd) for wd in densities for xd in densities] if layer.has_weights else [(1.0, 1.0)]
        for kind in kinds:
            for wd, xd in pairs:
                ls = draw_pattern(layer, kind, wd, xd, rng, groups, nm_groups, nm)
                report = estimator.estimate_layer(layer, profile, ls)
                truth = report.energy_relaxed
                features = pattern_features(layer, ls, profile)
                predicted = coeffs.predict(features)
                errors[kind].append((predicted - truth) / truth if truth else 0.0)
                cycles = coeffs.predict_cycles(features)
                if cycles is not None and report.cycles is not None:
                    # A layer whose every fold is skipped takes 0 cycles: relative to one cycle there.
                    cycle_errors[kind].append((cycles - report.cycles) / max(report.cycles, 1))
        every = [e for kind in kinds for e in errors[kind]]
        rows.append(
            {
                "name": layer.name,
                "max_rel_error": max(every, key=abs),
                "min_rel_error": min(every),
                "upper_bound": coeffs.upper_bound,
                "patterns": len(every),
                "worst": {kind: max(errors[kind], key=abs) for kind in kinds},
            }
        )
        if cycle_errors[kinds[0]]:
            rows[-1]["cycles_worst"] = {kind: max(cycle_errors[kind], key=abs) for kind in kinds}
    return rows
