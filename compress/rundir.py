"""Reading a finished ``ecc train`` run folder back: its workload, profile and final pattern."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from energysim import Profile, Sparsity, Workload, build_model, extract_workload, load_profile
from energysim.sparsity import load_checkpoint_file
from energysim.workload import UnmodelledLayerWarning

__all__ = ["Run", "load_run"]


@dataclass(frozen=True)
class Run:
    """What a run folder says about its final model."""

    config: dict
    workload: Workload
    profile: Profile
    sparsity: Sparsity


def load_run(path: str | Path) -> Run:
    """Load ``config.json`` and ``model.pt`` of a run folder written by ``ecc train``."""
    path = Path(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path}: not an `ecc train` run folder (no config.json)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path}: not valid JSON ({exc})") from None
    if not (path / "model.pt").is_file():
        raise FileNotFoundError(f"{path}: the run has no model.pt yet (not finished?)")
    checkpoint, saved = load_checkpoint_file(path)
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise ValueError(f"{checkpoint}: expected the dict `ecc train` writes, with a state_dict")
    model, default_shape = build_model(config["model"], num_classes=saved.get("num_classes"))
    shape = tuple(saved.get("input_shape") or config.get("input_shape") or default_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmodelledLayerWarning)
        workload = extract_workload(model, shape, name=config["model"])
    profile = load_profile(config["profile"], config.get("overrides") or None)
    return Run(config, workload, profile, Sparsity.from_state_dict(saved["state_dict"], workload, str(checkpoint)))
