"""Every ``--plot`` figure (train curves, sweep panels, compared runs, probe gradients) and the
helpers they share: a figure without pyplot, and an atomic file write.

Figures are made with ``matplotlib.figure.Figure`` directly, not ``pyplot``: no global figure
registry, no GUI backend to pick (rendering goes through Agg), nothing left open after a run.
matplotlib is imported lazily, inside the functions, so importing this module costs nothing
for commands that do not plot.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from nncli.errors import InputError
from nncli.files import write_atomic
from nncli.formatting import plain_value
from nncli.render.console import pct

if TYPE_CHECKING:
    from nncli.attack import AttackResult
    from nncli.compare import CompareResult
    from nncli.evaluate import EvalResult
    from nncli.probe.report import ProbeReport
    from nncli.sweep.results import SweepResult
    from nncli.train.runs import TrainResult

FORMATS = (".png", ".svg", ".pdf")


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.2)):
    """A fresh Figure and a flat list of its axes.

    Example:
        >>> fig, axes = new_figure(ncols=2)
        >>> len(axes)
        2
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


PLOTS_HINT = "pip install 'nncli[plots]'"


def require_matplotlib() -> None:
    """Raise InputError (exit 2) when matplotlib, the optional ``plots`` extra, is not installed.

    Looked up without importing it, so a command checks this before any work at no cost.
    """
    import importlib.util

    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):  # a broken or half-removed installation
        found = False
    if not found:
        raise InputError(
            "--plot needs matplotlib, which is not installed (it is the optional `plots` extra)", hint=PLOTS_HINT
        )


