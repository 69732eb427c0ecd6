"""``nncli train``: the training loop, run folders, checkpoints, exact resume and DDP.

The lecture's meta-algorithm, as a loop a user does not have to write: data split and
normalised (:mod:`nncli.data`), an architecture (the spec), a loss, a gradient-descent variant
with a schedule; then watch training error, then validation error.

**One library call.** :func:`run_training` returns a :class:`TrainResult` and never prints;
everything around the loop (progress, checkpoints, early stopping, TensorBoard, plots, the
memory check, a sweep's pruning) is a :class:`Callback` (:mod:`~nncli.train.callbacks` documents
the hooks); a user adds their own with ``run_training(..., callbacks=[...])``. Sweeps call it
in-process.

The modules, from the outside in:

- :mod:`~nncli.train.config`: the ``train:`` section and its choice lists (no torch import);
- :mod:`~nncli.train.prepare`: everything a run needs, validated before any file is touched;
- :mod:`~nncli.train.loop`: the trainer and :func:`run_training`; :mod:`~nncli.train.epoch`
  its epoch loop, :mod:`~nncli.train.callbacks` what runs around it, :mod:`~nncli.train.state`
  its checkpoints, :mod:`~nncli.train.strategy` its device, precision, clipping and DDP
  reductions, :mod:`~nncli.train.signals` Ctrl-C;
- :mod:`~nncli.train.distributed`: the same under DDP (:func:`launch_distributed`);
- :mod:`~nncli.train.task`: targets, losses, accuracy, evaluation; :mod:`~nncli.train.optim`:
  optimizers and schedules; :mod:`~nncli.train.diagnostics`: the non-finite layer search;
- :mod:`~nncli.train.runs`: the run folder's files, written (:mod:`~nncli.train.writer` writes
  them in the background; :mod:`nncli.runs` reads them back); :mod:`~nncli.train.trained` opens
  a finished run again, its network with a checkpoint's weights; :mod:`~nncli.train.replace`
  replaces a run folder (``train --force``).

This package's own import is light: the names below load their modules (and torch) on first
use, so that ``nncli.train.config`` can be imported without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nncli.lazy import lazy_exports

if TYPE_CHECKING:
    from nncli.train.callbacks import Callback
    from nncli.train.distributed import launch_distributed
    from nncli.train.loop import run_training
    from nncli.train.runs import TrainResult, check_tensorboard

__all__ = ["run_training", "TrainResult", "Callback", "launch_distributed", "check_tensorboard"]

# Loaded on first use: importing nncli.train.config runs this file, and must not load torch.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "run_training": "nncli.train.loop",
        "launch_distributed": "nncli.train.distributed",
        "TrainResult": "nncli.train.runs",
        "check_tensorboard": "nncli.train.runs",
        "Callback": "nncli.train.callbacks",
    },
)
