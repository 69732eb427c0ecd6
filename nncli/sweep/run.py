""":func:`run_sweep`: a plan's trials written, counted, trained (finished ones skipped) and ranked.

Each trial is a normal ``nncli train`` run folder inside the sweep folder, named after its
overrides, with its spec in ``<out>/specs/``. torch is imported here only when the trials are
counted (meta tensors) and trained.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from nncli.errors import InputError, NncliError, SpecError
from nncli.files import write_atomic
from nncli.status import TrialStatus
from nncli.sweep.backends import BackendOptions, execute, session
from nncli.sweep.execute import _Run
from nncli.sweep.expansion import Config, config_for, expand
from nncli.sweep.extras import require
from nncli.sweep.plan import SweepPlan, _grid_size, _slug
from nncli.sweep.ranking import _summarise, _write_best
from nncli.sweep.results import RESULT_FILE, RunRecord, SweepEvent, SweepResult, TrialResult
from nncli.sweep.resume import _run_state
from nncli.sweep.trial_specs import spec_text, trial_spec_data


def run_sweep(
    plan: SweepPlan,
    out_dir: str | Path | None = None,
    *,
    workers: int = 1,
    device: str = "auto",
    dry_run: bool = False,
    progress: Callable[[SweepEvent], None] | None = None,
    backend: BackendOptions | None = None,
    tracking=None,
    _lock_held: bool = False,
) -> SweepResult:
    """Train every trial of a sweep (skipping finished ones) and rank them on validation.

    Args:
        plan: from :func:`~nncli.sweep.parse.load_sweep`.
        out_dir: the sweep folder; default ``runs/sweep-<name>``, so rerunning the same command
            resumes it. Trial specs go to ``<out>/specs/``, run folders to ``<out>/<trial>/``.
        workers: parallel worker processes (spawned; each gets ``cpu_count // workers`` torch
            threads). 1 trains in this process.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for every trial.
        dry_run: expand, validate and count the trials, train nothing.
        progress: called with a :class:`~nncli.sweep.results.SweepEvent` as runs start and finish.
        backend: where the runs train (:mod:`nncli.sweep.backends`); default the local pool of
            ``workers`` processes.
        tracking: a :class:`~nncli.tracking.TrackingOptions`: the sweep is a parent run in that
            MLflow store and each trial a child run (:class:`~nncli.tracking.SweepTracking`).

    Returns:
        SweepResult, trials ranked best first. The winner's spec is written to ``<out>/best.yaml``
        and the result to ``<out>/sweep.json`` (both atomically).

    Raises:
        SpecError / InputError: an override gives an invalid spec, no trial can be built, or the
            backend's extra is missing (exit 2).
        KeyboardInterrupt: a run was interrupted; finished runs are kept for the next invocation.

    Example:
        >>> result = run_sweep(load_sweep("sweeps/moons-depth-activation.yaml"), workers=2)
        >>> result.best["id"], result.best["test"]["accuracy"]
    """
    started = time.perf_counter()
    backend = backend or BackendOptions(workers=workers)
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"sweep-{_slug(plan.name)}"
    _check_before_writing(plan, out, backend, dry_run)
    if not dry_run and not _lock_held:  # one writer per sweep folder, taken before any write
        return _locked(plan, out, backend, tracking, {"workers": workers, "device": device, "progress": progress})
    notify = progress or (lambda event: None)
    seeds: list = list(plan.seeds) if plan.seeds else [None]
    if plan.search is not None and not dry_run:
        with session(backend):
            trials, configs, ran = _run_guided(plan, out, seeds, backend, device, notify)
    else:
        trials, configs, ran = _run_grid(plan, out, seeds, backend, device, notify, dry_run)
    result = _summarise(plan, out, trials, ran, dry_run)
    if not dry_run and result.best is not None:
        _write_best(plan, out, result, configs)
    result.seconds = time.perf_counter() - started
    if not dry_run:
        write_atomic(out / RESULT_FILE, json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n", durable=True)
    return result


def _locked(plan: SweepPlan, out: Path, backend: BackendOptions, tracking, options: dict) -> SweepResult:
    """The sweep, its folder's lock held; with ``tracking``, logged as a parent run whose children
    are the trials (a store that fails is said through ``progress``, and the sweep goes on)."""
    from nncli.train.lock import FolderLock

    notify = options["progress"] or (lambda event: None)
    with FolderLock(out, "sweep"):
        parent = None
        if tracking is not None:
            from nncli.tracking import SweepTracking

            parent = SweepTracking(tracking, plan.name, out)
            backend = replace(backend, tracking=parent.start(plan))
            notify(SweepEvent("plan", 0, 0, message=parent.describe()))
        result = run_sweep(plan, out, backend=backend, _lock_held=True, **options)
        if parent is not None:
            parent.finish(result)
            if parent.warning is not None:  # the store failed, or some trials are not in it
                notify(SweepEvent("plan", 0, 0, message=parent.warning))
        return result


def _check_before_writing(plan: SweepPlan, out: Path, backend: BackendOptions, dry_run: bool) -> None:
    """Exit 2 before any file is written: the sweep folder is a file, or the backend's or search's extra is missing."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: expected a folder, found a file", param="out_dir")
    if not dry_run:
        if backend.name == "ray":
            require("ray")
        if plan.search is not None:
            require("optuna")


