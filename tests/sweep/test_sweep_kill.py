"""SIGKILL of a local sweep in the middle of its trials: no process it started survives (workers
and anything under them), the sweep folder stays locked while any worker lives and is free after,
and the rerun resumes the interrupted trials from their checkpoints and trains only what is left.
SIGTERM: the sweep waits for its workers to save their checkpoints and exit before it releases
the folder, which stays locked (the same lock file) until then."""

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
from process_tree import alive, descendants, holds_file, ranks_of
from spec_texts import TINY_MLP_RUN as MLP

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal and /proc are Linux's"),
]

BASE = MLP.replace("n: 200", "n: 4000").replace("epochs: 1,", "epochs: 40, checkpoint_seconds: 0,")
LRS = [0.05, 0.1, 0.2]
ENV = subprocess_env(OMP_NUM_THREADS="1")


def mid_trial(out: Path) -> list[Path]:
    """Trial run folders with an epoch checkpoint and no final report yet."""
    return [
        p.parent.parent for p in out.glob("*/checkpoints/last.pt") if not (p.parent.parent / "report.json").exists()
    ]


def sweep_command(tmp_path: Path) -> list[str]:
    write(tmp_path / "base.yaml", BASE)
    sweep = write(tmp_path / "sweep.yaml", f"base: base.yaml\ngrid:\n  train.lr: {LRS}\n")
    out = tmp_path / "out"
    return [
        PYTHON,
        "-m",
        "nncli",
        "sweep",
        str(sweep),
        "--out",
        str(out),
        "--workers",
        "2",
        "--json",
        "--device",
        "cpu",
    ]


def start_until_mid_trial(cmd: list[str], out: Path) -> tuple[subprocess.Popen, list[int]]:
    """The sweep started, once both its workers are inside a trial; and every process under it."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline, tree = time.monotonic() + 180, []
    while len(mid_trial(out)) < 2:  # both workers inside a trial
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the two workers never were mid-trial together"
        tree = descendants(proc.pid) or tree
        time.sleep(0.02)
    return proc, descendants(proc.pid) or tree


def assert_resumed(cmd: list[str], interrupted: list[Path]) -> None:
    """Each interrupted trial stopped with a checkpoint, unfinished; the rerun resumes it."""
    for run in interrupted:
        report = run / "report.json"
        assert (run / "checkpoints" / "last.pt").is_file()
        assert not report.exists() or json.loads(report.read_text())["status"] == "interrupted"
    rerun = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    doc = json.loads(rerun.stdout)
    assert len(doc["trials"]) == len(LRS) and all(t["status"] == "ok" for t in doc["trials"])
    for run in interrupted:
        assert "resumed" in yaml.safe_load((run / "run.yaml").read_text())
        assert json.loads((run / "report.json").read_text())["epochs"] == 40


def test_sigkill_of_a_local_sweep_leaves_no_worker_and_the_rerun_resumes(tmp_path):
    from nncli.errors import InputError
    from nncli.train.lock import check_unlocked

    cmd = sweep_command(tmp_path)
    out = tmp_path / "out"
    proc, tree = start_until_mid_trial(cmd, out)
    interrupted = mid_trial(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        assert len([p for p in tree if alive(p)]) >= 2, tree  # the workers, at least
        # the processes holding the lock file (it is never reopened: holding after means during)
        before = [p for p in tree if holds_file(p, out / ".nncli.lock")]
        try:
            check_unlocked(out, "sweep")
            held = False
        except InputError as err:
            held = True
            assert "still writing this sweep folder" in str(err), err
        after = [p for p in tree if holds_file(p, out / ".nncli.lock")]
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
    assert_resumed(cmd, interrupted)  # each stopped on the kernel's SIGTERM


def watch_the_lock_until_exit(proc: subprocess.Popen, workers: list[int], lock: Path) -> int:
    """Until the sweep exits: while a worker holds the lock, the lock file is the one it was (not
    removed, not replaced) and the folder is refused. Returns how many looks found it held.

    A worker closes the lock when it exits and never opens it again, so one that holds it after a
    look held it during the look; "alive" would not do (an exiting process closes its files first).
    """
    from nncli.errors import InputError
    from nncli.train.lock import check_unlocked

    first, seen, deadline = os.stat(lock).st_ino, 0, time.monotonic() + 180
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the sweep did not stop on SIGTERM"
        try:
            inode = os.stat(lock).st_ino
        except FileNotFoundError:
            inode = None
        if any(holds_file(w, lock) for w in workers):
            assert inode == first, "the lock file went while a worker held it"
            seen += 1
            if seen % 20 == 1:
                try:
                    check_unlocked(lock.parent, "sweep")
                    free = True
                except InputError as err:
                    free = False
                    assert "writing this sweep folder" in str(err), err
                assert not free or not any(holds_file(w, lock) for w in workers), "free while a worker held it"
        time.sleep(0.01)
    return seen


def test_sigterm_of_a_local_sweep_waits_for_its_workers_before_releasing_the_folder(tmp_path):
    from nncli.train.lock import check_unlocked

    cmd = sweep_command(tmp_path)
    out = tmp_path / "out"
    proc, tree = start_until_mid_trial(cmd, out)
    workers = ranks_of(proc.pid)
    interrupted = mid_trial(out)
    try:
        assert len(workers) == 2, workers
        proc.send_signal(signal.SIGTERM)
        seen = watch_the_lock_until_exit(proc, workers, out / ".nncli.lock")
        stdout, stderr = proc.communicate()
        assert proc.returncode == 130, stderr.decode()[-2000:]
        assert json.loads(stdout)["exit_code"] == 130
        assert seen > 0  # the workers took a while to save and stop: the window was watched
        assert not [w for w in workers if alive(w)], "the sweep exited before its workers"
        assert not (out / ".nncli.lock").exists()  # released once they were gone
        check_unlocked(out, "sweep")
    finally:
        for pid in tree:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert_resumed(cmd, interrupted)
