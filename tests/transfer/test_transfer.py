"""Transfer learning: ``transfer:`` copies exactly the named layers from a run, freezes them (weights
and BatchNorm statistics stay the run's through training), ``params`` counts them as frozen, shapes
are checked at the joint, and the ``data:`` class subsets the demonstration needs.

References: the source run's checkpoint read with plain ``torch.load`` (tensor by tensor), a fresh
build of the same spec without ``transfer:`` for the layers that must be left alone, and
scikit-learn's ``load_digits`` for the subsets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SPECS

from nncli.build import build_model
from nncli.errors import SpecError
from nncli.spec import parse_spec

TRUNK = 11  # layers 0..10 of specs/digits-0-4.yaml: three conv blocks and two pools, up to `trunk`


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models, one thread


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """specs/digits-0-4.yaml trained for 2 epochs (its weights only need to differ from an init)."""
    from nncli.train import run_training

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("transfer") / "source"
    result = run_training(SPECS / "digits-0-4.yaml", {"train": {"epochs": 2}}, out, device="cpu")
    assert result.status == "completed"
    return out


def target_text(source: Path, layers="trunk", freeze=True, edit=None) -> str:
    text = (SPECS / "digits-5-9-transfer.yaml").read_text()
    text = text.replace("from: ../runs/digits-0-4", f"from: {json.dumps(str(source))}")
    text = text.replace("layers: trunk", f"layers: {json.dumps(layers) if isinstance(layers, str) else layers}")
    text = text.replace("freeze: true", f"freeze: {'true' if freeze else 'false'}")
    if edit:
        text = text.replace(*edit)
    return text


def target_spec(tmp_path, source, **kwargs):
    path = tmp_path / "target.yaml"
    path.write_text(target_text(source, **kwargs))
    return path


def source_state(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)["model"]


def layer_of(key: str) -> int:
    return int(key.split(".", 1)[0])


@pytest.mark.parametrize("layers, copied", [("0:9", 9), ("trunk", TRUNK), (4, 4), ([0, 11], TRUNK)])
def test_transfer_copies_exactly_the_named_layers(source_run, layers, copied):
    spec = parse_spec(target_text(source_run, layers=layers, freeze=False))
    assert (spec.transfer.start, spec.transfer.stop) == (0, copied)
    model = build_model(spec, seed=3).model
    no_transfer = "".join(
        line for line in target_text(source_run).splitlines(keepends=True) if not line.startswith("transfer:")
    )
    fresh = build_model(parse_spec(no_transfer), seed=3).model
    theirs, mine, untouched = source_state(source_run), model.state_dict(), fresh.state_dict()
    assert set(mine) == set(untouched)
    n_copied = 0
    for key, tensor in mine.items():
        if layer_of(key) < copied:
            assert torch.equal(tensor, theirs[key]), key
            n_copied += 1
        else:
            assert torch.equal(tensor, untouched[key]), key  # left as the spec's own init made it
    assert n_copied == sum(1 for k in theirs if layer_of(k) < copied) > 0
    # and the run's weights really differ from an init: the copy is not vacuous
    assert not torch.equal(theirs["0.weight"], untouched["0.weight"])
    assert all(p.requires_grad for p in model.parameters())  # freeze: false


def test_frozen_layers_keep_weights_and_batchnorm_statistics_through_training(source_run, tmp_path, monkeypatch):
    from nncli.train import loop, run_training

    given = []
    real = loop.build_optimizer

    def recording(cfg, params, device):
        params = list(params)
        given.extend(params)
        return real(cfg, params, device)

    monkeypatch.setattr(loop, "build_optimizer", recording)
    spec = target_spec(tmp_path, source_run)
    # AdamW with a large weight decay: a frozen parameter handed to the optimizer would still shrink
    result = run_training(
        spec, {"train": {"epochs": 3, "optimizer": "adamw", "weight_decay": 0.5}}, tmp_path / "run", device="cpu"
    )
    assert result.status == "completed"
    head_numel = 256 * 5 + 5
    assert sum(p.numel() for p in given) == head_numel and all(p.requires_grad for p in given)
    theirs = source_state(source_run)
    for kind in ("last", "best"):
        trained = torch.load(tmp_path / "run" / "checkpoints" / f"{kind}.pt", weights_only=True)["model"]
        for key, tensor in trained.items():
            if layer_of(key) < TRUNK:  # conv weights, BN affine, running_mean/var, num_batches_tracked
                assert torch.equal(tensor, theirs[key]), (kind, key)
    initial = build_model(parse_spec(spec.read_text(), base_dir=tmp_path), seed=0).model.state_dict()
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert not torch.equal(last["13.weight"], initial["13.weight"])  # the head did train


def test_fine_tuned_layers_move_and_update_batchnorm_statistics(source_run, tmp_path):
    from nncli.train import run_training

    spec = target_spec(tmp_path, source_run, freeze=False)
    result = run_training(spec, {"train": {"epochs": 1}}, tmp_path / "run", device="cpu")
    assert result.status == "completed"
    theirs = source_state(source_run)
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert not torch.equal(last["0.weight"], theirs["0.weight"])
    assert not torch.equal(last["1.running_mean"], theirs["1.running_mean"])
    assert last["1.num_batches_tracked"] > theirs["1.num_batches_tracked"]


def test_frozen_layers_stay_in_eval_mode(source_run):
    model = build_model(parse_spec(target_text(source_run))).model
    model.train()
    assert [m.training for m in model][:TRUNK] == [False] * TRUNK
    assert all(m.training for m in list(model)[TRUNK:])
    model.eval()
    model.train(True)
    assert not model[1].training and model[12].training


def test_params_shows_trainable_and_frozen(source_run, tmp_path, run_cli):
    res = run_cli(["params", target_spec(tmp_path, source_run), "--json"])
    assert res.code == 0, res.text
    doc = json.loads(res.out)
    # by hand: conv 1*32*9, BN 2*32, conv 32*32*9, BN 2*32, conv 32*64*9, BN 2*64; head 256*5 + 5
    frozen = 288 + 64 + 9216 + 64 + 18432 + 128
    assert doc["trainable"] == 1285 and doc["non_trainable"] == frozen
    rows = doc["layers"]
    assert [r["frozen"] for r in rows[:TRUNK]] == [r["params"] for r in rows[:TRUNK]]
    assert all(r["trainable"] == 0 for r in rows[:TRUNK]) and rows[13]["trainable"] == 1285
    res = run_cli(["params", target_spec(tmp_path, source_run)])
    assert "frozen" in res.out
    # a spec without frozen layers keeps the table it always had
    assert "frozen" not in run_cli(["params", SPECS / "digits-cnn.yaml"]).out


@pytest.mark.parametrize(
    "edit, layers, where, message",
    [
        (
            (
                "- Conv2d: {out_channels: 32, kernel_size: 3, padding: 1, bias: false}\n  - BatchNorm2d\n  - ReLU\n  - Conv2d",
                "- Conv2d: {out_channels: 16, kernel_size: 3, padding: 1, bias: false}\n  - BatchNorm2d\n  - ReLU\n  - Conv2d",
            ),
            "trunk",
            "layers[0]",
            "weight of this Conv2d has shape [16, 1, 3, 3], the run's layers[0] has [32, 1, 3, 3]",
        ),
        (
            ("  - ReLU\n  - MaxPool2d: {kernel_size: 2}\n", "  - Tanh\n  - MaxPool2d: {kernel_size: 2}\n"),
            "trunk",
            "layers[5]",
            "this layer is a Tanh, the run's layers[5] is a ReLU",
        ),
        (None, "0:15", "transfer.layers", "0 <= a < b <= 14"),
        (None, "trunc", "transfer.layers", "no top-level layer is named 'trunc'"),
    ],
)
def test_mismatch_at_the_joint_is_a_located_error(source_run, tmp_path, run_cli, edit, layers, where, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(target_text(source_run, layers=layers, edit=edit))
    res = run_cli(["train", spec, "--epochs", "1", "-o", tmp_path / "run"])
    assert res.code == 2, res.text
    assert message in res.text and where in res.text and "bad.yaml:" in res.text
    assert "Traceback" not in res.text


def test_missing_source_run_points_at_from(tmp_path):
    spec = parse_spec(target_text(tmp_path / "no-such-run"), file="t.yaml")
    with pytest.raises(SpecError) as info:
        build_model(spec)
    assert info.value.spec_path == "transfer.from" and "not a run folder" in str(info.value)
    # only the freezing needs no run: counting (meta) and a later checkpoint load do not read it
    from nncli.build import infer

    assert sum(p.numel() for p in infer(spec).model.parameters() if p.requires_grad) == 1285
    build_model(spec, transfer_weights=False)


def test_relative_from_is_read_from_the_spec_folder(source_run, tmp_path):
    text = target_text(source_run).replace(json.dumps(str(source_run)), "../source")
    spec = parse_spec(text, file=str(source_run.parent / "specs" / "t.yaml"), base_dir=source_run.parent / "specs")
    assert spec.transfer.source == source_run.resolve()


# -- data subsets ---------------------------------------------------------------------------------


def test_digits_class_subset_and_per_class_against_sklearn():
    from sklearn.datasets import load_digits

    from nncli.data import load_dataset, resolve_data_config

    digits = load_digits()
    by_image = {
        (img / 16.0).astype(np.float32).tobytes(): int(t) for img, t in zip(digits.images, digits.target, strict=True)
    }
    full = load_dataset(resolve_data_config({"name": "digits", "classes": [5, 6, 7, 8, 9], "normalize": False}))
    assert full.classes == ["5", "6", "7", "8", "9"]
    n = sum(int((digits.target == c).sum()) for c in range(5, 10))
    assert sum(full.sizes().values()) == n
    for split in ("train", "val", "test"):
        x, y = full.split(split)
        for img, label in zip(x.numpy(), y.tolist(), strict=True):
            assert by_image[img[0].tobytes()] == label + 5
    few = load_dataset(
        resolve_data_config({"name": "digits", "classes": [5, 6, 7, 8, 9], "per_class": 7, "normalize": False})
    )
    assert few.y_train.bincount().tolist() == [7] * 5
    assert torch.equal(few.x_test, full.x_test) and torch.equal(few.x_val, full.x_val)  # only train thins
    train_rows = {r.tobytes() for r in full.x_train.numpy()}
    assert all(r.tobytes() in train_rows for r in few.x_train.numpy())


@pytest.mark.parametrize(
    "section, message",
    [
        ({"classes": [5]}, "expected a list of at least two class labels"),
        ({"classes": [5, 10]}, "expected labels from 0 to 9, found 10"),
        ({"classes": [5, 5]}, "expected each label once"),
        ({"per_class": 0}, "expected an integer >= 1"),
    ],
)
def test_bad_subsets_are_refused(section, message):
    from nncli.data import resolve_data_config
    from nncli.errors import InputError

    with pytest.raises(InputError, match=message):
        resolve_data_config({"name": "digits", **section})


@pytest.mark.slow
def test_the_demonstration_script_runs(tmp_path):
    """examples/transfer-digits.sh, cut down (one N, one seed, 3 epochs): every arm runs and the
    table has its row."""
    import os
    import shutil
    import subprocess
    import sys

    from conftest import ROOT, subprocess_env

    if shutil.which("bash") is None:
        pytest.skip("the example is a bash script")
    env = subprocess_env(
        NNCLI=f"{sys.executable} -m nncli", PYTHON=sys.executable, SIZES="5", SEEDS="0", EPOCHS="3", OMP_NUM_THREADS="1"
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / "transfer-digits.sh"), str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = [line for line in proc.stdout.splitlines() if line.startswith("| 5 |")]
    assert len(row) == 1 and row[0].count("%") == 3, proc.stdout
    assert (tmp_path / "transfer-digits.png").stat().st_size > 0
    for arm in ("scratch", "frozen", "finetuned"):
        assert json.loads((tmp_path / f"n5-seed0-{arm}" / "report.json").read_text())["status"] == "completed"
