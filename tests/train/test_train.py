"""nncli train / evaluate / predict.

References are independent of the code under test: a hand-written PyTorch loop on the same
data order and initial weights, closed-form learning-rate schedules, a hand-built nn.Sequential
for predictions, and real training accuracy thresholds. Faults (SIGKILL, Ctrl-C) are injected
by a training callback the tests install (tests/fault_injection.py), so the process really
receives the signal at a known step.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, SPECS, subprocess_env
from fault_injection import command as fault_command
from fault_injection import signal_at
from torch import nn

from nncli.errors import InputError, SpecError
from nncli.runs import load_checkpoint
from nncli.spec import load_spec
from nncli.train import run_training
from nncli.train.config import resolve_train_config
from nncli.train.epoch import epoch_permutation

PYTHON = sys.executable

MLP = """
name: tiny-mlp
input: [2]
layers:
  - Linear: {out_features: 16}
  - ReLU
  - Linear: {out_features: 2}
data: {name: moons, n: 600, noise: 0.1}
train: {optimizer: sgd, lr: 0.1, batch_size: 50, epochs: 2, seed: 3}
"""


# One torch thread here (conftest) and in the subprocesses (OMP_NUM_THREADS=1 in cli()): the models
# are tiny, the machine is shared, and two spinning OpenMP threads on a busy core are many times
# slower than one. Bit-identity checks also need the same thread count on both sides.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def spec_file(tmp_path, text=MLP, name="spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def cli(args, timeout=180, fault=None, **env):
    """``nncli <args>`` in a real process; ``fault`` ("13:SIGKILL"): that signal after that step."""
    argv = fault_command(fault, *args) if fault else [PYTHON, "-m", "nncli", *map(str, args)]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=subprocess_env(OMP_NUM_THREADS="1", **env)
    )


def weights(run_dir: Path, kind: str = "last") -> dict:
    return load_checkpoint(Path(run_dir) / "checkpoints" / f"{kind}.pt")["model"]


# -- real training ---------------------------------------------------------------------------------
def test_moons_mlp_reaches_98_percent_in_seconds(tmp_path):
    # specs/moons-mlp.yaml as shipped (noise 0.1), fewer epochs to keep the default run fast
    result = run_training(SPECS / "moons-mlp.yaml", {"epochs": 10}, tmp_path / "run", device="cpu")
    assert result.status == "completed" and result.epochs == 10
    assert result.test["accuracy"] >= 0.98
    assert result.test["n"] == 400 and result.samples_per_s > 0


def test_training_matches_a_hand_written_loop(tmp_path):
    """SGD with Nesterov momentum, weight decay and gradient clipping, step by step, against the
    loop a user would write: same initial weights, same batches, same update."""
    spec = load_spec(spec_file(tmp_path))
    over = {
        "train": {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3, "clip_grad_norm": 0.5, "epochs": 2},
        "data": {"normalize": False},
    }
    result = run_training(spec, over, tmp_path / "run", device="cpu")
    from nncli.data import load_dataset, resolve_data_config

    ds = load_dataset(resolve_data_config({"name": "moons", "n": 600, "noise": 0.1, "normalize": False}))
    torch.manual_seed(3)  # build_model's seeding: the spec's train seed, then layers in order
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    losses = []
    for epoch in range(2):
        perm = epoch_permutation(3, epoch, len(ds.y_train))
        total = 0.0
        for lo in range(0, len(perm), 50):
            idx = perm[lo : lo + 50]
            loss = nn.functional.cross_entropy(model(ds.x_train[idx]), ds.y_train[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(perm))
    got = weights(tmp_path / "run")
    ref = model.state_dict()
    for key in ref:  # the same float32 operations in the same order: bit-identical
        assert torch.equal(got[key], ref[key]), key
    assert [r["train_loss"] for r in result.history] == pytest.approx(losses, rel=1e-12)


@pytest.mark.parametrize(
    "schedule, extra",
    [
        ("cosine", {"warmup_steps": 5, "min_lr": 0.01}),
        ("step", {"step_size": 1, "gamma": 0.5}),
        ("exponential", {"gamma": 0.8}),
    ],
)
def test_schedules_follow_their_closed_forms(tmp_path, schedule, extra):
    spec = load_spec(spec_file(tmp_path))
    result = run_training(spec, {"train": {"schedule": schedule, "epochs": 3, **extra}}, tmp_path / "run", device="cpu")
    steps = math.ceil(420 / 50)  # 600 examples, 70% train, batch 50
    lr0 = 0.1
    for record in result.history:
        t = record["epoch"] * steps  # scheduler steps taken by the end of the epoch
        if schedule == "cosine":
            warm, total = 5, 3 * steps
            want = 0.01 + (lr0 - 0.01) * (1 + math.cos(math.pi * (t - warm) / (total - warm))) / 2
        elif schedule == "step":
            want = lr0 * 0.5 ** (t // steps)
        else:
            want = lr0 * 0.8 ** (t / steps)
        assert record["lr"] == pytest.approx(want, rel=1e-6, abs=1e-12)


def test_warmup_ramps_linearly(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    result = run_training(spec, {"train": {"warmup_steps": 20, "epochs": 1}}, tmp_path / "run", device="cpu")
    steps = 9  # one epoch of 420 examples at batch 50
    assert result.history[0]["lr"] == pytest.approx(0.1 * (1 / 21 + (1 - 1 / 21) * steps / 20))


def test_early_stopping_after_patience(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    # nothing can beat the first epoch's accuracy by 0.5: stop after 1 + patience epochs
    result = run_training(
        spec, {"train": {"epochs": 10, "patience": 2, "min_delta": 0.5}}, tmp_path / "run", device="cpu"
    )
    assert result.status == "early_stopped" and result.epochs == 3 and result.best_epoch == 1
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["epoch"] == 1 and best["metrics"]["epoch"] == 1  # epochs completed when saved


def test_regression_and_binary_losses(tmp_path):
    reg = spec_file(
        tmp_path,
        """
