"""Built-in model zoo and loading of user model factories.

The ImageNet models reproduce torchvision's definitions layer for layer,
with the same module qualified names (``features.0``, ``layer2.0.downsample.0``,
``classifier.1``...) and the same weight initialisation, without importing
torchvision. ``vit_tiny`` is torchvision's ``VisionTransformer`` (same names:
``conv_proj``, ``encoder.layers.encoder_layer_0.self_attention``, ``mlp.0``,
``heads.head``) scaled down for 32x32 images; ``bert_tiny`` is a BERT-style text
encoder on token ids with Hugging Face's module names
(``encoder.layer.0.attention.self.query``). Seeding before construction is the caller's job.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from numbers import Integral
from pathlib import Path

import torch
from torch import nn

from .workload import _check_input_shape

__all__ = [
    "MODEL_NAMES",
    "LeNet5",
    "LeNet300",
    "AlexNet",
    "SqueezeNet",
    "MobileNetV2",
    "ResNet18",
    "VisionTransformer",
    "BertEncoder",
    "build_model",
    "default_input_shape",
]


class LeNet5(nn.Module):
    """LeNet-5 for 32x32 single-channel images: conv1, conv2, fc1, fc2, fc3."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class LeNet300(nn.Module):
    """LeNet-300-100 multilayer perceptron on flattened 28x28 images."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class AlexNet(nn.Module):
    """AlexNet as in torchvision (``torchvision.models.alexnet``)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class _Fire(nn.Module):
    """SqueezeNet fire module: 1x1 squeeze, then concatenated 1x1 and 3x3 expands."""

    def __init__(self, inplanes: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [
                self.expand1x1_activation(self.expand1x1(x)),
                self.expand3x3_activation(self.expand3x3(x)),
            ],
            1,
        )


