"""Image folders as training data, streamed batches, and predict on image files.

References: the bundled digits written as 16x16 PNGs and read back with Pillow *in the test* into
an ``.npz`` (the route nncli already had), a hand-made forward pass with the checkpoint's weights
and normalisation for predict, bit-identity between in-memory and streamed training, and a real
SIGKILL mid-epoch (tests/fault_injection.py) followed by --resume.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, subprocess_env
from fault_injection import command as fault_command
from PIL import Image

from nncli.runs import load_checkpoint
from nncli.train import run_training

CNN16 = """
name: cnn16
input: [1, 16, 16]
layers:
  - Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
  - ReLU
  - MaxPool2d: {kernel_size: 2}
  - Flatten
  - Dropout: {p: 0.1}
  - Linear: {out_features: 10}
data: {path: DATA}
train: {loss: cross_entropy, optimizer: adam, lr: 0.003, batch_size: 64, epochs: 3, seed: 0}
"""
BAD = Path("3") / "zz_bad.png"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models, one thread


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    """sklearn's digits as 16x16 grayscale PNGs, one folder per class, one corrupt PNG planted;
    and the same images read back with Pillow as an .npz (the reference route)."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("images") / "digits16"
    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        pixels = np.round(np.kron(image, np.ones((2, 2))) * 255 / 16).astype(np.uint8)
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "L").save(folder / f"{i:04d}.png")
    (root / BAD).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a PNG signature, then nothing
    xs, ys = [], []
    for label in sorted(p.name for p in root.iterdir()):  # the files in nncli's order: class, then name
        for f in sorted((root / label).glob("*.png")):
            if f.name == BAD.name:
                continue
            xs.append(np.asarray(Image.open(f), dtype=np.float32)[None] / 255)
            ys.append(int(label))
    npz = root.parent / "digits16.npz"
    np.savez(npz, x=np.stack(xs), y=np.asarray(ys))
    return root, npz


def spec_for(tmp_path, data: str, text: str = CNN16, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("{path: DATA}", data))
    return path


def cli(args, fault=None, **env):
    """``nncli <args>`` in a real process; ``fault`` ("7:SIGKILL"): that signal after that step."""
    argv = fault_command(fault, *args) if fault else [sys.executable, "-m", "nncli", *map(str, args)]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=300, cwd=ROOT, env=subprocess_env(OMP_NUM_THREADS="1", **env)
    )


def test_corrupt_file_is_named_and_exits_2_before_training(tmp_path, digits_folder, run_cli):
    root, _ = digits_folder
    spec = spec_for(tmp_path, f"{{path: {root}}}")
    res = run_cli(["train", spec, "--out", tmp_path / "run", "--device", "cpu"])
    assert res.code == 2, res.err
    assert "1 unreadable image file" in res.err and str(BAD) in res.err and "skip_bad: true" in res.err
    assert "Traceback" not in res.err
    assert not (tmp_path / "run").exists()  # refused before a run folder was made
    # --data FOLDER reads it as an image folder too
    res = run_cli(
        [
            "train",
            spec_for(tmp_path, "{name: digits}", name="d.yaml"),
            "--data",
            root,
            "--out",
            tmp_path / "run",
            "--device",
            "cpu",
        ]
    )
    assert res.code == 2 and str(BAD) in res.err, res.err


def test_image_folder_trains_to_the_accuracy_of_the_npz_route(tmp_path, digits_folder):
    root, npz = digits_folder
    images = run_training(
        spec_for(tmp_path, f"{{path: {root}, skip_bad: true}}", name="a.yaml"), None, tmp_path / "images", device="cpu"
    )
    arrays = run_training(spec_for(tmp_path, f"{{path: {npz}}}", name="b.yaml"), None, tmp_path / "npz", device="cpu")
    assert images.data["classes"] == [str(i) for i in range(10)]
    assert (
        (images.data["train"], images.data["val"], images.data["test"])
        == (arrays.data["train"], arrays.data["val"], arrays.data["test"])
        == (1258, 180, 359)
    )
    assert arrays.test["accuracy"] > 0.9
    assert abs(images.test["accuracy"] - arrays.test["accuracy"]) <= 0.01
    meta = (tmp_path / "images" / "run.yaml").read_text()
    assert "classes:" in meta and "skip_bad: true" in meta
    # the file skip_bad left out is named in the report, with why
    report = json.loads((tmp_path / "images" / "report.json").read_text())
    assert [Path(e["file"]) for e in report["data"]["skipped_files"]] == [root / BAD]
    assert arrays.data["skipped_files"] == []


def test_skip_bad_names_every_skipped_file_on_stderr(tmp_path, digits_folder, run_cli):
    root, _ = digits_folder
    spec = spec_for(tmp_path, f"{{path: {root}, skip_bad: true}}")
    res = run_cli(["train", spec, "--out", tmp_path / "run", "--device", "cpu", "--epochs", "1"])
    assert res.code == 0, res.err
    assert f"skipped an unreadable image (skip_bad): {root / BAD}" in res.err