def _run_grid(
    plan: SweepPlan, out: Path, seeds: list, backend: BackendOptions, device: str, notify, dry_run: bool
) -> tuple[list[TrialResult], list[Config], int]:
    """Every configuration of the grid (or random draws) prepared, counted, and its pending runs
    trained; returns the trials, their configurations and how many runs trained now."""
    configs = expand(plan)
    trials, runs = [], []
    for config in configs:
        trial, trial_runs = _prepare(plan, config, seeds, out, dry_run, len(trials))
        trials.append(trial)
        runs.extend(trial_runs)
    errors = _count(trials)
    if len(errors) == len(trials):
        raise errors[trials[0].id]  # nothing can be built: a sweep-file mistake, not a result
    pending = _pending(runs, dry_run)
    total = len(runs)
    done = total - len(pending)
    notify(
        SweepEvent(
            "plan",
            done,
            total,
            message=f"{len(trials)} configuration(s) x {len(seeds)} seed(s); {done} run(s) already finished in {out}",
        )
    )
    ran = 0
    if not dry_run and pending:
        with session(backend):
            ran = execute(pending, backend, device, notify, done, total)
    elif dry_run:
        for run in pending:
            run.record.status = TrialStatus.PENDING
    return trials, configs, ran


def _prepare(
    plan: SweepPlan, config: Config, seeds: list, out: Path, dry_run: bool, index: int
) -> tuple[TrialResult, list[_Run]]:
    """A configuration's trial and its runs (one per seed), their spec files written and parsed
    (a bad value is exit 2 before anything trains)."""
    from nncli.spec import parse_spec
    from nncli.train.sections import validate_sections

    trial = None
    runs = []
    for seed in seeds:
        name = config.id + (f"-s{seed}" if seed is not None else "")
        text = spec_text(
            trial_spec_data(config, seed),
            f"nncli sweep {plan.name}: trial {config.id}"
            + (f", seed {seed}" if seed is not None else "")
            + "\noverrides: "
            + json.dumps(config.values, default=str),
        )
        spec_file = out / "specs" / f"{name}.yaml"
        if not dry_run and (not spec_file.is_file() or spec_file.read_text(encoding="utf-8") != text):
            spec_file.parent.mkdir(parents=True, exist_ok=True)  # also creates `out`
            write_atomic(spec_file, text, durable=True)
        try:  # structure checked now: a bad value is exit 2 before anything trains
            spec = parse_spec(text, file=str(spec_file), base_dir=config.base_dir, allow_custom=plan.allow_custom)
            validate_sections(spec)  # data: and train: as train reads them (a misspelt --set key)
        except SpecError as err:
            err.hint = (
                ((err.hint + "\n  ") if err.hint else "")
                + f"written by the sweep for trial {config.id}: "
                + ", ".join(f"{k}={v!r}" for k, v in config.values.items())
            )
            raise
        if trial is None:
            trial = TrialResult(config.id, dict(config.values), str(spec_file), [], index=index, spec=spec)
        record = RunRecord(seed, str(out / name), TrialStatus.PENDING)
        trial.runs.append(record)
        runs.append(_Run(trial, record, spec_file, text, base_dir=config.base_dir))
    return trial, runs


