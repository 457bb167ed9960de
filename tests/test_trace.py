"""Operator-level tracing (issue 16): every GEMM of any model, weights vs activations, attention,
completeness, and the estimators and the compressor on traced layers."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from energysim import Sparsity, load_profile, simulate
from energysim.coeffs import coefficient_table, verify_table
from energysim.estimators import paper, systolic
from energysim.sparsity import LayerSparsity
from energysim.workload import LayerSpec, Workload, extract_workload
from energysim.zoo import build_model

from test_zoo_workload import independent_macs

pytestmark = pytest.mark.filterwarnings("ignore::energysim.workload.UnmodelledLayerWarning")


class Functional(nn.Module):
    """Only parameters and functional calls: conv, linear, a (in, out) matrix, einsum, bmm, attention."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv_w = nn.Parameter(torch.randn(4, 2, 3, 3, generator=g))
        self.proj = nn.Parameter(torch.randn(6, 36, generator=g))   # torch layout (out, in)
        self.mix = nn.Parameter(torch.randn(6, 8, generator=g))     # stored (in, out): x @ mix
        self.qkv = nn.Parameter(torch.randn(8, 24, generator=g))    # einsum "tc,cd->td"

    def forward(self, x):
        y = F.relu(F.conv2d(x, self.conv_w, padding=1))          # (1, 4, 6, 6)
        t = y.flatten(2).transpose(1, 2).reshape(1, 4, 36)         # 4 tokens of 36
        t = F.linear(t, self.proj)                                  # (1, 4, 6)
        t = t @ self.mix                                            # (1, 4, 8)
        qkv = torch.einsum("btc,cd->btd", t, self.qkv)              # (1, 4, 24)
        q, k, v = qkv.view(1, 4, 3, 2, 4).permute(2, 0, 3, 1, 4)    # (1, 2 heads, 4 tokens, 4)
        a = F.scaled_dot_product_attention(q, k, v)                 # (1, 2, 4, 4)
        s = torch.bmm(a.reshape(2, 4, 4), a.reshape(2, 4, 4).transpose(1, 2))  # (2, 4, 4)
        return F.gelu(s).sum()


class ConvInsideParent(nn.Module):
    """The issue's second case: an F.conv2d in a module that also has child layers."""

    def __init__(self):
        super().__init__()
        self.child = nn.Conv2d(1, 3, 3)
        self.extra = nn.Parameter(torch.randn(5, 3, 1, 1))
        self.fc = nn.Linear(5 * 6 * 6, 2)

    def forward(self, x):
        return self.fc(F.conv2d(self.child(x), self.extra).flatten(1))


def test_functional_model_every_gemm_named_and_counted():
    workload = extract_workload(Functional(), (2, 6, 6), name="fn")
    got = [(l.name, l.kind, l.groups, l.gemm, l.parameter) for l in workload.layers]
    assert got == [
        ("conv_w", "conv", 1, (36, 18, 4), "conv_w"),
        ("proj", "linear", 1, (4, 36, 6), "proj"),
        ("mix", "linear", 1, (4, 6, 8), "mix"),
        ("qkv", "linear", 1, (4, 8, 24), "qkv"),
        ("qk", "matmul", 2, (4, 4, 4), ""),
        ("av", "matmul", 2, (4, 4, 4), ""),
        ("bmm", "matmul", 2, (4, 4, 4), ""),
    ]
    assert workload.layer("mix").weight_transposed and not workload.layer("proj").weight_transposed
    assert workload.layer("qkv").weight_transposed  # einsum reads the (in, out) matrix as it is
    # by hand: 36*18*4 + 4*36*6 + 4*6*8 + 4*8*24 + 3 products of 2 x 4x4x4
    assert workload.macs == 2592 + 864 + 192 + 768 + 3 * 128 == independent_macs(Functional(), (2, 6, 6))
    ops = {op.split(" ")[0] for _, op, _ in workload.unmodelled_ops}
    assert {"relu", "gelu", "sum", "_scaled_dot_product_flash_attention_for_cpu"} <= ops
    assert ("fn", "relu", 4 * 36) in workload.unmodelled_ops  # elements: the conv output
    with pytest.raises(ValueError, match=r"not modelled .*fn \(Functional\): relu 144"):
        extract_workload(Functional(), (2, 6, 6), name="fn", strict=True)


def test_functional_conv_inside_a_parent_is_not_dropped():
    model = ConvInsideParent()
    workload = extract_workload(model, (1, 8, 8))
    assert workload.layer_names == ("child", "extra", "fc")
    extra = workload.layer("extra")
    assert extra.kind == "conv" and extra.module == "" and extra.parameter == "extra"
    assert extra.macs == 36 * 3 * 5 and workload.macs == independent_macs(model, (1, 8, 8))


