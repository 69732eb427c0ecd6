"""The trainer: one process's run from a prepared :class:`~nncli.train.prepare.Setup` to its
:class:`~nncli.train.runs.TrainResult`, and :func:`run_training`, the library face of
``nncli train``.

Design points, each with its reason:

- **Exact resume.** The data order of epoch ``e`` is a permutation seeded by ``(seed, e)``; the
  checkpoint holds model, optimizer, scheduler, grad scaler, the torch RNG (dropout), the
  augmentation generator, the position inside the epoch and the running metric sums. A run killed
  mid-epoch replays the same batches with the same random numbers: on CPU the final weights are
  bit-for-bit those of an uninterrupted run.
- **No host sync per step on CUDA.** Loss and accuracy sums stay on the device; the host reads
  them at epoch ends and at sparse sync points (every ``sync_every`` steps), where a non-finite
  loss is also detected. On CPU reading a scalar costs nothing, so every step is a sync point
  and a non-finite loss is caught before it touches the weights.
- **DDP** splits each global batch across ranks and scales the summed loss by
  ``world / global_batch``, so the averaged gradient is exactly the single-process gradient of the
  same global batch. Only rank 0 writes files and reports progress.

The pieces: :class:`~nncli.train.strategy.Strategy` (device, precision, clipping, memory
format, DDP reductions), :class:`~nncli.train.epoch.EpochLoop` (the loop),
:mod:`~nncli.train.callbacks` (progress, checkpoints, early stopping, TensorBoard, ...),
:class:`~nncli.train.state.Checkpointer` (checkpoints and resume) and
:class:`~nncli.train.runs.RunFiles` (the run folder).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from nncli.data.multi import several_inputs
from nncli.status import FINISHED, RunStatus
from nncli.train.callbacks import Callback, Checkpointing, EarlyStopping, MemoryGuard, Progress, TensorBoard
from nncli.train.diagnostics import nonfinite_report
from nncli.train.epoch import EpochLoop
from nncli.train.optim import build_optimizer, build_scheduler
from nncli.train.prepare import Setup, prepare
from nncli.train.runs import RunFiles, TrainResult, check_tensorboard
from nncli.train.signals import Interrupt
from nncli.train.state import Checkpointer, TrainState
from nncli.train.strategy import Strategy
from nncli.train.task import evaluate_model


class Trainer:
    """One training process: builds the model and the optimisation objects, runs the epoch loop
    with its callbacks and reports. Under DDP every rank has one (``dist=(rank, world)``); only
    rank 0 (``is_writer``) writes files and shows progress.

    Args:
        setup: the prepared run (:func:`~nncli.train.prepare.prepare`).
        device: this process's torch.device.
        callbacks: added after the trainer's own (checkpointing, then early stopping with
            ``patience``, then TensorBoard with ``tensorboard``); see :mod:`nncli.train.callbacks`.
        dist: ``(rank, world)`` under DDP.
        tensorboard: log to ``<run>/tensorboard``.
        sync_batchnorm: DDP on CUDA: BatchNorm as SyncBatchNorm.
    """

    def __init__(
        self,
        setup: Setup,
        device,
        callbacks: Sequence[Callback] = (),
        *,
        dist=None,
        tensorboard: bool = False,
        sync_batchnorm: bool = True,
    ):
        self.s = setup
        self.cfg = setup.cfg
        self.device = device
        self.rank, self.world = dist if dist else (0, 1)
        self.is_writer = self.rank == 0
        self.sync_batchnorm = sync_batchnorm  # DDP: convert BatchNorm to SyncBatchNorm (CUDA)
        self.run_dir = setup.run_dir
        self.strategy = Strategy(device, self.cfg, self.rank, self.world)
        self.files = RunFiles(self.run_dir, enabled=self.is_writer)
        self.state = TrainState()
        own: list[Callback] = [Checkpointing()]
        if self.cfg.patience:
            own.append(EarlyStopping(self.cfg.patience))
        if tensorboard:
            own.append(TensorBoard())
        self.callbacks = own + list(callbacks)
        self.finished_before = False
        self.set_up = False

    def setup(self) -> None:
        """The callbacks' ``setup``: before anything is allocated on the device or written (the
        memory check refuses a run here)."""
        self.set_up = True
        for cb in self.callbacks:
            cb.setup(self)

    def build(self) -> None:
        """The model (seeded), optimizer, schedule, grad scaler and augmentation stream."""
        from nncli.build import build_model

        cfg, dev = self.cfg, self.device
        self.built = build_model(self.s.spec, device=dev, seed=cfg.seed)
        self.raw = self.built.model
        # DDP: BatchNorm statistics over the global batch, as one process would compute them
        # (SyncBatchNorm runs on CUDA only; on CPU the statistics stay per rank: said in run())
        self.synced_bn = bool(
            self.world > 1 and self.sync_batchnorm and dev.type == "cuda" and _has_batchnorm(self.raw)
        )
        if self.synced_bn:
            self.raw = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.raw)
        # channels-last is for one image input; a network with several inputs keeps its layout
        self.strategy.prepare_model(self.raw, () if several_inputs(self.s.spec) else self.s.spec.input)
        # train.outputs: (index in the model's outputs, loss weight) of each auxiliary output
        names = list(getattr(self.s.spec, "outputs", ()) or ())
        self.aux = tuple((names.index(n), w) for n, w in (cfg.outputs or {}).items())
        # frozen (transferred) layers are left out: weight decay or momentum must not move them
        self.optimizer = build_optimizer(cfg, self.strategy.params, dev)
        self.steps_per_epoch = self._steps_per_epoch()
        self.scheduler = build_scheduler(cfg, self.optimizer, self.steps_per_epoch)
        # one augmentation stream per DDP rank (rank 0's is the single-process one): ranks must
        # not crop and flip their shares of a batch identically
        self.aug_gen = (
            torch.Generator(device=dev).manual_seed(cfg.seed + 7919 + 1_000_003 * self.rank)
            if (self.s.data_cfg.crop or self.s.data_cfg.flip)
            else None
        )
        untrained = len(names) > 1 + len(self.aux)  # outputs that no loss reads (e.g. an aux head)
        self.train_model, self.eval_model = self.strategy.wrap(self.raw, untrained)
        # dropout draws from the global RNG: seed it per rank, after the (rank-identical) init
        torch.manual_seed(cfg.seed + 1 + self.rank)
        # skip_nonfinite must see each step's loss before that step's update, so every step is a
        # sync point (whatever sync_every says); otherwise the CPU has no device to wait for, and
        # on an accelerator a host sync every 25 steps keeps the queue full.
        self.sync_every = 1 if cfg.skip_nonfinite else cfg.sync_every or (1 if dev.type == "cpu" else 25)

    def _steps_per_epoch(self) -> int:
        cfg, n_train = self.cfg, self.s.dataset.sizes()["train"]
        steps = math.ceil(n_train / cfg.batch_size)
        if self.world > 1 and n_train % cfg.batch_size and n_train % cfg.batch_size < self.world:
            steps -= 1  # a final batch smaller than the world would leave a rank empty
        # BatchNorm cannot normalise a batch of one example in training mode (torch raises): drop
        # that last batch, as torch users do with drop_last=True, and say so once (run()).
        self.dropped_last = bool(self.world == 1 and n_train % cfg.batch_size == 1 and _has_batchnorm(self.raw))
        if self.dropped_last and steps == 1:
            from nncli.errors import InputError

            raise InputError(
                "BatchNorm cannot train on a single example: the training split has 1",
                hint="use more training data (data.n / data.val / data.test)",
            )
        return steps - 1 if self.dropped_last else steps

    def run(self) -> TrainResult:
        """Build, restore a resumed run, train and report (``report.json``)."""
        s, st = self.s, self.state
        started = time.perf_counter()
        if not self.set_up:  # run_training calls it earlier, before taking the folder's lock
            self.setup()
        self.build()
        self.ds = self.strategy.place_data(s.dataset)
        self.ckpt = Checkpointer(
            st,
            self.files,
            model=self.raw,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.strategy.scaler,
            aug_gen=self.aug_gen,
            device=self.device,
            rank=self.rank,
            normalization={"mean": s.dataset.mean, "std": s.dataset.std},
        )
        resumed = s.resume is not None
        if resumed:
            self.ckpt.restore(s.resume, s.best_state)
        self.files.write_start(s, self.cfg, self.device, self.world, resumed)
        self._start(resumed)
        nonfinite = None
        try:
            with Interrupt() as interrupt:
                if not self.finished_before:
                    nonfinite = EpochLoop(self, interrupt).run()
            result = _result(self, started, nonfinite)
            for cb in self.callbacks:
                cb.on_fit_end(self, result)
            self.files.wait()
        finally:
            self.files.close()
            for cb in self.callbacks:
                cb.close()
        return result

    def _start(self, resumed: bool) -> None:
        """``on_fit_start`` and the messages of the start; a finished run resumed without more
        epochs has nothing left to do but report."""
        cfg, s, st = self.cfg, self.s, self.state
        info = {
            "run_dir": str(self.run_dir),
            "device": str(self.device),
            "world_size": self.world,
            "epochs": cfg.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "epoch": st.epoch,
            "step_in_epoch": st.step_in_epoch,
            "resumed": resumed,
            "sizes": s.dataset.sizes(),
            "params": sum(p.numel() for p in self.raw.parameters()),
            "spec": s.spec.name,
            "data_on_device": self.strategy.data_on_device,
            "amp": cfg.amp,
            "compile": cfg.compile,
        }
        for cb in self.callbacks:
            cb.on_fit_start(self, info)
        if self.world > 1 and _has_batchnorm(self.raw):
            self.message(
                "DDP: BatchNorm layers run as SyncBatchNorm (statistics over the global batch)"
                if self.synced_bn
                else "DDP: BatchNorm statistics are per rank ("
                + ("SyncBatchNorm turned off" if not self.sync_batchnorm else "SyncBatchNorm needs CUDA")
                + ")"
            )
        for entry in getattr(s.dataset, "skipped", None) or ():  # skip_bad: every file left out, named
            self.message(f"skipped an unreadable image (skip_bad): {entry['file']}: {entry['reason']}")
        if self.dropped_last:
            self.message(
                f"dropping the last training batch of each epoch: it holds 1 example "
                f"({s.dataset.sizes()['train']} = {self.steps_per_epoch} x {cfg.batch_size} + 1) "
                "and BatchNorm cannot normalise one"
            )
        self.finished_before = resumed and s.resume.get("status") in FINISHED and cfg.epochs == s.planned_epochs
        if self.finished_before:
            st.status = s.resume["status"]
        elif resumed and s.resume.get("status") == RunStatus.EARLY_STOPPED:
            st.bad_epochs = 0  # more epochs were asked for: patience starts afresh

    # ---- for the loop and the callbacks -------------------------------------------------
    def message(self, text: str) -> None:
        """Tell the callbacks (the progress display prints it)."""
        for cb in self.callbacks:
            cb.on_message(self, text)

    def evaluate(self, split: str, model=None, detail: bool = False) -> dict:
        """Loss and accuracy of a split in eval mode, over all ranks (one host sync); ``detail``:
        also RMSE/MAE/R² or per-class scores and the confusion matrix (nncli.metrics)."""
        x, y = self.ds.split(split)
        strategy = self.strategy
        return evaluate_model(
            model or self.eval_model,
            x,
            y,
            self.cfg.loss,
            batch_size=self.cfg.eval_batch_size,
            device=self.device,
            autocast=strategy.autocast,
            fetch=strategy.batch,
            shard=(self.rank, self.world),
            reduce=strategy.all_reduce,
            mode_owner=self.raw,
            output_shape=tuple(self.built.output_shape) if detail else None,
        )

    def partial(self, sums: list, count: int) -> list:
        """The running sums of the epoch so far, over all ranks, for a mid-epoch checkpoint.

        Every rank calls it at the same step. Rank 0 checkpoints the totals; on resume rank 0
        restarts from them and the other ranks from zero, so the epoch-end reduction still adds
        up to the global sums.
        """
        if self.world == 1:
            return [*sums, count]
        loss, correct, n = self.strategy.sum_across([*sums, count])
        return [loss, correct, int(n)]

    @property
    def monitor(self) -> str:
        return self.cfg.monitor or ("val_loss" if self.cfg.loss == "mse" else "val_accuracy")

    def diagnose(self, first_step: int, xb, loss) -> dict:
        """Name the step and the first layer with a non-finite output; keep the last good checkpoint.
        With ``sync_every`` > 1 the loss was found some steps late (``weights_at_detection``)."""
        self.state.status = RunStatus.NONFINITE
        self.files.wait()  # the last good checkpoint is complete before the message names it
        strategy = self.strategy
        return nonfinite_report(
            self.raw,
            self.built.layers,
            xb,
            loss,
            first_step=first_step,
            epoch=self.state.epoch,
            steps_per_epoch=self.steps_per_epoch,
            lazy=self.sync_every > 1,
            last_checkpoint=self.files.ckpt_dir / "last.pt",
            autocast=strategy.autocast if strategy.amp_dtype is not None else None,
        )


def _has_batchnorm(model) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _final_splits(t: Trainer) -> dict:
    """Train, val and test metrics with the best weights, in eval mode (None before an epoch ended)."""
    st, sizes = t.state, t.s.dataset.sizes()
    if not (st.status in FINISHED and st.history):
        return {split: {"loss": None, "accuracy": None, "n": sizes[split]} for split in ("train", "val", "test")}
    if t.ckpt.best_state is not None:
        t.raw.load_state_dict(t.ckpt.best_state)
    # the test split, the one a report is read for, also gets the detailed metrics
    splits = {split: t.evaluate(split, t.raw, detail=split == "test") for split in ("train", "test")}
    record = next((r for r in st.history if r["epoch"] == st.best["epoch"]), None)
    if record is not None and record["val_loss"] is not None and not t.cfg.compile:
        # the best epoch's validation pass ran on exactly these weights in eval mode
        splits["val"] = {"loss": record["val_loss"], "accuracy": record["val_accuracy"], "n": sizes["val"]}
    else:
        splits["val"] = t.evaluate("val", t.raw)
    return {k: splits[k] for k in ("train", "val", "test")}


def _result(t: Trainer, started: float, nonfinite: dict | None) -> TrainResult:
    """The run's :class:`TrainResult`, also written as ``report.json``."""
    cfg, st = t.cfg, t.state
    if nonfinite is not None:
        st.status = RunStatus.NONFINITE
    if st.status == RunStatus.RUNNING:
        st.status = RunStatus.COMPLETED
    splits = _final_splits(t)
    message = None
    if st.status == RunStatus.INTERRUPTED:
        message = (
            f"interrupted at epoch {st.epoch + 1}, step {st.step_in_epoch}; "
            f"continue with: nncli train --resume {t.run_dir}"
        )
    elif st.status == RunStatus.NONFINITE:
        message = nonfinite["message"]
    elif st.status == RunStatus.EARLY_STOPPED:
        message = f"stopped early after {st.epoch} epochs: {t.monitor} stopped improving"
    if t.finished_before:
        message = (
            f"nothing to do: the run had already finished ({st.status}, {len(st.history)} epochs); "
            f"resume {t.run_dir} with more epochs to train it longer"
        )
    s = t.s
    result = TrainResult(
        run_dir=str(t.run_dir),
        spec=s.spec.name,
        device=str(t.device),
        world_size=t.world,
        epochs=len(st.history),
        planned_epochs=cfg.epochs,
        best_epoch=st.best["epoch"],
        global_step=st.global_step,
        samples_per_s=st.train_samples / st.train_time if st.train_time > 0 else 0.0,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        status=st.status,
        message=message,
        history=list(st.history),
        checkpoints=t.files.existing_checkpoints(),
        data={
            "name": s.dataset.name,
            **s.dataset.sizes(),
            "input_shape": list(s.spec.input),
            "classes": s.dataset.classes,
            "skipped_files": getattr(s.dataset, "skipped", None) or [],
        },
        config=cfg.to_dict(),
        duration_s=time.perf_counter() - started,
        total_s=s.previous_s + (time.perf_counter() - started),
        threads=torch.get_num_threads(),
        amp=cfg.amp,
        compile=cfg.compile,
        channels_last=t.strategy.channels_last,
        data_on_device=t.strategy.data_on_device,
        skipped_steps=st.skipped,
        nonfinite=nonfinite,
    )
    t.files.write_report(result)
    return result


