"""Ranking a sweep's configurations on validation, and its winner: ``best.yaml``.

A configuration is ranked when every seed finished: mean and spread over its seeds, ties broken
by the other validation metric, then by the smaller model. Test metrics are reported for the
winner only: choosing on validation and reporting test keeps the test set honest.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from nncli.files import write_atomic
from nncli.status import TrialStatus
from nncli.sweep.expansion import Config
from nncli.sweep.options import METRICS
from nncli.sweep.plan import SweepPlan
from nncli.sweep.results import BEST_SPEC, PRUNED, SweepResult, TrialResult
from nncli.sweep.trial_specs import spec_text, trial_spec_data


def _summarise(plan: SweepPlan, out: Path, trials: list[TrialResult], ran: int, dry_run: bool) -> SweepResult:
    records = [r for t in trials for r in t.runs]
    metric = plan.metric or (
        "accuracy" if any("accuracy" in r.val for r in records if r.status == TrialStatus.OK) else "loss"
    )
    goal = plan.goal or METRICS.get(metric, "max")
    for trial in trials:
        _settle(trial, dry_run)

    ranked = _ranked(trials, metric, goal)
    rest = [t for t in trials if t.rank is None]
    best = _best(ranked[0], metric, goal, out) if ranked else None
    return SweepResult(
        name=plan.name,
        out_dir=str(out),
        metric=metric,
        goal=goal,
        axes=[a.name for a in plan.axes],
        seeds=list(plan.seeds) if plan.seeds else None,
        trials=ranked + rest,
        search=(
            f"optuna-{plan.search.sampler}"
            if getattr(plan, "search", None) is not None
            else "random"
            if plan.random_mode
            else "grid"
        ),
        best=best,
        ran=ran,
        cached=sum(r.cached for r in records),
        failed=sum(r.status == TrialStatus.FAILED for r in records),
        dry_run=dry_run,
    )


def _ranked(trials: list[TrialResult], metric: str, goal: str) -> list[TrialResult]:
    """The trials that can be ranked on ``metric``, best first, each given its ``rank``."""
    # Ties on the metric (accuracy on a small validation split ties often) go to the lower
    # validation loss (the higher accuracy when ranking by loss), then to the smaller model,
    # then to the plan's order (sorted() is stable).
    second = "accuracy" if metric == "loss" else "loss"

    def key(t: TrialResult):
        value = t.val[metric]
        other = t.val.get(second)
        other = (-other if second == "accuracy" else other) if _finite(other) else math.inf
        return (-value if goal == "max" else value, other, t.params if t.params is not None else math.inf)

    rankable = [t for t in trials if t.status == TrialStatus.OK and metric in t.val and _finite(t.val[metric])]
    ranked = sorted(rankable, key=key)
    for i, t in enumerate(ranked, 1):
        t.rank = i
    return ranked


def _best(w: TrialResult, metric: str, goal: str, out: Path) -> dict:
    """The report's ``best`` entry: the winning trial, its best seed's run and its mean test metrics."""
    ok = [r for r in w.runs if r.status == TrialStatus.OK]
    pick = (max if goal == "max" else min)(ok, key=lambda r: r.val.get(metric, math.nan))
    test_keys = sorted({k for r in ok for k in r.test}, key=["loss", "accuracy", "error"].index)
    test = {k: statistics.fmean([r.test[k] for r in ok if k in r.test]) for k in test_keys}
    test_std = {
        k: (statistics.stdev([r.test[k] for r in ok if k in r.test]) if sum(k in r.test for r in ok) > 1 else 0.0)
        for k in test_keys
    }
    return {
        "id": w.id,
        "overrides": w.overrides,
        "spec_path": str(out / BEST_SPEC),
        "run_dir": pick.run_dir,
        "val": dict(w.val),
        "val_std": dict(w.val_std),
        "test": test,
        "test_std": test_std,
        "seeds": len(ok),
        "params": w.params,
        "flops": w.flops,
    }


def _settle(trial: TrialResult, dry_run: bool) -> None:
    """A trial's status from its runs' (pruned, ok, partial, failed, pending), its mean and std
    of each validation metric over the runs that count, its time and its first error."""
    ok = [r for r in trial.runs if r.status == TrialStatus.OK]
    failed = [r for r in trial.runs if r.status == TrialStatus.FAILED]
    if any(r.status == PRUNED for r in trial.runs) and trial.status != TrialStatus.FAILED:
        trial.status = PRUNED  # stopped by the pruner: listed with its last metrics, never ranked
    elif trial.status != TrialStatus.FAILED:
        trial.status = (
            TrialStatus.PENDING
            if dry_run and len(ok) < len(trial.runs)
            else TrialStatus.OK
            if len(ok) == len(trial.runs)
            else TrialStatus.PARTIAL
            if ok
            else TrialStatus.FAILED
            if failed
            else TrialStatus.PENDING
        )
    if trial.status == PRUNED:
        ok = [r for r in trial.runs if r.status in (TrialStatus.OK, PRUNED)]
    keys = sorted({k for r in ok for k in r.val}, key=["loss", "accuracy", "error"].index)
    for k in keys:
        values = [r.val[k] for r in ok if k in r.val]
        trial.val[k] = statistics.fmean(values)
        trial.val_std[k] = statistics.stdev(values) if len(values) > 1 else 0.0
    times = [r.seconds for r in trial.runs if r.seconds is not None]
    trial.seconds = sum(times) if times else None
    if failed and trial.error is None:
        trial.error = failed[0].error + (f" (seed {failed[0].seed})" if failed[0].seed is not None else "")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def result_spec(result: SweepResult) -> list:
    """Every layer spec of the winner's parsed spec (empty when it was not kept)."""
    trial = next((t for t in result.trials if t.id == result.best["id"]), None)
    spec = getattr(trial, "spec", None)
    return list(spec.walk()) if spec is not None else []


def _write_best(plan: SweepPlan, out: Path, result: SweepResult, configs: list[Config]) -> None:
    """``<out>/best.yaml``: the winning configuration as a spec a user can train or build on."""
    best = result.best
    config = next(c for c in configs if c.id == best["id"])
    seed = plan.seeds[0] if plan.seeds else None
    spread = f" +- {best['val_std'][result.metric]:.4g} over {best['seeds']} seeds" if best["seeds"] > 1 else ""
    test = ", ".join(f"{k} {v:.4g}" for k, v in best["test"].items() if k != "error")
    header = (
        f"Winner of nncli sweep {plan.name} ({len(result.trials)} configurations), chosen on "
        f"validation {result.metric}: {best['val'][result.metric]:.4g}{spread}.\n"
        f"overrides: {json.dumps(best['overrides'], default=str)}\n"
        f"test (reported for the winner only): {test or '-'}"
    )
    if any(layer.type == "Custom" and ".py:" in getattr(layer, "target", "") for layer in result_spec(result)):
        header += (
            f"\nCustom layer files are relative to the base spec's folder, {config.base_dir}: "
            "copy them beside this file to train it from here."
        )
    write_atomic(out / BEST_SPEC, spec_text(trial_spec_data(config, seed), header), durable=True)
