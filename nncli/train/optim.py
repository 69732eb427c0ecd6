"""The optimizer and the learning-rate schedule of a ``train:`` section."""

from __future__ import annotations

import torch

from nncli.train.config import TrainConfig


def build_optimizer(cfg: TrainConfig, params, device) -> torch.optim.Optimizer:
    """sgd/adam/adamw from the config. On CUDA the fused kernels, which also let a GradScaler
    skip steps without reading its inf flag on the host."""
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, **fused
        )
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
        return sched.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=max(total, 2), pct_start=min(max(pct, 1e-3), 0.999)
        )
    main_steps = max(total - warm, 1)
    if cfg.schedule == "step":
        main = sched.StepLR(
            optimizer, step_size=cfg.step_size * steps_per_epoch, gamma=cfg.gamma if cfg.gamma is not None else 0.1
        )
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
