"""The model zoo (``specs/zoo/``) against hand-written models.

- Each hand-written model (``zoo_models.py``, ``zoo_models_seq.py``: plain torch, written from the
  papers and torchvision's definitions) has the published parameter count, or the count worked
  out from the layer formulas where nothing is published (LSTM classifier, GPT).
- Each zoo spec, built by nncli, has that same count.
- Each zoo spec computes the same function as its hand model: the hand model's weights (He-normal,
  with batch-norm statistics calibrated on the input, so every layer matters) are copied into nncli's build by position, then one float64
  forward pass in eval mode agrees to 1e-5. The big ones are compared at reduced width here
  (their vars scaled down) and at full size in a slow test.
- The GPT spec is causal: changing the tokens after position t leaves the outputs up to t alone.
- Every command works on every zoo spec: check, params (the published count in --json) and
  diagram on the spec itself; probe and gradcheck (slow) on a reduced copy (smaller vars and
  input), since float64 finite differences on the full networks would take hours here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml
import zoo_models as conv
import zoo_models_seq as seq
from conftest import SPECS
from torch import nn
from zoo_models_weights import calibrate_batch_norms, copy_weights

from nncli.build import build_model, count_params, infer
from nncli.spec import parse_spec

ZOO = SPECS / "zoo"
VOCAB = 73  # distinct characters of the shipped text (nncli/data/corpus), the GPT's vocabulary


@dataclass(frozen=True)
class Entry:
    """One zoo member: its spec, its hand model, its count and how to test it small."""

    spec: str  # file name in specs/zoo
    hand: Callable[..., nn.Module]
    count: int  # published, or from the layer formulas
    example: tuple  # the forward test's input shape (one example); () = the spec's own
    small_vars: dict = field(default_factory=dict)  # vars override for the reduced-size copy
    small_hand: dict = field(default_factory=dict)  # the matching hand-model arguments
    small_input: tuple = ()  # the reduced copy's input shape (default: `example`)
    big: bool = False  # compared small in the default run, at full size in a slow test


ENTRIES = {
    "vgg11": Entry(
        "vgg11.yaml",
        conv.vgg11,
        conv.PUBLISHED["vgg11"],
        (3, 32, 32),
        {"width": 8, "hidden": 64},
        {"width": 8, "hidden": 64},
        big=True,
    ),
    "resnet34": Entry("resnet34.yaml", conv.resnet34, conv.PUBLISHED["resnet34"], (3, 32, 32)),
    "resnext50_32x4d": Entry(
        "resnext50-32x4d.yaml",
        conv.resnext50_32x4d,
        conv.PUBLISHED["resnext50_32x4d"],
        (3, 32, 32),
        {"base": 16},
        {"base": 16},
        big=True,
    ),
    "wide_resnet50_2": Entry(
        "wide-resnet50-2.yaml",
        conv.wide_resnet50_2,
        conv.PUBLISHED["wide_resnet50_2"],
        (3, 32, 32),
        {"base": 16},
        {"base": 16},
        big=True,
    ),
    "mobilenet_v2": Entry("mobilenet-v2.yaml", conv.mobilenet_v2, conv.PUBLISHED["mobilenet_v2"], (3, 32, 32)),
    "efficientnet_b0": Entry(
        "efficientnet-b0.yaml", conv.efficientnet_b0, conv.PUBLISHED["efficientnet_b0"], (3, 32, 32)
    ),
    "squeezenet1_0": Entry("squeezenet1-0.yaml", conv.squeezenet1_0, conv.PUBLISHED["squeezenet1_0"], (3, 64, 64)),
    # The reduced copy keeps 64x64: at 32x32 its last dense block runs at 1x1, where train-mode
    # batch norm over 2 values makes the end-to-end finite differences unreliable (gradcheck's
    # end-to-end check then fails with relative errors of 4e-4 while every layer passes).
    "densenet121": Entry(
        "densenet121.yaml",
        conv.densenet121,
        conv.PUBLISHED["densenet121"],
        (3, 32, 32),
        {"growth": 4},
        {"growth": 4},
        (3, 64, 64),
    ),
    "googlenet": Entry(
        "googlenet.yaml", conv.googlenet, conv.PUBLISHED["googlenet"], (3, 32, 32), small_input=(3, 64, 64)
    ),  # not 1x1 at the end either (see DenseNet)
    "shufflenet_v2_x1_0": Entry(
        "shufflenet-v2-x1-0.yaml", conv.shufflenet_v2_x1_0, conv.PUBLISHED["shufflenet_v2_x1_0"], (3, 32, 32)
    ),
    "unet": Entry("unet.yaml", conv.unet, conv.PUBLISHED["unet"], (3, 32, 32), {"base": 8}, {"base": 8}, big=True),
    "vit_b_16": Entry(
        "vit-b-16.yaml",
        seq.vit_b_16,
        conv.PUBLISHED["vit_b_16"],
        (3, 224, 224),
        {"dim": 64, "heads": 4, "depth": 2, "mlp": 128},
        {"dim": 64, "heads": 4, "layers": 2, "mlp": 128, "image": 32},
        (3, 32, 32),
        big=True,
    ),
    "lstm_classifier": Entry("lstm-classifier.yaml", seq.LSTMClassifier, seq.lstm_classifier_count(), ()),
    "gpt_char": Entry("gpt-char.yaml", lambda **kw: seq.GPT(VOCAB, **kw), seq.gpt_count(VOCAB), ()),
}

NAMES = list(ENTRIES)


def spec_data(name: str, *, small: bool = False) -> dict:
    """The zoo spec as YAML data; ``small``: its vars and input scaled down for fast tests."""
    entry = ENTRIES[name]
    data = yaml.safe_load((ZOO / entry.spec).read_text())
    if small:
        data.setdefault("vars", {}).update(entry.small_vars)
        if entry.small_input:
            data["input"] = list(entry.small_input)
    return data


def load(name: str, *, small: bool = False):
    data = spec_data(name, small=small)
    return parse_spec(yaml.safe_dump(data, sort_keys=False), file=str(ZOO / ENTRIES[name].spec))


def hand_model(name: str, *, small: bool = False) -> nn.Module:
    entry = ENTRIES[name]
    return entry.hand(**(entry.small_hand if small else {}))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def make_signal_carry(model: nn.Module, x: torch.Tensor) -> None:
    """Re-initialise the hand model so that every layer matters to the output.

    With torch's default init, and eval-mode batch norm at its fresh statistics (an identity map),
    a signal shrinks layer after layer: the deep half of a U-Net or a DenseNet would add ~1e-8 to
    the output, and a mistake there would pass a 1e-5 comparison. He-normal weights keep the
    signal's scale through depth, and batch-norm statistics calibrated on ``x`` (one train-mode
    pass with momentum 1) make each norm layer a real, non-trivial normalisation.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    calibrate_batch_norms(model, x)


