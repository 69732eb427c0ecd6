"""``nncli probe`` on graphs with several inputs and outputs: a random batch for every input, a
loss over every output, a row for every layer of every branch (a shared module once per use).

References: the gradient norms of a tiny two-input, two-output net recomputed by hand with
autograd on its submodules, from the documented recipe (one generator per seed: each input's
batch in order, or one ``randperm`` of a data file's rows standardised by numpy, then each
output's projection); layer names and counts written out from the specs.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from spec_texts import SIAMESE_DAG, reverse_digits

from nncli.build import build_model
from nncli.probe import probe
from nncli.spec import parse_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# the small encoder-decoder of the training test (digit reversal)
ENC_DEC = reverse_digits()

# two float inputs, two outputs (the head and the tanh branch)
TINY = """
inputs:
  a: [3]
  b: [2]
outputs: [out, ta]
layers:
  - Linear: {name: la, from: a, out_features: 4}
  - Tanh: {name: ta}
  - Linear: {name: lb, from: b, out_features: 4}
  - Merge: {name: m, from: [ta, lb], mode: add}
  - Linear: {name: out, out_features: 2}
"""


def finite_numbers(row: dict) -> bool:
    return all(isinstance(v, float) and math.isfinite(v) for k, v in row.items() if k.endswith(("norm", "rms")) and v)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (SIAMESE_DAG, [f"tower.{i}" for i in range(5)] + [f"tower_r.{i}" for i in range(5)] + ["merge_2", "head"]),
        (
            ENC_DEC,
            [
                "embedding_0",
                "positionembedding_1",
                "memory",
                "embedding_3",
                "positionembedding_4",
                "transformerdecoderlayer_5",
                "linear_6",
            ],
        ),
    ],
    ids=["siamese", "encoder-decoder"],
)
def test_every_layer_of_every_branch_is_probed(run_cli, tmp_path, text, names):
    path = tmp_path / "net.yaml"
    path.write_text(text)
    res = run_cli(["probe", path, "--json", "--seeds", "0,1", "--batch-size", "8"])
    assert res.code == 0, res.text
    doc = json.loads(res.out)
    assert [row["name"] for row in doc["layers"]] == names
    assert all(finite_numbers(row) and row["grad_norm"] > 0 for row in doc["layers"])
    assert doc["verdict"] == "healthy" and doc["depth"] == len(names)


def test_a_shared_tower_is_one_row_per_use_with_one_weight_gradient(tmp_path):
    report = probe(parse_spec(SIAMESE_DAG), seeds=[0], batch_size=8)
    rows = {row.name: row for row in report.init.layers}
    assert rows["tower_r.0"].shared == "tower" and rows["tower.0"].shared is None
    # one parameter: the gradient of both uses together, on both rows
    assert rows["tower_r.0"].weight_grad_norm == rows["tower.0"].weight_grad_norm
    # two inputs, two different activation gradients
    assert rows["tower_r.0"].grad_norm != rows["tower.0"].grad_norm


def hand_probe(spec, seed: int, a, b, r_out, r_ta):
    """The probe of TINY by hand: activation and weight gradient norms per row, and R."""
    n = len(a)
    model = build_model(spec, seed=seed).model
    ha = model.la(a)
    hta = torch.tanh(ha)
    hb = model.lb(b)
    hm = hta + hb
    y = model.out(hm)
    loss = ((r_out * y).sum() + (r_ta * hta).sum()) / n
    weights = [model.la.weight, model.lb.weight, model.out.weight]
    grads = torch.autograd.grad(loss, [ha, hta, hb, hm, y, *weights])
    expected = {
        "la": (grads[0], grads[5]),
        "ta": (grads[1], None),
        "lb": (grads[2], grads[6]),
        "m": (grads[3], None),
        "out": (grads[4], grads[7]),
    }
    return expected, float(grads[0].norm() / grads[4].norm())


def assert_matches(report, expected: dict, ratio: float) -> None:
    rows = {row.name: row for row in report.init.layers}
    assert list(rows) == list(expected)
    for name, (act, weight) in expected.items():
        assert rows[name].grad_norm == pytest.approx(float(act.norm()), rel=1e-5), name
        if weight is not None:
            assert rows[name].weight_grad_norm == pytest.approx(float(weight.norm()), rel=1e-5), name
    assert report.init.ratio == pytest.approx(ratio, rel=1e-5)


def test_gradient_norms_match_a_hand_computation():
    spec = parse_spec(TINY)
    n, seed = 8, 4
    report = probe(spec, seeds=[seed], batch_size=n)
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn((n, 3), generator=gen), torch.randn((n, 2), generator=gen)
    r_out, r_ta = torch.randn((n, 2), generator=gen), torch.randn((n, 4), generator=gen)
    assert_matches(report, *hand_probe(spec, seed, a, b, r_out, r_ta))
    assert "summed over the outputs out, ta" in report.loss


def test_a_data_file_gives_every_input_the_same_standardised_rows(tmp_path):
    # far from N(0, 1), so rows read raw (or unstandardised) would give other norms
    rng = np.random.default_rng(1)
    a_file = 50 + 20 * rng.standard_normal((11, 3))
    b_file = -3 + 0.1 * rng.standard_normal((11, 2))
    np.savez(tmp_path / "ab.npz", a=a_file.astype("float32"), b=b_file.astype("float32"))
    spec = parse_spec(TINY)
    n, seed = 8, 4
    report = probe(spec, seeds=[seed], batch_size=n, data=tmp_path / "ab.npz")
    assert report.inputs == "ab.npz (11 examples, 8 per seed)"
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(11, generator=gen)[:n]  # one draw of rows for both inputs
    a, b = (torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)[pick] for x in (a_file, b_file))
    r_out, r_ta = torch.randn((n, 2), generator=gen), torch.randn((n, 4), generator=gen)
    assert_matches(report, *hand_probe(spec, seed, a, b, r_out, r_ta))
    trained = probe(spec, seeds=[seed], batch_size=n, data=tmp_path / "ab.npz", steps=2)  # on the file's rows too
    assert math.isfinite(trained.training.loss_last)


def test_a_data_file_missing_an_input_is_exit_2_naming_it(run_cli, tmp_path):
    np.savez(tmp_path / "x.npz", left=np.zeros((4, 1, 12, 12), dtype="float32"))
    path = tmp_path / "net.yaml"
    path.write_text(SIAMESE_DAG)
    res = run_cli(["probe", path, "--data", tmp_path / "x.npz"])
    assert res.code == 2
    assert "--data: no array 'right' in x.npz" in " ".join(res.err.split()) and "Traceback" not in res.err


def test_ratio_ends_at_the_first_output_where_it_is_not_the_last_row():
    report = probe(parse_spec(TINY.replace("outputs: [out, ta]", "outputs: [ta, out]")), seeds=[0], batch_size=8)
    rows = {row.name: row for row in report.init.layers}
    assert report.init.depth == 2  # la, ta: the rows up to the first output
    assert report.init.ratio == pytest.approx(rows["la"].grad_norm / rows["ta"].grad_norm, rel=1e-9)
    assert "out" in rows  # every row is still reported


def test_steps_train_a_graph_spec(tmp_path):
    report = probe(parse_spec(TINY), seeds=[0], batch_size=8, steps=3)
    assert report.training is not None and math.isfinite(report.training.loss_last)
    assert [row.name for row in report.after.layers] == ["la", "ta", "lb", "m", "out"]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--sweep-depth", "1,2"], "--sweep-depth: fits the depth law of one chain"),
        (["--data", "DATA"], "--data: net has several inputs (left, right): probe reads an .npz or .pt file"),
    ],
    ids=["sweep-depth", "data-csv"],
)
def test_what_a_graph_cannot_take_is_exit_2(run_cli, tmp_path, flags, says):
    (tmp_path / "x.csv").write_text("1,2\n3,4\n")
    path = tmp_path / "net.yaml"
    path.write_text(SIAMESE_DAG)
    flags = [str(tmp_path / "x.csv") if f == "DATA" else f for f in flags]
    res = run_cli(["probe", path, *flags])
    assert res.code == 2
    assert says in " ".join(res.err.split()) and "Traceback" not in res.err
