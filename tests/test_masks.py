"""Weight masks and learnable input masks (compress.masks)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from compress.masks import (
    add_input_masks,
    add_weight_masks,
    clamp_input_masks,
    effective_weights,
    input_masks,
    load_masked_state_dict,
    project_input_masks,
    release_weight_masks,
    round_input_masks,
    set_weight_masks,
    weight_masks,
)
from energysim.sparsity import Sparsity
from energysim.workload import extract_workload
from energysim.zoo import build_model

pytestmark = pytest.mark.filterwarnings("ignore::energysim.workload.UnmodelledLayerWarning")


def _lenet5(seed: int = 0):
    torch.manual_seed(seed)
    model, shape = build_model("lenet5")
    return model, shape


def _masked_lenet5(seed: int = 0):
    """lenet5 with random weight masks (about half kept) and random {0,1} input masks on the convs."""
    model, shape = _lenet5(seed)
    workload = extract_workload(model, shape, name="lenet5")
    add_weight_masks(model, workload.layer_names)
    convs = {l.name: l.input_shape for l in workload.layers if l.kind == "conv"}
    add_input_masks(model, convs)
    g = torch.Generator().manual_seed(seed + 1)
    masks = {n: torch.rand(w.shape, generator=g) < 0.5 for n, w in effective_weights(model).items()}
    set_weight_masks(model, masks)
    with torch.no_grad():
        for m in input_masks(model).values():
            m.copy_((torch.rand(m.shape, generator=g) < 0.7).float())
    return model, shape, workload, masks


def test_state_dict_layout_is_torch_prune_and_input_mask():
    model, _, _, _ = _masked_lenet5()
    keys = set(model.state_dict())
    assert {"conv1.weight_orig", "conv1.weight_mask", "conv1.input_mask", "fc3.weight_orig", "fc3.weight_mask"} <= keys
    assert "conv1.weight" not in keys and "fc1.input_mask" not in keys


def test_masks_round_trip_through_save_and_load():
    model, shape, workload, masks = _masked_lenet5()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    fresh, _ = _lenet5(seed=7)  # different initial weights, no masks
    load_masked_state_dict(fresh, state)

    loaded = weight_masks(fresh)
    assert list(loaded) == list(masks)
    for name, mask in masks.items():
        assert torch.equal(loaded[name], mask)
    for name, m in input_masks(model).items():
        assert torch.equal(input_masks(fresh)[name], m)
    x = torch.randn(3, *shape)
    assert torch.equal(fresh(x), model(x))
    # Parameters in the same order as the original (an optimizer's state depends on it).
    assert [n for n, _ in fresh.named_parameters()] == [n for n, _ in model.named_parameters()]

    sparsity = Sparsity.from_model(fresh, workload)
    for name, mask in masks.items():
        # Pruned weights are zero; kept ones are nonzero (a uniform init is never exactly 0).
        assert np.array_equal(sparsity[name].weight_mask, mask.numpy())
    for name, m in input_masks(model).items():
        assert np.array_equal(sparsity[name].input_mask, (m != 0).numpy())
    assert sparsity["fc1"].input_mask is None


def test_set_weight_masks_zeroes_pruned_weights_and_forward_uses_them():
    model, shape = _lenet5()
    add_weight_masks(model, ["conv1"])
    mask = torch.zeros(model.conv1.weight_orig.shape, dtype=torch.bool)
    mask[0] = True
    before = model.conv1.weight_orig.detach().clone()
    set_weight_masks(model, {"conv1": mask})
    assert torch.equal(model.conv1.weight_orig.detach(), before * mask)
    x = torch.randn(2, *shape)
    expected = F.conv2d(x, before * mask, model.conv1.bias)
    assert torch.allclose(model.conv1(x), expected, atol=1e-6)


def test_release_lets_gradients_reach_pruned_weights():
    model, shape = _lenet5()
    add_weight_masks(model, ["fc1"])
    mask = torch.rand(model.fc1.weight_orig.shape, generator=torch.Generator().manual_seed(3)) < 0.5
    set_weight_masks(model, {"fc1": mask})
    x = torch.randn(4, *shape)

    model(x).sum().backward()
    assert torch.count_nonzero(model.fc1.weight_orig.grad[~mask]) == 0

    model.zero_grad()
    out_masked = model(x)
    release_weight_masks(model)
    out_released = model(x)
    assert torch.equal(out_masked, out_released)  # pruned entries are already zero
    out_released.sum().backward()
    assert torch.count_nonzero(model.fc1.weight_orig.grad[~mask]) > 0
    assert bool((model.fc1.weight_mask == 1).all())


def test_input_mask_multiplies_the_layer_input():
    model, shape = _lenet5()
    add_input_masks(model, {"conv1": shape})
    with torch.no_grad():
        model.conv1.input_mask.copy_(torch.rand(shape))
    x = torch.randn(2, *shape)
    expected = F.conv2d(x * model.conv1.input_mask, model.conv1.weight, model.conv1.bias)
    assert torch.allclose(model.conv1(x), expected, atol=1e-6)
    assert not model.conv1.input_mask.requires_grad


def test_masking_twice_or_a_missing_layer_is_an_error():
    model, shape = _lenet5()
    add_weight_masks(model, ["conv1"])
    with pytest.raises(ValueError, match="already has a weight mask"):
        add_weight_masks(model, ["conv1"])
    with pytest.raises(ValueError, match="no layer 'conv9'"):
        add_weight_masks(model, ["conv9"])
    add_input_masks(model, {"conv1": shape})
    with pytest.raises(ValueError, match="already has an input mask"):
        add_input_masks(model, {"conv1": shape})
    with pytest.raises(ValueError, match="shape"):
        set_weight_masks(model, {"conv1": torch.ones(3, dtype=torch.bool)})


def test_clamp_and_round_input_masks():
    model, shape = _lenet5()
    add_input_masks(model, {"conv1": shape})
    values = torch.tensor([-0.5, 0.0, 0.2, 0.5, 0.51, 0.99, 1.0, 1.7])
    with torch.no_grad():
        model.conv1.input_mask.view(-1)[: len(values)] = values
    clamp_input_masks(model)
    flat = model.conv1.input_mask.detach().view(-1)[: len(values)]
    assert flat.tolist() == pytest.approx([0.0, 0.0, 0.2, 0.5, 0.51, 0.99, 1.0, 1.0])
    round_input_masks(model)
    assert model.conv1.input_mask.detach().view(-1)[: len(values)].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def _two_masks(a: list[float], b: list[float]) -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(len(a), 2), torch.nn.Linear(2, len(b)))
    add_input_masks(model, {"0": (len(a),), "1": (len(b),)})
    with torch.no_grad():
        model[0].input_mask.copy_(torch.tensor(a))
        model[1].input_mask.copy_(torch.tensor(b))
    return model


def test_project_input_masks_hand_derived():
    # Ratios m**2 / cost: a0 0.81, b0 0.5, b1 0.32, a2 0.25, a1 0.01. Budget 4.5 takes a0 (1) and
    # b0 (2); b1 (2 more) would make 5 > 4.5, so the prefix stops there (a2 is not taken).
    model = _two_masks([0.9, 0.1, 0.5], [1.0, 0.8])
    energy = project_input_masks(model, {"0": 1.0, "1": 2.0, "unused": 5.0}, 4.5)
    assert energy == 3.0
    assert model[0].input_mask.tolist() == pytest.approx([0.9, 0.0, 0.0])
    assert model[1].input_mask.tolist() == pytest.approx([1.0, 0.0])


def test_project_input_masks_needs_every_layer_cost():
    model = _two_masks([1.0], [1.0])
    with pytest.raises(ValueError, match="no entry for the input-masked layers 1"):
        project_input_masks(model, {"0": 1.0}, 1.0)


@settings(max_examples=60, deadline=None)
@given(
    a=st.lists(st.floats(0, 1), min_size=1, max_size=6),
    b=st.lists(st.floats(0, 1), min_size=1, max_size=6),
    cost_a=st.floats(0.1, 10),
    cost_b=st.floats(0.1, 10),
    share=st.floats(0, 1),
)
def test_project_input_masks_invariants(a, b, cost_a, cost_b, share):
    model = _two_masks(a, b)
    before = {n: m.detach().clone() for n, m in input_masks(model).items()}
    costs = {"0": cost_a, "1": cost_b}
    budget = share * (cost_a * len(a) + cost_b * len(b))
    energy = project_input_masks(model, costs, budget)
    after = {n: m.detach().clone() for n, m in input_masks(model).items()}
    spent = math.fsum(costs[n] * int(torch.count_nonzero(m)) for n, m in after.items())
    assert spent == pytest.approx(energy) and energy <= budget * (1 + 1e-12)
    for n in after:
        kept = after[n] != 0
        assert torch.equal(after[n][kept], before[n][kept])  # kept values unchanged, the rest zeroed
        assert bool((after[n][~kept] == 0).all())
    assert project_input_masks(model, costs, budget) == energy  # idempotent
    for n, m in input_masks(model).items():
        assert torch.equal(m.detach(), after[n])
