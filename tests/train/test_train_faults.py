"""Training under faults: runs that die, NaN steps, diagnoses, DDP.

Locks, limits, Custom trust and exit codes of the command line are in cli/test_hostile_input.py.

Each test plants the fault the way it happens to a user (a live or dead lock holder, a
billion-copy Repeat, a Custom target outside the spec's folder, an allocator failure, a read-only
or full disk, a NaN step under lazy loss syncing followed by Ctrl-C) and checks the documented
outcome: exit 2 with a located message, never exit 3, never a checkpoint full of NaN. References
are independent of nncli: the figures are computed by hand in the test, files are inspected
directly, PIDs are those of real processes.
"""

from __future__ import annotations

import json

import pytest
from conftest import SPECS, write
from spec_texts import TINY_MLP_RUN as MLP

# The same conditions as the command-line hostile-input tests: one thread, default limits.
pytestmark = pytest.mark.usefixtures("default_limits")


# -- 5. a run with no checkpoint starts again in place ---------------------------------------------
def test_resume_of_a_run_that_died_before_its_first_checkpoint_starts_from_scratch(tmp_path, monkeypatch):
    import torch

    from nncli.train import run_training

    spec = write(tmp_path / "spec.yaml", MLP)
    out = tmp_path / "run"
    real_step = torch.optim.SGD.step

    def oom(self, *a, **k):
        raise torch.OutOfMemoryError("out of memory")

    monkeypatch.setattr(torch.optim.SGD, "step", oom)
    with pytest.raises(torch.OutOfMemoryError):
        run_training(spec, None, out, device="cpu")
    assert (out / "run.yaml").is_file() and not (out / "checkpoints" / "last.pt").exists()
    monkeypatch.setattr(torch.optim.SGD, "step", real_step)
    resumed = run_training(None, None, None, device="cpu", resume=out)
    fresh = run_training(spec, None, tmp_path / "fresh", device="cpu")
    assert resumed.status == "completed" and resumed.epochs == 1
    assert resumed.history[0]["train_loss"] == fresh.history[0]["train_loss"]  # the same run, from scratch


# -- 6. no checkpoint of non-finite weights -------------------------------------------------------
def test_interrupt_after_a_nan_step_under_lazy_sync_keeps_the_checkpoint_finite(tmp_path, monkeypatch):
    import math
    import signal

    import torch
    from fault_injection import SignalAt

    import nncli.train.epoch as epoch_mod
    from nncli.runs import load_checkpoint
    from nncli.train import run_training

    real = epoch_mod.outputs_loss
    calls = {"n": 0}

    def planted(name, out, yb, aux=()):  # step 3's loss is NaN: its backward writes NaN into the weights
        calls["n"] += 1
        loss = real(name, out, yb, aux)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(epoch_mod, "outputs_loss", planted)
    spec = write(tmp_path / "spec.yaml", MLP)
    out = tmp_path / "run"
    result = run_training(
        spec,
        {"train": {"sync_every": 10, "batch_size": 10, "epochs": 2}},
        out,
        device="cpu",
        callbacks=[SignalAt(4, signal.SIGINT)],
    )  # Ctrl-C after step 4, before the sync at step 10
    assert result.status == "nonfinite" and result.nonfinite["step"] == 3
    last = out / "checkpoints" / "last.pt"
    if last.exists():  # whatever is on disk holds finite weights only
        assert all(torch.isfinite(v).all() for v in load_checkpoint(last)["model"].values())
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "nonfinite" and not math.isnan(report["nonfinite"]["epoch"])


# -- 7. diagnoses that are true -------------------------------------------------------------------
NONDET = """
import random
import numpy as np
import torch

class PyRandom(torch.nn.Module):
    def forward(self, x):
        return x * (1.0 + 0.1 * random.random())

class NumpyRandom(torch.nn.Module):
    def forward(self, x):
        return x * float(1.0 + 0.1 * np.random.rand())

class Counter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
    def forward(self, x):
        self.calls += 1
        return x * self.calls

class Seeded(torch.nn.Module):  # draws from torch's RNG, which gradcheck replays: deterministic
    def forward(self, x):
        return x * (1.0 + 0.1 * torch.rand((), dtype=x.dtype))
"""


