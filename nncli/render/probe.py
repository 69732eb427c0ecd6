"""``nncli probe``: the per-layer table, the log-scale bar chart of ||dL/dh||, the verdict, and the
depth sweep's table and fitted law."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from nncli.formatting import fmt_float
from nncli.render.console import escape, table

if TYPE_CHECKING:
    from nncli.probe.report import LayerStats, ProbeReport, ProbeResult, Sweep


_VERDICT_STYLE = {
    "healthy": "bold green",
    "vanishing": "bold yellow",
    "exploding": "bold red",
    "non-finite": "bold red",
}
_EIGHTHS = " ▏▎▍▌▋▊▉"


def log_bars(values, width: int = 40, min_decades: int = 4) -> tuple[list[str], float, float]:
    """Bars proportional to log10 of positive values, on a shared axis of whole decades.

    The axis spans at least ``min_decades`` so that a healthy net's near-equal gradients show as
    near-equal bars (a min..max axis would blow small wobbles up to full width). Zero, NaN and inf
    get a marker instead of a bar.

    Returns:
        (bars, low, high): one string per value, and the axis ends as powers of ten.
    """
    logs = [math.log10(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if not logs:
        return ["(no positive value)" for _ in values], 0.0, 0.0
    high = math.ceil(max(logs))
    low = min(math.floor(min(logs)), high - min_decades)
    bars = []
    for v in values:
        if v is None or not math.isfinite(v) or v <= 0:
            bars.append("0" if v == 0 else str(v))
            continue
        eighths = round((math.log10(v) - low) / (high - low) * width * 8)
        eighths = max(eighths, 1)
        bars.append("█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else ""))
    return bars, float(low), float(high)


def bar_chart(console: Console, rows: list[LayerStats], title: str, width: int = 40) -> None:
    """Terminal bar chart of ||dL/dh|| per main-path layer, log scale."""
    bars, low, high = log_bars([r.grad_norm for r in rows], width=width)
    t = table(f"{title}: ||dL/dh|| per layer, log scale 1e{low:.0f} .. 1e{high:.0f}", box=None, pad_edge=False)
    t.add_column("#", justify="right")
    t.add_column("layer", justify="left")
    t.add_column("", justify="left", no_wrap=True, min_width=width)
    t.add_column("||dL/dh||", justify="right")
    for r, bar in zip(rows, bars):
        t.add_row(str(r.index), escape(f"{r.name} ({r.type})"), bar, fmt_float(r.grad_norm))
    console.print(t)


def _layer_table(result: ProbeResult, title: str) -> Table:
    t = table(title)
    for col, just in (
        ("#", "right"),
        ("name", "left"),
        ("type", "left"),
        ("act mean", "right"),
        ("act std", "right"),
        ("dead", "right"),
        ("saturated", "right"),
        ("||dL/dh||", "right"),
        ("||dL/dW||", "right"),
        ("||dL/dW||/||W||", "right"),
    ):
        t.add_column(col, justify=just)

    def pct(x):
        return "-" if x is None else f"{x:.0%}" if x in (0, 1) else f"{x:.1%}"

    def add(r, depth):
        style = "dim" if depth else None
        t.add_row(
            "" if r.index is None else str(r.index),
            "  " * depth + escape(r.name),
            escape(r.type),
            fmt_float(r.act_mean),
            fmt_float(r.act_std),
            pct(r.dead_frac),
            pct(r.saturated_frac),
            fmt_float(r.grad_norm),
            fmt_float(r.weight_grad_norm),
            fmt_float(r.weight_grad_ratio),
            style=style,
        )
        for c in r.inner:
            add(c, depth + 1)

    for r in result.layers:
        add(r, 0)
    return t


def _verdict(console: Console, result: ProbeResult, label: str) -> None:
    v = result.verdict.value
    console.print(
        f"verdict {label}: [{_VERDICT_STYLE.get(v, '')}]{v.upper()}[/]  "
        f"R = {fmt_float(result.ratio)}  gamma = {fmt_float(result.gamma)} per layer "
        f"(L = {result.depth})  forward growth G = {fmt_float(result.growth)}"
    )
    console.print(
        "  per seed R: " + ", ".join(f"{s.seed}: {fmt_float(s.ratio)} ({s.verdict.value})" for s in result.seeds)
    )
    console.print(f"  why: {escape(result.explanation)}")
    if result.hint:
        console.print(f"  hint: {escape(result.hint)}")


def show(console: Console, report: ProbeReport) -> None:
    """``nncli probe``: per-layer table, bar chart, verdict; after --steps and a sweep when run."""
    th = report.thresholds
    console.print(
        f"[bold]{escape(report.name)}[/]: seeds {', '.join(map(str, report.seeds))}; inputs "
        f"{escape(report.inputs)}; device {report.device}"
    )
    console.print(f"loss: {escape(report.loss)}")
    console.print(_layer_table(report.init, "at initialisation (mean over seeds; gradient norms: geometric mean)"))
    bar_chart(console, report.init.layers, "at initialisation")
    _verdict(console, report.init, "at init")
    if report.after is not None:
        tr = report.training
        console.print(
            f"\n[bold]after {tr.steps} training steps[/] ({tr.optimizer}, lr {tr.lr:g}, "
            f"{escape(tr.loss)}; loss {fmt_float(tr.loss_first)} -> {fmt_float(tr.loss_last)})"
        )
        console.print(_layer_table(report.after, f"after {tr.steps} steps"))
        bar_chart(console, report.after.layers, f"after {tr.steps} steps")
        _verdict(console, report.after, f"after {tr.steps} steps")
    if report.sweep is not None:
        depth_sweep(console, report.sweep)
    gates = f"healthy when {th.min_ratio:g} <= R <= {th.max_ratio:g} and 1/{th.max_growth:g} <= G <= {th.max_growth:g}"
    if th.min_gamma is not None or th.max_gamma is not None:
        gates += (
            f" and {th.min_gamma if th.min_gamma is not None else 0:g} <= gamma <= "
            f"{th.max_gamma if th.max_gamma is not None else math.inf:g}"
        )
    console.print(f"[dim]{gates} (--min-ratio, --max-ratio, --max-growth, --min-gamma, --max-gamma)[/]")


def depth_sweep(console: Console, sweep: Sweep) -> None:
    """R against depth, with the fitted exponential law and where it breaks."""
    bars, low, high = log_bars([p.ratio for p in sweep.points], width=30)
    t = table(f"\nR against depth (copies of {sweep.repeat}); bars: log scale 1e{low:.0f} .. 1e{high:.0f}")
    for col, just in (
        ("copies", "right"),
        ("layers L", "right"),
        ("R", "right"),
        ("gamma", "right"),
        ("growth G", "right"),
        ("verdict", "left"),
        ("off fit (decades)", "right"),
        ("", "left"),
    ):
        t.add_column(col, justify=just)
    for p, bar in zip(sweep.points, bars):
        t.add_row(
            str(p.times),
            str(p.depth),
            fmt_float(p.ratio),
            fmt_float(p.gamma),
            fmt_float(p.growth),
            f"[{_VERDICT_STYLE.get(p.verdict.value, '')}]{p.verdict.value}[/]",
            "-" if p.residual is None else f"{p.residual:+.2f}",
            bar,
        )
    console.print(t)
    if sweep.log10_ratio_per_copy is not None:
        r2 = "" if sweep.r2 is None else f", r^2 = {sweep.r2:.3f}"
        console.print(
            f"exponential law: R ~ 10^({sweep.intercept:.2f}) * {fmt_float(sweep.gamma_per_copy)}^copies "
            f"(log10 R changes by {sweep.log10_ratio_per_copy:+.2f} per copy{r2})"
        )
    for b in sweep.breaks:
        console.print(f"  law breaks: {escape(b)}")
