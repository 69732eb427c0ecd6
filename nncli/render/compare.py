"""``nncli compare``: runs side by side, and the settings in which they differ."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from nncli.render.console import escape, metric, table

if TYPE_CHECKING:
    from nncli.compare import CompareResult


def show(console: Console, result: CompareResult) -> None:
    """Runs side by side (best value per column in bold), then the settings that differ."""
    t = table(f"{len(result.runs)} run(s)")
    for col, just in (("run", "left"), ("spec", "left"), ("status", "left"), ("epochs", "right")):
        t.add_column(col, justify=just)
    cols = [
        (s, m)
        for s in ("train", "val", "test")
        for m in ("loss", "accuracy")
        if any(m in r.metrics.get(s, {}) for r in result.runs)
    ]
    for s, m in cols:
        t.add_column(f"{s} {'acc' if m == 'accuracy' else m}", justify="right")
    t.add_column("time", justify="right")
    for r in result.runs:
        cells = []
        for s, m in cols:
            v = r.metrics.get(s, {}).get(m)
            text = metric(m, v)
            cells.append(f"[bold]{text}[/]" if result.best.get(f"{s}_{m}") == r.label else text)
        epochs = "-" if r.epochs is None else f"{r.epochs}" + (f" (best {r.best_epoch})" if r.best_epoch else "")
        t.add_row(
            escape(r.label),
            escape(r.name),
            r.status,
            epochs,
            *cells,
            "-" if r.seconds is None else f"{r.seconds:.1f} s",
        )
    console.print(t)
    if not result.differences:
        console.print(f"settings: the runs agree on all {result.same} entries (spec, data, train)")
        return
    d = table(f"settings that differ ({len(result.differences)}; {result.same} agree)")
    d.add_column("setting")
    for r in result.runs:
        d.add_column(escape(r.label))
    for key, values in result.differences.items():
        d.add_row(escape(key), *["-" if v is None else escape(str(v)) for v in values])
    console.print(d)
    if result.plot:
        console.print(f"curves: {escape(result.plot)}")
