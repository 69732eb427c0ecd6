"""``nncli train``: the training loop, run folders, checkpoints, exact resume and DDP.

The lecture's meta-algorithm, as a loop a user does not have to write: data split and
normalised (:mod:`nncli.data`), an architecture (the spec), a loss, a gradient-descent variant
with a schedule; then watch training error, then validation error.

Design points, each with its reason:

- **One library call.** :func:`run_training` returns a :class:`TrainResult` and never prints;
  progress goes to an *observer* object (``on_start``, ``on_step``, ``on_epoch``, ``on_message``,
  all optional) that the CLI supplies. Sweeps call it in-process.
- **Exact resume.** The data order of epoch ``e`` is a permutation seeded by ``(seed, e)``; the
  checkpoint holds model, optimizer, scheduler, grad scaler, the torch RNG (dropout), the
  augmentation generator, the position inside the epoch and the running metric sums. A run killed
  mid-epoch replays the same batches with the same random numbers: on CPU the final weights are
  bit-for-bit those of an uninterrupted run.
- **No host sync per step on CUDA.** Loss and accuracy sums stay on the device; the host reads
  them at epoch ends and at sparse sync points (every ``sync_every`` steps), where a non-finite
  loss is also detected. On CPU reading a scalar costs nothing, so every step is a sync point
  and a non-finite loss is caught before it touches the weights.
- **Files are written atomically** (temp name, then rename), so a kill never leaves a torn
  checkpoint; checkpoints are read back with ``torch.load(weights_only=True)``.
- **DDP** splits each global batch across ranks and scales the summed loss by
  ``world / global_batch``, so the averaged gradient is exactly the single-process gradient of the
  same global batch. Only rank 0 writes files and reports progress.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
import yaml

from nncli import data as data_mod
from nncli.errors import CheckFailed, InputError, NncliError, SpecError, did_you_mean
from nncli.files import write_atomic
from nncli.formatting import jsonable
from nncli.config_section import Section
from nncli.config_section import describe as _describe

LOSSES = ("cross_entropy", "mse", "bce_with_logits")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine", "onecycle", "exponential")
AMP_MODES = ("none", "bf16", "fp16")
MONITORS = ("val_loss", "val_accuracy")
CHECKPOINT_FORMAT = "nncli-checkpoint"
CHECKPOINT_VERSION = 1
# Fault injection for tests, e.g. "13:SIGKILL" or "7:SIGINT": the process sends itself that signal
# right after global step 13 (after any checkpoint of that step), exercising the real handlers.
SIGNAL_ENV = "NNCLI_SIGNAL_AT_STEP"


def _fault_injection() -> tuple[int, int]:
    text = os.environ.get(SIGNAL_ENV, "")
    if not text:
        return 0, 0
    step, _, name = text.partition(":")
    return int(step), int(getattr(signal, name or "SIGKILL"))


# -- the train: section -----------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """The validated ``train:`` section. Every default is what a user gets without saying more."""

    loss: str = "cross_entropy"  # cross_entropy (on logits), mse, bce_with_logits
    optimizer: str = "adam"  # sgd, adam, adamw
    lr: float = 1e-3
    batch_size: int = 64  # the *global* batch: DDP splits it across ranks
    epochs: int = 10
    seed: int = 0  # weights, dropout, data order and augmentation all derive from it
    momentum: float = 0.0  # sgd only
    nesterov: bool = False  # sgd only; needs momentum > 0
    weight_decay: float = 0.0  # L2 for sgd/adam, decoupled for adamw
    betas: tuple = (0.9, 0.999)  # adam/adamw
    schedule: str = "none"  # none, step, cosine, onecycle, exponential; stepped every batch
    step_size: int = 10  # step: epochs between decays
    gamma: float | None = None  # step: factor per decay (0.1); exponential: factor per epoch (0.95)
    min_lr: float = 0.0  # cosine: the floor it anneals to
    warmup_steps: int = 0  # linear warmup from lr/(warmup+1); onecycle: its rising phase
    clip_grad_norm: float | None = None  # clip the global gradient norm to this
    patience: int | None = None  # early stopping: epochs without improvement of `monitor`
    monitor: str | None = None  # val_accuracy (classification) or val_loss (regression)
    min_delta: float = 0.0  # an improvement must beat the best by more than this
    checkpoint_every: int = 0  # also checkpoint every N steps inside an epoch (0: epoch ends only)
    checkpoint_seconds: float = 10.0  # epoch-end checkpoints at most this often (0: every epoch); the
    #                                   last epoch, Ctrl-C and checkpoint_every steps always write
    eval_batch_size: int = 512
    amp: str = "none"  # none, bf16, fp16 (fp16 uses a GradScaler)
    compile: bool = False  # torch.compile the model
    channels_last: str = "auto"  # auto: on CUDA for models with Conv2d; true; false
    sync_every: int | None = None  # steps between host syncs (default: 1 on CPU, 25 on CUDA)
    skip_nonfinite: bool = False  # skip a batch with a non-finite loss instead of stopping

    def to_dict(self) -> dict:
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out


TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
# CLI flag for a key, where it differs from --key-with-dashes
_FLAGS = {("data", "name"): "--data", ("data", "path"): "--data", ("train", "clip_grad_norm"): "--clip-grad-norm"}


def _flag(section: str, key: str) -> str:
    return _FLAGS.get((section, key), "--" + key.replace("_", "-"))


def _section_fail(spec, section: str):
    """``fail(path, message, hint, from_override)`` for a spec section: located in the file when
    the value came from the spec, named by its flag when it came from an override."""

    def fail(path, message, hint=None, from_override=False):
        path = tuple(path)
        if from_override or spec is None or getattr(spec, "document", None) is None:
            where = _flag(section, str(path[0])) if path else f"`{section}`"
            return InputError(f"{where}: {message}", spec_path=".".join((section,) + tuple(map(str, path))),
                              hint=hint)
        return spec.error((section,) + path, message, hint)

    return fail


def resolve_train_config(spec_train: dict | None, overrides: dict | None = None, *, fail=None) -> TrainConfig:
    """Validate a ``train:`` section and apply overrides (flags, a sweep) on top.

    Args:
        spec_train: the spec's raw ``train:`` mapping (or None for all defaults).
        overrides: the same keys; ``None`` values are ignored.
        fail: ``fail(path, message, hint, from_override) -> Exception`` (see :func:`_section_fail`).

    Returns:
        TrainConfig.

    Raises:
        SpecError / InputError: unknown key (did-you-mean), bad type or range, bad combination.

    Example:
        >>> resolve_train_config({"optimizer": "sgd", "lr": 0.1}, {"epochs": 3}).epochs
        3
    """
    section = Section(spec_train, overrides, fail or _section_fail(None, "train"))
    merged, err = section.values, section.error

    for key in merged:
        if key not in TRAIN_KEYS:
            raise err(key, f"unknown key {key!r} in train",
                      did_you_mean(str(key), TRAIN_KEYS) or "allowed: " + ", ".join(TRAIN_KEYS))
    out: dict[str, Any] = {}

    def number(key, **rule):
        if key in merged:
            out[key] = section.number(key, **rule)

    def choice(key, options):
        if key not in merged:
            return
        value = merged[key]
        if hasattr(value, "value"):  # an Enum from the CLI
            value = value.value
        if not isinstance(value, str) or value.lower() not in options:
            hint = did_you_mean(str(value), options) if isinstance(value, str) else None
            raise err(key, f"expected one of {', '.join(options)}, found {_describe(value)}", hint)
        out[key] = value.lower()

    def boolean(key):
        if key not in merged:
            return
        if not isinstance(merged[key], bool):
            raise err(key, f"expected true or false, found {_describe(merged[key])}")
        out[key] = merged[key]

    choice("loss", LOSSES)
    choice("optimizer", OPTIMIZERS)
    choice("schedule", SCHEDULES)
    choice("amp", AMP_MODES)
    if merged.get("monitor") is not None:
        choice("monitor", MONITORS)
    number("lr", low=0, low_open=True)
    number("batch_size", integer=True, low=1)
    number("epochs", integer=True, low=1)
    number("seed", integer=True, low=0)
    number("momentum", low=0, high=1)
    number("weight_decay", low=0)
    number("step_size", integer=True, low=1)
    number("gamma", low=0, low_open=True, high=1, optional=True)
    number("min_lr", low=0)
    number("warmup_steps", integer=True, low=0)
    number("clip_grad_norm", low=0, low_open=True, optional=True)
    number("patience", integer=True, low=1, optional=True)
    number("min_delta", low=0)
    number("checkpoint_every", integer=True, low=0)
    number("checkpoint_seconds", low=0)
    number("eval_batch_size", integer=True, low=1)
    number("sync_every", integer=True, low=1, optional=True)
    for key in ("nesterov", "compile", "skip_nonfinite"):
        boolean(key)
    if "channels_last" in merged:
        value = merged["channels_last"]
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if value not in (True, False, "auto"):
            raise err("channels_last", f"expected true, false or auto, found {_describe(value)}")
        out["channels_last"] = {True: "true", False: "false"}.get(value, value)
    if "betas" in merged:
        betas = merged["betas"]
        if (not isinstance(betas, (list, tuple)) or len(betas) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
            raise err("betas", f"expected two numbers in [0, 1) like [0.9, 0.999], found {_describe(betas)}")
        out["betas"] = tuple(float(b) for b in betas)
    for key in ("gamma", "clip_grad_norm", "patience", "monitor", "sync_every"):
        if key in merged and merged[key] is None:
            out[key] = None
    cfg = TrainConfig(**out)
    optimizer = cfg.optimizer
    if cfg.nesterov and (optimizer != "sgd" or cfg.momentum <= 0):
        raise err("nesterov", "nesterov needs optimizer: sgd with momentum > 0, found "
                              f"optimizer {optimizer} with momentum {cfg.momentum}")
    if cfg.momentum and optimizer != "sgd":
        raise err("momentum", f"`momentum` applies to sgd; {optimizer} uses `betas`")
    if cfg.monitor == "val_accuracy" and cfg.loss == "mse":
        raise err("monitor", "val_accuracy is not defined for an mse loss; use val_loss")
    return cfg


def split_overrides(overrides: dict | None) -> tuple[dict, dict]:
    """``{"data": {...}, "train": {...}}``, dotted keys (``"train.lr"``) or bare train keys
    (``"lr"``) -> ``(data_overrides, train_overrides)``. ``{"data": "digits"}`` names a source."""
    data_over: dict = {}
    train_over: dict = {}
    for key, value in (overrides or {}).items():
        if key == "data" and isinstance(value, (str, Path)):
            data_over.update(_data_source(value))
        elif key in ("data", "train") and isinstance(value, dict):
            (data_over if key == "data" else train_over).update(value)
        elif isinstance(key, str) and key.startswith(("data.", "train.")):
            section, sub = key.split(".", 1)
            (data_over if section == "data" else train_over)[sub] = value
        elif key in TRAIN_KEYS:
            train_over[key] = value
        else:
            known = TRAIN_KEYS + ("data", "train")
            raise InputError(f"unknown override {key!r}", hint=did_you_mean(str(key), known)
                             or "use {'train': {...}, 'data': {...}} or dotted keys like 'train.lr'")
    return data_over, train_over


def _data_source(value) -> dict:
    """``--data`` value: a built-in set name, or a path to a file or folder."""
    text = str(value)
    path = Path(text).expanduser()
    if path.suffix.lower() in data_mod.FILE_SUFFIXES or "/" in text or os.sep in text or path.exists():
        if path.is_dir():
            raise InputError(f"--data {text}: a folder needs its format: pass --data mnist or --data cifar10 "
                             "with `path:` in the spec's data section")
        return {"path": text, "name": None}
    return {"name": text, "path": None}


# -- results ----------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a training run produced (the same object feeds the rich summary and ``--json``)."""

    run_dir: str
    spec: str  # the spec's name
    device: str
    world_size: int
    epochs: int  # epochs completed
    planned_epochs: int
    best_epoch: int | None  # 1-based; the checkpoint the final metrics come from
    global_step: int
    samples_per_s: float  # training throughput (global samples / time in training steps)
    train: dict  # {"loss", "accuracy", "n"}: final metrics with the best weights, eval mode
    val: dict
    test: dict
    status: str  # completed, early_stopped, interrupted, nonfinite
    message: str | None = None
    history: list = field(default_factory=list)  # one record per epoch
    checkpoints: dict = field(default_factory=dict)  # {"best": path, "last": path}
    data: dict = field(default_factory=dict)  # name, sizes, classes
    config: dict = field(default_factory=dict)  # the resolved train: section
    duration_s: float = 0.0
    amp: str = "none"
    compile: bool = False
    channels_last: bool = False
    data_on_device: bool = False
    skipped_steps: int = 0
    nonfinite: dict | None = None  # {"step", "epoch", "batch", "value", "layer": {...}}
    plot: str | None = None

    def to_json(self) -> dict:
        return jsonable(asdict(self))