input: [1]
layers: [{Linear: {out_features: 32}}, Tanh, {Linear: {out_features: 32}}, Tanh, {Linear: {out_features: 1}}]
data: {name: regression, n: 800, noise: 0.05}
train: {loss: mse, optimizer: adam, lr: 0.01, batch_size: 32, epochs: 15}
""",
        "reg.yaml",
    )
    result = run_training(reg, None, tmp_path / "reg", device="cpu")
    # y = sin(x) on [-3, 3] has variance ~0.5; the noise floor is 0.05^2
    assert result.test["accuracy"] is None and result.test["loss"] < 0.02
    binary = spec_file(
        tmp_path,
        MLP.replace("out_features: 2}", "out_features: 1}")
        .replace("optimizer: sgd", "loss: bce_with_logits, optimizer: adam")
        .replace("lr: 0.1", "lr: 0.03")
        .replace("epochs: 2", "epochs: 15"),
        "bin.yaml",
    )
    result = run_training(binary, None, tmp_path / "bin", device="cpu")
    assert result.test["accuracy"] >= 0.97


# -- the run folder, --json, --plot --------------------------------------------------------------------
def test_cli_json_summary_and_run_folder(tmp_path, run_cli):
    spec = spec_file(tmp_path)
    out = tmp_path / "run"
    res = run_cli(
        [
            "train",
            spec,
            "--out",
            out,
            "--epochs",
            "3",
            "--lr",
            "0.05",
            "--device",
            "cpu",
            "--plot",
            tmp_path / "curves.png",
            "--json",
        ]
    )
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    for key in ("run_dir", "device", "epochs", "best_epoch", "samples_per_s", "train", "val", "test"):
        assert key in doc
    for split in ("train", "val", "test"):
        assert set(doc[split]) >= {"loss", "accuracy"}
    assert doc["epochs"] == 3 and doc["device"] == "cpu" and doc["config"]["lr"] == 0.05
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "metrics.csv",
        "metrics.jsonl",
        "report.json",
        "run.yaml",
        "spec.yaml",
    ]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,step,lr,train_loss") and len(csv_lines) == 4
    assert (out / "spec.yaml").read_text() == spec.read_text()
    import yaml

    meta = yaml.safe_load((out / "run.yaml").read_text())
    assert meta["train"]["lr"] == 0.05 and meta["data"]["name"] == "moons"
    for kind in ("best", "last"):
        torch.load(out / "checkpoints" / f"{kind}.pt", weights_only=True)  # loads without unpickling code
    # human output through the same result
    res = run_cli(["evaluate", out, "--split", "all"])
    assert res.code == 0 and "test" in res.out and "%" in res.out


def test_evaluate_and_predict_against_a_hand_built_model(tmp_path, run_cli):
    spec = spec_file(tmp_path)
    out = tmp_path / "run"
    result = run_training(spec, {"epochs": 4}, out, device="cpu")
    res = run_cli(["evaluate", out, "--json"])
    assert res.code == 0, res.err
    ev = json.loads(res.out)
    assert ev["splits"]["test"]["accuracy"] == pytest.approx(result.test["accuracy"])
    # predict raw (unnormalised) test inputs, compare with a model assembled by hand
    from nncli.data import load_dataset, resolve_data_config

    raw = load_dataset(resolve_data_config({"name": "moons", "n": 600, "noise": 0.1, "normalize": False}))
    np.savez(tmp_path / "inputs.npz", x=raw.x_test.numpy())
    res = run_cli(["predict", out, tmp_path / "inputs.npz", "--out", tmp_path / "pred.csv", "--json"])
    assert res.code == 0, res.err
    pred = json.loads(res.out)
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    model.load_state_dict(best["model"])
    mean, std = raw.x_train.mean(0), raw.x_train.std(0, unbiased=False)
    with torch.no_grad():
        want = model((raw.x_test - mean) / std).argmax(1)
    assert pred["predictions"] == want.tolist()
    assert (torch.tensor(pred["predictions"]) == raw.y_test).float().mean().item() == pytest.approx(
        result.test["accuracy"]
    )
    lines = (tmp_path / "pred.csv").read_text().splitlines()
    assert lines[0] == "index,prediction,p_0,p_1" and len(lines) == 1 + len(raw.y_test)
    (tmp_path / "bad.csv").write_text("1,2,3,4\n4,5,6,7\n")
    res = run_cli(["predict", out, tmp_path / "bad.csv"])
    assert res.code == 2 and "input shape does not match the spec" in res.err
    # one column more than the network takes is the label column, as training reads a headerless CSV
    labelled = np.column_stack([raw.x_test.numpy(), raw.y_test.numpy()])
    np.savetxt(tmp_path / "labelled.csv", labelled, delimiter=",")
    res = run_cli(["predict", out, tmp_path / "labelled.csv", "--json"])
    assert res.code == 0 and json.loads(res.out)["predictions"] == want.tolist()
    # predictions never replace a user's file: the input never, another existing file only with --force
    np.savetxt(tmp_path / "inputs.csv", raw.x_test.numpy(), delimiter=",")
    before = (tmp_path / "inputs.csv").read_bytes()
    for extra in ([], ["--force"]):
        res = run_cli(["predict", out, tmp_path / "inputs.csv", "-o", tmp_path / "inputs.csv", *extra])
        assert res.code == 2 and "input file itself" in res.err
    assert (tmp_path / "inputs.csv").read_bytes() == before
    old = (tmp_path / "pred.csv").read_text()
    (tmp_path / "pred.csv").write_text("mine\n")
    res = run_cli(["predict", out, tmp_path / "inputs.npz", "-o", tmp_path / "pred.csv"])
    assert res.code == 2 and "already exists" in res.err and "--force" in res.err
    assert (tmp_path / "pred.csv").read_text() == "mine\n"
    res = run_cli(["predict", out, tmp_path / "inputs.npz", "-o", tmp_path / "pred.csv", "--force"])
    assert res.code == 0, res.err
    assert (tmp_path / "pred.csv").read_text() == old


# -- resume: SIGKILL and Ctrl-C -------------------------------------------------------------------------
DROPOUT_MLP = (
    MLP.replace("  - ReLU\n", "  - ReLU\n  - Dropout: {p: 0.3}\n")
    .replace("optimizer: sgd, lr: 0.1", "optimizer: adam, lr: 0.01, schedule: cosine, warmup_steps: 3")
    .replace("epochs: 2", "epochs: 3")
)


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    spec = spec_file(tmp_path, DROPOUT_MLP)
    straight = run_training(spec, {"checkpoint_every": 4}, tmp_path / "straight", device="cpu")
    assert straight.status == "completed"
    killed = tmp_path / "killed"
    # 9 steps per epoch: step 13 is mid-epoch 2, one step past the checkpoint of step 12
    proc = cli(["train", spec, "--out", killed, "--checkpoint-every", "4", "--device", "cpu"], fault="13:SIGKILL")
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(killed / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (1, 3, 12)
    # epoch 1 ended within checkpoint_seconds, so its files were written with the step-12 checkpoint
    assert [json.loads(r)["epoch"] for r in (killed / "metrics.jsonl").read_text().splitlines()] == [1]
    assert load_checkpoint(killed / "checkpoints" / "best.pt")["epoch"] == 1
    resumed = run_training(None, None, None, device="cpu", resume=killed)
    a, b = weights(tmp_path / "straight"), weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    assert resumed.test == straight.test


def test_ctrl_c_saves_exits_130_and_resumes_exactly(tmp_path, run_cli):
    spec = spec_file(tmp_path, DROPOUT_MLP)
    straight = run_training(spec, None, tmp_path / "straight", device="cpu")
    run = tmp_path / "run"
    # the process sends itself a real SIGINT after step 11; the handler turns it into a clean stop
    with signal_at(11, signal.SIGINT):
        res = run_cli(["train", spec, "--out", run, "--device", "cpu", "--json"])
    assert res.code == 130, res.err
    doc = json.loads(res.out)
    assert doc["status"] == "interrupted" and "--resume" in doc["message"]
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (ckpt["global_step"], ckpt["status"]) == (11, "interrupted")
    res = run_cli(["train", "--resume", run, "--device", "cpu"])
    assert res.code == 0, res.err
    a, b = weights(tmp_path / "straight"), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "report.json").read_text())["test"] == straight.test
    # a finished run resumed again has nothing to do and says so without changing the weights
    again = run_training(None, None, None, device="cpu", resume=run)
    assert again.status == "completed" and again.epochs == 3
    assert all(torch.equal(weights(run)[k], b[k]) for k in b)


AUGMENTED_CNN = """
name: tiny-cnn
input: [1, 8, 8]
layers:
  - Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
  - ReLU
  - Dropout: {p: 0.2}
  - Flatten
  - Linear: {out_features: 10}
