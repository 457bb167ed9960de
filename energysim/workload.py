"""Extract the layer workload (conv and linear GEMMs) of a torch model.

One forward pass with hooks on every module records the real input and
output shapes of each ``Conv2d`` and ``Linear``; nothing is derived from
per-model shape arithmetic. Every other module that does compute is listed
as unmodelled, never silently dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from numbers import Integral

import torch
from torch import nn

from ._naming import find_named

__all__ = [
    "LAYER_KINDS",
    "LayerSpec",
    "UnmodelledLayerWarning",
    "Workload",
    "extract_workload",
]

LAYER_KINDS = ("conv", "depthwise", "linear")

# Modules that move or drop data without arithmetic worth modelling, and pure containers.
_NO_COMPUTE = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.modules.dropout._DropoutNd,
    nn.Sequential,
    nn.ModuleList,
    nn.ModuleDict,
)


class UnmodelledLayerWarning(UserWarning):
    """A model contains modules that compute but are not in the workload."""


def _is_shape(value: object) -> bool:
    """True for a non-empty tuple of positive ints (bool excluded)."""
    return (
        isinstance(value, tuple)
        and len(value) > 0
        and all(isinstance(d, Integral) and not isinstance(d, bool) and d > 0 for d in value)
    )


def _check_input_shape(shape: object, source: str) -> tuple[int, ...]:
    """Return `shape` (tuple or list) as a tuple of positive ints, else raise a ValueError naming `source`."""
    if not isinstance(shape, (tuple, list)) or not _is_shape(tuple(shape)):
        raise ValueError(f"{source} must be a non-empty tuple of positive ints, got {shape!r}")
    return tuple(int(d) for d in shape)


def _conv_kind(in_channels: int, out_channels: int, groups: int) -> str:
    """'depthwise' when every group sees exactly one input channel, else 'conv'."""
    if groups > 1 and groups == in_channels and out_channels % in_channels == 0:
        return "depthwise"
    return "conv"


@dataclass(frozen=True)
class LayerSpec:
    """One conv or linear layer of a workload, seen as a GEMM per group.

    Attributes
    ----------
    name : str
        Module qualified name in the model (``features.0``).
    kind : {"conv", "depthwise", "linear"}
        ``depthwise`` is a grouped conv with ``groups == in_channels > 1``
        and ``out_channels`` a multiple of ``in_channels``.
    input_shape, output_shape : tuple of int
        Per-sample shapes: (C, H, W) for convs, (..., F) for linear layers.
    in_channels, out_channels : int
        Channels (features for a linear layer).
    kernel, stride, padding, dilation : tuple of (int, int)
        (height, width). Linear layers use (1, 1), (1, 1), (0, 0), (1, 1).
        ``padding`` is the top/left padding; for ``padding='same'`` with an
        even total the bottom/right side gets one more, as in PyTorch, and
        ``output_shape`` is authoritative.
    groups : int
        Convolution groups (1 for linear).
    bias : bool
        Whether the layer adds a bias.
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    bias: bool

    def __post_init__(self) -> None:
        where = f"layer {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"layer name must be a non-empty string, got {self.name!r}")
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"{where}: kind must be one of {LAYER_KINDS}, got {self.kind!r}")
        for field in ("input_shape", "output_shape"):
            if not _is_shape(getattr(self, field)):
                raise ValueError(
                    f"{where}: {field} must be a non-empty tuple of positive ints, got {getattr(self, field)!r}"
                )
        for field in ("in_channels", "out_channels", "groups"):
            value = getattr(self, field)
            if not isinstance(value, Integral) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{where}: {field} must be a positive int, got {value!r}")
        for field in ("kernel", "stride", "padding", "dilation"):
            value = getattr(self, field)
            minimum = 0 if field == "padding" else 1
            if not (
                isinstance(value, tuple)
                and len(value) == 2
                and all(isinstance(v, Integral) and not isinstance(v, bool) and v >= minimum for v in value)
            ):
                raise ValueError(f"{where}: {field} must be a pair of ints >= {minimum}, got {value!r}")
        if not isinstance(self.bias, bool):
            raise ValueError(f"{where}: bias must be a bool, got {self.bias!r}")
        if self.kind == "linear":
            self._check_linear(where)
        else:
            self._check_conv(where)

    def _check_linear(self, where: str) -> None:
        """Linear layers have a trivial window and match feature counts."""
        trivial = dict(kernel=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1)
        for field, value in trivial.items():
            if getattr(self, field) != value:
                raise ValueError(f"{where}: a linear layer must have {field}={value}, got {getattr(self, field)!r}")
        if self.input_shape[-1] != self.in_channels or self.output_shape[-1] != self.out_channels:
            raise ValueError(
                f"{where}: linear shapes {self.input_shape} -> {self.output_shape} do not end in "
                f"in_channels={self.in_channels} and out_channels={self.out_channels}"
            )
        if self.input_shape[:-1] != self.output_shape[:-1]:
            raise ValueError(f"{where}: linear leading dims differ: {self.input_shape} -> {self.output_shape}")

    def _check_conv(self, where: str) -> None:
        """Conv layers have (C, H, W) shapes matching channels and groups dividing them."""
        if len(self.input_shape) != 3 or len(self.output_shape) != 3:
            raise ValueError(
                f"{where}: conv shapes must be (C, H, W), got {self.input_shape} -> {self.output_shape}"
            )
        if self.input_shape[0] != self.in_channels or self.output_shape[0] != self.out_channels:
            raise ValueError(
                f"{where}: conv shapes {self.input_shape} -> {self.output_shape} do not start with "
                f"in_channels={self.in_channels} and out_channels={self.out_channels}"
            )
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"{where}: groups={self.groups} must divide in_channels={self.in_channels} "
                f"and out_channels={self.out_channels}"
            )
        expected = _conv_kind(self.in_channels, self.out_channels, self.groups)
        if self.kind != expected:
            raise ValueError(f"{where}: kind must be {expected!r} for groups={self.groups}, got {self.kind!r}")

    @property
    def gemm(self) -> tuple[int, int, int]:
        """(M, K, N) of one group's im2col GEMM: output pixels (or rows), reduction length, output channels."""
        if self.kind == "linear":
            return math.prod(self.input_shape[:-1]), self.in_channels, self.out_channels
        m = self.output_shape[1] * self.output_shape[2]
        k = self.in_channels // self.groups * self.kernel[0] * self.kernel[1]
        return m, k, self.out_channels // self.groups

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass for one sample: M * K * N * groups."""
        m, k, n = self.gemm
        return m * k * n * self.groups

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the weight tensor: (out, in/groups, kh, kw) for convs, (out, in) for linear."""
        if self.kind == "linear":
            return self.out_channels, self.in_channels
        return self.out_channels, self.in_channels // self.groups, *self.kernel

    @property
    def weight_count(self) -> int:
        """Number of weights (bias excluded)."""
        return math.prod(self.weight_shape)


