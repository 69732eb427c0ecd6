"""The ``local`` backend: a sweep's runs trained in this process, or in a pool of spawned worker
processes on this machine (the default; needs nothing beyond nncli).

Each worker gets ``cpu_count // workers`` torch threads (no oversubscription). Ctrl-C, or a run
that comes back interrupted, stops every worker with SIGTERM, which train turns into "save a
checkpoint and stop", and waits for them to exit before the sweep's lock is released: the next
invocation resumes those runs.
"""

from __future__ import annotations

import os

from nncli.sweep.execute import (
    TrialWorker,
    record_outcome,
    run_in_pool_worker,
    start_pool_worker,
    task_in_worker,
    task_of,
)
from nncli.sweep.results import SweepEvent

# How long an interrupted sweep waits for its workers to save their checkpoints and exit
STOP_GRACE_S = 60.0
# ... and for each one to be gone once it has exited or been killed
KILL_WAIT_S = 10.0


def execute_local(pending: list, workers: int, device: str, notify, done: int, total: int) -> int:
    """Train the pending runs, in this process or in ``workers`` spawned processes."""
    tasks = [task_of(r, device) for r in pending]
    ran = 0

    def finished(run, outcome: dict) -> None:
        nonlocal done, ran
        record_outcome(run, outcome)
        done, ran = done + 1, ran + 1
        notify(SweepEvent("done", done, total, run.trial.id, run.record))

    if workers <= 1:
        worker = TrialWorker()
        for run, task in zip(pending, tasks):
            notify(SweepEvent("start", done, total, run.trial.id, run.record))
            finished(run, worker(task))
        return ran

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from nncli.train.lock import held_locks

    threads = max(1, (os.cpu_count() or 1) // workers)  # no oversubscription: cores split evenly
    # the workers hold the sweep folder's lock too: a rerun waits until the last of them is gone
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads, held_locks()),
    )
    try:
        futures = {}
        for run, task in zip(pending, tasks):
            futures[
                pool.submit(run_in_pool_worker, task_in_worker(task, sweep_pid=os.getpid(), thread_cap=threads))
            ] = run
            notify(SweepEvent("start", done, total, run.trial.id, run.record))
        remaining = set(futures)
        while remaining:
            complete, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for fut in complete:
                try:
                    outcome = fut.result()
                except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                    outcome = {"status": "error", "error": f"worker process died: {exc}", "seconds": None}
                finished(futures[fut], outcome)
    except BaseException:  # Ctrl-C, or a run came back interrupted: stop every worker now
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)
    return ran


def _stop_workers(pool) -> None:
    """SIGTERM every worker (a run in progress saves a checkpoint and stops: resumable) and wait
    for them: the sweep's lock is released after this, and a worker still saving must not be
    writing beside the next invocation. One that has not stopped after ``STOP_GRACE_S``, or
    when a second Ctrl-C cuts the wait short, is killed (its run resumes from its last checkpoint).
    """
    import multiprocessing
    import time
    from multiprocessing.connection import wait as wait_for

    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    # a child's sentinel is ready once it is exiting, whoever reaps it (the pool's thread may)
    running = {child.sentinel: child for child in children}
    deadline = time.monotonic() + STOP_GRACE_S
    try:
        while running and time.monotonic() < deadline:
            for sentinel in wait_for(list(running), deadline - time.monotonic()):
                running.pop(sentinel)
    finally:
        for child in running.values():
            child.kill()
        for child in children:  # reaped: gone, every descriptor (the lock's) closed, not just exiting
            child.join(KILL_WAIT_S)


def _init_worker(threads: int, locks: tuple = ()) -> None:
    """``locks``: the sweep's, already held by this worker once unpickled; kept for its life."""
    import signal

    import torch

    torch.set_num_threads(threads)  # each trial's rule then stays within this share (its task's thread_cap)
    start_pool_worker()
    try:  # Linux: if the sweep dies (even by SIGKILL) its workers get SIGTERM, which train turns
        # into "save a checkpoint and stop"; run_trial then exits the orphan (_exit_if_orphaned)
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
