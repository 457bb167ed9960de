"""Weight masks and learnable layer input masks, stored where the simulator reads them.

Weight masks follow ``torch.nn.utils.prune``: the weight trains as the parameter
``weight_orig``, the 0/1 mask is the buffer ``weight_mask`` and a forward pre-hook
computes ``weight = weight_orig * weight_mask``. Input masks (Yang, Zhu and Liu,
ICLR 2019, section 3.3) are a parameter ``input_mask`` shaped like one input sample
(C x H x W for a conv layer) and a forward pre-hook that multiplies the layer's input
by it. A layer name is the workload's (:class:`energysim.LayerSpec`): a module's name stands for
its ``weight``, and ``<module>.<parameter>`` for any other parameter (the
``in_proj_weight`` of ``nn.MultiheadAttention``, a parameter a functional call uses), which
is masked the same way (``in_proj_weight_orig``, ``in_proj_weight_mask``). Because a module
may read another module's weight without calling it (``MultiheadAttention`` reads
``out_proj.weight``), the model itself also recomputes every masked weight before each
forward. Neither changes the model's class, both are saved and loaded with its
``state_dict`` (:func:`load_masked_state_dict` rebuilds them on a fresh model), and
``energysim.sparsity.Sparsity.from_model`` reads them directly: zeros of
``weight_orig * weight_mask`` and of ``input_mask``.

Input masks learn in [0, 1] with the weights frozen: after each optimizer step they
are clamped (:func:`clamp_input_masks`), every few steps projected onto an energy
budget (:func:`project_input_masks`), and at the end of a mask phase rounded to
{0, 1} (:func:`round_input_masks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from energysim.trace import strip_weight

from .projection import LayerCost, project

__all__ = [
    "add_input_masks",
    "add_weight_masks",
    "clamp_input_masks",
    "effective_weights",
    "input_mask_layers",
    "input_masks",
    "layer_weight",
    "load_masked_state_dict",
    "project_input_masks",
    "release_weight_masks",
    "round_input_masks",
    "set_weight_masks",
    "weight_masks",
]


class _InputMaskHook:
    """Forward pre-hook multiplying a module's first input by its ``input_mask``."""

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (args[0] * module.input_mask, *args[1:])


def _module(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)`` with an error that names the model's layers."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        known = [n for n, m in model.named_modules() if hasattr(m, "weight") or hasattr(m, "weight_orig")]
        raise ValueError(f"model has no layer {name!r}; layers with weights: {', '.join(known)}") from None


def _resolve(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """(module, parameter attribute) of a layer name: a module's ``weight``, or ``<module>.<parameter>``."""
    if "[" in name:
        raise ValueError(
            f"layer {name!r} uses a row slice of a parameter that other layers share; masking a slice is not supported"
        )
    try:
        return model.get_submodule(name), "weight"
    except AttributeError:
        pass
    path, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(path)
    except AttributeError:
        module = None
    if module is None or (attr not in module._parameters and f"{attr}_orig" not in module._parameters):
        known = [n for n, m in model.named_modules() if hasattr(m, "weight") or hasattr(m, "weight_orig")]
        raise ValueError(f"model has no layer {name!r}; layers with weights: {', '.join(known)}") from None
    return module, attr


def _has_weight_mask(module: nn.Module, attr: str = "weight") -> bool:
    return isinstance(getattr(module, f"{attr}_mask", None), torch.Tensor) and f"{attr}_orig" in module._parameters


def layer_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The weight a layer name refers to: ``weight_orig`` when masked (its trained values), else the parameter.

    Raises
    ------
    ValueError
        If the model has no such layer, or the name is a row slice.
    """
    module, attr = _resolve(model, name)
    return module._parameters[f"{attr}_orig"] if _has_weight_mask(module, attr) else module._parameters[attr]


class _RefreshMasked:
    """Forward pre-hook of the model: recompute every masked weight (``orig * mask``), so a module that
    reads another module's weight without calling it (``MultiheadAttention.out_proj``) sees the mask."""

    def __call__(self, model: nn.Module, args: tuple) -> None:
        for module in model.modules():
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, prune.BasePruningMethod):
                    hook(module, args)


def _refreshing(model: nn.Module) -> None:
    """Give the model one :class:`_RefreshMasked` hook."""
    if not any(isinstance(h, _RefreshMasked) for h in model._forward_pre_hooks.values()):
        model.register_forward_pre_hook(_RefreshMasked())


