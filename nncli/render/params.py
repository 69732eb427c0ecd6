"""``nncli params``: parameters, buffers, FLOPs and memory per layer, the totals and the budget gates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from nncli.formatting import fmt_bytes, fmt_int, fmt_shape, fmt_si
from nncli.render.console import escape, table

if TYPE_CHECKING:
    from nncli.params import ParamsReport


def show(console: Console, report: ParamsReport) -> None:
    """The per-layer table, the totals and memory estimate, then each budget gate."""
    t = table(f"{report.name}: input {fmt_shape(report.input_shape)} -> output {fmt_shape(report.output_shape)}")
    frozen = any(row.frozen for row in report.layers)  # the column only where a layer is frozen
    for col, just in (
        ("#", "right"),
        ("name", "left"),
        ("type", "left"),
        ("output shape", "left"),
        ("params", "right"),
        ("trainable", "right"),
        ("frozen", "right"),
        ("buffers", "right"),
        ("FLOPs", "right"),
    ):
        if col != "frozen" or frozen:
            t.add_column(col, justify=just)
    for row in report.layers:
        indent = "  " * row.depth
        cells = (
            [
                row.index_label,
                indent + escape(row.name),
                escape(row.type),
                fmt_shape(row.output_shape),
                fmt_int(row.params),
                fmt_int(row.trainable),
            ]
            + ([fmt_int(row.frozen)] if frozen else [])
            + [fmt_int(row.buffers), fmt_si(row.flops)]
        )
        t.add_row(*cells)
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
        ("FLOPs per example (forward)", fmt_si(report.flops_per_example)),
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
        console.print(f"gate {gate.name}: {status} ({escape(gate.message)})")
