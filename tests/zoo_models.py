"""Hand-written PyTorch models for the convolutional networks of the model zoo (``specs/zoo/``).

Each constructor builds, in plain ``torch.nn`` (no nncli, no torchvision, which is not a
dependency), the network as torchvision defines it (or, for U-Net, as Ronneberger et al. 2015 in
its common padded form with transposed-convolution upsampling), written from the papers and
torchvision's architecture definitions: blocks are ``nn.Module`` classes with their own
``forward``, the way those definitions are written, not nncli's list-of-layers form. They are the
independent side of the zoo tests: their parameter counts must equal the published figures in
:data:`PUBLISHED`, and each zoo spec, built by nncli, must compute the same function after the
hand model's weights are copied into it.

Parameters are registered in the order the data flows through them (a block's body before its
shortcut, branches left to right), which is also the order of a spec; that is what lets the tests
copy weights by position where names differ. The sequence models (ViT, LSTM, GPT) are in
``zoo_models_seq.py``.
"""

from __future__ import annotations

import torch
from torch import nn

# torchvision's model documentation ("num_params") and, for U-Net, the widely quoted count of the
# 64-to-1024-channel network with transposed-convolution upsampling, 3 channels in, 2 classes.
PUBLISHED = {
    "vgg11": 132_863_336,
    "resnet34": 21_797_672,
    "resnext50_32x4d": 25_028_904,
    "wide_resnet50_2": 68_883_240,
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "squeezenet1_0": 1_248_424,
    "densenet121": 7_978_856,
    "googlenet": 6_624_904,
    "shufflenet_v2_x1_0": 2_278_604,
    "vit_b_16": 86_567_656,
    "unet": 31_037_698,
}


def conv_bn(
    cin: int,
    cout: int,
    k: int,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
    eps: float = 1e-5,
) -> nn.Sequential:
    """Conv (no bias, 'same' padding for odd k) + BatchNorm (+ activation): torchvision's
    ``Conv2dNormActivation`` / ``BasicConv2d``."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=eps),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


# --- VGG ------------------------------------------------------------------------------------


def vgg11(num_classes: int = 1000, width: int = 64, hidden: int = 4096) -> nn.Sequential:
    """VGG-11 (configuration "A", no batch norm): 132,863,336 parameters at the defaults.

    ``width`` and ``hidden`` shrink it for fast tests (64 and 4096 are the paper's)."""
    layers: list[nn.Module] = []
    cin = 3
    for v in (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, width * v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = width * v
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(7),
        nn.Flatten(),
        nn.Linear(cin * 49, hidden),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(hidden, hidden),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(hidden, num_classes),
    )


# --- ResNet family --------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convolutions plus the shortcut, then ReLU (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, groups: int = 1, base_width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped, carrying the stride: ResNet v1.5), 1x1 expand x4, shortcut, ReLU."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, groups: int = 1, base_width: int = 64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision's ResNet: stem, four stages of blocks, global average pool, fc."""

    def __init__(self, block, layers, groups=1, width_per_group=64, num_classes=1000, base=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], base
        for i, n in enumerate(layers):
            planes = base * 2**i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1, groups, width_per_group))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layers(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet34(num_classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes=num_classes)


def resnext50_32x4d(num_classes: int = 1000, base: int = 64) -> ResNet:
    """ResNeXt-50 32x4d; ``base`` (64: the stem's width) shrinks every width for fast tests."""
    return ResNet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4, num_classes=num_classes, base=base)


def wide_resnet50_2(num_classes: int = 1000, base: int = 64) -> ResNet:
    """Wide ResNet-50-2; ``base`` (64: the stem's width) shrinks every width for fast tests."""
    return ResNet(Bottleneck, [3, 4, 6, 3], width_per_group=128, num_classes=num_classes, base=base)


