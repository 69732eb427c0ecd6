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
    title = f"{result.name}: input {fmt_shape(result.input_shape)} -> output {fmt_shape(result.output_shape)}"
    if result.inputs:  # a Graph spec: every input and output by name
        ends = [(f"input {i['name']}", i) for i in result.inputs] + [(f"output {o['name']}", o) for o in result.outputs]
        ends_table = table(f"{result.name}: inputs and outputs")
        for col in ("tensor", "shape", "dtype"):
            ends_table.add_column(col)
        for label, item in ends:
            ends_table.add_row(escape(label), fmt_shape(tuple(item["shape"])), item["dtype"])
        console.print(ends_table)
        title = f"{result.name}: {len(result.inputs)} inputs -> {len(result.outputs)} output(s)"
    console.print(layer_rows_table(title, result.layers))
    console.print(f"total parameters: {fmt_int(result.total_params)}")
    data = result.data or {}
    if data.get("checked"):
        sizes = ", ".join(f"{k} {fmt_int(v)}" for k, v in data["sizes"].items())
        if "inputs" in data:  # several inputs: each one's shape per example
            shape = ", ".join(f"{name} {fmt_shape(tuple(i['shape']))}" for name, i in data["inputs"].items())
        else:
            shape = fmt_shape(tuple(data["input_shape"]))
        console.print(f"data: fits the network ({sizes} examples of {escape(shape)})")
    elif data.get("reason"):
        console.print(f"data: not checked ({escape(data['reason'])})")
    if result.findings:
        findings(console, result.findings)
    counts = result.counts()
    console.print(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s)")
