"""The configuration of a training run: :class:`TrainConfig` and the table that validates it.

Every field of :class:`TrainConfig` has one entry in :data:`FIELDS`, a
:class:`energysim.spec.schema.Field`: the constraint vocabulary of the profile schema
(kind, bounds, choices, nullable), worded for Python callers. A config is checked
against the whole table and then against the rules that join fields (one budget; amp
on CUDA only), and every problem is reported at once, one 'field must be ..., got ...'
line each, as a profile's are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from energysim.estimators import ESTIMATORS
from energysim.spec.schema import Field

from .data import DATASET_NAMES
from .distributed import DEVICES
from .pruner import METHODS, STRUCTURES
from .schedule import is_relative_budget

__all__ = ["FIELDS", "TrainConfig", "config_problems"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the options of ``ecc train``).

    Parameters
    ----------
    model : str
        Zoo name or ``package.module:factory``.
    dataset : str
        A name from :data:`compress.data.DATASET_NAMES`.
    profile : str
        Hardware profile name or YAML path.
    out : str
        Run folder; must be empty or absent unless resuming.
    budget : float, optional
        Energy budget relative to the dense model's proxy energy, > 0.
    budget_abs : float, optional
        Absolute energy budget in the profile's unit; exactly one of the two, or neither
        with a latency budget (the energy is then held at the dense model's).
    latency_budget : float, optional
        Latency budget relative to the dense model's simulated cycles, in (0, 1].
    latency_budget_abs : float, optional
        Latency budget in cycles.
    latency_budget_ms : float, optional
        Latency budget in milliseconds at the profile's ``clock_mhz``; at most one of the three.
    overrides : tuple of str
        Profile overrides ``KEY=VALUE``.
    estimator : {"systolic", "paper"}
        Estimator of the energy model and of the final verification.
    method : str
        Projection method, a key of :data:`compress.pruner.METHODS`.
    structure : str
        Weight structure, one of :data:`compress.pruner.STRUCTURES`: ``none`` (single
        weights), ``tile`` (whole array tiles), ``hybrid`` (tiles, then weights inside) or
        ``nm`` (each layer N:M-compressed or dense-pruned, on an N:M array).
    input_mask : bool
        Alternate weight phases with input-mask phases.
    epochs : int
        Epochs of each weight phase, >= 1.
    pretrain_epochs : int, optional
        Dense epochs first; default 10, or 0 when ``checkpoint`` is given.
    mask_epochs : int, optional
        Epochs of each mask phase; default ``epochs``.
    max_rounds : int
        Most mask phases, >= 1.
    mask_keep, mask_keep_step : float
        Input energy kept by the first mask phase (of the dense input energy of the
        masked layers) and the decrease per further round.
    finetune_epochs : int
        Epochs of fine-tuning after a re-projection by the guarantee.
    lr, momentum, weight_decay : float
        SGD of the weight, pretrain and finetune phases.
    mask_lr : float
        Adam learning rate of the mask phases.
    batch_size : int
    proj_interval : int
        Batches between projections, >= 1.
    seed : int
    checkpoint : str, optional
        State_dict file or ``ecc train`` run folder to start from.
    distill : bool
        Distil from the dense model: 0.5 x the KL divergence of the student's softmax from
        the dense model's (Hinton's distillation at temperature 1) + 0.5 x cross-entropy.
    regrow : bool
        Let pruned weights regrow between projections (the paper's behaviour).
    data_root : str, optional
    input_shape : tuple of int, optional
        Per-sample input shape; default the model's.
    strict : bool
        Fail on layers the estimators do not model.
    device : str
        ``cpu`` (deterministic), ``cuda`` (under torchrun: ``cuda:LOCAL_RANK``),
        ``auto`` (CUDA when available) or an explicit device such as ``cuda:1``.
    amp : bool
        Mixed precision (float16 autocast and gradient scaling); CUDA only.
    workers : int
        Data-loading worker processes per training process, >= 0 (0: load in the
        training process; image folders want 8 or more).
    quiet : bool
        No progress bars.
    """

    model: str
    dataset: str
    profile: str
    out: str
    budget: float | None = None
    budget_abs: float | None = None
    latency_budget: float | None = None
    latency_budget_abs: float | None = None
    latency_budget_ms: float | None = None
    overrides: tuple[str, ...] = ()
    estimator: str = "systolic"
    method: str = "ecc"
    structure: str = "none"
    input_mask: bool = False
    epochs: int = 10
    pretrain_epochs: int | None = None
    mask_epochs: int | None = None
    max_rounds: int = 3
    mask_keep: float = 0.9
    mask_keep_step: float = 0.1
    finetune_epochs: int = 1
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    mask_lr: float = 0.01
    batch_size: int = 32
    proj_interval: int = 10
    seed: int = 0
    checkpoint: str | None = None
    distill: bool = True
    regrow: bool = True
    data_root: str | None = None
    input_shape: tuple[int, ...] | None = None
    strict: bool = False
    device: str = "cpu"
    amp: bool = False
    workers: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:
        # Sequences become tuples; anything else (a string included) is left for the table to report.
        for name in ("overrides", "input_shape"):
            value = getattr(self, name)
            if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
                object.__setattr__(self, name, tuple(value))
        problems = config_problems(self)
        if problems:
            raise ValueError("invalid training configuration:\n" + "\n".join(problems))


