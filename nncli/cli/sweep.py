"""``nncli sweep`` and ``nncli compare``: many runs, ranked and side by side."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import NoReturn

import typer

from nncli.cli.app import DEVICE_HELP, app, fail_check, json_flag, render
from nncli.cli.options import options_of
from nncli.cli.run_options import complete_run, complete_spec, threads_for_workers
from nncli.cli.run_options import parse_sets as _parse_set
from nncli.cli.tracking import experiment_option, sweep_tracking, tracking_option, tracking_uri_option
from nncli.errors import ExitCode, InputError
from nncli.seeds import SEED_MAX
from nncli.sweep.options import METRICS

SweepMetric = Enum("SweepMetric", {v: v for v in METRICS}, type=str)
# the choices of --backend, --sampler and --pruner (written out: nncli.sweep.search imports more)
SweepBackend = Enum("SweepBackend", {v: v for v in ("local", "ray")}, type=str)
SweepSampler = Enum("SweepSampler", {v: v for v in ("tpe", "random", "grid")}, type=str)
SweepPruner = Enum("SweepPruner", {v: v for v in ("none", "asha", "median")}, type=str)


@app.command()
def sweep(
    ctx: typer.Context,
    sweep_file: Path = typer.Argument(
        ...,
        metavar="SWEEP",
        help="The sweep file (YAML): a base spec and the fields to vary.",
        autocompletion=complete_spec,
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Sweep folder; default runs/sweep-<name>. Rerunning into the same folder resumes: finished trials are not run again.",
    ),
    workers: int = typer.Option(
        1, "--workers", "-w", min=1, help="Trials trained in parallel, each in its own process (1: in this process)."
    ),
    trials: int | None = typer.Option(
        None,
        "--trials",
        "-n",
        min=1,
        help="Random search: this many configurations drawn from the grid / distributions.",
    ),
    seed: int | None = typer.Option(
        None, "--seed", min=0, max=SEED_MAX, help="Seed of the random search (default: the file's search_seed, else 0)."
    ),
    metric: SweepMetric | None = typer.Option(
        None,
        "--metric",
        help="Validation metric to rank by (default: the file's, else accuracy for classification, loss otherwise).",
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="PATH=VALUE applied to every trial, e.g. --set train.epochs=5 (repeatable)."
    ),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP + " Every trial uses it."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write validation metric against each swept value to this .png/.svg/.pdf."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List and validate the trials (with parameters and FLOPs); train nothing."
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=1,
        help="CPU threads per trial. Default: the threads rule of the docs' command-line conventions, within each worker's share of the cores (cores // workers).",
    ),
    backend: SweepBackend = typer.Option(
        "local",
        "--backend",
        help="Where trials train: local (this machine: in this process or --workers processes) or ray (Ray Tune trials; needs nncli[ray]).",
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="--backend ray: an existing Ray cluster (auto, or HOST:PORT of `ray start --head`); default: a local Ray instance started for the sweep.",
    ),
    cpus_per_trial: float = typer.Option(
        1.0, "--cpus-per-trial", min=0.0, help="--backend ray: CPUs Ray reserves for each trial."
    ),
    gpus_per_trial: float = typer.Option(
        0.0,
        "--gpus-per-trial",
        min=0.0,
        help="--backend ray: GPUs Ray reserves for each trial (fractions share one GPU).",
    ),
    sampler: SweepSampler | None = typer.Option(
        None,
        "--sampler",
        help="Optuna's sampler (needs nncli[optuna]): tpe, random or grid; seeded by --seed. Overrides the file's search.sampler.",
    ),
    pruner: SweepPruner | None = typer.Option(
        None,
        "--pruner",
        help="Stop clearly bad trials at an epoch's end from their validation metric (needs nncli[optuna]): asha, median or none.",
    ),
    tracking: bool | None = tracking_option(),
    tracking_uri: str | None = tracking_uri_option(),
    experiment: str | None = experiment_option(
        "MLflow experiment of the sweep's parent run and its trials (default: MLFLOW_EXPERIMENT_NAME, else the sweep's name). Turns tracking on."
    ),
    json_out: bool = json_flag(),
) -> None:
    """Train variants of a spec and rank them by validation metric; the winner's spec is written.

    The sweep file names a base spec (`base: file.yaml`, an inline `spec:`, or `specs: [...]`) and
    a `grid:` or `random:` section over any spec field by path (layers[2].Repeat.times,
    layers[0].Linear.out_features, train.lr, data.noise), `replace:ReLU: [ReLU, Tanh]` to swap a
    layer type, `seeds: [0, 1, 2]` for repeats (mean ± sd) and `set:` for fixed values. Each run is
    a normal train run folder inside the sweep folder; a failing trial is recorded and the others
    go on. Test metrics are reported for the winner only. Exit 0 when a winner was found, 1 when
    no trial finished, 2 on a bad sweep file.
    """
    from nncli.device import resolve_device
    from nncli.sweep import load_sweep, run_sweep

    resolve_device(device)  # a bad or absent device is one input error (exit 2), not N failed trials
    if plot is not None:
        render.plots.check_plot_path(plot)
    plan = load_sweep(
        sweep_file,
        trials=trials,
        search_seed=seed,
        extra_set=_parse_set(set_),
        metric=metric.value if metric else None,
        sampler=sampler.value if sampler else None,
        pruner=pruner.value if pruner else None,
        allow_custom=options_of(ctx).allow_custom,
    )
    from nncli.sweep.backends import BackendOptions

    if backend.value == "local" and address is not None:
        raise InputError("--address: only --backend ray joins a cluster", hint="add --backend ray")
    options = BackendOptions(
        backend.value, workers=workers, address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial
    )
    track = sweep_tracking(tracking_uri, experiment, tracking, out) if not dry_run else None
    try:
        with threads_for_workers(threads):  # worker processes read --threads from the environment
            result = run_sweep(
                plan,
                out,
                workers=workers,
                device=device,
                dry_run=dry_run,
                progress=render.sweep.SweepProgress(),
                backend=options,
                tracking=track,
            )
    except KeyboardInterrupt:
        _interrupted(json_out)
    if plot is not None and result.best is not None:
        result.plot = render.plots.sweep_plot(result, plot)
    render.emit(result, json_out, render.sweep.show)
    if not dry_run and result.best is None:
        fail_check(f"no trial of the sweep finished ({result.failed} run(s) failed)")


def _interrupted(json_out: bool) -> NoReturn:
    """Exit 130 saying what was kept; under --json, stdout holds the error document all the same."""
    from nncli.cli import faults

    render.stderr_console().print(
        "interrupted: finished runs are kept and a run in progress saved a checkpoint; rerun the same command to resume"
    )
    if json_out:
        render.print_json(faults.interrupted_json())
    raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


@app.command()
def compare(
    ctx: typer.Context,
    runs: list[Path] | None = typer.Argument(
        None,
        metavar="RUN...",
        help="Run folders (nncli train) or sweep folders (their trial runs); optional with --tracking-uri.",
        autocompletion=complete_run,
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write the loss and accuracy curves of every run, in one figure, to this .png/.svg/.pdf."
    ),
    tracking_uri: str | None = tracking_uri_option(
        "Also list the runs nncli logged to this MLflow tracking store (sqlite:///file.db, http://host:5000, ...)."
    ),
    experiment: str | None = experiment_option("With --tracking-uri: only this experiment's runs (default: all)."),
    json_out: bool = json_flag(),
) -> None:
    """Finished runs side by side: metrics per split, the settings that differ, curves in one plot.

    Settings are read from each run's run.yaml and spec.yaml and flattened to paths (train.lr,
    layers[0].Linear.out_features); only the ones that differ are listed. The best value of each
    metric column is bold.
    """
    from nncli.cli.tracking import compared_tracking
    from nncli.compare import compare_runs

    if plot is not None:
        from nncli.render.plots import check_plot_path

        check_plot_path(plot)
    result = compare_runs(runs or [], tracked=compared_tracking(tracking_uri, experiment))
    if plot is not None:
        result.plot = render.plots.compare_plot(result, plot)
    render.emit(result, json_out, render.compare.show)
