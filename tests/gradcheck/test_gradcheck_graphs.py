"""``nncli gradcheck`` on graphs with several inputs and outputs: every float input perturbed on
its own end to end, token inputs not perturbed, shared modules and tied weights checked once,
and an objective that reaches every output.

References: torch.autograd.gradcheck on the whole two-input model (float64, both inputs and
every parameter), a backward planted wrong by a known factor in one input's path, and parameter
counts written out by hand.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from spec_texts import SIAMESE_DAG

from nncli import gradcheck as gc
from nncli.build import build_model
from nncli.spec import load_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# tanh with a hand-written backward, scaled by `scale` (1.0: correct)
LAYERS = """
import torch
from torch import nn


class _TanhFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return g * (1 - y * y) * ctx.scale, None


class Tanh(nn.Module):
    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return _TanhFn.apply(x, self.scale)
"""

# Two float inputs, each with its own branch; the Custom tanh sits on `right`'s branch alone.
TWO_BRANCHES = """
inputs:
  left: [5]
  right: [4]
layers:
  - Linear: {{name: a, from: left, out_features: 6}}
  - Tanh: {{name: ta}}
  - Linear: {{name: b, from: right, out_features: 6}}
  - Custom: {{name: tb, target: "layers.py:Tanh", args: {{scale: {scale}}}}}
  - Merge: {{from: [ta, tb], mode: concat}}
  - Linear: {{out_features: 3}}
"""

# One input, two outputs: the Custom tanh is on the path of the second output only.
TWO_OUTPUTS = """
input: [4]
outputs: [a, b]
layers:
  - Linear: {name: a, out_features: 3}
  - Linear: {name: lin, from: input, out_features: 5}
  - Custom: {name: b, target: "layers.py:Tanh", args: {scale: 1.1}}
"""

ENC_DEC = """
inputs:
  src: {shape: [6], dtype: int64, high: 10}
  tgt: {shape: [5], dtype: int64, high: 12}
outputs: [logits, memory]
layers:
  - Embedding: {name: embed, from: src, embedding_dim: 16, num_embeddings: 12}
  - Linear: {name: memory, out_features: 16}
  - Embedding: {share: embed, from: tgt}
  - CrossAttention: {num_heads: 2, memory: memory}
  - Linear: {name: logits, out_features: 12, bias: false, tie: {weight: embed}}
