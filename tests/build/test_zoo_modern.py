"""ConvNeXt-Tiny and MobileNetV3-Large in the zoo against hand-written references.

- Each reference (``zoo_models_modern.py``: plain torch, after torchvision's definitions) has the
  published parameter count; each spec, built by nncli, has the same count.
- Each spec computes the reference's function: the reference's weights are set so that every
  layer matters (He-normal convolutions and linears, batch-norm statistics calibrated on the
  input, random LayerNorm affines and layer scales instead of ConvNeXt's 1e-6, which would let a
  wrong block pass), copied into nncli's build by position, then one float64 forward pass in eval
  mode agrees to 1e-9.
- ``check``, ``params`` and ``diagram`` work on both specs.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
import zoo_models_modern as modern
from conftest import SPECS
from torch import nn

from nncli.build import build_model, count_params, infer
from nncli.spec import load_spec

torch.set_num_threads(1)

ZOO = SPECS / "zoo"
CASES = {
    "convnext_tiny": ("convnext-tiny.yaml", modern.convnext_tiny),
    "mobilenet_v3_large": ("mobilenet-v3-large.yaml", modern.mobilenet_v3_large),
}


def flow_order(model: nn.Module) -> list[str]:
    order = getattr(model, "flow_order", None)
    return order() if order is not None else list(model.state_dict())


def copy_weights(hand: nn.Module, built: nn.Module) -> None:
    """The reference's parameters and buffers into nncli's model, by position in data order."""
    src, dst = hand.state_dict(), built.state_dict()
    keys = flow_order(hand)
    assert len(keys) == len(dst), (len(keys), len(dst))
    for s, d in zip(keys, dst):
        assert src[s].shape == dst[d].shape, f"{s} {tuple(src[s].shape)} vs {d} {tuple(dst[d].shape)}"
        dst[d] = src[s]
    built.load_state_dict(dst)


def make_every_layer_matter(model: nn.Module, x: torch.Tensor, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.1, generator=gen)
        if isinstance(m, nn.LayerNorm):
            nn.init.normal_(m.weight, 1.0, 0.2, generator=gen)
            nn.init.normal_(m.bias, 0.0, 0.2, generator=gen)
    for name, p in model.named_parameters():
        if name.endswith("layer_scale"):
            nn.init.uniform_(p, 0.2, 0.6, generator=gen)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


@pytest.mark.parametrize("name", list(CASES))
def test_reference_has_the_published_count(name):
    with torch.device("meta"):
        hand = CASES[name][1]()
    assert sum(p.numel() for p in hand.parameters()) == modern.PUBLISHED[name]


@pytest.mark.parametrize("name", list(CASES))
def test_spec_has_the_published_count(name):
    built = infer(load_spec(ZOO / CASES[name][0]))
    assert count_params(built.model)[0] == modern.PUBLISHED[name]
    assert built.output_shape == (1000,)


@pytest.mark.parametrize("name", list(CASES))
def test_spec_computes_the_references_function(name):
    file, make = CASES[name]
    gen = torch.Generator().manual_seed(0)
    hand = make().to(torch.float64)
    x = torch.randn(3, 3, 64, 64, generator=gen, dtype=torch.float64)  # any size: 64 keeps every stage > 1x1
    make_every_layer_matter(hand, x, gen)
    built = build_model(load_spec(ZOO / file), seed=0, dtype=torch.float64).model
    copy_weights(hand, built)
    built.eval()
    with torch.no_grad():
        want, got = hand(x), built(x)
    assert got.shape == want.shape == (3, 1000)
    assert torch.isfinite(want).all() and want.abs().max() > 1e-3
    assert (got - want).abs().max() <= 1e-9 * max(1.0, want.abs().max().item())


def test_convnext_stochastic_depth_rates_follow_the_block_index():
    # torchvision: 0.1 * block_id / (18 - 1), the id counted across all four stages
    built = infer(load_spec(ZOO / "convnext-tiny.yaml"))
    rates = [i.module.p for i in built.walk() if i.type == "StochasticDepth"]
    assert rates == pytest.approx([0.1 * b / 17 for b in range(18)])


def test_mobilenet_widths_follow_make_divisible_at_another_width(tmp_path):
    # alpha 0.75: every width is torchvision's _make_divisible(c * 0.75, 8), and the count is the
    # reference's at width_mult 0.75
    text = (ZOO / "mobilenet-v3-large.yaml").read_text().replace("vars: {alpha: 1.0}", "vars: {alpha: 0.75}")
    path = tmp_path / "m.yaml"
    path.write_text(text)
    built = infer(load_spec(path))
    with torch.device("meta"):
        hand = modern.mobilenet_v3_large(width_mult=0.75)
    assert count_params(built.model)[0] == sum(p.numel() for p in hand.parameters())


@pytest.mark.parametrize("name", list(CASES))
def test_check_params_and_diagram_work_on_the_spec(name, run_cli, tmp_path):
    path = ZOO / CASES[name][0]
    result = run_cli(["check", path, "--json"])
    assert result.code == 0, result.text
    assert json.loads(result.out)["counts"]["warning"] == 0
    result = run_cli(["params", path, "--json"])
    assert result.code == 0, result.text
    report = json.loads(result.out)
    assert report["total"] == modern.PUBLISHED[name] and report["flops"] > 0
    result = run_cli(["diagram", path, "-o", tmp_path / "net.dot"])
    assert result.code == 0, result.text
    assert re.search(r"^digraph .*\{$", (tmp_path / "net.dot").read_text(), re.M)
