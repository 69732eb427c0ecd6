"""Ranks do not outlive their launcher: SIGKILL of ``nncli train --nproc-per-node 2`` stops both ranks
within a bounded time (the parent-death signal each rank asks the kernel for), so no rank keeps
writing a run folder whose lock names a dead process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, subprocess_env, write
from process_tree import alive, ranks_of
from spec_texts import TINY_MLP_RUN as MLP

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")


def test_sigkill_of_the_launcher_stops_every_rank(tmp_path):
    spec = write(tmp_path / "spec.yaml", MLP.replace("epochs: 1", "epochs: 100000").replace("n: 200", "n: 4000"))
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nncli",
            "train",
            str(spec),
            "--out",
            str(tmp_path / "run"),
            "--device",
            "cpu",
            "--nproc-per-node",
            "2",
        ],
        cwd=ROOT,
        env=subprocess_env(OMP_NUM_THREADS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline, ranks = time.monotonic() + 120, []
        while time.monotonic() < deadline and not (tmp_path / "run" / "metrics.jsonl").exists():
            assert launcher.poll() is None, launcher.stderr.read().decode()[-2000:]
            ranks = ranks_of(launcher.pid) or ranks
            time.sleep(0.2)
        ranks = ranks_of(launcher.pid) or ranks
        assert len(ranks) == 2, ranks  # both ranks training
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(r) for r in ranks):
            time.sleep(0.1)
        assert not any(alive(r) for r in ranks), [r for r in ranks if alive(r)]
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        for r in ranks_of(launcher.pid):
            os.kill(r, signal.SIGKILL)
