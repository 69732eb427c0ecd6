"""Where a sweep's trials train: the backends of ``nncli sweep --backend``.

- ``local`` (:mod:`~nncli.sweep.backends.local`, the default, no extra needed): in this process,
  or a pool of spawned worker processes on this machine;
- ``ray`` (:mod:`~nncli.sweep.backends.ray`, the ``nncli[ray]`` extra): each run is a Ray Tune
  trial, on a Ray instance started for the sweep or an existing cluster (``--address``).

A backend trains a batch of pending runs and hands each outcome to
:func:`~nncli.sweep.execute.record_outcome`; the run folders, their resume rule, the ranking and
``sweep.json`` are the same whichever trained them.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass


@dataclass(frozen=True)
class BackendOptions:
    """How the runs are spread: ``workers`` for local, a Ray address and per-trial resources for ray."""

    name: str = "local"
    workers: int = 1
    address: str | None = None  # ray: None starts a local instance; "auto" or HOST:PORT joins a cluster
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    # the MLflow store and parent run each trial logs to (nncli.tracking.SweepTracking.for_trials)
    tracking: dict | None = None


def execute(pending: list, options: BackendOptions, device: str, notify, done: int, total: int) -> int:
    """Train the pending runs (``nncli.sweep.execute._Run``) on the chosen backend; the runs trained."""
    for run in pending:
        run.tracking = options.tracking
    if options.name == "ray":
        from nncli.sweep.backends.ray import execute_ray

        return execute_ray(pending, options, device, notify, done, total)
    from nncli.sweep.backends.local import execute_local

    return execute_local(pending, options.workers, device, notify, done, total)


def session(options: BackendOptions):
    """What the backend holds for the whole sweep: a Ray instance for ray, nothing for local."""
    if options.name == "ray":
        from nncli.sweep.backends.ray import ray_session

        return ray_session(options)
    return nullcontext()