def test_streaming_gives_the_in_memory_weights(tmp_path, digits_folder):
    root, _ = digits_folder
    spec = spec_for(tmp_path, f"{{path: {root}, skip_bad: true, limit: 700, augment: {{crop: 1, flip: true}}}}")
    runs = {}
    for name, over in (
        ("memory", {"data.stream": False}),
        ("stream", {"data.stream": True}),
        ("workers", {"data.stream": True, "data.workers": 2}),
    ):
        result = run_training(spec, {"epochs": 1, **over}, tmp_path / name, device="cpu")
        assert result.status == "completed"
        runs[name] = load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")["model"]
    for name in ("stream", "workers"):
        assert all(torch.equal(runs["memory"][k], runs[name][k]) for k in runs["memory"]), name


def test_large_folders_stream_by_default(tmp_path, digits_folder, monkeypatch):
    from nncli.data import images, load_dataset, resolve_data_config
    from nncli.data.image_files import ImageFiles

    root, _ = digits_folder
    config = resolve_data_config({"path": str(root), "skip_bad": True, "limit": 200})
    assert isinstance(load_dataset(config, input_shape=(1, 16, 16)).x_train, torch.Tensor)
    monkeypatch.setattr(images, "STREAM_ABOVE_BYTES", 1000)
    ds = load_dataset(config, input_shape=(1, 16, 16))
    assert isinstance(ds.x_train, ImageFiles) and ds.x_train.shape == (140, 1, 16, 16)
    in_memory = load_dataset(
        resolve_data_config({"path": str(root), "skip_bad": True, "limit": 200, "stream": False}),
        input_shape=(1, 16, 16),
    )
    assert torch.equal(ds.x_val[torch.arange(len(ds.y_val))], in_memory.x_val)


