"""``nncli probe --steps N``: train each seed's network a few optimizer steps on random targets,
so the probe can be run again on the moved weights.

The optimizer and its settings come from the spec's ``train:`` section, read and validated by
the training package (the same rules and messages as ``nncli train``); ``--optimizer``/``--lr``
override it. The batches are fresh random inputs (or rows of ``--data``) with random targets:
the probe asks how the gradients behave once the weights have moved, not whether anything is
learnt.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nncli.data.multi import Inputs
from nncli.errors import InputError
from nncli.probe.measure import data_rows, random_inputs
from nncli.spec import Spec


def train_config(spec: Spec, optimizer: str | None = None, lr: float | None = None):
    """The spec's ``train:`` section validated by :func:`nncli.train.config.resolve_train_config`
    (the same rules and messages as ``nncli train``), with ``--optimizer``/``--lr`` on top.

    Raises:
        SpecError: a bad value in the spec, located in the file; InputError: a bad flag.
    """
    from nncli.train.config import resolve_train_config

    def fail(path, message, hint=None, from_override=False):
        key = str(path[0]) if path else ""
        if from_override or spec.document is None:
            return InputError(f"--{key.replace('_', '-')}: {message}", hint=hint)
        return spec.error(("train",) + tuple(path), message, hint)

    return resolve_train_config(dict(spec.train or {}), {"optimizer": optimizer, "lr": lr}, fail=fail)


def loss_kind(spec: Spec, cfg, output_shape: tuple) -> str:
    """The spec's ``train.loss`` when it names one; else cross_entropy for a class-score vector
    output (C > 1 entries) or a token model's ``[L, V]`` scores, mse for anything else."""
    if "loss" in (spec.train or {}):
        return cfg.loss
    if getattr(spec, "integer_input", False) and len(output_shape) >= 2 and output_shape[-1] > 1:
        return "cross_entropy"
    return "cross_entropy" if len(output_shape) == 1 and output_shape[0] > 1 else "mse"


# what the report says was trained on, per loss
STEP_LOSS_TEXT = {
    "cross_entropy": "cross_entropy on random labels",
    "mse": "mse on random N(0, 1) targets",
    "bce_with_logits": "bce_with_logits on random 0/1 targets",
}


def train_steps(
    model: nn.Module,
    cfg,
    loss: str,
    output_shape: tuple,
    steps: int,
    seed: int,
    batch_size: int,
    input_shape: tuple,
    data: torch.Tensor | Inputs | None,
    spec=None,
) -> tuple[float, float]:
    """``steps`` optimizer steps on fresh random batches with random targets; returns (first, last) loss.

    The optimizer is :func:`nncli.train.optim.build_optimizer` of the spec's ``train:`` section (lr,
    momentum, betas, weight decay; ``clip_grad_norm`` too; schedules are not applied over so few
    steps). Targets are random labels (cross_entropy), N(0, 1) values (mse) or random 0/1
    (bce_with_logits): the probe asks how the gradients behave once the weights have moved,
    not whether anything is learnt.
    """
    from nncli.train.optim import build_optimizer

    # the training loop's own mean loss, so a probe step and a train step agree on the number
    from nncli.train.task import loss_mean

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("the network has no trainable parameters to train", param="steps")
    opt = build_optimizer(cfg, params, device)
    gen = torch.Generator().manual_seed(10_007 + seed)  # apart from the probe batch's stream
    model.train()
    first = last = math.nan
    for step in range(steps):
        if data is None:
            x = random_inputs(spec, batch_size, input_shape, gen)
        else:
            x = data_rows(data, torch.randint(len(data), (batch_size,), generator=gen))
        xs = tuple(t.to(device) for t in x) if isinstance(x, tuple) else (x.to(device),)
        out = model(*xs)
        out = out[0] if isinstance(out, tuple) else out  # the first output, as `nncli train` trains it
        if loss == "cross_entropy":
            # one label per example, or per position of a [L, V] output
            y = torch.randint(output_shape[-1], (len(xs[0]), *output_shape[:-1]), generator=gen).to(device)
        elif loss == "bce_with_logits":
            y = torch.randint(2, out.shape, generator=gen).to(device=device, dtype=out.dtype)
        else:
            y = torch.randn(out.shape, generator=gen).to(device=device, dtype=out.dtype)
        value = loss_mean(loss, out, y)
        opt.zero_grad(set_to_none=True)
        value.backward()
        if cfg.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
        opt.step()
        last = value.item()
        if step == 0:
            first = last
    opt.zero_grad(set_to_none=True)
    return first, last
