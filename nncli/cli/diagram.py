"""``nncli diagram``: draw a spec with graphviz."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from nncli.cli.app import SPEC_HELP, app, json_flag, render
from nncli.cli.out_option import either_out, old_out_option, out_option
from nncli.cli.run_options import complete_spec, load_spec_with_sets, set_option
from nncli.seeds import SEED_MAX


class DiagramView(str, Enum):
    layers = "layers"
    neurons = "neurons"


class DiagramFormat(str, Enum):
    svg = "svg"
    png = "png"
    pdf = "pdf"
    dot = "dot"


class Rankdir(str, Enum):
    TB = "TB"
    LR = "LR"


@app.command()
def diagram(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., help=SPEC_HELP, autocompletion=complete_spec),
    output: Path | None = out_option(
        "File to write (replaced if it exists); its extension picks the format: .svg, .png, .pdf, .dot. Default: <spec file name>.svg (or the --format) in the working folder."
    ),
    old_output: Path | None = old_out_option("--output"),
    fmt: DiagramFormat | None = typer.Option(
        None, "--format", "-f", help="Output format, when the extension does not say (must agree with it when it does)."
    ),
    view: DiagramView = typer.Option(
        DiagramView.layers,
        "--view",
        help="layers: a node per layer, edges labelled with shapes. neurons: a node per unit and an edge per weight (small MLPs only).",
    ),
    expand: bool = typer.Option(False, "--expand", help="Unroll every Repeat (by default one box marked xN)."),
    expand_one: bool = typer.Option(
        False,
        "--expand-one",
        help="Open each Repeat's first copy, titled with the vars it binds (index, each entry); the other copies are one '×(N-1) more' node.",
    ),
    depth: int | None = typer.Option(
        None,
        "--depth",
        min=0,
        help="How many levels of nested blocks open: 0 draws each Residual/Repeat as one box. Default: all.",
    ),
    rankdir: Rankdir | None = typer.Option(
        None, "--rankdir", help="Layout direction: TB (top to bottom) or LR. Default TB for layers, LR for neurons."
    ),
    weights: bool = typer.Option(
        False, "--weights", help="Neuron view: colour (sign) and width (size) edges by the initial weights (seeded)."
    ),
    seed: int = typer.Option(
        0, "--seed", min=0, max=SEED_MAX, help="Seed for the initial weights shown with --weights."
    ),
    set_: list[str] = set_option(),
    json_out: bool = json_flag(),
) -> None:
    """Draw the network with graphviz: a diagram from which anyone can rebuild it.

    Layer view: a node per layer with its type, defining arguments and parameter count; edges
    carry the tensor shape (batch as N); a Residual is a fork, its body, its shortcut (a red skip
    edge when it is the identity) and an add node; a Repeat is one xN box listing its vars unless
    --expand (every copy) or --expand-one (the first copy, then one node for the rest).
    Neuron view (--view neurons): the classical MLP picture, refused above 200 units or 2,000
    weights. DOT is written without graphviz's `dot` program; svg/png/pdf need it, and where it is
    missing the .dot source is written next to the output and the command exits 2 saying how to
    install graphviz. --json prints the graph (nodes, edges, clusters).
    """
    from nncli.diagram import draw

    output = either_out(output, old_output, "--output")
    if output is None:  # as Keras' plot_model writes model.png: a picture without naming one
        output = Path(f"{spec.stem}.{fmt.value if fmt else 'svg'}")
    result = draw(
        load_spec_with_sets(ctx, spec, set_),
        output,
        fmt=fmt.value if fmt else None,
        view=view.value,
        expand=expand,
        expand_one=expand_one,
        depth=depth,
        rankdir=rankdir.value if rankdir else None,
        weights=weights,
        seed=seed,
    )
    render.emit(result, json_out, render.diagram.show)
