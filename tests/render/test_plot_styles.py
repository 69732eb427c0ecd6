"""``train --plot`` and ``compare --plot`` draw the curves the same way: validation solid, training
dashed, accuracy in percent (as the tables print it)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("matplotlib")

HISTORY = [
    {
        "epoch": e,
        "train_loss": 1 / e,
        "val_loss": 1.2 / e,
        "train_accuracy": 0.5 + 0.1 * e,
        "val_accuracy": 0.4 + 0.1 * e,
    }
    for e in (1, 2, 3)
]


def _figures(monkeypatch, tmp_path):
    from nncli.render import plots

    figs = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi=120: figs.append(fig) or Path(path))
    result = SimpleNamespace(history=HISTORY, best_epoch=3, spec="m", status="completed", test={"accuracy": 0.9})
    plots.train_plot(result, tmp_path / "t.png")
    runs = [SimpleNamespace(label="a", history=HISTORY), SimpleNamespace(label="b", history=HISTORY)]
    plots.compare_plot(SimpleNamespace(runs=runs), tmp_path / "c.png")
    return figs


def _curves(ax) -> dict:
    """linestyle -> the y values of the data lines with that style (legend-only lines have none)."""
    out: dict = {}
    for line in ax.get_lines():
        ys = list(line.get_ydata())
        if len(ys) == len(HISTORY):
            out.setdefault(line.get_linestyle(), []).append([float(y) for y in ys])
    return out


def test_train_and_compare_plots_share_styles_and_percent_axes(monkeypatch, tmp_path):
    train_fig, compare_fig = _figures(monkeypatch, tmp_path)
    val = [100 * r["val_accuracy"] for r in HISTORY]
    train = [100 * r["train_accuracy"] for r in HISTORY]
    for fig in (train_fig, compare_fig):
        loss_ax, acc_ax = fig.axes[:2]
        curves = _curves(acc_ax)
        assert all(c == pytest.approx(val) for c in curves["-"]), curves  # validation: solid
        assert all(c == pytest.approx(train) for c in curves["--"]), curves  # training: dashed
        assert acc_ax.get_ylabel() == "accuracy (%)"
        fig.canvas.draw()
        assert all(t.get_text().endswith("%") for t in acc_ax.get_yticklabels() if t.get_text())
        assert _curves(loss_ax)["-"][0] == pytest.approx([r["val_loss"] for r in HISTORY])
        assert loss_ax.get_yscale() == "log" and loss_ax.get_ylabel() == "loss"
        labels = acc_ax.get_legend_handles_labels()[1]
        assert "validation" in labels and "training" in labels
    assert len(_curves(compare_fig.axes[1])["-"]) == 2  # one validation line per run