def test_the_issue_vit_counts_exactly():
    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(1, 64, 8, 8)
            layer = nn.TransformerEncoderLayer(64, 4, 256, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            return self.head(self.enc(self.patch(x).flatten(2).transpose(1, 2)).mean(1))

    model = ViT()
    workload = extract_workload(model, (1, 32, 32))
    assert workload.macs == 1_704_576 == independent_macs(model, (1, 32, 32))  # the issue's exact count
    assert workload.layer("enc.layers.0.self_attn.qk").gemm == (16, 16, 16)
    assert workload.layer("enc.layers.0.self_attn.qk").groups == 4
    # eval mode in the tracer, yet no fused encoder-layer kernel: its GEMMs are seen
    assert not any("_transformer_encoder_layer_fwd" in op for _, op, _ in workload.unmodelled_ops)


def test_in_proj_row_slices_are_weights_with_the_parameters_rows():
    class Cross(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            kv = x * 2  # key is value but not query: one projection for q, one for k and v together
            return self.attn(x, kv, kv, need_weights=False)[0]

    model = Cross()
    workload = extract_workload(model, (3, 8))
    names = [l.name for l in workload.weight_layers]
    assert names == ["attn.in_proj_weight[0:8]", "attn.in_proj_weight[8:24]", "attn.out_proj"]
    kv = workload.layer("attn.in_proj_weight[8:24]")
    assert kv.weight_rows == (8, 24) and kv.weight_shape == (16, 8) and kv.parameter == "attn.in_proj_weight"
    with torch.no_grad():
        model.attn.in_proj_weight[10] = 0
    sparsity = Sparsity.from_model(model, workload)
    assert not sparsity[kv.name].weight_mask[2].any() and sparsity[kv.name].weight_mask[3].all()
    assert sparsity["attn.in_proj_weight[0:8]"].weight_mask.all()


def test_a_pruned_model_traces_to_the_same_layers():
    from compress.masks import add_weight_masks

    model, shape = build_model("vit_tiny")
    before = extract_workload(model, shape)
    add_weight_masks(model, [l.name for l in before.weight_layers])
    after = extract_workload(model, shape)
    assert after.layers == before.layers
    assert not any(op.startswith("mul") for _, op, _ in after.unmodelled_ops)  # orig * mask is not the model's


def test_weight_sharing_is_still_rejected_for_functional_weights():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 4))

        def forward(self, x):
            return F.linear(F.linear(x, self.w), self.w)

    with pytest.raises(ValueError, match=r"weight sharing.*w \(Twice, 2 calls\)"):
        extract_workload(Twice(), (4,))


def test_workload_json_round_trip_keeps_the_new_fields():
    workload = extract_workload(Functional(), (2, 6, 6))
    assert Workload.from_dict(workload.to_dict()) == workload
    old = workload.to_dict()
    del old["unmodelled_ops"]
    for layer in old["layers"]:
        for key in ("module", "weight", "weight_rows", "weight_transposed"):
            del layer[key]
    assert Workload.from_dict(old).layer("conv_w").parameter == "conv_w.weight"  # an older file: defaults


def test_matmul_layer_validation():
    with pytest.raises(ValueError, match="must be \\(G, M, K\\) -> \\(G, M, N\\)"):
        LayerSpec("m", "matmul", (2, 3, 4), (2, 3, 6), 4, 5, (1, 1), (1, 1), (0, 0), (1, 1), 2, False)
    with pytest.raises(ValueError, match="a matmul must have weight=''"):
        LayerSpec("m", "matmul", (2, 3, 4), (2, 3, 5), 4, 5, (1, 1), (1, 1), (0, 0), (1, 1), 2, False, weight="w")


# ---------------------------------------------------------------- activations of both operands


def test_activation_masks_of_both_matmul_operands():
    model = Functional()
    workload = extract_workload(model, (2, 6, 6))
    x = torch.randn(3, 2, 6, 6)
    sparsity = Sparsity.from_activations(model, workload, x)
    # recompute q and k of the first sample by hand
    with torch.no_grad():
        y = F.relu(F.conv2d(x[:1], model.conv_w, padding=1))
        t = F.linear(y.flatten(2).transpose(1, 2).reshape(1, 4, 36), model.proj) @ model.mix
        q, k, v = (t @ model.qkv).view(1, 4, 3, 2, 4).permute(2, 0, 3, 1, 4)
    qk = sparsity["qk"]
    np.testing.assert_array_equal(qk.input_mask, (q[0] != 0).numpy())
    np.testing.assert_array_equal(qk.weight_mask, (k[0] != 0).numpy())  # K^T transposed back: (G, N=S, K=E)
    np.testing.assert_array_equal(sparsity["av"].weight_mask, (v[0] != 0).transpose(1, 2).numpy())
    tokens = y.flatten(2).transpose(1, 2).reshape(4, 36)
    np.testing.assert_array_equal(sparsity["proj"].input_mask, (tokens != 0).numpy())
    assert not sparsity["proj"].input_mask.all()  # ReLU zeros reach the next layer


