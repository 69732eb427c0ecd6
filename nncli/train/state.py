"""The state of a training run and its checkpoints.

:class:`TrainState` holds the counters a checkpoint saves next to the weights (position in the
data, history, best epoch, running sums); :class:`Checkpointer` writes ``last.pt`` and
``best.pt`` from it and the training objects, and restores both on resume.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from nncli.errors import InputError
from nncli.runs import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
from nncli.status import RunStatus
from nncli.train.runs import RunFiles


def _no_best() -> dict:
    return {"epoch": None, "val_loss": None, "val_accuracy": None}


@dataclass
class TrainState:
    """Where a run stands: what a checkpoint saves besides the weights, optimizer and RNGs."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # steps done in the current epoch
    global_step: int = 0
    history: list = field(default_factory=list)  # one record per epoch
    best: dict = field(default_factory=_no_best)  # epoch (1-based), val_loss, val_accuracy
    bad_epochs: int = 0  # epochs since the monitored metric last improved
    train_time: float = 0.0  # seconds spent in training steps
    train_samples: int = 0
    skipped: int = 0  # steps skipped for a non-finite loss
    acc: list = field(default_factory=lambda: [0.0, 0.0, 0])  # loss sum, correct, count (host copy at sync points)
    status: str = RunStatus.RUNNING

    def restore(self, ckpt: dict, rank: int) -> None:
        """The counters of a ``last.pt``. Only rank 0 takes the epoch's partial sums: the others
        restart from zero, so the epoch-end reduction adds up to the global sums."""
        self.epoch, self.step_in_epoch = int(ckpt["epoch"]), int(ckpt["step_in_epoch"])
        self.global_step = int(ckpt["global_step"])
        self.history = list(ckpt["history"])
        self.best = dict(ckpt.get("best") or self.best)
        self.bad_epochs = int(ckpt.get("bad_epochs", 0))
        self.train_time = float(ckpt.get("train_time", 0.0))
        self.train_samples = int(ckpt.get("train_samples", 0))
        self.skipped = int(ckpt.get("skipped_steps", 0))
        accum = ckpt.get("accum") or {}
        self.acc = [float(accum.get("loss", 0.0)), float(accum.get("correct", 0.0)), int(accum.get("count", 0))]
        if rank != 0:
            self.acc = [0.0, 0.0, 0]

    def to_checkpoint(self) -> dict:
        """The checkpoint entries of the counters (what :meth:`restore` reads; ``status`` is
        written apart, read by :func:`nncli.train.prepare.prepare`)."""
        return {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "history": self.history,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "train_time": self.train_time,
            "train_samples": self.train_samples,
            "skipped_steps": self.skipped,
            "accum": {"loss": self.acc[0], "correct": self.acc[1], "count": self.acc[2]},
        }

    def improved(self, record: dict, monitor: str, min_delta: float) -> bool:
        """Better than the best so far on the monitored metric; the val loss breaks accuracy ties.
        Without a validation split every epoch counts as the best (the last weights are kept)."""
        if record["val_loss"] is None or not math.isfinite(record["val_loss"]):
            return record["val_loss"] is None
        if self.best["epoch"] is None:
            return True
        if monitor == "val_loss":
            return record["val_loss"] < self.best["val_loss"] - min_delta
        acc, best_acc = record["val_accuracy"], self.best["val_accuracy"]
        if acc > best_acc + min_delta:
            return True
        return min_delta == 0 and acc == best_acc and record["val_loss"] < self.best["val_loss"]


