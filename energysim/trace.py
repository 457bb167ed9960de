"""Operator-level tracing: the GEMMs a torch model executes, seen as aten operators.

One forward pass runs under a :class:`torch.utils._python_dispatch.TorchDispatchMode`,
which sees every aten operator whatever Python called it (a module, a functional call,
``torch.matmul``, ``einsum``, attention kernels). A table keyed by operator (``_GEMM_OPS``)
turns convolutions, ``mm``/``addmm``/``bmm``/``baddbmm`` and the scaled-dot-product
attention kernels into :class:`Gemm` records; every other operator that computes is
counted as unmodelled with its output elements; shape and copy operators are ignored
(``_NO_COMPUTE``).

A GEMM operand is a *weight* when its storage is a parameter's (``in_proj_weight`` and its
row slices, weights passed to functional ops, the ``weight = weight_orig * weight_mask``
tensors that ``torch.nn.utils.prune`` computes before each forward); otherwise it is an
activation. Module attribution comes from forward pre/post hooks: the innermost running
module issued the operator.

Fused fast paths of ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer``
(``_native_multi_head_attention``, ``_transformer_encoder_layer_fwd``) only run without
autograd; the pass therefore runs with grad enabled (a float input requires grad), which
makes PyTorch take the composite path whose GEMMs are visible. A fused kernel that still
runs (a model whose parameters are all frozen and whose input is integer) is listed as
unmodelled, never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["Gemm", "Trace", "strip_weight", "trace_model"]

aten = torch.ops.aten

# Operators that only reshape, alias, copy, create or move data: no arithmetic worth modelling.
_NO_COMPUTE = {
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze",
    "select", "slice", "split", "split_with_sizes", "chunk", "unbind", "clone", "contiguous", "detach",
    "alias", "as_strided", "cat", "stack", "flatten", "zeros", "ones", "empty", "full", "arange",
    "zeros_like", "ones_like", "empty_like", "full_like", "copy_", "_to_copy", "lift_fresh", "index_select",
    "embedding", "constant_pad_nd", "new_zeros", "new_ones", "new_empty", "scalar_tensor", "fill_",
    "zero_", "_local_scalar_dense", "unfold", "repeat", "narrow", "roll", "flip", "gather", "index",
    "masked_fill", "_unsafe_index", "lift_fresh_copy", "randn", "rand", "normal_", "uniform_",
    "_reshape_alias", "expand_as", "view_as", "movedim", "swapaxes", "diagonal", "tril", "triu",
    "where", "bernoulli_", "native_dropout", "sym_size", "sym_stride", "sym_numel", "is_same_size",
}
# The scaled-dot-product attention kernels (q, k, v are their first three arguments).
_SDPA = {
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
    "_scaled_dot_product_attention_math",
}


@dataclass
class Gemm:
    """One traced GEMM: ``groups`` independent (M x K) @ (K x N) products.

    Attributes
    ----------
    kind : {"conv", "linear", "matmul"}
        ``matmul`` has two activation operands; the others a parameter weight.
    module : str
        Qualified name of the module that issued it ("" for the root).
    suffix : str
        For ``matmul``: ``qk``/``av`` (attention) or the operator name.
    x, w : torch.Tensor
        The operands as the GEMM reads them: conv input (1, C, H, W), before any zero
        padding folded into the convolution's, and weight; for
        linear X (M, K) and W (K, N); for matmul X (G, M, K) and W (G, K, N).
    out_shape : tuple of int
    weight : str
        The parameter's qualified name ("" for matmul).
    weight_rows : (int, int) or None
        Row range of the parameter a slice covers (``in_proj_weight[:E]``).
    weight_transposed : bool
        The parameter is stored (in, out) rather than torch's (out, in).
    conv : dict
        stride, padding, dilation, groups and the unpadded input shape of a convolution.
    """

    kind: str
    module: str
    suffix: str
    x: torch.Tensor
    w: torch.Tensor
    out_shape: tuple[int, ...]
    weight: str = ""
    weight_rows: tuple[int, int] | None = None
    weight_transposed: bool = False
    conv: dict = field(default_factory=dict)


@dataclass
class Trace:
    """What one forward pass executed.

    Attributes
    ----------
    gemms : list of Gemm
        In execution order.
    unmodelled : dict
        ``(module, module class, operator) -> [calls, output elements]``.
    problems : list of str
        GEMM-like operators that could not be mapped (reported, never dropped).
    aliases : dict
        Parameter name -> every qualified name it has (shared modules).
    """

    gemms: list[Gemm] = field(default_factory=list)
    unmodelled: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    aliases: dict = field(default_factory=dict)


def _op_name(func) -> str:
    """``aten.addmm.default`` -> ``addmm``."""
    return func._overloadpacket.__name__ if hasattr(func, "_overloadpacket") else str(func)


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


class _Dispatch(TorchDispatchMode):
    """Sees every aten operator; hands it to the tracer after running it."""

    def __init__(self, tracer: "_Tracer") -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.tracer.record(func, args, kwargs or {}, out)
        return out


class _Tracer:
    """Module stack, parameter storages and the per-operator rules."""

    def __init__(self, model: nn.Module, root_name: str) -> None:
        self.trace = Trace()
        self.root_name = root_name
        self.paths: dict[nn.Module, str] = {}
        for qualified, module in model.named_modules(remove_duplicate=False):
            self.paths.setdefault(module, qualified)
        self.stack: list[nn.Module] = []
        # storage -> (qualified name, the tensor registered for it)
        self.params: dict[int, tuple[str, torch.Tensor]] = {}
        aliases: dict[int, list[str]] = {}
        for qualified, p in model.named_parameters(remove_duplicate=False):
            aliases.setdefault(id(p), []).append(qualified)
            self.params.setdefault(_storage(p), (qualified, p))
        self.trace.aliases = {names[0]: names for names in aliases.values()}
        # Weights that torch.nn.utils.prune recomputes before each forward (weight = orig * mask).
        self.pruned: list[tuple[nn.Module, str, str]] = []
        for module, path in self.paths.items():
            for attr in module._parameters:
                base = attr[: -len("_orig")]
                if attr.endswith("_orig") and isinstance(getattr(module, base, None), torch.Tensor):
                    qualified = f"{path}.{base}" if path else base
                    self.pruned.append((module, base, qualified))
                    self.trace.aliases.setdefault(qualified, [qualified])
        self._register_pruned()
        self.padded: dict[int, tuple[tuple[int, ...], tuple[int, int]]] = {}
        self._handles = []
        for module in self.paths:
            self._handles.append(module.register_forward_pre_hook(self._enter))
            self._handles.append(module.register_forward_hook(self._exit))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def _register_pruned(self) -> None:
        for module, base, qualified in self.pruned:
            t = getattr(module, base)
            self.params[_storage(t)] = (qualified, t)

    def _enter(self, module: nn.Module, args: tuple) -> None:
        self._register_pruned()  # prune's own pre-hook (registered earlier) has just recomputed them
        self.stack.append(module)

    def _exit(self, module: nn.Module, args: tuple, output: object) -> None:
        self.stack.pop()

    # -- attribution ------------------------------------------------------------------

    def _where(self) -> tuple[str, str]:
        """(path, class) of the innermost running module."""
        module = self.stack[-1] if self.stack else None
        if module is None:
            return "", ""
        return self.paths[module], type(module).__name__

    def _unmodelled(self, op: str, elements: int, note: str = "") -> None:
        path, cls = self._where()
        key = (path or self.root_name, cls, op + note)
        entry = self.trace.unmodelled.setdefault(key, [0, 0])
        entry[0] += 1
        entry[1] += int(elements)

    def _param_of(self, t: torch.Tensor) -> tuple[str, torch.Tensor] | None:
        return self.params.get(_storage(t)) if isinstance(t, torch.Tensor) else None

    # -- the table ----------------------------------------------------------------------

    def record(self, func, args: tuple, kwargs: dict, out: object) -> None:
        op = _op_name(func)
        if op == "constant_pad_nd":
            self._note_pad(args, out)
            return
        rule = _GEMM_OPS.get(op)
        if rule is not None:
            rule(self, op, args)
            return
        if op in _SDPA:
            self._sdpa(op, args)
            return
        if op in _NO_COMPUTE or op.endswith("_like") or self._applies_mask(op, args):
            return
        outs = out if isinstance(out, (tuple, list)) else (out,)
        elements = sum(o.numel() for o in outs if isinstance(o, torch.Tensor))
        if elements:
            self._unmodelled(op, elements)

    def _applies_mask(self, op: str, args: tuple) -> bool:
        """A weight or input mask being applied (``weight_orig * weight_mask``, ``x * input_mask``):
        training machinery, not part of the network's inference."""
        if op != "mul":
            return False
        names = [self._param_of(a) for a in args[:2]]
        return any(n is not None and (n[0].endswith("_orig") or n[0].endswith("input_mask")) for n in names)

    def _note_pad(self, args: tuple, out: torch.Tensor) -> None:
        """Remember a zero pad of the last two dims, so the convolution it feeds can fold it in."""
        x, pads = args[0], list(args[1])
        value = args[2] if len(args) > 2 else 0
        if value == 0 and len(pads) == 4 and all(p >= 0 for p in pads) and x.dim() == 4:
            self.padded[_storage(out)] = (x, (pads[2], pads[0]))  # the unpadded input, (top, left)

    def _conv(self, op: str, args: tuple) -> None:
        x, w, _bias, stride, padding, dilation, transposed, _output_padding, groups = args[:9]
        # One value stands for every spatial dimension (``padding='valid'`` arrives as [0]).
        stride, padding, dilation = (list(v) * (x.dim() - 2) if len(v) == 1 else list(v)
                                     for v in (stride, padding, dilation))
        param = self._param_of(w)
        if transposed or x.dim() != 4 or param is None:
            why = "transposed" if transposed else f"{x.dim() - 2}-d" if x.dim() != 4 else "activation kernel"
            self._unmodelled(op, _out_numel(x, w, stride, padding, dilation, groups), f" ({why} convolution)")
            return
        if x.shape[0] != 1:
            self.trace.problems.append(
                f"layer {strip_weight(param[0])!r}: Conv2d input {tuple(x.shape)} has a batch of more than one sample "
                "(e.g. patches folded into the batch); this is not supported"
            )
            return
        source, extra = self.padded.get(_storage(x), (x, (0, 0)))
        h_out = (x.shape[2] + 2 * padding[0] - dilation[0] * (w.shape[2] - 1) - 1) // stride[0] + 1
        w_out = (x.shape[3] + 2 * padding[1] - dilation[1] * (w.shape[3] - 1) - 1) // stride[1] + 1
        path, _ = self._where()
        self.trace.gemms.append(Gemm(
            "conv", path, "", source, w, (w.shape[0], h_out, w_out), weight=param[0],
            conv=dict(input_shape=tuple(source.shape[1:]), stride=tuple(stride), dilation=tuple(dilation), groups=int(groups),
                      padding=(padding[0] + extra[0], padding[1] + extra[1]), bias=_bias is not None),
        ))

    def _mm(self, op: str, args: tuple) -> None:
        a, b = (args[1], args[2]) if op in ("addmm", "baddbmm") else (args[0], args[1])
        if a.dim() == 3:
            a, b = _fold_batch(a, b)
            if a is None:
                self._matmul(op, args)
                return
        self._gemm2d(op, a, b, bias=op == "addmm")

    def _gemm2d(self, op: str, a: torch.Tensor, b: torch.Tensor, bias: bool) -> None:
        """(M x K) @ (K x N) with at most one parameter operand."""
        path, _ = self._where()
        pa, pb = self._param_of(a), self._param_of(b)
        if pa is None and pb is None:
            self.trace.gemms.append(Gemm("matmul", path, op, a.unsqueeze(0), b.unsqueeze(0),
                                         (1, a.shape[0], b.shape[1])))
            return
        if pa is not None and pb is not None:
            self._unmodelled(op, a.shape[0] * b.shape[1], " (two parameter operands)")
            return
        # A parameter on the left, out = P @ x, is the GEMM out^T = x^T @ P^T.
        x, w, param = (a, b, pb) if pb is not None else (b.t(), a.t(), pa)
        view = _weight_view(w, param[1])
        if view is None:
            self.trace.problems.append(
                f"{op} in {path or self.root_name!r} reads parameter {param[0]!r} through a view that is neither "
                "the parameter, its transpose nor a row slice of it"
            )
            return
        rows, transposed = view
        self.trace.gemms.append(Gemm("linear", path, op, x, w, (x.shape[0], w.shape[1]), weight=param[0],
                                     weight_rows=rows, weight_transposed=transposed, conv=dict(bias=bias)))

    def _matmul(self, op: str, args: tuple) -> None:
        a, b = (args[1], args[2]) if op == "baddbmm" else (args[0], args[1])
        if self._param_of(a) is not None or self._param_of(b) is not None:
            self._unmodelled(op, a.shape[0] * a.shape[1] * b.shape[2], " (batched parameter operand)")
            return
        path, _ = self._where()
        self.trace.gemms.append(Gemm("matmul", path, op, a, b, (a.shape[0], a.shape[1], b.shape[2])))

    def _sdpa(self, op: str, args: tuple) -> None:
        """Q K^T and softmax(.) V, with the softmax listed as unmodelled."""
        q, k, v = args[:3]
        batch = math.prod(q.shape[:-2])
        length, source = q.shape[-2], k.shape[-2]
        q3 = q.reshape(batch, length, q.shape[-1])
        k3 = k.reshape(batch, source, k.shape[-1])
        v3 = v.reshape(batch, source, v.shape[-1])
        path, _ = self._where()
        self.trace.gemms.append(Gemm("matmul", path, "qk", q3, k3.transpose(1, 2), (batch, length, source)))
        probs = torch.ones(batch, length, source, dtype=q.dtype, device=q.device)  # attention weights: dense
        self.trace.gemms.append(Gemm("matmul", path, "av", probs, v3, (batch, length, v.shape[-1])))
        self._unmodelled(op, batch * length * source, " (softmax of the attention scores)")