# ---------------------------------------------------------------- estimators


def _matmul(g=3, m=5, k=4, n=6):
    return LayerSpec("mm", "matmul", (g, m, k), (g, m, n), k, n, (1, 1), (1, 1), (0, 0), (1, 1), g, False)


def test_paper_matmul_is_the_linear_formula_with_both_operands_as_inputs():
    profile = load_profile("eyeriss-iclr19")
    layer = _matmul()
    rng = np.random.default_rng(0)
    ls = LayerSparsity(rng.random(layer.weight_shape) < 0.5, rng.random(layer.input_shape) < 0.7)
    report = paper.estimate_layer(layer, profile, ls)
    assert report.energy_by_operand["weights"] == 0
    # by hand: each product is a linear layer (M rows, K -> N) whose weights are read like inputs
    total = 0.0
    for i in range(3):
        one = LayerSpec("x", "linear", (5, 4), (5, 6), 4, 6, (1, 1), (1, 1), (0, 0), (1, 1), 1, False)
        total += paper.estimate_layer(one, profile, LayerSparsity(ls.weight_mask[i], ls.input_mask[i])).energy
    assert report.energy == pytest.approx(total, rel=1e-12)
    dense = paper.estimate_layer(layer, profile, LayerSparsity())
    assert dense.effective_macs == layer.macs == 3 * 5 * 4 * 6


def test_systolic_matmul_counts_every_product_of_nonzero_operands():
    profile = load_profile("edge-16x16")
    layer = _matmul(g=3, m=20, k=18, n=17)
    rng = np.random.default_rng(1)
    w = rng.random(layer.weight_shape) < 0.6
    x = rng.random(layer.input_shape) < 0.8
    report = systolic.estimate_layer(layer, profile, LayerSparsity(w, x))
    brute = sum(int((x[g].astype(int) @ w[g].T.astype(int)).sum()) for g in range(3))
    assert report.macs == 3 * 20 * 18 * 17 and report.effective_macs == brute
    assert report.effective_macs + report.gated_macs >= report.macs  # folds may carry padding slots


def test_coefficient_rows_of_matmuls_are_constants():
    model, shape = build_model("vit_tiny")
    workload = extract_workload(model, shape)
    profile = load_profile("edge-16x16")
    table = coefficient_table(workload, profile, "systolic")
    dense = simulate(workload, profile, "systolic", Sparsity())
    for layer in workload.layers:
        row = table.layer(layer.name)
        if not layer.has_weights:
            assert row.weight_count == 0 and row.per_weight == row.per_input == 0
            assert row.constant == pytest.approx(dense.layer(layer.name).energy, rel=1e-12)
    rows = {r["name"]: r for r in verify_table(table, workload, profile, densities=(0.5, 1.0))}
    assert all(rows[l.name]["max_rel_error"] == pytest.approx(0, abs=1e-12) for l in workload.layers if not l.has_weights)


# ---------------------------------------------------------------- the zoo's new models on the command line


@pytest.mark.parametrize(
    "args, macs, layers",
    [
        ([], 2_442_368, 26),
        # 3 channels: only the patch embedding grows, 16 patches x (3*8*8) x 64
        (["--input-shape", "3,32,32"], 2_442_368 + 16 * 2 * 64 * 64, 26),
    ],
)
def test_cli_simulates_vit_tiny_for_one_and_three_channels(tmp_path, capsys, args, macs, layers):
    import json

    from compress.cli import main

    out = tmp_path / "r.json"
    assert main(["simulate", "--model", "vit_tiny", "--profile", "eyeriss-iclr19", "--estimator", "paper",
                 "--json", str(out), *args]) == 0
    report = json.loads(out.read_text())
    assert len(report["layers"]) == layers and sum(l["macs"] for l in report["layers"]) == macs
    assert "mm" in capsys.readouterr().out  # the attention products' kind in the table


def test_cli_simulates_bert_tiny_on_token_ids(tmp_path):
    import json

    from compress.cli import main

    out = tmp_path / "r.json"
    assert main(["simulate", "--model", "bert_tiny", "--profile", "eyeriss-iclr19", "--estimator", "paper",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert sum(l["macs"] for l in report["layers"]) == 13_123_840
    assert [l["name"] for l in report["layers"]][3:5] == ["encoder.layer.0.attention.self.qk",
                                                          "encoder.layer.0.attention.self.av"]
