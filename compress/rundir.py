"""The ``ecc train`` run folder: where each of its files lives, and reading a finished one back.

:class:`RunFolder` spells the name of every file of a run folder, once: the trainer
writes through it, the sweep and the CLI read through it, and :func:`model_file`
turns a run folder given on a command line into the model file the loaders of
:mod:`energysim.sparsity` take (they take files only). :func:`load_run` reads a
finished run back: its workload, profile and final pattern.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from energysim import MODEL_NAMES, Profile, Sparsity, Workload, build_model, extract_workload, load_profile
from energysim.sparsity import load_checkpoint_file
from energysim.workload import UnmodelledLayerWarning

__all__ = ["Run", "RunFolder", "load_run", "model_file"]


@dataclass(frozen=True)
class RunFolder:
    """The files of an ``ecc train`` run folder (see :mod:`compress.train`).

    Parameters
    ----------
    root : str or pathlib.Path
        The run folder; it need not exist.

    Examples
    --------
    >>> RunFolder("runs/a").model.as_posix()
    'runs/a/model.pt'
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def checkpoint(self) -> Path:
        """``checkpoint.pt``: everything a resumed run needs, rewritten after every epoch."""
        return self.root / "checkpoint.pt"

    @property
    def config(self) -> Path:
        """``config.json``: the run's :class:`~compress.train.TrainConfig` as JSON."""
        return self.root / "config.json"

    @property
    def model(self) -> Path:
        """``model.pt``: the final state_dict with its masks (``ecc simulate --checkpoint``)."""
        return self.root / "model.pt"

    @property
    def report(self) -> Path:
        """``report.json``: the run's report; its presence means the run finished."""
        return self.root / "report.json"

    @property
    def simulated(self) -> Path:
        """``simulated.json``: the full estimator's report of the final pattern (an ``energysim.Report``)."""
        return self.root / "simulated.json"

    @property
    def log_csv(self) -> Path:
        """``log.csv``: one flattened row per epoch."""
        return self.root / "log.csv"

    @property
    def log_jsonl(self) -> Path:
        """``log.jsonl``: one JSON object per epoch."""
        return self.root / "log.jsonl"

    @property
    def error(self) -> Path:
        """``error.json``: why ``ecc sweep`` could not train the run (a cell finished as infeasible)."""
        return self.root / "error.json"


def model_file(path: str | Path) -> Path:
    """The model file of ``path``: a run folder's ``model.pt``; any other path stays itself.

    For the edges that accept either (``--checkpoint`` of ``ecc simulate`` and ``ecc
    train``): the loaders of :mod:`energysim.sparsity` take a file.

    Parameters
    ----------
    path : str or pathlib.Path
        A checkpoint file, or an ``ecc train`` run folder.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileNotFoundError
        If ``path`` is a folder without a model file.

    Examples
    --------
    >>> model_file("no/such/weights.pt").as_posix()
    'no/such/weights.pt'
    """
    path = Path(path)
    if not path.is_dir():
        return path
    model = RunFolder(path).model
    if not model.is_file():
        raise FileNotFoundError(f"{path}: not an `ecc train` run directory (no {model.name} inside)")
    return model


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
    folder = RunFolder(path)
    config_path = folder.config
    if not config_path.is_file():
        raise FileNotFoundError(f"{path}: not an `ecc train` run folder (no {config_path.name})")
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
    if not folder.model.is_file():
        raise FileNotFoundError(f"{path}: the run has no {folder.model.name} yet (not finished?)")
    checkpoint, saved = load_checkpoint_file(folder.model)
    if not isinstance(saved, dict) or not isinstance(saved.get("state_dict"), dict):
        raise ValueError(f"{checkpoint}: expected the dict `ecc train` writes, with a state_dict")
    _check_fields(checkpoint, saved, required=())
    try:
        shape = saved.get("input_shape") or config.get("input_shape")
        channels = shape[0] if shape and len(shape) == 3 else None
        model, default_shape = build_model(config["model"], num_classes=saved.get("num_classes"), in_channels=channels)
        shape = tuple(shape or default_shape)
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