def _pending(runs: list[_Run], dry_run: bool) -> list[_Run]:
    """The runs still to train: finished ones are read back from their folders (cached)."""
    pending: list[_Run] = []
    for run in runs:
        if run.trial.status == TrialStatus.FAILED:
            run.record.status = TrialStatus.FAILED
            run.record.error = run.trial.error
            continue
        state = _run_state(Path(run.record.run_dir), run.text, clear=not dry_run)
        if state["finished"]:
            run.record.fill(state["report"], None)
            run.report = state["report"]
            run.record.cached = True
        else:
            run.resume = state["resume"]
            pending.append(run)
    return pending


def _run_guided(
    plan: SweepPlan, out: Path, seeds: list, backend: BackendOptions, device: str, notify
) -> tuple[list[TrialResult], list[Config], int]:
    """Optuna's search: ask a batch of configurations (one per worker), train them, tell the study,
    until the budget is spent. A rerun replays the same asks and reads finished runs back."""
    from nncli.sweep import search

    settings = plan.search
    study = search.make_study(settings, plan.axes, plan.metric, plan.goal)
    budget = plan.trials or _grid_size(plan.axes)
    # trials proposed at a time: as many as train at once (--workers, on either backend); a
    # rerun must use the same number to replay the same proposals
    batch = max(1, backend.workers)
    trials: list[TrialResult] = []
    configs: list[Config] = []
    ids: set[str] = set()
    ran = done = 0
    total = budget * len(seeds)
    notify(
        SweepEvent(
            "plan",
            0,
            total,
            message=f"Optuna {settings.sampler} sampler"
            + (f", {settings.pruner} pruner" if settings.pruner != "none" else "")
            + f": {budget} configuration(s) x {len(seeds)} seed(s) in {out}",
        )
    )
    while len(trials) < budget:
        context = search.prune_context(study, settings, plan.metric)  # finished trials only
        asked = []
        for _ in range(min(batch, budget - len(trials))):
            otrial = study.ask()
            config = config_for(plan, search.suggest(otrial, plan.axes), ids)
            trial, runs = _prepare(plan, config, seeds, out, False, len(trials))
            trials.append(trial)
            configs.append(config)
            for run in runs:
                run.prune = context
            asked.append((otrial, trial, runs))
        errors = _count([t for _, t, _ in asked])
        runs = [r for _, _, rs in asked for r in rs]
        pending = _pending(runs, False)
        done += len(runs) - len(pending)
        if pending:
            ran += execute(pending, backend, device, notify, done, total)
            done += len(pending)
        for otrial, trial, trial_runs in asked:
            reports = [None if trial.id in errors else r.report for r in trial_runs]
            search.tell(study, otrial, reports, plan.metric)
        if len(errors) == len(trials):
            raise errors[trials[0].id]  # nothing can be built: a sweep-file mistake, not a result
    return trials, configs, ran


def _count(trials: list[TrialResult]) -> dict[str, NncliError]:
    """Parameters and forward FLOPs per example of each configuration, on meta tensors.

    Returns the build errors by trial id (e.g. a kernel larger than the feature map at some depth):
    those configurations are recorded as failed and the others go on.
    """
    from nncli.params import count

    errors = {}
    for trial in trials:
        try:
            report = count(trial.spec, batch_size=1)
            trial.params, trial.flops = report.total, report.flops_per_example
        except NncliError as err:
            trial.status, trial.error, errors[trial.id] = TrialStatus.FAILED, str(err), err
    return errors
