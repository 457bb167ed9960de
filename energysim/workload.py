"""Extract the workload (every GEMM) of a torch model.

One forward pass is traced at the aten-operator level (:mod:`energysim.trace`): every
convolution, linear/matmul/bmm/addmm/baddbmm/einsum that is a GEMM and every
scaled-dot-product attention (its Q K^T and attention x V products) becomes a
:class:`LayerSpec` with its real shapes; nothing is derived from per-model shape
arithmetic. A GEMM operand that is a parameter is the layer's weight; a GEMM of two
activations is a ``matmul`` layer without weights. Every other operator that computes
is listed as unmodelled with its output elements, never silently dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from numbers import Integral

import numpy as np
import torch
from torch import nn

from ._naming import find_named
from .trace import Gemm, strip_weight, trace_model

__all__ = [
    "LAYER_KINDS",
    "LayerSpec",
    "UnmodelledLayerWarning",
    "Workload",
    "extract_workload",
]

LAYER_KINDS = ("conv", "depthwise", "linear", "matmul")

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
    """One GEMM of a workload (a conv, linear or activation x activation product), per group.

    Attributes
    ----------
    name : str
        For a layer with a weight, the weight's qualified name without ``.weight``
        (``features.0``, ``enc.layers.0.self_attn.in_proj_weight``; a row slice adds
        ``[a:b]``); for a ``matmul``, the issuing module's name and the product
        (``enc.layers.0.self_attn.qk``).
    kind : {"conv", "depthwise", "linear", "matmul"}
        ``depthwise`` is a grouped conv with ``groups == in_channels > 1``
        and ``out_channels`` a multiple of ``in_channels``. ``matmul`` multiplies two
        activations (X and a second operand in the weight's place) and has no weights.
    input_shape, output_shape : tuple of int
        Per-sample shapes: (C, H, W) for convs, (..., F) for linear layers, (G, M, K)
        and (G, M, N) for a matmul of G products (heads).
    in_channels, out_channels : int
        Channels (features for a linear layer).
    kernel, stride, padding, dilation : tuple of (int, int)
        (height, width). Linear layers use (1, 1), (1, 1), (0, 0), (1, 1).
        ``padding`` is the top/left padding; for ``padding='same'`` with an
        even total the bottom/right side gets one more, as in PyTorch, and
        ``output_shape`` is authoritative.
    groups : int
        Convolution groups (1 for linear); the number of products of a matmul.
    bias : bool
        Whether the layer adds a bias.
    module : str
        Qualified name of the module that ran the operator ("" when unknown or the root).
    weight : str
        Qualified name of the weight parameter; "" means ``<name>.weight`` (no weight for a matmul).
    weight_rows : (int, int) or None
        The rows of the parameter this layer uses (``in_proj_weight[:E]``); None is all.
    weight_transposed : bool
        The parameter is stored (in, out); masks are still shaped (out, in).
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
    module: str = ""
    weight: str = ""
    weight_rows: tuple[int, int] | None = None
    weight_transposed: bool = False

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
        elif self.kind == "matmul":
            self._check_matmul(where)
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

    def _check_matmul(self, where: str) -> None:
        """A matmul has (G, M, K) -> (G, M, N) shapes, a trivial window and no weight."""
        trivial = dict(kernel=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1), bias=False, weight="")
        for field, value in trivial.items():
            if getattr(self, field) != value:
                raise ValueError(f"{where}: a matmul must have {field}={value!r}, got {getattr(self, field)!r}")
        g, k, n = self.groups, self.in_channels, self.out_channels
        if (
            len(self.input_shape) != 3
            or len(self.output_shape) != 3
            or self.input_shape[0] != g
            or self.input_shape[2] != k
            or self.output_shape != (g, self.input_shape[1], n)
        ):
            raise ValueError(
                f"{where}: matmul shapes {self.input_shape} -> {self.output_shape} must be (G, M, K) -> (G, M, N) "
                f"with G=groups={g}, K=in_channels={k}, N=out_channels={n}"
            )

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
    def has_weights(self) -> bool:
        """False for a matmul: both of its operands are activations."""
        return self.kind != "matmul"

    @property
    def parameter(self) -> str:
        """Qualified name of the weight parameter ("" for a matmul)."""
        if not self.has_weights:
            return ""
        return self.weight or f"{self.name}.weight"

    @property
    def gemm(self) -> tuple[int, int, int]:
        """(M, K, N) of one group's im2col GEMM: output pixels (or rows), reduction length, output channels."""
        if self.kind == "matmul":
            return self.input_shape[1], self.in_channels, self.out_channels
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
        """Shape of the weight mask: (out, in/groups, kh, kw) for convs, (out, in) for linear, and for
        a matmul its second operand transposed per product, (G, N, K)."""
        if self.kind == "matmul":
            return self.groups, self.out_channels, self.in_channels
        if self.kind == "linear":
            return self.out_channels, self.in_channels
        return self.out_channels, self.in_channels // self.groups, *self.kernel

    @property
    def weight_count(self) -> int:
        """Number of weights (bias excluded); for a matmul, the size of its second operand."""
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
        Every GEMM in the order the forward pass runs them.
    unmodelled : tuple of (str, str)
        (qualified name, class name) of modules that ran operators that compute but
        are not modelled (pooling, normalisation, activations, softmax, ...).
    unmodelled_ops : tuple of (str, str, int)
        (module, aten operator, output elements summed over its calls) of those operators.
    """

    model: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    unmodelled: tuple[tuple[str, str], ...] = ()
    unmodelled_ops: tuple[tuple[str, str, int], ...] = ()

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
    def weight_layers(self) -> tuple[LayerSpec, ...]:
        """The layers with a weight (every kind but ``matmul``), in execution order."""
        return tuple(layer for layer in self.layers if layer.has_weights)

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
            "unmodelled_ops": [list(entry) for entry in self.unmodelled_ops],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Workload:
        """Build a workload from :meth:`to_dict` output (for example after a JSON round trip).

        Raises
        ------
        ValueError
            Missing or unknown keys (the known ones are listed) or invalid values.
        """
        _check_keys(data, ("model", "input_shape", "layers", "unmodelled"), "workload", ("unmodelled_ops",))
        layer_keys = tuple(f.name for f in fields(LayerSpec))
        optional = tuple(f.name for f in fields(LayerSpec) if f.default is not MISSING)
        layers = []
        for i, raw in enumerate(data["layers"]):
            _check_keys(raw, tuple(k for k in layer_keys if k not in optional), f"workload.layers[{i}]", optional)
            layers.append(LayerSpec(**{k: _tupled(raw[k]) for k in layer_keys if k in raw}))
        return cls(
            model=data["model"],
            input_shape=_tupled(data["input_shape"]),
            layers=tuple(layers),
            unmodelled=tuple(tuple(pair) for pair in data["unmodelled"]),
            unmodelled_ops=tuple(tuple(entry) for entry in data.get("unmodelled_ops", ())),
        )


def _jsonable(record: dict) -> dict:
    """Turn tuple values into lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}


