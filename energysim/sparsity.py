"""Where the zeros are: per-layer weight and input masks, from a model, a checkpoint,
real activations or a synthetic pattern."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import torchfile
from .workload import LayerSpec, Workload

__all__ = [
    "PATTERNS",
    "LayerSparsity",
    "Sparsity",
    "load_checkpoint_file",
    "load_checkpoint_state",
    "nm_mask",
]

PATTERNS = ("random", "block", "channel", "nm")
_BLOCK = 4  # side of the square blocks of the `block` pattern, in GEMM (K x N) positions


@dataclass(frozen=True)
class LayerSparsity:
    """Nonzero pattern of one layer; ``None`` means dense.

    Attributes
    ----------
    weight_mask : numpy.ndarray of bool or None
        Shaped like the torch weight: (out, in/groups, kh, kw) or (out, in).
    input_mask : numpy.ndarray of bool or None
        Shaped like one input sample: (C, H, W) or (F,).
    """

    weight_mask: np.ndarray | None = None
    input_mask: np.ndarray | None = None

    def weight_nnz(self, layer: LayerSpec) -> int:
        return layer.weight_count if self.weight_mask is None else int(np.count_nonzero(self.weight_mask))

    def input_nnz(self, layer: LayerSpec) -> int:
        return int(np.prod(layer.input_shape)) if self.input_mask is None else int(np.count_nonzero(self.input_mask))

    def weights(self, layer: LayerSpec) -> np.ndarray:
        """The weight mask, materialised (all True when dense)."""
        return np.ones(layer.weight_shape, bool) if self.weight_mask is None else self.weight_mask

    def inputs(self, layer: LayerSpec) -> np.ndarray:
        """The input mask, materialised (all True when dense)."""
        return np.ones(layer.input_shape, bool) if self.input_mask is None else self.input_mask


class Sparsity(Mapping[str, LayerSparsity]):
    """Per-layer sparsity of a workload; layers not listed are dense.

    Build it with one of the class methods; masks are checked against the workload's
    shapes once, here, so estimators can trust them.
    """

    def __init__(self, layers: Mapping[str, LayerSparsity] | None = None, source: str = "dense"):
        self._layers = dict(layers or {})
        self.source = source

    def __getitem__(self, name: str) -> LayerSparsity:
        return self._layers.get(name, LayerSparsity())

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __repr__(self) -> str:
        return f"Sparsity(source={self.source!r}, layers={list(self._layers)})"

    def check(self, workload: Workload) -> "Sparsity":
        """Raise ValueError when a mask's layer or shape does not match ``workload``."""
        names = {l.name for l in workload.layers}
        problems = []
        for name, ls in self._layers.items():
            if name not in names:
                problems.append(f"{self.source}: layer {name!r} is not a compute layer of the model")
                continue
            layer = workload.layer(name)
            for what, mask, shape in (
                ("weight", ls.weight_mask, layer.weight_shape),
                ("input", ls.input_mask, layer.input_shape),
            ):
                if mask is not None and tuple(mask.shape) != tuple(shape):
                    problems.append(
                        f"{self.source}: {name} {what} mask has shape {tuple(mask.shape)}, the model expects {tuple(shape)}"
                    )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def with_inputs_from(self, other: "Sparsity") -> "Sparsity":
        """These weight masks with ``other``'s input masks (where it has one)."""
        names = set(self._layers) | set(other)
        merged = {
            n: LayerSparsity(self[n].weight_mask, other[n].input_mask if other[n].input_mask is not None else self[n].input_mask)
            for n in names
        }
        return Sparsity(merged, f"{self.source} + inputs from {other.source}")

    # -- constructors -------------------------------------------------------------

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], workload: Workload, source: str = "state_dict") -> "Sparsity":
        """Masks from a ``state_dict``: exact zeros of ``<layer>.weight`` (or of
        ``weight_orig * weight_mask`` as ``torch.nn.utils.prune`` stores them) and
        ``<layer>.input_mask`` where present."""
        layers = {}
        problems = []
        for layer in workload.weight_layers:
            key = layer.parameter
            if key in state:
                weight = state[key]
            elif f"{key}_orig" in state and f"{key}_mask" in state:
                weight = state[f"{key}_orig"] * state[f"{key}_mask"]
            else:
                problems.append(f"{source}: no tensor {key} (nor {key}_orig and {key}_mask) for layer {layer.name}")
                continue
            weight = _layer_weight(torch.as_tensor(weight).detach(), layer)
            if tuple(weight.shape) != tuple(layer.weight_shape):
                problems.append(
                    f"{source}: {key} has shape {tuple(weight.shape)}, the model expects {tuple(layer.weight_shape)}"
                )
                continue
            if not torch.isfinite(weight).all():
                problems.append(f"{source}: {key} holds NaN or infinite values")
                continue
            input_mask = state.get(f"{layer.name}.input_mask")
            layers[layer.name] = LayerSparsity(
                weight_mask=(weight != 0).cpu().numpy(),
                input_mask=None if input_mask is None else (torch.as_tensor(input_mask) != 0).cpu().numpy(),
            )
        if problems:
            raise ValueError("\n".join(problems))
        return cls(layers, source).check(workload)

    @classmethod
    def from_model(cls, model: torch.nn.Module, workload: Workload) -> "Sparsity":
        """Masks of the model's current weights (and input masks, if it has any)."""
        return cls.from_state_dict(model.state_dict(), workload, source="model")

    @classmethod
    def from_checkpoint(cls, path: str | Path, workload: Workload) -> "Sparsity":
        """Masks from a saved ``state_dict`` file (an ``ecc train`` run's: ``compress.rundir.model_file``)."""
        state = load_checkpoint_state(path)
        return cls.from_state_dict(state, workload, source=str(path))

    @classmethod
    def synthetic(
        cls,
        workload: Workload,
        weight_density: float = 1.0,
        input_density: float = 1.0,
        pattern: str = "random",
        seed: int = 0,
        nm: tuple[int, int] | None = None,
    ) -> "Sparsity":
        """A synthetic pattern with exactly ``round(density * size)`` nonzeros per tensor.

        ``random`` picks positions uniformly; ``block`` zeroes whole 4x4 blocks of the
        GEMM view (weights) or of each channel plane (inputs); ``channel`` zeroes whole
        output channels of the weights and whole input channels; ``nm`` (weights; inputs
        as ``random``) picks, in every group of ``nm = (N, M)`` consecutive weights along K
        of every GEMM column (the last group may be shorter), N positions at random, and
        keeps ``round(density * size)`` of these at random, as SCALE-Sim places N:M
        zeros, so the weight density can be at most about N/M. A matmul's second operand
        is an activation: it gets ``input_density`` (and the ``random`` pattern under ``nm``).
        """
        for what, value in (("weight density", weight_density), ("input density", input_density)):
            if not (isinstance(value, (int, float)) and 0 < value <= 1):
                raise ValueError(f"{what} must be in (0, 1], got {value!r}")
        if pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
        if (pattern == "nm") != (nm is not None):
            raise ValueError("an N:M (nm) is given with pattern 'nm' and only then, got " + f"pattern {pattern!r}, nm {nm!r}")
        if nm is not None and not (len(nm) == 2 and all(isinstance(v, int) and v > 0 for v in nm) and nm[0] < nm[1]):
            raise ValueError(f"nm must be two integers N < M, got {nm!r}")
        rng = np.random.default_rng(seed)
        layers = {}
        for layer in workload.layers:
            plain = "random" if pattern == "nm" else pattern
            if pattern == "nm" and layer.has_weights:
                weight_mask = nm_mask(layer, nm, rng, weight_density)
            else:
                density = weight_density if layer.has_weights else input_density
                weight_mask = None if density == 1 else _pattern_mask(layer.weight_shape, density, plain, rng)
            layers[layer.name] = LayerSparsity(
                weight_mask=weight_mask,
                input_mask=None if input_density == 1 else _pattern_mask(layer.input_shape, input_density, plain, rng),
            )
        kind = pattern if nm is None else f"{nm[0]}:{nm[1]}"
        return cls(layers, f"synthetic {kind} w={weight_density:g} x={input_density:g} seed={seed}")

    @classmethod
    def from_activations(cls, model: torch.nn.Module, workload: Workload, batch: torch.Tensor) -> "Sparsity":
        """Input masks from the real activations of ``batch`` (ReLU zeros count).

        The estimators model one inference, so the masks are those of the batch's first
        sample, traced at the operator level like the workload (:mod:`energysim.trace`);
        a matmul (two activations) takes both operands' masks from it. The weights are
        taken as they are in ``model``.
        """
        from .workload import traced_operands  # the tracer's layer naming lives with the workload

        flags = {module: module.training for module in model.modules()}
        model.eval()
        try:
            operands = traced_operands(model, batch[:1])
        finally:
            for module, flag in flags.items():
                module.training = flag
        weights = cls.from_model(model, workload)
        layers = {}
        for layer in workload.layers:
            if layer.name not in operands:
                raise ValueError(f"activations: layer {layer.name!r} did not run on this batch")
            x, w = operands[layer.name]
            layers[layer.name] = LayerSparsity(
                weights[layer.name].weight_mask if layer.has_weights else w.reshape(layer.weight_shape),
                x.reshape(layer.input_shape),
            )
        return cls(layers, f"{weights.source} + inputs from activations").check(workload)


