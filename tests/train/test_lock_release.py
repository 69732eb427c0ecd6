"""Releasing a lock whose descriptor was shared: the processes given it (DDP ranks, sweep workers)
still hold the folder, so the lock file must stay the one they hold until the last of them is
gone; a newcomer in between is refused rather than handed a fresh file of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import PYTHON, ROOT, subprocess_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock as on Linux")


def inode(path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def test_release_with_a_live_shared_holder_keeps_the_folder_locked(tmp_path):
    from nncli.errors import InputError
    from nncli.train.lock import FolderLock, check_unlocked

    lock = FolderLock(tmp_path, "sweep").acquire()
    path = tmp_path / ".nncli.lock"
    first = inode(path)
    # a duplicate of the descriptor is the same open file, as a spawned worker receives it
    worker = os.dup(lock.share().fd)
    try:
        lock.release()
        assert path.exists() and inode(path) == first  # the file the worker holds, not a new one
        with pytest.raises(InputError, match="writing this sweep folder"):
            check_unlocked(tmp_path, "sweep")
        with pytest.raises(InputError, match="writing this sweep folder"):
            FolderLock(tmp_path, "sweep").acquire()
        assert inode(path) == first
    finally:
        os.close(worker)  # the last holder exits
    with FolderLock(tmp_path, "sweep"):  # free now: taken over
        assert inode(path) == first
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()  # nobody shared it this time: removed on release


def test_a_released_lock_left_behind_does_not_hold_while_its_writer_lives(tmp_path):
    # The sweep that released while its workers lived goes on living (nncli used as a library):
    # once they are gone, its record names a live PID, yet the flock is free and decides.
    from nncli.train.lock import FolderLock

    lock = FolderLock(tmp_path).acquire()
    worker = os.dup(lock.share().fd)
    lock.release()
    os.close(worker)
    assert json.loads((tmp_path / ".nncli.lock").read_text())["pid"] == os.getpid()
    code = f"from nncli.train.lock import FolderLock; FolderLock({str(tmp_path)!r}).acquire(); print('taken')"
    other = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True)
    assert other.returncode == 0 and other.stdout.strip() == "taken", other.stderr[-2000:]
