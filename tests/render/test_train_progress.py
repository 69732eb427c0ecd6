"""train's progress display never names an epoch past the last: after the final epoch (while the
best checkpoint is evaluated) and on resuming a finished run, the bar read "epoch 4/3"."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """
name: tiny
input: [2]
layers:
  - Linear: {out_features: 8}
  - ReLU
  - Linear: {out_features: 2}
data: {name: moons, n: 200}
train: {optimizer: adam, lr: 0.01, batch_size: 50, epochs: 3, seed: 0}
"""


def _epochs_named(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"epoch\s+(\d+)/(\d+)", text)]


def _train(observer_file, **kwargs):
    from nncli.render.train import TrainProgress
    from nncli.train import run_training

    console = Console(file=observer_file, force_terminal=True, width=200, color_system=None)
    with TrainProgress(console) as progress:
        return run_training(observer=progress, device="cpu", **kwargs)


def test_the_bar_never_reads_an_epoch_past_the_last(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    out = io.StringIO()
    result = _train(out, spec=spec, overrides=None, out_dir=tmp_path / "run")
    assert result.status == "completed" and result.epochs == 3
    named = _epochs_named(out.getvalue())
    assert (3, 3) in named  # the bar was drawn and the epochs were counted
    assert all(n <= total for n, total in named), named
    assert "evaluating the best checkpoint" in out.getvalue()
    # resuming the finished run: nothing to train, still no epoch 4 of 3
    again = io.StringIO()
    _train(again, spec=None, overrides=None, out_dir=None, resume=tmp_path / "run")
    assert "nothing to do" in again.getvalue()
    assert all(n <= total for n, total in _epochs_named(again.getvalue())), again.getvalue()


def test_step_label():
    from nncli.render.train import step_label

    assert step_label(1, 3) == "epoch 1/3" and step_label(3, 3) == "epoch 3/3"
    assert "epoch" not in step_label(4, 3)
