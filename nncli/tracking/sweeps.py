""":class:`SweepTracking`: a sweep as one parent run in the tracking store, its trials as children.

The parent run is opened before the first trial trains (its id kept in ``<sweep>/tracking.json``,
so that rerunning the sweep into the same folder logs to the same parent) and gets, when the
sweep ends, the ranking (``ranking.json``, ranked trials only: a pruned trial is never ranked),
``sweep.json``, the winner's validation and test metrics and tags naming the winner and its run.
Each trial is a child run logged by :class:`~nncli.tracking.callback.MLflowTracking` in whatever
process trains it (this one, a worker process, a Ray trial): :meth:`SweepTracking.for_trials` is
the picklable description it gets. A trial whose run could not be logged (its own store failed,
or it was trained untracked by an earlier invocation) is named when the sweep ends: in a tag of
the parent run (``nncli.sweep.untracked``), in ``<sweep>/tracking.json`` and in :meth:`describe`,
which the sweep prints on stderr.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from nncli.files import write_atomic
from nncli.runs import REPORT_FILE
from nncli.tracking.callback import TRACKING_FILE, read_tracking
from nncli.tracking.options import TrackingOptions
from nncli.tracking.store import Store, ensure_experiment, log_batch


class SweepTracking:
    """The parent run of a sweep named ``name`` written to folder ``out``."""

    def __init__(self, options: TrackingOptions, name: str, out: str | Path) -> None:
        self.options = options
        self.name = name
        self.out = Path(out)
        self.experiment = options.experiment or name
        self.store = Store(options.uri)
        self.run_id: str | None = None
        self.untracked: dict[str, str] = {}  # trial id -> why its run is not in the store

    def start(self, plan) -> dict | None:
        """Open (or reopen) the parent run of ``plan`` (a :class:`~nncli.sweep.plan.SweepPlan`);
        the trials' tracking (:meth:`for_trials`), or None when the store failed (:attr:`error`
        says why; the sweep goes on untracked)."""
        previous = read_tracking(self.out)
        if previous is not None and previous.get("uri") != self.options.uri:
            previous = None
        params = {
            "sweep.name": plan.name,
            "sweep.axes": ", ".join(a.name for a in plan.axes),
            "sweep.metric": plan.metric or "auto",
            "sweep.seeds": json.dumps(list(plan.seeds) if plan.seeds else None),
            "sweep.search": plan.search.sampler
            if plan.search is not None
            else "random"
            if plan.random_mode
            else "grid",
        }
        self.store.call(self._open, previous, params)
        return self.for_trials() if self.store.error is None else None

    @property
    def error(self) -> str | None:
        return self.store.error

    def for_trials(self) -> dict:
        """What a trial's process needs to log a child run (plain data: it is pickled)."""
        return {"uri": self.options.uri, "experiment": self.experiment, "parent_run_id": self.run_id}

    def finish(self, result) -> None:
        """The ranking, the winner's metrics and ``sweep.json`` on the parent run, which ends;
        the trials whose runs are not in the store are named (:attr:`untracked`)."""
        if self.run_id is None:
            return self.store.close()
        self.untracked = untracked_trials(result)
        self.store.call(self._finish, result)
        self.store.close()

    def describe(self) -> str:
        """One line for the sweep's progress: where it logs, that the store failed, or (at the
        end) which trials' runs are not in the store."""
        if self.error is not None:
            return (
                f"tracking: the store at {self.options.uri} failed ({self.error}); "
                "the sweep goes on and its folder keeps everything"
            )
        if self.untracked:
            named = "; ".join(f"{trial} ({why})" for trial, why in self.untracked.items())
            return (
                f"tracking: {len(self.untracked)} trial(s) not logged to the store at {self.options.uri}: "
                f"{named}; their run folders keep everything"
            )
        return f"tracking: MLflow experiment {self.experiment!r} at {self.options.uri}, parent run {self.run_id}"

    @property
    def warning(self) -> str | None:
        """The line the sweep says when it ends (None when every trial was logged)."""
        return self.describe() if self.error is not None or self.untracked else None

    def summary(self) -> dict:
        return {
            "uri": self.options.uri,
            "experiment": self.experiment,
            "run_id": self.run_id,
            "status": "failed" if self.error else "logged",
            "error": self.error,
            "untracked": dict(self.untracked),
        }

    # -- on the store's thread ------------------------------------------------------------------
    def _open(self, client, previous: dict | None, params: dict) -> None:
        experiment_id = ensure_experiment(client, self.experiment, self.options.uri)
        if previous is not None:
            run = client.get_run(previous["run_id"])
            client.update_run(run.info.run_id, status="RUNNING")
            logged = run.data.params
        else:
            tags = {"nncli.sweep": self.name, "nncli.sweep_dir": str(self.out.resolve()), "nncli.role": "sweep"}
            run = client.create_run(experiment_id, run_name=f"sweep-{self.name}", tags=tags)
            logged = {}
        self.run_id = run.info.run_id
        self.out.mkdir(parents=True, exist_ok=True)
        self._record()
        log_batch(client, self.run_id, params=[(k, v) for k, v in params.items() if k not in logged])

    def _record(self) -> None:
        """``<sweep>/tracking.json``: the store, the parent run and the trials not logged."""
        record = {"uri": self.options.uri, "experiment": self.experiment, "run_id": self.run_id}
        if self.untracked:
            record["untracked"] = self.untracked
        write_atomic(self.out / TRACKING_FILE, json.dumps(record, indent=2) + "\n")

    def _finish(self, client, result) -> None:
        ranking = _ranking(result)
        tags = [
            ("nncli.sweep.trials", str(len(result.trials))),
            ("nncli.sweep.ranked", str(len(ranking))),
            ("nncli.sweep.pruned", str(sum(t.status == "pruned" for t in result.trials))),
        ]
        if self.untracked:
            tags.append(("nncli.sweep.untracked", ", ".join(self.untracked)))
            self._record()
        metrics = []
        if result.best is not None:
            winner = read_tracking(result.best["run_dir"]) or {}
            tags += [("nncli.sweep.winner", result.best["id"]), ("nncli.sweep.winner_run_id", winner.get("run_id", ""))]
            for split in ("val", "test"):
                for key, value in (result.best.get(split) or {}).items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        metrics.append((f"best_{split}_{key}", value, 0))
        log_batch(client, self.run_id, metrics=metrics, tags=tags)
        with tempfile.TemporaryDirectory(prefix="nncli-tracking-") as tmp:
            path = Path(tmp) / "ranking.json"
            path.write_text(json.dumps(ranking, indent=2, default=str) + "\n", encoding="utf-8")
            client.log_artifact(self.run_id, str(path))
        sweep_json = self.out / "sweep.json"
        if sweep_json.is_file():
            client.log_artifact(self.run_id, str(sweep_json))
        client.set_terminated(self.run_id, "FINISHED" if result.best is not None else "FAILED")