data: {name: digits, limit: 400, augment: {crop: 1, flip: true}}
train: {optimizer: adam, lr: 0.01, batch_size: 32, epochs: 2}
"""


def test_interrupted_augmented_run_resumes_exactly(tmp_path, run_cli):
    """Crop/flip draws come from their own generator; its state is checkpointed like torch's RNG."""
    spec = spec_file(tmp_path, AUGMENTED_CNN)
    straight = run_training(spec, None, tmp_path / "straight", device="cpu")
    again = run_training(spec, None, tmp_path / "again", device="cpu")
    assert again.history == [
        dict(r, epoch_time_s=a["epoch_time_s"], samples_per_s=a["samples_per_s"])
        for r, a in zip(straight.history, again.history)
    ]  # same command, same numbers
    with signal_at(12, signal.SIGINT):  # mid-epoch 2 (9 steps per epoch)
        assert run_cli(["train", spec, "--out", tmp_path / "run", "--device", "cpu"]).code == 130
    run_training(None, None, None, device="cpu", resume=tmp_path / "run")
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_callbacks_see_the_documented_hooks_in_order_and_stop_a_run(tmp_path):
    from nncli.train import Callback

    seen = []

    class Recorder(Callback):
        def setup(self, trainer):
            seen.append("setup")
            assert not (tmp_path / "run" / "run.yaml").exists()  # nothing written yet

        def on_fit_start(self, trainer, info):
            seen.append(("start", info["steps_per_epoch"]))

        def on_epoch_start(self, trainer, epoch):
            seen.append(("epoch", epoch))

        def on_batch_end(self, trainer, batch):
            seen.append(("batch", batch.global_step, batch.synced))

        def on_validation_end(self, trainer, record, improved):
            seen.append(("validated", record["epoch"]))
            return "pruned" if record["epoch"] == 2 else None

        def on_epoch_end(self, trainer, record, improved):
            seen.append(("ended", record["epoch"], trainer.state.status))

        def on_fit_end(self, trainer, result):
            seen.append(("fit_end", result.status))

        def close(self):
            seen.append("close")

    # 600 moons -> 420 training examples in batches of 50: 9 steps an epoch; 3 epochs planned
    result = run_training(spec_file(tmp_path), {"epochs": 3}, tmp_path / "run", device="cpu", callbacks=[Recorder()])
    assert result.status == "pruned" and result.epochs == 2 and result.global_step == 18
    steps = [("batch", g, True) for g in range(1, 19)]  # on the CPU every step is a sync point
    assert seen == (
        ["setup", ("start", 9), ("epoch", 0)]
        + steps[:9]
        + [("validated", 1), ("ended", 1, "running"), ("epoch", 1)]
        + steps[9:]
        + [("validated", 2), ("ended", 2, "pruned"), ("fit_end", "pruned"), "close"]
    )
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["status"] == "pruned"


