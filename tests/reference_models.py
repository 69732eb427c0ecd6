"""Hand-written PyTorch reference models for the specs in ``specs/``.

Each constructor builds, in plain ``torch.nn`` (no nncli, no torchvision), the network that the
matching spec describes. They are the independent side of the comparison: nncli builds a spec,
the tests compare its parameter counts (in total and per top-level layer) and output shapes with
the model built here, and the totals here are checked against published figures.

To make a layer-by-layer comparison possible, every reference model is one flat
``nn.Sequential`` whose top-level children mirror the spec's top-level ``layers`` one to one:

- a spec ``Residual`` is a :class:`Residual` here (``body`` Sequential, ``shortcut`` Sequential
  or Identity), computing ``body(x) + shortcut(x)``;
- a spec ``Repeat: {times: N, layers: [...]}`` is an ``nn.Sequential`` of N ``nn.Sequential``
  copies of those layers;
- torchvision's ``torch.flatten(x, 1)`` inside ``forward`` is an explicit ``nn.Flatten()``,
  since a spec is a plain sequence of layers.

The layouts follow torchvision 0.20's ``alexnet``, ``vgg16`` and ``resnet18``/``resnet50``
(ResNet v1.5: stride on the 3x3 convolution of a Bottleneck) and LeCun et al. (1998) LeNet-5 in
the form usually taught (tanh, average pooling, full C3 connections).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# Parameter counts as published: torchvision's model documentation ("num_params") for AlexNet,
# VGG-16, ResNet-18 and ResNet-50; LeNet-5 in its common full-connection form:
# conv1 156 + conv2 2,416 + fc 48,120 + 10,164 + 850 = 61,706.
PUBLISHED = {
    "lenet5": 61_706,
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
}

# Shape of ONE example in and out (no batch dimension), as torchvision's models use them.
INPUT_SHAPES = {
    "lecture_mlp": (2,),
    "lenet5": (1, 32, 32),
    "alexnet": (3, 224, 224),
    "vgg16": (3, 224, 224),
    "resnet18": (3, 224, 224),
    "resnet50": (3, 224, 224),
}
OUTPUT_SHAPES = {
    "lecture_mlp": (2,),
    "lenet5": (10,),
    "alexnet": (1000,),
    "vgg16": (1000,),
    "resnet18": (1000,),
    "resnet50": (1000,),
}


class Residual(nn.Module):
    """``body(x) + shortcut(x)``; the shortcut defaults to the identity.

    Args:
        body: the residual branch.
        shortcut: the skip branch (torchvision's ``downsample``), or None for the identity.

    Example:
        >>> block = Residual(nn.Sequential(nn.Linear(4, 4)))
        >>> block(torch.zeros(2, 4)).shape
        torch.Size([2, 4])
    """

    def __init__(self, body: nn.Sequential, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def _repeat(times: int, make: Callable[[], list[nn.Module]]) -> nn.Sequential:
    # `make` returns a fresh list of layers each call, so copies never share weights.
    return nn.Sequential(*(nn.Sequential(*make()) for _ in range(times)))


def lecture_mlp() -> nn.Sequential:
    """The lecture's 2-3-4-2 ReLU network (``specs/lecture-mlp.yaml``): 35 parameters.

    Example:
        >>> lecture_mlp()(torch.zeros(5, 2)).shape
        torch.Size([5, 2])
    """
    return nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def lenet5() -> nn.Sequential:
    """LeNet-5 for a 1x32x32 image (``specs/lenet5.yaml``): 61,706 parameters.

    Example:
        >>> lenet5()(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 10])
    """
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5),
        nn.Tanh(),
        nn.AvgPool2d(kernel_size=2),  # (6, 14, 14)
        nn.Conv2d(6, 16, kernel_size=5),
        nn.Tanh(),
        nn.AvgPool2d(kernel_size=2),  # (16, 5, 5)
        nn.Flatten(),  # (400,)
        nn.Linear(400, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, 10),
    )


def alexnet(num_classes: int = 1000) -> nn.Sequential:
    """torchvision's AlexNet, flattened: features, avgpool, Flatten, classifier (61,100,840 params).

    Args:
        num_classes: size of the last Linear layer.

    Example:
        >>> with torch.device("meta"):
        ...     alexnet()(torch.empty(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """
    return nn.Sequential(
        # features
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),  # (64, 55, 55)
        nn.MaxPool2d(kernel_size=3, stride=2),  # (64, 27, 27)
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),  # (192, 13, 13)
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),  # (256, 6, 6)
        # avgpool, then torch.flatten(x, 1) of torchvision's forward
        nn.AdaptiveAvgPool2d((6, 6)),
        nn.Flatten(),  # (9216,)
        # classifier
        nn.Dropout(p=0.5),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Linear(4096, num_classes),
    )


def vgg16(num_classes: int = 1000) -> nn.Sequential:
    """torchvision's ``vgg16`` (configuration D, no batch norm): 138,357,544 params.

    Each run of 3x3 convolutions of one width is one ``Repeat`` in the spec, so it is one
    Sequential of copies here.

    Args:
        num_classes: size of the last Linear layer.

    Example:
        >>> with torch.device("meta"):
        ...     vgg16()(torch.empty(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """
    layers: list[nn.Module] = []
    in_ch = 3
    for width, times in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]:
        copies = []
        for _ in range(times):
            # only the first copy of a run sees the previous width; the spec infers it the same way
            copies.append(nn.Sequential(nn.Conv2d(in_ch, width, kernel_size=3, padding=1), nn.ReLU()))
            in_ch = width
        layers.append(nn.Sequential(*copies))
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))  # halves H and W: 224 -> 7 after five
    layers += [
        nn.AdaptiveAvgPool2d((7, 7)),
        nn.Flatten(),  # (25088,)
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, num_classes),
    ]
    return nn.Sequential(*layers)


def _basic_block(in_ch: int, width: int, stride: int) -> Residual:
    # torchvision BasicBlock: conv3x3(stride)-bn-relu-conv3x3-bn, downsample when the shape changes.
    body = nn.Sequential(
        nn.Conv2d(in_ch, width, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(width),
    )
    shortcut = None
    if stride != 1 or in_ch != width:
        shortcut = nn.Sequential(
            nn.Conv2d(in_ch, width, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(width)
        )
    return Residual(body, shortcut)


def _bottleneck(in_ch: int, width: int, stride: int) -> Residual:
    # torchvision Bottleneck (ResNet v1.5): 1x1 reduce, 3x3 with the stride, 1x1 expand by 4.
    out_ch = width * 4
    body = nn.Sequential(
        nn.Conv2d(in_ch, width, kernel_size=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, out_ch, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_ch),
    )
    shortcut = None
    if stride != 1 or in_ch != out_ch:
        shortcut = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
        )
    return Residual(body, shortcut)


def _resnet_stem() -> list[nn.Module]:
    # conv1, bn1, relu, maxpool: (3, 224, 224) -> (64, 56, 56)
    return [
        nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    ]


def _resnet_head(in_ch: int, num_classes: int) -> list[nn.Module]:
    # avgpool, torch.flatten(x, 1), fc
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_ch, num_classes)]


def resnet18(num_classes: int = 1000) -> nn.Sequential:
    """torchvision's ResNet-18, flattened: 11,689,512 params.

    Top-level layers: conv1, bn1, relu, maxpool, then for each of the 8 BasicBlocks
    (layer1.0 ... layer4.1) a :class:`Residual` followed by its ReLU, then avgpool, Flatten, fc.

    Args:
        num_classes: size of the last Linear layer.

    Example:
        >>> with torch.device("meta"):
        ...     resnet18()(torch.empty(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """
    layers = _resnet_stem()
    in_ch = 64
    for width, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for i in range(2):
            layers += [_basic_block(in_ch, width, stride if i == 0 else 1), nn.ReLU()]
            in_ch = width
    return nn.Sequential(*layers, *_resnet_head(in_ch, num_classes))


def resnet50(num_classes: int = 1000) -> nn.Sequential:
    """torchvision's ResNet-50 (v1.5), flattened: 25,557,032 params.

    Top-level layers: conv1, bn1, relu, maxpool; per stage, the first Bottleneck (with its
    downsample shortcut) as a :class:`Residual` and its ReLU, then the remaining identical
    Bottlenecks as one ``Repeat`` of [Residual, ReLU] (layer1: 1+2, layer2: 1+3, layer3: 1+5,
    layer4: 1+2); then avgpool, Flatten, fc.

    Args:
        num_classes: size of the last Linear layer.

    Example:
        >>> with torch.device("meta"):
        ...     resnet50()(torch.empty(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """
    layers = _resnet_stem()
    in_ch = 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        layers += [_bottleneck(in_ch, width, stride), nn.ReLU()]
        in_ch = width * 4
        layers.append(_repeat(blocks - 1, lambda: [_bottleneck(in_ch, width, 1), nn.ReLU()]))
    return nn.Sequential(*layers, *_resnet_head(in_ch, num_classes))


def moons_mlp() -> nn.Sequential:
    """2-64-64-2 ReLU MLP for two moons (``specs/moons-mlp.yaml``): 4,482 parameters."""
    return nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))


def swish_mlp() -> nn.Sequential:
    """2-32-32-2 MLP with Swish, beta = 1 (``specs/custom-swish.yaml``): 1,218 parameters.

    Swish with beta = 1 is ``x * sigmoid(x)``, which torch ships as ``nn.SiLU``; using torch's
    own module keeps this reference independent of ``specs/swish_layers.py``.
    """
    return nn.Sequential(nn.Linear(2, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(), nn.Linear(32, 2))


def digits_cnn() -> nn.Sequential:
    """Small CNN for 8x8 digits (``specs/digits-cnn.yaml``): 30,762 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=2),  # (32, 4, 4)
        nn.Conv2d(32, 64, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=2),  # (64, 2, 2)
        nn.Flatten(),
        nn.Dropout(p=0.25),
        nn.Linear(256, 10),
    )


def deep_mlp(activation: type[nn.Module], depth: int = 20, width: int = 64) -> nn.Sequential:
    """``depth`` x [Linear(width), activation] as one Repeat, then Linear 10 (the ``deep-*`` specs).

    The init schemes of the specs are not applied here: only the layout is mirrored.
    With the defaults: 20 * 4,160 + 650 = 83,850 parameters.

    Args:
        activation: module class placed after each hidden Linear (nn.Sigmoid, nn.ReLU, nn.Tanh).
        depth: number of hidden layers.
        width: input size and hidden width.
    """
    return nn.Sequential(_repeat(depth, lambda: [nn.Linear(width, width), activation()]), nn.Linear(width, 10))


def deep_residual_bn(depth: int = 20, width: int = 64) -> nn.Sequential:
    """``depth`` x [Residual(Linear-BN-ReLU-Linear-BN), ReLU], then Linear 10: 172,170 params.

    Args:
        depth: number of residual blocks.
        width: input size and hidden width.
    """

    def block():
        body = nn.Sequential(
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width), nn.BatchNorm1d(width)
        )
        return [Residual(body), nn.ReLU()]

    return nn.Sequential(_repeat(depth, block), nn.Linear(width, 10))


def resnet_tiny(num_classes: int = 10) -> nn.Sequential:
    """Tiny ResNet for 3x32x32 (``specs/resnet-tiny.yaml``): 78,042 parameters."""
    return nn.Sequential(
        nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        _basic_block(16, 16, 1),
        nn.ReLU(),  # (16, 32, 32)
        _basic_block(16, 32, 2),
        nn.ReLU(),  # (32, 16, 16)
        _basic_block(32, 64, 2),
        nn.ReLU(),  # (64, 8, 8)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


# Parameter counts of the smaller specs, worked out by hand (the arithmetic is in each spec's
# header comment), so the reference models above are themselves checked against arithmetic.
HAND_COUNTS = {
    "lecture_mlp": 35,
    "moons_mlp": 4_482,
    "swish_mlp": 1_218,
    "digits_cnn": 30_762,
    "deep_sigmoid": 83_850,
    "deep_relu_normal": 83_850,
    "deep_relu_he": 83_850,
    "deep_tanh_xavier": 83_850,
    "deep_residual_bn": 172_170,
    "resnet_tiny": 78_042,
}

INPUT_SHAPES.update(
    {
        "moons_mlp": (2,),
        "swish_mlp": (2,),
        "digits_cnn": (1, 8, 8),
        "resnet_tiny": (3, 32, 32),
        "deep_sigmoid": (64,),
        "deep_relu_normal": (64,),
        "deep_relu_he": (64,),
        "deep_tanh_xavier": (64,),
        "deep_residual_bn": (64,),
    }
)
OUTPUT_SHAPES.update(
    {
        "moons_mlp": (2,),
        "swish_mlp": (2,),
        "digits_cnn": (10,),
        "resnet_tiny": (10,),
        "deep_sigmoid": (10,),
        "deep_relu_normal": (10,),
        "deep_relu_he": (10,),
        "deep_tanh_xavier": (10,),
        "deep_residual_bn": (10,),
    }
)

REFERENCE_MODELS = {
    "lecture_mlp": lecture_mlp,
    "lenet5": lenet5,
    "alexnet": alexnet,
    "vgg16": vgg16,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "moons_mlp": moons_mlp,
    "swish_mlp": swish_mlp,
    "digits_cnn": digits_cnn,
    "deep_sigmoid": lambda: deep_mlp(nn.Sigmoid),
    "deep_relu_normal": lambda: deep_mlp(nn.ReLU),
    "deep_relu_he": lambda: deep_mlp(nn.ReLU),
    "deep_tanh_xavier": lambda: deep_mlp(nn.Tanh),
    "deep_residual_bn": deep_residual_bn,
    "resnet_tiny": resnet_tiny,
}

# Which spec file each reference model mirrors, layer for layer.
SPEC_FILES = {
    "lecture_mlp": "lecture-mlp.yaml",
    "lenet5": "lenet5.yaml",
    "alexnet": "alexnet.yaml",
    "vgg16": "vgg16.yaml",
    "resnet18": "resnet18.yaml",
    "resnet50": "resnet50.yaml",
    "moons_mlp": "moons-mlp.yaml",
    "swish_mlp": "custom-swish.yaml",
    "digits_cnn": "digits-cnn.yaml",
    "deep_sigmoid": "deep-sigmoid.yaml",
    "deep_relu_normal": "deep-relu-normal.yaml",
    "deep_relu_he": "deep-relu-he.yaml",
    "deep_tanh_xavier": "deep-tanh-xavier.yaml",
    "deep_residual_bn": "deep-residual-bn.yaml",
    "resnet_tiny": "resnet-tiny.yaml",
}
