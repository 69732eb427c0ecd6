"""RMSE, MAE, R², per-class precision/recall/F1 and the confusion matrix (nncli.metrics), in
``evaluate`` (--json, the table, --plot) and in train's report.

The reference is scikit-learn's metrics on the same predictions: the model's outputs from
``nncli predict`` on the raw inputs of the split, scored by sklearn against the split's labels.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from nncli.metrics import detail_report, detail_sums

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BLOBS = """
name: blobs-mlp
input: [2]
layers:
  - Linear: {out_features: 16}
  - ReLU
  - Linear: {out_features: 4}
data: {name: blobs, n: 600, classes: 4, features: 2, spread: 2.5}
train: {optimizer: adam, lr: 0.01, batch_size: 50, epochs: 2, seed: 1}
"""

REGRESSION = """
name: sine
input: [1]
layers:
  - Linear: {out_features: 16}
  - Tanh
  - Linear: {out_features: 1}
data: {name: regression, n: 400, noise: 0.2}
train: {optimizer: adam, lr: 0.01, batch_size: 50, epochs: 2, loss: mse, seed: 1}
"""


def _nan(values):
    return [math.nan if v is None else v for v in values]


def _sums(loss, shape, pred, target, batches=3):
    """detail_sums added up over a few batches, as an evaluation pass does."""
    parts = zip(torch.tensor_split(pred, batches), torch.tensor_split(target, batches))
    return sum(detail_sums(loss, shape, p, t) for p, t in parts).tolist()


def test_classification_scores_match_sklearn_including_a_class_never_predicted():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 5, generator=gen)
    logits[:, 4] -= 100  # class 4 is never predicted: its precision is undefined
    y = torch.randint(0, 5, (200,), generator=gen)
    got = detail_report("cross_entropy", (5,), _sums("cross_entropy", (5,), logits, y), 200)
    pred = logits.argmax(1).numpy()
    labels = list(range(5))
    assert got["confusion"] == skm.confusion_matrix(y.numpy(), pred, labels=labels).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(y.numpy(), pred, labels=labels, zero_division=np.nan)
    per = got["per_class"]
    np.testing.assert_allclose(_nan([c["precision"] for c in per]), p)
    np.testing.assert_allclose(_nan([c["recall"] for c in per]), r)
    np.testing.assert_allclose(_nan([c["f1"] for c in per]), f)
    assert [c["support"] for c in per] == s.tolist()
    assert per[4]["precision"] is None and per[4]["f1"] == 0.0


def test_binary_logit_is_a_two_class_confusion_matrix():
    gen = torch.Generator().manual_seed(1)
    out, y = torch.randn(50, 1, generator=gen), torch.randint(0, 2, (50, 1), generator=gen).float()
    got = detail_report("bce_with_logits", (1,), _sums("bce_with_logits", (1,), out, y), 50)
    pred = (out.reshape(-1) > 0).long().numpy()
    assert got["confusion"] == skm.confusion_matrix(y.reshape(-1).numpy(), pred, labels=[0, 1]).tolist()
    np.testing.assert_allclose(
        _nan([c["f1"] for c in got["per_class"]]), skm.f1_score(y.reshape(-1), pred, average=None)
    )


def test_regression_scores_match_sklearn_for_several_outputs():
    gen = torch.Generator().manual_seed(2)
    y = torch.randn(300, 3, generator=gen) * torch.tensor([1.0, 100.0, 0.01]) + torch.tensor([0.0, 5e3, -2.0])
    pred = y + torch.randn(300, 3, generator=gen) * torch.tensor([0.5, 30.0, 0.02])
    got = detail_report("mse", (3,), _sums("mse", (3,), pred, y), 300)
    yn, pn = y.double().numpy(), pred.double().numpy()
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(yn, pn), rel=1e-9)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(yn, pn), rel=1e-9)
    assert got["r2"] == pytest.approx(skm.r2_score(yn, pn), rel=1e-6)
    flat = detail_report("mse", (1,), _sums("mse", (1,), pred[:, :1], y[:, :1]), 300)
    assert flat["r2"] == pytest.approx(skm.r2_score(yn[:, 0], pn[:, 0]), rel=1e-6)


def test_r2_of_a_constant_target_is_undefined_and_big_outputs_skip_the_matrix():
    y = torch.full((10, 1), 3.0)
    got = detail_report("mse", (1,), _sums("mse", (1,), y + 1, y), 10)
    assert got["r2"] is None and got["rmse"] == pytest.approx(1.0) and got["mae"] == pytest.approx(1.0)
    # an output with a constant target has no R²: the mean is over the others
    two = torch.cat([torch.linspace(0, 1, 10).reshape(10, 1), y], 1)
    noisy = two + torch.tensor([[0.1, 0.5]]) * torch.cos(torch.arange(10.0)).reshape(10, 1)
    got = detail_report("mse", (2,), _sums("mse", (2,), noisy, two), 10)
    assert got["r2"] == pytest.approx(skm.r2_score(two[:, 0].numpy(), noisy[:, 0].numpy()), rel=1e-6)
    assert detail_report("cross_entropy", (1000,), [], 10) == {}  # a vocabulary, not classes
    assert detail_report("bce_with_logits", (3,), [], 10) == {}  # multi-label


def _raw_split(data: dict, split: str):
    from nncli.data import load_dataset, resolve_data_config

    raw = load_dataset(resolve_data_config({**data, "normalize": False}))
    return getattr(raw, f"x_{split}").numpy(), getattr(raw, f"y_{split}").numpy()


def _train_and_predict(tmp_path, run_cli, text: str, data: dict):
    from nncli.train import run_training

    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    out = tmp_path / "run"
    result = run_training(spec, None, out, device="cpu")
    x, y = _raw_split(data, "test")
    np.savez(tmp_path / "test.npz", x=x)
    res = run_cli(["predict", out, tmp_path / "test.npz", "--json"])
    assert res.code == 0, res.err
    return out, result, np.asarray(json.loads(res.out)["predictions"]), y


def test_evaluate_classification_scores_are_sklearns_on_the_predictions(tmp_path, run_cli):
    data = {"name": "blobs", "n": 600, "classes": 4, "features": 2, "spread": 2.5}
    out, result, pred, y = _train_and_predict(tmp_path, run_cli, BLOBS, data)
    res = run_cli(["evaluate", out, "--json"])
    assert res.code == 0, res.err
    test = json.loads(res.out)["splits"]["test"]
    assert set(test) >= {"loss", "accuracy", "n"}  # the keys there were before stay
    assert test["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert test["confusion"] == skm.confusion_matrix(y, pred, labels=range(4)).tolist()
    assert sum(map(sum, test["confusion"])) == len(y)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(4), zero_division=np.nan)
    np.testing.assert_allclose(_nan([c["precision"] for c in test["per_class"]]), p)
    np.testing.assert_allclose(_nan([c["recall"] for c in test["per_class"]]), r)
    np.testing.assert_allclose(_nan([c["f1"] for c in test["per_class"]]), f)
    assert [c["support"] for c in test["per_class"]] == s.tolist()
    # train's report carries the same for its test split (same best weights)
    report = json.loads((out / "report.json").read_text())
    assert report["test"]["confusion"] == test["confusion"] == result.test["confusion"]
    # the table: a row per class with its scores in percent, and the matrix
    res = run_cli(["evaluate", out])
    assert res.code == 0, res.err
    assert "per class" in res.out and "confusion" in res.out
    assert f"{100 * r[0]:.2f}%" in res.out and f"{100 * f[3]:.2f}%" in res.out


def test_evaluate_regression_rmse_mae_r2_are_sklearns(tmp_path, run_cli):
    data = {"name": "regression", "n": 400, "noise": 0.2}
    out, result, pred, y = _train_and_predict(tmp_path, run_cli, REGRESSION, data)
    res = run_cli(["evaluate", out, "--json"])
    assert res.code == 0, res.err
    test = json.loads(res.out)["splits"]["test"]
    assert test["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred), rel=1e-4)
    assert test["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-4)
    assert test["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-4, abs=1e-5)
    assert test["loss"] == pytest.approx(test["rmse"] ** 2, rel=1e-4)  # mse: the loss is the RMSE squared
    assert result.test["r2"] == pytest.approx(test["r2"])
    res = run_cli(["evaluate", out])
    assert "r²" in res.out and f"{test['rmse']:.4g}" in res.out
    # train's own summary shows them for the test split
    from rich.console import Console

    from nncli.render.train import show

    text = io.StringIO()
    show(Console(file=text, width=300), result)
    assert "r²" in text.getvalue() and f"{result.test['r2']:.4g}" in text.getvalue()
    # a regression run has no confusion matrix to draw: exit 2, nothing written
    res = run_cli(["evaluate", out, "--plot", tmp_path / "c.png"])
    assert res.code == 2 and "confusion matrix" in res.err and not (tmp_path / "c.png").exists()


def test_evaluate_plot_writes_the_confusion_matrix(tmp_path, run_cli):
    pytest.importorskip("matplotlib")
    from nncli.train import run_training

    spec = tmp_path / "spec.yaml"
    spec.write_text(BLOBS)
    run_training(spec, None, tmp_path / "run", device="cpu")
    res = run_cli(["evaluate", tmp_path / "run", "--split", "all", "--plot", tmp_path / "confusion.png"])
    assert res.code == 0, res.err
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = run_cli(["evaluate", tmp_path / "run", "--plot", tmp_path / "confusion.jpg"])
    assert res.code == 2 and ".png" in res.err
