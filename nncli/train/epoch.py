"""The epoch loop: the training steps of each epoch, then its validation, record and checkpoint.

The step loop is the hot path: a tiny model's step takes a few hundred microseconds, so what it
reads often is bound to locals first, and on CUDA nothing in it waits for the device except at
sync points (every ``sync_every`` steps, the end of the epoch, checkpoint steps).
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING

import torch

from nncli import data as data_mod
from nncli.data.stream import batch_source
from nncli.train.signals import fault_injection
from nncli.train.task import _correct, _loss_mean

if TYPE_CHECKING:
    from nncli.train.loop import Trainer


def epoch_permutation(seed: int, epoch: int, n: int):
    """The data order of ``epoch``: a function of (seed, epoch) only, so a resumed run replays it."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)
    return torch.randperm(n, generator=gen)


def run_epochs(t: Trainer, interrupt) -> dict | None:
    """Train from where ``t.state`` stands until the planned epochs are done, early stopping, an
    interrupt (a checkpoint is saved) or a non-finite loss.

    Returns:
        The non-finite diagnosis (:func:`nncli.train.diagnostics.nonfinite_report`), or None.
    """
    cfg, ds, st = t.cfg, t.ds, t.state
    x_train, y_train = ds.x_train, ds.y_train
    n = len(y_train)
    kill_at, kill_signal = fault_injection()
    loss_name = cfg.loss
    augment = t.aug_gen is not None
    crop, flip = t.s.data_cfg.crop, t.s.data_cfg.flip
    params = [p for p in t.raw.parameters() if p.requires_grad]
    lazy = t.sync_every > 1
    bad_step = torch.full((), -1, dtype=torch.int64, device=t.device) if lazy else None
    # hot-loop locals: a tiny model's step is a few hundred microseconds, attribute lookups show
    model, optimizer, scheduler, scaler = t.train_model, t.optimizer, t.scheduler, t.scaler
    world, rank, bs, steps_per_epoch = t.world, t.rank, cfg.batch_size, t.steps_per_epoch
    sync_every, ckpt_every, clip = t.sync_every, cfg.checkpoint_every, cfg.clip_grad_norm
    amp = t.accel.amp_dtype is not None
    fetch = None if t.accel.data_on_device else t.accel.batch  # host data: pinned copy per batch
    while st.epoch < cfg.epochs:
        perm = epoch_permutation(cfg.seed, st.epoch, n).to(x_train.device)
        t.train_model.train()
        # The epoch's running loss and correct-count sums (this rank's): Python floats when every
        # step reads the loss anyway (CPU), device tensors otherwise (nothing to sync per step).
        if lazy:
            sums = torch.tensor([st.acc[0], st.acc[1]], dtype=torch.float64, device=t.device)
        run_loss, run_correct = st.acc[0], st.acc[1]
        count = st.acc[2]

        def current() -> list:
            return sums.tolist() if lazy else [run_loss, run_correct]

        last_report = time.perf_counter()
        t0 = epoch_start = time.perf_counter()  # t0: start of the segment not yet in train_time
        samples_at_start = st.train_samples
        step = st.step_in_epoch
        # streamed data (data.stream, or a large image folder): the same batches from a DataLoader
        batches = batch_source(
            x_train, y_train, t.s.data_cfg, perm, step, batch_size=bs, steps=steps_per_epoch,
            device=t.device, rank=rank, world=world, channels_last=t.accel.channels_last)
        pending_stop = False
        while step < steps_per_epoch:
            # Stop *before* the step draws any random number (augmentation, dropout): the
            # checkpoint then holds exactly the RNG state the next step starts from. DDP ranks
            # act on a flag they agreed on at the previous sync point.
            if pending_stop or (world == 1 and interrupt.requested):
                if lazy and world == 1 and bool(bad_step >= 0):
                    # a step since the last sync point was not finite: its weights must not become
                    # the checkpoint (resume would start from NaN); stop as at a sync point
                    return t.diagnose(int(bad_step.item()), xb, loss_mean, lazy)
                st.status = "interrupted"
                st.acc = t.partial(current(), count)
                st.train_time += time.perf_counter() - t0
                t.ckpt.metrics_dirty = True
                t.ckpt.save()
                return None
            idx = perm[step * bs:(step + 1) * bs]
            global_count = len(idx)
            local = idx[rank::world] if world > 1 else idx
            if batches is not None:
                xb, yb = next(batches)
            elif fetch is None:
                xb, yb = x_train[local], y_train[local]
            else:
                xb, yb = fetch(x_train, y_train, local)
            if augment:
                xb = data_mod.augment_batch(xb, crop=crop, flip=flip, generator=t.aug_gen)
            if amp:
                with t.accel.autocast():
                    out = model(xb)
                out = out.float()
            else:
                out = model(xb)
            loss_mean = _loss_mean(loss_name, out, yb)
            n_local = len(local)
            will_checkpoint = bool(ckpt_every and (st.global_step + 1) % ckpt_every == 0
                                   and step + 1 < steps_per_epoch)
            # a checkpoint step is a sync point too: its weights are known good before they are saved
            sync = (step + 1) % sync_every == 0 or step + 1 == steps_per_epoch or will_checkpoint
            if lazy:
                bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss_mean), st.global_step, bad_step)
                value = None
            else:
                value = loss_mean.item()  # free on the CPU: no device to wait for
            # DDP ranks must meet at the same steps, so only sync points decide
            if sync:
                if world == 1:
                    bad = bool(bad_step >= 0) if lazy else not math.isfinite(value)
                else:
                    if lazy:
                        flags = torch.stack([(bad_step >= 0).double(), torch.tensor(
                            float(interrupt.requested), dtype=torch.float64, device=t.device)])
                    else:
                        flags = torch.tensor([0.0 if math.isfinite(value) else 1.0, float(interrupt.requested)],
                                             dtype=torch.float64, device=t.device)
                    bad, pending_stop = (v > 0 for v in t.accel.all_reduce(flags).tolist())
                if bad:
                    if cfg.skip_nonfinite:  # never lazy (sync_every is 1): this step's loss is bad
                        st.skipped += 1
                        step += 1
                        st.step_in_epoch = step
                        st.global_step += 1
                        if scheduler is not None:
                            scheduler.step()
                        continue
                    first = int(bad_step.item()) if lazy else st.global_step
                    return t.diagnose(first, xb, loss_mean, lazy)
            # the mean over the *global* batch: this rank's share of it, times world because
            # DDP averages the ranks' gradients (1.0 for one process)
            scale = world * n_local / global_count
            loss = loss_mean if scale == 1.0 else loss_mean * scale
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, clip)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            correct = _correct(loss_name, out.detach(), yb)
            if lazy:
                sums[0] += loss_mean.detach().double() * n_local
                if correct is not None:
                    sums[1] += correct.double()
            else:
                run_loss += value * n_local
                if correct is not None:
                    run_correct += correct.item()
            count += n_local
            step += 1
            st.step_in_epoch = step
            st.global_step += 1
            st.train_samples += global_count
            if will_checkpoint:
                st.acc = t.partial(current(), count)
                st.train_time += time.perf_counter() - t0
                t0 = time.perf_counter()
                t.ckpt.save()
            if kill_at and st.global_step == kill_at:
                t.files.wait()  # "after step k": its checkpoint is on disk
                os.kill(os.getpid(), kill_signal)
            if sync and t.writer_rank and t.observer is not None:
                now = time.perf_counter()
                if now - last_report > 0.25:
                    last_report = now
                    loss_total, correct_total = current()
                    t.notify("on_step", {
                        "epoch": st.epoch + 1, "epochs": cfg.epochs, "step": step,
                        "steps": steps_per_epoch, "global_step": st.global_step,
                        "loss": loss_total / max(count, 1),
                        "accuracy": correct_total / max(count, 1) if loss_name != "mse" else None,
                        "samples_per_s": (st.train_samples - samples_at_start) / max(now - t0, 1e-9),
                    })
        if _end_epoch(t, current(), count, t0, epoch_start, samples_at_start):
            break
    return None