# -- files --------------------------------------------------------------------------------------


def atomic_torch_save(obj, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue(), durable=True)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Read an nncli checkpoint with ``weights_only=True``; a clear InputError if it is not one.

    Raises:
        InputError: missing, truncated, corrupt, or not an nncli checkpoint (exit 2).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}", hint="a run folder keeps checkpoints/last.pt and best.pt")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip/pickle/EOF errors of a truncated or foreign file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"corrupt checkpoint {path}: {first[:200]}",
                         hint="the file is truncated or not a checkpoint; the run's other files are untouched") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "model" not in ckpt:
        raise InputError(f"{path} is not an nncli checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"{path}: checkpoint version {ckpt.get('version')} is not supported "
                         f"(this nncli writes version {CHECKPOINT_VERSION})")
    return ckpt


@dataclass
class RunInfo:
    """A run folder read back: the spec and the resolved sections it was trained with."""

    run_dir: Path
    spec: Any  # nncli.spec.Spec
    spec_text: str
    data: data_mod.DataConfig
    train: TrainConfig
    meta: dict  # run.yaml as written


def load_run(run_dir: str | Path) -> RunInfo:
    """Read ``run.yaml`` and ``spec.yaml`` of a run folder.

    Raises:
        InputError: not a run folder, or its files are damaged (exit 2).
    """
    from nncli.spec import parse_spec

    run_dir = Path(run_dir)
    meta_path = run_dir / "run.yaml"
    if not run_dir.is_dir():
        raise InputError(f"no such run folder: {run_dir}")
    if not meta_path.is_file():
        raise InputError(f"{run_dir} is not an nncli run folder: no run.yaml in it")
    try:
        meta = yaml.safe_load(meta_path.read_text())
        spec_text = (run_dir / "spec.yaml").read_text()
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read the run folder {run_dir}: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("train"), dict) or not isinstance(meta.get("data"), dict):
        raise InputError(f"{meta_path}: expected the mapping nncli writes (data:, train:, ...)")
    origin = meta.get("spec", {}).get("path")
    base_dir = Path(origin).parent if origin and Path(origin).parent.is_dir() else run_dir
    spec = parse_spec(spec_text, file=str(run_dir / "spec.yaml"), base_dir=base_dir)
    data_cfg = data_mod.resolve_data_config(meta["data"])
    train_cfg = resolve_train_config(meta["train"])
    return RunInfo(run_dir, spec, spec_text, data_cfg, train_cfg, meta)


