"""``nncli attack``: adversarial examples (FGSM, PGD) against a trained run."""

from __future__ import annotations

from pathlib import Path

import typer

from nncli.cli.app import DEVICE_HELP, app, json_flag, render
from nncli.cli.options import options_of
from nncli.cli.out_option import chosen_out, old_out_option, out_option
from nncli.seeds import SEED_MAX


@app.command()
def attack(
    ctx: typer.Context,
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder written by nncli train (a classifier)."),
    eps: str = typer.Option(
        "0,0.01,0.03,0.1",
        "--eps",
        help="L-inf budgets, comma-separated, in the data's units (pixels in [0, 1] for images) or, with "
        "--eps-units std, in training standard deviations per feature.",
    ),
    eps_units: str = typer.Option(
        "raw", "--eps-units", help="raw (the data's units) or std (training std per feature)."
    ),
    method: str = typer.Option("fgsm,pgd", "--method", help="fgsm, pgd or both, comma-separated."),
    steps: int = typer.Option(10, "--steps", min=1, help="PGD iterations."),
    step_size: float | None = typer.Option(None, "--step-size", help="PGD step (default 2.5 * eps / steps)."),
    random_start: bool = typer.Option(
        True, "--random-start/--no-random-start", help="PGD starts at a random point of the eps-ball."
    ),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed of PGD's random start."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best (by validation) or last."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Attack only the first N examples of the split."),
    value_range: str | None = typer.Option(
        None,
        "--range",
        help="The inputs' valid range LO,HI (default: data.range, or [0, 1] for images; else unbounded).",
    ),
    batch_size: int = typer.Option(256, "--batch-size", "-b", min=1, help="Examples per attack batch."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    out: Path | None = out_option("Write the adversarial inputs (every method and eps) to this .npz."),
    save: Path | None = old_out_option("--save"),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Accuracy against eps to this .png/.svg/.pdf; for images also <name>-examples<suffix>."
    ),
    json_out: bool = json_flag(),
) -> None:
    """Clean and robust accuracy of a run under FGSM and PGD (L-inf) per eps, the mean perturbation
    norms and how many predictions flipped. Every adversarial input stays inside its eps-ball, and
    inside the data's valid range where one is known."""
    from nncli.attack import parse_eps, parse_range, run_attack
    from nncli.render import attack as render_attack

    if plot is not None:
        render.plots.check_plot_path(plot)
    _refuse_token_inputs(run_dir, options_of(ctx).allow_custom)
    with chosen_out(out, save, "--save", "save") as save:
        result = run_attack(
            run_dir,
            eps=parse_eps(eps),
            methods=[m.strip().lower() for m in method.split(",") if m.strip()],
            steps=steps,
            step_size=step_size,
            random_start=random_start,
            seed=seed,
            split=split,
            checkpoint=checkpoint,
            device=device,
            batch_size=batch_size,
            limit=limit,
            value_range=parse_range(value_range),
            eps_units=eps_units,
            save=save,
            force=force,
            allow_custom=options_of(ctx).allow_custom,
        )
    if plot is not None:
        result.plot = render_attack.plot(result, plot)
    render.emit(result, json_out, render_attack.show)


def _refuse_token_inputs(run_dir: Path, allow_custom: bool) -> None:
    """An L-inf budget moves float inputs; token ids have no neighbours to move to (exit 2)."""
    from nncli.errors import InputError, NncliError
    from nncli.train.trained import open_run

    try:
        spec = open_run(run_dir, allow_custom=allow_custom).spec
    except NncliError:
        return  # the attack itself says what is wrong with the folder
    if spec.integer_input and len(spec.input_specs) == 1:  # several inputs: the attack names the token one
        raise InputError(
            f"{run_dir}: the run's input is {spec.input_dtype} token ids, and FGSM/PGD perturb float inputs "
            "by at most eps: a token id has no value eps away",
            hint="attack runs with float inputs (features, images, signals)",
        )
