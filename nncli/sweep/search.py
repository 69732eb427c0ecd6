"""Search beyond the grid: Optuna's samplers (``tpe``, ``random``, ``grid``; seeded) choose each
configuration from the results so far, and its pruners (``asha``, ``median``) stop a clearly bad
trial at an epoch's end from its per-epoch validation metric. Needs the ``nncli[optuna]`` extra.

The sweep file's ``search:`` section (or ``--sampler`` / ``--pruner``)::

    search: {sampler: tpe, pruner: asha, seed: 0, startup_trials: 5}

How the pieces fit, whatever the backend:

- the sweep process holds the study; it asks for a batch of configurations (``workers`` at a time:
  one for the in-process sweep), trains them, and tells the study each result;
- a trial is pruned by :class:`TrialPruner`, the train loop's per-epoch hook, in the process that
  trains it: it gets a copy of the study's finished trials (their per-epoch values) taken when the
  batch started, so a decision depends only on trials that had finished, and is the same on the
  local and the Ray backend;
- a pruned trial's run ends with status ``pruned`` (checkpoint kept); the sweep records it with
  its last metrics and never ranks it;
- a rerun replays the same asks (the sampler is seeded and is told the same results, read back
  from the finished run folders), so it reuses finished trials and continues the rest. The batch
  size is part of that replay: rerun with the same ``--workers``.

Parsing (:func:`read_search`) is pure Python; optuna is imported only when a study is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nncli.errors import InputError
from nncli.seeds import SEED_MAX
from nncli.spec.parse import describe_found
from nncli.status import RunStatus
from nncli.sweep.options import METRICS
from nncli.train.callbacks import Callback

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "asha", "median")
SEARCH_KEYS = ("sampler", "pruner", "seed", "startup_trials")


@dataclass(frozen=True)
class SearchSettings:
    """The ``search:`` section: which sampler and pruner, and their seed."""

    sampler: str = "tpe"
    pruner: str = "none"
    seed: int = 0
    startup_trials: int | None = None  # tpe: random trials before modelling; median: trials before pruning


def read_search(
    doc, section: Any, sampler: str | None, pruner: str | None, seed: int | None, axes: list, grid_plan: bool
) -> SearchSettings | None:
    """The ``search:`` section of sweep file ``doc`` with ``--sampler`` / ``--pruner`` applied; None
    when neither asks for Optuna (the sweep is then a plain grid or random search)."""
    if section is None and sampler is None and pruner in (None, "none"):
        return None
    data = {}
    if section is not None:
        if not isinstance(section, dict):
            raise doc.where(("search",)).error(
                f"expected a mapping, found {describe_found(section)}",
                "e.g. search: {sampler: tpe, pruner: asha, seed: 0}",
            )
        for key in section:
            if key not in SEARCH_KEYS:
                raise doc.where(("search", key), key=True).error(
                    f"unknown key {key!r} in `search`", "allowed: " + ", ".join(SEARCH_KEYS)
                )
        data = dict(section)
    for key, choices in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if key in data and data[key] not in choices:
            raise doc.where(("search", key)).error(
                f"expected one of {', '.join(choices)}, found {describe_found(data[key])}"
            )
    for key in ("seed", "startup_trials"):
        v = data.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= SEED_MAX):
            raise doc.where(("search", key)).error(
                f"expected an integer from 0 to {SEED_MAX:,}, found {describe_found(v)}"
            )
    discrete = all(a.dist == "choice" for a in axes)
    # no sampler named: the file's own kind of search (a grid stays a grid, a random sample random)
    chosen = sampler or data.get("sampler") or ("grid" if grid_plan and discrete else "random")
    if chosen == "grid" and not discrete:
        where = doc.where(("search", "sampler")) if data.get("sampler") == "grid" else None
        message = "the grid sampler needs every axis to list its values (no distributions)"
        if where is None:
            raise InputError(message, param="sampler")
        raise where.error(message)
    return SearchSettings(
        sampler=chosen,
        pruner=pruner or data.get("pruner") or "none",
        seed=seed if seed is not None else data.get("seed", 0),
        startup_trials=data.get("startup_trials"),
    )


# ---- the study (optuna imported from here on) -----------------------------------------------


def objective(val: dict, metric: str | None) -> float | None:
    """The value a trial is judged by: ``metric`` if given, else the validation error (1 -
    accuracy) for classifiers and the loss otherwise; None when it is missing or not finite."""
    key = metric or ("error" if "error" in val else "loss")
    value = val.get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def direction(metric: str | None, goal: str | None) -> str:
    """Optuna's direction: the metric's goal (the default metrics, error or loss, are minimised)."""
    goal = goal or (METRICS.get(metric, "min") if metric else "min")
    return "maximize" if goal == "max" else "minimize"


def _choices(axis) -> list:
    """An axis's categorical choices for Optuna: its values when they are plain scalars, else their
    indices (a layer such as ``{LeakyReLU: {...}}`` is not a value Optuna stores)."""
    plain = all(v is None or isinstance(v, (bool, int, float, str)) for v in axis.values)
    return list(axis.values) if plain else list(range(len(axis.values)))


def make_study(settings: SearchSettings, axes: list, metric: str | None, goal: str | None):
    """A seeded in-memory study with the chosen sampler (and, for ``grid``, the axes' values)."""
    from nncli.sweep.extras import require

    optuna = require("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if settings.sampler in ("grid", "random"):
        sampler = optuna.samplers.RandomSampler(seed=settings.seed)
    else:
        kwargs = {} if settings.startup_trials is None else {"n_startup_trials": settings.startup_trials}
        sampler = optuna.samplers.TPESampler(seed=settings.seed, **kwargs)
    study = optuna.create_study(direction=direction(metric, goal), sampler=sampler)
    if settings.sampler == "grid":
        # every point of the grid, in the grid's order, queued; not optuna's GridSampler, which
        # stops the study from inside tell() (allowed only inside study.optimize, which a sweep
        # spread over processes or a cluster does not use)
        import itertools

        for point in itertools.product(*(_choices(a) for a in axes)):
            study.enqueue_trial(dict(zip([a.name for a in axes], point)))
    return study


def suggest(trial, axes: list) -> dict[str, Any]:
    """A configuration (axis name -> value) drawn by the study's sampler for ``trial``."""
    values = {}
    for a in axes:
        if a.dist == "choice":
            choices = _choices(a)
            pick = trial.suggest_categorical(a.name, choices)
            values[a.name] = pick if choices == list(a.values) else a.values[pick]
        elif a.dist == "int":
            values[a.name] = trial.suggest_int(a.name, int(a.low), int(a.high))
        else:  # 3 significant figures, as random search: readable trial names
            x = trial.suggest_float(a.name, a.low, a.high, log=a.dist == "loguniform")
            values[a.name] = float(f"{x:.3g}")
    return values


def epoch_value(record: dict, metric: str | None) -> float | None:
    """A train history record's validation value, on the same scale as :func:`objective`."""
    val = {"loss": record.get("val_loss")}
    if record.get("val_accuracy") is not None:
        val["accuracy"] = record["val_accuracy"]
        val["error"] = 1.0 - record["val_accuracy"]
    return objective(val, metric)


def tell(study, trial, reports: list[dict | None], metric: str | None) -> None:
    """Tell the study how a configuration went: its per-epoch values (the first seed's run), then
    its objective (mean over seeds), pruned, or failed."""
    from optuna.trial import TrialState

    first = reports[0] if reports else None
    for record in (first or {}).get("history") or []:
        value = epoch_value(record, metric)
        if value is not None:
            trial.report(value, record["epoch"])
    _asha_rungs(study, trial)
    statuses = [r.get("status") if r else None for r in reports]
    if RunStatus.PRUNED in statuses:
        study.tell(trial, state=TrialState.PRUNED)
        return
    values = [objective(_val(r), metric) for r in reports if r]
    if values and len(values) == len(reports) and all(v is not None for v in values):
        study.tell(trial, sum(values) / len(values))
    else:
        study.tell(trial, state=TrialState.FAIL)


def _asha_rungs(study, trial) -> None:
    """Record the ASHA rungs the trial reached (its value at epochs 1, 3, 9, ...), as ASHA does
    when it is asked at each of them: it compares a new trial with the trials that reached a rung.
    The trial was judged in another process (:class:`TrialPruner`), so its rungs are written here,
    through the storage call the pruner itself uses."""
    values = study._storage.get_trial(trial._trial_id).intermediate_values
    rung = 0
    while _ASHA_ETA**rung in values:
        study._storage.set_trial_system_attr(trial._trial_id, f"completed_rung_{rung}", values[_ASHA_ETA**rung])
        rung += 1


_ASHA_ETA = 3  # ASHA's reduction factor: a third of the trials at a rung go on to the next


def _val(report: dict) -> dict:
    val = {k: report.get("val", {}).get(k) for k in ("loss", "accuracy")}
    if val["accuracy"] is not None:
        val["error"] = 1.0 - val["accuracy"]
    return {k: v for k, v in val.items() if v is not None}


def prune_context(study, settings: SearchSettings, metric: str | None) -> dict | None:
    """What a trial's :class:`TrialPruner` needs, picklable: the pruner, the direction and a copy of
    the study's finished trials (with their per-epoch values); None without a pruner."""
    if settings.pruner == "none":
        return None
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=True) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    return {
        "pruner": settings.pruner,
        "startup_trials": settings.startup_trials,
        "metric": metric,
        "direction": study.direction.name.lower(),
        "trials": done,
    }


class TrialPruner(Callback):
    """A training callback: at each epoch's validation, report its value to a copy of the study
    and ask its pruner whether the trial is clearly worse than the others; if so the run stops
    with status ``pruned`` (it keeps its checkpoint, and a sweep never ranks it as finished)."""

    def __init__(self, context: dict) -> None:
        from nncli.sweep.extras import require

        optuna = require("optuna")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if context["pruner"] == "asha":
            pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=_ASHA_ETA)
        else:
            startup = context["startup_trials"]
            pruner = optuna.pruners.MedianPruner(n_startup_trials=5 if startup is None else startup)
        self.metric = context["metric"]
        self.study = optuna.create_study(direction=context["direction"], pruner=pruner)
        self.study.add_trials(context["trials"])
        self.trial = self.study.ask()

    def on_validation_end(self, trainer, record: dict, improved: bool) -> str | None:
        if trainer.world > 1 or trainer.state.status != RunStatus.RUNNING:  # a run already ending is not pruned
            return None
        return RunStatus.PRUNED if self.should_prune(record) else None

    def should_prune(self, record: dict) -> bool:
        value = epoch_value(record, self.metric)
        if value is None:
            return False
        self.trial.report(value, record["epoch"])
        return self.trial.should_prune()