def _tupled(value: object) -> object:
    """Turn a list into a tuple, leave anything else alone."""
    return tuple(value) if isinstance(value, list) else value


def _check_keys(data: object, known: tuple[str, ...], where: str, optional: tuple[str, ...] = ()) -> None:
    """Raise a ValueError when `data` is not a mapping with the `known` keys (and maybe `optional` ones)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    missing = [k for k in known if k not in data]
    unknown = sorted(set(data) - set(known) - set(optional))
    if missing or unknown:
        raise ValueError(
            f"{where}: missing keys {missing}, unknown keys {unknown}; known keys: {', '.join(known + optional)}"
        )


def _per_sample(shape: torch.Size) -> tuple[int, ...]:
    """Drop a leading batch dimension of 1 (inputs may also arrive unbatched)."""
    dims = tuple(shape)
    return dims[1:] if len(dims) >= 2 and dims[0] == 1 else dims


def _layer_spec(gemm: Gemm, name: str) -> LayerSpec:
    """The LayerSpec of one traced GEMM."""
    if gemm.kind == "conv":
        c = gemm.conv
        in_shape, w = c["input_shape"], gemm.w
        return LayerSpec(
            name, _conv_kind(in_shape[0], w.shape[0], c["groups"]), in_shape, gemm.out_shape, in_shape[0],
            w.shape[0], (w.shape[2], w.shape[3]), c["stride"], c["padding"], c["dilation"], c["groups"],
            c["bias"], module=gemm.module, weight=gemm.weight,
        )
    m, k = gemm.x.shape[-2:]
    n = gemm.w.shape[-1]
    if gemm.kind == "linear":
        return LayerSpec(
            name, "linear", _per_sample((m, k)), _per_sample((m, n)), k, n, (1, 1), (1, 1), (0, 0), (1, 1), 1,
            gemm.conv.get("bias", False), module=gemm.module, weight=gemm.weight, weight_rows=gemm.weight_rows,
            weight_transposed=gemm.weight_transposed,
        )
    g = gemm.x.shape[0]
    return LayerSpec(name, "matmul", (g, m, k), (g, m, n), k, n, (1, 1), (1, 1), (0, 0), (1, 1), g, False,
                     module=gemm.module)


def _layer_names(gemms: list[Gemm], root: str = "") -> list[str]:
    """Readable names: a weight's parameter name (the model's name for the root module's own
    ``weight``); for a matmul, its module and product, numbered when repeated."""
    names, seen = [], {}
    for gemm in gemms:
        if gemm.kind == "matmul":
            base = f"{gemm.module}.{gemm.suffix}" if gemm.module else gemm.suffix
            count = seen.get(base, 0)
            seen[base] = count + 1
            names.append(base if count == 0 else f"{base}_{count}")
        else:
            rows = "" if gemm.weight_rows is None else f"[{gemm.weight_rows[0]}:{gemm.weight_rows[1]}]"
            base = root if gemm.weight == "weight" and root else strip_weight(gemm.weight)
            names.append(base + rows)
    return names


def extract_workload(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    name: str | None = None,
    strict: bool = False,
) -> Workload:
    """Trace one forward pass and return every GEMM of `model` (see the module docstring).

    The pass uses a zero batch of one sample in eval mode (so batch-norm statistics are
    untouched; grad is enabled so that PyTorch's fused attention fast paths, which hide
    their GEMMs, stay off); every module's training flag is restored afterwards and all
    hooks are removed. A model whose input is integer (token ids) says so with a class
    attribute ``input_dtype = torch.long``.

    Parameters
    ----------
    model : torch.nn.Module
        Any model. Convolutions (2-d, any stride, padding, dilation, groups), every
        matrix product and scaled-dot-product attention are modelled, whether a module
        or a functional call runs them; each weight is used by at most one GEMM per forward.
    input_shape : tuple of int
        Per-sample input shape without the batch dimension, e.g. (3, 224, 224).
    name : str, optional
        Model name recorded in the workload; defaults to the class name.
    strict : bool, default False
        Raise instead of warning when operators compute but are not modelled.

    Returns
    -------
    Workload
        Layers in execution order and the unmodelled operators with their element counts.

    Raises
    ------
    TypeError
        If `model` is not a ``torch.nn.Module``.
    ValueError
        Bad `input_shape`; an input shape the model rejects; a weight used by more than
        one GEMM (weight sharing); a Conv2d fed a batch of several samples; a parameter
        read through a view that is not a GEMM operand layout; unmodelled operators when
        `strict` is True.

    Warns
    -----
    UnmodelledLayerWarning
        One warning listing every unmodelled operator, when `strict` is False.

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
    dtype = getattr(model, "input_dtype", None)
    if not isinstance(dtype, torch.dtype):
        dtype = torch.float32 if reference is None or not reference.is_floating_point() else reference.dtype
    x = torch.zeros((1, *shape), dtype=dtype, device=None if reference is None else reference.device)
    training = {module: module.training for module in model.modules()}
    try:
        model.eval()
        traced = trace_model(model, x, model_name)
    except Exception as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"input shape {shape} does not fit model {model_name}: {first_line}") from err
    finally:
        for module, flag in training.items():
            module.training = flag
    if traced.problems:
        raise ValueError(f"model {model_name}: {'; '.join(traced.problems)}")
    names = _layer_names(traced.gemms, model_name)
    uses: dict[str, list[str]] = {}
    for gemm, layer_name in zip(traced.gemms, names):
        if gemm.kind != "matmul":
            uses.setdefault(layer_name, []).append(gemm.module)
    shared = [
        f"{' = '.join(strip_weight(a) for a in traced.aliases.get(_weight_of(n, traced), [n]))} "
        f"({_owner_class(model, _weight_of(n, traced))}, {len(m)} calls)"
        for n, m in uses.items()
        if len(m) > 1
    ]
    if shared:
        raise ValueError(
            f"model {model_name}: layers run more than once per forward (weight sharing), which is not "
            f"supported: {'; '.join(shared)}"
        )
    first = {}
    for gemm, layer_name in zip(traced.gemms, names):
        first.setdefault(layer_name, _layer_spec(gemm, layer_name))
    modules, ops = {}, []
    for (path, cls, op), (_, elements) in traced.unmodelled.items():
        modules.setdefault(path, cls)
        ops.append((path, op, elements))
    unmodelled = tuple(modules.items())
    if unmodelled:
        listing = ", ".join(
            f"{path} ({cls}): " + "; ".join(f"{op} {n:,}" for p, op, n in ops if p == path)
            for path, cls in unmodelled
        )
        message = (
            f"model {model_name}: {len(unmodelled)} modules compute but are not modelled "
            f"(operator, output elements): {listing}"
        )
        if strict:
            raise ValueError(message)
        warnings.warn(message + "; their cost is not in the workload", UnmodelledLayerWarning, stacklevel=2)
    return Workload(model_name, shape, tuple(first.values()), unmodelled, tuple(ops))


