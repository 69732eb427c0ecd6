"""``nncli sweep`` and ``nncli compare``: many runs, ranked and side by side."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from nncli.cli.app import DEVICE_HELP, _state, app, fail_check, json_flag, render
from nncli.errors import ExitCode, InputError
from nncli.sweep.options import METRICS


SweepMetric = Enum("SweepMetric", {v: v for v in METRICS}, type=str)


def _parse_set(items: List[str]) -> dict:
    """``--set train.epochs=3`` -> ``{"train.epochs": 3}`` (the value read as YAML)."""
    import yaml

    out = {}
    for item in items:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise InputError(f"--set {item!r}: expected PATH=VALUE, e.g. --set train.epochs=5")
        try:
            out[path.strip()] = yaml.safeload_spec_file(text)
        except yaml.YAMLError:
            raise InputError(f"--set {item!r}: the value is not valid YAML") from None
    return out


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., metavar="SWEEP", help="The sweep file (YAML): a base spec and the fields to vary."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Sweep folder; default runs/sweep-<name>. Rerunning into the same folder resumes: finished trials are not run again."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Trials trained in parallel, each in its own process (1: in this process)."),
    trials: Optional[int] = typer.Option(None, "--trials", "-n", min=1, help="Random search: this many configurations drawn from the grid / distributions."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the random search (default: the file's search_seed, else 0)."),
    metric: Optional[SweepMetric] = typer.Option(None, "--metric", help="Validation metric to rank by (default: the file's, else accuracy for classification, loss otherwise)."),
    set_: List[str] = typer.Option([], "--set", help="PATH=VALUE applied to every trial, e.g. --set train.epochs=5 (repeatable)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP + " Every trial uses it."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write validation metric against each swept value to this .png/.svg/.pdf."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List and validate the trials (with parameters and FLOPs); train nothing."),
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
    _state["json"] = json_out
    from nncli.device import resolve_device
    from nncli.sweep import load_sweep, run_sweep

    resolve_device(device)  # a bad or absent device is one input error (exit 2), not N failed trials
    if plot is not None:
        from nncli.render.plots import check_plot_path

        check_plot_path(plot)
    plan = load_sweep(sweep_file, trials=trials, search_seed=seed, extra_set=_parse_set(set_),
                      metric=metric.value if metric else None)
    try:
        result = run_sweep(plan, out, workers=workers, device=device, dry_run=dry_run,
                           progress=render.sweep.SweepProgress())
    except KeyboardInterrupt:
        render.stderr_console().print("interrupted: finished runs are kept and a run in progress saved a "
                                      "checkpoint; rerun the same command to resume")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    if plot is not None and result.best is not None:
        result.plot = render.plots.sweep_plot(result, plot)
    render.emit(result, json_out, render.sweep.show)
    if not dry_run and result.best is None:
        fail_check(f"no trial of the sweep finished ({result.failed} run(s) failed)")


@app.command()
def compare(
    runs: List[Path] = typer.Argument(..., metavar="RUN...", help="Run folders (nncli train) or sweep folders (their trial runs)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the loss and accuracy curves of every run, in one figure, to this .png/.svg/.pdf."),
    json_out: bool = json_flag(),
) -> None:
    """Finished runs side by side: metrics per split, the settings that differ, curves in one plot.

    Settings are read from each run's run.yaml and spec.yaml and flattened to paths (train.lr,
    layers[0].Linear.out_features); only the ones that differ are listed. The best value of each
    metric column is bold.
    """
    _state["json"] = json_out
    from nncli.compare import compare_runs

    if plot is not None:
        from nncli.render.plots import check_plot_path

        check_plot_path(plot)
    result = compare_runs(runs)
    if plot is not None:
        result.plot = render.plots.compare_plot(result, plot)
    render.emit(result, json_out, render.compare.show)
