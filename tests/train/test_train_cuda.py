"""nncli train on CUDA: the dataset on the GPU, no host sync per step, --amp, --compile, channels_last.

Every test is marked ``cuda`` (deselected by default; run with ``pytest -m cuda``) and skips with
a reason where torch sees no GPU. References: the fp32 run on the same GPU (AMP must land within
a small accuracy distance of it), the CPU run (the GPU run must learn as well), and torch's own
sync-debug mode, which counts every host synchronisation.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import SPECS

from nncli.runs import load_checkpoint
from nncli.train import run_training

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)"
    ),
]

DIGITS = SPECS / "digits-cnn.yaml"


def test_dataset_lives_on_the_gpu_and_learns(tmp_path):
    result = run_training(DIGITS, {"epochs": 8}, tmp_path / "run", device="cuda")
    assert result.device.startswith("cuda:") and result.data_on_device and result.channels_last
    assert result.test["accuracy"] >= 0.97
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())  # checkpoints load anywhere
    assert ckpt["rng"]["cuda"] is not None


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_trains_as_well_as_fp32(tmp_path, amp):
    fp32 = run_training(DIGITS, {"epochs": 8}, tmp_path / "fp32", device="cuda")
    mixed = run_training(DIGITS, {"epochs": 8, "amp": amp}, tmp_path / amp, device="cuda")
    assert mixed.amp == amp and mixed.status == "completed"
    assert mixed.test["accuracy"] >= fp32.test["accuracy"] - 0.02
    assert all(
        torch.isfinite(v).all()
        for v in load_checkpoint(tmp_path / amp / "checkpoints" / "last.pt")["model"].values()
        if v.is_floating_point()
    )


def test_compile_trains_and_evaluates(tmp_path):
    result = run_training(DIGITS, {"epochs": 6, "compile": True, "amp": "bf16"}, tmp_path / "run", device="cuda")
    assert result.compile and result.status == "completed"
    assert result.test["accuracy"] >= 0.95


def test_no_host_sync_inside_the_step_loop(tmp_path):
    """Count torch's sync warnings over a run. An epoch of 1,258 digits at batch 2 is 629 steps; with
    sync_every 50 the loop syncs ~13 times, and the epoch end adds a few dozen (metrics, evaluation,
    each checkpoint tensor copied to the host). One sync per step would be 629 or more."""
    steps = 629
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run_training(
                DIGITS, {"epochs": 1, "batch_size": 2, "sync_every": 50}, tmp_path / "run", device="cuda"
            )
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert result.global_step == steps
    assert len(syncs) < steps // 4, f"{len(syncs)} host syncs for {steps} steps"


def test_resume_on_gpu_continues(tmp_path):
    run_training(DIGITS, {"epochs": 2}, tmp_path / "run", device="cuda")
    longer = run_training(None, {"epochs": 3}, None, device="cuda", resume=tmp_path / "run")
    assert longer.epochs == 3 and [r["epoch"] for r in longer.history] == [1, 2, 3]
