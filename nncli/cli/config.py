"""``nncli config``: what a training run would use, resolved before it starts."""

from __future__ import annotations

from pathlib import Path

import typer

from nncli.cli.app import SPEC_HELP, app, json_flag, render
from nncli.cli.run_options import complete_spec, load_spec_with_sets, set_option


@app.command()
def config(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., help=SPEC_HELP, autocompletion=complete_spec),
    data: str | None = typer.Option(
        None, "--data", help="Data set or file, as `nncli train --data` takes it; overrides the spec's data:."
    ),
    load: bool = typer.Option(
        True, "--load/--no-load", help="Load the data to show split sizes and shapes (--no-load: resolve only)."
    ),
    set_: list[str] = set_option(),
    json_out: bool = json_flag(),
) -> None:
    """The fully resolved spec, data and train settings a run would use (after --set), as YAML or
    --json, and the data as loaded: split sizes, shapes and how inputs are standardised."""
    from nncli.train.resolve import resolve_config

    loaded = load_spec_with_sets(ctx, spec, set_)
    result = resolve_config(loaded, {"data": data} if data else None, load=load)
    render.emit(result, json_out, render.config.show)
