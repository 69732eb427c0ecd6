""":func:`run_sweep`: a plan's trials written, counted, trained (finished ones skipped) and ranked.

Each trial is a normal ``nncli train`` run folder inside the sweep folder, named after its
overrides, with its spec in ``<out>/specs/``. torch is imported here only when the trials are
counted (meta tensors) and trained.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from nncli.errors import InputError, NncliError, SpecError
from nncli.files import write_atomic
from nncli.sweep.execute import _execute, _Run
from nncli.sweep.expansion import expand
from nncli.sweep.plan import SweepPlan, _slug
from nncli.sweep.ranking import _summarise, _write_best
from nncli.sweep.results import RESULT_FILE, RunRecord, SweepEvent, SweepResult, TrialResult
from nncli.sweep.resume import _run_state
from nncli.sweep.trial_specs import spec_text, trial_spec_data


def run_sweep(plan: SweepPlan, out_dir: str | Path | None = None, *, workers: int = 1, device: str = "auto",
              dry_run: bool = False, progress: Callable[[SweepEvent], None] | None = None) -> SweepResult:
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

    Returns:
        SweepResult, trials ranked best first. The winner's spec is written to ``<out>/best.yaml``
        and the result to ``<out>/sweep.json`` (both atomically).

    Raises:
        SpecError / InputError: an override gives an invalid spec, or no trial can be built (exit 2).
        KeyboardInterrupt: a run was interrupted; finished runs are kept for the next invocation.

    Example:
        >>> result = run_sweep(load_sweep("sweeps/moons-depth-activation.yaml"), workers=2)
        >>> result.best["id"], result.best["test"]["accuracy"]
    """
    from nncli.spec import parse_spec

    started = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"sweep-{_slug(plan.name)}"
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: expected a folder, found a file")
    notify = progress or (lambda event: None)
    configs = expand(plan)
    seeds: list = list(plan.seeds) if plan.seeds else [None]

    trials: list[TrialResult] = []
    runs: list[_Run] = []
    specs: dict[str, Any] = {}
    for config in configs:
        trial = None
        for seed in seeds:
            name = config.id + (f"-s{seed}" if seed is not None else "")
            text = spec_text(trial_spec_data(config, seed),
                             f"nncli sweep {plan.name}: trial {config.id}"
                             + (f", seed {seed}" if seed is not None else "")
                             + "\noverrides: " + json.dumps(config.values, default=str))
            spec_file = out / "specs" / f"{name}.yaml"
            if not dry_run and (not spec_file.is_file() or spec_file.read_text(encoding="utf-8") != text):
                spec_file.parent.mkdir(parents=True, exist_ok=True)  # also creates `out`
                write_atomic(spec_file, text, durable=True)
            try:  # structure checked now: a bad value is exit 2 before anything trains
                spec = parse_spec(text, file=str(spec_file), base_dir=config.base_dir)
            except SpecError as err:
                err.hint = ((err.hint + "\n  ") if err.hint else "") + \
                    f"written by the sweep for trial {config.id}: " + \
                    ", ".join(f"{k}={v!r}" for k, v in config.values.items())
                raise
            if trial is None:
                trial = TrialResult(config.id, dict(config.values), str(spec_file), [], index=len(trials))
                specs[config.id] = spec  # counted below, once per configuration
                trials.append(trial)
            record = RunRecord(seed, str(out / name), "pending")
            trial.runs.append(record)
            runs.append(_Run(trial, record, spec_file, text))
    errors = _count(trials, specs)
    if len(errors) == len(trials):
        raise errors[trials[0].id]  # nothing can be built: a sweep-file mistake, not a result

    pending: list[_Run] = []
    for run in runs:
        if run.trial.status == "failed":
            run.record.status = "failed"
            run.record.error = run.trial.error
            continue
        state = _run_state(Path(run.record.run_dir), run.text, clear=not dry_run)
        if state["finished"]:
            run.record.fill(state["report"], None)
            run.record.cached = True
        else:
            run.resume = state["resume"]
            pending.append(run)
    total = len(runs)
    done = total - len(pending)
    notify(SweepEvent("plan", done, total, message=f"{len(trials)} configuration(s) x {len(seeds)} seed(s); "
                                                     f"{done} run(s) already finished in {out}"))
    ran = 0
    if not dry_run and pending:
        ran = _execute(pending, workers, device, notify, done, total)
    elif dry_run:
        for run in pending:
            run.record.status = "pending"
    result = _summarise(plan, out, trials, ran, dry_run)
    if not dry_run and result.best is not None:
        _write_best(plan, out, result, configs)
    result.seconds = time.perf_counter() - started
    if not dry_run:
        write_atomic(out / RESULT_FILE, json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n",
                     durable=True)
    return result


def _count(trials: list[TrialResult], specs: dict) -> dict[str, NncliError]:
    """Parameters and forward FLOPs per example of each configuration, on meta tensors.

    Returns the build errors by trial id (e.g. a kernel larger than the feature map at some depth):
    those configurations are recorded as failed and the others go on.
    """
    from nncli.params import count

    errors = {}
    for trial in trials:
        try:
            report = count(specs[trial.id], batch_size=1)
            trial.params, trial.flops = report.total, report.flops_per_example
        except NncliError as err:
            trial.status, trial.error, errors[trial.id] = "failed", str(err), err
    return errors