def _device_type(device: Any) -> str | None:
    """``auto`` or the torch device type of ``device``; None if it names no device."""
    if device == "auto":
        return "auto"
    try:
        return torch.device(device).type
    except (RuntimeError, TypeError):
        return None


# Builders of the table's fields: each words its constraint the way the messages say it.
def _int(minimum: int | None = None, *, nullable: bool = False, doc: str) -> Field:
    """An int (numpy's too, never a float), at least ``minimum``."""
    what = "an int" if minimum is None else f"an int >= {minimum}"
    return Field("int", minimum=minimum, strict=True, nullable=nullable,
                 expected=f"None or {what}" if nullable else what, doc=doc)


def _number(*, positive: bool = False, minimum: float | None = None, maximum: float | None = None,
            below: float | None = None, nullable: bool = False, doc: str) -> Field:
    """A finite real number within the bounds given."""
    low = "(0" if positive else f"[{minimum:g}"
    if maximum is not None:
        what = f"a number in {low}, {maximum:g}]"
    elif below is not None:
        what = f"a number in {low}, {below:g})"
    else:
        what = "a number > 0" if positive else f"a number >= {minimum:g}"
    return Field("float", positive=positive, minimum=minimum, maximum=maximum, below=below, nullable=nullable,
                 expected=what, doc=doc)


def _choice(names: Any, doc: str) -> Field:
    """One of ``names`` (the keys of a registry, or a tuple of names)."""
    names = tuple(names)
    return Field("choice", choices=names, expected=f"one of {', '.join(names)}", doc=doc)


def _flag(doc: str) -> Field:
    """True or False (not 0 or 1)."""
    return Field("bool", expected="True or False", doc=doc)


def _optional_text(doc: str) -> Field:
    """None or any string."""
    return Field("str", nullable=True, expected="None or a string", doc=doc)


def _text(doc: str) -> Field:
    """A non-empty string."""
    return Field("str", test=lambda v: v != "", expected="a non-empty string", doc=doc)


