"""The tracking store as a run writes it: MLflow's own client, called away from the training loop.

A training run's store is written by a child process (:class:`ProcessStore`); a sweep's parent run,
and a run where no child can start, by one background thread (:class:`Store`). Either way every
call is made in the order submitted, so that a slow or distant store never holds up a training
step, and guarded, so that a store that is unreachable or refuses a write never fails the run. The
first failure is kept and every later call is skipped: a run is logged whole or said to have
failed, never half logged without a word. mlflow is imported where the store is written, the
first time one is used.
"""

from __future__ import annotations

import logging
import os
import time

from nncli.files import OneThread
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
        self.thread = OneThread("nncli-tracking")

    def submit(self, fn, *args) -> None:
        if self.error is None:
            self.thread.submit(self._guarded, fn, args)

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
        future = self.thread.submit(self._guarded, fn, args)
        self.thread.wait()
        return future.result()

    def wait(self) -> None:
        self.thread.wait()

    def close(self) -> None:
        self.thread.close()


# -- a store written by a process of its own ---------------------------------------------------
# A training run's store is written from a child process: mlflow's import, the store's opening and
# every insert then run beside training instead of taking turns with it for the interpreter (a
# thread would: they are Python, and so is much of a small model's training step). The training
# process only puts small tuples on a queue.


class ProcessStore:
    """The store of one training run, written in order by a child process; never raises.

    One spawned child serves every run of this process, one after another (a sweep's trials in
    one worker), so mlflow is imported once per process; :func:`warm_up` starts it early.
    ``submit(op, *args)`` queues one of :data:`OPS` (``open``, ``log``, ``upload``, ``end``);
    :meth:`poll` reads what the child said so far (its first error, the run id) without waiting,
    :meth:`sync` waits until everything queued is done. If no child can start, the same
    operations run on a background thread (:class:`Store`).
    """

    def __init__(self, uri: str) -> None:
        import uuid

        self.uri = uri
        self.token = uuid.uuid4().hex
        self.error: str | None = None
        self.run_id: str | None = None
        self.fallback: Store | None = None
        self.child = _child()
        if self.child is None:
            self.fallback, self.state = Store(uri), {"run_id": None}
        else:
            self.child[1].put(("begin", self.token, (uri,)))

    def submit(self, op: str, *args) -> None:
        if self.error is not None:
            return
        if self.fallback is not None:
            self.fallback.submit(lambda client, *a: OPS[op](client, self.state, *a), *args)
        else:
            self.child[1].put((op, self.token, args))

    def poll(self) -> None:
        """What the child said so far (its first error, the run id), without waiting."""
        if self.fallback is not None:
            self.error, self.run_id = self.fallback.error, self.state["run_id"]
            return
        import queue

        while True:
            try:
                self._read(self.child[2].get_nowait())
            except queue.Empty:
                return

    def sync(self) -> None:
        """Wait until everything queued is done (or the child died)."""
        if self.fallback is not None:
            self.fallback.wait()
            return self.poll()
        import queue

        self.child[1].put(("sync", self.token, ()))
        while True:
            try:
                if self._read(self.child[2].get(timeout=1.0)):
                    return
            except queue.Empty:
                if not self.child[0].is_alive():
                    self.error = self.error or "the tracking process ended unexpectedly"
                    return

    def _read(self, message: dict) -> bool:
        if message.get("token") != self.token:  # an earlier run's news
            return False
        self.error = self.error or message.get("error")
        self.run_id = message.get("run_id") or self.run_id
        return bool(message.get("synced"))

    def close(self) -> None:
        if self.fallback is not None:
            self.fallback.close()
        elif self.child[0].is_alive():
            self.sync()
            self.child[1].put(("forget", self.token, ()))


_CHILD: tuple | None = None  # (process, inbox, outbox): the child of this process, once started


def _child() -> tuple | None:
    """This process's tracking child, started on first use; None where none can start."""
    global _CHILD
    if _CHILD is not None and _CHILD[0].is_alive():
        return _CHILD
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    try:
        inbox, outbox = ctx.Queue(), ctx.Queue()
        proc = ctx.Process(target=serve, args=(inbox, outbox, os.getpid()), name="nncli-tracking", daemon=True)
        proc.start()
    except (AssertionError, OSError, RuntimeError):  # a daemonic process cannot start children
        return None
    _CHILD = (proc, inbox, outbox)
    return _CHILD


def warm_up(uri: str) -> None:
    """Start this process's tracking child and have it import mlflow and open ``uri`` now, while
    the caller loads data and builds the model (best effort: a failure shows when a run logs)."""
    child = _child()
    if child is not None:
        child[1].put(("warm", "", (uri,)))


def serve(inbox, outbox, parent: int) -> None:
    """The child process: run the operations it is sent, in order, until told to stop (None) or
    its parent is gone; report a run's first error at once, and its state when asked (``sync``).

    Metrics wait here up to :data:`FLUSH_S` and go to the store in one insert: a tracked run's
    epochs and steps cost the store one write every few seconds rather than one per epoch."""
    import gc
    import queue

    # mlflow's import and the store's opening build many objects and free few: the collector,
    # left on, walks them again and again for nothing (enabled again once the store is open)
    gc.disable()
    server = _Server(outbox)
    while True:
        try:
            message = inbox.get(timeout=server.timeout())
        except queue.Empty:
            server.flush(due_only=True)
            if os.getppid() != parent:  # the training process died (even SIGKILL): write what it sent
                server.flush()
                return
            continue
        if message is None:
            server.flush()
            return
        server.handle(*message)