def test_library_errors_name_parameters_and_the_cli_its_flags(tmp_path, run_cli):
    spec = spec_file(tmp_path)
    taken = tmp_path / "taken"
    taken.write_text("mine")
    with pytest.raises(InputError) as caught:
        run_training(spec, None, taken, device="cpu")
    assert caught.value.message.startswith("out_dir: ") and "--out" not in caught.value.message
    res = run_cli(["train", spec, "--out", taken, "--device", "cpu"])
    assert res.code == 2 and "--out: " in res.err and "out_dir" not in res.err
    assert taken.read_text() == "mine"


def test_tensorboard_is_optional(tmp_path, run_cli):
    spec = spec_file(tmp_path)
    res = run_cli(["train", spec, "--out", tmp_path / "run", "--epochs", "1", "--tensorboard", "--device", "cpu"])
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        assert res.code == 2 and "tensorboard package is not installed" in res.err
        assert not (tmp_path / "run").exists()
    else:
        assert res.code == 0 and any((tmp_path / "run" / "tensorboard").iterdir())


def test_resume_can_extend_epochs_but_not_change_the_recipe(tmp_path):
    spec = spec_file(tmp_path)
    run_training(spec, None, tmp_path / "run", device="cpu")
    longer = run_training(None, {"epochs": 4}, None, device="cpu", resume=tmp_path / "run")
    assert longer.epochs == 4 and [r["epoch"] for r in longer.history] == [1, 2, 3, 4]
    with pytest.raises(InputError, match="cannot change lr"):
        run_training(None, {"lr": 0.5}, None, device="cpu", resume=tmp_path / "run")


