"""Checks of the hand-written reference models and of the ready specs in ``specs/``.

- Each reference model's parameter count equals the published figure (torchvision's docs,
  LeNet-5's well-known 61,706) or the count worked out by hand, and its output shape is right.
- Every spec parses with ``yaml.safe_load`` and has ``input`` and ``layers``.
- Every spec mirrors its reference model layer for layer (same classes in the same order,
  the same explicit keyword arguments), read straight from the YAML without nncli. This is what
  lets the nncli build tests compare per-top-level-layer parameter counts with these models;
  if you change a spec's layout, change its reference model in tests/reference_models.py too.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
import yaml
from conftest import SPECS
from reference_models import HAND_COUNTS, INPUT_SHAPES, OUTPUT_SHAPES, PUBLISHED, REFERENCE_MODELS, SPEC_FILES, Residual
from torch import nn

BIG = {"alexnet", "vgg16", "resnet18", "resnet50"}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _build(name: str) -> nn.Module:
    # The big ones go on the meta device: shapes and counts without allocating ~0.5 GB of weights.
    if name in BIG:
        with torch.device("meta"):
            return REFERENCE_MODELS[name]()
    torch.manual_seed(0)
    return REFERENCE_MODELS[name]()


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_reference_matches_published_param_count(name):
    assert _count(_build(name)) == PUBLISHED[name]


@pytest.mark.parametrize("name", sorted(HAND_COUNTS))
def test_reference_matches_hand_count(name):
    assert _count(_build(name)) == HAND_COUNTS[name]


def test_lecture_mlp_weight_shapes():
    # The lecture's figure: 2 inputs, hidden layers of 3 and 4 units, 2 outputs.
    shapes = [tuple(p.shape) for p in REFERENCE_MODELS["lecture_mlp"]().parameters()]
    assert shapes == [(3, 2), (3,), (4, 3), (4,), (2, 4), (2,)]


@pytest.mark.parametrize("name", sorted(REFERENCE_MODELS))
def test_reference_output_shape(name):
    model = _build(name).eval()
    batch = 3
    if name in BIG:
        with torch.device("meta"):
            x = torch.empty(batch, *INPUT_SHAPES[name])
            y = model(x)
    else:
        x = torch.randn(batch, *INPUT_SHAPES[name])
        with torch.no_grad():
            y = model(x)
        assert torch.isfinite(y).all()
    assert tuple(y.shape) == (batch, *OUTPUT_SHAPES[name])


def test_resnet_downsample_placement():
    # torchvision: ResNet-18 has downsample on layer2.0, layer3.0, layer4.0 only; ResNet-50 on
    # the first block of all four stages (layer1.0 too, since 64 -> 256 channels).
    def shortcut_convs(model):
        found = []
        for m in model.modules():
            if isinstance(m, Residual) and not isinstance(m.shortcut, nn.Identity):
                conv = m.shortcut[0]
                found.append((conv.in_channels, conv.out_channels, conv.stride[0]))
        return found

    r18, r50 = _build("resnet18"), _build("resnet50")
    assert shortcut_convs(r18) == [(64, 128, 2), (128, 256, 2), (256, 512, 2)]
    assert shortcut_convs(r50) == [(64, 256, 1), (256, 512, 2), (512, 1024, 2), (1024, 2048, 2)]
    assert sum(isinstance(m, Residual) for m in r18.modules()) == 8
    assert sum(isinstance(m, Residual) for m in r50.modules()) == 16


def test_resnet50_stride_on_3x3_conv():
    # ResNet v1.5 (torchvision): a downsampling Bottleneck strides in its 3x3 conv.
    for m in _build("resnet50").modules():
        if isinstance(m, Residual):
            convs = [c for c in m.body if isinstance(c, nn.Conv2d)]
            assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (1, 1)]
            assert convs[0].stride == (1, 1) and convs[2].stride == (1, 1)


# ---- the YAML specs -------------------------------------------------------------------------

ALL_SPECS = sorted(SPECS.glob("*.yaml"))


def test_specs_present():
    for filename in SPEC_FILES.values():
        assert (SPECS / filename).is_file(), filename


@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.name)
def test_spec_parses_and_has_input_and_layers(path):
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    shape = doc["input"]
    assert isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)
    assert isinstance(doc["layers"], list) and doc["layers"]


def _entry(item) -> tuple[str, dict]:
    # A layer is a bare class name or a one-key mapping {ClassName: {kwargs}}.
    if isinstance(item, str):
        return item, {}
    assert isinstance(item, dict) and len(item) == 1, item
    ((cls, kwargs),) = item.items()
    return cls, dict(kwargs or {})


def _same(actual, expected) -> bool:
    # torch stores Conv2d's kernel_size=3 as (3, 3) and a YAML [6, 6] arrives as a list.
    if isinstance(expected, list):
        expected = tuple(expected)
    if isinstance(actual, tuple) and isinstance(expected, int):
        return all(a == expected for a in actual)
    if isinstance(expected, float) or isinstance(actual, float):
        return math.isclose(actual, expected)
    return actual == expected


def _assert_mirrors(items: list, modules: list[nn.Module], where: str) -> None:
    assert len(items) == len(modules), f"{where}: {len(items)} spec layers vs {len(modules)} modules"
    for i, (item, module) in enumerate(zip(items, modules)):
        cls, kwargs = _entry(item)
        here = f"{where}[{i}].{cls}"
        kwargs.pop("name", None)
        kwargs.pop("init", None)  # init schemes are not part of the layout
        if cls == "Residual":
            assert isinstance(module, Residual), f"{here}: found {type(module).__name__}"
            _assert_mirrors(kwargs["body"], list(module.body), f"{here}.body")
            if kwargs.get("shortcut") is None:
                assert isinstance(module.shortcut, nn.Identity), f"{here}: reference has a shortcut"
            else:
                _assert_mirrors(kwargs["shortcut"], list(module.shortcut), f"{here}.shortcut")
        elif cls == "Repeat":
            assert isinstance(module, nn.Sequential) and len(module) == kwargs["times"], here
            for c, copy in enumerate(module):
                _assert_mirrors(kwargs["layers"], list(copy), f"{here}.copy{c + 1}")
        elif cls == "Custom":
            # The only custom layer in specs/ is Swish; with beta = 1 it is torch's SiLU.
            assert kwargs["target"].endswith(":Swish"), here
            assert kwargs.get("args", {}).get("beta", 1.0) == 1.0, here
            assert isinstance(module, nn.SiLU), f"{here}: found {type(module).__name__}"
        else:
            assert type(module).__name__ == cls, f"{here}: found {type(module).__name__}"
            for key, value in kwargs.items():
                actual = getattr(module, key)
                if key == "bias":
                    actual = module.bias is not None
                assert _same(actual, value), f"{here}.{key}: spec {value!r}, reference {actual!r}"


@pytest.mark.parametrize("name", sorted(SPEC_FILES))
def test_spec_mirrors_reference(name):
    doc = yaml.safe_load((SPECS / SPEC_FILES[name]).read_text())
    assert tuple(doc["input"]) == INPUT_SHAPES[name]
    _assert_mirrors(doc["layers"], list(_build(name)), "layers")


def test_mirror_check_catches_a_changed_layer():
    # Guard against a mirror check that passes everything: a wrong stride must fail it.
    doc = yaml.safe_load((SPECS / "resnet18.yaml").read_text())
    doc["layers"][0]["Conv2d"]["stride"] = 1
    with pytest.raises(AssertionError, match="stride"):
        _assert_mirrors(doc["layers"], list(_build("resnet18")), "layers")


def _load_swish():
    spec = importlib.util.spec_from_file_location("swish_layers", SPECS / "swish_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Swish


def test_swish_layer_matches_formula():
    swish = _load_swish()
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    torch.testing.assert_close(swish(beta=1.0)(x), nn.functional.silu(x))
    torch.testing.assert_close(swish(beta=2.5)(x), x / (1 + torch.exp(-2.5 * x)))
    assert _count(swish(beta=1.0)) == 0
