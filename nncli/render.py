"""Report objects -> rich tables or JSON. The only module that formats for the terminal.

Every command's result object has ``to_json()``; the human view is a function here taking a
console and that object, so the table and ``--json`` are fed by the same numbers. Human output
goes to stdout through rich, which honours NO_COLOR and plain (non-TTY) streams; progress and
errors go to stderr.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def stdout_console() -> Console:
    # Piped or redirected output is read by scripts and diffs: do not wrap it at 80 columns.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "200"))
    return Console(highlight=False, soft_wrap=False, width=width)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def emit(result: Any, as_json: bool, human: Callable[[Console, Any], None],
         console: Console | None = None) -> None:
    """Print ``result``: one JSON document on stdout, or the human view."""
    if as_json:
        print_json(result.to_json())
    else:
        human(console or stdout_console(), result)


def print_json(doc: Any, file=None) -> None:
    file = file or sys.stdout
    file.write(json.dumps(doc, indent=2, default=_json_default, allow_nan=False) + "\n")
    file.flush()


def _json_default(obj: Any):
    if isinstance(obj, tuple):
        return list(obj)
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    return str(obj)


def error(err, as_json: bool) -> None:
    """Report an NncliError: a located message on stderr; with --json also a JSON document."""
    stderr_console().print(f"[bold red]error:[/] {_escape(str(err))}")
    if as_json:
        print_json(err.to_json())


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# -- number formats -----------------------------------------------------------------------------
def fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def fmt_si(n: float | None, unit: str = "") -> str:
    """1_234_567 -> '1.23 M' (decimal prefixes, as FLOP counts are quoted)."""
    if n is None:
        return "-"
    if n == 0:
        return f"0 {unit}".strip()
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}{unit}".strip()
    return f"{n:g} {unit}".strip()


def fmt_bytes(n: float | None) -> str:
    """Bytes in binary units: 1536 -> '1.50 KiB'."""
    if n is None:
        return "-"
    for prefix, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}"
    return f"{int(n)} B"


def fmt_shape(shape) -> str:
    if shape is None:
        return "-"
    return "[" + ", ".join(["N", *map(str, shape)]) + "]"


def fmt_float(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def table(title: str | None = None, **kwargs) -> Table:
    return Table(title=title, title_justify="left", header_style="bold", **kwargs)


# -- check -------------------------------------------------------------------------------------
def findings(console: Console, items) -> None:
    """Lint findings, one per line, with severity, location and the fix."""
    for f in items:
        style = _SEVERITY_STYLE.get(f.severity, "")
        where = f" {f.location}" if f.location else ""
        console.print(f"[{style}]{f.severity}[/] [{f.code}]{_escape(where)}: {_escape(f.message)}")
        if f.hint:
            console.print(f"    hint: {_escape(f.hint)}", highlight=False)


def layer_rows_table(title: str, rows) -> Table:
    t = table(title)
    for col, just in (("#", "right"), ("name", "left"), ("type", "left"), ("output shape", "left"),
                      ("params", "right")):
        t.add_column(col, justify=just)
    for r in rows:
        t.add_row(r.index_label, _escape(r.name), _escape(r.type), fmt_shape(r.output_shape), fmt_int(r.params))
    return t


def check(console: Console, result) -> None:
    console.print(layer_rows_table(
        f"{result.name}: input {fmt_shape(result.input_shape)} -> output {fmt_shape(result.output_shape)}",
        result.layers))
    console.print(f"total parameters: {fmt_int(result.total_params)}")
    if result.findings:
        findings(console, result.findings)
    counts = result.counts()
    console.print(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s)")


# -- params ------------------------------------------------------------------------------------
def params(console: Console, report) -> None:
    t = table(f"{report.name}: input {fmt_shape(report.input_shape)} -> output {fmt_shape(report.output_shape)}")
    for col, just in (("#", "right"), ("name", "left"), ("type", "left"), ("output shape", "left"),
                      ("params", "right"), ("trainable", "right"), ("buffers", "right"), ("FLOPs", "right")):
        t.add_column(col, justify=just)
    for row in report.layers:
        indent = "  " * row.depth
        t.add_row(row.index_label, indent + _escape(row.name), _escape(row.type), fmt_shape(row.output_shape),
                  fmt_int(row.params), fmt_int(row.trainable), fmt_int(row.buffers), fmt_si(row.flops))
    console.print(t)
    m = report.memory
    summary = table(show_header=False, box=None)
    summary.add_column(justify="left")
    summary.add_column(justify="right")
    for label, value in (
        ("total parameters", fmt_int(report.total)),
        ("trainable", fmt_int(report.trainable)),
        ("non-trainable", fmt_int(report.non_trainable)),
        ("buffers", fmt_int(report.buffers)),
        (f"FLOPs per example (forward)", fmt_si(report.flops_per_example)),
        (f"FLOPs for batch {m.batch_size} (forward)", fmt_si(report.flops)),
        (f"weights ({m.dtype})", fmt_bytes(m.weights)),
        (f"buffers ({m.dtype})", fmt_bytes(m.buffers)),
        (f"activations kept for backward (batch {m.batch_size})", fmt_bytes(m.activations)),
        ("gradients", fmt_bytes(m.gradients)),
        (f"optimizer state ({m.optimizer})", fmt_bytes(m.optimizer_state)),
        ("total training memory (estimate)", fmt_bytes(m.total)),
    ):
        summary.add_row(label, value)
    console.print(summary)
    for gate in report.gates:
        status = "[green]ok[/]" if gate.ok else "[bold red]EXCEEDED[/]"
        console.print(f"gate {gate.name}: {status} ({_escape(gate.message)})")


# -- diagram -----------------------------------------------------------------------------------
def diagram(console: Console, result) -> None:
    """One line: the file written, its format and the size of the graph."""
    d = result.diagram
    console.print(f"wrote {_escape(str(result.output))} ({result.format}, {d.view} view of {_escape(d.name)}): "
                  f"{result.node_count:,} nodes, {result.edge_count:,} edges")
