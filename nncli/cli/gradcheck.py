"""``nncli gradcheck``: every layer's gradients against finite differences."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from nncli.cli.app import DEVICE_HELP, SPEC_HELP, app, fail_check, json_flag, render
from nncli.cli.run_options import complete_spec, load_spec_with_sets, set_option, threads_for_spec, threads_option
from nncli.gradcheck.options import (
    DEFAULT_ATOL,
    DEFAULT_BATCH,
    DEFAULT_DIRECTIONS,
    DEFAULT_EPS,
    DEFAULT_RTOL,
    MODES,
    OBJECTIVES,
)
from nncli.seeds import SEED_MAX

GradObjective = Enum("GradObjective", {v: v for v in OBJECTIVES}, type=str)
GradMode = Enum("GradMode", {v: v for v in MODES}, type=str)


@app.command()
def gradcheck(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., help=SPEC_HELP, autocompletion=complete_spec),
    batch: int = typer.Option(
        DEFAULT_BATCH, "--batch", "-b", min=1, help="Examples in the fixed batch every evaluation uses."
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Take the batch from this file (.npz/.npy with an `x` array, .pt, .csv; with several inputs an .npz/.pt with one array per input name) instead of N(0, 1) inputs.",
    ),
    objective: GradObjective = typer.Option(
        GradObjective.projection,
        "--objective",
        help="What the end-to-end check differentiates: a fixed random projection <R, f(x)> of the output, or cross-entropy with random targets (loss). Never a plain sum: its gradient through BatchNorm is zero.",
    ),
    mode: GradMode = typer.Option(
        GradMode.train,
        "--mode",
        help="Check in train mode (BatchNorm batch statistics, Dropout on, its mask replayed) or eval mode; the model's own modes are restored.",
    ),
    exhaustive: bool = typer.Option(
        False,
        "--exhaustive",
        help="Check every coordinate of every tensor (perturbations vectorised with torch.func.vmap) instead of random directions.",
    ),
    directions: int = typer.Option(
        DEFAULT_DIRECTIONS, "--directions", "-k", min=1, help="Random Gaussian directions per tensor (default mode)."
    ),
    rtol: float = typer.Option(
        DEFAULT_RTOL, "--rtol", help="Relative tolerance: fail when |<g,v> - D| > atol + rtol |g|."
    ),
    atol: float = typer.Option(DEFAULT_ATOL, "--atol", help="Absolute tolerance (matters where the gradient is ~0)."),
    eps: float = typer.Option(DEFAULT_EPS, "--eps", help="Finite-difference step h (float64)."),
    seed: int = typer.Option(
        0,
        "--seed",
        min=0,
        max=SEED_MAX,
        help="Seed for the weights, inputs, projection, directions and the replayed RNG.",
    ),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    set_: list[str] = set_option(),
    threads: int | None = threads_option(),
    json_out: bool = json_flag(),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also say which implementation checked the numbers (the `path` field of --json)."
    ),
) -> None:
    """Check every layer's gradients against finite differences and name the broken layer.

    float64, a fixed batch. Each layer (nested ones inside Residual/Repeat too) is checked in
    isolation, as Caffe's checker does, on the real input that reaches it and a random upstream
    gradient G (objective <G, layer(x)>), so a wrong backward is pinned to its layer; then the
    whole model once, end to end. For each parameter tensor and each layer input, k Gaussian
    directions v: the central difference D = (F(w + h v) - F(w - h v)) / 2h against <g, v>;
    relative error |<g, v> - D| / |g|; a tensor fails when |<g, v> - D| > atol + rtol |g|.

    With the defaults (rtol 1e-5, k 3) a gradient error of 0.1% of |g| escapes with probability
    5.1e-7, 0.01% with 5.1e-4, 2% with 6.3e-11; the bound is derived in the docs (commands/gradcheck).

    Kinks (ReLU at 0, max-pool ties, Step, abs) are told apart from errors by halving the step and
    comparing one-sided slopes; they are retried along new directions (then at a slightly jittered
    input) and reported as "kink", never as FAIL. Custom layers also get structural checks: two
    backward passes agree, a zero upstream gradient gives zero, backward is linear in it.
    Dropout and other RNG use replay one seed per evaluation; weights, BatchNorm statistics, RNG
    state and train/eval mode are restored. A spec too big for float64 in this machine's memory
    is refused before anything is allocated (exit 2). With several inputs, each float input is
    perturbed on its own end to end (token ids are not); with several outputs the objective covers
    every one. Exit 0 when nothing fails, 1 on any FAIL.
    """
    from nncli.device import resolve_device
    from nncli.gradcheck import gradcheck as run_gradcheck

    loaded = load_spec_with_sets(ctx, spec, set_)
    threads_for_spec(loaded, batch, device=device, threads=threads)
    report = run_gradcheck(
        loaded,
        batch=batch,
        data=data,
        objective=objective.value,
        mode=mode.value,
        exhaustive=exhaustive,
        directions=directions,
        rtol=rtol,
        atol=atol,
        eps=eps,
        seed=seed,
        device=resolve_device(device),
    )
    render.emit(report, json_out, render.gradcheck.show)
    if verbose and not json_out:
        typer.echo(f"path: {report.path}")
    if not report.ok:
        fail_check(report.diagnosis)
