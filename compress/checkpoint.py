"""Crash-safe files of a training run: atomic writes, checkpoint load, RNG state.

Every file is written atomically by :mod:`energysim.files` (re-exported here): a
process killed at any moment leaves either the old file or the new one, never a torn
one. Torch files carry a SHA-256 of their content, checked
on load (:mod:`energysim.torchfile`), so a file damaged later is an error too.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from energysim import torchfile
from energysim.files import atomic_write_bytes, atomic_write_text

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "UnverifiedCheckpointWarning",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

#: Value of the ``"format"`` key of every checkpoint ``ecc train`` writes.
CHECKPOINT_FORMAT = "ecc-train-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file is empty, damaged, truncated or not an ``ecc train`` checkpoint."""


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint was read without a checksum to verify (it predates checksums)."""


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically, with its checksum (:func:`energysim.torchfile.dumps`)."""
    atomic_write_bytes(path, torchfile.dumps(obj))


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Save ``state`` (plus the format tag) to ``path`` atomically, with its checksum.

    Parameters
    ----------
    path : str or os.PathLike
    state : mapping
        Tensors, numbers, strings, None and nested lists/tuples/dicts of them only,
        so that :func:`load_checkpoint` can read it with ``weights_only=True``.
    """
    atomic_torch_save(path, {"format": CHECKPOINT_FORMAT, **state})


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying its checksum.

    A checkpoint without a checksum (written before checkpoints carried one) is read
    unverified, with an :class:`UnverifiedCheckpointWarning`; damage cannot remove a
    checksum unnoticed (see :mod:`energysim.torchfile`).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        The saved mapping, ``"format"`` included.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CheckpointError
        If the file is empty, fails its checksum or is not a readable checkpoint of
        this format; the one-line message names it.
    """
    path = Path(path)
    try:
        state, verified = torchfile.load(path, "checkpoint")
    except torchfile.TorchFileError as exc:
        raise CheckpointError(f"{exc}; it is corrupt or truncated: delete the run folder and start again") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path}: not an `ecc train` checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r})"
        )
    if not verified:
        warnings.warn(
            f"{path}: the checkpoint has no checksum (written before checkpoints carried one); read unverified",
            UnverifiedCheckpointWarning,
            stacklevel=2,
        )
    return state


def capture_rng(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The states of torch's global CPU generator and of ``generator`` (the data shuffler)."""
    return {"torch": torch.get_rng_state(), "loader": generator.get_state()}


def restore_rng(states: Mapping[str, torch.Tensor], generator: torch.Generator) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(states["torch"])
    generator.set_state(states["loader"])