def _new_run_dir(root: Path, name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "run"
    candidate = root / f"{safe}-{stamp}"
    n = 2
    while candidate.exists():
        candidate = root / f"{safe}-{stamp}-{n}"
        n += 1
    return candidate


# -- task: loss, targets, metrics ------------------------------------------------------------------


def prepare_targets(ds: data_mod.Dataset, loss: str, output_shape: tuple, fail) -> None:
    """Check the labels against the loss and the output layer; convert them in place.

    cross_entropy: integer class labels, fewer classes than outputs. bce_with_logits: 0/1
    targets shaped like the output. mse: float targets with as many values as the output.

    Raises:
        InputError: exit 2 with what the data has and what the network gives.
    """
    out_numel = math.prod(output_shape)
    if loss == "cross_entropy":
        if len(output_shape) != 1:
            raise fail(f"cross_entropy expects the network to output one logit per class (shape [C]), "
                       f"found output shape {list(output_shape)}")
        for split in ("train", "val", "test"):
            y = getattr(ds, f"y_{split}")
            if y.is_floating_point():
                if len(y) and (y.dim() > 2 or (y.dim() == 2 and y.shape[1] != 1) or not torch.equal(y, y.round())
                               or y.min() < 0):
                    raise fail(f"cross_entropy needs integer class labels, found float targets of shape "
                               f"{list(y.shape[1:])}" + (f" (e.g. {y.flatten()[0].item():g})" if len(y) else ""),
                               "use `loss: mse` for regression targets")
                y = y.reshape(len(y)).long()
            setattr(ds, f"y_{split}", y)
        need = ds.num_classes or 0
        if need > output_shape[0]:
            raise fail(f"label count does not fit the output layer: the data has {need} classes "
                       f"(labels 0..{need - 1}), the network outputs {output_shape[0]} logits",
                       f"set the last layer's out_features to {need}")
        if output_shape[0] == 1:
            raise fail("cross_entropy over a single logit is always 0: expected >= 2 outputs",
                       "for two classes use 2 outputs, or one output with `loss: bce_with_logits`")
        return
    for split in ("train", "val", "test"):
        y = getattr(ds, f"y_{split}").float()
        if len(y) and math.prod(y.shape[1:]) != out_numel:
            what = "targets" if loss == "mse" else "0/1 labels"
            raise fail(f"{loss}: the data has {math.prod(y.shape[1:])} {what} per example "
                       f"(shape {list(y.shape[1:])}), the network outputs {out_numel} (shape {list(output_shape)})",
                       "for class labels 0..C-1 use `loss: cross_entropy` with C outputs" if loss != "cross_entropy" else None)
        if loss == "bce_with_logits" and len(y) and ((y < 0) | (y > 1)).any():
            raise fail(f"bce_with_logits needs targets in [0, 1], found values from {y.min().item():g} "
                       f"to {y.max().item():g}", "for several classes use `loss: cross_entropy`")
        setattr(ds, f"y_{split}", y.reshape((len(y),) + tuple(output_shape)))


def _loss_sum(loss: str, out, y):
    """Summed loss over the batch; per-element losses are averaged within an example first."""
    if loss == "cross_entropy":
        return F.cross_entropy(out, y, reduction="sum")
    per_example = math.prod(out.shape[1:])
    if loss == "mse":
        return F.mse_loss(out, y, reduction="sum") / per_example
    return F.binary_cross_entropy_with_logits(out, y, reduction="sum") / per_example


def _loss_mean(loss: str, out, y):
    """Mean loss over the batch (per-element losses averaged within an example first): the same
    number as ``_loss_sum / len(y)``, computed the way a hand-written loop does."""
    if loss == "cross_entropy":
        return F.cross_entropy(out, y)
    if loss == "mse":
        return F.mse_loss(out, y)
    return F.binary_cross_entropy_with_logits(out, y)


def _correct(loss: str, out, y):
    """Correct predictions in the batch (a fraction per example for multi-label bce); None for mse."""
    if loss == "cross_entropy":
        return (out.argmax(1) == y).sum()
    if loss == "bce_with_logits":
        return ((out > 0) == (y > 0.5)).float().flatten(1).mean(1).sum()
    return None


# -- optimisation -----------------------------------------------------------------------------------


def build_optimizer(cfg: TrainConfig, params, device) -> torch.optim.Optimizer:
    """sgd/adam/adamw from the config. On CUDA the fused kernels, which also let a GradScaler
    skip steps without reading its inf flag on the host."""
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay, **fused)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **fused)


def build_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """A per-step ``torch.optim.lr_scheduler`` for the schedule, with linear warmup in front.

    Epoch-based settings (``step_size``, exponential ``gamma``) are converted to steps so that the
    scheduler can step every batch (warmup needs that granularity). Returns None for a constant lr.
    """
    sched = torch.optim.lr_scheduler
    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_steps  # a warmup longer than the run simply never reaches the peak lr
    if cfg.schedule == "onecycle":
        pct = warm / total if warm else 0.3
        return sched.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=max(total, 2), pct_start=min(max(pct, 1e-3), 0.999))
    main_steps = max(total - warm, 1)
    if cfg.schedule == "step":
        main = sched.StepLR(optimizer, step_size=cfg.step_size * steps_per_epoch,
                            gamma=cfg.gamma if cfg.gamma is not None else 0.1)
    elif cfg.schedule == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=main_steps, eta_min=cfg.min_lr)
    elif cfg.schedule == "exponential":
        gamma = cfg.gamma if cfg.gamma is not None else 0.95
        main = sched.ExponentialLR(optimizer, gamma=gamma ** (1.0 / steps_per_epoch))
    else:
        main = None
    if not warm:
        return main
    warmup = sched.LinearLR(optimizer, start_factor=1.0 / (warm + 1), end_factor=1.0, total_iters=warm)
    if main is None:
        return warmup
    return sched.SequentialLR(optimizer, [warmup, main], milestones=[warm])


