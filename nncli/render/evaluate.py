"""``nncli evaluate`` and ``nncli predict``: a checkpoint's metrics per split, and its predictions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from nncli.formatting import fmt_float, fmt_int
from nncli.render.console import escape, pct, table

if TYPE_CHECKING:
    from nncli.evaluate import EvalResult, PredictResult


def show(console: Console, result: EvalResult) -> None:
    """Metrics of a checkpoint per split."""
    console.print(f"{escape(result.checkpoint)} ({result.kind}, after epoch {result.epoch}) on {result.device}")
    t = table(None)
    for col, just in (("split", "left"), ("examples", "right"), ("loss", "right"), ("accuracy", "right")):
        t.add_column(col, justify=just)
    for split, m in result.splits.items():
        t.add_row(split, fmt_int(m["n"]), fmt_float(m["loss"], 4), pct(m["accuracy"]))
    console.print(t)
    classes = getattr(result, "classes", None)
    # worth a line only where names say more than the labels (image folders: "cat", "dog")
    if classes and [str(c) for c in classes] != [str(i) for i in range(len(classes))]:
        shown = ", ".join(f"{i}: {name}" for i, name in enumerate(classes[:20]))
        console.print(
            f"classes (label: name): {escape(shown)}" + (f", ... ({len(classes)} in all)" if len(classes) > 20 else "")
        )


def predictions(console: Console, result: PredictResult, limit: int = 20) -> None:
    """The first rows of a prediction, with the model's confidence."""
    t = table(f"{result.n:,} predictions ({result.task})")
    t.add_column("#", justify="right")
    if getattr(result, "files", None):
        t.add_column("file")
    # a sequence with labels (the text set): the predicted characters say it all; the ids are in --json
    ids = not (result.task == "sequence" and result.labels is not None)
    if ids:
        t.add_column("prediction", justify="right")
    if result.labels is not None:
        t.add_column("label" if ids else "predicted next token at each position")
    if result.probabilities is not None:
        t.add_column("confidence", justify="right")
    for i, pred in enumerate(result.predictions[:limit]):
        row = [str(i)] + ([escape(_short(result.files[i]))] if getattr(result, "files", None) else [])
        if ids:
            row += [
                escape(
                    str(
                        [round(v, 4) for v in pred]
                        if isinstance(pred, list)
                        else (round(pred, 4) if isinstance(pred, float) else pred)
                    )
                )
            ]
        if result.labels is not None:
            row.append(escape(str(result.labels[i])))
        if result.probabilities is not None:
            p = result.probabilities[i]
            row.append(pct(max(p) if isinstance(p, list) else (p if pred else 1 - p)))
        t.add_row(*row)
    console.print(t)
    if result.n > limit:
        console.print(
            f"... {result.n - limit:,} more rows" + ("" if result.out else " (write them all with --out FILE)")
        )
    if result.out:
        console.print(f"wrote {escape(result.out)}")


def _short(path: str) -> str:
    """An image file as its class-folder/name, short enough for a table cell."""
    parts = str(path).replace("\\", "/").split("/")
    return "/".join(parts[-2:])
