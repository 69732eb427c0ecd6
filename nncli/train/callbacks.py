"""Callbacks: everything around the training loop that is not the loop itself.

The loop (:mod:`nncli.train.epoch`) fetches a batch, has the strategy run forward, backward and
the optimizer step, and keeps the running metrics; progress display, checkpoints, early
stopping, TensorBoard, plots, the memory check and a sweep's pruning are callbacks. A user adds
their own with ``run_training(..., callbacks=[...])``.

A callback subclasses :class:`Callback` and overrides the hooks it needs; every hook gets the
:class:`~nncli.train.loop.Trainer` first (its ``state``, ``cfg``, ``strategy``, ``files``,
``raw`` model, ``rank``/``world`` are public). Under DDP every rank runs the callbacks (a hook
that writes or prints checks ``trainer.is_writer``, true on rank 0 only); collectives inside
a hook must happen on every rank alike. The hooks, in the order they fire:

``setup(trainer)``
    Before anything is allocated on the device or written: ``trainer.s`` is the prepared run
    (:class:`~nncli.train.prepare.Setup`: spec, sections, data, and ``s.built``, the spec inferred
    on the meta device). Raise an :class:`~nncli.errors.NncliError` to refuse the run (the memory
    check does); the model, optimizer and data are built after it.
``on_fit_start(trainer, info)``
    The run folder's ``run.yaml`` is written and training is about to start. ``info``: run_dir,
    device, world_size, epochs, steps_per_epoch, epoch and step_in_epoch (where it starts: a
    resumed run mid-epoch), resumed, sizes, params, spec, data_on_device, amp, compile.
``on_message(trainer, text)``
    A sentence for the user (dropped batches, SyncBatchNorm, early stopping), at any time.
``on_epoch_start(trainer, epoch)``
    Before the first step of an epoch (0-based ``epoch``; a resumed epoch starts mid-way).
``on_batch_end(trainer, batch)``
    After each optimizer step (skipped non-finite steps do not count), a :class:`BatchEnd`.
    Runs in the hot loop: keep it cheap; read ``batch.loss`` or ``batch.running()`` only when
    ``batch.synced`` (anything else makes the host wait for the device).
``on_validation_end(trainer, record, improved) -> str | None``
    After the epoch's validation: ``record`` is its metrics row (``metrics.jsonl``),
    ``improved`` whether it is the best epoch so far; ``trainer.state`` already counts the
    epoch (``state.status`` is ``completed`` after the last one). Return a status (for example
    ``"early_stopped"``, ``"pruned"``) to stop training after this epoch; callbacks later in the
    list see it as ``trainer.state.status``.
``on_epoch_end(trainer, record, improved)``
    Then, with the epoch's status decided: the checkpoint callback saves it, progress prints it.
``on_interrupt(trainer)``
    Ctrl-C or SIGTERM stopped training between two steps (``state.status`` is ``interrupted``,
    the running sums are in ``state.acc``); the checkpoint callback saves here.
``on_fit_end(trainer, result)``
    The :class:`~nncli.train.runs.TrainResult` is final and ``report.json`` written (a run that
    raised gets no ``on_fit_end``).
``close()``
    Once at the very end, however the run ended (also after an error).

The trainer's own callbacks come first (checkpointing first of all: a later callback sees the
step's or the epoch's checkpoint submitted), the ones passed in after them. A callback asks to
stop only through ``on_validation_end``'s return value; a step-level stop is
Ctrl-C's (the interrupt flag), which the loop reads between steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nncli.status import RunStatus

if TYPE_CHECKING:
    from nncli.train.loop import Trainer
    from nncli.train.runs import TrainResult


@dataclass
class BatchEnd:
    """What :meth:`Callback.on_batch_end` is told about the step just done.

    Attributes:
        epoch: 0-based epoch; step: steps done in it (1 after its first); steps: steps per epoch.
        global_step: steps done in the run, all epochs (skipped ones included).
        loss: this step's mean loss, a device scalar (``float(batch.loss)`` waits for the device).
        synced: host and device met at this step (every step on CPU, every ``sync_every`` on an
            accelerator, and checkpoint steps): reading ``loss`` or :meth:`running` is free.
        checkpoint: a mid-epoch checkpoint step (``checkpoint_every``).
        running: ``() -> (loss sum, correct count, examples)`` of this rank's epoch so far.
        samples_per_s: global training examples per second since the epoch (or resume) started.
    """

    epoch: int
    step: int
    steps: int
    global_step: int
    loss: object
    synced: bool
    checkpoint: bool
    running: Callable[[], tuple]
    samples_per_s: float


class Callback:
    """Base class of training callbacks: every hook does nothing (see the module docstring)."""

    def setup(self, trainer: Trainer) -> None:
        pass

    def on_fit_start(self, trainer: Trainer, info: dict) -> None:
        pass

    def on_message(self, trainer: Trainer, text: str) -> None:
        pass

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        pass

    def on_batch_end(self, trainer: Trainer, batch: BatchEnd) -> None:
        pass

    def on_validation_end(self, trainer: Trainer, record: dict, improved: bool) -> str | None:
        return None

    def on_epoch_end(self, trainer: Trainer, record: dict, improved: bool) -> None:
        pass

    def on_interrupt(self, trainer: Trainer) -> None:
        pass

    def on_fit_end(self, trainer: Trainer, result: TrainResult) -> None:
        pass

    def close(self) -> None:
        pass


class Progress(Callback):
    """Progress for a display (rank 0 only): ``observer`` has ``on_start(info)``,
    ``on_step(info)`` (a few times a second at most), ``on_epoch(record)`` (the record with
    ``epochs`` and ``improved``), ``on_message(text)`` and ``close()``, as
    :class:`nncli.render.train.TrainProgress` does."""

    interval_s = 0.25  # a redraw costs more than a tiny model's step

    def __init__(self, observer) -> None:
        self.observer = observer
        self.last = 0.0

    def on_fit_start(self, trainer, info):
        if trainer.is_writer:
            self.observer.on_start(info)

    def on_epoch_start(self, trainer, epoch):
        self.last = time.perf_counter()  # an epoch's first steps show the bar only after a moment

    def on_message(self, trainer, text):
        if trainer.is_writer:
            self.observer.on_message(text)

    def on_batch_end(self, trainer, batch):
        if not (batch.synced and trainer.is_writer):
            return
        now = time.perf_counter()
        if now - self.last <= self.interval_s:
            return
        self.last = now
        loss_total, correct_total, count = batch.running()
        self.observer.on_step(
            {
                "epoch": batch.epoch + 1,
                "epochs": trainer.cfg.epochs,
                "step": batch.step,
                "steps": batch.steps,
                "global_step": batch.global_step,
                "loss": loss_total / max(count, 1),
                "accuracy": correct_total / max(count, 1) if trainer.cfg.loss != "mse" else None,
                "samples_per_s": batch.samples_per_s,
            }
        )

    def on_epoch_end(self, trainer, record, improved):
        if trainer.is_writer:
            self.observer.on_epoch(dict(record, epochs=trainer.cfg.epochs, improved=improved))

    def close(self):
        self.observer.close()


class EarlyStopping(Callback):
    """Stop when the monitored metric has not improved for ``patience`` epochs (the loop counts
    them in ``state.bad_epochs``, which checkpoints keep)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.stopped = False

    def on_validation_end(self, trainer, record, improved):
        st = trainer.state
        self.stopped = bool(st.bad_epochs >= self.patience and st.epoch < trainer.cfg.epochs)
        return RunStatus.EARLY_STOPPED if self.stopped else None

    def on_epoch_end(self, trainer, record, improved):
        st = trainer.state
        if self.stopped and st.status == RunStatus.EARLY_STOPPED:
            trainer.message(
                f"early stopping: {trainer.monitor} did not improve for {self.patience} epochs "
                f"(best epoch {st.best['epoch']})"
            )


