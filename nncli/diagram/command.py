"""The calls behind ``nncli diagram``: :func:`build_diagram` (a spec's graph, in either view) and
:func:`draw` (build it and write the file)."""

from __future__ import annotations

from pathlib import Path

from nncli.build import infer
from nncli.diagram.layer_view import layer_graph
from nncli.diagram.model import Diagram, DiagramResult
from nncli.diagram.neuron_view import neuron_graph
from nncli.diagram.output import check_output, resolve_format, write_diagram
from nncli.errors import InputError
from nncli.spec import Spec


def draw(
    spec: Spec,
    output: str | Path,
    fmt: str | None = None,
    view: str = "layers",
    expand: bool = False,
    depth: int | None = None,
    rankdir: str | None = None,
    weights: bool = False,
    seed: int = 0,
    expand_one: bool = False,
) -> DiagramResult:
    """Build a spec's diagram and write it to ``output``.

    Args:
        spec: the validated spec.
        output: the file to write; its extension picks the format unless ``fmt`` is given.
        fmt: "svg", "png", "pdf" or "dot".
        view, expand, depth, rankdir, weights, seed, expand_one: as for :func:`build_diagram`.

    Returns:
        A :class:`DiagramResult`.

    Raises:
        InputError: a bad output path or format; a neuron view too large; graphviz's ``dot``
            missing for svg/png/pdf (the ``.dot`` source is written next to ``output`` first).

    Example:
        >>> draw(load_spec("specs/lenet5.yaml"), "lenet5.svg").node_count
        14
    """
    output = Path(output)
    check_output(output, spec)
    fmt = resolve_format(output, fmt)
    diagram = build_diagram(
        spec, view=view, expand=expand, depth=depth, rankdir=rankdir, weights=weights, seed=seed, expand_one=expand_one
    )
    size = write_diagram(diagram, output, fmt)
    return DiagramResult(output, fmt, size, diagram)


def build_diagram(
    spec: Spec,
    view: str = "layers",
    expand: bool = False,
    depth: int | None = None,
    rankdir: str | None = None,
    weights: bool = False,
    seed: int = 0,
    expand_one: bool = False,
) -> Diagram:
    """A spec's graph, without drawing it.

    Args:
        spec: the validated spec.
        view: "layers" (a node per layer) or "neurons" (a node per unit of a small MLP).
        expand: unroll every Repeat (layer view); by default a Repeat is one "xN" box.
        depth: how many levels of nested blocks open (layer view): 0 draws every block
            (Residual, Repeat, Parallel, Block) as one box; None opens every level.
        rankdir: "TB" (top to bottom) or "LR"; default TB for layers, LR for neurons.
        weights: neuron view: colour (sign) and width (size) each edge by its initial weight,
            from the real model built with ``seed``.
        seed: the seed for those weights (the same spec and seed give the same weights).
        expand_one: open each Repeat's first copy (layer view), its frame titled with the vars
            that copy binds (``index``, its ``each`` entry), and draw the other copies as one
            "×(N-1) more" node; not with ``expand``.

    Raises:
        InputError: the neuron view of a network that is not a small MLP.
    """
    if view not in ("layers", "neurons"):
        raise InputError(f"expected layers or neurons, found {view!r}", param="view")
    if rankdir is not None and rankdir not in ("TB", "LR"):
        raise InputError(f"expected TB or LR, found {rankdir!r}", param="rankdir")
    if expand and expand_one:
        raise InputError("--expand unrolls every copy and --expand-one opens only the first: give one of them")
    if depth is not None and depth < 0:
        raise InputError(f"expected an integer >= 0, found {depth}", param="depth")
    built = infer(spec)
    if view == "neurons":
        return neuron_graph(built, weights=weights, seed=seed, rankdir=rankdir or "LR")
    return layer_graph(built, expand=expand, depth=depth, rankdir=rankdir or "TB", expand_one=expand_one)
