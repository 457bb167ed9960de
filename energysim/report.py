"""Per-layer and whole-model results of an estimator, and their JSON form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ._naming import find_named

__all__ = ["LEVELS", "MEMORY_LEVELS", "OPERANDS", "LayerReport", "Report", "empty_accesses"]

LEVELS = ("dram", "buffer", "rf", "mac", "leakage")
MEMORY_LEVELS = ("dram", "buffer", "rf")
OPERANDS = ("weights", "inputs", "outputs")

# Fields an estimator may leave unmodelled (None); summed totals stay None then.
_OPTIONAL_COUNTS = ("gated_macs", "cycles", "compute_cycles", "stall_cycles")


def empty_accesses() -> dict[str, dict[str, dict[str, int]]]:
    """``accesses[level][operand] = {"reads": 0, "writes": 0}`` for every memory level and operand."""
    return {lvl: {op: {"reads": 0, "writes": 0} for op in OPERANDS} for lvl in MEMORY_LEVELS}


@dataclass
class LayerReport:
    """What one estimator says about one layer.

    Energies are in the profile's unit (pJ or normalized): the estimator's counts priced
    by :func:`energysim.estimators.pricing.energy_breakdown`. ``energy_relaxed`` is the
    estimator's relaxed bound, which coefficient tables model (the ``paper`` model's
    projection bound); it equals ``energy`` for an estimator without one. A quantity the
    estimator does not model is ``None`` (never 0): the ``paper`` model has no cycles.
    """

    name: str
    kind: str
    macs: int
    effective_macs: int
    energy: float
    energy_relaxed: float
    energy_by_level: dict[str, float]
    energy_by_operand: dict[str, float]
    accesses: dict[str, dict[str, dict[str, int]]]
    gated_macs: int | None = None
    cycles: int | None = None
    compute_cycles: int | None = None
    stall_cycles: int | None = None
    utilization: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LayerReport":
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"layer report has unknown keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**data)


def _sum_optional(values: list[Any]) -> Any:
    return None if any(v is None for v in values) else sum(values)


@dataclass
class Report:
    """An estimator's report for a whole model: one :class:`LayerReport` per layer and totals."""

    model: str
    profile: str
    profile_digest: str
    estimator: str
    units: str
    layers: list[LayerReport]
    unmodelled: list[str] = field(default_factory=list)

    def layer(self, name: str) -> LayerReport:
        return find_named(self.layers, name, f"the report of {self.model!r}")

    @property
    def energy(self) -> float:
        return sum(l.energy for l in self.layers)

    @property
    def energy_relaxed(self) -> float:
        return sum(l.energy_relaxed for l in self.layers)

    @property
    def cycles(self) -> int | None:
        """Cycles of the whole model, layer after layer (None: the estimator counts no cycles)."""
        return _sum_optional([l.cycles for l in self.layers])

    def total(self) -> dict[str, Any]:
        """Every numeric per-layer field summed over layers (None where any layer has None)."""
        layers = self.layers
        accesses = {
            lvl: {
                op: {rw: sum(l.accesses[lvl][op][rw] for l in layers) for rw in ("reads", "writes")}
                for op in OPERANDS
            }
            for lvl in MEMORY_LEVELS
        }
        cycles = _sum_optional([l.cycles for l in layers])
        busy = [l.utilization * l.cycles for l in layers] if cycles else None
        return {
            "macs": sum(l.macs for l in layers),
            "effective_macs": sum(l.effective_macs for l in layers),
            **{k: _sum_optional([getattr(l, k) for l in layers]) for k in _OPTIONAL_COUNTS},
            "utilization": None if busy is None or any(u is None for u in busy) else sum(busy) / cycles,
            "energy": self.energy,
            "energy_relaxed": self.energy_relaxed,
            "energy_by_level": {lvl: sum(l.energy_by_level[lvl] for l in layers) for lvl in LEVELS},
            "energy_by_operand": {op: sum(l.energy_by_operand[op] for l in layers) for op in OPERANDS},
            "accesses": accesses,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: header fields, ``layers`` and ``total``."""
        return {
            "model": self.model,
            "profile": self.profile,
            "profile_digest": self.profile_digest,
            "estimator": self.estimator,
            "units": self.units,
            "unmodelled": list(self.unmodelled),
            "layers": [l.to_dict() for l in self.layers],
            "total": self.total(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        """Inverse of :meth:`to_dict` (``total`` is recomputed, not trusted)."""
        required = ("model", "profile", "profile_digest", "estimator", "units", "layers")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"report is missing keys {missing}")
        return cls(
            model=data["model"],
            profile=data["profile"],
            profile_digest=data["profile_digest"],
            estimator=data["estimator"],
            units=data["units"],
            layers=[LayerReport.from_dict(l) for l in data["layers"]],
            unmodelled=list(data.get("unmodelled", [])),
        )