class Checkpointing(Callback):
    """Through ``trainer.ckpt`` (:class:`~nncli.train.state.Checkpointer`): ``last.pt`` mid-epoch
    (every ``checkpoint_every`` steps), at epoch ends (at most every
    ``checkpoint_seconds``, and always after the last epoch or a stop), on an interrupt; and
    ``best.pt`` with the next checkpoint after a best epoch. It saves at ``on_epoch_end``: the
    checkpoint holds the status the others decided at ``on_validation_end``."""

    def on_batch_end(self, trainer, batch):
        if batch.checkpoint:
            trainer.ckpt.save()

    def on_epoch_end(self, trainer, record, improved):
        st, ckpt = trainer.state, trainer.ckpt
        if improved:
            ckpt.remember_best()
        ckpt.metrics_dirty = True
        save_now = st.status != RunStatus.RUNNING or ckpt.due(trainer.cfg.checkpoint_seconds)
        if (
            trainer.world > 1 and st.status == RunStatus.RUNNING
        ):  # each rank's clock differs; the save gathers all ranks
            (save_now,) = trainer.strategy.any_across(save_now)
        if save_now:
            ckpt.save()

    def on_interrupt(self, trainer):
        trainer.ckpt.metrics_dirty = True
        trainer.ckpt.save()

    def on_fit_end(self, trainer, result):
        if trainer.ckpt.metrics_dirty:  # epochs finished after the last checkpoint (a non-finite stop)
            trainer.ckpt.write_metrics()
            trainer.files.wait()


