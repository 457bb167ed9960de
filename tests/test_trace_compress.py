"""Compression on traced workloads (issue 16): masks on every attention and MLP weight of a ViT,
weightless attention products in the budget, input masks only where meaningful."""

import math

import pytest
import torch
from torch import nn

from compress import EnergyPruner
from compress.budget import EnergyModel
from compress.masks import effective_weights, input_mask_layers, weight_masks
from compress.pruner import METHODS, STRUCTURED_METHODS
from compress.train import train
from compress.config import TrainConfig
from energysim import Sparsity, load_profile, simulate
from energysim.workload import extract_workload
from energysim.zoo import build_model

from test_trace import ConvInsideParent, Functional

pytestmark = [
    pytest.mark.filterwarnings("ignore::energysim.workload.UnmodelledLayerWarning"),
    pytest.mark.usefixtures("one_thread"),
]


class FunctionalNet(nn.Module):
    """A classifier built from functional calls only (no Conv2d module to put an input mask on)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Parameter(torch.randn(4, 1, 3, 3) * 0.3)
        self.fc = nn.Parameter(torch.randn(num_classes, 4 * 30 * 30) * 0.01)

    def forward(self, x):
        return nn.functional.linear(torch.relu(nn.functional.conv2d(x, self.conv)).flatten(1), self.fc)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model, shape = build_model("vit_tiny")
    return model, shape, extract_workload(model, shape, name="vit_tiny")


def test_every_attention_and_mlp_weight_gets_a_mask_and_is_pruned(vit):
    model, shape, workload = vit
    model = build_model("vit_tiny")[0]
    model.load_state_dict(vit[0].state_dict())
    pruner = EnergyPruner(model, "eyeriss-iclr19", budget=0.5, input_shape=shape, estimator="paper", total_steps=1,
                          energy_model=EnergyModel(workload, load_profile("eyeriss-iclr19"), "paper"))
    pruner.step()
    masks = weight_masks(model)
    expected = {l.name for l in workload.weight_layers}
    assert set(masks) == expected == set(pruner.costs())
    block = "encoder.layers.encoder_layer_0"
    for name in (f"{block}.self_attention.in_proj_weight", f"{block}.self_attention.out_proj",
                 f"{block}.mlp.0", f"{block}.mlp.3", "conv_proj", "heads.head"):
        assert name in masks
    assert sum(int((~m).sum()) for m in masks.values()) > 0  # something was pruned
    # the network computes with the masked weights, out_proj included (MultiheadAttention never calls out_proj)
    plain = build_model("vit_tiny")[0]
    state = plain.state_dict()
    for name, w in effective_weights(model).items():
        key = f"{name}.weight" if f"{name}.weight" in state else name
        state[key] = w
    for key, value in model.state_dict().items():
        if key in state and not key.endswith(("_orig", "_mask")):
            state[key] = value
    plain.load_state_dict(state)
    x = torch.randn(2, *shape)
    model.eval(), plain.eval()
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_attention_products_are_in_every_proxy(vit):
    _, _, workload = vit
    profile = load_profile("edge-16x16")
    energy = EnergyModel(workload, profile, "paper")
    table_dense = math.fsum(l.dense_energy for l in energy.table.layers)
    weightless = math.fsum(energy.table.layer(l.name).constant for l in workload.layers if not l.has_weights)
    assert weightless > 0
    assert energy.dense_energy() == pytest.approx(table_dense, rel=1e-12)
    assert energy.floor_energy() >= weightless  # pruning every weight leaves the attention products
    assert energy.dense_energy() == pytest.approx(simulate(workload, profile, "paper", Sparsity()).energy_relaxed, rel=1e-9)


def test_input_masks_only_on_conv_layers_run_by_their_own_module(vit):
    assert input_mask_layers(vit[2]) == {"conv_proj": (1, 32, 32)}
    assert input_mask_layers(extract_workload(ConvInsideParent(), (1, 8, 8))) == {"child": (1, 8, 8)}
    assert input_mask_layers(extract_workload(Functional(), (2, 6, 6))) == {}  # F.conv2d: no module to hook


def test_cli_refuses_input_masks_without_conv_modules(tmp_path, capsys):
    from compress.cli import main

    args = ["train", "--model", "test_trace_compress:FunctionalNet", "--input-shape", "1,32,32", "--dataset", "digits",
            "--profile", "eyeriss-iclr19", "--estimator", "paper", "--budget", "0.9", "--input-mask",
            "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "not to linear layers or attention products" in err and "has none: drop --input-mask" in err


def test_row_slices_are_refused_by_the_pruner():
    class Cross(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            kv = x * 2
            return self.attn(x, kv, kv, need_weights=False)[0].sum(1)

    with pytest.raises(ValueError, match=r"attn.in_proj_weight\[0:8\].* row slice"):
        EnergyPruner(Cross(), "eyeriss-iclr19", budget=0.9, input_shape=(3, 8), estimator="paper")


def _vit_config(out, **kw):
    base = dict(model="vit_tiny", dataset="digits", profile="edge-16x16", estimator="systolic", quiet=True,
                pretrain_epochs=1, epochs=1, budget=0.6, batch_size=64)
    return TrainConfig(out=str(out), **{**base, **kw})


def test_vit_tiny_trains_under_a_budget_on_digits(tmp_path):
    from compress.rundir import load_run

    result = train(_vit_config(tmp_path / "run", estimator="paper", profile="eyeriss-iclr19"))
    r = result.report
    assert r["energy_simulated"] <= r["budget_abs"]
    # read back as `ecc simulate --checkpoint RUN/model.pt` does: the in_proj_weight masks are in the file
    run = load_run(tmp_path / "run")
    assert simulate(run.workload, run.profile, "paper", run.sparsity).energy == r["energy_simulated"]
    assert run.sparsity["encoder.layers.encoder_layer_0.self_attention.in_proj_weight"].weight_mask is not None
    names = {row["name"] for row in r["layers"]}
    assert "encoder.layers.encoder_layer_3.self_attention.qk" in names  # the attention products are reported
    assert "encoder.layers.encoder_layer_3.self_attention.in_proj_weight" in names
    # a run folder with masked attention weights is a valid starting point (as `ecc sweep` uses its dense runs)
    second = train(_vit_config(tmp_path / "second", estimator="paper", profile="eyeriss-iclr19", pretrain_epochs=0,
                               budget=0.5, checkpoint=str(tmp_path / "run")))
    assert second.report["dense_accuracy"] == r["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, structure",
    [(m, "none") for m in METHODS] + sorted(STRUCTURED_METHODS),
)
def test_vit_tiny_every_method_and_structure(tmp_path, method, structure):
    # N:M needs an N:M array, where N:M magnitude (every layer N:M, nothing kept) cannot go below 0.676
    profile, budget = ("nm-32x32", 0.75) if structure == "nm" else ("edge-16x16", 0.55)
    result = train(_vit_config(tmp_path / "run", method=method, structure=structure, budget=budget, profile=profile))
    r = result.report
    assert r["energy_simulated"] <= r["budget_abs"]
    densities = {row["name"]: row["density"] for row in r["layers"]}
    assert densities["encoder.layers.encoder_layer_0.self_attention.in_proj_weight"] < 1.0 or \
        densities["encoder.layers.encoder_layer_0.mlp.0"] < 1.0