def epoch_permutation(seed: int, epoch: int, n: int):
    """The data order of ``epoch``: a function of (seed, epoch) only, so a resumed run replays it."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)
    return torch.randperm(n, generator=gen)


@torch.no_grad()
def evaluate_model(model, x, y, loss: str, *, batch_size: int = 512, device=None, autocast=None, fetch=None,
                   shard: tuple[int, int] = (0, 1), reduce=None, mode_owner=None) -> dict:
    """Loss and accuracy of ``model`` on ``(x, y)`` in eval mode; sums stay on the device, one sync.

    Args:
        model: the network (its train/eval mode is restored afterwards).
        x, y: inputs ``(N, ...)`` and targets prepared by :func:`prepare_targets`.
        loss: the run's loss name (accuracy is None for mse).
        fetch: ``fetch(x, y, idx) -> (xb, yb)`` on the device (default: index and move).
        shard, reduce: ``(rank, world)`` and an all-reduce for DDP: each rank takes every
            world-th example and the sums are added up.
        mode_owner: the module whose mode to flip (the raw model when ``model`` is a wrapper).

    Returns:
        ``{"loss": mean loss, "accuracy": fraction or None, "n": examples}``.
    """
    n = len(y)
    if n == 0:
        return {"loss": None, "accuracy": None, "n": 0}
    device = device or next(model.parameters()).device
    owner = mode_owner if mode_owner is not None else model
    fetch = fetch or (lambda xs, ys, idx: (xs[idx].to(device), ys[idx].to(device)))
    rank, world = shard
    was_training = owner.training
    owner.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    local = torch.arange(rank, n, world, device=x.device)
    try:
        for lo in range(0, len(local), batch_size):
            xb, yb = fetch(x, y, local[lo:lo + batch_size])
            with (autocast() if autocast is not None else _nullcontext()):
                out = model(xb)
            out = out.float()
            totals[0] += _loss_sum(loss, out, yb).double()
            correct = _correct(loss, out, yb)
            if correct is not None:
                totals[1] += correct.double()
    finally:
        owner.train(was_training)
    if reduce is not None:
        totals = reduce(totals)
    loss_sum, correct = totals.tolist()
    return {"loss": loss_sum / n, "accuracy": correct / n if loss != "mse" else None, "n": n}


# -- non-finite diagnosis ----------------------------------------------------------------------------


def first_nonfinite_layer(model, layers, x) -> dict | None:
    """Run ``model`` on ``x`` with forward hooks and name the first layer whose output is not finite.

    Hooks see layers in call order, so a nested layer (inside Residual or Repeat) is found before
    its container finishes. The model's mode and the RNG are restored afterwards (STYLE.md, 7).

    Returns:
        ``{"path", "name", "type"}`` of the layer, ``{"path": "input", ...}`` when the batch itself
        is not finite, or None when every output is finite (the loss alone overflowed).
    """
    if not torch.isfinite(x).all():
        return {"path": "input", "name": "input batch", "type": "data"}
    found: list = []
    hooks = []

    def make_hook(info):
        def hook(module, args, output):
            if not found and isinstance(output, torch.Tensor) and output.is_floating_point() \
                    and not torch.isfinite(output).all():
                found.append({"path": info.path, "name": info.name, "type": info.type})
        return hook

    def walk(infos):
        for info in infos:
            yield info
            yield from walk(getattr(info, "children", []) or [])

    rng = torch.get_rng_state()
    try:
        for info in walk(layers):
            hooks.append(info.module.register_forward_hook(make_hook(info)))
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        torch.set_rng_state(rng)
    return found[0] if found else None


# -- setup -----------------------------------------------------------------------------------------------


@dataclass
class _Setup:
    spec: Any
    spec_text: str
    spec_path: str | None
    data_cfg: data_mod.DataConfig
    cfg: TrainConfig
    dataset: data_mod.Dataset
    output_shape: tuple
    run_dir: Path
    resume: dict | None  # the loaded last checkpoint when resuming
    best_state: dict | None  # best.pt when resuming
    planned_epochs: int | None = None  # the epochs the resumed run was started with


def _load_spec_arg(spec):
    from nncli.spec import Spec, load_spec

    if spec is None or isinstance(spec, Spec):
        return spec
    return load_spec(Path(spec))


def _spec_text(spec) -> str:
    """The spec as YAML text for the run folder: the file verbatim (comments kept) when there is one."""
    if spec.path is not None and Path(spec.path).is_file():
        return Path(spec.path).read_text(encoding="utf-8-sig")
    if spec.document is not None and spec.document.data is not None:
        return yaml.safe_dump(spec.document.data, sort_keys=False)
    raise InputError("the spec has no source text to store in the run folder",
                     hint="load the spec with nncli.spec.load_spec(path) or parse_spec(text)")


def prepare(spec, overrides=None, out_dir=None, *, resume=None, world_size: int = 1,
            runs_root: str | Path = "runs") -> _Setup:
    """Resolve and validate everything a run needs, touching no file.

    Bad input of any kind raises here, before a run folder exists or an old one is modified.
    """
    from nncli.build import infer

    spec = _load_spec_arg(spec)
    data_over, train_over = split_overrides(overrides)
    resume_ckpt = best_state = None
    if resume is not None:
        run = load_run(resume)
        if spec is not None and spec.path is not None and Path(spec.path).is_file() \
                and Path(spec.path).read_text(encoding="utf-8-sig") != run.spec_text:
            raise InputError(f"{spec.path} differs from the spec the run in {run.run_dir} was started with",
                             hint="resume without the SPEC argument to use the run's own copy (spec.yaml)")
        allowed = {"epochs", "sync_every", "eval_batch_size", "compile"}
        changed = sorted(set(k for k, v in train_over.items() if v is not None) - allowed)
        changed += sorted(f"data.{k}" for k, v in data_over.items() if v is not None)
        if changed:
            raise InputError(f"--resume continues a run exactly; cannot change {', '.join(changed)}",
                             hint="only --epochs (to train longer), --compile and the device may change")
        spec, spec_text, spec_path = run.spec, run.spec_text, run.meta.get("spec", {}).get("path")
        data_cfg = run.data
        cfg = TrainConfig(**{**asdict(run.train), **{k: v for k, v in train_over.items() if v is not None}})
        cfg = resolve_train_config(cfg.to_dict())
        if cfg.epochs < run.train.epochs:
            raise InputError(f"--epochs {cfg.epochs}: the run was started for {run.train.epochs} epochs; "
                             "resuming can only keep or extend that")
        run_dir = run.run_dir
        resume_ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        if (run_dir / "checkpoints" / "best.pt").is_file():
            best_state = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    else:
        if spec is None:
            raise InputError("expected a SPEC file to train, or --resume RUN to continue a run")
        spec_text = _spec_text(spec)
        spec_path = str(Path(spec.path).resolve()) if spec.path is not None else None
        base_dir = Path(spec.path).resolve().parent if spec.path is not None else Path.cwd()
        data_cfg = data_mod.resolve_data_config(spec.data, data_over, fail=_section_fail(spec, "data"),
                                                base_dir=base_dir)
        cfg = resolve_train_config(spec.train, train_over, fail=_section_fail(spec, "train"))
        if out_dir is not None:
            run_dir = Path(out_dir)
            if (run_dir / "run.yaml").exists():
                raise InputError(f"{run_dir} already holds a run", hint=f"continue it with --resume {run_dir}, "
                                                                         "or pick another --out")
            if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
                raise InputError(f"--out {run_dir}: expected a new or empty folder, found "
                                 f"{'a file' if not run_dir.is_dir() else 'a folder with files in it'}")
        else:
            run_dir = _new_run_dir(Path(runs_root), spec.name)
    built = infer(spec)  # meta device: checks the spec and gives the output shape for free
    dataset = data_mod.load_dataset(data_cfg)
    for split in ("train", "val", "test"):
        setattr(dataset, f"x_{split}", data_mod.fit_input_shape(getattr(dataset, f"x_{split}"), spec.input))
    dataset = _check_labels(dataset, cfg, built.output_shape, spec, data_cfg)
    if dataset.sizes()["train"] < world_size:
        raise InputError(f"{dataset.sizes()['train']} training examples cannot be split across {world_size} processes")
    if (data_cfg.crop or data_cfg.flip) and len(spec.input) != 3:
        raise InputError(f"data.augment (crop/flip) needs image inputs [C, H, W], the spec's input is {list(spec.input)}")
    if cfg.patience and dataset.sizes()["val"] == 0:
        raise InputError("early stopping (patience) needs a validation split: data.val is 0")
    if resume_ckpt is not None:
        _check_resume_fits(resume_ckpt, run_dir)
    return _Setup(spec, spec_text, spec_path, data_cfg, cfg, dataset, tuple(built.output_shape), run_dir,
                  resume_ckpt, best_state, run.train.epochs if resume is not None else None)


def _check_labels(dataset, cfg, output_shape, spec, data_cfg):
    def fail(message, hint=None):
        return InputError(f"data {dataset.name}: {message}", hint=hint)

    prepare_targets(dataset, cfg.loss, tuple(output_shape), fail)
    return dataset


def _check_resume_fits(ckpt: dict, run_dir: Path) -> None:
    for key in ("optimizer", "epoch", "step_in_epoch", "global_step", "history", "rng"):
        if key not in ckpt:
            raise InputError(f"corrupt checkpoint {run_dir / 'checkpoints' / 'last.pt'}: no {key!r} entry")


# -- the loop ----------------------------------------------------------------------------------------------


def _notify(observer, name: str, *args) -> None:
    method = getattr(observer, name, None) if observer is not None else None
    if method is not None:
        method(*args)


class _Interrupt:
    """SIGINT/SIGTERM -> a flag the loop reads between steps (a checkpoint is never half-updated).
    A second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def _snapshot(obj):
    """A deep copy of a checkpoint's tensors on the CPU: the background writer must not see the
    weights and optimizer moments change under it while the next steps run."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v) for v in obj)
    return obj


class _BackgroundFiles:
    """Writes run files on one background thread, in the order submitted, so that pickling and
    fsync overlap the next training steps instead of stalling them. ``wait()`` blocks until
    everything submitted is on disk and re-raises a failed write."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nncli-files")
        self.pending: list = []

    def submit(self, fn, *args) -> None:
        self.pending.append(self.pool.submit(fn, *args))

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)


