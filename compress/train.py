"""Energy-constrained training: projected SGD, input-mask phases, a guaranteed budget.

:func:`train` runs one configuration (:class:`TrainConfig`) into a run folder and
returns a :class:`TrainResult`. The run is a sequence of phases, each a number of
epochs, checkpointed after every epoch:

``pretrain``
    Dense SGD from the seeded initialisation (skipped when starting from
    ``checkpoint``). The result is the dense reference and, with ``distill``, the
    teacher.
``weights``
    Projected SGD (Yang, Zhu and Liu, ICLR 2019, algorithm 1). After every
    ``proj_interval`` batches and at the end of every epoch the weights are projected
    onto an energy budget with the method's projection (``ecc``: the weighted sparse
    projection of :mod:`compress.projection`); the budget falls geometrically from the
    model's proxy energy at the start of the phase to the target, and the last
    projection of the phase is exactly at the target. As in the paper's code, pruned
    weights are set to zero and may regrow between projections (``regrow``): the
    masks are released to all ones after every projection but the phase's last.
    Every epoch therefore ends with the pruned weights at zero, and the phase with the
    masks in place. The projections, their schedule and the guarantee below are a
    :class:`compress.EnergyPruner`'s: this module is the loop around it (the budget
    arithmetic is :mod:`compress.schedule`).
``mask`` (with ``input_mask``)
    The weights are frozen; the conv layers' input masks learn in [0, 1] (Adam),
    clamped after each step, projected every ``proj_interval`` batches onto an input
    energy budget (``mask_keep`` of the dense input energy in the first round,
    ``mask_keep_step`` less each further round) and rounded to {0, 1} at the end.
    Mask and weight phases alternate until the validation accuracy after a weight
    phase stops improving (or ``max_rounds``); the best weight phase is kept.
``finetune``
    Only when the guarantee below re-projected: SGD with the masks fixed.

The guarantee (issue 6, requirement 5): after the last weight phase the masks are
simulated with the full estimator. If the simulated energy exceeds the budget, the
weights are projected again at the proxy budget ``proxy(current) * budget /
simulated`` (each step drops at least one weight) until the simulation is within the
budget, then fine-tuned with the masks fixed. The report gives both energies.

The run folder holds ``config.json``, ``checkpoint.pt`` (written atomically after
every epoch and phase change: model, optimizer, teacher, RNG states, phase and
schedule position, log), ``log.jsonl`` and ``log.csv`` (one row per epoch:
``epoch``, ``phase``, ``phase_epoch``, ``round``, ``lr``, ``loss`` (mean training
objective), ``train_accuracy`` (on the batches as they were trained),
``val_accuracy``, ``budget`` (of the last projection), ``energy_proxy``, per-layer
``density`` and ``input_density``, ``wall_s``), ``model.pt`` (the final state_dict
with its masks, read by ``ecc simulate --checkpoint RUN_DIR``), ``simulated.json`` (the
full estimator's per-layer report of the final pattern) and ``report.json``.

Validation accuracy is the test split's, as in the paper's code. The run is
deterministic for a seed on CPU: the data order comes from a generator seeded with
``seed`` whose state, with torch's, is in every checkpoint, so a resumed run ends
bitwise equal to an uninterrupted one.

Devices and processes: ``device`` is ``cpu``, ``cuda`` or ``auto`` (CUDA when
available); ``amp`` adds float16 autocast with gradient scaling, on CUDA only (asking
for it on the CPU is an error rather than a silent no-op). Started by ``torchrun
--nproc_per_node N``, the same call trains data-parallel with one process per device
(:mod:`compress.distributed`): ``batch_size`` is per process, rank 0 simulates, writes
the run folder and shows progress, every rank computes the same projections, and the
ranks' model states are compared at every checkpoint. A distributed run is
reproducible for a seed and world size on CPU; its data order differs from a single
process's.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from energysim.files import atomic_write_json, json_text

from .distributed import Context, session
from .budget import EnergyModel
from .checkpoint import (
    CheckpointError,
    atomic_torch_save,
    atomic_write_text,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from .config import TrainConfig
from .masks import (
    add_input_masks,
    input_mask_layers,
    clamp_input_masks,
    effective_weights,
    input_masks,
    load_masked_state_dict,
    project_input_masks,
    round_input_masks,
    set_weight_masks,
    weight_masks,
)
from .pruner import METHODS, BudgetNotMetError, EnergyPruner, ProjectFn, meet_budget
from .rundir import RunFolder, model_file
from .schedule import InfeasibleBudgetError, after_weight_phase, mask_keep, weight_target

__all__ = [
    "METHODS",
    "BudgetNotMetError",
    "ProjectFn",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "meet_budget",
    "train",
]

_DEFAULT_PRETRAIN_EPOCHS = 10
_EVAL_BATCH = 1000
# Distillation is Hinton, Vinyals and Dean's (2015): _DISTILL_WEIGHT x T^2 x KL(teacher || student)
# of the softmaxes at temperature T, plus (1 - _DISTILL_WEIGHT) x cross-entropy (the paper's 0.5/0.5).
# Its gradient on the logits is bounded, T x (student - teacher probabilities) per sample, like the
# cross-entropy's; at T = 1 the objective is the cross-entropy against (label + teacher) / 2. It was
# an MSE on logits, whose gradient grows with the logit gap: at batch 4, lr 0.01 and momentum 0.9 a
# noisy step after a projection opened a gap, the next steps widened it until every ReLU of fc1 and
# fc2 was dead (issue 11 item 5, lenet5 on digits: constant output, chance accuracy, a finite loss
# of 21, so no divergence error). Weight phases from that run's dense model (accuracy 0.81), by data
# order: the MSE collapsed 4 of 4 at batch 4; KL at T = 4 collapsed 1 of 3; at T = 2, 6 of 6 ended
# above 0.91 at batch 4 but 3 of 3 below 0.45 at batch 2; at T = 1 all 9 ended above 0.91 at batch 4
# and 2, where plain cross-entropy ended between 0.30 and 0.85.
_DISTILL_WEIGHT = 0.5
_DISTILL_TEMPERATURE = 1.0
# A run has collapsed when the final model kept at most this share of the dense model's accuracy
# above chance, and the dense model was at least _COLLAPSE_MIN_GAIN above chance (see train()).
_COLLAPSE_KEPT = 0.1
_COLLAPSE_MIN_GAIN = 0.1
# Config fields that may differ between a run and its resumption: the folder's name, and what
# decides where and how fast it runs (the checkpoint is device-independent).
_RESUMABLE_CHANGES = ("quiet", "out", "device", "workers")
_TRAINING_PHASES = ("pretrain", "weights", "mask", "finetune")


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite (on the first batch: the starting weights or the
    data are unusable; later: the learning rate is too high)."""


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    report : dict
        The content of ``report.json`` (see :func:`train`).
    run_dir : pathlib.Path
    model : torch.nn.Module
        The final model, with its weight and input masks installed.
    """

    report: dict[str, Any]
    run_dir: Path
    model: nn.Module


def _image_channels(shape: tuple[int, ...]) -> int | None:
    """C of a (C, H, W) input shape, for zoo models that take any number of channels."""
    return shape[0] if len(shape) == 3 else None


def _distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Hinton's distillation objective (see ``_DISTILL_WEIGHT``), averaged over the batch."""
    t = _DISTILL_TEMPERATURE
    soft = F.kl_div(
        F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean", log_target=True,
    )
    return _DISTILL_WEIGHT * t * t * soft + (1 - _DISTILL_WEIGHT) * F.cross_entropy(logits, y)