def add_weight_masks(model: nn.Module, names: Iterable[str]) -> None:
    """Reparametrize ``<name>.weight`` as ``weight_orig * weight_mask`` (mask all ones).

    Uses ``torch.nn.utils.prune.custom_from_mask``, so the state_dict holds
    ``<name>.weight_orig`` and ``<name>.weight_mask`` exactly as torch's pruning does.

    Parameters
    ----------
    model : torch.nn.Module
    names : iterable of str
        Qualified names of modules with a ``weight`` parameter.

    Raises
    ------
    ValueError
        If a module does not exist, has no ``weight`` parameter or is already masked;
        then no layer is masked.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 2))
    >>> add_weight_masks(net, ["0"])
    >>> sorted(net.state_dict())
    ['0.bias', '0.weight_mask', '0.weight_orig']
    """
    targets = []
    for name in names:  # every check first: on an error no layer has been masked
        module, attr = _resolve(model, name)
        if _has_weight_mask(module, attr):
            raise ValueError(f"layer {name!r} already has a weight mask")
        if module._parameters.get(attr) is None:
            raise ValueError(f"layer {name!r} has no {attr!r} parameter to mask")
        targets.append((module, attr))
    for module, attr in targets:
        prune.custom_from_mask(module, attr, torch.ones_like(module._parameters[attr], dtype=torch.bool))
    if targets:
        _refreshing(model)


