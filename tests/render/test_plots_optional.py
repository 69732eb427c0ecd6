"""matplotlib is the optional ``plots`` extra: every ``--plot`` without it is bad input (exit 2)
with the install command as the hint, said before any work starts (no run folder made)."""

from __future__ import annotations

import sys

import pytest
from conftest import SPECS

HINT = "pip install 'nncli[plots]'"


@pytest.fixture
def no_matplotlib(monkeypatch):
    """matplotlib as if not installed: None in sys.modules makes its import (and lookup) fail."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def _sweep_file(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(f"base: {SPECS / 'moons-mlp.yaml'}\ngrid:\n  train.lr: [0.01, 0.1]\n")
    return path


@pytest.mark.parametrize("command", ["train", "sweep", "compare", "probe", "attack"])
def test_plot_without_matplotlib_exits_2_with_the_install_hint(command, no_matplotlib, tmp_path, run_cli):
    out, plot = tmp_path / "out", tmp_path / "plot.png"
    args = {
        "train": ["train", SPECS / "moons-mlp.yaml", "--out", out, "--epochs", "1"],
        "sweep": ["sweep", _sweep_file(tmp_path), "--out", out],
        "compare": ["compare", tmp_path / "run-a", tmp_path / "run-b"],
        "probe": ["probe", SPECS / "deep-tanh-xavier.yaml"],
        "attack": ["attack", tmp_path / "run-a", "--eps", "0.1"],
    }[command]
    r = run_cli([*args, "--plot", plot])
    assert r.code == 2, r.text
    assert "matplotlib" in r.err and HINT in r.err and "Traceback" not in r.err
    assert not out.exists() and not plot.exists()  # refused before any work


def test_the_check_itself(no_matplotlib):
    from nncli.errors import InputError
    from nncli.render.plots import check_plot_path, new_figure

    with pytest.raises(InputError) as caught:
        check_plot_path("x.png")
    assert caught.value.hint == HINT
    with pytest.raises(InputError):
        new_figure()  # a figure drawn by a path that skipped the early check says the same


def test_with_matplotlib_the_check_passes(tmp_path):
    pytest.importorskip("matplotlib")
    from nncli.render.plots import check_plot_path

    assert check_plot_path(tmp_path / "x.png") == tmp_path / "x.png"
