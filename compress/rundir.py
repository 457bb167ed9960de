"""Reading a finished ``ecc train`` run folder back: its workload, profile and final pattern."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from energysim import MODEL_NAMES, Profile, Sparsity, Workload, build_model, extract_workload, load_profile
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
    """Load ``config.json`` and ``model.pt`` of a run folder written by ``ecc train``.

    Both files are data: ``config.json`` must be a JSON object whose fields have the
    types ``ecc train`` writes, and ``model.pt`` is checksum-verified and read with
    ``weights_only=True`` (:func:`energysim.sparsity.load_checkpoint_file`). The model
    must be a zoo name: a run of a ``package.module:factory`` model is refused, since
    building it would import and run code that a file names.

    Parameters
    ----------
    path : str or pathlib.Path
        The run folder.

    Returns
    -------
    Run

    Raises
    ------
    FileNotFoundError
        If the folder has no ``config.json`` or no ``model.pt``.
    ValueError
        If either file is damaged or does not hold what ``ecc train`` writes; the
        one-line message names the file and the field.
    """
    path = Path(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path}: not an `ecc train` run folder (no config.json)")
    try:
        config = json.loads(config_path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
    _check_fields(config_path, config, required=("model", "profile"))
    if config["model"] not in MODEL_NAMES:
        raise ValueError(
            f"{config_path}: model must be one of the zoo's {', '.join(MODEL_NAMES)}, got {config['model']!r} "
            "(a run folder is data: the model factory it names is not imported)"
        )
    if not (path / "model.pt").is_file():
        raise FileNotFoundError(f"{path}: the run has no model.pt yet (not finished?)")
    checkpoint, saved = load_checkpoint_file(path)
    if not isinstance(saved, dict) or not isinstance(saved.get("state_dict"), dict):
        raise ValueError(f"{checkpoint}: expected the dict `ecc train` writes, with a state_dict")
    _check_fields(checkpoint, saved, required=())
    try:
        model, default_shape = build_model(config["model"], num_classes=saved.get("num_classes"))
        shape = tuple(saved.get("input_shape") or config.get("input_shape") or default_shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnmodelledLayerWarning)
            workload = extract_workload(model, shape, name=config["model"])
    except ValueError as exc:
        raise ValueError(f"{path}: model {config['model']!r} of the run: {exc}") from None
    try:
        profile = load_profile(config["profile"], config.get("overrides") or None)
    except ValueError as exc:
        raise ValueError(f"{config_path}: profile {config['profile']!r}: {exc}") from None
    state = saved["state_dict"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{checkpoint}: state_dict must map names to tensors")
    return Run(config, workload, profile, Sparsity.from_state_dict(state, workload, str(checkpoint)))


def _is_shape(value: object) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value
    )


# The fields of config.json and model.pt that load_run reads: (check, what a value must be).
_FIELDS = {
    "model": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "profile": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "overrides": (lambda v: v is None or (isinstance(v, list) and all(isinstance(o, str) for o in v)),
                  "null or a list of 'KEY=VALUE' strings"),
    "input_shape": (lambda v: v is None or _is_shape(v), "null or a list of positive ints"),
    "num_classes": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0),
                    "null or a positive int"),
}


def _check_fields(source: Path, values: dict, required: tuple[str, ...]) -> None:
    """ValueError naming the first field of ``values`` that is missing or of the wrong type."""
    for name in required:
        if name not in values:
            raise ValueError(f"{source}: no field {name!r}")
    for name, (ok, what) in _FIELDS.items():
        if name in values and not ok(values[name]):
            raise ValueError(f"{source}: {name} must be {what}, got {values[name]!r}")
