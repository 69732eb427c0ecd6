"""Hand-written PyTorch references for the zoo's modern convnets: ConvNeXt-Tiny and MobileNetV3-Large.

Plain ``torch.nn``, written from the papers and torchvision's definitions (torchvision is not a
dependency): ``CNBlock`` with its ``layer_scale`` parameter and stochastic depth, the
``LayerNorm2d`` that permutes channels last, MobileNetV3's ``InvertedResidual`` with its
``_make_divisible`` widths and squeeze-excitation. Their parameter counts must equal torchvision's
published figures, and each zoo spec, built by nncli, must compute the same function once these
models' weights are copied into it (by position, in the order the data meets them:
:meth:`flow_order`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

PUBLISHED = {"convnext_tiny": 28_589_128, "mobilenet_v3_large": 5_483_032}


# --- ConvNeXt ------------------------------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """torchvision's: LayerNorm over the channels of [N, C, H, W]."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


def stochastic_depth(x, p: float, training: bool):
    """torchvision.ops.stochastic_depth, mode "row"."""
    if not training or p == 0.0:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype).bernoulli_(1 - p)
    return x * keep / (1 - p)


class CNBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float, sd_prob: float):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.sd_prob = sd_prob

    def forward(self, x):
        result = self.layer_scale * self.block(x)
        return stochastic_depth(result, self.sd_prob, self.training) + x


class ConvNeXt(nn.Module):
    def __init__(self, stages=((96, 3), (192, 3), (384, 9), (768, 3)), sd_rate: float = 0.1, classes: int = 1000):
        super().__init__()
        first = stages[0][0]
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, first, 4, 4, bias=True), LayerNorm2d(first, eps=1e-6))]
        total = sum(n for _, n in stages)
        block_id = 0
        for i, (dim, n) in enumerate(stages):
            blocks = []
            for _ in range(n):
                blocks.append(CNBlock(dim, 1e-6, sd_rate * block_id / (total - 1.0)))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
            if i + 1 < len(stages):
                layers.append(nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, stages[i + 1][0], 2, 2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last = stages[-1][0]
        self.classifier = nn.Sequential(LayerNorm2d(last, eps=1e-6), nn.Flatten(1), nn.Linear(last, classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))

    def flow_order(self) -> list[str]:
        """State-dict keys in data order: a block's own ``layer_scale`` after its ``block.*``."""
        keys = list(self.state_dict())
        scales = [k for k in keys if k.endswith("layer_scale")]
        out = [k for k in keys if k not in scales]
        for scale in scales:
            prefix = scale[: -len("layer_scale")]
            last = max(i for i, k in enumerate(out) if k.startswith(prefix + "block."))
            out.insert(last + 1, scale)
        return out


def convnext_tiny(**kw) -> ConvNeXt:
    """ConvNeXt-Tiny: 28,589,128 parameters."""
    return ConvNeXt(**kw)


# --- MobileNetV3 ---------------------------------------------------------------------------------


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision.models._utils._make_divisible."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_norm_act(cin, cout, k, stride=1, groups=1, act=None) -> nn.Sequential:
    """torchvision's Conv2dNormActivation with MobileNetV3's BatchNorm (eps 0.001, momentum 0.01)."""
    layers = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=0.001, momentum=0.01),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        scale = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * F.hardsigmoid(scale)


class InvertedResidual(nn.Module):
    def __init__(self, cin, k, expanded, cout, use_se, act, stride):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(conv_norm_act(cin, expanded, 1, act=act))
        layers.append(conv_norm_act(expanded, expanded, k, stride, groups=expanded, act=act))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4, 8)))
        layers.append(conv_norm_act(expanded, cout, 1))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return y + x if self.use_res else y


# (input, kernel, expanded, out, SE, activation, stride) of torchvision's mobilenet_v3_large
LARGE = (
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)


def mobilenet_v3_large(width_mult: float = 1.0, classes: int = 1000) -> nn.Sequential:
    """MobileNetV3-Large: 5,483,032 parameters at width 1.0."""

    def adjust(c):
        return make_divisible(c * width_mult, 8)

    first = adjust(LARGE[0][0])
    layers: list[nn.Module] = [conv_norm_act(3, first, 3, 2, act=nn.Hardswish)]
    for cin, k, exp, cout, se, act, stride in LARGE:
        activation = nn.Hardswish if act == "HS" else nn.ReLU
        layers.append(InvertedResidual(adjust(cin), k, adjust(exp), adjust(cout), se, activation, stride))
    last_in = adjust(LARGE[-1][3])
    layers.append(conv_norm_act(last_in, 6 * last_in, 1, act=nn.Hardswish))
    return nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(6 * last_in, 1280),
        nn.Hardswish(),
        nn.Dropout(0.2),
        nn.Linear(1280, classes),
    )
