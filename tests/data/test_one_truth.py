"""The spec's ``data:`` section read one way by every command: statistics per channel of the
network's input, the target column kept when only the path changes, NaN refused in every split,
and a new labelled file scored by ``evaluate --data``.

References: numpy statistics computed here, the CSV columns as written here, and ``nncli.load``'s
model (checked itself against onnxruntime in tests/export/test_raw_inputs.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

import nncli
from nncli.data import load_dataset, resolve_data_config
from nncli.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models, one thread


SIGNAL = """
name: signal
input: [1, 40]
layers:
  - Conv1d: {out_channels: 4, kernel_size: 5, stride: 2}
  - ReLU
  - Flatten
  - Linear: {out_features: 3}
data: {path: signal.npz}
train: {optimizer: adam, lr: 0.01, batch_size: 50, epochs: 1, seed: 0}
"""


def _signal(tmp_path, n=300):
    gen = np.random.default_rng(0)
    # positions with very different offsets: per-position statistics would erase the shape
    x = gen.normal(size=(n, 40)) + np.linspace(-50, 50, 40)
    np.savez(tmp_path / "signal.npz", x=x.astype(np.float32), y=gen.integers(0, 3, n))
    (tmp_path / "signal.yaml").write_text(SIGNAL)
    return x


def test_a_signal_is_standardised_per_channel_not_per_position(tmp_path):
    _signal(tmp_path)
    config = resolve_data_config({"path": str(tmp_path / "signal.npz")})
    raw = load_dataset(config.__class__(**{**config.__dict__, "normalize": False}), input_shape=(1, 40))
    ds = load_dataset(config, input_shape=(1, 40))
    x = raw.x_train.numpy().astype(np.float64)
    assert ds.mean.shape == (1, 1) and ds.std.shape == (1, 1)
    assert float(ds.mean) == pytest.approx(x.mean(), rel=1e-5)
    assert float(ds.std) == pytest.approx(x.std(), rel=1e-5)
    assert ds.x_train.shape[1:] == (1, 40) and ds.normalization["by"] == "channel"
    # the position offsets survive standardisation (a per-position mean would make them all 0)
    assert float(ds.x_train[:, 0, -1].mean() - ds.x_train[:, 0, 0].mean()) > 1.0


def test_run_yaml_records_the_normalisation(tmp_path):
    from nncli.train import run_training

    _signal(tmp_path)
    run_training(tmp_path / "signal.yaml", {}, tmp_path / "run", device="cpu")
    meta = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())
    assert meta["normalization"] == {"by": "channel", "channels": 1, "input": [1, 40]}


def _csv(path, rows, header="a,label,b"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")


def test_a_new_path_keeps_the_spec_target_column(tmp_path):
    gen = np.random.default_rng(2)
    rows = [(float(gen.normal()), int(gen.integers(0, 2)), float(gen.normal())) for _ in range(50)]
    _csv(tmp_path / "a.csv", rows)
    _csv(tmp_path / "b.csv", rows[::-1])
    spec_data = {"path": str(tmp_path / "a.csv"), "target": "label", "test": 0.0, "val": 0.0, "normalize": False}
    config = resolve_data_config(spec_data, {"path": str(tmp_path / "b.csv")})
    assert config.target == "label" and config.path.name == "b.csv"
    ds = load_dataset(config)
    pairs = {
        (round(float(x[0]), 5), round(float(x[1]), 5)): int(y) for x, y in zip(ds.x_train, ds.y_train, strict=True)
    }
    assert pairs == {(round(a, 5), round(b, 5)): label for a, label, b in rows}


@pytest.mark.parametrize("where", ["test", "val"])
def test_nan_in_any_split_is_exit_2_naming_the_split_and_row(tmp_path, run_cli, where):
    x = _signal(tmp_path)
    config = resolve_data_config({"path": str(tmp_path / "signal.npz")})
    probe = load_dataset(config.__class__(**{**config.__dict__, "normalize": False}))
    # a row that lands in the chosen split: find it by value, poison it, train
    target = getattr(probe, f"x_{where}")[0].numpy()
    row = int(np.flatnonzero(np.isclose(x.astype(np.float32), target).all(axis=1))[0])
    x[row, 7] = np.nan
    data = np.load(tmp_path / "signal.npz")
    np.savez(tmp_path / "signal.npz", x=x.astype(np.float32), y=data["y"])
    res = run_cli(["train", tmp_path / "signal.yaml", "--out", tmp_path / "run", "--json"])
    assert res.code == 2, res.err
    message = json.loads(res.out)["message"]
    assert f"the {where} split" in message and f"row {row}" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_nan_in_predict_input_names_the_row(tmp_path):
    from nncli.data import read_inputs

    (tmp_path / "p.csv").write_text("1,2\n3,nan\n5,6\n")
    with pytest.raises(InputError, match="the first is row 1"):
        read_inputs(tmp_path / "p.csv")


def test_evaluate_scores_a_new_labelled_file(tmp_path, run_cli):
    from nncli.train import run_training

    gen = np.random.default_rng(3)
    rows = [(float(a), int(a + b > 0), float(b)) for a, b in gen.normal(size=(200, 2)) * 100]
    _csv(tmp_path / "train.csv", rows)
    (tmp_path / "spec.yaml").write_text(
        "input: [2]\nlayers:\n  - Linear: {out_features: 8}\n  - ReLU\n  - Linear: {out_features: 2}\n"
        "data: {path: train.csv, target: label}\ntrain: {optimizer: adam, lr: 0.05, epochs: 3, seed: 0}\n"
    )
    run_training(tmp_path / "spec.yaml", {}, tmp_path / "run", device="cpu")
    new = [(float(a), int(a + b > 0), float(b)) for a, b in gen.normal(size=(77, 2)) * 100]
    _csv(tmp_path / "new.csv", new)
    res = run_cli(["evaluate", tmp_path / "run", "--data", tmp_path / "new.csv", "--json"])
    assert res.code == 0, res.err
    scored = json.loads(res.out)["splits"]["data"]
    model = nncli.load(tmp_path / "run")
    with torch.no_grad():
        guess = model(torch.tensor([[a, b] for a, _, b in new], dtype=torch.float32)).argmax(1)
    want = float((guess == torch.tensor([label for _, label, _ in new])).float().mean())
    assert scored["n"] == 77 and scored["accuracy"] == pytest.approx(want)


def test_gradcheck_and_probe_read_the_spec_data_as_training_does(tmp_path, run_cli):
    from nncli.data import read_examples
    from nncli.spec import load_spec

    gen = np.random.default_rng(4)
    scales = np.array([0.001, 1.0, 4000.0])
    feats = gen.normal(size=(120, 3)) * scales + scales
    rows = [(f[0], int(f[1] > 1), f[1], f[2]) for f in feats]
    _csv(tmp_path / "d.csv", rows, header="a,label,b,c")
    (tmp_path / "spec.yaml").write_text(
        "input: [3]\nlayers:\n  - Linear: {out_features: 4}\n  - ReLU\n  - Linear: {out_features: 2}\n"
        "data: {path: d.csv, target: label}\n"
    )
    x, how = read_examples(tmp_path / "d.csv", load_spec(tmp_path / "spec.yaml"))
    assert x.shape == (120, 3) and how == "spec data"  # the label column is dropped
    # standardised with the training split's statistics: every feature near mean 0, std 1
    assert np.all(np.abs(x.numpy().mean(0)) < 0.3) and np.all(np.abs(x.numpy().std(0) - 1) < 0.2)
    res = run_cli(["gradcheck", tmp_path / "spec.yaml", "--data", tmp_path / "d.csv"])
    assert res.code == 0, res.err
    res = run_cli(["probe", tmp_path / "spec.yaml", "--data", tmp_path / "d.csv", "--json"])
    assert res.code in (0, 1) and "verdict" in json.loads(res.out), res.err


def test_an_npz_with_x_y_and_its_own_test_arrays_keeps_its_test_split(tmp_path):
    gen = np.random.default_rng(5)
    x, xt = gen.normal(size=(90, 4)), gen.normal(size=(30, 4)) + 100  # the test rows are recognisable
    np.savez(tmp_path / "d.npz", x=x, y=gen.integers(0, 2, 90), x_test=xt, y_test=gen.integers(0, 2, 30))
    ds = load_dataset(resolve_data_config({"path": str(tmp_path / "d.npz"), "val": 0.0, "normalize": False}))
    assert ds.sizes() == {"train": 90, "val": 0, "test": 30}
    assert float(ds.x_test.mean()) > 50 and float(ds.x_train.mean()) < 50


def test_evaluate_data_numbers_named_classes_as_the_run_did(tmp_path, run_cli):
    from nncli.train import run_training

    gen = np.random.default_rng(6)

    def rows(n, names):
        out = []
        while len(out) < n:
            a, b = gen.normal(size=2)
            name = "ant" if a < -0.5 else "bee" if a <= 0.5 else "cat"
            if name in names:
                out.append((float(a), name, float(b)))
        return out

    _csv(tmp_path / "train.csv", rows(300, {"ant", "bee", "cat"}), header="a,kind,b")
    (tmp_path / "spec.yaml").write_text(
        "input: [2]\nlayers:\n  - Linear: {out_features: 16}\n  - ReLU\n  - Linear: {out_features: 3}\n"
        "data: {path: train.csv, target: kind}\ntrain: {optimizer: adam, lr: 0.05, epochs: 5, seed: 0}\n"
    )
    run_training(tmp_path / "spec.yaml", {}, tmp_path / "run", device="cpu")
    new = rows(60, {"bee", "cat"})  # no ant: the file alone would number bee 0 and cat 1
    _csv(tmp_path / "new.csv", new, header="a,kind,b")
    res = run_cli(["evaluate", tmp_path / "run", "--data", tmp_path / "new.csv", "--json"])
    assert res.code == 0, res.err
    model = nncli.load(tmp_path / "run")
    with torch.no_grad():
        guess = model(torch.tensor([[a, b] for a, _, b in new], dtype=torch.float32)).argmax(1).tolist()
    want = np.mean([model.classes[g] == name for g, (_, name, _) in zip(guess, new, strict=True)])
    assert model.classes == ["ant", "bee", "cat"]
    assert json.loads(res.out)["splits"]["data"]["accuracy"] == pytest.approx(want)
    _csv(tmp_path / "odd.csv", [(0.1, "dog", 0.2), (0.3, "bee", 0.1)], header="a,kind,b")
    res = run_cli(["evaluate", tmp_path / "run", "--data", tmp_path / "odd.csv"])
    assert res.code == 2 and "dog" in res.err
