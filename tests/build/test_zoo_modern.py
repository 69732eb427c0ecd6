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
from zoo_models_weights import copy_weights, make_every_layer_matter

from nncli.build import build_model, count_params, infer
from nncli.spec import load_spec

torch.set_num_threads(1)

ZOO = SPECS / "zoo"
CASES = {
    "convnext_tiny": ("convnext-tiny.yaml", modern.convnext_tiny),
    "mobilenet_v3_large": ("mobilenet-v3-large.yaml", modern.mobilenet_v3_large),
}


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
