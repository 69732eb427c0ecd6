"""``nncli gradcheck``: per layer and tensor the error against finite differences, the verdict and
the suspect layer, then the diagnosis and the detection bound."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from nncli.formatting import fmt_float, fmt_int
from nncli.render.console import escape, table
from nncli.status import GradcheckVerdict

if TYPE_CHECKING:
    from rich.table import Table

    from nncli.gradcheck.report import GradcheckReport, LayerCheck, TensorCheck

# -- gradcheck ---------------------------------------------------------------------------------
_VERDICT_STYLE = {
    GradcheckVerdict.OK: "green",
    GradcheckVerdict.FAIL: "bold red",
    GradcheckVerdict.KINK: "yellow",
    GradcheckVerdict.NONDETERMINISTIC: "bold magenta",
}


def _error_cell(t: TensorCheck) -> str:
    """A tensor's error cell: relative to |g|, or absolute where the gradient is ~0."""
    if t.max_rel_error is not None:
        return fmt_float(t.max_rel_error, 2)
    if t.max_abs_error is not None:
        return f"abs {fmt_float(t.max_abs_error, 2)}"
    return "-"


def show(console: Console, report: GradcheckReport) -> None:
    """Per layer and tensor: numel, max relative error, verdict; the suspect in bold red."""
    t = _gradcheck_table(report)
    for layer in report.layers:
        _add_layer_rows(t, report, layer)
    t.add_section()  # the end-to-end check below the layers
    _add_layer_rows(t, report, report.end_to_end)
    console.print(t)
    _print_findings(console, report)
    _print_summary(console, report)


def _gradcheck_table(report: GradcheckReport) -> Table:
    """The empty table: its title names the settings, then the seven columns."""
    how = (
        "every coordinate"
        if report.exhaustive
        else f"{report.directions} random direction{'s' if report.directions != 1 else ''} per tensor"
    )
    t = table(
        f"{escape(report.name)}: gradient check, float64, batch {report.batch}, {report.mode} mode, "
        f"{report.objective} objective, {how}"
    )
    for col, just in (
        ("#", "right"),
        ("layer", "left"),
        ("type", "left"),
        ("tensor", "left"),
        ("numel", "right"),
        ("max rel. error", "right"),
        ("verdict", "left"),
    ):
        t.add_column(col, justify=just)
    return t


def _add_layer_rows(t: Table, report: GradcheckReport, layer: LayerCheck) -> None:
    """One row per tensor of ``layer`` (one row if it has none), its failed structural checks, then its children."""
    suspect = report.suspect_id is not None and layer.id == report.suspect_id
    style = "bold red" if suspect else None
    name = "  " * layer.depth + escape(layer.name) + ("  <- suspect" if suspect else "")
    verdict = f"[{_VERDICT_STYLE[layer.verdict.value]}]{layer.verdict.value}[/]"
    broken = [s for s in layer.structural if not s.ok]
    if not layer.tensors:
        t.add_row(layer.id, name, escape(layer.type), "-", "-", "-", verdict, style=style)
    for i, tc in enumerate(layer.tensors):
        t.add_row(
            layer.id if i == 0 else "",
            name if i == 0 else "",
            escape(layer.type) if i == 0 else "",
            escape(tc.name),
            fmt_int(tc.numel),
            _error_cell(tc),
            f"[{_VERDICT_STYLE[tc.verdict.value]}]{tc.verdict.value}[/]"
            + (f" ({tc.kinks} kinked)" if tc.kinks and tc.verdict.value != "kink" else ""),
            style=style,
        )
    for s in broken:
        t.add_row(
            "",
            "" if layer.tensors else name,
            "",
            f"structural: {escape(s.name)}",
            "",
            "",
            "[bold red]FAIL[/]",
            style=style,
        )
    for child in layer.children:
        _add_layer_rows(t, report, child)


def _print_findings(console: Console, report: GradcheckReport) -> None:
    """Below the table: each failed structural check with its detail, and each layer's notes."""
    for layer in [*report.leaves(), report.end_to_end]:
        for s in layer.structural:
            if not s.ok:
                console.print(
                    f"[bold red]{escape(layer.id)} {escape(layer.name)}: {escape(s.name)}[/]: {escape(s.detail)}"
                )
        notes = [layer.note] + [f"{tc.name}: {tc.note}" for tc in layer.tensors if tc.note]
        for note in filter(None, notes):
            console.print(f"note: {escape(layer.id)} {escape(layer.name)}: {escape(note)}")
    for inp in report.inputs:  # token ids, never perturbed, are named rather than left out silently
        if not inp.perturbed:
            console.print(f"note: input {escape(inp.name)} ({escape(inp.dtype)}): {escape(inp.note or '')}")


def _print_summary(console: Console, report: GradcheckReport) -> None:
    """The diagnosis, the counts and settings, and (random directions) the detection bound."""
    counts = report.counts()
    status = "[green]ok[/]" if report.ok else "[bold red]FAIL[/]"
    console.print(f"{status}: {escape(report.diagnosis)}")
    console.print(
        f"{counts['ok']} ok, {counts['FAIL']} FAIL, {counts['kink']} kink (inconclusive); "
        f"rtol {report.rtol:g}, atol {report.atol:g}, eps {report.eps:g}; {report.seconds:.2f} s"
    )
    if not report.exhaustive:
        pairs = report.detection()
        console.print(
            f"detection ({report.directions} directions, rtol {report.rtol:g}): an error of "
            + " / ".join(f"{r:.2%}" for r, _ in pairs)
            + " of |g| escapes with probability "
            + " / ".join(f"{p:.1e}" for _, p in pairs)
        )