def _masked_modules(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Layer name -> (module, parameter attribute) of every masked weight, in module order."""
    out = {}
    for path, module in model.named_modules():
        for key in module._parameters:
            attr = key[: -len("_orig")]
            if key.endswith("_orig") and _has_weight_mask(module, attr):
                out[path if attr == "weight" and path else f"{path}.{attr}" if path else attr] = (module, attr)
    return out


def weight_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Bool masks (True = kept) of every layer with a weight mask, in module order."""
    return {name: getattr(m, f"{a}_mask") != 0 for name, (m, a) in _masked_modules(model).items()}


def effective_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """``weight_orig * weight_mask`` of every masked layer, detached, in module order."""
    return {
        name: (m._parameters[f"{a}_orig"] * getattr(m, f"{a}_mask")).detach()
        for name, (m, a) in _masked_modules(model).items()
    }


@torch.no_grad()
def set_weight_masks(
    model: nn.Module, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None
) -> None:
    """Install projected masks: ``weight_mask = mask`` and ``weight_orig *= mask``.

    Zeroing ``weight_orig`` where pruned is the paper's in-place projection: a
    weight that regrows later (see :func:`release_weight_masks`) starts from zero.

    Parameters
    ----------
    model : torch.nn.Module
    masks : mapping of str to torch.Tensor
        Bool (or 0/1) tensors shaped like each layer's weight; layers not listed keep
        their mask.
    weights : mapping of str to torch.Tensor, optional
        Values to give ``weight_orig`` first (the weights a projection was made from, so
        that a second projection of the same weights may keep what the first one zeroed).

    Raises
    ------
    ValueError
        If a layer has no weight mask or a mask has the wrong shape.
    """
    modules = _masked_modules(model)
    for name, mask in masks.items():
        if name not in modules:
            raise ValueError(f"layer {name!r} has no weight mask; masked layers: {', '.join(modules)}")
        module, attr = modules[name]
        current, orig = getattr(module, f"{attr}_mask"), module._parameters[f"{attr}_orig"]
        if tuple(mask.shape) != tuple(current.shape):
            raise ValueError(
                f"mask for {name!r} has shape {tuple(mask.shape)}, the weight has {tuple(current.shape)}"
            )
        current.copy_(mask)
        if weights is not None:
            orig.copy_(weights[name])
        orig.mul_(current)


@torch.no_grad()
def release_weight_masks(model: nn.Module) -> None:
    """Set every weight mask to all ones, so pruned weights can regrow under SGD.

    After :func:`set_weight_masks` the pruned entries of ``weight_orig`` are zero, so
    the network computes the same function; only the gradient now reaches them.
    """
    for module, attr in _masked_modules(model).values():
        getattr(module, f"{attr}_mask").fill_(1)


def add_input_masks(model: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Give each named layer a learnable input mask, all ones, shaped like one input sample.

    The mask is the parameter ``<name>.input_mask`` (``requires_grad`` False until a
    mask phase turns it on) and a forward pre-hook multiplies the layer's input by it.

    Parameters
    ----------
    model : torch.nn.Module
    shapes : mapping of str to tuple of int
        Per-sample input shape of each layer, e.g. ``(C, H, W)`` for a conv layer.

    Raises
    ------
    ValueError
        If a module does not exist or already has an input mask.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3))
    >>> add_input_masks(net, {"0": (1, 5, 5)})
    >>> tuple(net[0].input_mask.shape), net(torch.ones(4, 1, 5, 5)).shape
    ((1, 5, 5), torch.Size([4, 2, 3, 3]))
    """
    for name, shape in shapes.items():
        module = _module(model, name)
        if hasattr(module, "input_mask"):
            raise ValueError(f"layer {name!r} already has an input mask")
        reference = module._parameters.get("weight_orig", module._parameters.get("weight"))
        device = reference.device if reference is not None else None
        module.register_parameter("input_mask", nn.Parameter(torch.ones(shape, device=device), requires_grad=False))
        module.register_forward_pre_hook(_InputMaskHook())


def input_mask_layers(workload) -> dict[str, tuple[int, ...]]:
    """The layers an input mask is meaningful for, with their per-sample input shapes.

    Those are the convolutions that their own ``Conv2d`` module runs (the layer's
    ``module`` is its name), so that a forward pre-hook on the module masks exactly the
    layer's input (the paper's layer input masks). Linear layers, attention products and
    convolutions called functionally inside another module take none.
    """
    return {
        l.name: l.input_shape for l in workload.layers if l.kind in ("conv", "depthwise") and l.module == l.name
    }


def input_masks(model: nn.Module) -> dict[str, nn.Parameter]:
    """The ``input_mask`` parameter of every layer that has one, in module order."""
    return {
        name: m.input_mask
        for name, m in model.named_modules()
        if isinstance(getattr(m, "input_mask", None), nn.Parameter)
    }


@torch.no_grad()
def clamp_input_masks(model: nn.Module) -> None:
    """Clamp every input mask to [0, 1] in place (after each mask optimizer step)."""
    for mask in input_masks(model).values():
        mask.clamp_(0.0, 1.0)


@torch.no_grad()
def round_input_masks(model: nn.Module) -> None:
    """Round every input mask to {0, 1} in place (0.5 goes to 0: round half to even)."""
    for mask in input_masks(model).values():
        mask.round_()


@torch.no_grad()
def project_input_masks(model: nn.Module, energy_per_input: Mapping[str, float], budget: float) -> float:
    """Zero the input-mask entries that do not fit an energy budget on the inputs.

    The same knapsack as the weight projection, with the mask values in place of
    the weights: keep the entries maximizing ``sum m**2`` subject to
    ``sum over kept entries of energy_per_input[layer] <= budget``, greedily by
    ``m**2 / energy_per_input`` over all layers at once
    (:func:`compress.projection.project`). With equal per-input energies this is a
    global top-k of the mask values. Zero entries are never kept.

    Parameters
    ----------
    model : torch.nn.Module
        A model with input masks (values in [0, 1]).
    energy_per_input : mapping of str to float
        Energy of one nonzero input of each masked layer; > 0. Extra keys are ignored.
    budget : float
        Energy allowed for all the masked layers' nonzero inputs together; >= 0.

    Returns
    -------
    float
        The input energy of the kept entries.

    Raises
    ------
    ValueError
        If a masked layer has no (or a non-positive) energy per input, or the budget
        is negative.
    """
    masks = input_masks(model)
    missing = [n for n in masks if n not in energy_per_input]
    if missing:
        raise ValueError(f"energy_per_input has no entry for the input-masked layers {', '.join(missing)}")
    costs = {n: LayerCost(n, float(energy_per_input[n]), float(energy_per_input[n]), None, 0.0) for n in masks}
    result = project({n: m.detach() for n, m in masks.items()}, costs, budget)
    for name, mask in masks.items():
        mask.mul_(result.masks[name])
    return result.energy


def load_masked_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load a state_dict saved from a masked model into a fresh (unmasked) one.

    Weight masks are installed for every ``<parameter>_mask`` key that has a
    ``<parameter>_orig`` beside it (``fc1.weight_mask``, ``attn.in_proj_weight_mask``) and input masks
    for every ``<layer>.input_mask`` key, then the state is loaded strictly. Layers
    already masked in ``model`` are left as they are.

    Parameters
    ----------
    model : torch.nn.Module
        The same architecture the state was saved from.
    state : mapping of str to torch.Tensor

    Raises
    ------
    ValueError
        If a masked layer does not exist in ``model``.
    RuntimeError
        From ``load_state_dict`` when keys or shapes still differ.
    """
    # Weight masks first, as a training run installs them: the parameter order (and so
    # an optimizer's state) then matches the model the state was saved from.
    for key in state:
        parameter = key[: -len("_mask")]
        if key.endswith("_mask") and f"{parameter}_orig" in state:
            name = strip_weight(parameter)
            module, attr = _resolve(model, name)
            if not _has_weight_mask(module, attr):
                add_weight_masks(model, [name])
    for key in state:
        if key.endswith(".input_mask"):
            name = key[: -len(".input_mask")]
            if not hasattr(_module(model, name), "input_mask"):
                add_input_masks(model, {name: tuple(state[key].shape)})
    model.load_state_dict(state)