def untracked_trials(result) -> dict[str, str]:
    """The trials with a trained run that is not in the store, each with why: its store failed
    (``report.json`` says so) or it was trained untracked (by an earlier invocation)."""
    out: dict[str, str] = {}
    for trial in result.trials:
        for run in trial.runs:
            try:
                report = json.loads((Path(run.run_dir) / REPORT_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not trained (failed before its report, skipped, pending)
            tracking = report.get("tracking") if isinstance(report, dict) else None
            if not isinstance(tracking, dict):
                why = "trained without tracking"
            elif tracking.get("status") != "logged":
                why = f"failed: {tracking.get('error') or 'unknown error'}"
            else:
                continue
            several = run.seed is not None and len(trial.runs) > 1
            out.setdefault(trial.id, f"seed {run.seed} {why}" if several else why)
    return out


def _ranking(result) -> list[dict]:
    """The ranked trials, best first, each with the MLflow runs of its seeds."""
    rows = []
    for trial in sorted((t for t in result.trials if t.rank is not None), key=lambda t: t.rank):
        runs = [(read_tracking(r.run_dir) or {}).get("run_id") for r in trial.runs]
        rows.append(
            {
                "rank": trial.rank,
                "id": trial.id,
                "overrides": trial.overrides,
                "val": trial.val,
                "val_std": trial.val_std,
                "params": trial.params,
                "run_ids": runs,
            }
        )
    return rows