# --- MobileNetV2 and EfficientNet-B0 --------------------------------------------------------


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 project (linear);
    the input is added back where stride 1 keeps the shape."""

    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = cin * t
        layers: list[nn.Module] = []
        if t != 1:
            layers.append(conv_bn(cin, hidden, 1, act=nn.ReLU6))
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6), conv_bn(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


def mobilenet_v2(num_classes: int = 1000) -> nn.Sequential:
    """MobileNetV2 (Sandler et al. 2018), width 1.0: 3,504,872 parameters."""
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
    cin = 32
    for t, c, n, s in (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ):
        for i in range(n):
            layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += [
        conv_bn(cin, 1280, 1, act=nn.ReLU6),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(1280, num_classes),
    ]
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Gate the channels by a sigmoid of a two-layer bottleneck of their means."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(s))))


class MBConv(nn.Module):
    """EfficientNet's block: expand (SiLU), depthwise kxk (SiLU), squeeze-excitation with width
    input/4, project; residual where the shape is kept (stochastic depth: identity in eval)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(conv_bn(cin, hidden, 1, act=nn.SiLU))
        layers += [
            conv_bn(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU),
            SqueezeExcitation(hidden, max(1, cin // 4)),
            conv_bn(hidden, cout, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.use_res else self.block(x)


def efficientnet_b0(num_classes: int = 1000) -> nn.Sequential:
    """EfficientNet-B0 (Tan & Le 2019): 5,288,548 parameters."""
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.SiLU)]
    cin = 32
    for e, k, s, c, n in (
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    ):
        for i in range(n):
            layers.append(MBConv(cin, c, k, s if i == 0 else 1, e))
            cin = c
    layers += [
        conv_bn(cin, 1280, 1, act=nn.SiLU),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(1280, num_classes),
    ]
    return nn.Sequential(*layers)


# --- SqueezeNet, GoogLeNet, DenseNet, ShuffleNetV2 (concatenating branches) ----------------


class Fire(nn.Module):
    """SqueezeNet's Fire module: squeeze 1x1, then 1x1 and 3x3 expansions concatenated."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], 1)


def squeezenet1_0(num_classes: int = 1000) -> nn.Sequential:
    """SqueezeNet 1.0 (Iandola et al. 2016): 1,248,424 parameters."""
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, 96, 7, 2),
        nn.ReLU(inplace=True),
        pool(),
        Fire(96, 16, 64, 64),
        Fire(128, 16, 64, 64),
        Fire(128, 32, 128, 128),
        pool(),
        Fire(256, 32, 128, 128),
        Fire(256, 48, 192, 192),
        Fire(384, 48, 192, 192),
        Fire(384, 64, 256, 256),
        pool(),
        Fire(512, 64, 256, 256),
        nn.Dropout(0.5),
        nn.Conv2d(512, num_classes, 1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class Inception(nn.Module):
    """GoogLeNet's Inception module as torchvision builds it (its "5x5" branch uses a 3x3)."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pool_proj):
        super().__init__()
        conv = lambda i, o, k: conv_bn(i, o, k, eps=0.001)  # noqa: E731
        self.branch1 = conv(cin, c1, 1)
        self.branch2 = nn.Sequential(conv(cin, c3r, 1), conv(c3r, c3, 3))
        self.branch3 = nn.Sequential(conv(cin, c5r, 1), conv(c5r, c5, 3))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv(cin, pool_proj, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def googlenet(num_classes: int = 1000) -> nn.Sequential:
    """GoogLeNet (Szegedy et al. 2015) without the auxiliary heads: 6,624,904 parameters."""
    conv = lambda i, o, k, s=1: conv_bn(i, o, k, s, eps=0.001)  # noqa: E731
    pool = lambda k=3: nn.MaxPool2d(k, 2, ceil_mode=True)  # noqa: E731
    return nn.Sequential(
        conv(3, 64, 7, 2),
        pool(),
        conv(64, 64, 1),
        conv(64, 192, 3),
        pool(),
        Inception(192, 64, 96, 128, 16, 32, 32),
        Inception(256, 128, 128, 192, 32, 96, 64),
        pool(),
        Inception(480, 192, 96, 208, 16, 48, 64),
        Inception(512, 160, 112, 224, 24, 64, 64),
        Inception(512, 128, 128, 256, 24, 64, 64),
        Inception(512, 112, 144, 288, 32, 64, 64),
        Inception(528, 256, 160, 320, 32, 128, 128),
        pool(2),
        Inception(832, 256, 160, 320, 32, 128, 128),
        Inception(832, 384, 192, 384, 48, 128, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(1024, num_classes),
    )


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k), its output concatenated to its input."""

    def __init__(self, cin: int, growth: int, bn_size: int = 4):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(torch.relu(self.norm1(x)))
        return torch.cat([x, self.conv2(torch.relu(self.norm2(y)))], 1)


def densenet121(num_classes: int = 1000, growth: int = 32) -> nn.Sequential:
    """DenseNet-121 (Huang et al. 2017): blocks of 6, 12, 24, 16 layers; 7,978,856 parameters."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    c = 64
    for i, n in enumerate((6, 12, 24, 16)):
        for _ in range(n):
            layers.append(DenseLayer(c, growth))
            c += growth
        if i < 3:  # transition: halve channels and resolution
            layers += [
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c // 2, 1, bias=False),
                nn.AvgPool2d(2, 2),
            ]
            c //= 2
    layers += [
        nn.BatchNorm2d(c),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c, num_classes),
    ]
    return nn.Sequential(*layers)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2's unit: split (stride 1) or duplicate (stride 2) the channels, transform one
    half (the other too when downsampling), concatenate, shuffle the channels in two groups."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        half = cout // 2
        self.stride = stride
        self.branch1 = nn.Sequential()
        if stride > 1:
            self.branch1 = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin, act=None), conv_bn(cin, half, 1))
        self.branch2 = nn.Sequential(
            conv_bn(cin if stride > 1 else half, half, 1),
            conv_bn(half, half, 3, stride, groups=half, act=None),
            conv_bn(half, half, 1),
        )

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat([x1, self.branch2(x2)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


def shufflenet_v2_x1_0(num_classes: int = 1000) -> nn.Sequential:
    """ShuffleNetV2 x1.0 (Ma et al. 2018): 2,278,604 parameters."""
    layers: list[nn.Module] = [conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)]
    cin = 24
    for n, c in ((4, 116), (8, 232), (4, 464)):
        for i in range(n):
            layers.append(ShuffleUnit(cin, c, 2 if i == 0 else 1))
            cin = c
    layers += [conv_bn(cin, 1024, 1), Mean23(), nn.Linear(1024, num_classes)]
    return nn.Sequential(*layers)


class Mean23(nn.Module):
    """``x.mean([2, 3])``: ShuffleNetV2's global pool."""

    def forward(self, x):
        return x.mean([2, 3])


# --- U-Net ----------------------------------------------------------------------------------


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn(cin, cout, 3), conv_bn(cout, cout, 3))