@dataclass(frozen=True)
class Workload:
    """The modelled layers of a model for one input shape, in execution order.

    Attributes
    ----------
    model : str
        Model name.
    input_shape : tuple of int
        Per-sample model input shape.
    layers : tuple of LayerSpec
        Conv and linear layers in the order the forward pass runs them.
    unmodelled : tuple of (str, str)
        (qualified name, class name) of modules that compute but are not
        modelled (pooling, normalisation, activations, attention, ...).
    """

    model: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    unmodelled: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not _is_shape(self.input_shape):
            raise ValueError(
                f"workload {self.model!r}: input_shape must be a non-empty tuple of positive ints, "
                f"got {self.input_shape!r}"
            )
        if not all(isinstance(layer, LayerSpec) for layer in self.layers):
            raise TypeError(f"workload {self.model!r}: layers must all be LayerSpec instances")
        names = [layer.name for layer in self.layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"workload {self.model!r}: duplicate layer names {duplicates}")

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Names of the modelled layers, in execution order."""
        return tuple(layer.name for layer in self.layers)

    @property
    def macs(self) -> int:
        """Total multiply-accumulates of the modelled layers for one sample."""
        return sum(layer.macs for layer in self.layers)

    def layer(self, name: str) -> LayerSpec:
        """Return the layer called `name`.

        Raises
        ------
        ValueError
            If no layer has that name; the message lists the known names.
        """
        return find_named(self.layers, name, f"workload {self.model!r}")

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (lists instead of tuples); inverse of :meth:`from_dict`."""
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "layers": [_jsonable(asdict(layer)) for layer in self.layers],
            "unmodelled": [list(pair) for pair in self.unmodelled],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Workload:
        """Build a workload from :meth:`to_dict` output (for example after a JSON round trip).

        Raises
        ------
        ValueError
            Missing or unknown keys (the known ones are listed) or invalid values.
        """
        _check_keys(data, ("model", "input_shape", "layers", "unmodelled"), "workload")
        layer_keys = tuple(f.name for f in fields(LayerSpec))
        layers = []
        for i, raw in enumerate(data["layers"]):
            _check_keys(raw, layer_keys, f"workload.layers[{i}]")
            layers.append(LayerSpec(**{k: _tupled(raw[k]) for k in layer_keys}))
        return cls(
            model=data["model"],
            input_shape=_tupled(data["input_shape"]),
            layers=tuple(layers),
            unmodelled=tuple(tuple(pair) for pair in data["unmodelled"]),
        )


