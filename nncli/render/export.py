"""``nncli export``: the file written and the check run on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from nncli.formatting import fmt_bytes, fmt_int, fmt_shape
from nncli.render.console import escape

if TYPE_CHECKING:
    from nncli.export import ExportResult


def show(console: Console, result: ExportResult) -> None:
    """What was exported from where, then the check: max difference or bit-exactness."""
    origin = escape(result.checkpoint) if result.checkpoint else f"{escape(result.source)} (initial weights)"
    shape = f"input {fmt_shape(result.input_shape)}"
    if result.inputs:  # several inputs or outputs: each by the name the file gives it
        ends = [("inputs", result.inputs), ("outputs", result.outputs or [])]
        shape = "; ".join(
            f"{what} " + ", ".join(f"{escape(i['name'])} {fmt_shape(tuple(i['shape']))}" for i in items)
            for what, items in ends
        )
    console.print(
        f"wrote {escape(result.out)} ({result.format}, {fmt_bytes(result.bytes)}, "
        f"{fmt_int(result.params)} parameters, {shape}) from {origin}"
    )
    console.print(f"  method: {escape(result.method)}")
    c = result.check
    verdict = "[green]ok[/]" if result.passed else "[bold red]FAIL[/]"
    if "max_abs_diff" in c:
        diff = "n/a" if c["max_abs_diff"] is None else f"{c['max_abs_diff']:.3g}"
        problem = f"; {escape(c['problem'])}" if c.get("problem") else ""
        console.print(
            f"  check: {escape(c['runtime'])} vs torch on a batch of {c['batch']}: max |difference| "
            f"{diff} (tolerance {c['tolerance']:.0e} x {c['scale'] or 1:.3g}){problem}  {verdict}"
        )
    else:
        console.print(
            f"  check: {c['tensors']} tensors read back bit-exact: {'yes' if c['bit_exact'] else 'NO'}; "
            f"network rebuilt from the file alone: {'yes' if c['rebuilt'] else 'NO'}  {verdict}"
        )