def _collapsed(accuracy: float, dense_accuracy: float | None, num_classes: int) -> bool:
    """Whether the final accuracy fell to chance while the dense one was far above it (see train())."""
    if dense_accuracy is None:
        return False
    chance = 1 / num_classes
    gain = dense_accuracy - chance
    return gain >= _COLLAPSE_MIN_GAIN and accuracy - chance <= _COLLAPSE_KEPT * gain


@dataclass
class _State:
    """Where a run is, saved in every checkpoint (plain values only)."""

    phase: str = "pretrain"
    epoch: int = 0  # epochs completed in the current phase
    round: int = 0  # input-mask rounds started
    epochs_done: int = 0
    budget_abs: float = 0.0
    energy_dense: float = 0.0
    cycles_dense: int | None = None
    dense_accuracy: float | None = None
    mask_budget: float | None = None  # input energy allowed in the current mask phase
    best_accuracy: float | None = None
    best_round: int | None = None
    wall_time_s: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] | None = None


def train(config: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train ``config.model`` on ``config.dataset`` under the energy budget.

    Parameters
    ----------
    config : TrainConfig
    resume : bool
        Continue the run in ``config.out`` from its last checkpoint. The config must
        equal the one the run started with (``quiet`` and the spelling of ``out`` may
        differ). The result equals that of an uninterrupted run (bitwise on CPU).

    Returns
    -------
    TrainResult
        ``report`` holds ``accuracy``, ``dense_accuracy``, ``budget`` (relative to
        ``energy_dense``), ``budget_abs``, ``energy_proxy``, ``energy_simulated``,
        ``energy_dense`` (simulated, every weight kept, dense inputs),
        ``energy_simulated_relative``, ``estimator``,
        ``profile``, ``layers`` (per layer ``name``, ``density``, ``input_density``,
        ``energy``, ``energy_proxy``), ``wall_time_s``, ``epochs``, ``seed``,
        ``method``, ``chance_accuracy`` (1 / number of classes), ``collapsed`` and
        more. ``collapsed`` is True when the final model fell to chance while the dense
        model was far above it: ``accuracy - chance <= 0.1 * (dense_accuracy -
        chance)`` and ``dense_accuracy - chance >= 0.1``. With ten classes and a dense
        accuracy of 0.81, a run ending at or below 0.1 + 0.1 * 0.71 = 0.171 has
        collapsed; with a dense accuracy below 0.2 no run counts as collapsed. Such a
        run still returns (``ecc train`` warns, ``ecc sweep`` flags its cell).

    Raises
    ------
    FileExistsError
        If ``config.out`` is not empty and ``resume`` is False.
    FileNotFoundError
        If resuming and the run folder has no checkpoint.
    compress.checkpoint.CheckpointError
        If the checkpoint is empty, unreadable or fails its checksum, or the starting
        weights hold NaN or infinite values (the message names the file and tensor).
    compress.projection.InfeasibleBudgetError
        If the budget is below the minimum achievable energy.
    BudgetNotMetError
        If the simulated energy cannot be brought within the budget.
    TrainingDivergedError
        If the loss becomes NaN or infinite.
    ValueError
        For an invalid configuration, or one that differs from the resumed run's; for
        CUDA (or ``amp``) asked for on a machine without it; when resuming a finished
        run whose ``report.json`` or ``model.pt`` was damaged since.
    compress.distributed.RankMismatchError
        If the ranks of a distributed run ever hold different model states.

    Notes
    -----
    Under ``torchrun`` every process calls this function; each returns the same report
    and its own copy of the model. See :mod:`compress.distributed`.
    """
    run_dir = Path(config.out)
    with session(config.device) as ctx:
        if config.amp and ctx.device.type != "cuda":
            raise ValueError(
                f"amp needs a CUDA device, but device {config.device!r} resolved to {ctx.device} "
                "(torch.cuda.is_available() is False): drop --amp or run on a GPU"
            )
        saved = ctx.on_main(_open_run_dir, config, run_dir, resume)
        if ctx.device.type == "cpu":
            # The CPU kernels these models use are deterministic already; the switch would only
            # cost seconds of imports (torch._inductor) in every process.
            return _Run(config, run_dir, saved, ctx).execute()
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return _Run(config, run_dir, saved, ctx).execute()
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _open_run_dir(config: TrainConfig, run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from (None for a new run), after checking the folder."""
    if not resume:
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise FileExistsError(
                f"{run_dir} is not an empty folder: pass --resume to continue the run there, or choose another --out"
            )
        return None
    path = RunFolder(run_dir).checkpoint
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no checkpoint to resume from (the run never finished its setup); "
            "delete the folder and start again without --resume"
        )
    saved = load_checkpoint(path)
    missing = [key for key in ("config", "state", "model", "rng", "pruner") if key not in saved]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint has no {', '.join(missing)}")
    fields = {f.name for f in dataclasses.fields(_State)}
    if not isinstance(saved["state"], dict) or set(saved["state"]) != fields:
        raise CheckpointError(
            f"{path}: the checkpoint's run state is not the one this version of ecc train writes: start the run again"
        )
    _check_same_config(config, saved["config"], path)
    for leftover in run_dir.glob(".*.tmp"):  # files of an atomic write that was killed
        leftover.unlink()
    if saved["state"].get("phase") == "done":
        _check_finished_run(run_dir, saved["state"].get("report"), path)
    return saved