def _weight_of(layer_name: str, traced) -> str:
    """The parameter name behind a weight layer's name."""
    base = layer_name.split("[")[0]
    return base if base in traced.aliases else f"{base}.weight"


def _owner_class(model: nn.Module, parameter: str) -> str:
    """Class of the module that owns ``parameter``."""
    path = parameter.rpartition(".")[0]
    try:
        return type(model.get_submodule(path)).__name__
    except AttributeError:
        return "?"


def traced_operands(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Nonzero masks of every layer's operands on ``example`` (one sample), keyed by layer name.

    Per layer ``(x, w)``: ``x`` the input as the layer reads it (conv: (C, H, W); linear: its
    (M, K) rows; matmul: (G, M, K)), ``w`` for a matmul its second operand transposed per
    product (G, N, K), else None (weights come from the model's parameters). The caller
    sets eval mode. The attention weights of a fused attention kernel are never
    materialised; they are taken as dense.
    """
    traced = trace_model(model, example)
    out = {}
    for gemm, name in zip(traced.gemms, _layer_names(traced.gemms)):
        if name in out:
            continue
        x = (gemm.x[0] if gemm.kind == "conv" else gemm.x).detach() != 0
        w = (gemm.w.detach() != 0).transpose(1, 2).cpu().numpy() if gemm.kind == "matmul" else None
        out[name] = (x.cpu().numpy(), w)
    return out
