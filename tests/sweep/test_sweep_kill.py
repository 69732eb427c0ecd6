"""SIGKILL of a local sweep in the middle of its trials: no process it started survives (workers
and anything under them), the sweep folder stays locked while any worker lives and is free after,
and the rerun resumes the interrupted trials from their checkpoints and trains only what is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import PYTHON, ROOT, subprocess_env, write
from process_tree import alive, descendants
from spec_texts import TINY_MLP_RUN as MLP

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal and /proc are Linux's"),
]

BASE = MLP.replace("n: 200", "n: 4000").replace("epochs: 1,", "epochs: 40, checkpoint_seconds: 0,")
LRS = [0.05, 0.1, 0.2]


def mid_trial(out: Path) -> list[Path]:
    """Trial run folders with an epoch checkpoint and no final report yet."""
    return [
        p.parent.parent for p in out.glob("*/checkpoints/last.pt") if not (p.parent.parent / "report.json").exists()
    ]


def test_sigkill_of_a_local_sweep_leaves_no_worker_and_the_rerun_resumes(tmp_path):
    from nncli.errors import InputError
    from nncli.train.lock import check_unlocked

    write(tmp_path / "base.yaml", BASE)
    sweep = write(tmp_path / "sweep.yaml", f"base: base.yaml\ngrid:\n  train.lr: {LRS}\n")
    out = tmp_path / "out"
    cmd = [PYTHON, "-m", "nncli", "sweep", str(sweep), "--out", str(out), "--workers", "2", "--json", "--device", "cpu"]
    env = subprocess_env(OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, tree = time.monotonic() + 180, []
    while len(mid_trial(out)) < 2:  # both workers inside a trial
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the two workers never were mid-trial together"
        tree = descendants(proc.pid) or tree
        time.sleep(0.02)
    tree = descendants(proc.pid) or tree
    interrupted = mid_trial(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        assert len([p for p in tree if alive(p)]) >= 2, tree  # the workers, at least
        before = [p for p in tree if alive(p)]
        try:
            check_unlocked(out, "sweep")
            held = False
        except InputError as err:
            held = True
            assert "still writing this sweep folder" in str(err), err
        after = [p for p in tree if alive(p)]
        assert (held and before) or (not held and not after), (held, before, after)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(p) for p in tree):
            time.sleep(0.05)
        assert not [p for p in tree if alive(p)], "processes of the killed sweep survived"
    finally:
        for pid in tree:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    check_unlocked(out, "sweep")  # the last worker gone: free
    for run in interrupted:  # each stopped on the kernel's SIGTERM with a checkpoint, unfinished
        report = run / "report.json"
        assert (run / "checkpoints" / "last.pt").is_file()
        assert not report.exists() or json.loads(report.read_text())["status"] == "interrupted"

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    doc = json.loads(rerun.stdout)
    assert len(doc["trials"]) == len(LRS) and all(t["status"] == "ok" for t in doc["trials"])
    for run in interrupted:
        assert "resumed" in yaml.safe_load((run / "run.yaml").read_text())
        assert json.loads((run / "report.json").read_text())["epochs"] == 40