def example_input(spec, shape: tuple, gen: torch.Generator, batch: int = 2) -> torch.Tensor:
    if spec.integer_input:
        return torch.randint(0, spec.input_high, (batch, *shape), generator=gen)
    return torch.randn(batch, *shape, generator=gen, dtype=torch.float64)


def compare_forward(name: str, *, small: bool) -> float:
    """Max |nncli(x) - hand(x)| in float64, eval mode, after copying the hand model's weights."""
    entry = ENTRIES[name]
    spec = load(name, small=small)
    if spec.integer_input or not small:
        example = entry.example or spec.input
    else:
        example = entry.small_input or entry.example
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(1)
    hand = hand_model(name, small=small).to(torch.float64)
    if example != spec.input:  # forward on a smaller image than the spec's (any size works)
        data = spec_data(name, small=small)
        data["input"] = list(example)
        spec = parse_spec(yaml.safe_dump(data, sort_keys=False), file=str(ZOO / entry.spec))
    built = build_model(spec, seed=0, dtype=torch.float64).model
    x = example_input(spec, example, gen, batch=4)
    make_signal_carry(hand, x)
    copy_weights(hand, built)
    built.eval()
    with torch.no_grad():
        want, got = hand(x), built(x)
    assert got.shape == want.shape
    assert torch.isfinite(want).all()
    return (got - want).abs().max().item()