def test_sigkill_mid_epoch_with_streaming_then_resume_gives_the_uninterrupted_weights(tmp_path, digits_folder):
    root, _ = digits_folder
    spec = spec_for(tmp_path, f"{{path: {root}, skip_bad: true, limit: 400, stream: true, workers: 2}}")
    over = {"epochs": 2, "checkpoint_every": 3}
    straight = run_training(spec, over, tmp_path / "straight", device="cpu")
    killed = tmp_path / "killed"
    # 280 training images, batches of 64: 5 steps per epoch; step 7 is mid-epoch 2, after the step-6 checkpoint
    proc = cli(
        ["train", spec, "--out", killed, "--epochs", "2", "--checkpoint-every", "3", "--device", "cpu"],
        fault="7:SIGKILL",
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ckpt = load_checkpoint(killed / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (1, 1)
    resumed = run_training(None, None, None, device="cpu", resume=killed)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(killed / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test == straight.test


def _split_folder(root: Path, out: Path, channels: str = "RGB") -> None:
    """train/ val/ test/ with class folders, copied from the digits folder (first images of 3 classes)."""
    for label in ("0", "1", "2"):
        files = sorted((root / label).glob("0*.png"))[:30]
        for split, part in (("train", files[:20]), ("val", files[20:25]), ("test", files[25:30])):
            (out / split / f"class{label}").mkdir(parents=True, exist_ok=True)
            for f in part:
                Image.open(f).convert(channels).resize((20, 24)).save(out / split / f"class{label}" / f.name)


def test_train_val_test_folders_are_the_splits_and_rgb_resizes(tmp_path, digits_folder):
    from nncli.data import load_dataset, resolve_data_config

    root, _ = digits_folder
    _split_folder(root, tmp_path / "photos")
    ds = load_dataset(
        resolve_data_config({"path": str(tmp_path / "photos"), "normalize": False}), input_shape=(3, 16, 16)
    )
    assert ds.sizes() == {"train": 60, "val": 15, "test": 15}
    assert ds.classes == ["class0", "class1", "class2"]
    assert ds.x_train.shape[1:] == (3, 16, 16)
    # the first test image, resized by Pillow here: the reference for the default stretch-resize
    first = sorted((tmp_path / "photos" / "test" / "class0").glob("*.png"))[0]
    expected = np.asarray(Image.open(first).convert("RGB").resize((16, 16), Image.BILINEAR), np.float32) / 255
    assert torch.equal(ds.x_test[0], torch.from_numpy(expected.transpose(2, 0, 1).copy()))
    assert ds.y_test.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    # grayscale for a one-channel input, center crop: 20x24 -> shorter side 16 -> 16x19 -> crop 16x16
    gray = load_dataset(
        resolve_data_config({"path": str(tmp_path / "photos"), "normalize": False, "resize": 16, "crop": True}),
        input_shape=(1, 16, 16),
    )
    image = Image.open(first).convert("L").resize((16, 19), Image.BILINEAR).crop((0, 1, 16, 17))
    assert torch.equal(gray.x_test[0, 0], torch.from_numpy(np.asarray(image, np.float32) / 255))


def test_bad_image_keys_are_located_exit_2(tmp_path, digits_folder, run_cli):
    root, _ = digits_folder
    spec = spec_for(tmp_path, f"{{path: {root}, skip_bad: true, crop: [8, 8]}}")
    res = run_cli(["train", spec, "--device", "cpu", "--out", tmp_path / "run"])
    assert res.code == 2 and "data.crop [8, 8] differs from the spec's input size [16, 16]" in res.err
    spec = spec_for(tmp_path, f"{{path: {root}, resize: fast}}")
    res = run_cli(["train", spec, "--device", "cpu", "--out", tmp_path / "run"])
    assert res.code == 2 and "data.resize" in res.err and "'fast'" in res.err
    (tmp_path / "empty" / "nothing").mkdir(parents=True)
    spec = spec_for(tmp_path, f"{{path: {tmp_path / 'empty'}}}")
    res = run_cli(["train", spec, "--device", "cpu", "--out", tmp_path / "run"])
    assert res.code == 2 and "no image files" in res.err


def test_evaluate_and_predict_show_class_names_and_read_images(tmp_path, digits_folder, run_cli):
    root, _ = digits_folder
    photos = tmp_path / "photos"
    _split_folder(root, photos, channels="L")
    spec = spec_for(tmp_path, f"{{path: {photos}}}")
    run = tmp_path / "run"
    assert run_training(spec, {"epochs": 2}, run, device="cpu").status == "completed"
    res = run_cli(["evaluate", run, "--device", "cpu", "--json"])
    assert res.code == 0 and json.loads(res.out)["classes"] == ["class0", "class1", "class2"]
    assert "2: class2" in run_cli(["evaluate", run, "--device", "cpu"]).out
    res = run_cli(["predict", run, photos / "test", "--device", "cpu", "--json"])
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    files = sorted((photos / "test").rglob("*.png"))
    assert doc["files"] == [str(f) for f in files] and doc["n"] == 15
    # reference: the checkpoint's weights and statistics applied by hand to Pillow's pixels
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    w = ckpt["model"]
    x = torch.stack(
        [
            torch.from_numpy(np.asarray(Image.open(f).convert("L").resize((16, 16), Image.BILINEAR), np.float32) / 255)[
                None
            ]
            for f in files
        ]
    )
    x = (x - ckpt["normalization"]["mean"]) / ckpt["normalization"]["std"]
    h = torch.nn.functional.conv2d(x, w["0.weight"], w["0.bias"], padding=1).relu()
    h = torch.nn.functional.max_pool2d(h, 2).flatten(1)
    logits = h @ w["5.weight"].T + w["5.bias"]
    assert doc["predictions"] == logits.argmax(1).tolist()
    assert doc["labels"] == [f"class{i}" for i in doc["predictions"]]
    one = run_cli(["predict", run, files[0], "--device", "cpu", "--json"])
    assert json.loads(one.out)["predictions"] == doc["predictions"][:1]
    table = run_cli(["predict", run, photos / "test", "--device", "cpu"]).out
    assert "class0/" in table and "file" in table
    assert run_cli(["predict", run, photos / "test", "--device", "cpu", "--out", tmp_path / "p.csv"]).code == 0
    with open(tmp_path / "p.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["file"] for r in rows] == doc["files"]
    assert [int(r["prediction"]) for r in rows] == doc["predictions"]


def test_missing_pillow_is_exit_2_naming_the_extra(monkeypatch, tmp_path, digits_folder):
    import builtins

    from nncli.data import images
    from nncli.errors import InputError

    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(InputError) as info:
        images.scan_folder(digits_folder[0])
    assert "nncli[images]" in info.value.hint and info.value.exit_code == 2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU: streamed batches land in pinned memory")
def test_streaming_on_cuda_matches_in_memory(tmp_path, digits_folder):
    root, _ = digits_folder
    spec = spec_for(tmp_path, f"{{path: {root}, skip_bad: true, limit: 700}}")
    runs = {}
    for name, over in (("memory", {"data.stream": False}), ("stream", {"data.stream": True, "data.workers": 2})):
        assert run_training(spec, {"epochs": 1, **over}, tmp_path / name, device="cuda").status == "completed"
        runs[name] = load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")["model"]
    # the same batches in the same order; cuDNN's kernels may sum in another order run to run
    assert all(torch.allclose(runs["memory"][k].float(), runs["stream"][k].float(), atol=1e-4) for k in runs["memory"])


def test_stream_true_on_arrays_gives_the_in_memory_weights(tmp_path):
    spec = tmp_path / "mlp.yaml"
    spec.write_text("""
name: digits-mlp
input: [64]
layers:
  - Linear: {out_features: 32}
  - ReLU
  - Dropout: {p: 0.2}
  - Linear: {out_features: 10}
data: {name: digits, limit: 600}
train: {loss: cross_entropy, optimizer: adam, lr: 0.003, batch_size: 32, epochs: 1, seed: 1}
""")
    runs = {}
    for name, over in (("memory", {}), ("stream", {"data.stream": True})):
        run_training(spec, over, tmp_path / name, device="cpu")
        runs[name] = load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(runs["memory"][k], runs["stream"][k]) for k in runs["memory"])
