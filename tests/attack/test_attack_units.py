"""``nncli attack`` in the model's true units: eps applies to raw inputs, no perturbation leaves its
eps-ball (the largest one is reported), inputs are clamped only to a declared or format range,
and ``--eps-units std`` gives eps in training standard deviations per feature.

References: the saved adversarial arrays compared with the clean inputs here, element by element.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import nncli
from nncli.attack import run_attack
from nncli.train import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models, one thread


SPEC = """
input: [3]
layers:
  - Linear: {out_features: 16}
  - ReLU
  - Linear: {out_features: 2}
data: {path: d.npz, RANGE}
train: {optimizer: adam, lr: 0.02, epochs: 4, seed: 0}
"""


def _run(tmp_path, data_range=None):
    gen = np.random.default_rng(0)
    scales = np.array([1.0, 10.0, 100.0], dtype=np.float32)
    x = gen.uniform(0, 1, size=(400, 3)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 1).astype(np.int64)
    # test rows beyond the training rows' extremes: an attack that clamps to the training range
    # would move them by far more than eps
    xt = gen.uniform(0, 1, size=(60, 3)).astype(np.float32) * 1.5
    np.savez(
        tmp_path / "d.npz", x=x * scales, y=y, x_test=xt * scales, y_test=(xt[:, 0] + xt[:, 1] > 1).astype(np.int64)
    )
    text = SPEC.replace("RANGE", f"range: {data_range}" if data_range else "val: 0.1")
    (tmp_path / "spec.yaml").write_text(text)
    run_training(tmp_path / "spec.yaml", {}, tmp_path / "run", device="cpu")
    return tmp_path / "run", xt * scales


def test_no_perturbation_leaves_its_eps_ball_and_raw_units_are_noted(tmp_path):
    run, xt = _run(tmp_path)
    result = run_attack(run, eps=[0.01, 0.5], device="cpu", save=tmp_path / "adv.npz")
    saved = np.load(tmp_path / "adv.npz")
    for m, method in enumerate(result.methods):
        for i, e in enumerate(result.eps):
            delta = np.abs(saved["x_adv"][m, i].astype(np.float64) - xt.astype(np.float64))
            assert delta.max() <= e * (1 + 1e-4) + 1e-5, (method, e)
    for row in result.rows:
        assert row.linf_max <= row.eps * (1 + 1e-4) + 1e-5 and row.budget_used <= 1 + 1e-3
        assert row.linf_mean <= row.linf_max
    assert result.value_range is None  # no range declared, none invented from the training split
    assert any("raw units" in note for note in result.notes)


def test_a_declared_range_is_kept(tmp_path):
    run, xt = _run(tmp_path, data_range="[0, 150]")
    result = run_attack(run, eps=[5.0], methods=["pgd"], device="cpu", save=tmp_path / "adv.npz")
    adv = np.load(tmp_path / "adv.npz")["x_adv"][0, 0]
    assert result.value_range == [0.0, 150.0]
    assert adv.min() >= 0 and adv.max() <= 150
    assert np.abs(adv - xt).max() <= 5.0 * (1 + 1e-5)


def test_eps_in_standard_deviations_scales_each_feature(tmp_path, run_cli):
    run, xt = _run(tmp_path)
    res = run_cli(
        ["attack", run, "--eps", "0,0.2", "--eps-units", "std", "--method", "fgsm", "--json", "-o", tmp_path / "a.npz"]
    )
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["eps_units"] == "std" and {"linf_max", "l2_max", "budget_used"} <= set(doc["rows"][1])
    # the reference std: numpy's, of the raw training rows (the run's split, read without normalisation)
    import dataclasses

    from nncli.data import load_dataset
    from nncli.train.trained import open_run

    config = open_run(run).data
    rows = load_dataset(dataclasses.replace(config, normalize=False)).x_train.numpy().astype(np.float64)
    std = rows.std(axis=0)
    delta = np.abs(np.load(tmp_path / "a.npz")["x_adv"][0, 1] - xt)
    # FGSM moves every feature by its whole budget: 0.2 of that feature's training std
    assert np.allclose(delta.max(0), 0.2 * std, rtol=1e-3)
    assert np.allclose(nncli.load(run).normalize.std.numpy(), std, rtol=1e-4)  # and the model holds that std
    assert doc["rows"][1]["budget_used"] == pytest.approx(1.0, abs=1e-3)