# -- non-finite loss ---------------------------------------------------------------------------------
POISON = """
name: poison
input: [2]
layers:
  - Linear: {out_features: 4, init: {weight: {constant: {val: 2.0}}, bias: zeros}}
  - ReLU
  - Linear: {out_features: 2}
data: {path: data.npz, normalize: false, val: 0.0, test: 0.0}
train: {optimizer: sgd, lr: 0.01, batch_size: 10, epochs: 2, checkpoint_every: 1}
"""


def _poisoned_data(tmp_path, poison_index=37):
    x = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    x[poison_index] = [3e38, 0.0]  # finite, but 2.0 * 3e38 overflows float32 in the first Linear
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return poison_index


def test_nonfinite_loss_names_step_and_layer_and_keeps_last_good_checkpoint(tmp_path, run_cli):
    poison = _poisoned_data(tmp_path)
    spec = spec_file(tmp_path, POISON)
    # the split is a seeded permutation of the file's rows; find the poisoned row's step by hand
    from nncli.data import load_dataset, resolve_data_config

    ds = load_dataset(
        resolve_data_config({"path": str(tmp_path / "data.npz"), "normalize": False, "val": 0.0, "test": 0.0})
    )
    row = int((ds.x_train[:, 0] > 1e30).nonzero()[0])
    position = int((epoch_permutation(0, 0, 60) == row).nonzero()[0])
    step = position // 10 + 1
    res = run_cli(["train", spec, "--out", tmp_path / "run", "--device", "cpu"])
    assert res.code == 1
    assert (
        f"non-finite loss (nan) at step {step} (epoch 1, batch {step})" in res.err.replace("\n", " ")
        or f"at step {step} (epoch 1, batch {step})" in res.err
    )
    assert "first non-finite output in layers[0] (linear_0, Linear)" in res.err
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["global_step"] == step - 1
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    # --skip-nonfinite: the poisoned batch is skipped once per epoch and training finishes
    result = run_training(spec, {"skip_nonfinite": True}, tmp_path / "skip", device="cpu")
    assert result.status == "completed" and result.skipped_steps == 2
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "skip").values())
    assert poison == 37


