"""Model zoo and workload extraction, checked against closed-form arithmetic written out here."""

import json
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from energysim.workload import LayerSpec, UnmodelledLayerWarning, Workload, extract_workload
from energysim.zoo import MODEL_NAMES, build_model, default_input_shape


def independent_macs(model, shape):
    """MACs of one forward pass of one sample: FlopCounterMode's count (2 flops a MAC) plus, for
    the scaled-dot-product attention kernels it has no formula for on the CPU, Q K^T and
    attention x V by hand: batch * L * S * (E + Ev). Run as the tracer runs (grad on, eval)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Attention(TorchDispatchMode):
        macs = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if "scaled_dot_product" in str(func):
                q, k, v = args[:3]
                Attention.macs += q.shape[:-2].numel() * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
            return func(*args, **(kwargs or {}))

    dtype = getattr(model, "input_dtype", torch.float32)
    x = torch.zeros(1, *shape, dtype=dtype)
    if x.is_floating_point():
        x.requires_grad_(True)
    flags = {m: m.training for m in model.modules()}
    model.eval()
    with FlopCounterMode(display=False) as counter, Attention():
        model(x)
    for m, flag in flags.items():
        m.training = flag
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2 + Attention.macs


def out_size(n, k, s=1, p=0, d=1, ceil=False):
    """Output length of a sliding window: floor (or ceil) of (n + 2p - d(k-1) - 1) / s, plus 1."""
    span = n + 2 * p - d * (k - 1) - 1
    return (-(-span // s) if ceil else span // s) + 1


# ---------------------------------------------------------------- expected layers, (name, MACs) in run order


def lenet5_expected():
    return [
        ("conv1", 28 * 28 * 25 * 6),
        ("conv2", 10 * 10 * (6 * 25) * 16),
        ("fc1", 400 * 120),
        ("fc2", 120 * 84),
        ("fc3", 84 * 10),
    ]


def lenet300_expected():
    return [("fc1", 784 * 300), ("fc2", 300 * 100), ("fc3", 100 * 10)]


def alexnet_expected():
    rows = []
    h = out_size(224, 11, 4, 2)  # 55
    rows.append(("features.0", h * h * 3 * 121 * 64))
    h = out_size(out_size(h, 3, 2), 5, 1, 2)  # pool 27, conv 27
    rows.append(("features.3", h * h * 64 * 25 * 192))
    h = out_size(h, 3, 2)  # 13
    rows.append(("features.6", h * h * 192 * 9 * 384))
    rows.append(("features.8", h * h * 384 * 9 * 256))
    rows.append(("features.10", h * h * 256 * 9 * 256))
    rows += [("classifier.1", 256 * 6 * 6 * 4096), ("classifier.4", 4096 * 4096), ("classifier.6", 4096 * 1000)]
    return rows


def squeezenet_expected():
    rows = []
    h = out_size(224, 7, 2)  # 109
    rows.append(("features.0", h * h * 3 * 49 * 96))
    h = out_size(h, 3, 2, ceil=True)  # 54
    fires = {3: (96, 16, 64), 4: (128, 16, 64), 5: (128, 32, 128), 7: (256, 32, 128),
             8: (256, 48, 192), 9: (384, 48, 192), 10: (384, 64, 256), 12: (512, 64, 256)}
    for index, (cin, squeeze, expand) in fires.items():
        if index in (7, 12):
            h = out_size(h, 3, 2, ceil=True)  # 27, then 13
        rows.append((f"features.{index}.squeeze", h * h * cin * squeeze))
        rows.append((f"features.{index}.expand1x1", h * h * squeeze * expand))
        rows.append((f"features.{index}.expand3x3", h * h * squeeze * 9 * expand))
    rows.append(("classifier.1", h * h * 512 * 1000))
    return rows


def mobilenet_v2_expected():
    rows = []
    h = out_size(224, 3, 2, 1)  # 112
    rows.append(("features.0.0", h * h * 3 * 9 * 32))
    cin, index = 32, 1
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            hidden, prefix, j = cin * t, f"features.{index}.conv", 0
            if t != 1:
                rows.append((f"{prefix}.0.0", h * h * cin * hidden))
                j = 1
            h = out_size(h, 3, s if i == 0 else 1, 1)
            rows.append((f"{prefix}.{j}.0", h * h * 9 * hidden))  # depthwise: one input channel per output
            rows.append((f"{prefix}.{j + 1}", h * h * hidden * c))
            cin, index = c, index + 1
    rows.append(("features.18.0", h * h * 320 * 1280))
    rows.append(("classifier.1", 1280 * 1000))
    return rows


def resnet18_expected():
    h = out_size(224, 7, 2, 3)  # 112
    rows = [("conv1", h * h * 3 * 49 * 64)]
    h = out_size(h, 3, 2, 1)  # 56
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            ho = out_size(h, 3, stride, 1)
            rows.append((f"layer{stage}.{block}.conv1", ho * ho * cin * 9 * cout))
            rows.append((f"layer{stage}.{block}.conv2", ho * ho * cout * 9 * cout))
            if stride != 1 or cin != cout:
                rows.append((f"layer{stage}.{block}.downsample.0", ho * ho * cin * cout))
            h, cin = ho, cout
    rows.append(("fc", 512 * 1000))
    return rows


def vit_tiny_expected():
    # 8x8 patches of 32x32: 16 patches + the class token = 17 tokens, width 64, 4 heads of 16, MLP 128.
    tokens, width, heads, mlp = 17, 64, 4, 128
    rows = [("conv_proj", 16 * (1 * 8 * 8) * width)]
    for i in range(4):
        block = f"encoder.layers.encoder_layer_{i}"
        rows += [
            (f"{block}.self_attention.in_proj_weight", tokens * width * 3 * width),
            (f"{block}.self_attention.qk", heads * tokens * (width // heads) * tokens),
            (f"{block}.self_attention.av", heads * tokens * tokens * (width // heads)),
            (f"{block}.self_attention.out_proj", tokens * width * width),
            (f"{block}.mlp.0", tokens * width * mlp),
            (f"{block}.mlp.3", tokens * mlp * width),
        ]
    rows.append(("heads.head", width * 10))  # the class token only
    return rows


def bert_tiny_expected():
    # 32 tokens, width 128, 2 heads of 64, feed-forward 512.
    tokens, width, heads, ff = 32, 128, 2, 512
    rows = []
    for i in range(2):
        layer = f"encoder.layer.{i}"
        rows += [(f"{layer}.attention.self.{p}", tokens * width * width) for p in ("query", "key", "value")]
        rows += [
            (f"{layer}.attention.self.qk", heads * tokens * (width // heads) * tokens),
            (f"{layer}.attention.self.av", heads * tokens * tokens * (width // heads)),
            (f"{layer}.attention.output.dense", tokens * width * width),
            (f"{layer}.intermediate.dense", tokens * width * ff),
            (f"{layer}.output.dense", tokens * ff * width),
        ]
    rows += [("pooler.dense", width * width), ("classifier", width * 2)]
    return rows


EXPECTED = {
    "vit_tiny": vit_tiny_expected,
    "bert_tiny": bert_tiny_expected,
    "lenet5": lenet5_expected,
    "lenet300": lenet300_expected,
    "alexnet": alexnet_expected,
    "squeezenet": squeezenet_expected,
    "mobilenet_v2": mobilenet_v2_expected,
    "resnet18": resnet18_expected,
}
# Parameter counts: by hand for the LeNets (weights + biases per layer), torchvision's published
# figures for the others; torchvision's GMAC figures ("GFLOPS" in its docs) at 224x224.
PARAMS = {
    "lenet5": (25 * 6 + 6) + (150 * 16 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10),
    "lenet300": (784 * 300 + 300) + (300 * 100 + 100) + (100 * 10 + 10),
    "alexnet": 61_100_840,
    "squeezenet": 1_248_424,
    "mobilenet_v2": 3_504_872,
    "resnet18": 11_689_512,
    # conv 64*64+64, class token 64, positions 17*64, per block 2 norms (2*128), in_proj 192*64+192,
    # out_proj 64*64+64, MLP 64*128+128 and 128*64+64; final norm 128; head 64*10+10
    "vit_tiny": 4160 + 64 + 17 * 64 + 4 * (256 + 12_480 + 4160 + 8320 + 8256) + 128 + 650,
    # embeddings 1000*128 + 32*128 + norm 256; per layer 4 (128x128 + 128), 128*512+512, 512*128+128, 2 norms;
    # pooler 128*128+128, classifier 128*2+2
    "bert_tiny": 128_000 + 4096 + 256 + 2 * (4 * 16_512 + 66_048 + 65_664 + 512) + 16_512 + 258,
}
TORCHVISION_GMACS = {"alexnet": 0.71, "squeezenet": 0.82, "mobilenet_v2": 0.30, "resnet18": 1.81}
LAYER_COUNTS = {"lenet5": 5, "lenet300": 3, "alexnet": 8, "squeezenet": 26, "mobilenet_v2": 53, "resnet18": 21,
                "vit_tiny": 26, "bert_tiny": 18}


@pytest.fixture(scope="module", params=MODEL_NAMES)
def zoo_workload(request):
    torch.manual_seed(0)
    model, shape = build_model(request.param)
    with pytest.warns(UnmodelledLayerWarning):
        workload = extract_workload(model, shape, name=request.param)
    return request.param, model, shape, workload


# ---------------------------------------------------------------- zoo


def test_zoo_layers_and_macs_match_closed_form(zoo_workload):
    name, _, _, workload = zoo_workload
    expected = EXPECTED[name]()
    assert [(layer.name, layer.macs) for layer in workload.layers] == expected
    assert len(workload.layers) == LAYER_COUNTS[name]
    assert workload.macs == sum(macs for _, macs in expected)


def test_zoo_macs_match_torch_flop_counter(zoo_workload):
    # An independent count: FlopCounterMode's formulas, plus the CPU attention kernels it has none for.
    _, model, shape, workload = zoo_workload
    assert workload.macs == independent_macs(model, shape)


def test_zoo_parameter_counts_and_published_gmacs(zoo_workload):
    name, model, _, workload = zoo_workload
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    if name in TORCHVISION_GMACS:
        assert round(workload.macs / 1e9, 2) == TORCHVISION_GMACS[name]


def test_zoo_totals_by_hand():
    assert sum(m for _, m in lenet5_expected()) == 416_520
    assert sum(m for _, m in alexnet_expected()) == 714_188_480
    assert sum(m for _, m in resnet18_expected()) == 1_814_073_344


def test_zoo_shapes_and_kinds(zoo_workload):
    name, model, shape, workload = zoo_workload
    assert workload.input_shape == shape == default_input_shape(name)
    for layer in workload.weight_layers:
        weight = model.get_parameter(layer.parameter)
        assert tuple(weight.shape) == layer.weight_shape and weight.numel() == layer.weight_count
        if layer.module == layer.name:  # a Conv2d or Linear running its own weight
            assert layer.bias == (model.get_submodule(layer.name).bias is not None)
    for layer in workload.layers:
        assert layer.has_weights == (layer.parameter != "") == (layer.kind != "matmul")
    if name == "alexnet":
        assert workload.layer("features.0").output_shape == (64, 55, 55)
        assert workload.layer("classifier.1").input_shape == (9216,)
    if name == "mobilenet_v2":
        kinds = [layer.kind for layer in workload.layers]
        assert kinds.count("depthwise") == 17 and kinds.count("linear") == 1
        assert workload.layer("features.2.conv.1.0").gemm == (56 * 56, 9, 1)
    if name == "lenet5":
        assert workload.layer("conv1").kind == "conv"  # one input channel, but groups == 1: not depthwise
        assert workload.layer("conv2").input_shape == (6, 14, 14)
        assert workload.layer("fc1").input_shape == (400,)


def test_zoo_unmodelled_lists_compute_but_not_dropout(zoo_workload):
    name, _, _, workload = zoo_workload
    listed = dict(workload.unmodelled)
    if name == "resnet18":
        assert listed["bn1"] == "BatchNorm2d" and listed["maxpool"] == "MaxPool2d"
        assert listed["avgpool"] == "AdaptiveAvgPool2d" and listed["layer2.0.downsample.1"] == "BatchNorm2d"
    if name == "alexnet":
        assert "classifier.0" not in listed and "classifier.3" not in listed  # Dropout
        assert listed["avgpool"] == "AdaptiveAvgPool2d"
    assert not set(listed) & set(workload.layer_names)
    assert len(listed) == len(workload.unmodelled)  # a reused ReLU is listed once


def test_build_model_num_classes():
    assert build_model("lenet5")[0].fc3.out_features == 10
    assert build_model("lenet300", num_classes=3)[0].fc3.out_features == 3
    assert build_model("resnet18", num_classes=7)[0].fc.out_features == 7
    assert build_model("squeezenet", num_classes=5)[0].classifier[1].out_channels == 5
    assert default_input_shape("lenet300") == (1, 28, 28)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        build_model("lenet5", num_classes=0)


def test_unknown_model_lists_names_and_factory_form():
    with pytest.raises(ValueError) as info:
        build_model("vgg16")
    message = str(info.value)
    assert all(name in message for name in MODEL_NAMES) and "package.module:factory" in message
    with pytest.raises(ValueError, match="vgg16"):
        default_input_shape("vgg16")


@pytest.fixture
def factories_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def test_factory_loading(factories_on_path):
    model, shape = build_model("factories:tiny")
    assert shape == (3, 8, 8) and model[3].out_features == 4
    model, _ = build_model("factories:tiny", num_classes=6)
    assert model[3].out_features == 6
    with pytest.warns(UnmodelledLayerWarning):
        assert extract_workload(model, shape).layer_names == ("0", "3")
    model, shape = build_model("factories:tiny_bare")
    assert isinstance(model, nn.Linear) and shape is None
    model, shape = build_model("torch.nn.modules.linear:Identity")
    assert isinstance(model, nn.Identity) and shape is None


@pytest.mark.parametrize(
    "spec, error, pattern",
    [
        ("no_such_module_xyz:make", ValueError, "cannot import module 'no_such_module_xyz'"),
        ("factories:missing", ValueError, "has no attribute 'missing'"),
        (":tiny", ValueError, "package.module:factory"),
        ("factories:", ValueError, "package.module:factory"),
        ("factories:NOT_CALLABLE", TypeError, "must be callable"),
        ("factories:not_a_module", TypeError, "must return a torch.nn.Module"),
        ("factories:bad_shape", ValueError, r"input shape returned by model factory .* got \(5, 0\)"),
    ],
)
def test_factory_errors(factories_on_path, spec, error, pattern):
    with pytest.raises(error, match=pattern):
        build_model(spec)


def test_factory_rejecting_num_classes(factories_on_path):
    with pytest.raises(TypeError, match="cannot be called with"):
        build_model("factories:tiny_bare", num_classes=3)


# ---------------------------------------------------------------- GEMM view of single layers


def single_layer(module, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnmodelledLayerWarning)
        (layer,) = extract_workload(module, shape, name="m").layers
    return layer


def test_depthwise_conv_gemm():
    layer = single_layer(nn.Conv2d(8, 16, 3, padding=1, groups=8, bias=False), (8, 10, 10))
    assert layer.kind == "depthwise" and layer.name == "m"
    assert layer.gemm == (100, 9, 2)
    assert layer.macs == 100 * 9 * 2 * 8
    assert layer.weight_shape == (16, 1, 3, 3) and layer.weight_count == 144 and not layer.bias


def test_grouped_conv_gemm():
    layer = single_layer(nn.Conv2d(8, 12, 3, groups=4), (8, 9, 9))
    assert layer.kind == "conv" and layer.groups == 4
    assert layer.output_shape == (12, 7, 7)
    assert layer.gemm == (49, 2 * 9, 3)
    assert layer.macs == 49 * 18 * 3 * 4


def test_strided_dilated_padded_conv_gemm():
    conv = nn.Conv2d(3, 5, (3, 5), stride=(2, 3), padding=(1, 2), dilation=(2, 1))
    layer = single_layer(conv, (3, 17, 20))
    # H' = (17 + 2 - 2*2 - 1) // 2 + 1 = 8, W' = (20 + 4 - 4 - 1) // 3 + 1 = 7
    assert layer.output_shape == (5, 8, 7)
    assert (layer.kernel, layer.stride, layer.padding, layer.dilation) == ((3, 5), (2, 3), (1, 2), (2, 1))
    assert layer.gemm == (56, 45, 5)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("kernel, dilation, expected", [((4, 3), (1, 2), (1, 2)), ((3, 3), (2, 1), (2, 1))])
def test_same_padding_resolved_to_numbers(kernel, dilation, expected):
    conv = nn.Conv2d(2, 3, kernel, padding="same", dilation=dilation)
    layer = single_layer(conv, (2, 9, 8))
    assert layer.padding == expected and layer.output_shape == (3, 9, 8)
    # the stored top/left padding plus the remainder on the bottom/right reproduces PyTorch's output
    extra = [d * (k - 1) - 2 * p for k, d, p in zip(kernel, dilation, expected)]
    x = torch.randn(1, 2, 9, 8)
    padded = F.pad(x, (expected[1], expected[1] + extra[1], expected[0], expected[0] + extra[0]))
    manual = F.conv2d(padded, conv.weight, conv.bias, dilation=dilation)
    torch.testing.assert_close(manual, conv(x))


def test_valid_padding_is_zero():
    assert single_layer(nn.Conv2d(2, 3, 3, padding="valid"), (2, 6, 6)).padding == (0, 0)


def test_linear_on_sequence_input():
    layer = single_layer(nn.Linear(6, 4), (5, 6))
    assert layer.kind == "linear" and layer.input_shape == (5, 6) and layer.output_shape == (5, 4)
    assert layer.gemm == (5, 6, 4) and layer.macs == 120 and layer.weight_shape == (4, 6)


@settings(max_examples=40, deadline=None)
@given(
    groups=st.integers(1, 3),
    cin_per_group=st.integers(1, 3),
    cout_per_group=st.integers(1, 3),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    extra=st.tuples(st.integers(0, 6), st.integers(0, 6)),
)
def test_conv_gemm_matches_unfold_and_flop_counter(
    groups, cin_per_group, cout_per_group, kernel, stride, padding, dilation, extra
):
    cin, cout = groups * cin_per_group, groups * cout_per_group
    # smallest input the window fits in, plus some slack
    hw = tuple(max(1, d * (k - 1) + 1 - 2 * p) + e for k, d, p, e in zip(kernel, dilation, padding, extra))
    conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups)
    layer = single_layer(conv, (cin, *hw))
    x = torch.zeros(1, cin, *hw)
    columns = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)  # im2col
    m, k, n = layer.gemm
    assert (m, k * groups, n * groups) == (columns.shape[2], columns.shape[1], cout)
    with FlopCounterMode(display=False) as counter:
        conv(x)
    assert 2 * layer.macs == counter.get_total_flops()


# ---------------------------------------------------------------- extraction behaviour and errors


def test_unmodelled_warning_and_strict():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(18, 2), nn.Dropout(), nn.Identity())
    with pytest.warns(UnmodelledLayerWarning, match=r"0 \(Conv1d\)") as record:
        workload = extract_workload(model, (2, 8))
    assert len(record) == 1
    assert workload.unmodelled == (("0", "Conv1d"),) and workload.layer_names == ("2",)
    with pytest.raises(ValueError, match=r"not modelled \(operator, output elements\): 0 \(Conv1d\): convolution"):
        extract_workload(model, (2, 8), strict=True)


def test_no_warning_when_everything_is_modelled():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Dropout(), nn.Identity(), nn.Linear(8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnmodelledLayerWarning)
        workload = extract_workload(model, (1, 4, 4), strict=True)
    assert workload.unmodelled == () and workload.model == "Sequential"
    assert workload.macs == 4 * 9 * 2 + 8 * 3


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.attn(x, x, x)[0])


def test_attention_is_traced_into_its_gemms():
    # need_weights=True takes MultiheadAttention's explicit path: two bmm per forward, 2 heads of width 4.
    with pytest.warns(UnmodelledLayerWarning):
        workload = extract_workload(_Attention(), (3, 8))
    got = [(l.name, l.kind, l.groups, l.gemm) for l in workload.layers]
    assert got == [
        ("attn.in_proj_weight", "linear", 1, (3, 8, 24)),
        ("attn.bmm", "matmul", 2, (3, 4, 3)),
        ("attn.bmm_1", "matmul", 2, (3, 3, 4)),
        ("attn.out_proj", "linear", 1, (3, 8, 8)),
        ("head", "linear", 1, (3, 8, 2)),
    ]
    assert workload.unmodelled == (("attn", "MultiheadAttention"),)  # the softmax, the scaling, the mean of the heads
    assert workload.layer("attn.bmm").parameter == "" and workload.layer("attn.out_proj").parameter == "attn.out_proj.weight"


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(self.fc(x))


def test_weight_sharing_is_rejected():
    with pytest.raises(ValueError, match=r"weight sharing.*fc \(Linear, 2 calls\)"):
        extract_workload(_Twice(), (4,))
    shared = nn.Linear(4, 4)
    with pytest.raises(ValueError, match=r"0 = 2 \(Linear, 2 calls\)"):
        extract_workload(nn.Sequential(shared, nn.Identity(), shared), (4,))


def test_wrong_input_shape_names_model():
    model, _ = build_model("lenet5")
    with pytest.raises(ValueError, match=r"input shape \(3, 32, 32\) does not fit model lenet5: \S"):
        extract_workload(model, (3, 32, 32), name="lenet5")
    with pytest.raises(ValueError, match=r"input shape \(1, 28, 28\) does not fit model LeNet5: "):
        extract_workload(model, (1, 28, 28))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("shape", [(), (0, 4), (1.5, 2), "abc", (True, 3), None, (-1,), 5])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape must be a non-empty tuple of positive ints"):
        extract_workload(nn.Linear(2, 2), shape)


class _Patches(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x):
        return self.conv(x.reshape(4, 1, 4, 4))


def test_conv_on_folded_batch_is_rejected():
    with pytest.raises(ValueError, match=r"layer 'conv': Conv2d input \(4, 1, 4, 4\) has a batch of more"):
        extract_workload(_Patches(), (1, 8, 8))


def test_model_must_be_a_module():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        extract_workload(lambda x: x, (2,))


def test_training_flags_buffers_and_hooks_restored():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Sequential(nn.Flatten(), nn.Linear(8, 2)))
    model.train()
    model[2].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UnmodelledLayerWarning):
        extract_workload(model, [1, 4, 4])
    assert [m.training for m in model.modules()] == [True, True, True, False, False, False]
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # batch-norm statistics untouched
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_layer_lookup():
    workload = extract_workload(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), (3,))
    assert workload.layer("1").gemm == (1, 4, 2)
    with pytest.raises(ValueError, match="has no layer 'nope'; layers: 0, 1"):
        workload.layer("nope")


# ---------------------------------------------------------------- serialisation and validation


def test_json_round_trip(zoo_workload):
    workload = zoo_workload[3]
    restored = Workload.from_dict(json.loads(json.dumps(workload.to_dict())))
    assert restored == workload
    assert isinstance(restored.layers[0].kernel, tuple)


def test_json_round_trip_of_padding_same_and_sequence_linear():
    model = nn.Sequential(nn.Conv2d(2, 2, 4, padding="same", groups=2), nn.Flatten(2), nn.Linear(25, 3))
    workload = extract_workload(model, (2, 5, 5))
    assert workload.layer("2").gemm == (2, 25, 3)
    assert Workload.from_dict(json.loads(json.dumps(workload.to_dict()))) == workload


def test_from_dict_rejects_bad_keys():
    data = extract_workload(nn.Linear(2, 3), (2,), name="lin").to_dict()
    with pytest.raises(ValueError, match=r"unknown keys \['extra'\]; known keys: model, input_shape"):
        Workload.from_dict({**data, "extra": 1})
    del data["layers"][0]["groups"]
    with pytest.raises(ValueError, match=r"workload.layers\[0\]: missing keys \['groups'\]"):
        Workload.from_dict(data)


def _spec(**overrides):
    fields = dict(
        name="c", kind="conv", input_shape=(4, 6, 6), output_shape=(8, 4, 4), in_channels=4, out_channels=8,
        kernel=(3, 3), stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, bias=True,
    )
    return LayerSpec(**{**fields, **overrides})


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ({"kind": "pool"}, "kind must be one of"),
        ({"groups": 4}, "kind must be 'depthwise' for groups=4"),
        ({"groups": 3}, "groups=3 must divide"),
        ({"kernel": (3,)}, "kernel must be a pair"),
        ({"padding": (-1, 0)}, "padding must be a pair of ints >= 0"),
        ({"in_channels": 5}, "do not start with in_channels=5"),
        ({"input_shape": (4, 0, 6)}, "input_shape must be a non-empty tuple"),
        ({"kind": "linear"}, "a linear layer must have kernel"),
        ({"name": ""}, "layer name must be a non-empty string"),
    ],
)
def test_layer_spec_validation(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        _spec(**overrides)


def test_hand_built_layer_spec():
    layer = _spec()
    assert layer.gemm == (16, 36, 8) and layer.macs == 16 * 36 * 8
    assert _spec(groups=4, kind="depthwise").gemm == (16, 9, 2)
    with pytest.raises(ValueError, match="duplicate layer names"):
        Workload("w", (4, 6, 6), (layer, layer))
