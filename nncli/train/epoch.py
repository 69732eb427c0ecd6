"""The epoch loop: fetch a batch, forward and backward through the strategy, the optimizer step,
the running metrics; at each epoch's end its validation and record. Everything else (progress,
checkpoints, early stopping, ...) is a callback (:mod:`nncli.train.callbacks`).

The step loop is the hot path: a tiny model's step takes a few hundred microseconds, so what it
reads often is bound to attributes once, and nothing in it waits for the device except at sync
points. Each step's loss and correct count stay on the device, queued, until a sync point:
every ``sync_every`` steps (1 on the CPU, where reading costs nothing, so a non-finite loss is
caught before it touches the weights; 25 on an accelerator, whose queue then stays full), the
epoch's last step and checkpoint steps. There the host reads the queue in one transfer, looks
for a non-finite loss and adds the values to the running sums, in step order. One code path for
every device: only the interval differs.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch

from nncli import data as data_mod
from nncli.data.multi import first_output
from nncli.data.stream import batch_source
from nncli.status import RunStatus
from nncli.train.callbacks import BatchEnd
from nncli.train.task import _correct, outputs_loss

if TYPE_CHECKING:
    from nncli.train.loop import Trainer


def epoch_permutation(seed: int, epoch: int, n: int):
    """The data order of ``epoch``: a function of (seed, epoch) only, so a resumed run replays it."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)
    return torch.randperm(n, generator=gen)


class Diagnosed(Exception):
    """A non-finite loss stopped training; ``report`` is the non-finite diagnosis."""

    def __init__(self, report: dict) -> None:
        super().__init__(report.get("message"))
        self.report = report