class _Trainer:
    def __init__(self, setup: _Setup, device, observer=None, *, dist=None, tensorboard=False):
        self.s = setup
        self.cfg = setup.cfg
        self.device = device
        self.observer = observer
        self.dist = dist  # None, or (rank, world_size)
        self.rank, self.world = dist if dist else (0, 1)
        self.writer_rank = self.rank == 0
        self.tensorboard = tensorboard
        self.run_dir = setup.run_dir
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.files = _BackgroundFiles()

    # ---- state --------------------------------------------------------------------------
    def build(self):
        from nncli.build import build_model

        cfg, dev = self.cfg, self.device
        built = build_model(self.s.spec, device=dev, seed=cfg.seed)
        self.built = built
        self.raw = built.model
        has_conv = any(isinstance(m, torch.nn.Conv2d) for m in self.raw.modules())
        self.channels_last = (cfg.channels_last == "true" or (cfg.channels_last == "auto" and dev.type == "cuda"
                                                              and has_conv)) and len(self.s.spec.input) == 3
        if self.channels_last:
            self.raw.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(cfg, self.raw.parameters(), dev)
        n_train = self.s.dataset.sizes()["train"]
        self.steps_per_epoch = math.ceil(n_train / cfg.batch_size)
        if self.world > 1 and n_train % cfg.batch_size and n_train % cfg.batch_size < self.world:
            self.steps_per_epoch -= 1  # a final batch smaller than the world would leave a rank empty
        self.scheduler = build_scheduler(cfg, self.optimizer, self.steps_per_epoch)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.scaler = torch.amp.GradScaler(dev.type) if cfg.amp == "fp16" else None
        self.aug_gen = torch.Generator(device=dev).manual_seed(cfg.seed + 7919) if (
            self.s.data_cfg.crop or self.s.data_cfg.flip) else None
        model = self.raw
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(self.raw, device_ids=[dev.index] if dev.type == "cuda" else None)
        self.train_model = torch.compile(model) if cfg.compile else model
        self.eval_model = torch.compile(self.raw) if cfg.compile else self.raw
        # dropout draws from the global RNG: seed it per rank, after the (rank-identical) init
        torch.manual_seed(cfg.seed + 1 + self.rank)
        # skip_nonfinite must see each step's loss before that step's update, so every step is a
        # sync point (whatever sync_every says); otherwise the CPU has no device to wait for, and
        # on an accelerator a host sync every 25 steps keeps the queue full.
        self.sync_every = 1 if cfg.skip_nonfinite else cfg.sync_every or (1 if dev.type == "cpu" else 25)

    def place_data(self):
        ds, dev = self.s.dataset, self.device
        self.data_on_device = dev.type == "cpu"
        if dev.type == "cuda":
            need = sum(t.numel() * t.element_size() for t in (ds.x_train, ds.y_train, ds.x_val, ds.y_val,
                                                                ds.x_test, ds.y_test))
            free, _ = torch.cuda.mem_get_info(dev)
            self.data_on_device = need < 0.4 * free  # leave the rest to weights and activations
        self.ds = ds.to(dev) if (self.data_on_device and dev.type != "cpu") else ds
        if self.channels_last and self.data_on_device:
            for split in ("train", "val", "test"):
                x = getattr(self.ds, f"x_{split}")
                setattr(self.ds, f"x_{split}", x.contiguous(memory_format=torch.channels_last))
        if not self.data_on_device:
            for split in ("train", "val", "test"):
                setattr(self.ds, f"x_{split}", getattr(self.ds, f"x_{split}").pin_memory())

    def fresh_state(self):
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list = []
        self.best = {"epoch": None, "val_loss": None, "val_accuracy": None}
        self.best_state = None
        self.bad_epochs = 0
        self.train_time, self.train_samples, self.skipped = 0.0, 0, 0
        self.acc = [0.0, 0.0, 0]  # loss sum, correct, count (host copy at sync points)
        self.status = "running"
        self.best_pending = None  # best.pt content waiting for the next checkpoint
        self.metrics_dirty = False
        self.last_checkpoint = time.perf_counter()

    def load_state(self, ckpt: dict, best: dict | None):
        try:
            self.raw.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scheduler is not None and ckpt.get("scheduler") is not None:
                self.scheduler.load_state_dict(ckpt["scheduler"])
            if self.scaler is not None and ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise InputError(f"checkpoint does not fit this run's model/optimizer: {str(exc).splitlines()[0][:300]}",
                             hint="the checkpoint belongs to a different spec or config") from None
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
        if self.rank != 0:
            self.acc = [0.0, 0.0, 0]  # rank 0 carries the epoch's partial sums (see partial())
        rng = ckpt["rng"]
        if self.dist is None or self.rank == 0:
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

    def checkpoint(self, kind: str = "last") -> None:
        """Write last.pt, with best.pt and the metrics files when they changed since the last write
        (one moment on disk: a resumed run finds them consistent)."""
        self.last_checkpoint = time.perf_counter()
        if not self.writer_rank:
            return
        if self.best_pending is not None:
            self.files.submit(atomic_torch_save, self.best_pending, self.ckpt_dir / "best.pt")
            self.best_pending = None
        if self.metrics_dirty:
            self.write_metrics()
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
               "aug": self.aug_gen.get_state() if self.aug_gen is not None else None}
        state = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "kind": kind,
            "model": {k: v.detach().cpu() for k, v in self.raw.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step, "history": self.history, "best": self.best,
            "bad_epochs": self.bad_epochs, "train_time": self.train_time,
            "train_samples": self.train_samples, "skipped_steps": self.skipped,
            "accum": {"loss": self.acc[0], "correct": self.acc[1], "count": self.acc[2]},
            "normalization": {"mean": self.s.dataset.mean, "std": self.s.dataset.std},
            "status": self.status,
        }
        self.files.wait()  # at most one checkpoint in flight
        self.files.submit(atomic_torch_save, _snapshot(state), self.ckpt_dir / "last.pt")

    def remember_best(self) -> None:
        """Keep the best weights in memory; best.pt is written with the next checkpoint."""
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.raw.state_dict().items()}
        if not self.writer_rank:
            return
        self.best_pending = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "kind": "best",
            "model": self.best_state, "epoch": self.epoch, "global_step": self.global_step,
            "metrics": self.history[-1] if self.history else {},
            "normalization": {"mean": self.s.dataset.mean, "std": self.s.dataset.std},
        }

    # ---- files --------------------------------------------------------------------------
    def write_run_files(self, resumed: bool) -> None:
        if not self.writer_rank:
            return
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.run_dir / "run.yaml"
        if resumed:
            meta = yaml.safe_load(meta_path.read_text())
            meta.setdefault("resumed", []).append(_dt.datetime.now().isoformat(timespec="seconds"))
            meta["train"] = self.cfg.to_dict()
        else:
            import nncli

            meta = {
                "nncli": getattr(nncli, "__version__", None) or _package_version(),
                "created": _dt.datetime.now().isoformat(timespec="seconds"),
                "spec": {"name": self.s.spec.name, "path": self.s.spec_path,
                         "sha256": hashlib.sha256(self.s.spec_text.encode()).hexdigest()},
                "data": self.s.data_cfg.to_dict(),
                "train": self.cfg.to_dict(),
                "device": str(self.device), "world_size": self.world,
                "torch": str(torch.__version__),
                "sizes": self.s.dataset.sizes(),
                "classes": self.s.dataset.classes,
            }
            write_atomic(self.run_dir / "spec.yaml", self.s.spec_text)
        write_atomic(meta_path, yaml.safe_dump(jsonable(meta), sort_keys=False))

    def write_metrics(self) -> None:
        self.metrics_dirty = False
        if not self.writer_rank:
            return
        rows = list(self.history)
        self.files.submit(write_atomic, self.run_dir / "metrics.jsonl",
                          "".join(json.dumps(jsonable(r)) + "\n" for r in rows))
        cols = ["epoch", "step", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                "epoch_time_s", "samples_per_s"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in cols})
        self.files.submit(write_atomic, self.run_dir / "metrics.csv", buffer.getvalue())
        if self.tb is not None and rows:
            row = rows[-1]
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "samples_per_s"):
                if row.get(key) is not None:
                    self.tb.add_scalar(key.replace("_", "/", 1), row[key], row["epoch"])
            self.tb.flush()

    # ---- batches ------------------------------------------------------------------------
    def batch(self, x, y, idx):
        xb, yb = x[idx], y[idx]
        if not self.data_on_device:
            xb = xb.pin_memory().to(self.device, non_blocking=True)
            yb = yb.to(self.device, non_blocking=True)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, yb

    def autocast(self):
        if self.amp_dtype is None:
            return _nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def all_reduce(self, tensor):
        if self.world > 1:
            import torch.distributed as tdist

            tdist.all_reduce(tensor)
        return tensor

    def evaluate(self, split: str, model=None) -> dict:
        """Loss and accuracy of a split in eval mode, over all ranks (one host sync)."""
        x, y = self.ds.split(split)
        return evaluate_model(model or self.eval_model, x, y, self.cfg.loss, batch_size=self.cfg.eval_batch_size,
                              device=self.device, autocast=self.autocast, fetch=self.batch,
                              shard=(self.rank, self.world), reduce=self.all_reduce, mode_owner=self.raw)

    # ---- run ----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg, s = self.cfg, self.s
        started = time.perf_counter()
        self.build()
        self.place_data()
        self.fresh_state()
        resumed = s.resume is not None
        if resumed:
            self.load_state(s.resume, s.best_state)
        self.tb = None
        if self.tensorboard and self.writer_rank:
            from torch.utils.tensorboard import SummaryWriter  # checked by check_tensorboard()

            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        self.write_run_files(resumed)
        if self.writer_rank:
            _notify(self.observer, "on_start", {
                "run_dir": str(self.run_dir), "device": str(self.device), "world_size": self.world,
                "epochs": cfg.epochs, "steps_per_epoch": self.steps_per_epoch, "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch, "resumed": resumed, "sizes": s.dataset.sizes(),
                "params": sum(p.numel() for p in self.raw.parameters()), "spec": s.spec.name,
                "data_on_device": self.data_on_device, "amp": cfg.amp, "compile": cfg.compile,
            })
        nonfinite = None
        # a finished run resumed without more epochs has nothing left to do but report
        finished_before = (resumed and s.resume.get("status") in ("completed", "early_stopped")
                           and cfg.epochs == s.planned_epochs)
        if finished_before:
            self.status = s.resume["status"]
        elif resumed and s.resume.get("status") == "early_stopped":
            self.bad_epochs = 0  # more epochs were asked for: patience starts afresh
        try:
            with _Interrupt() as interrupt:
                if not finished_before:
                    nonfinite = self.loop(interrupt)
            if self.metrics_dirty:  # epochs finished after the last checkpoint (a non-finite stop)
                self.write_metrics()
            self.files.wait()
        finally:
            if self.tb is not None:
                self.tb.close()
            try:
                self.files.close()
            except Exception:
                pass  # the error that is already propagating says more; a clean run re-raised it above
        return self.finish(started, nonfinite)

    def loop(self, interrupt) -> dict | None:
        cfg, ds = self.cfg, self.ds
        x_train, y_train = ds.x_train, ds.y_train
        n = len(y_train)
        kill_at, kill_signal = _fault_injection()
        loss_name = cfg.loss
        augment = self.aug_gen is not None
        crop, flip = self.s.data_cfg.crop, self.s.data_cfg.flip
        params = [p for p in self.raw.parameters() if p.requires_grad]
        lazy = self.sync_every > 1
        bad_step = torch.full((), -1, dtype=torch.int64, device=self.device) if lazy else None
        # hot-loop locals: a tiny model's step is a few hundred microseconds, attribute lookups show
        model, optimizer, scheduler, scaler = self.train_model, self.optimizer, self.scheduler, self.scaler
        world, rank, bs, steps_per_epoch = self.world, self.rank, cfg.batch_size, self.steps_per_epoch
        sync_every, ckpt_every, clip = self.sync_every, cfg.checkpoint_every, cfg.clip_grad_norm
        amp = self.amp_dtype is not None
        fetch = None if self.data_on_device else self.batch  # host data: pinned copy per batch
        while self.epoch < cfg.epochs:
            perm = epoch_permutation(cfg.seed, self.epoch, n).to(x_train.device)
            self.train_model.train()
            # The epoch's running loss and correct-count sums (this rank's): Python floats when every
            # step reads the loss anyway (CPU), device tensors otherwise (nothing to sync per step).
            if lazy:
                sums = torch.tensor([self.acc[0], self.acc[1]], dtype=torch.float64, device=self.device)
            run_loss, run_correct = self.acc[0], self.acc[1]
            count = self.acc[2]

            def current() -> list:
                return sums.tolist() if lazy else [run_loss, run_correct]

            last_report = time.perf_counter()
            t0 = epoch_start = time.perf_counter()  # t0: start of the segment not yet in train_time
            samples_at_start = self.train_samples
            step = self.step_in_epoch
            pending_stop = False
            while step < self.steps_per_epoch:
                # Stop *before* the step draws any random number (augmentation, dropout): the
                # checkpoint then holds exactly the RNG state the next step starts from. DDP ranks
                # act on a flag they agreed on at the previous sync point.
                if pending_stop or (self.world == 1 and interrupt.requested):
                    self.status = "interrupted"
                    self.acc = self.partial(current(), count)
                    self.train_time += time.perf_counter() - t0
                    self.metrics_dirty = True
                    self.checkpoint()
                    return None
                idx = perm[step * bs:(step + 1) * bs]
                global_count = len(idx)
                local = idx[rank::world] if world > 1 else idx
                if fetch is None:
                    xb, yb = x_train[local], y_train[local]
                else:
                    xb, yb = fetch(x_train, y_train, local)
                if augment:
                    xb = data_mod.augment_batch(xb, crop=crop, flip=flip, generator=self.aug_gen)
                if amp:
                    with self.autocast():
                        out = model(xb)
                    out = out.float()
                else:
                    out = model(xb)
                loss_mean = _loss_mean(loss_name, out, yb)
                n_local = len(local)
                will_checkpoint = bool(ckpt_every and (self.global_step + 1) % ckpt_every == 0
                                       and step + 1 < steps_per_epoch)
                # a checkpoint step is a sync point too: its weights are known good before they are saved
                sync = (step + 1) % sync_every == 0 or step + 1 == steps_per_epoch or will_checkpoint
                if lazy:
                    bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss_mean), self.global_step, bad_step)
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
                                float(interrupt.requested), dtype=torch.float64, device=self.device)])
                        else:
                            flags = torch.tensor([0.0 if math.isfinite(value) else 1.0, float(interrupt.requested)],
                                                 dtype=torch.float64, device=self.device)
                        bad, pending_stop = (v > 0 for v in self.all_reduce(flags).tolist())
                    if bad:
                        if cfg.skip_nonfinite:  # never lazy (sync_every is 1): this step's loss is bad
                            self.skipped += 1
                            step += 1
                            self.step_in_epoch = step
                            self.global_step += 1
                            if self.scheduler is not None:
                                self.scheduler.step()
                            continue
                        first = int(bad_step.item()) if lazy else self.global_step
                        return self.diagnose(first, xb, loss_mean, lazy)
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
                self.step_in_epoch = step
                self.global_step += 1
                self.train_samples += global_count
                if will_checkpoint:
                    self.acc = self.partial(current(), count)
                    self.train_time += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.checkpoint()
                if kill_at and self.global_step == kill_at:
                    self.files.wait()  # "after step k": its checkpoint is on disk
                    os.kill(os.getpid(), kill_signal)
                if sync and self.writer_rank and self.observer is not None:
                    now = time.perf_counter()
                    if now - last_report > 0.25:
                        last_report = now
                        loss_total, correct_total = current()
                        _notify(self.observer, "on_step", {
                            "epoch": self.epoch + 1, "epochs": cfg.epochs, "step": step,
                            "steps": self.steps_per_epoch, "global_step": self.global_step,
                            "loss": loss_total / max(count, 1),
                            "accuracy": correct_total / max(count, 1) if loss_name != "mse" else None,
                            "samples_per_s": (self.train_samples - samples_at_start) / max(now - t0, 1e-9),
                        })
            # ---- epoch end: one sync for the running sums
            if self.world > 1:
                totals = torch.tensor([*current(), float(count)], dtype=torch.float64, device=self.device)
                loss_total, correct_total, count_total = self.all_reduce(totals).tolist()
            else:
                (loss_total, correct_total), count_total = current(), count
            self.train_time += time.perf_counter() - t0
            epoch_time = time.perf_counter() - epoch_start
            val = self.evaluate("val")
            lr = self.optimizer.param_groups[0]["lr"]
            record = {
                "epoch": self.epoch + 1, "step": self.global_step, "lr": lr,
                "train_loss": loss_total / max(count_total, 1),
                "train_accuracy": correct_total / max(count_total, 1) if loss_name != "mse" else None,
                "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                "epoch_time_s": epoch_time,
                "samples_per_s": (self.train_samples - samples_at_start) / max(epoch_time, 1e-9),
            }
            self.history.append(record)
            improved = self.improved(record)
            if improved:
                self.best = {"epoch": self.epoch + 1, "val_loss": val["loss"], "val_accuracy": val["accuracy"]}
                self.bad_epochs = 0
            else:
                self.bad_epochs += 1
            self.epoch += 1
            self.step_in_epoch = 0
            self.acc = [0.0, 0.0, 0]
            stop_early = bool(cfg.patience and self.bad_epochs >= cfg.patience and self.epoch < cfg.epochs)
            if stop_early:
                self.status = "early_stopped"
            elif self.epoch >= cfg.epochs:
                self.status = "completed"
            if improved:
                self.remember_best()
            self.metrics_dirty = True
            if self.status != "running" or not cfg.checkpoint_seconds or \
                    time.perf_counter() - self.last_checkpoint >= cfg.checkpoint_seconds:
                self.checkpoint()
            if self.writer_rank:
                _notify(self.observer, "on_epoch", dict(record, epochs=cfg.epochs, improved=improved))
            if stop_early:
                if self.writer_rank:
                    _notify(self.observer, "on_message",
                            f"early stopping: {self.monitor} did not improve for {cfg.patience} epochs "
                            f"(best epoch {self.best['epoch']})")
                break
        return None

    def partial(self, sums: list, count: int) -> list:
        """The running sums of the epoch so far, over all ranks, for a mid-epoch checkpoint.

        Every rank calls it at the same step. Rank 0 checkpoints the totals; on resume rank 0
        restarts from them and the other ranks from zero, so the epoch-end reduction still adds
        up to the global sums.
        """
        if self.world == 1:
            return [*sums, count]
        totals = torch.tensor([*sums, float(count)], dtype=torch.float64, device=self.device)
        loss, correct, n = self.all_reduce(totals).tolist()
        return [loss, correct, int(n)]

    @property
    def monitor(self) -> str:
        return self.cfg.monitor or ("val_loss" if self.cfg.loss == "mse" else "val_accuracy")

    def improved(self, record: dict) -> bool:
        """Better than the best so far on the monitored metric; the val loss breaks accuracy ties.
        Without a validation split every epoch counts as the best (the last weights are kept)."""
        if record["val_loss"] is None or not math.isfinite(record["val_loss"]):
            return record["val_loss"] is None
        if self.best["epoch"] is None:
            return True
        delta = self.cfg.min_delta
        if self.monitor == "val_loss":
            return record["val_loss"] < self.best["val_loss"] - delta
        acc, best_acc = record["val_accuracy"], self.best["val_accuracy"]
        if acc > best_acc + delta:
            return True
        return delta == 0 and acc == best_acc and record["val_loss"] < self.best["val_loss"]

    def diagnose(self, first_step: int, xb, loss_sum, lazy: bool) -> dict:
        """Name the step and the first layer with a non-finite output; keep the last good checkpoint."""
        self.status = "nonfinite"
        self.files.wait()  # the last good checkpoint is complete before the message names it
        batch = first_step - self.epoch * self.steps_per_epoch + 1 if not lazy else None
        layer = first_nonfinite_layer(self.raw, self.built.layers, xb)
        value = loss_sum.item()
        info = {"step": first_step + 1, "epoch": self.epoch + 1, "batch": batch,
                "value": str(value), "layer": layer, "weights_at_detection": lazy}
        last = self.ckpt_dir / "last.pt"
        where = (f"{layer['path']} ({layer['name']}, {layer['type']})" if layer and layer["path"] != "input"
                 else "the input batch" if layer else "the loss itself (every layer's output is finite)")
        info["message"] = (f"non-finite loss ({value}) at step {first_step + 1} (epoch {self.epoch + 1}"
                           + (f", batch {batch}" if batch else "") + f"): first non-finite output in {where}"
                           + ("; found at a sync point, so the layer is located with the weights of that moment"
                              if lazy else "")
                           + (f"; last good checkpoint: {last}" if last.is_file() else "; no checkpoint was written"))
        return info

    def finish(self, started: float, nonfinite: dict | None) -> TrainResult:
        cfg = self.cfg
        if nonfinite is not None:
            self.status = "nonfinite"
        if self.status == "running":
            self.status = "completed"
        splits = {"train": {"loss": None, "accuracy": None, "n": self.s.dataset.sizes()["train"]},
                  "val": {"loss": None, "accuracy": None, "n": self.s.dataset.sizes()["val"]},
                  "test": {"loss": None, "accuracy": None, "n": self.s.dataset.sizes()["test"]}}
        if self.status in ("completed", "early_stopped") and self.history:
            if self.best_state is not None:
                self.raw.load_state_dict(self.best_state)
            splits = {split: self.evaluate(split, self.raw) for split in ("train", "test")}
            record = next((r for r in self.history if r["epoch"] == self.best["epoch"]), None)
            if record is not None and record["val_loss"] is not None and not self.cfg.compile:
                # the best epoch's validation pass ran on exactly these weights in eval mode
                splits["val"] = {"loss": record["val_loss"], "accuracy": record["val_accuracy"],
                                 "n": self.s.dataset.sizes()["val"]}
            else:
                splits["val"] = self.evaluate("val", self.raw)
            splits = {k: splits[k] for k in ("train", "val", "test")}
        message = None
        if self.status == "interrupted":
            message = (f"interrupted at epoch {self.epoch + 1}, step {self.step_in_epoch}; "
                       f"continue with: nncli train --resume {self.run_dir}")
        elif self.status == "nonfinite":
            message = nonfinite["message"]
        elif self.status == "early_stopped":
            message = f"stopped early after {self.epoch} epochs: {self.monitor} stopped improving"
        result = TrainResult(
            run_dir=str(self.run_dir), spec=self.s.spec.name, device=str(self.device), world_size=self.world,
            epochs=len(self.history), planned_epochs=cfg.epochs, best_epoch=self.best["epoch"],
            global_step=self.global_step,
            samples_per_s=self.train_samples / self.train_time if self.train_time > 0 else 0.0,
            train=splits["train"], val=splits["val"], test=splits["test"], status=self.status,
            message=message, history=list(self.history),
            checkpoints={k: str(self.ckpt_dir / f"{k}.pt") for k in ("best", "last")
                         if (self.ckpt_dir / f"{k}.pt").is_file()},
            data={"name": self.s.dataset.name, **self.s.dataset.sizes(), "input_shape": list(self.s.spec.input),
                  "classes": self.s.dataset.classes},
            config=cfg.to_dict(), duration_s=time.perf_counter() - started, amp=cfg.amp, compile=cfg.compile,
            channels_last=self.channels_last, data_on_device=self.data_on_device, skipped_steps=self.skipped,
            nonfinite=nonfinite,
        )
        if self.writer_rank:
            write_atomic(self.run_dir / "report.json", json.dumps(result.to_json(), indent=2) + "\n")
        return result


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _package_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("nncli")
    except Exception:
        return None


