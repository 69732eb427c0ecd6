"""``nncli diagram``: one line saying what was drawn where."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from nncli.render.console import escape

if TYPE_CHECKING:
    from nncli.diagram.model import DiagramResult


def show(console: Console, result: DiagramResult) -> None:
    """One line: the file written, its format and the size of the graph."""
    d = result.diagram
    console.print(
        f"wrote {escape(str(result.output))} ({result.format}, {d.view} view of {escape(d.name)}): "
        f"{result.node_count:,} nodes, {result.edge_count:,} edges"
    )