def check_plot_path(path: str | Path) -> Path:
    """Validate a ``--plot`` path before any work: matplotlib installed, known suffix, existing
    folder (InputError, exit 2)."""
    require_matplotlib()
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InputError(
            f"--plot: expected a file ending in {', '.join(FORMATS)}, found {path.name!r}", hint="e.g. --plot grads.png"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--plot: the folder {parent} does not exist")
    return path


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically: a temporary name in the same folder, then a rename.

    The format follows the suffix (.png, .svg, .pdf). A reader never sees a half-written file,
    and a failed write leaves an existing file as it was.

    Returns:
        the path written.

    Raises:
        InputError: unknown suffix, missing folder, or the write failed (exit 2).
    """
    path = check_plot_path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lower()[1:], dpi=dpi)
    try:
        write_atomic(path, buffer.getvalue())
    except OSError as exc:
        raise InputError(f"--plot: cannot write {path}: {exc.strerror or exc}") from None
    return path


# -- train and compare: curves per epoch --------------------------------------------------------
# The same in `train --plot` and `compare --plot`: validation solid, training dashed (the solid
# line is the one a run is judged by), accuracy in percent as every table prints it.
SPLIT_STYLES = (("val", "-", "validation"), ("train", "--", "training"))


def _has_accuracy(histories: list) -> bool:
    return any(
        row.get("val_accuracy") is not None or row.get("train_accuracy") is not None for h in histories for row in h
    )


def curve_panels(panels: list, series: list, best_epoch: int | None = None) -> None:
    """Loss (and accuracy, when ``panels`` has two axes) per epoch on ``panels``.

    Args:
        series: ``(label, color, history)`` per run; one run with label None is drawn in a colour
            per split, several in a colour per run (its label on the validation line).
        best_epoch: a dotted vertical line there (one run).
    """
    single = len(series) == 1 and series[0][0] is None
    for metric, panel in zip(("loss", "accuracy"), panels):
        scale = 100.0 if metric == "accuracy" else 1.0
        for label, color, history in series:
            for split, style, name in SPLIT_STYLES:
                pts = [
                    (row["epoch"], scale * row[f"{split}_{metric}"])
                    for row in history
                    if row.get("epoch") is not None and row.get(f"{split}_{metric}") is not None
                ]
                if pts:
                    panel.plot(
                        *zip(*pts),
                        style,
                        color=color,
                        marker="o" if len(pts) < 30 else None,
                        markersize=3,
                        label=name if single else (label if split == "val" else None),
                    )
        if best_epoch:
            panel.axvline(best_epoch, color="grey", linewidth=0.8, linestyle=":", label="best")
        _epoch_axes(panel, metric, positive=all((r.get("train_loss") or 0) > 0 for _, _, h in series for r in h))
        if not single:  # the line styles get legend entries of their own: a title alone is missed
            for _, style, name in SPLIT_STYLES:
                panel.plot([], [], style, color="black", label=name)
        panel.legend(fontsize=7)


def _epoch_axes(panel, metric: str, positive: bool) -> None:
    """Whole epochs on x; loss on a log scale (when every loss is positive); accuracy in percent."""
    panel.xaxis.set_major_locator(_integer_ticks())  # epochs are whole: no 2.5 tick
    panel.set_xlabel("epoch")
    if metric == "accuracy":
        from matplotlib.ticker import PercentFormatter

        panel.yaxis.set_major_formatter(PercentFormatter(xmax=100))
        panel.set_ylabel("accuracy (%)")
    else:
        panel.set_ylabel("loss")
        if positive:
            panel.set_yscale("log")
    panel.grid(True, alpha=0.3)


def train_plot(result: TrainResult, path: str | Path) -> None:
    """Loss (and accuracy, for classification) per epoch, train and validation, to ``path``."""
    has_acc = _has_accuracy([result.history])
    fig, axes = new_figure(ncols=2 if has_acc else 1, figsize=(10 if has_acc else 6, 4))
    curve_panels(axes, [(None, None, result.history)], best_epoch=result.best_epoch)
    fig.suptitle(
        f"{result.spec}: {result.status}, test accuracy {pct(result.test.get('accuracy'))}"
        if result.test.get("accuracy") is not None
        else f"{result.spec}: {result.status}"
    )
    fig.tight_layout()
    save_figure(fig, path)


# -- sweep ---------------------------------------------------------------------------------------
def sweep_plot(result: SweepResult, path: str | Path) -> str:
    """Validation metric against each swept value, one panel per axis; written atomically.

    Within a panel, configurations that agree on every *other* axis are joined by a line (one
    line per activation in a depth panel, say); error bars are the spread over seeds; the winner
    is a gold star.
    """
    in_order = sorted(result.trials, key=lambda t: t.index)  # the grid's order, not the ranking
    trials = [t for t in in_order if result.metric in t.val]
    fig, panels = new_figure(1, len(result.axes), figsize=(4.2 * len(result.axes) + 0.8, 3.8))
    for panel, axis in zip(panels, result.axes):
        xs_of = _axis_positions(panel, in_order, axis)
        _plot_groups(panel, result, trials, axis, xs_of)
        _mark_best(panel, result, trials, axis, xs_of)
        panel.set_xlabel(axis)
        panel.set_ylabel(f"validation {result.metric}")
        panel.grid(True, alpha=0.3)
        panel.legend(fontsize=7)
    fig.suptitle(
        f"sweep {result.name}: validation {result.metric} ({'higher' if result.goal == 'max' else 'lower'} is better)"
    )
    fig.tight_layout()
    return str(save_figure(fig, path))


def _axis_positions(panel, in_order: list, axis: str) -> dict:
    """Each swept value's x position on this panel (numbers as themselves, other values as 0, 1, ...), ticks set."""
    values: list = []
    for t in in_order:
        v = plain_value(t.overrides.get(axis))
        if v not in values:
            values.append(v)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        xs_of = {v: float(v) for v in values}
        if min(values) > 0 and max(values) / min(values) >= 20:
            panel.set_xscale("log")  # learning rates and weight decays lie decades apart
        if all(isinstance(v, int) for v in values) and len(values) <= 12:
            panel.set_xticks(sorted(values))  # depths and widths: ticks at the values swept
            panel.set_xticklabels([str(v) for v in sorted(values)])
    else:
        xs_of = {v: i for i, v in enumerate(values)}
        panel.set_xticks(range(len(values)))
        panel.set_xticklabels([str(v) for v in values], rotation=20 if len(values) > 4 else 0)
    return xs_of


def _plot_groups(panel, result: SweepResult, trials: list, axis: str, xs_of: dict) -> None:
    """The metric against this axis, one line per setting of the other axes (or plain points), sd as error bars."""
    groups: dict[str, list] = {}
    for t in trials:
        rest = ", ".join(f"{k}={plain_value(v)}" for k, v in t.overrides.items() if k != axis)
        groups.setdefault(rest, []).append(t)
    # too many lines to tell apart, or a random search (its draws rarely share the other axes'
    # values, and a line through two random draws says nothing): plain points in one colour
    many = result.search == "random" or len(groups) > 8 or all(len(m) == 1 for m in groups.values())
    if many:
        groups = {"": trials}
    for label, members in groups.items():
        members.sort(key=lambda t: xs_of[plain_value(t.overrides[axis])])
        sds = [t.val_std.get(result.metric, 0.0) for t in members]
        ys = [t.val[result.metric] for t in members]
        errs = sds
        if "accuracy" in result.metric:  # mean ± sd, but an accuracy never passes 1 (or 0)
            errs = [[min(e, y) for e, y in zip(sds, ys)], [min(e, 1.0 - y) for e, y in zip(sds, ys)]]
        panel.errorbar(
            [xs_of[plain_value(t.overrides[axis])] for t in members],
            ys,
            yerr=errs if any(sds) else None,
            marker="o",
            capsize=3,
            linestyle="none" if many else "-",
            alpha=0.7 if many else 1.0,
            color="C0" if many else None,
            label=None if many or not label else label,
        )


def _mark_best(panel, result: SweepResult, trials: list, axis: str, xs_of: dict) -> None:
    """A gold star on the winning trial, where it lies on this axis."""
    winner = next((t for t in trials if result.best and t.id == result.best["id"]), None)
    if winner is not None:
        panel.plot(
            [xs_of[plain_value(winner.overrides[axis])]],
            [winner.val[result.metric]],
            marker="*",
            markersize=16,
            color="gold",
            markeredgecolor="black",
            linestyle="none",
            zorder=5,
            label="best",
        )


# -- compare -------------------------------------------------------------------------------------
def compare_plot(result: CompareResult, path: str | Path) -> str:
    """Loss and accuracy per epoch of every run in one figure, a colour per run (styles as in
    :func:`curve_panels`)."""
    has_acc = _has_accuracy([r.history for r in result.runs])
    fig, panels = new_figure(1, 2 if has_acc else 1, figsize=(11.0 if has_acc else 6.4, 4.2))
    curve_panels(panels, [(r.label, f"C{i % 10}", r.history) for i, r in enumerate(result.runs)])
    fig.suptitle("runs compared")
    fig.tight_layout()
    return str(save_figure(fig, path))


# -- evaluate ------------------------------------------------------------------------------------
def confusion_plot(result: EvalResult, path: str | Path) -> Path:
    """The confusion matrix of the evaluated split (test, when several were) as a heat map, counts
    in the cells, rows the true class; written atomically.

    Raises:
        InputError: the run has no confusion matrix (regression, multi-label or sequence outputs).
    """
    from nncli.render.evaluate import class_names, focus_split

    split, m = focus_split(result.splits)
    if m is None:
        raise InputError(
            f"--plot draws a confusion matrix, which a run with loss {result.loss} does not have",
            hint="the per-split metrics are in the table and in --json",
        )
    counts = m["confusion"]
    names = class_names(result.classes, len(counts))
    size = min(4.0 + 0.35 * len(names), 16.0)
    fig, (ax,) = new_figure(figsize=(size + 1.2, size))
    image = ax.imshow(counts, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if len(names) <= 30:  # beyond that the numbers overlap: the colours carry the matrix
        top = max(max(row) for row in counts) or 1
        for r, row in enumerate(counts):
            for c, v in enumerate(row):
                ax.text(c, r, str(v), ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black")
    ticks = range(len(names)) if len(names) <= 50 else range(0, len(names), 10)
    ax.set_xticks(list(ticks))
    tilt = len(names) > 20 or max(len(n) for n in names) > 3  # long names would overlap side by side
    ax.set_xticklabels([names[i] for i in ticks], rotation=45 if tilt else 0, ha="right" if tilt else "center")
    ax.set_yticks(list(ticks))
    ax.set_yticklabels([names[i] for i in ticks])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{Path(result.run_dir).name}: {split}, accuracy {pct(m.get('accuracy'))}")
    fig.tight_layout()
    return save_figure(fig, path)


# -- probe ---------------------------------------------------------------------------------------
def probe_figure(report: ProbeReport):
    """A matplotlib Figure: ||dL/dh|| per main-path layer on a log scale (at init, and after
    ``--steps``), plus R against Repeat copies for a sweep. Each line has one point per layer
    (per depth); lines carry labels "at init", "after N steps", "R".
    """
    panels = 2 if report.sweep else 1
    fig, axes = new_figure(ncols=panels, figsize=(6.4 * panels, 4.2))
    ax = axes[0]
    series = [("at init", report.init, "o")]
    if report.after is not None:
        series.append((f"after {report.training.steps} steps", report.after, "s"))
    for label, res, marker in series:
        xs = [row.index for row in res.layers]
        ys = [_plottable(row.grad_norm) for row in res.layers]
        ax.plot(xs, ys, marker=marker, markersize=3, linewidth=1, label=label)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_xlabel("layer (main path, input -> output)")
    ax.set_ylabel("||dL/dh||")
    ax.set_title(
        f"{report.name}: {report.init.verdict.value}, R = {report.init.ratio:.2e}, gamma = {report.init.gamma:.3g}",
        fontsize=10,
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    if report.sweep:
        ax2 = axes[1]
        xs = [p.times for p in report.sweep.points]
        ax2.plot(xs, [_plottable(p.ratio) for p in report.sweep.points], marker="o", label="R")
        if report.sweep.log10_ratio_per_copy is not None:
            a, b = report.sweep.intercept, report.sweep.log10_ratio_per_copy
            ax2.plot(
                xs,
                [10 ** (a + b * t) for t in xs],
                linestyle="--",
                linewidth=1,
                label=f"fit: R ~ {report.sweep.gamma_per_copy:.3g}^copies",
            )
        ax2.set_yscale("log")
        ax2.xaxis.set_major_locator(_integer_ticks())
        ax2.set_xlabel(f"copies of {report.sweep.repeat}")
        ax2.set_ylabel("R = ||dL/dh_1|| / ||dL/dh_L||")
        ax2.set_title("R against depth", fontsize=10)
        ax2.grid(True, which="major", alpha=0.3)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _integer_ticks():
    """Tick positions at whole numbers only (epochs, layers, copies)."""
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _plottable(v: float | None) -> float:
    # A log axis cannot show 0 or inf: NaN leaves a gap at that point instead of a wrong value.
    return v if v is not None and math.isfinite(v) and v > 0 else math.nan


def probe_plot(report: ProbeReport, path: str | Path) -> Path:
    """Write :func:`probe_figure` to ``path`` (.png, .svg or .pdf), atomically; returns the path."""
    return save_figure(probe_figure(report), path)


# -- attack --------------------------------------------------------------------------------------


def attack_plot(result: AttackResult, path: str | Path) -> Path:
    """Robust accuracy against eps, one line per method, the clean accuracy dashed."""
    fig, (ax,) = new_figure(figsize=(5.6, 4.0))
    for method in result.methods:
        rows = [r for r in result.rows if r.method == method]
        ax.plot([r.eps for r in rows], [r.accuracy for r in rows], marker="o", label=method.upper())
    ax.axhline(result.clean_accuracy, color="grey", linestyle="--", linewidth=1, label="clean")
    ax.set_xlabel("eps (L-inf, data units)")
    ax.set_ylabel(f"accuracy on {result.split}")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{Path(result.run_dir).name}: accuracy under attack")
    fig.tight_layout()
    return save_figure(fig, path)


def attack_examples_plot(result: AttackResult, path: str | Path) -> Path:
    """Rows of examples: the original (true and predicted label), the perturbation (scaled to the
    full grey range, as it is invisible otherwise) and the adversarial input (its prediction)."""
    import numpy as np

    ex = result.examples
    classes = ex.get("classes")

    def name(i: int) -> str:
        return str(classes[i]) if classes and i < len(classes) else str(i)

    lo, hi = ex["value_range"]
    n = len(ex["x"])
    fig, axes = new_figure(n, 3, figsize=(4.8, 1.5 * n + 0.6))

    def image(a):
        a = np.moveaxis(a, 0, -1)
        return a[..., 0] if a.shape[-1] == 1 else a

    for i in range(n):
        x, adv = ex["x"][i], ex["x_adv"][i]
        delta = adv - x
        span = float(np.abs(delta).max()) or 1.0
        panels = [
            ((x - lo) / (hi - lo), f"label {name(int(ex['y'][i]))}, pred {name(int(ex['pred_clean'][i]))}"),
            ((delta / span + 1) / 2, f"perturbation x{1 / span:.3g}"),
            ((adv - lo) / (hi - lo), f"pred {name(int(ex['pred_adv'][i]))}"),
        ]
        for j, (img, title) in enumerate(panels):
            ax = axes[3 * i + j]
            ax.imshow(np.clip(image(img), 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=8, color="red" if j == 2 and ex["pred_adv"][i] != ex["y"][i] else "black")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{ex['method'].upper()} at eps {ex['eps']:g}: original, perturbation, adversarial", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
