"""The ``train:`` section: :class:`TrainConfig`, its validation, and the choice lists.

The loss, optimizer, schedule, mixed-precision and early-stopping choices live here once:
:func:`resolve_train_config` validates against them and ``nncli.cli`` builds its ``--loss``,
``--optimizer``, ``--schedule`` and ``--amp`` choices from them. This module imports no torch,
not even through another nncli module, so that ``nncli --help`` stays fast.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

from nncli.config_section import Section
from nncli.config_section import describe as _describe
from nncli.errors import InputError, did_you_mean
from nncli.seeds import SEED_MAX

# Epochs a run may plan: past this a run would not end in any useful time, and the figure is a
# typing slip (an extra digit or two), better refused before any work.
MAX_EPOCHS = 1_000_000

# Learning rates and weight decay the optimizers can hold: the largest float32. Beyond it an
# optimizer's conversion of the rate fails outright; below it a rate too large for the network
# gives a non-finite loss, which training diagnoses.
MAX_RATE = 3.4e38

LOSSES = ("cross_entropy", "mse", "bce_with_logits")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine", "onecycle", "exponential")
AMP_MODES = ("none", "bf16", "fp16")
MONITORS = ("val_loss", "val_accuracy")


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
    outputs: dict | None = None  # further outputs trained against the labels: {name: loss weight}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out


TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
# The parameter an override of a key arrives as, where it is not the key itself: a data set's
# name or path is given as one `data` value.
_PARAMS = {("data", "name"): "data", ("data", "path"): "data"}


def section_fail(spec, section: str):
    """``fail(path, message, hint, from_override)`` for a spec section: located in the file when
    the value came from the spec, named by its parameter (the key) when it came from an override."""

    def fail(path, message, hint=None, from_override=False):
        path = tuple(path)
        if from_override or spec is None or getattr(spec, "document", None) is None:
            spec_path = ".".join((section,) + tuple(map(str, path)))
            if not path:
                return InputError(f"`{section}`: {message}", spec_path=spec_path, hint=hint)
            key = str(path[0])
            return InputError(message, param=_PARAMS.get((section, key), key), spec_path=spec_path, hint=hint)
        return spec.error((section,) + path, message, hint)

    return fail


def resolve_train_config(spec_train: dict | None, overrides: dict | None = None, *, fail=None) -> TrainConfig:
    """Validate a ``train:`` section and apply overrides (flags, a sweep) on top.

    Args:
        spec_train: the spec's raw ``train:`` mapping (or None for all defaults).
        overrides: the same keys; ``None`` values are ignored.
        fail: ``fail(path, message, hint, from_override) -> Exception`` (see :func:`section_fail`).

    Returns:
        TrainConfig.

    Raises:
        SpecError / InputError: unknown key (did-you-mean), bad type or range, bad combination.

    Example:
        >>> resolve_train_config({"optimizer": "sgd", "lr": 0.1}, {"epochs": 3}).epochs
        3
    """
    section = Section(spec_train, overrides, fail or section_fail(None, "train"))
    merged, err = section.values, section.error
    for key in merged:
        if key not in TRAIN_KEYS:
            raise err(
                key,
                f"unknown key {key!r} in train",
                did_you_mean(str(key), TRAIN_KEYS) or "allowed: " + ", ".join(TRAIN_KEYS),
            )
    out: dict[str, Any] = {}
    _choices(section, out)
    _numbers(section, out)
    _switches_layout_betas(section, out)
    _aux_outputs(section, out)
    for key in ("gamma", "clip_grad_norm", "patience", "monitor", "sync_every"):
        if key in merged and merged[key] is None:
            out[key] = None
    cfg = TrainConfig(**out)
    optimizer = cfg.optimizer
    if cfg.nesterov and (optimizer != "sgd" or cfg.momentum <= 0):
        raise err(
            "nesterov",
            "nesterov needs optimizer: sgd with momentum > 0, found "
            f"optimizer {optimizer} with momentum {cfg.momentum}",
        )
    if cfg.momentum and optimizer != "sgd":
        raise err("momentum", f"`momentum` applies to sgd; {optimizer} uses `betas`")
    if cfg.monitor == "val_accuracy" and cfg.loss == "mse":
        raise err("monitor", "val_accuracy is not defined for an mse loss; use val_loss")
    return cfg


def _choices(section: Section, out: dict) -> None:
    """The keys with a list of choices, validated into ``out``."""
    merged, err = section.values, section.error

    def choice(key, options):
        if key not in merged:
            return
        value = merged[key]
        if isinstance(value, Enum):  # from the CLI
            value = value.value
        if not isinstance(value, str) or value.lower() not in options:
            hint = did_you_mean(str(value), options) if isinstance(value, str) else None
            raise err(key, f"expected one of {', '.join(options)}, found {_describe(value)}", hint)
        out[key] = value.lower()

    choice("loss", LOSSES)
    choice("optimizer", OPTIMIZERS)
    choice("schedule", SCHEDULES)
    choice("amp", AMP_MODES)
    if merged.get("monitor") is not None:
        choice("monitor", MONITORS)


def _numbers(section: Section, out: dict) -> None:
    """The numeric keys, each checked against its range, into ``out``."""
    rules = {
        "lr": dict(low=0, low_open=True, high=MAX_RATE),
        "batch_size": dict(integer=True, low=1),
        "epochs": dict(integer=True, low=1, high=MAX_EPOCHS),
        "seed": dict(integer=True, low=0, high=SEED_MAX),
        "momentum": dict(low=0, high=1),
        "weight_decay": dict(low=0, high=MAX_RATE),
        "step_size": dict(integer=True, low=1),
        "gamma": dict(low=0, low_open=True, high=1, optional=True),
        "min_lr": dict(low=0, high=MAX_RATE),
        "warmup_steps": dict(integer=True, low=0),
        "clip_grad_norm": dict(low=0, low_open=True, optional=True),
        "patience": dict(integer=True, low=1, optional=True),
        "min_delta": dict(low=0),
        "checkpoint_every": dict(integer=True, low=0),
        "checkpoint_seconds": dict(low=0),
        "eval_batch_size": dict(integer=True, low=1),
        "sync_every": dict(integer=True, low=1, optional=True),
    }
    for key, rule in rules.items():
        if key in section.values:
            out[key] = section.number(key, **rule)


def _switches_layout_betas(section: Section, out: dict) -> None:
    """The booleans, ``channels_last`` (true, false or auto) and ``betas`` (two numbers in
    [0, 1)), validated into ``out``."""
    merged, err = section.values, section.error
    for key in ("nesterov", "compile", "skip_nonfinite"):
        if key not in merged:
            continue
        if not isinstance(merged[key], bool):
            raise err(key, f"expected true or false, found {_describe(merged[key])}")
        out[key] = merged[key]
    if "channels_last" in merged:
        value = merged["channels_last"]
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if value not in (True, False, "auto"):
            raise err("channels_last", f"expected true, false or auto, found {_describe(value)}")
        out["channels_last"] = {True: "true", False: "false"}.get(value, value)
    if "betas" in merged:
        betas = merged["betas"]
        if (
            not isinstance(betas, (list, tuple))
            or len(betas) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)
        ):
            raise err("betas", f"expected two numbers in [0, 1) like [0.9, 0.999], found {_describe(betas)}")
        out["betas"] = tuple(float(b) for b in betas)


def _aux_outputs(section: Section, out: dict) -> None:
    """``outputs: {name: weight}``: the spec's further outputs trained with these loss weights
    (which names the spec has is checked once the spec is built)."""
    if "outputs" not in section.values or section.values["outputs"] is None:
        return
    value = section.values["outputs"]
    if not isinstance(value, dict) or not value:
        raise section.error("outputs", f"expected a mapping of output names to loss weights, found {_describe(value)}")
    weights = {}
    for name, weight in value.items():
        ok = isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight)
        if not ok or weight < 0:
            message = f"expected a finite loss weight >= 0 for output {name!r}, found {_describe(weight)}"
            raise section.fail(("outputs", name), message, None, section.origin.get("outputs", False))
        weights[str(name)] = float(weight)
    out["outputs"] = weights


def split_overrides(overrides: dict | None) -> tuple[dict, dict]:
    """``{"data": {...}, "train": {...}}``, dotted keys (``"train.lr"``) or bare train keys
    (``"lr"``) -> ``(data_overrides, train_overrides)``.

    ``{"data": "digits"}`` names a source, a built-in set or a file: it comes back as
    ``{"source": "digits"}`` (replacing any name or path given before it), and
    :func:`nncli.train.prepare.resolve_data_source` tells the two apart. That needs the data
    module's file formats, and this module imports nothing that reaches torch.
    """
    data_over: dict = {}
    train_over: dict = {}
    for key, value in (overrides or {}).items():
        if key == "data" and isinstance(value, (str, Path)):
            data_over.update({"source": value, "name": None, "path": None})
        elif key in ("data", "train") and isinstance(value, dict):
            (data_over if key == "data" else train_over).update(value)
        elif isinstance(key, str) and key.startswith(("data.", "train.")):
            section, sub = key.split(".", 1)
            (data_over if section == "data" else train_over)[sub] = value
        elif key in TRAIN_KEYS:
            train_over[key] = value
        else:
            known = TRAIN_KEYS + ("data", "train")
            raise InputError(
                f"unknown override {key!r}",
                hint=did_you_mean(str(key), known)
                or "use {'train': {...}, 'data': {...}} or dotted keys like 'train.lr'",
            )
    return data_over, train_over
