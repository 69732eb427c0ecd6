"""attack on a run with two float inputs and two outputs: both inputs are perturbed under one
L-infinity budget, against the first output. The reference is FGSM written here by hand on the
loaded model (autograd on each input), on the file's own test split; a token input among several
is a clear refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spec_texts import TWO_FLOAT_DAG

SPEC = TWO_FLOAT_DAG


def _arrays(n: int, seed: int) -> dict:
    g = np.random.default_rng(seed)
    a = (g.normal(size=(n, 2)) * [100, 0.01] + [500, -3]).astype(np.float32)
    b = (g.normal(size=(n, 3)) * 50).astype(np.float32)
    return {"a": a, "b": b, "y": ((a[:, 0] - 500) / 100 + b[:, 0] / 50 > 0).astype(np.int64)}


@pytest.fixture(scope="module")
def two_input_run(tmp_path_factory):
    from nncli.cli import main

    folder = tmp_path_factory.mktemp("attack-two")
    held = _arrays(80, seed=2)
    np.savez(folder / "two.npz", **_arrays(500, seed=1), **{f"{k}_test": v for k, v in held.items()})
    (folder / "two.yaml").write_text(
        SPEC + "data: {path: two.npz}\ntrain: {epochs: 3, lr: 0.01, outputs: {aux: 0.3}}\n"
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(folder / "two.yaml"), "--out", str(folder / "run"), "--json"]) == 0
    finally:
        torch.set_num_threads(before)
    return folder / "run", held


def _hand_fgsm(run, held: dict, eps: float, scale: dict | None = None) -> dict:
    """FGSM on each input of the loaded model (its first output), summed cross-entropy."""
    import nncli

    model = nncli.load(run)
    a = torch.from_numpy(held["a"]).requires_grad_(True)
    b = torch.from_numpy(held["b"]).requires_grad_(True)
    loss = F.cross_entropy(model(a, b)[0], torch.from_numpy(held["y"]), reduction="sum")
    grad_a, grad_b = torch.autograd.grad(loss, (a, b))
    scale = scale or {"a": 1.0, "b": 1.0}
    with torch.no_grad():
        adv = {"a": a + eps * scale["a"] * grad_a.sign(), "b": b + eps * scale["b"] * grad_b.sign()}
        adv["pred"] = model(adv["a"], adv["b"])[0].argmax(1)
    return adv


def test_fgsm_moves_both_inputs_as_hand_written_fgsm_does(two_input_run, run_cli, tmp_path, one_torch_thread):
    run, held = two_input_run
    result = run_cli(["attack", run, "--eps", "0,20", "--method", "fgsm", "--save", tmp_path / "adv.npz", "--json"])
    assert result.code == 0, result.text
    saved = np.load(tmp_path / "adv.npz")
    assert {"a", "b", "a_adv", "b_adv"} <= set(saved.files) and "x" not in saved.files
    np.testing.assert_array_equal(saved["a"], held["a"])  # the clean test split, by input name
    expected = _hand_fgsm(run, held, 20.0)
    np.testing.assert_allclose(saved["a_adv"][0, 1], expected["a"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(saved["b_adv"][0, 1], expected["b"].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(saved["pred_adv"][0, 1], expected["pred"].numpy())
    rows = json.loads(result.out)["rows"]
    robust = (expected["pred"].numpy() == held["y"]).mean()
    assert rows[1]["accuracy"] == pytest.approx(robust)
    assert rows[1]["linf_max"] == pytest.approx(20.0, rel=1e-5)  # one budget bounds both inputs
    assert rows[1]["accuracy"] < rows[0]["accuracy"]


def test_eps_in_standard_deviations_scales_each_input_by_its_own_std(two_input_run, run_cli, tmp_path):
    run, held = two_input_run
    args = ["attack", run, "--eps", "0.5", "--method", "fgsm", "--eps-units", "std", "--save", tmp_path / "adv.npz"]
    assert run_cli(args).code == 0
    saved = np.load(tmp_path / "adv.npz")
    stats = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["normalization"]
    expected = _hand_fgsm(run, held, 0.5, {k: stats["std"][k] for k in ("a", "b")})
    np.testing.assert_allclose(saved["a_adv"][0, 0], expected["a"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(saved["b_adv"][0, 0], expected["b"].numpy(), rtol=1e-6)
    # a's first feature spreads ~100, its second ~0.01: each moved by half its own std
    moved = np.abs(saved["a_adv"][0, 0] - held["a"]).max(0)
    np.testing.assert_allclose(moved, 0.5 * stats["std"]["a"].numpy(), rtol=1e-4)


def test_a_token_input_among_several_is_refused(tmp_path, run_cli, one_torch_thread):
    g = np.random.default_rng(0)
    np.savez(
        tmp_path / "mix.npz",
        a=g.normal(size=(60, 2)).astype(np.float32),
        t=g.integers(0, 5, (60, 4)),
        y=g.integers(0, 2, 60),
    )
    spec = """
name: mixed
inputs: {a: [2], t: {shape: [4], dtype: int64, high: 5}}
layers:
  - Linear: {from: a, out_features: 4, name: ha}
  - Embedding: {from: t, embedding_dim: 4}
  - Flatten
  - Linear: {out_features: 4, name: ht}
  - Merge: {from: [ha, ht], mode: add}
  - Linear: {out_features: 2}
data: {path: mix.npz}
train: {epochs: 1}
"""
    (tmp_path / "mix.yaml").write_text(spec)
    assert run_cli(["train", tmp_path / "mix.yaml", "--out", tmp_path / "run", "--json"]).code == 0
    result = run_cli(["attack", tmp_path / "run"])
    assert result.code == 2 and "t (int64) holds token ids" in result.err and "Traceback" not in result.text
