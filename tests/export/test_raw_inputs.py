"""One trained model, one truth: predict, the ONNX file in onnxruntime, the TorchScript file and
``nncli.load(run_dir)`` give the same classes on raw rows (features as the CSV holds them, decoded
image pixels, token ids), because the run's normalisation travels inside the model.

The references are the runtimes themselves (onnxruntime, torch.jit.load) fed the raw rows, with
nothing applied by hand; breast-cancer features span 0.001 to 4,000, so a model that expected
normalised inputs would disagree on most rows.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nncli
from nncli.evaluate import predict
from nncli.train import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models, one thread


def _cancer_csv(path, with_label: bool = True):
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    names = [n.replace(" ", "_") for n in d.feature_names]
    lines = [",".join(names + (["diagnosis"] if with_label else []))]
    for x, y in zip(d.data, d.target, strict=True):
        lines.append(",".join(f"{v:g}" for v in x) + (f",{y}" if with_label else ""))
    path.write_text("\n".join(lines) + "\n")
    return d.data.astype(np.float32)


CANCER = """
name: cancer
input: [30]
layers:
  - Linear: {out_features: 16}
  - ReLU
  - Linear: {out_features: 2}
data: {path: cancer.csv, target: diagnosis}
train: {optimizer: adam, lr: 0.01, batch_size: 64, epochs: 3, seed: 0}
"""

TOKENS = """
name: tokens
input: {shape: [6], dtype: int64, high: 5}
layers:
  - Embedding: {embedding_dim: 4}
  - Flatten
  - Linear: {out_features: 2}
data: {path: tokens.npz}
train: {optimizer: adam, lr: 0.05, batch_size: 32, epochs: 3, seed: 0}
"""

IMAGES = """
name: shapes
input: [1, 8, 8]
layers:
  - Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
  - ReLU
  - Flatten
  - Linear: {out_features: 2}