@pytest.mark.parametrize("cls", ["PyRandom", "NumpyRandom", "Counter"])
def test_nondeterministic_custom_forward_is_its_own_verdict(tmp_path, run_cli, cls):
    write(tmp_path / "layers.py", NONDET)
    spec = write(
        tmp_path / "spec.yaml",
        f'input: [3]\nlayers:\n  - Linear: {{out_features: 3}}\n  - Custom: {{target: "layers.py:{cls}"}}\n',
    )
    result = run_cli(["gradcheck", spec, "--json", "--device", "cpu"])
    assert result.code == 1, result.text
    doc = json.loads(result.out)
    custom = doc["layers"][1]
    assert custom["verdict"] == "nondeterministic" and doc["counts"]["nondeterministic"] == 1
    assert "not deterministic" in doc["diagnosis"] and doc["suspect_id"] == custom["id"]
    assert "wrong gradient" not in doc["diagnosis"] and "kink" not in doc["diagnosis"]


def test_seeded_torch_randomness_in_a_custom_layer_passes(tmp_path, run_cli):
    write(tmp_path / "layers.py", NONDET)
    spec = write(tmp_path / "spec.yaml", 'input: [3]\nlayers:\n  - Custom: {target: "layers.py:Seeded"}\n')
    result = run_cli(["gradcheck", spec, "--json", "--device", "cpu"])
    assert result.code == 0, result.text


@pytest.mark.parametrize("eps", ["1e300", "1e-300", "0.5"])
def test_eps_is_bounded(run_cli, eps):
    result = run_cli(["gradcheck", SPECS / "lecture-mlp.yaml", "--eps", eps, "--device", "cpu"])
    assert result.code == 2 and "--eps" in result.err and "between" in result.err


def test_gradcheck_batch_1_on_batchnorm_is_exit_2(tmp_path, run_cli):
    spec = write(tmp_path / "bn.yaml", "input: [4]\nlayers:\n  - Linear: {out_features: 3}\n  - BatchNorm1d\n")
    result = run_cli(["gradcheck", spec, "--batch", "1", "--device", "cpu"])
    assert result.code == 2, result.text
    assert "--batch: a batch of 1: BatchNorm" in result.err and "or eval mode" in result.err
    assert run_cli(["gradcheck", spec, "--batch", "1", "--mode", "eval", "--device", "cpu"]).code == 0


def test_batchnorm_with_a_one_example_last_batch_drops_it(tmp_path):
    from nncli.train import run_training

    spec = write(tmp_path / "bn.yaml", MLP.replace("  - ReLU\n", "  - BatchNorm1d\n  - ReLU\n"))
    from nncli.train import Callback

    messages = []

    class Messages(Callback):
        def on_message(self, trainer, text):
            messages.append(text)

    from nncli.train.prepare import prepare

    n_train = prepare(spec, None, tmp_path / "probe").dataset.sizes()["train"]
    batch = n_train - 1  # epochs of one full batch and one batch of a single example
    result = run_training(
        spec, {"train": {"batch_size": batch, "epochs": 2}}, tmp_path / "run", device="cpu", callbacks=[Messages()]
    )
    assert result.status == "completed"
    assert result.global_step == 2  # one step per epoch: the one-example batch was dropped
    assert len([m for m in messages if "dropping the last training batch" in m]) == 1


def test_nonfinite_search_runs_under_the_trainings_autocast():
    import torch

    from nncli.build import build_model
    from nncli.spec import parse_spec
    from nncli.train.diagnostics import first_nonfinite_layer

    built = build_model(parse_spec("input: [1]\nlayers:\n  - Linear: {out_features: 1}\n  - ReLU\n"), seed=0)
    with torch.no_grad():
        built.model[0].weight.fill_(1000.0)
        built.model[0].bias.zero_()
    x = torch.full((2, 1), 100.0)  # 1e5: finite in float32, past float16's 65504
    fp16 = lambda: torch.autocast("cpu", dtype=torch.float16)  # noqa: E731
    with fp16():
        assert not torch.isfinite(built.model(x)).all()  # what training under --amp fp16 saw
    assert first_nonfinite_layer(built.model, built.layers, x) is None  # float32: all finite
    found = first_nonfinite_layer(built.model, built.layers, x, autocast=fp16)
    assert found is not None and found["path"] == "layers[0]" and found["type"] == "Linear"


# -- 8. quiet gaps --------------------------------------------------------------------------------
def test_tensorboard_logs_every_epoch_even_between_checkpoints_and_every_step(tmp_path):
    from nncli.train import run_training
    from nncli.train.callbacks import TensorBoard

    class Writer:  # stands in for SummaryWriter (tensorboard is an optional package)
        def __init__(self):
            self.points = []

        def add_scalar(self, tag, value, step):
            self.points.append((tag, step))

        def flush(self):
            pass

        close = flush

    writer = Writer()
    spec = write(tmp_path / "spec.yaml", MLP)
    # checkpoints after the last epoch only (checkpoint_seconds): the curves still get every epoch
    result = run_training(
        spec,
        {"train": {"epochs": 4, "checkpoint_seconds": 3600}},
        tmp_path / "run",
        device="cpu",
        callbacks=[TensorBoard(writer)],
    )
    assert sorted(step for tag, step in writer.points if tag == "train/loss") == [1, 2, 3, 4]
    # on the CPU every step is a sync point: one loss point per step
    assert [step for tag, step in writer.points if tag == "step/loss"] == list(range(1, result.global_step + 1))


