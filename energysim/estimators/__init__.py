"""Estimators: one signature, ``estimate(workload, profile, sparsity) -> list[LayerReport]``.

``paper``    the ICLR 2019 analytic model (no time model: cycles are None)
``systolic`` the cycle-level systolic-array model
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["ESTIMATOR_NAMES", "get_estimator"]

ESTIMATOR_NAMES = ("paper", "systolic")


def get_estimator(name: str) -> Callable:
    """The ``estimate`` function of estimator ``name``."""
    if name not in ESTIMATOR_NAMES:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATOR_NAMES)}, got {name!r}")
    return importlib.import_module(f"{__name__}.{name}").estimate
