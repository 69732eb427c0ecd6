"""Transfer learning: a network that starts from a finished run's weights for some of its layers.

The lecture's recipe: train a network on a big task, chop it in the middle and use the first
layers as the feature extractor of a new, smaller task. A spec's ``transfer:`` section
(:mod:`nncli.spec.transfer`) names the run and the top-level layers; after the builder has made
the network, :func:`apply_transfer` copies those layers' weights from the run's checkpoint,
tensor by tensor, refusing with a located error any layer whose type or tensor shapes differ
from the run's, and optionally freezes them:

- a frozen layer's parameters get ``requires_grad=False`` (the trainer leaves them out of the
  optimizer, ``params`` counts them as frozen);
- a frozen layer stays in eval mode whatever ``model.train()`` says, so its BatchNorm running
  statistics are the source run's and its dropout is off: it is a fixed feature extractor.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from nncli.build import Built

FROZEN_MARK = "_nncli_frozen"  # set on a frozen top-level module


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    # Bound to a frozen module in place of nn.Module.train: any model.train() (the trainer's,
    # DDP's, evaluate_model's restore) reaches it through the parent and leaves it in eval mode.
    return nn.Module.train(self, False)


def freeze_module(module: nn.Module) -> None:
    """Parameters off the gradient, eval mode now and after every ``train()`` call."""
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    module.train = types.MethodType(_stay_in_eval, module)
    setattr(module, FROZEN_MARK, True)


def apply_transfer(built: Built, *, load: bool = True) -> None:
    """Copy (``load``) and freeze the layers the spec's ``transfer:`` names, in place.

    Args:
        built: a freshly built network whose spec has a ``transfer`` section.
        load: read the run's checkpoint and copy the weights. False on meta tensors, and where a
            checkpoint of the new network is loaded next anyway (evaluate, attack): only the
            freezing is applied then, and the source run need not exist.

    Raises:
        SpecError: no such run or checkpoint, a layer type or tensor shape that differs from the
            run's (located at the layer of this spec and naming the run's layer).
    """
    t = built.spec.transfer
    if t is None:
        return
    if load:
        _copy_weights(built, t)
    if t.freeze:
        for i in t.indices:
            freeze_module(built.model[i])
            for info in built.layers[i].walk():
                seen = {id(p): p for p in info.module.parameters()}.values()
                info.trainable = sum(p.numel() for p in seen if p.requires_grad)


def _read_source(t) -> tuple[dict, list]:
    """The source run's model state dict and its top-level layer specs."""
    from nncli.errors import NncliError
    from nncli.runs import SPEC_FILE, checkpoint_path, is_run_folder, load_checkpoint
    from nncli.spec import parse_spec

    run = Path(t.source)
    if not is_run_folder(run):
        raise t.from_where.error(
            f"transfer: {run} is not a run folder written by nncli train (no run.yaml)",
            "train the source network first; a relative `from` is read from the spec's folder",
        )
    path = checkpoint_path(run, t.checkpoint)
    if not path.is_file():
        raise t.from_where.error(f"transfer: the run has no checkpoint {path}")
    try:
        ckpt = load_checkpoint(path)
    except NncliError as err:  # a truncated or foreign file: said at the spec's `from`
        raise t.from_where.error(f"transfer: {err.message}", err.hint) from None
    try:
        source_spec = parse_spec((run / SPEC_FILE).read_text(), file=str(run / SPEC_FILE), base_dir=run)
    except OSError as exc:
        raise t.from_where.error(f"transfer: cannot read the run's spec.yaml: {exc}") from None
    return ckpt["model"], list(source_spec.layers)


def _copy_weights(built: Built, t) -> None:
    state, source_layers = _read_source(t)
    if t.stop > len(source_layers):
        raise t.layers_where.error(
            f"transfer: layers {t.start}:{t.stop} asked for, the run {t.source.name} has "
            f"{len(source_layers)} top-level layers",
            f'use at most "{t.start}:{len(source_layers)}"',
        )
    target = built.model.state_dict()
    copies = []
    for i in t.indices:
        mine, theirs = built.layers[i], source_layers[i]
        where = mine.spec.where
        if theirs.type != mine.spec.type:
            raise where.error(
                f"transfer: this layer is a {mine.spec.type}, the run's layers[{i}] is a {theirs.type}",
                "the transferred layers must be the same as the run's, in the same order",
            )
        prefix = f"{i}."
        own = {k for k in target if k.startswith(prefix)}
        src = {k for k in state if k.startswith(prefix)}
        if own != src:
            missing = sorted(src - own) or sorted(own - src)
            raise where.error(
                f"transfer: {mine.spec.type} here and in the run hold different tensors "
                f"({', '.join(k[len(prefix) :] for k in missing[:4])} in one only)"
            )
        for key in sorted(own):
            have, want = tuple(target[key].shape), tuple(state[key].shape)
            if have != want:
                raise where.error(
                    f"transfer: {key[len(prefix) :]} of this {mine.spec.type} has shape {list(have)}, the run's "
                    f"layers[{i}] has {list(want)}",
                    "the layers up to the joint must be built as in the run (same arguments, same input shape)",
                )
            copies.append((target[key], state[key]))
    with torch.no_grad():
        for dst, src in copies:
            dst.copy_(src)