def run_training(
    spec=None,
    overrides: dict | None = None,
    out_dir: str | Path | None = None,
    *,
    device: str = "auto",
    resume: str | Path | None = None,
    observer=None,
    callbacks: Sequence[Callback] = (),
    tensorboard: bool = False,
    runs_root: str | Path = "runs",
    threads: int | None = None,
    thread_cap: int | None = None,
) -> TrainResult:
    """Train a spec and return what happened; the library face of ``nncli train``.

    Args:
        spec: a :class:`~nncli.spec.Spec` or a path to one (None with ``resume``).
        overrides: ``{"train": {"lr": 0.01}, "data": {"name": "digits"}}``, dotted keys
            (``{"train.lr": 0.01}``) or bare train keys (``{"epochs": 3}``); they win over the
            spec's ``data:``/``train:`` sections.
        out_dir: the run folder (new or empty); default ``runs_root/<spec name>-<time>``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        resume: a run folder to continue from its last checkpoint (``overrides`` may only raise
            ``epochs``).
        observer: a progress display with ``on_start(info)``, ``on_step(info)``,
            ``on_epoch(record)``, ``on_message(text)`` and ``close()``
            (:class:`nncli.render.train.TrainProgress`); shorthand for the
            :class:`~nncli.train.callbacks.Progress` callback.
        callbacks: :class:`~nncli.train.callbacks.Callback` objects, called after the trainer's
            own (see :mod:`nncli.train.callbacks` for the hooks).
        tensorboard: also log scalars under ``<run>/tensorboard`` (needs the tensorboard package).
        runs_root: parent of default run folders.
        threads: torch's CPU threads (``--threads``); None: :mod:`nncli.threads`' rule decides,
            using at most ``thread_cap`` (a sweep worker's share of the cores).

    Returns:
        TrainResult; ``status`` is ``completed``, ``early_stopped``, ``interrupted`` (Ctrl-C or
        SIGTERM: a checkpoint was saved), ``nonfinite`` (training stopped; ``nonfinite`` says
        where) or a status a callback stopped the run with (a sweep's ``pruned``).

    Raises:
        SpecError / InputError: bad spec, parameter, data, shapes or checkpoint, or a run that
            cannot fit in memory (exit 2); nothing of an existing run is modified.

    Example:
        >>> result = run_training("specs/moons-mlp.yaml", {"epochs": 5}, "runs/moons", device="cpu")
        >>> result.test["accuracy"] > 0.9
        True
    """
    from nncli.device import resolve_device
    from nncli.threads import for_spec
    from nncli.train.lock import FolderLock
    from nncli.train.runs import claim_run_folder

    dev = resolve_device(device)
    if tensorboard:
        check_tensorboard()
    setup = prepare(spec, overrides, out_dir, resume=resume, runs_root=runs_root)
    # torch's threads for this model and batch (--threads wins), from the shapes prepare inferred
    for_spec(setup.spec, setup.cfg.batch_size, device=dev, built=setup.built, threads=threads, cap=thread_cap)
    progress = [Progress(observer)] if observer is not None else []
    trainer = Trainer(setup, dev, [MemoryGuard(), *progress, *callbacks], tensorboard=tensorboard)
    trainer.setup()  # the memory check refuses a run that cannot fit, before any file is written
    with FolderLock(setup.run_dir, "run"):  # one writer per run folder, taken before any write
        claim_run_folder(setup)
        return trainer.run()
