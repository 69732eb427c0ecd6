"""Training a sweep's pending runs: in this process, or in a pool of spawned worker processes.

Each worker gets ``cpu_count // workers`` torch threads (no oversubscription). Ctrl-C, or a run
that comes back interrupted, stops every worker with SIGTERM, which train turns into "save a
checkpoint and stop": the next invocation resumes those runs. On Linux a worker whose sweep died
(even by SIGKILL) gets SIGTERM too, and exits instead of waiting for tasks forever.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from nncli.errors import NncliError
from nncli.files import write_atomic
from nncli.formatting import jsonable
from nncli.sweep.results import TRIAL_FILE, RunRecord, SweepEvent, TrialResult


@dataclass
class _Run:
    """A run to do: where its spec and folder are, and how to start it."""

    trial: TrialResult
    record: RunRecord
    spec_file: Path
    text: str  # the trial spec's YAML; its sha256 is what run.yaml records
    resume: bool = False


def _execute(pending: list[_Run], workers: int, device: str, notify, done: int, total: int) -> int:
    """Train the pending runs, in this process or in ``workers`` spawned processes."""
    tasks = [{"spec": str(r.spec_file), "run_dir": r.record.run_dir, "resume": r.resume, "device": device}
             for r in pending]
    ran = 0

    def finished(run: _Run, outcome: dict) -> None:
        nonlocal done, ran
        if outcome.get("status") == "interrupted":
            raise KeyboardInterrupt
        rec = run.record
        if "report" in outcome:
            rec.fill(outcome["report"], outcome["seconds"])
        else:
            rec.status, rec.error, rec.seconds = "failed", outcome["error"], outcome["seconds"]
        if Path(rec.run_dir).is_dir():
            write_atomic(Path(rec.run_dir) / TRIAL_FILE, json.dumps(jsonable(
                {"trial": run.trial.id, "seed": rec.seed, "overrides": run.trial.overrides,
                 "status": rec.status, "seconds": rec.seconds, "error": rec.error,
                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}), indent=2) + "\n", durable=True)
        done, ran = done + 1, ran + 1
        notify(SweepEvent("done", done, total, run.trial.id, rec))

    if workers <= 1:
        for run, task in zip(pending, tasks):
            notify(SweepEvent("start", done, total, run.trial.id, run.record))
            finished(run, run_trial(task))
        return ran

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, (os.cpu_count() or 1) // workers)  # no oversubscription: cores split evenly
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads, os.getpid()))
    try:
        futures = {}
        for run, task in zip(pending, tasks):
            futures[pool.submit(run_trial, task)] = run
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
        for child in multiprocessing.active_children():
            child.terminate()  # SIGTERM: a run in progress saves a checkpoint and stops (resumable)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return ran


_SWEEP_PID: int | None = None  # in a worker process: the sweep that started it
_STOPPING = False  # in a worker process: a run was interrupted, so queued runs are not started


def _init_worker(threads: int, sweep_pid: int) -> None:
    import signal

    import torch

    global _SWEEP_PID
    _SWEEP_PID = sweep_pid
    torch.set_num_threads(threads)
    try:  # Linux: if the sweep dies (even by SIGKILL) its workers get SIGTERM, which train turns
        # into "save a checkpoint and stop"; run_trial then exits the orphan (see _exit_if_orphaned)
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _exit_if_orphaned() -> None:
    """A worker whose sweep died must not wait for tasks forever (its queue never closes: every
    worker holds both ends), nor train more: the rerun of the sweep will pick its run up."""
    if _SWEEP_PID is not None and os.getppid() != _SWEEP_PID:
        os._exit(0)


def run_trial(task: dict) -> dict:
    """Train one run of a sweep; the worker-process entry point (a plain, picklable function).

    Args:
        task: ``{"spec": spec file, "run_dir": run folder, "resume": continue it, "device": ...}``.

    Returns:
        ``{"report": TrainResult.to_json(), "seconds": wall time}``, ``{"status": "interrupted"}``,
        or ``{"status": "error", "error": message, "seconds": ...}`` for a run that could not
        train; the sweep goes on with the other runs either way.
    """
    from nncli.train import run_training

    global _STOPPING
    started = time.perf_counter()
    _exit_if_orphaned()
    if _STOPPING:  # tasks already queued to this worker when the sweep was interrupted
        return {"status": "interrupted"}
    try:
        if task["resume"]:
            result = run_training(None, None, None, device=task["device"], resume=task["run_dir"])
        else:
            result = run_training(task["spec"], None, task["run_dir"], device=task["device"])
    except NncliError as err:
        return {"status": "error", "error": str(err), "seconds": time.perf_counter() - started}
    except Exception as exc:  # a bug or a library failure in one trial must not end the sweep
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - started}
    finally:
        _exit_if_orphaned()
    if result.status == "interrupted":
        _STOPPING = True
        return {"status": "interrupted"}
    return {"report": result.to_json(), "seconds": time.perf_counter() - started}