# -- bad input: exit 2, nothing lost -------------------------------------------------------------------
def _tree_digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_bad_input_exits_2_and_leaves_runs_alone(tmp_path, run_cli):
    spec = spec_file(tmp_path)
    run = tmp_path / "run"
    assert run_cli(["train", spec, "--out", run, "--epochs", "1", "--device", "cpu"]).code == 0
    before = _tree_digest(run)
    cases = [
        (["train", spec, "--data", tmp_path / "missing.npz"], "no such data file"),
        (
            ["train", spec, "--data", "digits"],
            "input shape does not match the spec: the spec's `input` is [2], the data has [1, 8, 8]",
        ),
        (["train", spec, "--out", run], "already holds a run"),
        (["train", spec, "--lr", "-1"], "--lr: expected a number > 0"),
        (["train", spec, "--lr", "1e39"], "--lr: expected a number > 0 and <= 3.4e+38"),
        (["train", spec, "--device", "cuda"], "CUDA is not available"),
        (["train", spec, "--data", "moonz"], "did you mean 'moons'"),
    ]
    for args, message in cases:
        res = run_cli(args)
        assert res.code == 2, (args, res.err)
        assert message in res.err, (message, res.err)
        assert "Traceback" not in res.err
    few = spec_file(
        tmp_path,
        MLP.replace("input: [2]", "input: [64]")
        .replace("out_features: 2}", "out_features: 5}")
        .replace("{name: moons, n: 600, noise: 0.1}", "{name: digits}"),
        "few.yaml",
    )
    res = run_cli(["train", few])
    assert res.code == 2 and "label count does not fit the output layer: the data has 10 classes" in res.err
    # a corrupt checkpoint: clear message, exit 2, the run folder untouched
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    before = _tree_digest(run)
    res = run_cli(["train", "--resume", run, "--epochs", "3"])
    assert res.code == 2 and "corrupt checkpoint" in res.err
    assert _tree_digest(run) == before


def test_spec_sections_are_validated_with_locations(tmp_path):
    spec = load_spec(spec_file(tmp_path, MLP.replace("optimizer: sgd", "optimiser: sgd")))
    with pytest.raises(SpecError) as info:
        run_training(spec, None, tmp_path / "run", device="cpu")
    err = info.value
    assert (err.spec_path, err.line) == ("train.optimiser", 9) and "did you mean 'optimizer'" in err.hint
    assert not (tmp_path / "run").exists()
    spec = load_spec(spec_file(tmp_path, MLP.replace("noise: 0.1", "noise: -1"), "neg.yaml"))
    with pytest.raises(SpecError, match="expected a number >= 0, found an integer"):
        run_training(spec, None, tmp_path / "run", device="cpu")
    with pytest.raises(InputError, match="nesterov needs optimizer: sgd with momentum > 0"):
        resolve_train_config({"nesterov": True})


