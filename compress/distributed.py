"""Data-parallel training across processes: the process group, the ranks and the few
collectives the trainer needs.

``ecc train`` started by ``torchrun --nproc_per_node N [--nnodes M ...]`` (or by any
launcher that sets the ``env://`` variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``) trains with ``torch.distributed``: :func:`session`
joins the process group, NCCL for CUDA devices and gloo for the CPU, and each process
uses ``cuda:LOCAL_RANK`` on a GPU machine. The :class:`Context` it yields gives the
trainer its rank and device and the collectives it needs. Without those variables, or
with ``WORLD_SIZE=1``, the context is a single process and every collective is a
no-op, so one code path serves both.

How the ranks agree on the masks
--------------------------------
Every rank holds the whole model. DistributedDataParallel starts every rank from rank
0's parameters and averages the gradients, and the optimizer steps are elementwise and
deterministic, so the parameters stay bitwise equal. The projections (weight masks,
input masks) are then computed **on every rank**, from the same parameters and costs,
by the deterministic projection of :mod:`compress.projection`, rather than computed on
rank 0 and broadcast: a projection costs no communication (AlexNet's masks have 61 M
entries, and the projection runs every few batches) and no rank waits for another.
The agreement is verified, not assumed: at every checkpoint each rank hashes its model
state (weights, weight masks, input masks, buffers) and :meth:`Context.check_identical`
raises :class:`RankMismatchError` on every rank if any hash differs.

What rank 0 alone does
----------------------
The numba simulator stays on the CPU of rank 0: the dense energy, the coefficient
table and the final verification with its re-projections run there, outside the
training steps, and their results (energies, re-projected masks) are broadcast by
:meth:`Context.on_main`, so every rank takes the same branch. An exception raised
there is raised on every rank. Rank 0 alone writes the run folder (checkpoints, logs,
report) and shows progress bars. Buffers that are not masks (BatchNorm statistics)
are taken from rank 0 before every evaluation, as DistributedDataParallel's default
does before every forward pass. The training split is divided by a
``DistributedSampler``; the test split is divided without padding (the sampler would
repeat samples to even out the ranks) and the counts are summed, so an accuracy is
exactly correct / total over the whole split.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler, Subset

__all__ = [
    "DEVICES",
    "Context",
    "RankMismatchError",
    "is_main_process",
    "launch_env",
    "resolve_device",
    "session",
    "state_digest",
]

#: Device names ``--device`` accepts besides explicit torch devices such as ``cuda:1``.
DEVICES = ("cpu", "cuda", "auto")

_T = TypeVar("_T")
_LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
# Buffers every rank computes itself (and check_identical compares) rather than takes from rank 0.
_OWN_BUFFER_SUFFIX = "weight_mask"


class RankMismatchError(RuntimeError):
    """The ranks of a distributed run hold different model states (it must never happen)."""


def launch_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` set by torchrun, or None outside a launcher.

    Parameters
    ----------
    environ : mapping, optional
        Default ``os.environ``.

    Returns
    -------
    tuple of int or None
        None when ``WORLD_SIZE`` is unset. ``LOCAL_RANK`` defaults to ``RANK``.

    Raises
    ------
    ValueError
        If a variable is not an integer or the ranks are out of range.

    Examples
    --------
    >>> launch_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"})
    (3, 8, 3)
    >>> launch_env({}) is None
    True
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return None
    values = {}
    for name in _LAUNCH_VARS:
        text = environ.get(name, environ.get("RANK", "0") if name == "LOCAL_RANK" else "0")
        try:
            values[name] = int(text)
        except ValueError:
            raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None
    rank, world, local = (values[n] for n in _LAUNCH_VARS)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(
            f"environment variables must satisfy 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0, "
            f"got RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}"
        )
    return rank, world, local


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """True outside a launcher and on rank 0 (the process that prints and writes)."""
    launch = launch_env(environ)
    return launch is None or launch[0] == 0


def resolve_device(spec: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """The torch device of one process for ``--device``.

    Parameters
    ----------
    spec : str
        ``cpu``, ``cuda``, ``auto`` (CUDA when available, else the CPU) or an explicit
        torch device such as ``cuda:1`` (one process only).
    local_rank : int
        This process's index on its machine; with several processes each uses
        ``cuda:local_rank``.
    world_size : int
        Number of processes.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If CUDA is asked for and not available, or several processes are given one
        explicit CUDA index.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be one of {', '.join(DEVICES)} or a torch device such as 'cuda:0', "
                         f"got {spec!r}") from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} needs CUDA, but torch.cuda.is_available() is False on this machine; "
                         "use --device cpu or auto")
    if world_size > 1:
        if device.index is not None:
            raise ValueError(f"device {spec!r} names one GPU, but {world_size} processes share this run: pass "
                             "--device cuda (each process then uses cuda:LOCAL_RANK)")
        return torch.device("cuda", local_rank)
    return device


