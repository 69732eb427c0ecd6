"""The ``ray`` backend: each run of a sweep is a Ray Tune trial (the ``nncli[ray]`` extra).

By default a Ray instance is started for the sweep on this machine (loopback only, no dashboard,
as many CPUs as the machine has) and shut down after; ``--address auto`` or ``HOST:PORT`` joins a
cluster started with ``ray start --head`` (nncli installed on every node, the sweep folder on
storage every node sees). ``--cpus-per-trial`` / ``--gpus-per-trial`` are the resources Tune
reserves per trial; a trial trains with as many torch threads as the CPUs it reserved.

A trial calls :func:`~nncli.sweep.execute.run_trial`, the same function the local pool calls, so
its run folder, report and resume rule are the same; only the outcome travels back through Tune.
Tune's own files (its experiment state) go to a temporary folder removed after the sweep. Ray's
console output is sent to stderr: ``--json`` keeps stdout to one document.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from nncli.status import RunStatus
from nncli.sweep.execute import record_outcome, task_of
from nncli.sweep.extras import require
from nncli.sweep.results import SweepEvent


def execute_ray(pending: list, options, device: str, notify, done: int, total: int) -> int:
    """Train the pending runs as Ray Tune trials; the number trained."""
    require("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    import ray
    from ray import tune

    tasks = []
    for run in pending:
        task = task_of(run, device)
        # Tune runs a trial in its own working folder: every path it reads must be absolute
        task["spec"], task["run_dir"] = str(Path(task["spec"]).resolve()), str(Path(task["run_dir"]).resolve())
        tasks.append(task)
    by_dir = {t["run_dir"]: run for t, run in zip(tasks, pending)}
    for run in pending:
        notify(SweepEvent("start", done, total, run.trial.id, run.record))
    storage = tempfile.mkdtemp(prefix="nncli-ray-")
    ran = 0
    with _stdout_to_stderr():
        if not ray.is_initialized():  # ray_session() normally started it for the whole sweep
            _init(options)
        try:
            resources = {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}
            tuner = tune.Tuner(
                tune.with_resources(_tune_trial, resources),
                param_space={"task": tune.grid_search(tasks)},
                tune_config=tune.TuneConfig(num_samples=1),
                run_config=tune.RunConfig(
                    name="nncli-sweep",
                    storage_path=storage,
                    verbose=0,
                    failure_config=tune.FailureConfig(max_failures=0),
                ),
            )
            grid = tuner.fit()
            outcomes = {}
            for result in grid:
                task = (result.config or {}).get("task") or {}
                metrics = result.metrics or {}
                if "outcome" in metrics:
                    outcomes[task.get("run_dir")] = json.loads(metrics["outcome"])
                elif task:
                    outcomes[task.get("run_dir")] = {
                        "status": "error",
                        "seconds": None,
                        "error": f"Ray trial failed: {result.error}",
                    }
        finally:
            shutil.rmtree(storage, ignore_errors=True)
    interrupted = False
    for run_dir, run in by_dir.items():  # in the plan's order, as the local backend reports them
        outcome = outcomes.get(run_dir, {"status": RunStatus.INTERRUPTED})
        if outcome.get("status") == RunStatus.INTERRUPTED:
            interrupted = True  # the others are recorded first: their folders are complete
            continue
        record_outcome(run, outcome)
        done, ran = done + 1, ran + 1
        notify(SweepEvent("done", done, total, run.trial.id, run.record))
    if interrupted:
        raise KeyboardInterrupt
    return ran


@contextmanager
def ray_session(options):
    """Ray for the whole sweep (a guided search trains batch after batch): joined or started on
    entry, and shut down on exit when this sweep started it."""
    require("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    started_here = not ray.is_initialized()
    reaper = None
    if started_here:
        with _stdout_to_stderr():
            _init(options)
        reaper = _start_reaper() if not options.address else None
    try:
        yield
    finally:
        if started_here:
            with _stdout_to_stderr():
                ray.shutdown()
        if reaper is not None:
            reaper.stdin.close()  # the reaper stops what ray.shutdown left behind, then exits


# Run beside the sweep, in a session of its own: when its stdin closes (the sweep ended, or died
# by SIGKILL and the kernel closed the pipe) it kills every process still holding a file of this
# Ray session (its agents outlive a killed driver under PID 1), the sweep itself excepted.
_REAPER = r"""
import os, signal, sys, time
driver, session = int(sys.argv[1]), sys.argv[2]
sys.stdin.read()
time.sleep(1.0)  # ray.shutdown, when it ran, stops its processes first
for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
    if pid in (driver, os.getpid()):
        continue
    try:
        held = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        held.append(open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"))
    except OSError:
        continue
    if any(session in path for path in held):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


def _start_reaper():
    """The reaper of a Ray instance this sweep started (Linux, where /proc lists open files); None
    elsewhere or when Ray does not say where its session lives."""
    import subprocess
    import sys

    try:
        from ray._private import worker

        session = worker._global_node.get_session_dir_path()
    except (ImportError, AttributeError):
        return None
    if not sys.platform.startswith("linux") or not session:
        return None
    return subprocess.Popen(
        [sys.executable, "-c", _REAPER, str(os.getpid()), str(session)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _init(options) -> None:
    import ray

    if options.address:
        ray.init(address=options.address, log_to_driver=False, logging_level="ERROR")
    else:  # a local instance of its own (never a cluster some `ray start` left running):
        # loopback only, no dashboard, this machine's CPUs
        ray.init(
            address="local",
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            _node_ip_address="127.0.0.1",
        )


def _tune_trial(config: dict) -> None:
    """A Tune trial: train one run with the threads its reserved CPUs allow; report the outcome."""
    import torch
    from ray import tune

    from nncli.sweep.execute import run_trial, task_in_worker

    cpus = max(1, int(float(os.environ.get("OMP_NUM_THREADS") or 1)))  # Ray sets it to the trial's CPUs
    torch.set_num_threads(cpus)
    outcome = run_trial(task_in_worker(config["task"], thread_cap=cpus))
    tune.report({"outcome": json.dumps(outcome)})


@contextmanager
def _stdout_to_stderr():
    """Ray and Tune write progress to stdout, in this process and the ones it starts: send it to
    stderr, at the file-descriptor level, while they run."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