def _layer_weight(weight: torch.Tensor, layer: LayerSpec) -> torch.Tensor:
    """The part of a parameter a layer uses, shaped (out, in): its row slice, transposed if stored (in, out)."""
    if layer.weight_transposed:
        weight = weight.t()
    if layer.weight_rows is not None:
        weight = weight[layer.weight_rows[0] : layer.weight_rows[1]]
    return weight


def nm_mask(
    layer: LayerSpec, nm: tuple[int, int], rng: np.random.Generator, density: float | None = None
) -> np.ndarray:
    """A random N:M weight mask of one layer (torch-shaped, bool): the ``nm`` pattern of :meth:`Sparsity.synthetic`.

    In every group of M consecutive weights along K of every GEMM column (the last group
    may be shorter) N positions are drawn at random; ``density`` None keeps all of them,
    otherwise ``round(density * size)`` of them (at least one) are kept at random.

    Raises
    ------
    ValueError
        If ``density`` needs more nonzeros than N:M allows.
    """
    n, m = nm
    out = layer.weight_shape[0]
    k = int(np.prod(layer.weight_shape)) // out
    groups = -(-k // m)
    # Row o of weight.reshape(out, -1) is one GEMM column in K order, so the groups along K
    # are runs of that row. Rank the positions of every group in a random order (the padding
    # of a short last group last); the first N of each are the candidates.
    keys = rng.random((out, groups, m))
    keys.reshape(out, groups * m)[:, k:] = 2.0
    order = np.argsort(keys, axis=2)
    candidate = np.zeros((out, groups, m), bool)
    np.put_along_axis(candidate, order[:, :, :n], True, axis=2)
    candidate = candidate.reshape(out, groups * m)[:, :k]
    if density is None:
        return candidate.reshape(layer.weight_shape)
    positions = np.flatnonzero(candidate)
    size = out * k
    keep = max(1, int(round(density * size)))
    if keep > positions.size:
        raise ValueError(
            f"layer {layer.name!r}: weight density {density:g} needs {keep} nonzeros, but {n}:{m} allows at most "
            f"{positions.size} of {size} (density {positions.size / size:.4g})"
        )
    flat = np.zeros(size, bool)
    flat[rng.choice(positions, keep, replace=False)] = True
    return flat.reshape(layer.weight_shape)


def _pattern_mask(shape: tuple[int, ...], density: float, pattern: str, rng: np.random.Generator) -> np.ndarray:
    """A bool mask of ``shape`` with ``round(density * size)`` (at least one) True values."""
    size = int(np.prod(shape))
    keep = max(1, int(round(density * size)))
    if pattern == "random":
        flat = np.zeros(size, bool)
        flat[rng.choice(size, keep, replace=False)] = True
        return flat.reshape(shape)
    if pattern == "channel":
        # Whole leading-axis slices (output channels of a weight, input channels of a feature map).
        groups = shape[0]
        per = size // groups
        order = rng.permutation(groups)
        flat = np.zeros((groups, per), bool)
        flat[order[: max(1, int(round(density * groups)))]] = True
        return flat.reshape(shape)
    # block: square blocks over the 2-D view (leading axis x the rest), ragged edges included.
    rows = shape[0]
    cols = size // rows
    brows, bcols = -(-rows // _BLOCK), -(-cols // _BLOCK)
    blocks = np.zeros(brows * bcols, bool)
    blocks[rng.choice(brows * bcols, max(1, int(round(density * brows * bcols))), replace=False)] = True
    grid = np.kron(blocks.reshape(brows, bcols), np.ones((_BLOCK, _BLOCK), bool))[:rows, :cols]
    return grid.reshape(shape)


def load_checkpoint_file(path: str | Path) -> tuple[Path, object]:
    """What ``torch.save`` wrote to the file ``path``, checksum-verified and loaded safely on
    the CPU by :func:`energysim.torchfile.load`; returns the file read and its content.

    A folder is an error (IsADirectoryError): which file of an ``ecc train`` run folder
    holds the model is :mod:`compress.rundir`'s to say (``compress.rundir.model_file``)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"{path}: is a folder, not a checkpoint file: pass the file itself "
            "(of an `ecc train` run folder RUN: RUN/model.pt)"
        )
    obj, _ = torchfile.load(path, "PyTorch checkpoint")
    return path, obj


def load_checkpoint_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` in the file ``path``, saved by ``torch.save``: a state_dict, or a
    dict holding one under ``"state_dict"`` (a folder is an error, see :func:`load_checkpoint_file`)."""
    path, obj = load_checkpoint_file(path)
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ValueError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    return dict(obj)