# -- DDP ---------------------------------------------------------------------------------------------
def test_two_process_gloo_ddp_matches_single_process(tmp_path):
    """Global batch 50 split over 2 ranks (25 each) vs one process with batch 50: DDP averages the
    ranks' gradients of sum-loss * world / global_batch, which is the single-process gradient, so
    after an epoch the losses agree up to float32 summation order. Tolerance: 1e-5 relative."""
    from nncli.train import launch_distributed

    spec = spec_file(tmp_path, MLP.replace("optimizer: sgd, lr: 0.1", "optimizer: adam, lr: 0.01"))
    single = run_training(spec, {"epochs": 1}, tmp_path / "single", device="cpu")
    # torchrun's launcher, two spawned worker processes, gloo
    ddp = launch_distributed(spec, {"epochs": 1}, tmp_path / "ddp", nproc_per_node=2, device="cpu")
    assert ddp.world_size == 2 and ddp.status == "completed"
    assert ddp.history[0]["train_loss"] == pytest.approx(single.history[0]["train_loss"], rel=1e-5)
    assert ddp.val["loss"] == pytest.approx(single.val["loss"], rel=1e-5)
    # the test split's confusion counts are summed over the ranks like the loss: every example once
    assert sum(map(sum, ddp.test["confusion"])) == ddp.test["n"] == single.test["n"]
    assert [c["support"] for c in ddp.test["per_class"]] == [c["support"] for c in single.test["per_class"]]
    a, b = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.slow
def test_ddp_through_the_cli(tmp_path):
    """The same through `nncli train --nproc-per-node 2`: rank 0's report on stdout, exit 0."""
    spec = spec_file(tmp_path)
    proc = cli(
        [
            "train",
            spec,
            "--out",
            tmp_path / "ddp",
            "--epochs",
            "2",
            "--device",
            "cpu",
            "--nproc-per-node",
            "2",
            "--json",
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["world_size"] == 2 and doc["epochs"] == 2 and doc["test"]["accuracy"] > 0.8
    assert "epoch   2/2" in proc.stderr  # rank 0's progress lines, once
    assert proc.stderr.count("epoch   2/2") == 1
    # --force replaces a finished run on the distributed path too (it was refused there as "exists")
    first = (tmp_path / "ddp" / "run.yaml").read_text()
    proc = cli(
        [
            "train",
            spec,
            "--out",
            tmp_path / "ddp",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--nproc-per-node",
            "2",
            "--json",
            "--force",
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["epochs"] == 1
    assert (tmp_path / "ddp" / "run.yaml").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ddp")) == []  # nothing left aside


# -- the acceptance run ------------------------------------------------------------------------------
def test_digits_cnn_reaches_97_percent_on_cpu_in_two_minutes(tmp_path):
    """The full specs/digits-cnn.yaml run (20 epochs): short enough on a 2-core machine, even a
    loaded one, to stay in the default run."""
    import time

    start = time.perf_counter()
    result = run_training(SPECS / "digits-cnn.yaml", None, tmp_path / "run", device="cpu")
    elapsed = time.perf_counter() - start
    assert result.test["accuracy"] >= 0.97, result.test
    assert elapsed < 120, elapsed


# -- --device -------------------------------------------------------------------------------------------
def test_resolve_device():
    from nncli.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda" and resolve_device("cuda").index is not None
        with pytest.raises(InputError, match="expected a GPU index below"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        assert resolve_device("auto") == torch.device("cpu")
        for name in ("cuda", "cuda:0", "cuda:3"):
            with pytest.raises(InputError, match="CUDA is not available") as info:
                resolve_device(name)
            assert info.value.exit_code == 2 and "--device cpu" in info.value.hint
    with pytest.raises(InputError, match="expected one of auto, cpu, cuda, cuda:N, found 'cdua'") as info:
        resolve_device("cdua")
    assert "did you mean 'cuda'" in info.value.hint