def _end_epoch(t: Trainer, sums: list, count: int, t0: float, epoch_start: float, samples_at_start: int) -> bool:
    """The epoch's record (one sync for the running sums, then validation), the best weights,
    early stopping and the epoch-end checkpoint. Returns True when training stops early.

    ``t0`` starts the training time not yet counted, ``epoch_start`` the epoch (or its resumed part).
    """
    cfg, st = t.cfg, t.state
    if t.world > 1:
        totals = torch.tensor([*sums, float(count)], dtype=torch.float64, device=t.device)
        loss_total, correct_total, count_total = t.accel.all_reduce(totals).tolist()
    else:
        (loss_total, correct_total), count_total = sums, count
    st.train_time += time.perf_counter() - t0
    epoch_time = time.perf_counter() - epoch_start
    val = t.evaluate("val")
    lr = t.optimizer.param_groups[0]["lr"]
    record = {
        "epoch": st.epoch + 1, "step": st.global_step, "lr": lr,
        "train_loss": loss_total / max(count_total, 1),
        "train_accuracy": correct_total / max(count_total, 1) if cfg.loss != "mse" else None,
        "val_loss": val["loss"], "val_accuracy": val["accuracy"],
        "epoch_time_s": epoch_time,
        "samples_per_s": (st.train_samples - samples_at_start) / max(epoch_time, 1e-9),
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
    stop_early = bool(cfg.patience and st.bad_epochs >= cfg.patience and st.epoch < cfg.epochs)
    if stop_early:
        st.status = "early_stopped"
    elif st.epoch >= cfg.epochs:
        st.status = "completed"
    if improved:
        t.ckpt.remember_best()
    t.ckpt.metrics_dirty = True
    save_now = st.status != "running" or t.ckpt.due(cfg.checkpoint_seconds)
    if t.world > 1 and st.status == "running":  # each rank's clock differs; the save gathers all ranks
        flag = torch.tensor(float(save_now), dtype=torch.float64, device=t.device)
        save_now = t.accel.all_reduce(flag).item() > 0
    if save_now:
        t.ckpt.save()
    t.notify("on_epoch", dict(record, epochs=cfg.epochs, improved=improved))
    # a sweep's pruner (nncli.sweep.search) may stop a clearly bad trial at an epoch's end; it
    # keeps its checkpoint and reports status "pruned", which a sweep never ranks as finished
    prune = getattr(t.observer, "should_prune", None) if t.world == 1 else None
    if prune is not None and st.status == "running" and prune(record):
        st.status = "pruned"
        t.ckpt.save()
        return True
    if stop_early:
        t.notify("on_message", f"early stopping: {t.monitor} did not improve for {cfg.patience} epochs "
                               f"(best epoch {st.best['epoch']})")
    return stop_early