# --- the hand models: the independent reference ------------------------------------------------


@pytest.mark.parametrize("name", list(ENTRIES))
def test_hand_model_has_the_published_count(name):
    with torch.device("meta"):
        model = hand_model(name)
    assert n_params(model) == ENTRIES[name].count


def test_hand_attention_is_multihead_attention():
    # The written-out attention equals torch's MultiheadAttention given the same weights, with
    # and without the causal mask: the reference for SelfAttention is itself checked.
    torch.manual_seed(0)
    for causal in (False, True):
        mine = seq.Attention(32, 4, causal).double()
        ref = nn.MultiheadAttention(32, 4, batch_first=True).double()
        ref.load_state_dict(mine.state_dict())
        x = torch.randn(2, 7, 32, dtype=torch.float64)
        mask = torch.ones(7, 7, dtype=torch.bool).triu(1) if causal else None
        want = ref(x, x, x, attn_mask=mask, need_weights=False)[0]
        assert (mine(x) - want).abs().max() < 1e-12


def test_hand_shufflenet_unit_shuffles_channels_like_torch():
    # The unit's own view/transpose shuffle is torch's ChannelShuffle(2).
    x = torch.randn(1, 8, 2, 2)
    n, c, h, w = x.shape
    mine = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
    assert torch.equal(mine, nn.ChannelShuffle(2)(x))


# --- the specs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_spec_has_the_published_count(name):
    built = infer(load(name))
    assert count_params(built.model)[0] == ENTRIES[name].count


@pytest.mark.parametrize("name", NAMES)
def test_spec_computes_the_hand_models_function(name):
    small = ENTRIES[name].big
    assert compare_forward(name, small=small) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if ENTRIES[n].big])
def test_big_spec_at_full_size_computes_the_hand_models_function(name):
    assert compare_forward(name, small=False) < 1e-5


def test_gpt_spec_is_causal():
    spec = load("gpt_char")
    model = build_model(spec, seed=0, dtype=torch.float64).model.eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, VOCAB, (2, 64), generator=gen)
    with torch.no_grad():
        base = model(x)
        for t in (0, 17, 62):
            changed = x.clone()
            changed[:, t + 1 :] = torch.randint(0, VOCAB, changed[:, t + 1 :].shape, generator=gen)
            assert not torch.equal(changed, x)
            out = model(changed)
            assert (out[:, : t + 1] - base[:, : t + 1]).abs().max() < 1e-12
            # ... and the change does reach the later positions (the test can fail)
            assert (out[:, t + 1 :] - base[:, t + 1 :]).abs().max() > 1e-6


# --- every command on every zoo spec --------------------------------------------------------------


def write_small(name: str, folder: Path) -> Path:
    """The reduced copy of a zoo spec (smaller vars, smaller input) as a file in ``folder``."""
    entry = ENTRIES[name]
    data = spec_data(name, small=True)
    if not isinstance(data["input"], dict):
        data["input"] = list(entry.small_input or entry.example)
    path = folder / entry.spec
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("name", NAMES)
def test_check_params_and_diagram_work_on_the_spec(name, run_cli, tmp_path):
    path = ZOO / ENTRIES[name].spec
    result = run_cli(["check", path])
    assert result.code == 0, result.text
    result = run_cli(["params", path, "--json"])
    assert result.code == 0, result.text
    report = json.loads(result.out)
    assert report["total"] == ENTRIES[name].count
    assert report["flops"] > 0
    result = run_cli(["diagram", path, "-o", tmp_path / "net.dot"])
    assert result.code == 0, result.text
    assert re.search(r"^digraph .*\{$", (tmp_path / "net.dot").read_text(), re.M)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_probe_and_gradcheck_work_on_a_reduced_copy(name, run_cli, tmp_path):
    path = write_small(name, tmp_path)
    result = run_cli(["probe", path, "--seeds", "0", "-b", "8", "--json"])
    assert result.code in (0, 1), result.text  # 1: a verdict of vanishing/exploding, not a crash
    assert json.loads(result.out)["verdict"] in ("healthy", "vanishing", "exploding")
    result = run_cli(["gradcheck", path, "-b", "2"])
    assert result.code == 0, result.text