class EpochLoop:
    """Train from where ``t.state`` stands until the planned epochs are done, a callback stops
    the run, an interrupt (a checkpoint is saved) or a non-finite loss."""

    def __init__(self, t: Trainer, interrupt) -> None:
        self.t, self.interrupt = t, interrupt
        cfg = t.cfg
        self.st, self.strategy, self.callbacks = t.state, t.strategy, t.callbacks
        self.batch_callbacks = [cb for cb in t.callbacks if _overrides_batch_end(cb)]
        self.x, self.y = t.ds.x_train, t.ds.y_train
        self.model, self.optimizer, self.scheduler = t.train_model, t.optimizer, t.scheduler
        self.world, self.rank, self.bs, self.steps = t.world, t.rank, cfg.batch_size, t.steps_per_epoch
        self.sync_every, self.ckpt_every = t.sync_every, cfg.checkpoint_every
        self.loss_name, self.augment = cfg.loss, t.aug_gen is not None
        self.fetch = None if t.strategy.data_on_device else t.strategy.batch  # host data: pinned copy per batch
        self.pending_stop = False  # DDP: an interrupt the ranks agreed on at the last sync point
        self.xb = self.loss_mean = None  # the last step's batch and loss, for the non-finite diagnosis

    def run(self) -> dict | None:
        """Returns the non-finite diagnosis (:func:`nncli.train.diagnostics.nonfinite_report`), or None."""
        try:
            while self.st.epoch < self.t.cfg.epochs:
                if not self.epoch():
                    break
        except Diagnosed as stop:
            return stop.report
        return None

    # ---- one epoch ----------------------------------------------------------------------
    def start_epoch(self) -> None:
        t, st = self.t, self.st
        self.perm = epoch_permutation(t.cfg.seed, st.epoch, len(self.y)).to(self.x.device)
        self.model.train()
        self.loss_sum, self.correct_sum, self.count = st.acc[0], st.acc[1], st.acc[2]
        self.queued: list = []  # (global step, loss, examples, correct) of the steps since the last sync
        self.first_bad = -1  # the first step whose loss was not finite, once a sync point saw one
        self.t0 = self.epoch_start = time.perf_counter()  # t0: start of the time not yet in train_time
        self.samples_at_start = st.train_samples
        # streamed data (data.stream, or a large image folder): the same batches from a DataLoader
        self.batches = batch_source(
            self.x,
            self.y,
            t.s.data_cfg,
            self.perm,
            st.step_in_epoch,
            batch_size=self.bs,
            steps=self.steps,
            device=t.device,
            rank=self.rank,
            world=self.world,
            channels_last=t.strategy.channels_last,
        )
        for cb in self.callbacks:
            cb.on_epoch_start(t, st.epoch)

    def epoch(self) -> bool:
        """The rest of the current epoch; False when training stops (interrupt, callback)."""
        self.start_epoch()
        st = self.st
        while st.step_in_epoch < self.steps:
            # Stop *before* the step draws any random number (augmentation, dropout): the
            # checkpoint then holds exactly the RNG state the next step starts from. DDP ranks
            # act on a flag they agreed on at the previous sync point.
            if self.pending_stop or (self.world == 1 and self.interrupt.requested):
                self.stop_interrupted()
                return False
            self.step()
        return self.end_epoch()

    def fetch_batch(self, step: int):
        """This rank's share of batch ``step``: ``(xb, yb, local size, global size)``."""
        idx = self.perm[step * self.bs : (step + 1) * self.bs]
        local = idx[self.rank :: self.world] if self.world > 1 else idx
        if self.batches is not None:
            xb, yb = next(self.batches)
        elif self.fetch is None:
            xb, yb = self.x[local], self.y[local]
        else:
            xb, yb = self.fetch(self.x, self.y, local)
        if self.augment:
            dc = self.t.s.data_cfg
            xb = data_mod.augment_batch(xb, crop=dc.crop, flip=dc.flip, generator=self.t.aug_gen)
        return xb, yb, len(local), len(idx)

    def step(self) -> None:
        """One training step: batch, forward, sync check, backward and update, metrics, callbacks."""
        st, step = self.st, self.st.step_in_epoch
        xb, yb, n_local, global_count = self.fetch_batch(step)
        out = self.strategy.forward(self.model, xb)
        batch_loss = outputs_loss(self.loss_name, out, yb, self.t.aux)
        self.xb, self.loss_mean = xb, batch_loss
        detached = batch_loss.detach()
        correct = _correct(self.loss_name, first_output(out).detach(), yb)
        self.queued.append((st.global_step, detached, n_local, correct))
        checkpoint = bool(self.ckpt_every and (st.global_step + 1) % self.ckpt_every == 0 and step + 1 < self.steps)
        # a checkpoint step is a sync point too: its weights are known good before they are saved
        sync = (step + 1) % self.sync_every == 0 or step + 1 == self.steps or checkpoint
        # DDP ranks must meet at the same steps, so only sync points decide
        if sync and self.nonfinite_at_sync():
            self.skip_step()  # raises Diagnosed unless skip_nonfinite
            return
        # the mean over the *global* batch: this rank's share of it, times world because DDP
        # averages the ranks' gradients (1.0 for one process)
        scale = self.world * n_local / global_count
        self.strategy.backward_step(batch_loss if scale == 1.0 else batch_loss * scale, self.optimizer)
        if self.scheduler is not None:
            self.scheduler.step()
        self.count += n_local
        st.step_in_epoch += 1
        st.global_step += 1
        st.train_samples += global_count
        if checkpoint:
            st.acc = self.t.partial([self.loss_sum, self.correct_sum], self.count)
            self.flush_time()
        if self.batch_callbacks:
            self.batch_end(detached, sync, checkpoint)

    def batch_end(self, loss, synced: bool, checkpoint: bool) -> None:
        st = self.st
        rate = (st.train_samples - self.samples_at_start) / max(time.perf_counter() - self.t0, 1e-9)
        batch = BatchEnd(
            st.epoch, st.step_in_epoch, self.steps, st.global_step, loss, synced, checkpoint, self.running, rate
        )
        for cb in self.batch_callbacks:
            cb.on_batch_end(self.t, batch)

    def running(self) -> tuple:
        """This rank's epoch so far, up to the last sync point: loss sum, correct count, examples."""
        return self.loss_sum, self.correct_sum, self.count

    def flush_time(self) -> None:
        """Count the training time since ``t0`` into the state (before a checkpoint saves it)."""
        now = time.perf_counter()
        self.st.train_time += now - self.t0
        self.t0 = now

    # ---- non-finite losses and interrupts -------------------------------------------------
    def nonfinite_at_sync(self) -> bool:
        """At a sync point: read the queued steps (one transfer); was any loss non-finite (on any
        rank)? If not, their values join the running sums. Under DDP the ranks also agree here on
        a pending interrupt."""
        queued = self.queued
        losses = _to_host([q[1] for q in queued])
        corrects = _to_host([q[3] for q in queued if q[3] is not None])
        self.first_bad = next((q[0] for q, v in zip(queued, losses, strict=True) if not math.isfinite(v)), -1)
        bad = self.first_bad >= 0
        if self.world > 1:
            bad, self.pending_stop = self.strategy.any_across(bad, self.interrupt.requested)
        if bad:
            return True
        for q, value in zip(queued, losses, strict=True):
            self.loss_sum += value * q[2]
        for value in corrects:
            self.correct_sum += value
        queued.clear()
        return False

    def skip_step(self) -> None:
        """The step's loss is not finite: skip it (``skip_nonfinite``: every step is a sync point,
        so it is this one) or stop with the diagnosis."""
        t, st = self.t, self.st
        if not t.cfg.skip_nonfinite:
            raise Diagnosed(t.diagnose(self.first_bad, self.xb, self.loss_mean))
        st.skipped += 1
        st.step_in_epoch += 1
        st.global_step += 1
        if self.scheduler is not None:
            self.scheduler.step()
        self.queued.clear()

    def stop_interrupted(self) -> None:
        """Ctrl-C or SIGTERM between two steps: the callbacks save the run where it stands."""
        t, st = self.t, self.st
        if self.world == 1 and self.nonfinite_at_sync():
            # a step since the last sync point was not finite: its weights must not become the
            # checkpoint (resume would start from NaN); stop as at a sync point
            raise Diagnosed(t.diagnose(self.first_bad, self.xb, self.loss_mean))
        st.status = RunStatus.INTERRUPTED
        st.acc = t.partial([self.loss_sum, self.correct_sum], self.count)
        self.flush_time()
        for cb in self.callbacks:
            cb.on_interrupt(t)

    # ---- the epoch's end ----------------------------------------------------------------
    def end_epoch(self) -> bool:
        """The epoch's record (one sync for the running sums, then validation), the best epoch,
        then the callbacks. Returns False when training stops."""
        t, st, cfg = self.t, self.st, self.t.cfg
        loss_total, correct_total, count_total = self.strategy.sum_across([self.loss_sum, self.correct_sum, self.count])
        self.flush_time()
        epoch_time = time.perf_counter() - self.epoch_start
        val = t.evaluate("val")
        record = {
            "epoch": st.epoch + 1,
            "step": st.global_step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": loss_total / max(count_total, 1),
            "train_accuracy": correct_total / max(count_total, 1) if cfg.loss != "mse" else None,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "epoch_time_s": epoch_time,
            "samples_per_s": (st.train_samples - self.samples_at_start) / max(epoch_time, 1e-9),
        }
        st.history.append(record)
        improved = st.improved(record, t.monitor, cfg.min_delta)
        if improved:
            st.best = {"epoch": st.epoch + 1, "val_loss": val["loss"], "val_accuracy": val["accuracy"]}
            st.bad_epochs = 0
        else:
            st.bad_epochs += 1
        st.epoch += 1
        st.step_in_epoch = 0
        st.acc = [0.0, 0.0, 0]
        if st.epoch >= cfg.epochs:
            st.status = RunStatus.COMPLETED
        for cb in self.callbacks:
            stop = cb.on_validation_end(t, record, improved)
            if stop and st.status == RunStatus.RUNNING:
                st.status = stop
        for cb in self.callbacks:
            cb.on_epoch_end(t, record, improved)
        return st.status == RunStatus.RUNNING


def _to_host(tensors: list) -> list:
    """Device scalars as Python numbers, in one transfer (one wait for the device)."""
    if len(tensors) == 1:  # every step on the CPU: a stack would cost more than the read
        return [tensors[0].item()]
    return torch.stack(tensors).tolist() if tensors else []


def _overrides_batch_end(callback) -> bool:
    """Whether ``callback``'s class defines its own ``on_batch_end`` (the base's does nothing):
    the hot loop calls only those."""
    from nncli.train.callbacks import Callback

    return type(callback).on_batch_end is not Callback.on_batch_end