data: {path: shapes}
train: {optimizer: adam, lr: 0.01, batch_size: 16, epochs: 3, seed: 0}
"""


def _image_folder(root):
    from PIL import Image

    gen = np.random.default_rng(0)
    for label, (lo, hi) in {"dark": (0, 120), "light": (100, 255)}.items():
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(24):
            Image.fromarray(gen.integers(lo, hi, size=(8, 8)).astype(np.uint8), "L").save(folder / f"{i}.png")


def _four_ways(tmp_path, run, rows, predict_input):
    """Classes from predict, onnxruntime, TorchScript and nncli.load on the same raw rows."""
    import onnx
    import onnxruntime

    from nncli.export import export_model

    by_predict = predict(run, predict_input, device="cpu").predictions
    export_model(run, "onnx", tmp_path / "m.onnx")
    export_model(run, "torchscript", tmp_path / "m.pt")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    feed = rows.numpy()
    by_onnx = session.run(None, {session.get_inputs()[0].name: feed})[0].argmax(1).tolist()
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    with torch.no_grad():
        by_script = scripted(rows).argmax(1).tolist()
        model = nncli.load(run)
        by_load = model(rows).argmax(1).tolist()
    assert not model.training
    proto = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    assert meta["nncli.inputs"] == "raw"
    return by_predict, by_onnx, by_script, by_load, meta


def test_csv_rows_give_one_answer_in_every_runtime(tmp_path):
    raw = _cancer_csv(tmp_path / "cancer.csv")
    (tmp_path / "cancer.yaml").write_text(CANCER)
    run = tmp_path / "run"
    run_training(tmp_path / "cancer.yaml", {}, run, device="cpu")
    _cancer_csv(tmp_path / "rows.csv", with_label=False)
    rows = torch.from_numpy(raw)
    by_predict, by_onnx, by_script, by_load, meta = _four_ways(tmp_path, run, rows, tmp_path / "rows.csv")
    assert by_predict == by_onnx == by_script == by_load
    assert 0.85 < np.mean(np.asarray(by_predict) == _labels()) <= 1.0  # a trained model, not a constant
    assert "applied_by_model" in json.loads(meta["nncli.input_normalization"])
    # the file the model was trained on, label column included, predicts the same (the column is dropped)
    assert predict(run, tmp_path / "cancer.csv", device="cpu").predictions == by_predict
    # TorchScript by scripting (not tracing) compiles the same raw-input model
    from nncli.export import export_model

    assert export_model(run, "torchscript", tmp_path / "s.pt", method="script").passed
    with torch.no_grad():
        assert torch.jit.load(str(tmp_path / "s.pt"))(rows).argmax(1).tolist() == by_predict


def _labels():
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer().target


def test_token_ids_give_one_answer_in_every_runtime(tmp_path):
    gen = np.random.default_rng(1)
    x = gen.integers(0, 5, size=(300, 6))
    np.savez(tmp_path / "tokens.npz", x=x, y=(x[:, 0] > x[:, 5]).astype(np.int64))
    (tmp_path / "tokens.yaml").write_text(TOKENS)
    run = tmp_path / "run"
    run_training(tmp_path / "tokens.yaml", {}, run, device="cpu")
    np.savez(tmp_path / "rows.npz", x=x[:50])
    rows = torch.from_numpy(x[:50].astype(np.int64))
    by_predict, by_onnx, by_script, by_load, _ = _four_ways(tmp_path, run, rows, tmp_path / "rows.npz")
    assert by_predict == by_onnx == by_script == by_load


def test_image_pixels_give_one_answer_in_every_runtime(tmp_path):
    pytest.importorskip("PIL")
    from nncli.data.images import read_image_inputs
    from nncli.train.trained import open_run

    _image_folder(tmp_path / "shapes")
    (tmp_path / "shapes.yaml").write_text(IMAGES)
    run = tmp_path / "run"
    run_training(tmp_path / "shapes.yaml", {}, run, device="cpu")
    params = open_run(run).data.params
    rows, _ = read_image_inputs(tmp_path / "shapes" / "light", [1, 8, 8], params)  # decoded, not normalised
    by_predict, by_onnx, by_script, by_load, meta = _four_ways(tmp_path, run, rows, tmp_path / "shapes" / "light")
    assert by_predict == by_onnx == by_script == by_load
    assert np.mean(np.asarray(by_predict) == 1) > 0.9  # the light images, told apart: not a constant answer
    assert json.loads(meta["nncli.classes"]) == ["dark", "light"]
    assert nncli.load(run).classes == ["dark", "light"]


def test_safetensors_and_the_run_folder_load_the_same_raw_input_model(tmp_path):
    raw = _cancer_csv(tmp_path / "cancer.csv")
    (tmp_path / "cancer.yaml").write_text(CANCER)
    run = tmp_path / "run"
    run_training(tmp_path / "cancer.yaml", {}, run, device="cpu")
    from nncli.export import export_model

    export_model(run, "safetensors", tmp_path / "m.safetensors")
    from_file, from_run = nncli.load(tmp_path / "m.safetensors"), nncli.load(run)
    rows = torch.from_numpy(raw[:40])
    with torch.no_grad():
        assert torch.equal(from_file(rows), from_run(rows))
    # the normalisation is a module at the front, with the training statistics as buffers
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert torch.equal(from_run.normalize.mean.flatten(), ckpt["normalization"]["mean"].flatten())
    assert "normalize.mean" in from_file.state_dict() and not from_run.training


def test_load_of_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path):
    from nncli.errors import InputError

    with pytest.raises(InputError, match="not an nncli run folder"):
        nncli.load(tmp_path)


def test_a_run_with_statistics_in_the_older_layout_still_evaluates_and_predicts(tmp_path, run_cli):
    """Older runs took statistics in the data file's layout: digits images (N, 1, 8, 8) per channel,
    one mean and std, even for an MLP with `input: [64]`. Such a checkpoint is rewritten here as
    an older version wrote it; evaluate must not call its data changed, and predict must apply
    the one mean and std to all 64 inputs."""
    import dataclasses

    from nncli.data import load_dataset
    from nncli.runs import load_checkpoint
    from nncli.train.trained import open_run

    (tmp_path / "mlp.yaml").write_text(
        "input: [64]\nlayers:\n  - Linear: {out_features: 16}\n  - ReLU\n  - Linear: {out_features: 10}\n"
        "data: {name: digits}\ntrain: {optimizer: adam, lr: 0.01, epochs: 2, seed: 0}\n"
    )
    run = tmp_path / "run"
    run_training(tmp_path / "mlp.yaml", {}, run, device="cpu")
    raw = load_dataset(dataclasses.replace(open_run(run).data, normalize=False))  # (N, 1, 8, 8), file layout
    x = raw.x_train.double()
    mean, std = x.mean().float().reshape(1, 1, 1), x.std(unbiased=False).float().reshape(1, 1, 1)
    path = run / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(path)
    ckpt["normalization"] = {"mean": mean, "std": std}
    torch.save(ckpt, path)
    res = run_cli(["evaluate", run, "--json"])
    assert res.code == 0, res.err
    rows = raw.x_test.reshape(len(raw.x_test), 64)
    np.savez(tmp_path / "rows.npz", x=rows.numpy())
    found = predict(run, tmp_path / "rows.npz", device="cpu").predictions
    net = nncli.load(run).network
    with torch.no_grad():
        want = net((rows - float(mean)) / float(std)).argmax(1).tolist()
    assert found == want
