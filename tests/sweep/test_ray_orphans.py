"""A Ray sweep killed outright leaves no Ray process behind: the reaper the sweep starts beside its
own Ray instance stops the agents that outlive their raylet when the driver dies by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, subprocess_env, write
from spec_texts import TINY_MLP_RUN as MLP

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper reads /proc"),
]


def ray_processes() -> set[int]:
    """Live (not zombie) processes whose command line names Ray's runtime."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().split(") ")[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cmdline.startswith(b"ray::") or b"/ray/core/src/ray/" in cmdline):
            found.add(int(entry.name))
    return found


def test_sigkill_of_a_ray_sweep_leaves_no_ray_process(tmp_path):
    pytest.importorskip("ray")
    write(tmp_path / "base.yaml", MLP.replace("epochs: 1", "epochs: 300").replace("n: 200", "n: 2000"))
    sweep = write(tmp_path / "sweep.yaml", "base: base.yaml\ngrid:\n  train.lr: [0.1, 0.2]\n")
    before = ray_processes()
    driver = subprocess.Popen(
        [sys.executable, "-m", "nncli", "sweep", str(sweep), "--backend", "ray", "--out", str(tmp_path / "s")],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((tmp_path / "s").glob("*/metrics.jsonl")):
            assert driver.poll() is None, "the sweep ended before its trials started"
            time.sleep(0.5)
        started = ray_processes() - before
        assert started, "no Ray process seen while the trials ran"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ray_processes() & started:
            time.sleep(0.5)
        assert not ray_processes() & started, sorted(ray_processes() & started)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in ray_processes() - before:
            os.kill(pid, signal.SIGKILL)
