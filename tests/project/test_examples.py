"""The example scripts run as a user would run them: bash, the nncli console script on PATH.

The CI gate must stop at the first failing step with that step's exit code and say which one
failed; each failure is planted where its step should catch it (a missing spec, a budget too
small, a custom layer whose backward is wrong, a deep sigmoid stack whose gradients vanish).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SPECS, subprocess_env

EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent  # the venv's bin: its `nncli` console script

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the examples are bash scripts")


def run_script(name: str, *args, timeout: float = 600, **env) -> subprocess.CompletedProcess:
    environ = subprocess_env(**env)
    environ["PATH"] = f"{BIN}{os.pathsep}{environ.get('PATH', '')}"
    if shutil.which("nncli", path=environ["PATH"]) is None:  # not installed as a console script
        environ["NNCLI"] = f"{sys.executable} -m nncli"
    return subprocess.run(
        ["bash", str(EXAMPLES / name), *map(str, args)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def summary(stdout: str) -> list[str]:
    """The gate's closing summary, one word per step: ok, FAILED or skipped."""
    lines = re.findall(r"^  \d\. .*$", stdout, flags=re.M)
    return [next(w for w in ("ok", "FAILED", "skipped") if re.search(rf"\s{w}\b", line)) for line in lines]


def test_gate_stops_at_a_missing_spec_with_exit_2(tmp_path):
    proc = run_script("ci-gate.sh", tmp_path / "missing.yaml", GATE_REPORTS=tmp_path / "reports")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert summary(proc.stdout) == ["FAILED", "skipped", "skipped", "skipped"]
    assert "exit 2: bad input" in proc.stdout and "gate FAILED (exit 2)" in proc.stdout
    assert "no such spec file" in (tmp_path / "reports" / "check.txt").read_text()


def test_gate_usage_is_exit_2():
    proc = run_script("ci-gate.sh")
    assert proc.returncode == 2 and "CI gate for a network spec" in proc.stderr


@pytest.mark.slow
def test_gate_passes_a_sound_spec():
    proc = run_script("ci-gate.sh", SPECS / "moons-mlp.yaml", "--max-params", "10k")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary(proc.stdout) == ["ok"] * 4 and "gate passed" in proc.stdout


@pytest.mark.slow
def test_gate_stops_at_the_params_budget():
    proc = run_script("ci-gate.sh", SPECS / "moons-mlp.yaml", "--max-params", "1000")  # it has 4,482
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert summary(proc.stdout) == ["ok", "FAILED", "skipped", "skipped"]


BAD_BACKWARD = """\
import torch


class _Double(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        return 3 * grad  # wrong: d(2x)/dx is 2


class Double(torch.nn.Module):
    def forward(self, x):
        return _Double.apply(x)
"""


@pytest.mark.slow
def test_gate_stops_at_a_wrong_custom_backward(tmp_path):
    (tmp_path / "bad_layers.py").write_text(BAD_BACKWARD)
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "input: [4]\nlayers:\n  - Linear: {out_features: 8}\n  - Tanh\n"
        '  - Custom: {target: "bad_layers.py:Double"}\n  - Linear: {out_features: 2}\n'
    )
    proc = run_script("ci-gate.sh", spec)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert summary(proc.stdout) == ["ok", "ok", "FAILED", "skipped"]


@pytest.mark.slow
def test_gate_stops_at_exploding_gradients():
    # ReLU with N(0, 0.3^2) weights over 20 layers: a sound spec (check passes) whose gradients
    # explode at initialisation, which only the probe sees
    proc = run_script("ci-gate.sh", SPECS / "deep-relu-normal.yaml")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert summary(proc.stdout) == ["ok", "ok", "ok", "FAILED"]


@pytest.mark.slow
def test_tour_runs_from_scratch(tmp_path):
    proc = run_script("tour.sh", tmp_path / "tour", QUICK="1", PYTHON=sys.executable, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "tour"
    for name in (
        "moons/report.json",
        "sweep/sweep.json",
        "sweep/best.yaml",
        "moons-curves.png",
        "sweep.png",
        "compare.png",
    ):
        assert (out / name).is_file(), name
    assert "Tour done" in proc.stdout