def _out_numel(x, w, stride, padding, dilation, groups) -> int:
    """Output elements of a convolution of any dimension (for the unmodelled listing)."""
    spatial = [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation)
    ]
    return x.shape[0] * w.shape[0] * math.prod(spatial)


def _fold_batch(a: torch.Tensor, b: torch.Tensor):
    """A bmm whose batch is 1, or whose right operand is one matrix broadcast over the batch, as 2-D."""
    if a.shape[0] == 1:
        return a[0], b[0]
    if b.stride(0) == 0:
        return a.reshape(-1, a.shape[-1]), b[0]
    return None, None


def _weight_view(w: torch.Tensor, p: torch.Tensor) -> tuple[tuple[int, int] | None, bool] | None:
    """How the (K x N) operand ``w`` reads parameter ``p``: (row range or None, stored transposed), or None.

    ``linear`` reads a torch (out, in) weight as ``p.t()``: strides (1, K). A row slice
    ``p[a:b].t()`` starts at ``a * K``. A parameter stored (in, out) is read as it is.
    """
    if p.dim() != 2:
        return None
    k, n = w.shape
    offset = w.storage_offset() - p.storage_offset()
    if p.is_contiguous() and w.stride() == (1, p.shape[1]) and k == p.shape[1] and offset % k == 0:
        start = offset // k
        if 0 <= start and start + n <= p.shape[0]:
            return (None if (start, n) == (0, p.shape[0]) else (start, start + n)), False
    if offset == 0 and tuple(w.shape) == tuple(p.shape) and w.stride() == p.stride() and p.is_contiguous():
        return None, True
    return None


def strip_weight(name: str) -> str:
    """``fc1.weight`` -> ``fc1``; other parameter names stay whole (a layer's name from its weight's)."""
    return name[: -len(".weight")] if name.endswith(".weight") else name


_GEMM_OPS: dict[str, Callable] = {
    "convolution": _Tracer._conv,
    "mm": _Tracer._mm,
    "addmm": _Tracer._mm,
    "bmm": _Tracer._mm,
    "baddbmm": _Tracer._mm,
}


def trace_model(model: nn.Module, example: torch.Tensor, root_name: str = "") -> Trace:
    """Run ``model(example)`` once and return what it executed (see the module docstring).

    The caller sets eval mode and restores training flags; this function enables grad
    (a float ``example`` is made to require grad) so that PyTorch's fused attention fast
    paths stay off, and removes every hook it adds.
    """
    tracer = _Tracer(model, root_name)
    if example.is_floating_point():
        example = example.detach().requires_grad_(True)
    try:
        with torch.enable_grad(), _Dispatch(tracer):
            model(example)
    finally:
        tracer.remove()
    return tracer.trace