FLUSH_S = 2.0  # how long a run's metrics may wait in the child before they are written
IDLE_S = 2.0  # how often an idle child looks whether its parent is still there


class _Server:
    """The child's state: the runs it serves (by token), the clients it opened (by URI) and the
    metrics and tags waiting to be written (by token: since when, metrics, tags)."""

    def __init__(self, outbox) -> None:
        self.outbox = outbox
        self.runs: dict = {}
        self.clients: dict = {}
        self.waiting: dict = {}

    def timeout(self) -> float:
        if not self.waiting:
            return IDLE_S
        first = min(since for since, _, _ in self.waiting.values())
        return max(0.0, first + FLUSH_S - time.monotonic())

    def handle(self, op: str, token: str, args: tuple) -> None:
        if op in ("begin", "warm"):
            self.runs[token] = {"uri": args[0], "run_id": None, "error": None}
            if op == "begin":
                return
        run = self.runs.get(token)
        if run is None:  # a token never begun or already forgotten: answer, never die (other runs share this)
            if op == "sync":
                self.outbox.put({"token": token, "run_id": None, "error": "unknown run", "synced": True})
            return
        if op == "log":
            if run["error"] is None:
                _, metrics, tags = self.waiting.setdefault(token, (time.monotonic(), [], []))
                metrics.extend(args[0])
                tags.extend(args[1] if len(args) > 1 else ())
            return
        self.flush(token)  # what waits is written before anything sent after it
        if op == "sync":
            self.outbox.put({"token": token, "run_id": run["run_id"], "error": run["error"], "synced": True})
        elif op == "forget":
            self.runs.pop(token, None)
        elif run["error"] is None:
            self.call(op, args, run, token)

    def flush(self, token: str | None = None, *, due_only: bool = False) -> None:
        """Write the waiting metrics of ``token`` (None: of every run; ``due_only``: those that
        waited :data:`FLUSH_S`)."""
        for key in [token] if token is not None else list(self.waiting):
            entry = self.waiting.get(key)
            if entry is None or (due_only and time.monotonic() < entry[0] + FLUSH_S):
                continue
            del self.waiting[key]
            run = self.runs.get(key)
            if run is not None and run["error"] is None:
                self.call("log", (entry[1], entry[2]), run, key)

    def call(self, op: str, args: tuple, run: dict, token: str) -> None:
        try:
            if op == "warm" and run["uri"] in self.clients:
                return  # opened for an earlier run of this process
            client = self.client(run["uri"])
            if op == "warm":
                client.search_experiments(max_results=1)  # the store opened (a SQLite file's tables made)
                return
            _retry_locked(OPS[op], client, run, *args)
            if op == "open":  # the run id, for report.json, without waiting for the rest
                self.outbox.put({"token": token, "run_id": run["run_id"], "error": None})
        except Exception as exc:
            run["error"] = describe(exc)
            self.outbox.put({"token": token, "run_id": run["run_id"], "error": run["error"]})

    def client(self, uri: str):
        if uri not in self.clients:
            import gc

            try:
                self.clients[uri] = open_client(uri)
            finally:
                if not gc.isenabled():  # mlflow's modules kept out of every later collection
                    gc.freeze()
                    gc.enable()
        return self.clients[uri]


def _retry_locked(fn, *args) -> None:
    """``fn(*args)``, tried again while a SQLite store answers "database is locked"."""
    for attempt in range(LOCKED_TRIES):
        try:
            return fn(*args)
        except Exception as exc:
            if "database is locked" not in str(exc) or attempt + 1 == LOCKED_TRIES:
                raise
            time.sleep(0.2 * (attempt + 1))


def _op_open(client, state: dict, experiment: str, uri: str, previous: str | None, opening: dict) -> None:
    """Create the run (or reopen ``previous``), record it in the run folder, log its params."""
    import json

    from nncli.files import write_atomic
    from nncli.tracking import content

    experiment_id = ensure_experiment(client, experiment, uri)
    logged: dict = {}
    if previous is not None:
        run = client.get_run(previous)
        client.update_run(run.info.run_id, status="RUNNING")
        logged = run.data.params
    else:
        run = client.create_run(experiment_id, run_name=opening["name"], tags=opening["tags"])
    state["run_id"] = run.info.run_id
    record = {"uri": uri, "experiment": experiment, "run_id": state["run_id"]}
    write_atomic(opening["record"], json.dumps(record, indent=2) + "\n")
    # a param's value cannot change in MLflow: a resumed run (more epochs) keeps the first ones
    params = [(k, v) for k, v in content.run_params(opening["run_dir"]) if k not in logged]
    log_batch(client, state["run_id"], params=params, tags=list(opening["tags"].items()) if previous else ())


def _op_log(client, state: dict, metrics: list, tags: list = ()) -> None:
    log_batch(client, state["run_id"], metrics=metrics, tags=tags)


def _op_upload(client, state: dict, files: list, folder: str | None) -> None:
    for path in files:
        client.log_artifact(state["run_id"], str(path), folder)


def _op_end(client, state: dict, status: str) -> None:
    client.set_terminated(state["run_id"], status)


OPS = {"open": _op_open, "log": _op_log, "upload": _op_upload, "end": _op_end}
