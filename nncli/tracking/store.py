"""The tracking store as a run writes it: MLflow's own client, called on one background thread.

Every call goes through :class:`Store`: in the order submitted, on a thread of its own, so that a
slow or distant store never holds up a training step, and guarded, so that a store that is
unreachable or refuses a write never fails the run. The first failure is kept (:attr:`Store.error`)
and every later call is skipped: a run is logged whole or said to have failed, never half logged
without a word. mlflow is imported on that thread, the first time a store is used.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from nncli.tracking.options import LOCAL_ARTIFACTS, is_http, local_path

# MLflow's limits per log_batch call (mlflow.utils.validation)
MAX_METRICS = 1000
MAX_PARAMS = 100
MAX_PARAM_LENGTH = 6000
# A SQLite store written by several processes at once (a sweep's workers) answers "database is
# locked" while another holds the write lock: such a call is tried again a few times.
LOCKED_TRIES = 8
# MLflow retries an HTTP request 7 times with a doubling back-off and waits 120 s for each: minutes
# before an unreachable server is reported. nncli's defaults, unless the environment sets them.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def open_client(uri: str):
    """MLflow's ``MlflowClient`` on ``uri`` (mlflow imported here); MLflow's set-up chatter (the
    SQLite schema's creation) kept off the terminal, where nncli shows its progress."""
    if is_http(uri):
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow import MlflowClient

    db = local_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def ensure_experiment(client, name: str, uri: str) -> str:
    """The id of experiment ``name``, created when missing (a local store's artifacts go beside
    its database file); reopened if it was deleted."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    db = local_path(uri)
    location = (db.resolve().parent / LOCAL_ARTIFACTS / _slug(name)).as_uri() if db is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it meanwhile (a sweep's workers)
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "experiment"


def describe(exc: BaseException) -> str:
    """One line for a failed call: MLflow's HTTP errors run to many lines of retry history."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def log_batch(client, run_id: str, metrics=(), params=(), tags=()) -> None:
    """``(key, value, step)`` metrics, ``(key, value)`` params and tags, in as many calls as
    MLflow's per-call limits need."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, int(step)) for k, v, step in metrics]
    params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params]
    tags = [RunTag(k, str(v)) for k, v in tags]
    for i in range(0, len(metrics), MAX_METRICS):
        client.log_batch(run_id, metrics=metrics[i : i + MAX_METRICS])
    for i in range(0, max(len(params), len(tags)), MAX_PARAMS):
        client.log_batch(run_id, params=params[i : i + MAX_PARAMS], tags=tags[i : i + MAX_PARAMS])


class Store:
    """One tracking store, written in order on a background thread; never raises.

    ``submit(fn, *args)`` queues ``fn(client, *args)``; :meth:`wait` blocks until everything
    queued is done. After a failure :attr:`error` says what failed and later calls are skipped.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.error: str | None = None
        self.client = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nncli-tracking")
        self.pending: list = []

    def submit(self, fn, *args) -> None:
        if self.error is None:
            self.pending.append(self.pool.submit(self._guarded, fn, args))

    def _guarded(self, fn, args):
        if self.error is not None:
            return None
        for attempt in range(LOCKED_TRIES):
            try:
                if self.client is None:
                    self.client = open_client(self.uri)
                return fn(self.client, *args)
            except Exception as exc:
                if "database is locked" in str(exc) and attempt + 1 < LOCKED_TRIES:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                self.error = describe(exc)
                return None

    def call(self, fn, *args):
        """``fn(client, *args)`` now, after everything queued; its value, or None if it failed."""
        if self.error is not None:
            return None
        future = self.pool.submit(self._guarded, fn, args)
        self.pending.append(future)
        self.wait()
        return future.result()

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)
