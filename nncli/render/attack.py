"""``nncli attack``: the robustness table (accuracy, flips and perturbation norms per method and eps)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from nncli.formatting import fmt_int
from nncli.render.console import escape, pct, table

if TYPE_CHECKING:
    from nncli.attack import AttackResult


def show(console: Console, result: AttackResult) -> None:
    """Clean accuracy, then one row per (method, eps)."""
    kept = (
        "inputs unbounded" if result.value_range is None else "inputs kept in [{:g}, {:g}]".format(*result.value_range)
    )
    units = "eps in training standard deviations" if result.eps_units == "std" else "eps in the data's units"
    console.print(
        f"{escape(result.checkpoint)} on {result.split} ({fmt_int(result.n)} examples, {result.device}); "
        f"{kept}; {units}"
    )
    console.print(f"clean accuracy {pct(result.clean_accuracy)} ({fmt_int(result.clean_correct)}/{fmt_int(result.n)})")
    t = table(f"L-inf attacks (PGD: {result.steps} steps, {'random' if result.random_start else 'no random'} start)")
    for col, just in (
        ("method", "left"),
        ("eps", "right"),
        ("step", "right"),
        ("robust accuracy", "right"),
        ("flipped", "right"),
        ("mean L-inf", "right"),
        ("max L-inf", "right"),
        ("mean L2", "right"),
    ):
        t.add_column(col, justify=just)
    for row in result.rows:
        t.add_row(
            row.method,
            f"{row.eps:g}",
            "" if row.step_size is None else f"{row.step_size:.4g}",
            pct(row.accuracy),
            fmt_int(row.flipped),
            f"{row.linf_mean:.4g}",
            f"{row.linf_max:.4g}",
            f"{row.l2_mean:.4g}",
        )
    console.print(t)
    for note in result.notes:
        console.print(f"note: {escape(note)}")
    if result.saved:
        console.print(f"wrote {escape(result.saved)}")
    for path in result.plot or ():
        console.print(f"wrote {escape(path)}")


def plot(result: AttackResult, path: str | Path) -> list[str]:
    """Accuracy against eps at ``path``; for image inputs also the grid at ``<stem>-examples<suffix>``."""
    from nncli.render.plots import attack_examples_plot, attack_plot

    path = Path(path)
    written = [str(attack_plot(result, path))]
    ex = result.examples
    if ex is not None and ex["x"].ndim == 4 and ex["x"].shape[1] in (1, 3):
        grid = path.with_name(f"{path.stem}-examples{path.suffix}")
        written.append(str(attack_examples_plot(result, grid)))
    return written