class TensorBoard(Callback):
    """Scalars under ``<run>/tensorboard`` (rank 0): each epoch's metrics (``train/loss``,
    ``val/accuracy``, ``lr``, ...) against the epoch, and at each sync step the step's loss and
    learning rate (``step/loss``, ``step/lr``) against the global step."""

    def __init__(self, writer=None) -> None:
        self.writer = writer  # a SummaryWriter; opened on the run folder at on_fit_start when None

    def on_fit_start(self, trainer, info):
        if self.writer is None and trainer.is_writer:
            from torch.utils.tensorboard import SummaryWriter  # checked by runs.check_tensorboard()

            self.writer = SummaryWriter(str(Path(trainer.run_dir) / "tensorboard"))

    def on_batch_end(self, trainer, batch):
        if self.writer is not None and batch.synced:
            self.writer.add_scalar("step/loss", float(batch.loss), batch.global_step)
            self.writer.add_scalar("step/lr", trainer.optimizer.param_groups[0]["lr"], batch.global_step)

    def on_epoch_end(self, trainer, record, improved):
        if self.writer is None:
            return
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "samples_per_s"):
            if record.get(key) is not None:
                self.writer.add_scalar(key.replace("_", "/", 1), record[key], record["epoch"])
        self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()


class MemoryGuard(Callback):
    """Refuse, before the run folder is written, a run whose first step cannot fit in the
    device's free memory (:func:`nncli.train.memory_guard.check_training_memory`)."""

    def __init__(self, available: int | None = None) -> None:
        self.available = available  # free bytes; None: what the device has free

    def setup(self, trainer):
        from nncli.train.memory_guard import check_training_memory

        check_training_memory(trainer.s, trainer.device, self.available)


class Plot(Callback):
    """Loss and accuracy curves to ``path`` (.png/.svg/.pdf) at the end of the run, drawn over
    the whole history, and the path remembered in ``report.json`` so that a resume redraws it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_fit_end(self, trainer, result):
        if not (trainer.is_writer and result.history):
            return
        from nncli.render.plots import train_plot
        from nncli.train.runs import remember_plot

        train_plot(result, self.path)
        result.plot = str(self.path)
        remember_plot(result.run_dir, self.path)