"""
# embedding 12*16 (the tied head adds none), Linear 16*16+16, attention 4*16*16+4*16
ENC_DEC_PARAMS = 192 + 272 + 1088
# conv 4*9+4, linear 100*8+8, head 16*2+2: the tower once
SIAMESE_PARAMS = 40 + 808 + 34


def write(tmp_path, text: str, name: str = "net.yaml"):
    (tmp_path / "layers.py").write_text(LAYERS)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def torch_gradcheck(spec) -> bool:
    """torch.autograd.gradcheck on the whole model: both inputs and every parameter, float64."""
    model = build_model(spec, seed=3, dtype=torch.float64).model
    names = [n for n, _ in model.named_parameters()]
    gen = torch.Generator().manual_seed(5)
    left = torch.randn((3, 5), generator=gen, dtype=torch.float64, requires_grad=True)
    right = torch.randn((3, 4), generator=gen, dtype=torch.float64, requires_grad=True)

    def fn(left, right, *params):
        return torch.func.functional_call(model, dict(zip(names, params)), (left, right))

    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    return torch.autograd.gradcheck(fn, (left, right, *params), raise_exception=False)


@pytest.mark.parametrize("scale", [1.0, 1.1], ids=["correct", "planted"])
def test_two_input_net_agrees_with_torch_autograd_gradcheck(tmp_path, scale):
    spec = load_spec(write(tmp_path, TWO_BRANCHES.format(scale=scale)))
    report = gc.gradcheck(spec, seed=3)
    assert report.ok == torch_gradcheck(spec) == (scale == 1.0), report.diagnosis
    assert [(i.name, i.perturbed) for i in report.inputs] == [("left", True), ("right", True)]
    names = [t.name for t in report.end_to_end.tensors]
    assert names == ["input left", "input right", "parameters"]


def test_a_wrong_backward_is_pinned_to_its_layer_and_its_input(tmp_path, run_cli):
    res = run_cli(["gradcheck", write(tmp_path, TWO_BRANCHES.format(scale=1.1)), "--json"])
    assert res.code == 1, res.text
    doc = json.loads(res.out)
    assert doc["suspect_name"] == "tb"
    verdicts = {i["name"]: i["verdict"] for i in doc["inputs"]}
    assert verdicts == {"left": "ok", "right": "FAIL"}
    # the planted factor 1.1 gives the layer's input gradient a relative error of 0.1 / 1.1
    tb = next(layer for layer in doc["layers"] if layer["name"] == "tb")
    rel = next(t["max_rel_error"] for t in tb["tensors"] if t["name"] == "input")
    assert rel == pytest.approx(0.1 / 1.1, rel=0.5)
    assert "input `right` fails; `left` agrees" in doc["diagnosis"]


def test_the_objective_reaches_every_output(tmp_path):
    report = gc.gradcheck(load_spec(write(tmp_path, TWO_OUTPUTS)), seed=1)
    assert not report.ok
    # end to end alone (no layer isolation) the wrong gradient is seen: the second output counts
    assert report.end_to_end.verdict is gc.Verdict.FAIL
    assert report.suspect_name == "b"


def test_siamese_checks_the_shared_tower_once(tmp_path, run_cli):
    res = run_cli(["gradcheck", write(tmp_path, SIAMESE_DAG), "--json"])
    assert res.code == 0, res.text
    doc = json.loads(res.out)
    shared = next(layer for layer in doc["layers"] if layer["name"] == "tower_r")
    assert shared["tensors"] == [] and "checked once" in shared["note"]
    e2e = {t["name"]: t for t in doc["end_to_end"]["tensors"]}
    assert list(e2e) == ["input left", "input right", "parameters"]
    assert e2e["parameters"]["numel"] == SIAMESE_PARAMS
    assert e2e["input left"]["numel"] == e2e["input right"]["numel"] == 4 * 144
    assert [i["verdict"] for i in doc["inputs"]] == ["ok", "ok"]


def test_token_inputs_are_not_perturbed_and_the_tied_weight_counts_once(tmp_path, run_cli):
    path = write(tmp_path, ENC_DEC)
    report = gc.gradcheck(load_spec(path))
    assert report.ok, report.diagnosis
    assert [(i.name, i.perturbed, i.verdict) for i in report.inputs] == [("src", False, None), ("tgt", False, None)]
    assert all("not perturbed" in i.note for i in report.inputs)
    assert [(t.name, t.numel) for t in report.end_to_end.tensors] == [("parameters", ENC_DEC_PARAMS)]
    logits = next(layer for layer in report.layers if layer.name == "logits")
    assert "tied: the weight of `embed`" in next(t.note for t in logits.tensors if t.name == "weight")
    # the decoder's memory is checked as the attention's second input
    attention = next(layer for layer in report.layers if layer.type == "CrossAttention")
    assert [t.name for t in attention.tensors][:2] == ["input", "input memory"]
    human = run_cli(["gradcheck", path])
    assert human.code == 0, human.text
    assert "src (int64): token ids: not perturbed" in " ".join(human.out.split())


def test_data_file_is_refused_for_several_inputs(tmp_path, run_cli):
    import numpy as np

    np.savez(tmp_path / "x.npz", x=np.zeros((4, 5), dtype="float32"))
    res = run_cli(["gradcheck", write(tmp_path, TWO_BRANCHES.format(scale=1.0)), "--data", tmp_path / "x.npz"])
    assert res.code == 2
    assert "--data: reads one input tensor" in res.err and "several (left, right)" in res.err
    assert "Traceback" not in res.err
