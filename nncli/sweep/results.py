"""What ``nncli sweep`` reports: a record per run, per configuration and for the whole sweep (its
``to_json`` is the documented ``sweep.json`` / ``--json`` schema), the progress events, and the
names of the files a sweep writes. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nncli.formatting import jsonable
from nncli.status import FINISHED, RunStatus, TrialStatus

TRIAL_FILE = "trial.json"  # written into a trial's run folder when its training has finished
RESULT_FILE = "sweep.json"
BEST_SPEC = "best.yaml"
PRUNED = TrialStatus.PRUNED  # stopped early by the sweep's pruner: recorded, never ranked as finished


@dataclass
class RunRecord:
    """One training run of a configuration (one seed)."""

    seed: int | None
    run_dir: str
    status: str  # ok, failed, pruned, pending (--dry-run), skipped (not run: the sweep stopped first)
    val: dict = field(default_factory=dict)  # {"loss", "accuracy"} with the best weights
    seconds: float | None = None  # train's duration_s (loop and evaluation); wall time for a failure
    best_epoch: int | None = None
    epochs: int | None = None
    error: str | None = None
    cached: bool = False  # finished by an earlier invocation, read back from its run folder
    test: dict = field(default_factory=dict, repr=False)  # kept out of reports except the winner's

    def fill(self, report: dict, seconds: float | None) -> None:
        """Copy a train report (TrainResult.to_json()) into this record."""
        status = report.get("status")
        self.status = (
            TrialStatus.OK if status in FINISHED else PRUNED if status == RunStatus.PRUNED else TrialStatus.FAILED
        )
        self.val = _metrics(report.get("val") or {})
        if self.status == PRUNED and report.get("history"):  # its last epoch: where the pruner stopped it
            last = report["history"][-1]
            self.val = _metrics({"loss": last.get("val_loss"), "accuracy": last.get("val_accuracy")})
        self.test = _metrics(report.get("test") or {})
        self.best_epoch = report.get("best_epoch")
        self.epochs = report.get("epochs")
        # train's own clock (model, loop, evaluation): comparable across trials, unlike wall time,
        # which also holds each worker's one-off start-up (imports, first meta-tensor call)
        self.seconds = report.get("duration_s") if report.get("duration_s") is not None else seconds
        if self.status == TrialStatus.FAILED:
            self.error = report.get("message") or f"training ended with status {status}"

    def to_json(self) -> dict:
        return {
            "seed": self.seed,
            "run_dir": self.run_dir,
            "status": self.status,
            "val": self.val,
            "seconds": self.seconds,
            "best_epoch": self.best_epoch,
            "epochs": self.epochs,
            "error": self.error,
            "cached": self.cached,
        }


def _metrics(split: dict) -> dict:
    out = {k: split[k] for k in ("loss", "accuracy") if split.get(k) is not None}
    if "accuracy" in out:
        out["error"] = 1.0 - out["accuracy"]
    return out


@dataclass
class TrialResult:
    """One configuration: its overrides, its runs (one per seed) and their aggregate."""

    id: str
    overrides: dict[str, Any]
    spec_path: str  # the configuration's spec (seed of the first run)
    runs: list[RunRecord]
    index: int = 0  # position in the plan (the grid's order), for plots and stable listings
    params: int | None = None
    flops: int | None = None  # forward FLOPs per example
    status: str = TrialStatus.PENDING  # ok (every seed finished), partial, failed, pruned, pending
    val: dict = field(default_factory=dict)  # mean over the finished seeds
    val_std: dict = field(default_factory=dict)  # sample standard deviation over seeds (0 for one)
    seconds: float | None = None  # summed over seeds
    rank: int | None = None  # 1 = best; None when not ranked (not every seed finished)
    error: str | None = None
    spec: Any = field(default=None, repr=False)  # the parsed spec (counted on meta tensors), not reported

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "rank": self.rank,
            "status": self.status,
            "overrides": self.overrides,
            "val": self.val,
            "val_std": self.val_std,
            "params": self.params,
            "flops": self.flops,
            "seconds": self.seconds,
            "error": self.error,
            "spec_path": self.spec_path,
            "runs": [r.to_json() for r in self.runs],
        }


@dataclass
class SweepResult:
    """Everything ``nncli sweep`` reports; ``to_json`` is its documented schema."""

    name: str
    out_dir: str
    metric: str  # the validation metric ranked on: accuracy, loss
    goal: str  # max or min
    axes: list[str]
    seeds: list | None
    trials: list[TrialResult]  # ranked first (best first), then the rest in plan order
    best: dict | None  # {"id", "spec_path", "run_dir", "val", "test", "overrides"}
    search: str = "grid"  # grid (every combination), random (a seeded sample), or optuna-<sampler>
    ran: int = 0  # runs trained by this invocation
    cached: int = 0  # runs read back from an earlier invocation
    failed: int = 0
    dry_run: bool = False
    plot: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        return jsonable(
            {
                "name": self.name,
                "out_dir": self.out_dir,
                "metric": self.metric,
                "goal": self.goal,
                "axes": self.axes,
                "search": self.search,
                "seeds": self.seeds,
                "dry_run": self.dry_run,
                "trials": [t.to_json() for t in self.trials],
                "best": self.best,
                "ran": self.ran,
                "cached": self.cached,
                "failed": self.failed,
                "plot": self.plot,
                "seconds": self.seconds,
            }
        )


@dataclass
class SweepEvent:
    """Progress for the CLI (the tool itself never prints)."""

    kind: str  # "plan", "start", "done"
    done: int  # runs finished so far (cached ones included)
    total: int
    trial: str | None = None
    run: RunRecord | None = None
    message: str | None = None
