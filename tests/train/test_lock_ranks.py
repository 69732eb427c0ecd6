"""The run lock is held by every process that writes: a child given the lock (a DDP rank, a sweep
worker) keeps the folder locked after the process that took it is SIGKILLed, and the folder is
free once the last of them has exited. Liveness is the kernel's flock, not the recorded PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, subprocess_env, write
from process_tree import alive, ranks_of
from spec_texts import TINY_MLP_RUN as MLP

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock and /proc as on Linux")

HOLDER = """
import multiprocessing, sys, time
sys.path.insert(0, {here!r})
from nncli.train.lock import FolderLock
from orphan_ranks import hold_shared

lock = FolderLock({folder!r}).acquire()
ctx = multiprocessing.get_context("spawn")
ready = ctx.Event()
child = ctx.Process(target=hold_shared, args=(lock.share(), ready))
child.start()
ready.wait(60)
print(child.pid, flush=True)
time.sleep(600)
"""

LAUNCHER = """
import sys
sys.path.insert(0, {here!r})
from nncli.train.distributed import launch_distributed
from orphan_ranks import outlive_the_launcher

launch_distributed({spec!r}, None, {out!r}, nproc_per_node=2, device="cpu", callbacks_factory=outlive_the_launcher)
"""


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_child_given_the_lock_holds_the_folder_after_its_parent_is_killed(tmp_path):
    from nncli.errors import InputError
    from nncli.train.lock import FolderLock, check_unlocked

    code = HOLDER.format(here=str(HERE), folder=str(tmp_path))
    parent = subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE, text=True, env=subprocess_env(), cwd=ROOT)
    child = None
    try:
        child = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert alive(child)
        # the record names the dead parent; the live child's descriptor is what holds the folder
        assert json.loads((tmp_path / ".nncli.lock").read_text())["pid"] == parent.pid
        with pytest.raises(InputError, match=rf"has exited \(PID {parent.pid}"):
            check_unlocked(tmp_path)
        with pytest.raises(InputError, match="still writing"):
            FolderLock(tmp_path).acquire()
    finally:
        kill_all([parent.pid] + ([child] if child else []))
        parent.wait()
    wait_until(lambda: not alive(child), 10, "the holder did not die")
    check_unlocked(tmp_path)
    with FolderLock(tmp_path):  # nobody holds it any more: taken over
        assert json.loads((tmp_path / ".nncli.lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".nncli.lock").exists()


def test_a_lock_folder_is_exit_2_and_a_garbage_lock_is_taken_over(tmp_path, run_cli):
    spec = write(tmp_path / "spec.yaml", MLP)
    for name in ("dir", "junk"):
        assert run_cli(["train", spec, "--out", tmp_path / name, "--device", "cpu"]).code == 0
    (tmp_path / "dir" / ".nncli.lock").mkdir()
    (tmp_path / "junk" / ".nncli.lock").write_bytes(b"\x00\x01garbage")
    result = run_cli(["train", "--resume", tmp_path / "dir", "--device", "cpu", "--json"])
    assert result.code == 2, result.text
    assert "is a folder, not a lock file" in json.loads(result.out)["message"]
    result = run_cli(["train", "--resume", tmp_path / "junk", "--device", "cpu", "--json"])
    assert result.code == 0, result.text
    assert not (tmp_path / "junk" / ".nncli.lock").exists()  # taken over, then released


def _resume(run: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "nncli", "train", "--resume", str(run), "--device", "cpu", "--json"],
        cwd=ROOT,
        env=subprocess_env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_resume_is_refused_while_a_rank_of_a_killed_launcher_lives(tmp_path):
    # The ranks here turn their parent-death signal off, as ranks on a platform without one would
    # be: the launcher's SIGKILL leaves them training, and the lock they share keeps them the writers.
    spec = write(tmp_path / "spec.yaml", MLP.replace("epochs: 1", "epochs: 40"))
    run = tmp_path / "run"
    code = LAUNCHER.format(here=str(HERE), spec=str(spec), out=str(run))
    launcher = subprocess.Popen(
        [PYTHON, "-c", code],
        cwd=ROOT,
        env=subprocess_env(OMP_NUM_THREADS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ranks = []
    try:
        wait_until(lambda: (run / "checkpoints" / "last.pt").exists() or launcher.poll() is not None, 120, "no epoch")
        assert launcher.poll() is None, launcher.stderr.read().decode()[-2000:]
        ranks = ranks_of(launcher.pid)
        assert len(ranks) == 2, ranks
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        assert all(alive(r) for r in ranks)  # orphaned, still training
        refused = _resume(run)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert all(alive(r) for r in ranks), "the ranks finished before the resume was tried"
        error = json.loads(refused.stdout)
        assert f"PID {launcher.pid}" in error["message"] and "still writing" in error["message"]
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        kill_all(ranks)
    wait_until(lambda: not any(alive(r) for r in ranks), 10, "the ranks did not die")
    admitted = _resume(run)
    assert admitted.returncode == 0, admitted.stderr[-2000:]
    report = json.loads(admitted.stdout)
    assert report["epochs"] == 40 and report["status"] == "completed"
