"""``nncli probe``: vanishing and exploding gradients, layer by layer."""

from __future__ import annotations

from pathlib import Path

import typer

from nncli.cli.app import SPEC_HELP, Optimizer, app, fail_check, json_flag, render
from nncli.cli.run_options import complete_spec, load_spec_with_sets, set_option, threads_for_spec, threads_option
from nncli.errors import InputError


def _parse_int_list(text: str, flag: str, *, low: int = 0) -> list[int]:
    """'2,4,8' -> [2, 4, 8]; InputError (exit 2) on anything else."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        values = [int(t) for t in items]
    except ValueError:
        values = []
    if not values or any(v < low for v in values):
        raise InputError(
            f"{flag}: expected a comma-separated list of integers >= {low}, found {text!r}",
            hint=f"e.g. {flag} 2,4,8,16",
        )
    return values


@app.command()
def probe(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., help=SPEC_HELP, autocompletion=complete_spec),
    seeds: str = typer.Option(
        "0,1,2",
        "--seeds",
        help="Comma-separated seeds: one build (weights) and one random batch per seed; results are aggregated over them.",
    ),
    batch_size: int = typer.Option(
        128, "--batch-size", "-b", min=2, help="Examples in each probe batch (and in each training step of --steps)."
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Probe on inputs from this file (.npz, .npy, .csv, .pt; shaped like the spec's input; with several inputs an .npz/.pt with one array per input name) instead of N(0, 1) noise.",
    ),
    steps: int = typer.Option(
        0,
        "--steps",
        min=0,
        help="Also train each seed's network N optimizer steps (the spec's train: section; default adam, lr 1e-3) on random targets, probe again and show both.",
    ),
    optimizer: Optimizer | None = typer.Option(
        None, "--optimizer", help="Optimizer for --steps (overrides the spec's train.optimizer)."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate for --steps (overrides the spec's train.lr)."),
    sweep_depth: str | None = typer.Option(
        None,
        "--sweep-depth",
        help="Comma-separated copy counts for the spec's first Repeat, e.g. 2,4,8,16,32: R against depth, with the exponential law fitted.",
    ),
    min_ratio: float = typer.Option(
        1e-3, "--min-ratio", help="Vanishing when R (first/last activation-gradient norm) is below this."
    ),
    max_ratio: float = typer.Option(1e3, "--max-ratio", help="Exploding when R is above this."),
    max_growth: float = typer.Option(
        1e3,
        "--max-growth",
        help="Exploding (vanishing) when the forward RMS grows (shrinks) by more than this from the first layer to the output.",
    ),
    min_gamma: float | None = typer.Option(
        None,
        "--min-gamma",
        help="Also vanishing when the per-layer factor gamma = R^(1/(L-1)) is below this (off by default).",
    ),
    max_gamma: float | None = typer.Option(
        None, "--max-gamma", help="Also exploding when gamma is above this (off by default)."
    ),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="Write a plot (.png, .svg, .pdf): ||dL/dh|| per layer on a log scale; with --sweep-depth also R against depth.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (auto picks CUDA when present)."),
    set_: list[str] = set_option(),
    threads: int | None = threads_option(),
    json_out: bool = json_flag(),
) -> None:
    """Probe for vanishing and exploding gradients, layer by layer, at initialisation.

    Per layer of the main path (Repeats expanded, each Residual one row with its own layers
    below it), over several seeds: activation mean/std, dead ReLU units, saturated sigmoid/tanh
    outputs, ||dL/dh|| of the layer's output, ||dL/dW|| and ||dL/dW||/||W||. The loss is a fixed
    random projection of the output, so dL/dh measures the backward Jacobians alone.
    Verdict (healthy, vanishing, exploding or non-finite, with the reason and a hint) from the
    ratio R of the first and last activation-gradient norms, the per-layer factor gamma and the
    forward growth G; the formulas are in the docs (commands/probe).
    With several inputs every input gets a random batch and the loss sums a projection of every
    output; every branch's layers are rows (a shared module once per use).
    Exit 0 when healthy, 1 when not (at init or after --steps), 2 on bad input.
    """
    from nncli.probe import Thresholds
    from nncli.probe import probe as run_probe
    from nncli.render.plots import check_plot_path, probe_plot

    if plot is not None:
        check_plot_path(plot)
    thresholds = Thresholds(
        min_ratio=min_ratio, max_ratio=max_ratio, max_growth=max_growth, min_gamma=min_gamma, max_gamma=max_gamma
    )
    loaded = load_spec_with_sets(ctx, spec, set_)
    threads_for_spec(loaded, batch_size, device=device, threads=threads)
    report = run_probe(
        loaded,
        seeds=_parse_int_list(seeds, "--seeds"),
        batch_size=batch_size,
        data=data,
        steps=steps,
        sweep_depths=_parse_int_list(sweep_depth, "--sweep-depth", low=1) if sweep_depth else None,
        thresholds=thresholds,
        device=device,
        optimizer=optimizer.value if optimizer else None,
        lr=lr,
    )
    if plot is not None:
        report.plot = str(probe_plot(report, plot))
    render.emit(report, json_out, render.probe.show)
    if plot is not None and not json_out:
        render.stderr_console().print(f"wrote {render.escape(str(plot))}")
    if not report.ok:
        bad = [
            f"{label}: {res.verdict.value}"
            for label, res in (("at init", report.init), ("after steps", report.after))
            if res is not None and not res.healthy
        ]
        fail_check("gradients not healthy (" + "; ".join(bad) + ")")