class Checkpointer:
    """``last.pt`` and ``best.pt`` of a run: what goes into them, when, and reading them back.

    The best weights are kept in memory (``best_state``) and written with the next checkpoint,
    together with the metrics files, so that the files on disk always show one moment of the run.

    Args:
        state: the run's counters.
        files: the run folder's writer (does nothing on DDP ranks other than 0).
        model, optimizer, scheduler, scaler, aug_gen: the objects whose state is saved (the
            raw model, never a DDP or compiled wrapper; scheduler, scaler and aug_gen may be None).
        device, rank: this process's device and DDP rank.
        normalization: ``{"mean", "std"}`` of the training data, stored for evaluate and predict.
    """

    def __init__(
        self,
        state: TrainState,
        files: RunFiles,
        *,
        model,
        optimizer,
        scheduler,
        scaler,
        aug_gen,
        device: torch.device,
        rank: int,
        normalization: dict,
    ) -> None:
        self.state, self.files = state, files
        self.model, self.optimizer, self.scheduler, self.scaler, self.aug_gen = (
            model,
            optimizer,
            scheduler,
            scaler,
            aug_gen,
        )
        self.device, self.rank, self.normalization = device, rank, normalization
        self.best_state: dict | None = None  # the best weights, on the CPU
        self.best_pending: dict | None = None  # best.pt content waiting for the next checkpoint
        self.metrics_dirty = False  # epochs recorded since the metrics files were written
        self.last_time = time.perf_counter()

    def restore(self, ckpt: dict, best: dict | None) -> None:
        """Load ``last.pt`` (and ``best.pt``) into the objects, the counters and the RNGs.

        Raises:
            InputError: the checkpoint does not fit this run's model or optimizer (exit 2).
        """
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scheduler is not None and ckpt.get("scheduler") is not None:
                self.scheduler.load_state_dict(ckpt["scheduler"])
            if self.scaler is not None and ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise InputError(
                f"checkpoint does not fit this run's model/optimizer: {str(exc).splitlines()[0][:300]}",
                hint="the checkpoint belongs to a different spec or config",
            ) from None
        self.state.restore(ckpt, self.rank)
        rng = ckpt["rng"]
        ranks = rng.get("ranks") or []
        if 0 < self.rank < len(ranks) and ranks[self.rank] is not None:
            rng = ranks[self.rank]  # this rank's own streams, saved by a DDP run of the same world
            torch.set_rng_state(rng["torch"])
        elif self.rank == 0:  # older checkpoints: the other ranks keep their own seeded dropout stream
            torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        if self.aug_gen is not None and rng.get("aug") is not None:
            try:
                self.aug_gen.set_state(rng["aug"])
            except RuntimeError:  # device changed (cuda <-> cpu): a fresh stream, still seeded
                pass
        if best is not None:
            self.best_state = best["model"]

    def due(self, seconds: float) -> bool:
        """At least ``seconds`` since the last checkpoint (0: always)."""
        return not seconds or time.perf_counter() - self.last_time >= seconds

    def save(self, kind: str = "last") -> None:
        """Write last.pt, with best.pt and the metrics files when they changed since the last write
        (one moment on disk: a resumed run finds them consistent)."""
        self.last_time = time.perf_counter()
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "aug": self.aug_gen.get_state() if self.aug_gen is not None else None,
        }
        world = _world_size()
        if world > 1:  # every rank's streams (dropout, augmentation): a resume is exact on each
            import torch.distributed as tdist

            ranks: list = [None] * world
            tdist.all_gather_object(ranks, rng)  # every rank saves at the same steps
            rng = dict(rng, ranks=ranks)
        if not self.files.enabled:
            return
        if self.best_pending is not None:
            self.files.save_best(self.best_pending)
            self.best_pending = None
        if self.metrics_dirty:
            self.write_metrics()
        state = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "kind": kind,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng,
            **self.state.to_checkpoint(),
            "normalization": self.normalization,
            "status": str(self.state.status),  # a plain str: weights_only loading refuses classes
        }
        self.files.save_last(state)

    def write_metrics(self) -> None:
        self.metrics_dirty = False
        self.files.write_metrics(self.state.history)

    def remember_best(self) -> None:
        """Keep the best weights in memory; best.pt is written with the next checkpoint."""
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if not self.files.enabled:
            return
        st = self.state
        self.best_pending = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "kind": "best",
            "model": self.best_state,
            "epoch": st.epoch,
            "global_step": st.global_step,
            "metrics": st.history[-1] if st.history else {},
            "normalization": self.normalization,
        }


def _world_size() -> int:
    """Processes in the DDP group (1 without one)."""
    import torch.distributed as tdist

    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1