def check_tensorboard() -> None:
    """``--tensorboard`` needs the tensorboard package: say so before anything runs (exit 2)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise InputError("--tensorboard: the tensorboard package is not installed",
                         hint="pip install tensorboard, or drop --tensorboard") from None


# -- the public entry point -----------------------------------------------------------------------------


def run_training(spec=None, overrides: dict | None = None, out_dir: str | Path | None = None, *,
                 device: str = "auto", resume: str | Path | None = None, observer=None,
                 tensorboard: bool = False, runs_root: str | Path = "runs") -> TrainResult:
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
        observer: gets ``on_start(info)``, ``on_step(info)``, ``on_epoch(record)``,
            ``on_message(text)`` (any subset) for progress display.
        tensorboard: also log scalars under ``<run>/tensorboard`` (needs the tensorboard package).
        runs_root: parent of default run folders.

    Returns:
        TrainResult; ``status`` is ``completed``, ``early_stopped``, ``interrupted`` (Ctrl-C or
        SIGTERM: a checkpoint was saved) or ``nonfinite`` (training stopped; ``nonfinite`` says
        where).

    Raises:
        SpecError / InputError: bad spec, flag, data, shapes or checkpoint (exit 2); nothing of an
            existing run is modified.

    Example:
        >>> result = run_training("specs/moons-mlp.yaml", {"epochs": 5}, "runs/moons", device="cpu")
        >>> result.test["accuracy"] > 0.9
        True
    """
    from nncli.device import resolve_device

    dev = resolve_device(device)
    if tensorboard:
        check_tensorboard()
    setup = prepare(spec, overrides, out_dir, resume=resume, runs_root=runs_root)
    return _Trainer(setup, dev, observer, tensorboard=tensorboard).run()


