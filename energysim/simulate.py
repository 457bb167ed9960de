"""``simulate``: a model (or workload), a profile and a sparsity pattern in, a :class:`Report` out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .estimators import get_estimator
from .report import Report
from .sparsity import Sparsity
from .spec import Profile, load_profile
from .workload import Workload, extract_workload

__all__ = ["simulate"]


def simulate(
    model_or_workload: torch.nn.Module | Workload,
    profile: Profile | str | Path,
    estimator: str = "systolic",
    sparsity: Sparsity | None = None,
    input_shape: Sequence[int] | None = None,
) -> Report:
    """Estimate energy (and, for an estimator with a time model, cycles) of every compute layer.

    Parameters
    ----------
    model_or_workload : torch.nn.Module or Workload
        A model (its workload is extracted with ``input_shape``) or a ready workload.
    profile : Profile, str or Path
        A loaded profile, a shipped profile name or a YAML path.
    estimator : str
        A key of :data:`energysim.estimators.ESTIMATORS`: ``paper`` is the ICLR 2019
        analytic model; ``systolic`` (default) the cycle-level model.
    sparsity : Sparsity, optional
        The pattern to simulate. Default: the model's own weights (exact zeros and
        pruning masks) with dense inputs, or dense for a bare workload.
    input_shape : sequence of int, optional
        Per-sample input shape (C, H, W); required with a model.

    Returns
    -------
    Report

    Examples
    --------
    >>> from energysim import simulate
    >>> from energysim.zoo import build_model
    >>> model, shape = build_model("lenet5")
    >>> round(simulate(model, "eyeriss-iclr19", "paper", input_shape=shape).energy_relaxed)
    17107544
    """
    if isinstance(model_or_workload, Workload):
        workload = model_or_workload
        default = Sparsity()
    elif isinstance(model_or_workload, torch.nn.Module):
        if input_shape is None:
            raise ValueError("input_shape is required when simulating a torch model")
        workload = extract_workload(model_or_workload, input_shape)
        default = Sparsity.from_model(model_or_workload, workload)
    else:
        raise TypeError(f"expected a torch.nn.Module or a Workload, got {type(model_or_workload).__name__}")
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    sparsity = default if sparsity is None else sparsity.check(workload)
    layers = get_estimator(estimator).estimate(workload, profile, sparsity)
    return Report(
        model=workload.model,
        profile=profile.name,
        profile_digest=profile.digest,
        estimator=estimator,
        units=profile.units,
        layers=layers,
        unmodelled=[f"{name} ({kind})" for name, kind in workload.unmodelled],
    )