class SqueezeNet(nn.Module):
    """SqueezeNet 1.0 as in torchvision (``torchvision.models.squeezenet1_0``)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=7, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            _Fire(96, 16, 64, 64),
            _Fire(128, 16, 64, 64),
            _Fire(128, 32, 128, 128),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            _Fire(256, 32, 128, 128),
            _Fire(256, 48, 192, 192),
            _Fire(384, 48, 192, 192),
            _Fire(384, 64, 256, 256),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            _Fire(512, 64, 256, 256),
        )
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class _ConvBNReLU6(nn.Sequential):
    """Conv2d (no bias, 'same'-style padding), BatchNorm2d, ReLU6: torchvision's Conv2dNormActivation."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: optional 1x1 expansion, 3x3 depthwise, linear 1x1 projection."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        self.stride = stride
        hidden_dim = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_ConvBNReLU6(inp, hidden_dim, kernel_size=1))
        layers.extend(
            [
                _ConvBNReLU6(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            ]
        )
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


# (expansion t, output channels c, repeats n, first stride s), width multiplier 1.0.
_MOBILENET_V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) as in torchvision (``torchvision.models.mobilenet_v2``)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        input_channel, last_channel = 32, 1280
        features: list[nn.Module] = [_ConvBNReLU6(3, input_channel, stride=2)]
        for t, c, n, s in _MOBILENET_V2_SETTING:
            for i in range(n):
                features.append(_InvertedResidual(input_channel, c, s if i == 0 else 1, t))
                input_channel = c
        features.append(_ConvBNReLU6(input_channel, last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with batch norm and an identity or 1x1 shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 as in torchvision (``torchvision.models.resnet18``)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(_BasicBlock(64, 64), _BasicBlock(64, 64))
        self.layer2 = nn.Sequential(_BasicBlock(64, 128, 2), _BasicBlock(128, 128))
        self.layer3 = nn.Sequential(_BasicBlock(128, 256, 2), _BasicBlock(256, 256))
        self.layer4 = nn.Sequential(_BasicBlock(256, 512, 2), _BasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class _EncoderBlock(nn.Module):
    """torchvision's ViT encoder block: pre-norm attention and MLP (Linear, GELU, Dropout, Linear, Dropout)."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_dim, mlp_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp_dim, hidden_dim), nn.Dropout(0.0)
        )
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class _ViTEncoder(nn.Module):
    """Position embedding, the blocks ``layers.encoder_layer_<i>``, final layer norm (torchvision's names)."""

    def __init__(self, seq_length: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential()
        for i in range(num_layers):
            self.layers.add_module(f"encoder_layer_{i}", _EncoderBlock(num_heads, hidden_dim, mlp_dim))
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(nn.Module):
    """torchvision's ``VisionTransformer`` (patch embedding ``conv_proj``, class token, encoder, ``heads.head``).

    The defaults are ``vit_tiny``: 32x32 images in 8x8 patches (16 patches and the class
    token: 17 tokens), 4 layers of width 64 with 4 heads and a 128-wide MLP.
    ``VisionTransformer(224, 16, 12, 12, 768, 3072, in_channels=3)`` is ViT-B/16.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 8,
        num_layers: int = 4,
        num_heads: int = 4,
        hidden_dim: int = 64,
        mlp_dim: int = 128,
        num_classes: int = 10,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.conv_proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = _ViTEncoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(hidden_dim, num_classes))
        fan_in = in_channels * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=(1 / fan_in) ** 0.5)
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # (n, patches, hidden)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


class _BertSelfAttention(nn.Module):
    """Separate query, key and value projections and scaled-dot-product attention."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, hidden = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, length, self.heads, hidden // self.heads).transpose(1, 2)

        y = nn.functional.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return y.transpose(1, 2).reshape(n, length, hidden)


class _BertLayer(nn.Module):
    """Post-norm BERT layer with Hugging Face's module names."""

    def __init__(self, hidden: int, heads: int, intermediate: int) -> None:
        super().__init__()
        self.attention = nn.Module()
        self.attention.self = _BertSelfAttention(hidden, heads)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(hidden, hidden)
        self.attention.output.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(hidden, intermediate)
        self.output = nn.Module()
        self.output.dense = nn.Linear(intermediate, hidden)
        self.output.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attention
        x = a.output.LayerNorm(x + a.output.dense(a.self(x)))
        y = self.output.dense(nn.functional.gelu(self.intermediate.dense(x)))
        return self.output.LayerNorm(x + y)


class BertEncoder(nn.Module):
    """A BERT-style text classifier on token ids (``bert_tiny``: 2 layers of width 128, 2 heads,
    512-wide feed-forward, 32 tokens, a 1,000-token vocabulary).

    Input: int64 token ids (n, seq_len); the class attribute ``input_dtype`` tells
    :func:`energysim.extract_workload` so. Output: logits from the [CLS] position's pooler.
    """

    input_dtype = torch.long

    def __init__(
        self,
        num_classes: int = 2,
        vocab_size: int = 1000,
        seq_len: int = 32,
        hidden: int = 128,
        num_layers: int = 2,
        heads: int = 2,
        intermediate: int = 512,
    ) -> None:
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(vocab_size, hidden)
        self.embeddings.position_embeddings = nn.Embedding(seq_len, hidden)
        self.embeddings.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_BertLayer(hidden, heads, intermediate) for _ in range(num_layers))
        self.pooler = nn.Module()
        self.pooler.dense = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.embeddings
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = e.LayerNorm(e.word_embeddings(ids) + e.position_embeddings(positions))
        for layer in self.encoder.layer:
            x = layer(x)
        return self.classifier(torch.tanh(self.pooler.dense(x[:, 0])))


_IMAGENET_SHAPE = (3, 224, 224)

# name -> (class, default input shape (C, H, W), default number of classes)
_ZOO: dict[str, tuple[type[nn.Module], tuple[int, ...], int]] = {
    "lenet5": (LeNet5, (1, 32, 32), 10),
    "lenet300": (LeNet300, (1, 28, 28), 10),
    "alexnet": (AlexNet, _IMAGENET_SHAPE, 1000),
    "squeezenet": (SqueezeNet, _IMAGENET_SHAPE, 1000),
    "mobilenet_v2": (MobileNetV2, _IMAGENET_SHAPE, 1000),
    "resnet18": (ResNet18, _IMAGENET_SHAPE, 1000),
    "vit_tiny": (VisionTransformer, (1, 32, 32), 10),
    "bert_tiny": (BertEncoder, (32,), 2),
}

MODEL_NAMES: tuple[str, ...] = tuple(_ZOO)


def _zoo_entry(name: str) -> tuple[type[nn.Module], tuple[int, ...], int]:
    """Look a zoo name up, or raise a ValueError listing the accepted names."""
    if name not in _ZOO:
        raise ValueError(
            f"unknown model {name!r}: expected one of {', '.join(MODEL_NAMES)}, "
            "or a factory given as 'package.module:factory'"
        )
    return _ZOO[name]


def default_input_shape(name: str) -> tuple[int, ...]:
    """Return the default per-sample input shape (C, H, W) of a zoo model.

    Parameters
    ----------
    name : str
        A name from :data:`MODEL_NAMES`.

    Returns
    -------
    tuple of int
        Input shape without the batch dimension.

    Raises
    ------
    ValueError
        If `name` is not a zoo model.

    Examples
    --------
    >>> default_input_shape("lenet5")
    (1, 32, 32)
    """
    return _zoo_entry(name)[1]


def _import_hint(module_name: str, err: ImportError) -> str:
    """Where Python looked, when it is ``module_name`` itself (not one of its imports) that is missing.

    The ``ecc`` script puts its own folder on ``sys.path``, not the current one, so a
    ``models.py`` next to the user is not found unless ``PYTHONPATH`` names the folder.
    """
    missing = err.name if isinstance(err, ModuleNotFoundError) else None
    if missing is None or not (missing == module_name or module_name.startswith(f"{missing}.")):
        return ""
    top = module_name.split(".")[0]
    cwd = Path.cwd()
    searched = {Path(p or ".").resolve() for p in sys.path}
    for local in (f"{top}.py", f"{top}/"):
        if (cwd / local).exists() and cwd.resolve() not in searched:
            return (f"; {local} is in the current folder, which is not on Python's import path: "
                    "run with PYTHONPATH=. (or install the package)")
    return "; is the folder that holds it on PYTHONPATH (or the package installed)?"


def _resolve_factory(spec: str) -> Callable[..., object]:
    """Import ``package.module:attr[.attr...]`` and return the named object."""
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise ValueError(
            f"model factory {spec!r} must have the form 'package.module:factory', "
            f"or be one of {', '.join(MODEL_NAMES)}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"cannot import module {module_name!r} for model factory {spec!r}: {err}{_import_hint(module_name, err)}"
        ) from err
    obj: object = module
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            raise ValueError(f"module {module_name!r} has no attribute {attr_path!r} (model factory {spec!r})")
        obj = getattr(obj, attr)
    if not callable(obj):
        raise TypeError(f"model factory {spec!r} must be callable, got {type(obj).__name__}")
    return obj


def _call_factory(spec: str, num_classes: int | None) -> tuple[nn.Module, tuple[int, ...] | None]:
    """Call a user factory and normalise its result to (module, input shape or None)."""
    factory = _resolve_factory(spec)
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as err:
        raise TypeError(
            f"model factory {spec!r} cannot be called with {kwargs or 'no arguments'}: {err}"
        ) from err
    except ValueError:
        pass  # no introspectable signature (some builtins): let the call itself decide
    result = factory(**kwargs)
    shape = None
    if isinstance(result, tuple) and len(result) == 2:
        result, shape = result
        shape = _check_input_shape(shape, f"input shape returned by model factory {spec!r}")
    if not isinstance(result, nn.Module):
        raise TypeError(
            f"model factory {spec!r} must return a torch.nn.Module or (module, input_shape), "
            f"got {type(result).__name__}"
        )
    return result, shape


def build_model(
    name_or_factory: str, num_classes: int | None = None, in_channels: int | None = None
) -> tuple[nn.Module, tuple[int, ...] | None]:
    """Build a zoo model, or call a user factory, and return it with its input shape.

    Parameters
    ----------
    name_or_factory : str
        A name from :data:`MODEL_NAMES`, or ``"package.module:factory"``: the
        module is imported and ``factory`` (a dotted attribute path is allowed)
        is called with no arguments, or with ``num_classes=`` when
        `num_classes` is given. The factory returns a ``torch.nn.Module`` or a
        pair ``(module, input_shape)``.
    num_classes : int, optional
        Number of output classes. Defaults to 10 for the LeNets and ``vit_tiny``,
        2 for ``bert_tiny`` and 1000 for the ImageNet models.
    in_channels : int, optional
        Image channels, for the zoo models that take any (``vit_tiny``: 1 or 3);
        the returned input shape then has them. Ignored by the others and by factories.

    Returns
    -------
    model : torch.nn.Module
        The freshly built model, in training mode.
    input_shape : tuple of int or None
        Per-sample input shape (C, H, W) without the batch dimension; None
        when a factory returns a bare module (the caller must supply it).

    Raises
    ------
    ValueError
        Unknown name, malformed factory path, module that cannot be imported,
        missing attribute, bad `num_classes` or bad returned input shape.
    TypeError
        A factory that is not callable, does not accept the arguments, or
        returns something other than a module.

    Examples
    --------
    >>> model, shape = build_model("lenet5")
    >>> shape
    (1, 32, 32)
    >>> model.fc3.out_features
    10
    """
    if not isinstance(name_or_factory, str):
        raise TypeError(f"model must be a name or 'package.module:factory' string, got {name_or_factory!r}")
    if num_classes is not None and (
        not isinstance(num_classes, Integral) or isinstance(num_classes, bool) or num_classes <= 0
    ):
        raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
    if ":" in name_or_factory:
        return _call_factory(name_or_factory, num_classes)
    cls, shape, default_classes = _zoo_entry(name_or_factory)
    kwargs = {"num_classes": default_classes if num_classes is None else int(num_classes)}
    if in_channels is not None and "in_channels" in inspect.signature(cls).parameters:
        if not isinstance(in_channels, Integral) or isinstance(in_channels, bool) or in_channels <= 0:
            raise ValueError(f"in_channels must be a positive int or None, got {in_channels!r}")
        kwargs["in_channels"] = int(in_channels)
        shape = (int(in_channels), *shape[1:])
    return cls(**kwargs), shape