@pytest.mark.parametrize(
    "section, found",
    [
        ("train: {lr: [3, 3]}", "train.lr"),
        ('train: {epochs: "3"}', "train.epochs"),
        ("train: {epohcs: 3}", "did you mean 'epochs'"),
        ("data: {name: moons, nosie: 0.1}", "data.nosie"),
    ],
)
def test_check_validates_train_and_data_as_train_does(tmp_path, run_cli, section, found):
    other = "data: {name: moons}" if section.startswith("train") else "train: {epochs: 1}"
    spec = write(
        tmp_path / "spec.yaml", "input: [2]\nlayers:\n  - Linear: {out_features: 2}\n" + section + "\n" + other + "\n"
    )
    checked = run_cli(["check", spec])
    trained = run_cli(["train", spec, "--out", tmp_path / "run", "--device", "cpu"])
    assert checked.code == trained.code == 2, checked.text
    assert found in checked.err and "spec.yaml:4:" in checked.err
    assert checked.err.splitlines()[0] == trained.err.splitlines()[0]  # the same located message


def test_train_refuses_up_front_when_one_step_cannot_fit(tmp_path, run_cli, monkeypatch):
    import nncli.memory
    from nncli.params import count
    from nncli.spec import load_spec

    spec = write(tmp_path / "spec.yaml", MLP)
    need = count(load_spec(spec), batch_size=50, optimizer="sgd").memory.total
    # independent figure: 2->8->2 MLP, float32: 42 weights, 42 gradients, 42 momentum buffers
    assert need >= 3 * 42 * 4
    monkeypatch.setattr(nncli.memory, "available_memory", lambda device: need - 1)
    result = run_cli(["train", spec, "--out", tmp_path / "run", "--device", "cpu", "--json"])
    assert result.code == 2, result.text
    doc = json.loads(result.out)
    assert "is free" in doc["message"] and "--batch-size" in doc["hint"]
    assert not (tmp_path / "run").exists()  # refused before anything was written
    monkeypatch.setattr(nncli.memory, "available_memory", lambda device: need)
    assert run_cli(["train", spec, "--out", tmp_path / "run", "--device", "cpu"]).code == 0


DROPOUT_MLP = MLP.replace("  - ReLU\n", "  - ReLU\n  - Dropout: {p: 0.5}\n")


@pytest.mark.slow
def test_ddp_resume_is_exact_with_dropout_on_every_rank(tmp_path):
    """Every rank's RNG state is in the checkpoint: two epochs in one go and one epoch, then a
    resume for the second, end with the same weights (rank 1's dropout masks included)."""
    import torch

    from nncli.runs import load_checkpoint
    from nncli.train import launch_distributed

    spec = write(tmp_path / "spec.yaml", DROPOUT_MLP)
    over = {"train": {"batch_size": 20, "checkpoint_seconds": 0}}
    whole = launch_distributed(
        spec, {"train": dict(over["train"], epochs=2)}, tmp_path / "whole", nproc_per_node=2, device="cpu"
    )
    half = launch_distributed(
        spec, {"train": dict(over["train"], epochs=1)}, tmp_path / "half", nproc_per_node=2, device="cpu"
    )
    assert whole.status == half.status == "completed"
    ckpt = load_checkpoint(tmp_path / "half" / "checkpoints" / "last.pt")
    assert len(ckpt["rng"]["ranks"]) == 2
    assert not torch.equal(ckpt["rng"]["ranks"][0]["torch"], ckpt["rng"]["ranks"][1]["torch"])
    resumed = launch_distributed(
        None, {"train": {"epochs": 2}}, None, nproc_per_node=2, device="cpu", resume=tmp_path / "half"
    )
    assert resumed.status == "completed" and resumed.epochs == 2
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "half" / "checkpoints" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.cuda
def test_ddp_keeps_the_cuda_device_index(tmp_path):
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices: the run must land on cuda:1, not cuda:0")
    from nncli.train import launch_distributed

    result = launch_distributed(
        write(tmp_path / "spec.yaml", MLP), None, tmp_path / "run", nproc_per_node=1, nnodes=1, device="cuda:1"
    )
    assert result.device == "cuda:1"
