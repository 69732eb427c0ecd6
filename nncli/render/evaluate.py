"""``nncli evaluate`` and ``nncli predict``: a checkpoint's metrics per split, and its predictions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from nncli.formatting import fmt_float, fmt_int
from nncli.render.console import escape, pct, table

if TYPE_CHECKING:
    from nncli.evaluate import EvalResult, PredictResult


def show(console: Console, result: EvalResult) -> None:
    """Metrics of a checkpoint per split, then the per-class scores and the confusion matrix."""
    console.print(f"{escape(result.checkpoint)} ({result.kind}, after epoch {result.epoch}) on {result.device}")
    console.print(split_table(result.splits))
    split, m = focus_split(result.splits)
    if m is not None:
        names = class_names(result.classes, len(m["per_class"]))
        console.print(per_class_table(f"{split}: per class", m["per_class"], names))
        if len(names) <= CONFUSION_MAX:
            console.print(confusion_table(f"{split}: confusion (rows: true class, columns: predicted)", m, names))
    classes = getattr(result, "classes", None)
    # worth a line only where names say more than the labels (image folders: "cat", "dog")
    if classes and [str(c) for c in classes] != [str(i) for i in range(len(classes))]:
        shown = ", ".join(f"{i}: {name}" for i, name in enumerate(classes[:20]))
        console.print(
            f"classes (label: name): {escape(shown)}" + (f", ... ({len(classes)} in all)" if len(classes) > 20 else "")
        )


# Classes up to which the confusion matrix fits a terminal; --json and --plot have it for any number.
CONFUSION_MAX = 12


def split_table(splits: dict):
    """Examples, loss and accuracy per split, and RMSE, MAE and R² where the task is regression."""
    regression = any("rmse" in m for m in splits.values())
    t = table(None)
    columns = [("split", "left"), ("examples", "right"), ("loss", "right"), ("accuracy", "right")]
    for col, just in columns + ([("rmse", "right"), ("mae", "right"), ("r²", "right")] if regression else []):
        t.add_column(col, justify=just)
    for split, m in splits.items():
        row = [split, fmt_int(m.get("n")), fmt_float(m.get("loss"), 4), pct(m.get("accuracy"))]
        if regression:
            row += [fmt_float(m.get(k), 4) for k in ("rmse", "mae", "r2")]
        t.add_row(*row)
    return t


def focus_split(splits: dict) -> tuple[str | None, dict | None]:
    """The split whose per-class scores are shown: test when several were evaluated."""
    split = "test" if "test" in splits else next(iter(splits), None)
    m = splits.get(split) if split is not None else None
    return (split, m) if m and m.get("per_class") else (split, None)


def class_names(classes: list | None, count: int) -> list[str]:
    """The names of labels 0..count-1: the run's class names where it has them, else the labels."""
    return [str(classes[i]) if classes and i < len(classes) else str(i) for i in range(count)]


def per_class_table(title: str, per_class: list, names: list[str]):
    """Precision, recall and F1 (percent, like accuracy) and support per class."""
    t = table(title)
    t.add_column("class")
    for col in ("precision", "recall", "f1", "support"):
        t.add_column(col, justify="right")
    for name, c in zip(names, per_class):
        t.add_row(escape(name), pct(c["precision"]), pct(c["recall"]), pct(c["f1"]), fmt_int(c["support"]))
    return t


def confusion_table(title: str, m: dict, names: list[str]):
    """The confusion counts, one row per true class, one column per predicted class."""
    t = table(title)
    t.add_column("true class")
    for name in names:
        t.add_column(escape(name), justify="right")
    for name, row in zip(names, m["confusion"]):
        t.add_row(escape(name), *(fmt_int(v) for v in row))
    return t


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