def _jsonable(record: dict) -> dict:
    """Turn tuple values into lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}


def _tupled(value: object) -> object:
    """Turn a list into a tuple, leave anything else alone."""
    return tuple(value) if isinstance(value, list) else value


def _check_keys(data: object, known: tuple[str, ...], where: str) -> None:
    """Raise a ValueError when `data` is not a mapping with exactly the `known` keys."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    missing = [k for k in known if k not in data]
    unknown = sorted(set(data) - set(known))
    if missing or unknown:
        raise ValueError(
            f"{where}: missing keys {missing}, unknown keys {unknown}; known keys: {', '.join(known)}"
        )


def _per_sample(shape: torch.Size) -> tuple[int, ...]:
    """Drop a leading batch dimension of 1 (inputs may also arrive unbatched)."""
    dims = tuple(shape)
    return dims[1:] if len(dims) >= 2 and dims[0] == 1 else dims


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    """(h, w) from an int or a pair."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _conv_padding(conv: nn.Conv2d, in_hw: Sequence[int], out_hw: Sequence[int]) -> tuple[int, int]:
    """Numeric top/left padding; string padding is recovered from the real shapes.

    For ``'same'`` (stride 1) the total padding per dimension is
    ``out - in + dilation*(k-1)``, e.g. k=4, d=1, 9 -> 9: total 3, top 1
    and bottom 2, the split PyTorch uses.
    """
    if not isinstance(conv.padding, str):
        return _pair(conv.padding)
    return tuple(
        ((o - 1) * s + d * (k - 1) + 1 - i) // 2
        for i, o, k, s, d in zip(in_hw, out_hw, conv.kernel_size, conv.stride, conv.dilation)
    )


def _layer_spec(name: str, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LayerSpec:
    """Describe one executed Conv2d or Linear from its real input and output."""
    in_shape, out_shape = _per_sample(x.shape), _per_sample(y.shape)
    bias = module.bias is not None
    if isinstance(module, nn.Linear):
        return LayerSpec(
            name, "linear", in_shape, out_shape, module.in_features, module.out_features,
            (1, 1), (1, 1), (0, 0), (1, 1), 1, bias,
        )
    if len(in_shape) != 3:
        raise ValueError(
            f"layer {name!r}: Conv2d input {tuple(x.shape)} has a batch of more than one sample "
            "(e.g. patches folded into the batch); this is not supported"
        )
    return LayerSpec(
        name,
        _conv_kind(module.in_channels, module.out_channels, module.groups),
        in_shape,
        out_shape,
        module.in_channels,
        module.out_channels,
        _pair(module.kernel_size),
        _pair(module.stride),
        _conv_padding(module, in_shape[1:], out_shape[1:]),
        _pair(module.dilation),
        module.groups,
        bias,
    )


class _Recorder:
    """Forward hooks that record modelled layers and unmodelled compute in execution order."""

    def __init__(self, model: nn.Module, model_name: str) -> None:
        self.names: dict[nn.Module, list[str]] = {}
        for qualified, module in model.named_modules(remove_duplicate=False):
            self.names.setdefault(module, []).append(qualified or model_name)
        self.layers: dict[nn.Module, LayerSpec] = {}
        self.calls: dict[nn.Module, int] = {}
        self.unmodelled: dict[str, str] = {}
        self.errors: list[str] = []
        # One flag per module currently running: whether a child module ran inside it.
        self._child_ran: list[bool] = []
        self._handles = []
        for module in self.names:
            self._handles.append(module.register_forward_pre_hook(self._enter))
            self._handles.append(module.register_forward_hook(self._exit, with_kwargs=True))

    def remove(self) -> None:
        """Detach every hook."""
        for handle in self._handles:
            handle.remove()

    def _enter(self, module: nn.Module, args: tuple) -> None:
        """Mark the enclosing module as a container and open a frame for this one."""
        if self._child_ran:
            self._child_ran[-1] = True
        self._child_ran.append(False)

    def _exit(self, module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        """Record a modelled layer's first call, or a module that computed without running children."""
        ran_child = self._child_ran.pop()
        name = self.names[module][0]
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            self.calls[module] = self.calls.get(module, 0) + 1
            if self.calls[module] == 1:
                x = args[0] if args else kwargs["input"]
                try:
                    self.layers[module] = _layer_spec(name, module, x, output)
                except ValueError as err:
                    self.errors.append(str(err))
        elif not ran_child and not isinstance(module, _NO_COMPUTE):
            self.unmodelled.setdefault(name, type(module).__name__)


