"""Weight masks and learnable layer input masks, stored where the simulator reads them.

Weight masks follow ``torch.nn.utils.prune``: the weight trains as the parameter
``weight_orig``, the 0/1 mask is the buffer ``weight_mask`` and a forward pre-hook
computes ``weight = weight_orig * weight_mask``. Input masks (Yang, Zhu and Liu,
ICLR 2019, section 3.3) are a parameter ``input_mask`` shaped like one input sample
(C x H x W for a conv layer) and a forward pre-hook that multiplies the layer's input
by it. Neither changes the model's class, both are saved and loaded with its
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

from .projection import LayerCost, project

__all__ = [
    "add_input_masks",
    "add_weight_masks",
    "clamp_input_masks",
    "effective_weights",
    "input_masks",
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


def _has_weight_mask(module: nn.Module) -> bool:
    return isinstance(getattr(module, "weight_mask", None), torch.Tensor) and "weight_orig" in module._parameters


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
    modules = []
    for name in names:  # every check first: on an error no layer has been masked
        module = _module(model, name)
        if _has_weight_mask(module):
            raise ValueError(f"layer {name!r} already has a weight mask")
        if module._parameters.get("weight") is None:
            raise ValueError(f"layer {name!r} has no 'weight' parameter to mask")
        modules.append(module)
    for module in modules:
        prune.custom_from_mask(module, "weight", torch.ones_like(module.weight, dtype=torch.bool))


def _masked_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if _has_weight_mask(m)}


def weight_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Bool masks (True = kept) of every layer with a weight mask, in module order."""
    return {name: m.weight_mask != 0 for name, m in _masked_modules(model).items()}


def effective_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """``weight_orig * weight_mask`` of every masked layer, detached, in module order."""
    return {name: (m.weight_orig * m.weight_mask).detach() for name, m in _masked_modules(model).items()}


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
        module = modules.get(name)
        if module is None:
            raise ValueError(f"layer {name!r} has no weight mask; masked layers: {', '.join(modules)}")
        if tuple(mask.shape) != tuple(module.weight_mask.shape):
            raise ValueError(
                f"mask for {name!r} has shape {tuple(mask.shape)}, the weight has {tuple(module.weight_mask.shape)}"
            )
        module.weight_mask.copy_(mask)
        if weights is not None:
            module.weight_orig.copy_(weights[name])
        module.weight_orig.mul_(module.weight_mask)


@torch.no_grad()
def release_weight_masks(model: nn.Module) -> None:
    """Set every weight mask to all ones, so pruned weights can regrow under SGD.

    After :func:`set_weight_masks` the pruned entries of ``weight_orig`` are zero, so
    the network computes the same function; only the gradient now reaches them.
    """
    for module in _masked_modules(model).values():
        module.weight_mask.fill_(1)


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

    Weight masks are installed for every ``<layer>.weight_mask`` key and input masks
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
    for suffix in (".weight_mask", ".input_mask"):
        for key in state:
            if not key.endswith(suffix):
                continue
            name = key[: -len(suffix)]
            module = _module(model, name)
            if suffix == ".weight_mask" and not _has_weight_mask(module):
                add_weight_masks(model, [name])
            elif suffix == ".input_mask" and not hasattr(module, "input_mask"):
                add_input_masks(model, {name: tuple(state[key].shape)})
    model.load_state_dict(state)