@dataclass(frozen=True)
class Context:
    """Where this process stands in a (possibly single-process) run.

    Attributes
    ----------
    rank, world_size, local_rank : int
    device : torch.device
        The device this process trains on.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that simulates, writes files and shows progress."""
        return self.rank == 0

    def _comm_device(self) -> torch.device:
        """Where collective tensors live: this process's GPU for NCCL, the CPU for gloo."""
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def broadcast(self, obj: _T) -> _T:
        """Rank 0's ``obj`` on every rank (picklable; tensors should be on the CPU)."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def on_main(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``fn(*args, **kwargs)`` run on rank 0 only; its result, or its exception, on every rank.

        Every rank must call it at the same point. An exception that does not survive
        pickling is re-raised on the other ranks as its nearest built-in base class with
        the same message.
        """
        if not self.distributed:
            return fn(*args, **kwargs)
        outcome: tuple[bool, Any] | None = None
        if self.is_main:
            try:
                outcome = (True, fn(*args, **kwargs))
            except Exception as exc:
                outcome = (False, _portable(exc))
                self.broadcast(outcome)
                raise
        ok, value = self.broadcast(outcome)
        if not ok:
            raise value
        return value

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over all ranks (float64)."""
        if not self.distributed:
            return [float(v) for v in values]
        total = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(total)
        return total.tolist()

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel over its trainable parameters (as they are now).

        A new wrapper is needed whenever the set of parameters that require gradients
        changes (the trainer's phases), since DDP registers them once. Buffers are not
        broadcast before every forward pass: the weight masks are computed on every
        rank and the others are synchronized by :meth:`sync_buffers`.
        """
        if not self.distributed or not any(p.requires_grad for p in model.parameters()):
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel
        # torch 2.13 renamed broadcast_buffers to forward_sync_buffers; both sync at construction only.
        renamed = "forward_sync_buffers" in inspect.signature(ddp).parameters
        no_forward_sync = {"forward_sync_buffers" if renamed else "broadcast_buffers": False}
        return ddp(model, device_ids=device_ids, **no_forward_sync)

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics, ...) on every rank; weight masks excepted."""
        if not self.distributed:
            return
        for name, buffer in model.named_buffers():
            if not name.endswith(_OWN_BUFFER_SUFFIX):
                dist.broadcast(buffer.data, src=0)

    def check_identical(self, state: Mapping[str, torch.Tensor], what: str = "model state") -> None:
        """Raise :class:`RankMismatchError` on every rank unless all ranks hold the same ``state``."""
        if not self.distributed:
            return
        digests: list[str | None] = [None] * self.world_size
        dist.all_gather_object(digests, state_digest(state))
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise RankMismatchError(
                f"the {what} of rank(s) {', '.join(map(str, differ))} differs from rank 0's (sha256 "
                f"{digests[0][:12]} on rank 0, {digests[differ[0]][:12]} on rank {differ[0]}); the ranks must "
                "stay bitwise equal: is a nondeterministic operation changing the weights?"
            )

    def train_sampler(self, dataset: Dataset, seed: int) -> DistributedSampler | None:
        """This rank's shuffled share of a training set (None for one process)."""
        if not self.distributed:
            return None
        return DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=seed)

    def eval_share(self, dataset: Dataset) -> Dataset:
        """Items ``rank, rank + world_size, ...`` of an evaluation set: no item twice, none left out."""
        if not self.distributed:
            return dataset
        return Subset(dataset, range(self.rank, len(dataset), self.world_size))


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state_dict's tensors, in order.

    Examples
    --------
    >>> a, b = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([1.0, 3.0])}
    >>> state_digest(a) == state_digest({"w": torch.tensor([1.0, 2.0])}), state_digest(a) == state_digest(b)
    (True, False)
    """
    h = hashlib.sha256()
    for name, tensor in state.items():
        t = tensor.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return h.hexdigest()


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling, else its nearest built-in base class with the same message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # a custom __init__ signature, an unpicklable attribute, ...
        base = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
        return base(str(exc))


@contextmanager
def session(device: str) -> Iterator[Context]:
    """Join the launcher's process group (if any) for the duration of a run.

    Parameters
    ----------
    device : str
        ``--device``: see :func:`resolve_device`.

    Yields
    ------
    Context
        A single-process context when no launcher set ``WORLD_SIZE`` > 1. A process
        group that is already initialized is used as it is and left open; one this
        function started is destroyed at the end.

    Raises
    ------
    ValueError
        For a bad launcher environment or device (see :func:`launch_env`,
        :func:`resolve_device`).
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        launch = launch_env()
        local = launch[2] if launch is not None else rank
        yield Context(rank, world, local, resolve_device(device, local, world))
        return
    launch = launch_env()
    if launch is None or launch[1] == 1:
        yield Context(0, 1, 0, resolve_device(device))
        return
    rank, world, local = launch
    resolved = resolve_device(device, local, world)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    try:
        yield Context(rank, world, local, resolved)
        # Leave together: a rank tearing gloo down while another still talks to it aborts.
        dist.barrier()
    finally:
        dist.destroy_process_group()
