"""The paper estimator: the ICLR 2019 acceptance figures, brute-force MAC counts, invariants."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from energysim.estimators.paper import estimate_layer, refetched_input_nnz
from energysim.report import Report
from energysim.simulate import simulate
from energysim.sparsity import LayerSparsity, Sparsity
from energysim.spec import load_profile
from energysim.workload import extract_workload
from energysim.zoo import build_model

PAPER = load_profile("eyeriss-iclr19")


def lenet5_workload():
    model, shape = build_model("lenet5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, extract_workload(model, shape, name="lenet5")


def zero_weights(workload):
    return Sparsity({l.name: LayerSparsity(np.zeros(l.weight_shape, bool), None) for l in workload.layers})


def test_lenet5_acceptance_figures():
    _, workload = lenet5_workload()
    report = simulate(workload, PAPER, "paper")
    assert report.energy_relaxed == pytest.approx(1.7108e7, rel=5e-5)
    shares = [round(100 * l.energy_relaxed / report.energy_relaxed, 1) for l in report.layers]
    assert shares == [11.3, 14.9, 59.9, 12.7, 1.1]
    floor = simulate(workload, PAPER, "paper", zero_weights(workload))
    assert floor.energy_relaxed / report.energy_relaxed == pytest.approx(0.1523, abs=5e-5)


def test_lenet5_per_weight_costs():
    """conv1: 200 + ceil(784/12)*6 + 784 + 3*784 = 3732 (16732 past the buffer); conv2 654; fc 210."""
    _, workload = lenet5_workload()
    dense = simulate(workload, PAPER, "paper")
    one_less = {}
    for layer in workload.layers:
        mask = np.ones(layer.weight_shape, bool)
        mask.flat[0] = False
        one_less[layer.name] = LayerSparsity(mask, None)
    fewer = simulate(workload, PAPER, "paper", Sparsity(one_less))
    per_weight = {a.name: a.energy_relaxed - b.energy_relaxed for a, b in zip(dense.layers, fewer.layers)}
    assert per_weight == {"conv1": 3732, "conv2": 654, "fc1": 210, "fc2": 210, "fc3": 210}
    # Past the 4,096-word weight buffer, a conv1 weight costs 66*(200+6) + 784 + 3*784 = 16732.
    small = load_profile("eyeriss-iclr19", ["memory.buffer.filter_words=100"])
    full = estimate_layer(workload.layer("conv1"), small, LayerSparsity())
    mask = np.ones((6, 1, 5, 5), bool)
    mask.flat[0] = False
    assert full.energy_relaxed - estimate_layer(workload.layer("conv1"), small, LayerSparsity(mask)).energy_relaxed == 16732


def test_refetch_worked_case():
    # 10 rows of 4 nonzeros, kernel 3, stride 1, s1 = 20: batches [0,5) [3,8) [6,10);
    # rows 3,4 then 6,7 are loaded twice: 4 rows * 4 = 16 refetched nonzeros.
    assert refetched_input_nnz(np.full(10, 4), 0, 3, 1, 20, "x") == 16
    assert refetched_input_nnz(np.full(10, 4), 0, 3, 1, 1000, "x") == 0
    with pytest.raises(ValueError, match="do not fit the ifmap buffer"):
        refetched_input_nnz(np.full(10, 4), 0, 3, 1, 8, "x")


def brute_force_effective_macs(layer, wmask, xmask):
    """Count (output, weight) pairs whose weight and input are both nonzero, by loops."""
    if layer.kind == "linear":
        return sum(int(wmask[o, i] and xmask[i]) for o in range(wmask.shape[0]) for i in range(wmask.shape[1]))
    c_out, c_in_g, kh, kw = wmask.shape
    g = layer.groups
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    _, oh, ow = layer.output_shape
    _, h, w = xmask.shape
    count = 0
    for o in range(c_out):
        group = o // (c_out // g)
        for ci in range(c_in_g):
            c = group * c_in_g + ci
            for i in range(kh):
                for j in range(kw):
                    if not wmask[o, ci, i, j]:
                        continue
                    for y in range(oh):
                        for x in range(ow):
                            yy, xx = y * sh - ph + i * dh, x * sw - pw + j * dw
                            if 0 <= yy < h and 0 <= xx < w and xmask[c, yy, xx]:
                                count += 1
    return count


@pytest.mark.parametrize(
    "module, shape",
    [
        (torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), (3, 7, 6)),
        (torch.nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4), (4, 5, 5)),
        (torch.nn.Conv2d(4, 6, (3, 2), groups=2, bias=False), (4, 6, 5)),
        (torch.nn.Linear(7, 5), (7,)),
    ],
)
def test_effective_macs_equal_brute_force(module, shape):
    workload = extract_workload(module, shape)
    layer = workload.layers[0]
    rng = np.random.default_rng(1)
    for density in (0.2, 0.6):
        wmask = rng.random(layer.weight_shape) < density
        xmask = rng.random(layer.input_shape) < density
        report = estimate_layer(layer, PAPER, LayerSparsity(wmask, xmask))
        assert report.effective_macs == brute_force_effective_macs(layer, wmask, xmask)
        assert report.macs == math.prod(layer.gemm) * layer.groups


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), which=st.sampled_from(["weight", "input"]), layer_index=st.integers(0, 4))
def test_zeroing_never_raises_energy(seed, which, layer_index):
    _, workload = lenet5_workload()
    layer = workload.layers[layer_index]
    rng = np.random.default_rng(seed)
    wmask = rng.random(layer.weight_shape) < rng.uniform(0.05, 1)
    xmask = rng.random(layer.input_shape) < rng.uniform(0.05, 1)
    before = estimate_layer(layer, PAPER, LayerSparsity(wmask, xmask))
    target = wmask if which == "weight" else xmask
    nonzero = np.flatnonzero(target)
    if len(nonzero):
        target.flat[rng.choice(nonzero)] = False
    after = estimate_layer(layer, PAPER, LayerSparsity(wmask, xmask))
    assert after.energy <= before.energy
    assert after.energy_relaxed <= before.energy_relaxed
    assert after.effective_macs <= before.effective_macs


def test_report_fields_and_json_round_trip():
    _, workload = lenet5_workload()
    report = simulate(workload, PAPER, "paper", Sparsity.synthetic(workload, 0.4, 0.7, "random", 3))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["estimator"] == "paper" and data["units"] == "normalized" and data["model"] == "lenet5"
    for layer in data["layers"]:
        assert layer["cycles"] is None and layer["stall_cycles"] is None and layer["compute_cycles"] is None
        assert set(layer["energy_by_level"]) == {"dram", "buffer", "rf", "mac", "leakage"}
        assert layer["energy"] == pytest.approx(sum(layer["energy_by_level"].values()))
        assert layer["energy"] <= layer["energy_relaxed"]
    assert data["total"]["cycles"] is None
    assert data["total"]["energy"] == pytest.approx(sum(l["energy"] for l in data["layers"]))
    again = Report.from_dict(data)
    assert again.to_dict() == report.to_dict()


def test_exact_equals_relaxed_when_inputs_dense_and_unpadded():
    _, workload = lenet5_workload()
    report = simulate(workload, PAPER, "paper", Sparsity.synthetic(workload, 0.3, 1.0, "random", 0))
    for layer in report.layers:
        assert layer.energy == pytest.approx(layer.energy_relaxed)