def _check_finished_run(run_dir: Path, report: Any, checkpoint: Path) -> None:
    """A finished run's report.json must hold the report of its checkpoint, and model.pt must read."""
    from energysim import torchfile

    path = RunFolder(run_dir).report
    try:
        found = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{path}: not valid JSON ({exc}): the finished run's report was damaged after it was written"
        ) from None
    if found != json.loads(json_text(report)):  # as written: non-finite numbers are null
        raise ValueError(
            f"{path}: differs from the report in {checkpoint.name}: the finished run's report was changed or damaged "
            "after it was written"
        )
    torchfile.load(RunFolder(run_dir).model, "model file")


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as plain values (tuples become lists), for JSON and checkpoints."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def _check_same_config(config: TrainConfig, saved: Mapping[str, Any], path: Path) -> None:
    """ValueError listing every field where ``config`` differs from the run's saved config."""
    current = _config_dict(config)
    diffs = [
        f"{k}: the run has {saved.get(k)!r}, got {v!r}"
        for k, v in current.items()
        if k not in _RESUMABLE_CHANGES and saved.get(k) != v
    ]
    if diffs:
        raise ValueError(f"{path}: cannot resume with a different configuration:\n" + "\n".join(diffs))


class _Run:
    """One run: the model, data, energy model and state, and the phase machine."""

    def __init__(self, config: TrainConfig, run_dir: Path, saved: dict[str, Any] | None, ctx: Context) -> None:
        from energysim import load_profile
        from energysim.workload import extract_workload
        from energysim.zoo import MODEL_NAMES, build_model, default_input_shape

        from .data import load_dataset

        self.config = config
        self.run_dir = run_dir
        self.files = RunFolder(run_dir)
        self.ctx = ctx
        self.device = ctx.device
        c = config
        shape = c.input_shape
        if shape is None:
            shape = default_input_shape(c.model) if c.model in MODEL_NAMES else build_model(c.model)[1]
            if shape is None:
                raise ValueError(f"{c.model} does not say its input shape: pass input_shape (--input-shape C,H,W)")
        self.input_shape = tuple(shape)
        self.data = load_dataset(c.dataset, c.data_root, input_shape=self.input_shape if len(shape) == 3 else None)
        self.flatten = len(shape) == 1
        if self.flatten and math.prod(self.data.input_shape) != shape[0]:
            raise ValueError(
                f"{c.model} takes {shape[0]} input features but {c.dataset} images have "
                f"{math.prod(self.data.input_shape)} ({'x'.join(map(str, self.data.input_shape))})"
            )
        torch.manual_seed(c.seed)
        self.model, _ = build_model(c.model, num_classes=self.data.num_classes, in_channels=_image_channels(self.input_shape))
        self.workload = extract_workload(self.model, self.input_shape, name=c.model, strict=c.strict)
        self.profile = load_profile(c.profile, list(c.overrides))
        # The coefficient table comes from the simulator: built on rank 0 only.
        self.energy = ctx.on_main(EnergyModel, self.workload, self.profile, c.estimator)
        self.pruner: EnergyPruner | None = None  # made by _start or _restore
        self.generator = torch.Generator().manual_seed(c.seed)
        self.sampler = ctx.train_sampler(self.data.train, c.seed)
        loading = dict(num_workers=c.workers, persistent_workers=c.workers > 0, pin_memory=self.device.type == "cuda")
        self.train_loader = DataLoader(
            self.data.train, batch_size=c.batch_size, shuffle=self.sampler is None, sampler=self.sampler,
            generator=self.generator, **loading,
        )
        self.test_loader = DataLoader(ctx.eval_share(self.data.test), batch_size=_EVAL_BATCH, **loading)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=c.amp)
        self.net: nn.Module = self.model  # the model as trained: in DistributedDataParallel across ranks
        self.teacher: nn.Module | None = None
        self.best: dict[str, torch.Tensor] | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.simulated = None
        self.input_costs = self.energy.input_costs() if config.input_mask else {}
        if saved is None:
            self._start()
        else:
            self._restore(saved)

    # -- setup ----------------------------------------------------------------------

    def _mask_layers(self) -> dict[str, tuple[int, ...]]:
        """Input-mask shapes of the conv layers (:func:`compress.masks.input_mask_layers`)."""
        return input_mask_layers(self.workload)

    def _fresh_model(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """A new instance of the architecture holding ``state`` (masks included)."""
        from energysim.zoo import build_model

        model, _ = build_model(self.config.model, num_classes=self.data.num_classes, in_channels=_image_channels(self.input_shape))
        load_masked_state_dict(model, state)
        return model.to(self.device)

    def _start(self) -> None:
        """A new run: budget check, starting weights, masks, first checkpoint."""
        from energysim import Sparsity, simulate

        c = self.config
        # A relative budget is relative to the dense model's energy on the full estimator: the
        # quantity the final pattern is verified against (the proxy table may be an upper bound).
        dense_report = self.ctx.on_main(lambda: simulate(self.workload, self.profile, c.estimator, Sparsity()))
        dense = dense_report.energy
        if c.input_mask and not self._mask_layers():
            raise ValueError(
                "input masks apply to the inputs of conv layers that their own Conv2d module runs (not to linear "
                f"layers or attention products), and {c.model} has none: drop --input-mask"
            )
        start_inputs = {}
        if c.checkpoint is not None:
            start_inputs = self._load_start(c.checkpoint)
        self.pruner = self._make_pruner(dense, dense_report.cycles)
        shapes = dict(self._mask_layers()) if c.input_mask else {}
        shapes.update({n: tuple(m.shape) for n, m in start_inputs.items()})
        add_input_masks(self.model, {n: shapes[n] for n in self.workload.layer_names if n in shapes})
        with torch.no_grad():
            for name, mask in input_masks(self.model).items():
                if name in start_inputs:
                    mask.copy_(start_inputs[name])
        self.model.to(self.device)
        self.state = _State(budget_abs=self.pruner.plan.target, energy_dense=float(dense),
                            cycles_dense=dense_report.cycles)
        self._enter("pretrain")
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._save()
        if self.ctx.is_main:
            atomic_write_json(self.files.config, _config_dict(c))

    def _make_pruner(self, energy_dense: float, cycles_dense: int | None) -> EnergyPruner:
        """The pruner of the weight phases: the run's method, budgets, interval and regrowth; with
        input masks, budgets down to the floor the last mask round reaches."""
        c = self.config
        last_keep = max(mask_keep(c.mask_keep, c.mask_keep_step, c.max_rounds), 0.0) if c.input_mask else None
        latency_abs = c.latency_budget_abs
        if c.latency_budget_ms is not None:  # ms at the profile's clock: MHz x 1e3 cycles per ms
            latency_abs = c.latency_budget_ms * self.profile.clock_mhz * 1e3
        return EnergyPruner(
            self.model, self.profile, budget=c.budget, budget_abs=c.budget_abs, input_shape=self.input_shape,
            estimator=c.estimator, method=c.method, structure=c.structure, interval=c.proj_interval, regrow=c.regrow,
            input_mask_keep=last_keep, energy_model=self.energy, energy_dense=energy_dense,
            latency_budget=c.latency_budget, latency_budget_abs=latency_abs, cycles_dense=cycles_dense,
        )

    def _load_start(self, source: str) -> dict[str, torch.Tensor]:
        """Load starting weights (plain or masked state_dict, or a run folder); return its input masks."""
        from energysim.sparsity import load_checkpoint_state

        shown = self.ctx.on_main(model_file, source)  # a run folder means its model file
        state = self.ctx.on_main(load_checkpoint_state, shown)
        for key, value in state.items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                bad = int((~torch.isfinite(value)).sum())
                raise CheckpointError(
                    f"{shown}: tensor {key} holds {bad} NaN or infinite value(s) of {value.numel()}: "
                    "the starting weights are corrupt"
                )
        plain, inputs = {}, {}
        # Any masked parameter (``fc1.weight_orig``, ``attn.in_proj_weight_orig``) with its ``_mask``.
        masked = {key[: -len("_orig")] for key in state if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in state}
        for key, value in state.items():
            if key.endswith("_orig") and key[: -len("_orig")] in masked:
                base = key[: -len("_orig")]
                plain[base] = value * state[base + "_mask"]
            elif key.endswith(".input_mask"):
                inputs[key[: -len(".input_mask")]] = value
            elif not (key.endswith("_mask") and key[: -len("_mask")] in masked):
                plain[key] = value
        try:
            self.model.load_state_dict(plain)
        except RuntimeError as exc:
            raise ValueError(f"{source}: does not fit model {self.config.model}: {str(exc).splitlines()[0]}") from None
        return inputs

    def _restore(self, saved: dict[str, Any]) -> None:
        """Rebuild everything from a checkpoint."""
        self.state = _State(**saved["state"])
        self.pruner = self._make_pruner(self.state.energy_dense, self.state.cycles_dense)
        load_masked_state_dict(self.model, saved["model"])
        self.pruner.load_state_dict(saved["pruner"])
        self.model.to(self.device)
        if saved.get("teacher") is not None:
            self.teacher = self._fresh_model(saved["teacher"]).eval()
        self.best = saved.get("best")
        self._setup_phase()
        if self.optimizer is not None and saved.get("optimizer") is not None:
            self.optimizer.load_state_dict(saved["optimizer"])
        if saved.get("scaler") is not None:
            self.scaler.load_state_dict(saved["scaler"])
        restore_rng(saved["rng"], self.generator)

    # -- phases ---------------------------------------------------------------------

    def _phase_epochs(self, phase: str) -> int:
        c = self.config
        if phase == "pretrain":
            if c.pretrain_epochs is not None:
                return c.pretrain_epochs
            return 0 if c.checkpoint is not None else _DEFAULT_PRETRAIN_EPOCHS
        if phase == "weights":
            return c.epochs
        if phase == "mask":
            return c.epochs if c.mask_epochs is None else c.mask_epochs
        if phase == "finetune":
            return c.finetune_epochs
        return 0

    def _input_mask_arrays(self) -> dict[str, np.ndarray]:
        return {n: (m.detach() != 0).cpu().numpy() for n, m in input_masks(self.model).items()}

    def _enter(self, phase: str) -> None:
        """Start ``phase``: its optimizer and costs, then its budgets."""
        s = self.state
        s.phase, s.epoch = phase, 0
        self._setup_phase()
        if phase == "weights":
            steps = len(self.train_loader)
            self.pruner.anneal(steps * self._phase_epochs("weights"), steps, self._weight_target())
        elif phase == "mask":
            dense_inputs = math.fsum(self.input_costs[n] * m.numel() for n, m in input_masks(self.model).items())
            s.mask_budget = self._mask_keep(s.round) * dense_inputs

    def _mask_keep(self, round_: int) -> float:
        """Share of the dense input energy that mask round ``round_`` (from 1) keeps."""
        return mask_keep(self.config.mask_keep, self.config.mask_keep_step, round_)

    def _setup_phase(self) -> None:
        """Optimizer, trainable parameters and costs of the current phase (no state change)."""
        c, phase = self.config, self.state.phase
        masks = set(map(id, input_masks(self.model).values()))
        for p in self.model.parameters():
            p.requires_grad_((id(p) in masks) == (phase == "mask"))
        if phase == "mask":
            self.optimizer = torch.optim.Adam(list(input_masks(self.model).values()), lr=c.mask_lr)
        elif phase in ("pretrain", "weights", "finetune"):
            params = [p for p in self.model.parameters() if id(p) not in masks]
            self.optimizer = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        else:
            self.optimizer = None
        self.net = self.model  # release the previous phase's wrapper (and its gradient hooks) first
        self.net = self.ctx.wrap(self.model) if phase in _TRAINING_PHASES else self.model

    def _weight_target(self) -> float:
        """Where the current weight phase ends (see :func:`compress.schedule.weight_target`)."""
        return weight_target(self.pruner.plan, self.pruner.floor_energy(), self._more_rounds())

    def _more_rounds(self) -> bool:
        """Whether another input-mask round may follow the current weight phase."""
        s, c = self.state, self.config
        return c.input_mask and s.round < c.max_rounds and self._mask_keep(s.round + 1) > 0

    def _advance(self) -> None:
        """The current phase has run all its epochs: move to the next one."""
        s, c = self.state, self.config
        if s.phase == "pretrain":
            s.dense_accuracy = self._evaluate()
            if c.distill:
                self.teacher = copy.deepcopy(self.model).eval()
                for p in self.teacher.parameters():
                    p.requires_grad_(False)
            self._enter("weights")
        elif s.phase == "mask":
            round_input_masks(self.model)
            self._enter("weights")
        elif s.phase == "weights" and c.input_mask:
            accuracy = s.log[-1]["val_accuracy"]
            met = self._weight_target() <= s.budget_abs
            following, improved = after_weight_phase(accuracy, s.best_accuracy, met, self._more_rounds())
            if improved:
                s.best_accuracy, s.best_round = accuracy, s.round
                self.best = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            if following == "mask":
                s.round += 1
                self._enter("mask")
            elif following == "infeasible":
                raise InfeasibleBudgetError(s.budget_abs, self.pruner.floor_energy(), s.energy_dense)
            else:
                self.model.load_state_dict(self.best)
                self._verify(after_finetune=False)
        else:
            self._verify(after_finetune=s.phase == "finetune")

    def _verify(self, after_finetune: bool) -> None:
        """The guarantee: re-project until the simulation fits, then fine-tune or finish."""
        pruner = self.pruner

        def tighten() -> tuple[Any, int, dict[str, torch.Tensor] | None, float | None]:
            report, steps = pruner.verify()
            masks = {n: m.cpu() for n, m in weight_masks(self.model).items()} if steps else None
            return report, steps, masks, pruner.proxy_budget

        # The simulation runs on rank 0; the other ranks install the masks it settled on.
        self.simulated, steps, masks, proxy_budget = self.ctx.on_main(tighten)
        if masks is not None and not self.ctx.is_main:
            set_weight_masks(self.model, {n: m.to(self.device) for n, m in masks.items()})
            pruner.tighten_steps += steps
            pruner.proxy_budget = proxy_budget
        if steps and not after_finetune and self.config.finetune_epochs > 0:
            self._enter("finetune")
        else:
            self._enter("finish")

    # -- epochs ---------------------------------------------------------------------

    def execute(self) -> TrainResult:
        s = self.state
        while s.phase != "done":
            if s.phase == "finish":
                self._finish()
            elif s.epoch >= self._phase_epochs(s.phase):
                begin = time.perf_counter()
                self._advance()
                s.wall_time_s += time.perf_counter() - begin
                self._save()
            else:
                self._epoch()
                self._save()
        return TrainResult(report=s.report, run_dir=self.run_dir, model=self.model)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.reshape(len(x), -1) if self.flatten else x

    def _autocast(self) -> torch.autocast:
        """float16 autocast on CUDA with ``amp``; a no-op otherwise."""
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.config.amp)

    def _loss(self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.teacher is None or self.state.phase == "pretrain":
            return F.cross_entropy(logits, y)
        with torch.no_grad():
            target = self.teacher(x)
        return _distillation_loss(logits, target, y)

    def _epoch(self) -> None:
        """One epoch of the current phase, then evaluation and a log row."""
        s, c, model, net = self.state, self.config, self.model, self.net
        begin = time.perf_counter()
        phase = s.phase
        if self.sampler is not None:
            self.sampler.set_epoch(s.epochs_done)
        last = len(self.train_loader) - 1
        loss_sum, correct, seen = 0.0, 0, 0
        model.train()
        bar = tqdm(
            self.train_loader,
            desc=f"{phase} {s.epoch + 1}/{self._phase_epochs(phase)}",
            leave=False,
            disable=c.quiet or not sys.stderr.isatty() or not self.ctx.is_main,
        )
        for b, (x, y) in enumerate(bar):
            x, y = self._inputs(x), y.to(self.device, non_blocking=True)
            with self._autocast():
                logits = net(x)
                loss = self._loss(logits, x, y)
            if not torch.isfinite(loss):
                if s.epochs_done == 0 and b == 0:  # no step taken yet: the learning rate is not to blame
                    raise TrainingDivergedError(
                        f"the loss is {loss.item()} on the first batch, before any training step: the starting "
                        "weights or the data hold values too large (or NaN) to train on"
                    )
                raise TrainingDivergedError(
                    f"training diverged: the loss is {loss.item()} in batch {b + 1} of {phase} epoch {s.epoch + 1}; "
                    f"lower the learning rate (lr={self.optimizer.param_groups[0]['lr']:g})"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if phase == "weights":
                self.pruner.step()  # projects every proj_interval batches and after the epoch's last
            elif phase == "mask":
                clamp_input_masks(model)
                if (b + 1) % c.proj_interval == 0 or b == last:
                    project_input_masks(model, self.input_costs, s.mask_budget)
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        loss_sum, correct, seen = self.ctx.sum([loss_sum, correct, seen])
        s.epoch += 1
        s.epochs_done += 1
        row = {
            "epoch": s.epochs_done,
            "phase": phase,
            "phase_epoch": s.epoch,
            "round": s.round,
            "lr": self.optimizer.param_groups[0]["lr"],
            "loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "val_accuracy": self._evaluate(),
        }
        row.update(self._energy_row())
        s.wall_time_s += time.perf_counter() - begin
        row["wall_s"] = time.perf_counter() - begin
        s.log.append(row)

    def _energy_row(self) -> dict[str, Any]:
        """Budget, proxy energy and densities of the model as it is now."""
        s = self.state
        weights = effective_weights(self.model)
        proxy = self.pruner.proxy_energy()
        budget = self.pruner.proxy_budget if s.phase in ("weights", "finetune") else None
        return {
            "budget": budget,
            "budget_relative": None if budget is None else budget / s.energy_dense,
            "energy_proxy": proxy,
            "energy_proxy_relative": proxy / s.energy_dense,
            "density": {n: float(torch.count_nonzero(w)) / w.numel() for n, w in weights.items()},
            "input_density": {
                n: float(torch.count_nonzero(m)) / m.numel() for n, m in input_masks(self.model).items()
            },
        }

    @torch.no_grad()
    def _evaluate(self) -> float:
        """Top-1 accuracy on the test split (each rank counts its share; the counts are summed)."""
        self.ctx.sync_buffers(self.model)
        was_training = self.model.training
        self.model.eval()
        correct = total = 0
        for x, y in self.test_loader:
            with self._autocast():
                logits = self.model(self._inputs(x))
            correct += int((logits.argmax(1) == y.to(self.device, non_blocking=True)).sum())
            total += len(y)
        self.model.train(was_training)
        correct, total = self.ctx.sum([correct, total])
        return correct / total

    # -- files ----------------------------------------------------------------------

    def _save(self) -> None:
        """Compare the ranks' models; checkpoint (atomically), then the logs rewritten from the state."""
        self.ctx.check_identical(self.model.state_dict())
        if not self.ctx.is_main:
            return
        save_checkpoint(
            self.files.checkpoint,
            {
                "config": _config_dict(self.config),
                "state": dataclasses.asdict(self.state),
                "model": _cpu(self.model.state_dict()),
                "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
                "teacher": None if self.teacher is None else _cpu(self.teacher.state_dict()),
                "best": self.best,
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "rng": capture_rng(self.generator),
                "pruner": self.pruner.state_dict(),
            },
        )
        _write_logs(self.run_dir, self.state.log)

    def _finish(self) -> None:
        """Final simulation, model.pt and report.json; then the run is done."""
        s, c = self.state, self.config
        begin = time.perf_counter()
        simulated = self.simulated if self.simulated is not None else self.ctx.on_main(self.energy.simulate, self.model)
        accuracy = self._evaluate()
        summary = self.pruner.summary(simulated)
        if self.ctx.is_main:
            atomic_torch_save(
                self.files.model,
                {
                    "state_dict": _cpu(self.model.state_dict()),
                    "model": c.model,
                    "input_shape": list(self.input_shape),
                    "num_classes": self.data.num_classes,
                },
            )
        s.wall_time_s += time.perf_counter() - begin
        epochs_by_phase: dict[str, int] = {}
        for row in s.log:
            epochs_by_phase[row["phase"]] = epochs_by_phase.get(row["phase"], 0) + 1
        s.report = {
            "model": c.model,
            "dataset": c.dataset,
            "method": c.method,
            "estimator": c.estimator,
            "profile": self.profile.name,
            "seed": c.seed,
            "input_mask": c.input_mask,
            "accuracy": accuracy,
            "dense_accuracy": s.dense_accuracy,
            "chance_accuracy": 1 / self.data.num_classes,
            "collapsed": _collapsed(accuracy, s.dense_accuracy, self.data.num_classes),
            **summary,
            "input_mask_rounds": s.round,
            "best_round": s.best_round,
            "epochs": s.epochs_done,
            "epochs_by_phase": epochs_by_phase,
            "wall_time_s": s.wall_time_s,
            "wall_time_per_epoch_s": (
                math.fsum(r["wall_s"] for r in s.log) / len(s.log) if s.log else None
            ),
            "device": str(self.device),
            "world_size": self.ctx.world_size,
            "amp": c.amp,
        }
        s.report = self.ctx.broadcast(s.report)  # rank 0's, wall times included
        if self.ctx.is_main:
            atomic_write_json(self.files.simulated, simulated.to_dict())
            atomic_write_json(self.files.report, s.report)
        s.phase = "done"
        self.optimizer = None
        self._save()


def _cpu(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


def _flat_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A log row with its per-layer dicts spread into ``density.<layer>`` columns."""
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    return flat


def _write_logs(run_dir: Path, log: list[dict[str, Any]]) -> None:
    """``log.jsonl`` (one JSON object per epoch) and ``log.csv`` (flattened), atomically."""
    atomic_write_text(RunFolder(run_dir).log_jsonl, "".join(json_text(row, indent=None) for row in log))
    rows = [_flat_row(r) for r in log]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    atomic_write_text(RunFolder(run_dir).log_csv, text.getvalue())
