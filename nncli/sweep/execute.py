"""One run of a sweep, whatever trains it: :func:`run_trial` (the entry point a worker process,
or a Ray Tune trial, calls), the task it reads (:func:`task_of`) and :func:`record_outcome`,
which every backend (:mod:`nncli.sweep.backends`) calls with what came back.

A worker started by the local pool knows its sweep's process id: on Linux a worker whose sweep
died (even by SIGKILL) gets SIGTERM, which train turns into "save a checkpoint and stop", and then
exits instead of waiting for tasks forever.
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
from nncli.status import RunStatus, TrialStatus
from nncli.sweep.results import TRIAL_FILE, RunRecord, TrialResult


@dataclass
class _Run:
    """A run to do: where its spec and folder are, and how to start it."""

    trial: TrialResult
    record: RunRecord
    spec_file: Path
    text: str  # the trial spec's YAML; its sha256 is what run.yaml records
    resume: bool = False
    prune: dict | None = None  # the pruner and the finished trials it compares with (nncli.sweep.search)
    base_dir: Path | None = None  # the base spec's folder: what the trial's Custom file targets are relative to
    report: dict | None = None  # the train report it came back with (its per-epoch history)
    tracking: dict | None = None  # the MLflow store and parent run to log to (nncli.tracking)


def record_outcome(run: _Run, outcome: dict) -> None:
    """Copy what a trial came back with into its record and its folder's ``trial.json``; every
    backend calls this for each finished run. An interrupted run raises KeyboardInterrupt."""
    if outcome.get("status") == RunStatus.INTERRUPTED:
        raise KeyboardInterrupt
    rec = run.record
    if "report" in outcome:
        run.report = outcome["report"]
        rec.fill(outcome["report"], outcome["seconds"])
    else:
        rec.status, rec.error, rec.seconds = TrialStatus.FAILED, outcome["error"], outcome["seconds"]
    if Path(rec.run_dir).is_dir():
        write_atomic(
            Path(rec.run_dir) / TRIAL_FILE,
            json.dumps(
                jsonable(
                    {
                        "trial": run.trial.id,
                        "seed": rec.seed,
                        "overrides": run.trial.overrides,
                        "status": rec.status,
                        "seconds": rec.seconds,
                        "error": rec.error,
                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    }
                ),
                indent=2,
            )
            + "\n",
            durable=True,
        )


def task_of(run: _Run, device: str) -> dict:
    """The picklable description of a run that :func:`run_trial` trains (in any process or node)."""
    return {
        "spec": str(run.spec_file),
        "run_dir": run.record.run_dir,
        "resume": run.resume,
        "device": device,
        "prune": run.prune,
        "base_dir": str(run.base_dir) if run.base_dir else None,
        "tracking": {**run.tracking, "trial": run.trial.id, "seed": run.record.seed} if run.tracking else None,
    }


def _trial_spec(task: dict):
    """The trial's spec file, parsed with the base spec's folder for its Custom file targets."""
    from nncli.spec import parse_spec
    from nncli.spec.source import read_text

    spec_file = Path(task["spec"])
    base_dir = Path(task["base_dir"]) if task.get("base_dir") else spec_file.resolve().parent
    return parse_spec(read_text(spec_file), file=str(spec_file), base_dir=base_dir)


def task_in_worker(task: dict, *, sweep_pid: int | None = None, thread_cap: int | None = None) -> dict:
    """``task`` for a worker process: the sweep's process id (a worker whose sweep died exits) and
    the threads its share of the cores allows."""
    return {**task, "sweep_pid": sweep_pid, "thread_cap": thread_cap}


def _exit_if_orphaned(task: dict) -> None:
    """A worker whose sweep died must not wait for tasks forever (its queue never closes: every
    worker holds both ends), nor train more: the rerun of the sweep will pick its run up."""
    sweep_pid = task.get("sweep_pid")
    if sweep_pid is not None and os.getppid() != sweep_pid:
        os._exit(0)


class TrialWorker:
    """Trains a sweep's runs one after another, in the sweep's process or in one worker process.

    Once a run came back interrupted (Ctrl-C, or SIGTERM from a sweep that stops), the runs
    already queued to this worker are not started: they come back interrupted at once.
    """

    def __init__(self) -> None:
        self.stopping = False

    def __call__(self, task: dict) -> dict:
        if self.stopping:
            return {"status": RunStatus.INTERRUPTED}
        outcome = run_trial(task)
        if outcome.get("status") == RunStatus.INTERRUPTED:
            self.stopping = True
        return outcome


# The worker of a worker process of the local pool (its initializer makes it); the sweep's own
# process never sets it: an in-process sweep owns its TrialWorker.
_pool_worker: TrialWorker | None = None


def start_pool_worker() -> None:
    """In a new worker process of the local pool: the worker that :func:`run_in_pool_worker` uses."""
    global _pool_worker
    _pool_worker = TrialWorker()


def run_in_pool_worker(task: dict) -> dict:
    """The function a pool worker process runs for each task (plain and picklable)."""
    return (_pool_worker or TrialWorker())(task)


def run_trial(task: dict) -> dict:
    """Train one run of a sweep; the entry point of every backend (a plain, picklable function).

    Args:
        task: ``{"spec": spec file, "run_dir": run folder, "resume": continue it, "device": ...}``,
            and in a worker process ``sweep_pid`` and ``thread_cap`` (:func:`task_in_worker`).

    Returns:
        ``{"report": TrainResult.to_json(), "seconds": wall time}``, ``{"status": "interrupted"}``,
        or ``{"status": "error", "error": message, "seconds": ...}`` for a run that could not
        train; the sweep goes on with the other runs either way.
    """
    from nncli.train import run_training

    started = time.perf_counter()
    _exit_if_orphaned(task)
    callbacks = []
    if task.get("prune"):  # early stopping of a bad trial, judged against the finished ones
        from nncli.sweep.search import TrialPruner

        callbacks.append(TrialPruner(task["prune"]))
    if task.get("tracking"):  # a child run of the sweep's MLflow run
        from nncli.tracking import trial_tracking

        callbacks.append(trial_tracking(task["tracking"]))
    common = {"device": task["device"], "callbacks": callbacks, "thread_cap": task.get("thread_cap")}
    try:
        if task["resume"]:
            result = run_training(None, None, None, resume=task["run_dir"], **common)
        else:
            result = run_training(_trial_spec(task), None, task["run_dir"], **common)
    except NncliError as err:
        return {"status": "error", "error": str(err), "seconds": time.perf_counter() - started}
    except Exception as exc:  # a bug or a library failure in one trial must not end the sweep
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - started}
    finally:
        _exit_if_orphaned(task)
    if result.status == RunStatus.INTERRUPTED:
        return {"status": RunStatus.INTERRUPTED}
    return {"report": result.to_json(), "seconds": time.perf_counter() - started}