# -- DDP --------------------------------------------------------------------------------------------------


def launch_distributed(spec=None, overrides: dict | None = None, out_dir: str | Path | None = None, *,
                       nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
                       master_addr: str = "127.0.0.1", master_port: int = 29500, device: str = "auto",
                       resume: str | Path | None = None, observer_factory: Callable | None = None,
                       tensorboard: bool = False, runs_root: str | Path = "runs") -> TrainResult | None:
    """Run :func:`run_training` under torch.distributed with DistributedDataParallel.

    Uses torchrun's own launcher (``torch.distributed.launcher.elastic_launch``): a standalone
    rendezvous on one node, a static one (``master_addr:master_port``, ``node_rank``) across
    nodes. Backend gloo on CPU, nccl on CUDA (one GPU per process, ``cuda:LOCAL_RANK``). Only
    global rank 0 writes files and reports progress. Everything is validated here first, so bad
    input exits 2 before any worker starts.

    Returns:
        Rank 0's TrainResult on the node that ran rank 0; None on the other nodes.
    """
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from nncli.device import resolve_device

    world = nproc_per_node * nnodes
    dev = resolve_device(device)
    if tensorboard:
        check_tensorboard()
    if dev.type == "cuda" and torch.cuda.device_count() < nproc_per_node:
        raise InputError(f"--nproc-per-node {nproc_per_node}: only {torch.cuda.device_count()} CUDA device(s) visible",
                         hint="use one process per GPU, or --device cpu")
    setup = prepare(spec, overrides, out_dir, resume=resume, world_size=world, runs_root=runs_root)
    request = {
        "spec_text": None if resume else setup.spec_text, "spec_path": setup.spec_path, "overrides": overrides,
        "out_dir": str(setup.run_dir), "device": dev.type, "resume": str(resume) if resume else None,
        "observer_factory": observer_factory, "tensorboard": tensorboard,
    }
    if nnodes == 1:
        rdzv = dict(rdzv_backend="c10d", rdzv_endpoint="localhost:0", run_id=str(uuid.uuid4()))
    else:
        rdzv = dict(rdzv_backend="static", rdzv_endpoint=f"{master_addr}:{master_port}", run_id="nncli",
                    rdzv_configs={"rank": node_rank, "timeout": 900})
    config = LaunchConfig(min_nodes=nnodes, max_nodes=nnodes, nproc_per_node=nproc_per_node, max_restarts=0,
                          monitor_interval=0.1, start_method="spawn", signals_to_handle="SIGTERM,SIGHUP,SIGQUIT",
                          **rdzv)
    threads = max(1, (os.cpu_count() or 1) // nproc_per_node)
    old_omp = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    # Ctrl-C reaches every worker directly; they agree on it at the next step and checkpoint.
    # The launcher must outlive them instead of killing them first.
    old_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() else None
    try:
        results = elastic_launch(config, _ddp_entry)(request)
    except ChildFailedError as exc:
        failures = "; ".join(f"rank {rank}: exit {f.exitcode}"
                             + (f" ({str(f.message)[:300]})" if getattr(f, "message", None) else "")
                             for rank, f in sorted(exc.failures.items()))
        raise CheckFailed(f"distributed training failed: {failures}") from None
    finally:
        if old_sigint is not None:
            signal.signal(signal.SIGINT, old_sigint)
        if old_omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old_omp
    answer = results.get(0)
    if answer is None:
        return None
    if "error" in answer:
        kinds = {"SpecError": SpecError, "InputError": InputError, "CheckFailed": CheckFailed}
        err = answer["error"]
        raise kinds.get(err["error"], NncliError)(err["message"], file=err.get("file"), line=err.get("line"),
                                                  column=err.get("column"), spec_path=err.get("spec_path"),
                                                  hint=err.get("hint"))
    return TrainResult(**answer["result"])


def _ddp_entry(request: dict) -> dict:
    """One DDP worker (spawned by the elastic launcher). Returns plain data, picklable."""
    import torch.distributed as tdist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if request["device"] == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        backend = "gloo"
    tdist.init_process_group(backend=backend, rank=rank, world_size=world)
    try:
        observer = request["observer_factory"]() if (rank == 0 and request["observer_factory"]) else None
        try:
            # out_dir=None: the launcher already checked the folder, and rank 0 may be writing to it
            spec = None
            if request["spec_text"] is not None:  # the launcher's spec, exactly (it may not be a file)
                from nncli.spec import parse_spec

                origin = request["spec_path"]
                spec = parse_spec(request["spec_text"], file=origin,
                                  base_dir=Path(origin).parent if origin else Path.cwd())
            setup = prepare(spec, request["overrides"], None, resume=request["resume"], world_size=world)
        except NncliError as err:
            return {"error": err.to_json()}
        if not request["resume"]:
            setup.run_dir = Path(request["out_dir"])
        try:
            result = _Trainer(setup, device, observer, dist=(rank, world), tensorboard=request["tensorboard"]).run()
        except NncliError as err:
            return {"error": err.to_json()}
        finally:
            if observer is not None and hasattr(observer, "close"):
                observer.close()
        return {"result": asdict(result)}
    finally:
        tdist.destroy_process_group()