def extract_workload(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    name: str | None = None,
    strict: bool = False,
) -> Workload:
    """Run one forward pass and return the conv/linear workload of `model`.

    The pass uses a zero batch of one sample under ``torch.no_grad()`` in
    eval mode (so batch-norm statistics are untouched); every module's
    training flag is restored afterwards and all hooks are removed.

    Parameters
    ----------
    model : torch.nn.Module
        Any model. ``Conv2d`` (any stride, padding, dilation, groups) and
        ``Linear`` are modelled; each must run at most once per forward.
    input_shape : tuple of int
        Per-sample input shape without the batch dimension, e.g. (3, 224, 224).
    name : str, optional
        Model name recorded in the workload; defaults to the class name.
    strict : bool, default False
        Raise instead of warning when modules compute but are not modelled.

    Returns
    -------
    Workload
        Layers in execution order and the list of unmodelled modules.

    Raises
    ------
    TypeError
        If `model` is not a ``torch.nn.Module``.
    ValueError
        Bad `input_shape`; an input shape the model rejects; a modelled
        layer that runs more than once (weight sharing); a Conv2d fed a
        batch of several samples; unmodelled modules when `strict` is True.

    Warns
    -----
    UnmodelledLayerWarning
        One warning listing every unmodelled module, when `strict` is False.

    Examples
    --------
    >>> from torch import nn
    >>> w = extract_workload(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 30 * 30, 10)),
    ...                      (3, 32, 32), name="tiny")
    >>> [(layer.name, layer.kind, layer.gemm) for layer in w.layers]
    [('0', 'conv', (900, 27, 8)), ('2', 'linear', (1, 7200, 10))]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = _check_input_shape(input_shape, "input_shape")
    model_name = type(model).__name__ if name is None else name
    reference = next(model.parameters(), None)
    x = torch.zeros(
        (1, *shape),
        dtype=torch.float32 if reference is None else reference.dtype,
        device=None if reference is None else reference.device,
    )
    training = {module: module.training for module in model.modules()}
    recorder = _Recorder(model, model_name)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    except Exception as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"input shape {shape} does not fit model {model_name}: {first_line}") from err
    finally:
        recorder.remove()
        for module, flag in training.items():
            module.training = flag
    shared = [
        f"{' = '.join(recorder.names[m])} ({type(m).__name__}, {count} calls)"
        for m, count in recorder.calls.items()
        if count > 1
    ]
    if shared:
        raise ValueError(
            f"model {model_name}: layers run more than once per forward (weight sharing), which is not "
            f"supported: {'; '.join(shared)}"
        )
    if recorder.errors:
        raise ValueError(f"model {model_name}: {'; '.join(recorder.errors)}")
    unmodelled = tuple(recorder.unmodelled.items())
    if unmodelled:
        listing = ", ".join(f"{n} ({cls})" for n, cls in unmodelled)
        message = f"model {model_name}: {len(unmodelled)} modules compute but are not modelled: {listing}"
        if strict:
            raise ValueError(message)
        warnings.warn(message + "; their cost is not in the workload", UnmodelledLayerWarning, stacklevel=2)
    return Workload(model_name, shape, tuple(recorder.layers.values()), unmodelled)
