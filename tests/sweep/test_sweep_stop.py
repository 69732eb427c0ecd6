"""An interrupted local sweep waits for its workers before it goes on (and releases its folder):
the ones that stop on SIGTERM are waited for, no longer than they take; one that does not stop
within the grace is killed."""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time

import pytest
from stopping_workers import ignore_sigterm, sleep_until_stopped

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM and SIGKILL as on POSIX")


class Pool:
    """The executor's part in stopping: shut down without waiting, queued work cancelled."""

    def __init__(self) -> None:
        self.shutdown_with = None

    def shutdown(self, **kwargs) -> None:
        self.shutdown_with = kwargs


def start(*targets) -> list:
    ctx = multiprocessing.get_context("spawn")
    workers = []
    for target in targets:
        ready = ctx.Event()
        workers.append(ctx.Process(target=target, args=(ready,)))
        workers[-1].start()
        assert ready.wait(60), "the worker did not start"
    return workers


def test_workers_that_stop_on_sigterm_are_waited_for_not_the_whole_grace(monkeypatch):
    from nncli.sweep.backends import local

    monkeypatch.setattr(local, "STOP_GRACE_S", 60.0)
    monkeypatch.setattr(local, "KILL_WAIT_S", 60.0)
    workers = start(sleep_until_stopped, sleep_until_stopped)
    pool = Pool()
    started = time.monotonic()
    local._stop_workers(pool)
    assert time.monotonic() - started < 30  # back once they exited, no timeout waited out
    assert [w.is_alive() for w in workers] == [False, False]
    assert [w.exitcode for w in workers] == [-signal.SIGTERM] * 2
    assert pool.shutdown_with == {"wait": False, "cancel_futures": True}


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace(monkeypatch):
    from nncli.sweep.backends import local

    monkeypatch.setattr(local, "STOP_GRACE_S", 1.0)
    quick, stubborn = start(sleep_until_stopped, ignore_sigterm)
    started = time.monotonic()
    local._stop_workers(Pool())
    assert time.monotonic() - started >= 1.0  # the grace was given
    assert not quick.is_alive() and not stubborn.is_alive()  # gone when the sweep goes on
    assert quick.exitcode == -signal.SIGTERM and stubborn.exitcode == -signal.SIGKILL
