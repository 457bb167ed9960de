"""Estimators: each one counts events per layer, and one pricing turns counts into energy.

``paper``    the ICLR 2019 analytic model (no time model: cycles are None)
``systolic`` the cycle-level systolic-array model

:data:`ESTIMATORS` is the one list of them: every choice of an estimator (the CLI's
``--estimator``, coefficient tables, calibration) reads it. An :class:`Estimator`
says what its model covers and gives its functions; its counts
(:class:`~energysim.estimators.pricing.AccessCounts`) are priced by
:func:`~energysim.estimators.pricing.energy_breakdown`, for every estimator alike.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..report import LayerReport
from ..sparsity import LayerSparsity, Sparsity
from ..spec import Profile
from ..workload import LayerSpec, Workload
from .pricing import AccessCounts

__all__ = ["ESTIMATORS", "Estimator", "get_estimator"]


@dataclass(frozen=True)
class Estimator:
    """One estimator: what it models, and its functions.

    The functions live in the module ``energysim.estimators.<name>``, imported on first
    use (the systolic one loads numba), which defines ``estimate``, ``estimate_layer``,
    ``access_counts`` and ``coefficients`` with the signatures below.

    Attributes
    ----------
    name : str
    summary : str
        One line for help texts.
    has_cycles : bool
        Whether it models time: cycles, stalls, utilization and leakage (None in its
        reports otherwise).
    relaxed_bound : bool
        Whether its ``energy_relaxed`` is a bound distinct from ``energy`` (the paper's
        projection bound); otherwise the two are equal.
    """

    name: str
    summary: str
    has_cycles: bool
    relaxed_bound: bool

    def _module(self) -> ModuleType:
        return importlib.import_module(f"{__name__}.{self.name}")

    def estimate(self, workload: Workload, profile: Profile, sparsity: Sparsity | None = None) -> list[LayerReport]:
        """One report per layer of ``workload``; layers ``sparsity`` does not list (or None) are dense."""
        return self._module().estimate(workload, profile, Sparsity() if sparsity is None else sparsity)

    def estimate_layer(
        self, layer: LayerSpec, profile: Profile, layer_sparsity: LayerSparsity | None = None
    ) -> LayerReport:
        """The report of one layer (None is dense)."""
        ls = LayerSparsity() if layer_sparsity is None else layer_sparsity
        return self._module().estimate_layer(layer, profile, ls)

    def counts(self, layer: LayerSpec, profile: Profile, layer_sparsity: LayerSparsity | None = None) -> AccessCounts:
        """The typed counts of one layer (None is dense); priced, they are its report's energy.

        They depend on the profile's sizes, never on its energies.
        """
        ls = LayerSparsity() if layer_sparsity is None else layer_sparsity
        return self._module().access_counts(layer, profile, ls)

    def coefficients(self, layer: LayerSpec, profile: Profile) -> dict[str, Any]:
        """The fields of a :class:`~energysim.coeffs.LayerCoefficients` row derived from this
        estimator, except name, counts, dense and floor energy."""
        return self._module().coefficients(layer, profile)


ESTIMATORS: dict[str, Estimator] = {
    e.name: e
    for e in (
        Estimator("paper", "the ICLR 2019 analytic model (no time model)", has_cycles=False, relaxed_bound=True),
        Estimator("systolic", "the cycle-level systolic-array model", has_cycles=True, relaxed_bound=False),
    )
}


def get_estimator(name: str) -> Estimator:
    """The estimator called ``name``.

    Raises
    ------
    ValueError
        ``name`` is not a key of :data:`ESTIMATORS`.
    """
    if not isinstance(name, str) or name not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {name!r}")
    return ESTIMATORS[name]
