"""``nncli check``: the layer table, the lint findings and their counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from nncli.formatting import fmt_int, fmt_shape
from nncli.render.console import escape, findings, table

if TYPE_CHECKING:
    from nncli.lint import CheckResult, LayerRow


def layer_rows_table(title: str, rows: list[LayerRow]) -> Table:
    """One row per layer: index, name, type, output shape, parameters."""
    t = table(title)
    for col, just in (
        ("#", "right"),
        ("name", "left"),
        ("type", "left"),
        ("output shape", "left"),
        ("params", "right"),
    ):
        t.add_column(col, justify=just)
    for r in rows:
        t.add_row(str(r.index), escape(r.name), escape(r.type), fmt_shape(r.output_shape), fmt_int(r.params))
    return t


def show(console: Console, result: CheckResult) -> None:
    """The layer table, the findings, and how many of each severity."""
    console.print(
        layer_rows_table(
            f"{result.name}: input {fmt_shape(result.input_shape)} -> output {fmt_shape(result.output_shape)}",
            result.layers,
        )
    )
    console.print(f"total parameters: {fmt_int(result.total_params)}")
    if result.findings:
        findings(console, result.findings)
    counts = result.counts()
    console.print(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s)")