#: One entry per field of :class:`TrainConfig`: what a value must be.
FIELDS: dict[str, Field] = {
    "model": _text("zoo name or package.module:factory"),
    "dataset": _choice(DATASET_NAMES, "dataset name"),
    "profile": _text("hardware profile name or YAML path"),
    "out": _text("run folder"),
    "budget": Field("float", nullable=True, test=is_relative_budget, expected="a relative energy in (0, 1]",
                    doc="energy budget relative to the dense model's"),
    "budget_abs": _number(positive=True, nullable=True, doc="energy budget in the profile's unit"),
    "latency_budget": Field("float", nullable=True, test=is_relative_budget, expected="a relative latency in (0, 1]",
                            doc="latency budget relative to the dense model's simulated cycles"),
    "latency_budget_abs": _number(positive=True, nullable=True, doc="latency budget in cycles"),
    "latency_budget_ms": _number(positive=True, nullable=True, doc="latency budget in ms at the profile's clock"),
    "overrides": Field("tuple", items=Field("str"), expected="a tuple of 'KEY=VALUE' strings",
                       doc="profile overrides"),
    "estimator": _choice(ESTIMATORS, "estimator of the energy model and the final check"),
    "method": _choice(METHODS, "projection method"),
    "structure": _choice(STRUCTURES, "weight structure"),
    "input_mask": _flag("alternate weight and input-mask phases"),
    "epochs": _int(1, doc="epochs per weight phase"),
    "pretrain_epochs": _int(0, nullable=True, doc="dense epochs first (None: 10, or 0 from a checkpoint)"),
    "mask_epochs": _int(0, nullable=True, doc="epochs per mask phase (None: epochs)"),
    "max_rounds": _int(1, doc="most input-mask rounds"),
    "mask_keep": _number(positive=True, maximum=1, doc="input energy kept by the first mask phase"),
    "mask_keep_step": _number(minimum=0, below=1, doc="decrease of mask_keep per further round"),
    "finetune_epochs": _int(0, doc="fine-tuning epochs after a re-projection"),
    "lr": _number(positive=True, doc="SGD learning rate"),
    "momentum": _number(minimum=0, below=1, doc="SGD momentum"),
    "weight_decay": _number(minimum=0, doc="SGD weight decay"),
    "mask_lr": _number(positive=True, doc="Adam learning rate of the input masks"),
    "batch_size": _int(1, doc="samples per step and process"),
    "proj_interval": _int(1, doc="batches between projections"),
    "seed": _int(doc="seed of initialisation and data order"),
    "checkpoint": _optional_text("state_dict file or run folder to start from"),
    "distill": _flag("distil from the dense model"),
    "regrow": _flag("let pruned weights regrow between projections"),
    "data_root": _optional_text("folder holding the dataset files"),
    "input_shape": Field("tuple", nullable=True, items=Field("int", positive=True, strict=True),
                         test=lambda shape: len(shape) > 0,
                         expected="None or a tuple of positive ints", doc="per-sample input shape"),
    "strict": _flag("fail on layers the estimators do not model"),
    "device": Field("str", test=lambda v: _device_type(v) is not None,
                    expected=f"one of {', '.join(DEVICES)} or a torch device such as 'cuda:0'",
                    doc="where the run trains"),
    "amp": _flag("mixed precision, CUDA only"),
    "workers": _int(0, doc="data-loading processes per training process"),
    "quiet": _flag("no progress bars"),
}


def config_problems(config: TrainConfig) -> list[str]:
    """Every problem of ``config``, as 'field must be ..., got ...' lines.

    Each field is checked against :data:`FIELDS`; then the rules that join fields: exactly
    one of ``budget`` and ``budget_abs`` (or neither, with a latency budget), at most one
    latency budget, and ``amp`` on a CUDA device (or ``auto``) only.

    Parameters
    ----------
    config : TrainConfig

    Returns
    -------
    list of str
        Empty when the config is valid.
    """
    problems = []
    for name, spec in FIELDS.items():
        value = getattr(config, name)
        expected = spec.check(value)
        if expected is not None:
            problems.append(f"{name} must be {expected}, got {value!r}")
    latency = {k: getattr(config, k) for k in ("latency_budget", "latency_budget_abs", "latency_budget_ms")}
    given = [k for k, v in latency.items() if v is not None]
    if (config.budget is None) == (config.budget_abs is None) and not (given and config.budget_abs is None):
        problems.append(f"exactly one of budget and budget_abs must be given (or neither, with a latency budget), "
                        f"got budget={config.budget!r}, budget_abs={config.budget_abs!r}")
    if len(given) > 1:
        problems.append("at most one of latency_budget, latency_budget_abs and latency_budget_ms may be given, got "
                        + ", ".join(f"{k}={latency[k]!r}" for k in given))
    if config.amp is True and _device_type(config.device) not in (None, "cuda", "auto"):
        problems.append(f"amp must be False on device {config.device!r}: mixed precision runs on CUDA only "
                        "(use device 'cuda' or 'auto')")
    return problems
