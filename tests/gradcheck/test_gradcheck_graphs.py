"""``nncli gradcheck`` on graphs with several inputs and outputs: every float input perturbed on
its own end to end, token inputs not perturbed, shared modules and tied weights checked once,
and an objective that reaches every output; ``--data`` gives each input its own array.

References: torch.autograd.gradcheck on the whole two-input model (float64, both inputs and
every parameter), a backward planted wrong by a known factor in one input's path, parameter
counts written out by hand, and each input's gradient norm recomputed with autograd on the data
file's rows standardised by numpy.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from spec_texts import ENC_DEC_DAG, SIAMESE_DAG

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
    path = write(tmp_path, ENC_DEC_DAG)
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


def standardised(a: np.ndarray) -> np.ndarray:
    """Per-feature standardisation over the file's rows, in float64 (a constant-free file)."""
    return (a - a.mean(axis=0)) / a.std(axis=0)


def input_gradient_norms(spec, left, right, seed: int) -> dict:
    """||d<R, f(left, right)>/d input|| by hand: the float64 model of ``seed``, R the first draw of
    ``torch.Generator().manual_seed(seed)`` (the projection objective)."""
    model = build_model(spec, seed=seed, dtype=torch.float64).model
    left, right = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (left, right))
    y = model(left, right)
    r = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    grads = torch.autograd.grad((r * y).sum(), [left, right])
    return {"input left": float(grads[0].norm()), "input right": float(grads[1].norm())}


def test_a_data_file_gives_each_input_its_standardised_first_rows(tmp_path):
    # scales and offsets far from N(0, 1): read raw, the tanh on `left`'s branch saturates
    rng = np.random.default_rng(0)
    left = (100 + 30 * rng.standard_normal((7, 5))).astype("float32")
    right = (-4 + 0.01 * rng.standard_normal((7, 4))).astype("float32")
    np.savez(tmp_path / "pair.npz", left=left, right=right, y=np.zeros(7))
    spec = load_spec(write(tmp_path, TWO_BRANCHES.format(scale=1.0)))
    report = gc.gradcheck(spec, data=tmp_path / "pair.npz", batch=4, seed=2)
    assert report.ok, report.diagnosis
    assert report.batch == 4 and report.data == str(tmp_path / "pair.npz")
    expected = input_gradient_norms(spec, standardised(left)[:4], standardised(right)[:4], seed=2)
    e2e = {t.name: t for t in report.end_to_end.tensors}
    for name, norm in expected.items():
        assert e2e[name].numel == 4 * (5 if name == "input left" else 4)
        assert e2e[name].grad_norm == pytest.approx(norm, rel=1e-5), name
    # the random batch gives other gradients; a file shorter than --batch is taken whole
    random_e2e = {t.name: t for t in gc.gradcheck(spec, batch=4, seed=2).end_to_end.tensors}
    assert random_e2e["input left"].grad_norm != pytest.approx(expected["input left"], rel=1e-2)
    assert gc.gradcheck(spec, data=tmp_path / "pair.npz", batch=10, seed=2).batch == 7


def test_a_spec_with_data_standardises_each_input_with_its_training_statistics(tmp_path):
    # the spec's own data has every split, so its training split is the whole `_train` pool
    rng = np.random.default_rng(3)
    splits = {}
    for suffix, n in (("_train", 12), ("_val", 3), ("_test", 3)):
        splits["left" + suffix] = 10 + 3 * rng.standard_normal((n, 5))
        splits["right" + suffix] = -2 + 0.5 * rng.standard_normal((n, 4))
        splits["y" + suffix] = rng.integers(0, 3, n)
    np.savez(tmp_path / "train.npz", **splits)
    left, right = rng.standard_normal((4, 5)), rng.standard_normal((4, 4))
    np.savez(tmp_path / "batch.npz", left=left.astype("float32"), right=right.astype("float32"))
    spec = load_spec(write(tmp_path, TWO_BRANCHES.format(scale=1.0) + "data: {path: train.npz}\n"))
    report = gc.gradcheck(spec, data=tmp_path / "batch.npz", seed=1)
    train_left, train_right = splits["left_train"], splits["right_train"]
    expected = input_gradient_norms(
        spec,
        (left - train_left.mean(0)) / train_left.std(0),
        (right - train_right.mean(0)) / train_right.std(0),
        seed=1,
    )
    e2e = {t.name: t for t in report.end_to_end.tensors}
    for name, norm in expected.items():
        assert e2e[name].grad_norm == pytest.approx(norm, rel=1e-5), name


def test_a_data_file_of_token_inputs_is_checked_against_high(tmp_path, run_cli):
    path = write(tmp_path, ENC_DEC_DAG)
    np.savez(tmp_path / "ids.npz", src=np.arange(30).reshape(6, 5) % 10, tgt=np.zeros((6, 5), dtype="int64"))
    res = run_cli(["gradcheck", path, "--data", tmp_path / "ids.npz", "--json"])
    assert res.code == 2  # src is [6] per example; the file's rows are 5 long
    np.savez(tmp_path / "ids.npz", src=np.arange(36).reshape(6, 6) % 10, tgt=np.full((6, 5), 12))
    res = run_cli(["gradcheck", path, "--data", tmp_path / "ids.npz"])
    assert res.code == 2 and "'tgt'" in res.err and "Traceback" not in res.err  # 12 is not below high 12
    np.savez(tmp_path / "ids.npz", src=np.arange(36).reshape(6, 6) % 10, tgt=np.full((6, 5), 11))
    res = run_cli(["gradcheck", path, "--data", tmp_path / "ids.npz", "--batch", "10", "--json"])
    assert res.code == 0, res.text
    assert json.loads(res.out)["settings"]["batch"] == 6  # the file's 6 rows, fewer than --batch 10


def test_a_data_file_missing_an_input_is_exit_2_naming_it(tmp_path, run_cli):
    np.savez(tmp_path / "x.npz", left=np.zeros((4, 5), dtype="float32"))
    res = run_cli(["gradcheck", write(tmp_path, TWO_BRANCHES.format(scale=1.0)), "--data", tmp_path / "x.npz"])
    assert res.code == 2
    assert "no array 'right' in x.npz" in " ".join(res.err.split()) and "Traceback" not in res.err