class UNet(nn.Module):
    """U-Net with 'same' padding, batch norm, and transposed-convolution upsampling; the skip
    connection is concatenated before the upsampled tensor. 31,037,698 parameters for 3 in, 2 out."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base: int = 64):
        super().__init__()
        widths = [base * 2**i for i in range(5)]  # 64 .. 1024
        self.inc = double_conv(in_channels, widths[0])
        self.downs = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(4))
        self.ups = nn.ModuleList()
        for i in reversed(range(4)):
            self.ups.append(
                nn.ModuleList(
                    [nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2), double_conv(widths[i + 1], widths[i])]
                )
            )
        self.outc = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(nn.functional.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for (up, conv), skip in zip(self.ups, reversed(skips)):
            y = conv(torch.cat([skip, up(y)], 1))
        return self.outc(y)


def unet(num_classes: int = 2, base: int = 64) -> UNet:
    """The 64-1024 U-Net; ``base`` (64) shrinks every width for fast tests."""
    return UNet(3, num_classes, base)


CONV_MODELS = {
    "vgg11": vgg11,
    "resnet34": resnet34,
    "resnext50_32x4d": resnext50_32x4d,
    "wide_resnet50_2": wide_resnet50_2,
    "mobilenet_v2": mobilenet_v2,
    "efficientnet_b0": efficientnet_b0,
    "squeezenet1_0": squeezenet1_0,
    "densenet121": densenet121,
    "googlenet": googlenet,
    "shufflenet_v2_x1_0": shufflenet_v2_x1_0,
    "unet": unet,
}
