"""Weights for comparing a zoo spec with its hand-written reference (``tests/build/test_zoo_*.py``).

:func:`make_every_layer_matter` sets a reference's weights so that no layer is close to the
identity or to zero (He-normal convolutions and linears, random LayerNorm affines and layer scales,
batch-norm statistics calibrated on the input); :func:`copy_weights` copies them into nncli's
build by position, in the order the data meets them (a reference's ``flow_order()`` where its
``state_dict`` order differs from the spec's).
"""

from __future__ import annotations

import torch
from torch import nn
from zoo_models_seq import flow_order


def copy_weights(hand: nn.Module, built: nn.Module) -> None:
    """The reference's parameters and buffers into nncli's model, by position in data order."""
    src, dst = hand.state_dict(), built.state_dict()
    keys = flow_order(hand)
    assert len(keys) == len(dst), (len(keys), len(dst))
    for s, d in zip(keys, dst):
        assert src[s].shape == dst[d].shape, f"{s} {tuple(src[s].shape)} vs {d} {tuple(dst[d].shape)}"
        dst[d] = src[s]
    built.load_state_dict(dst)


def make_every_layer_matter(model: nn.Module, x: torch.Tensor, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.1, generator=gen)
        if isinstance(m, nn.LayerNorm):
            nn.init.normal_(m.weight, 1.0, 0.2, generator=gen)
            nn.init.normal_(m.bias, 0.0, 0.2, generator=gen)
    for name, p in model.named_parameters():
        if name.endswith("layer_scale"):
            nn.init.uniform_(p, 0.2, 0.6, generator=gen)
    calibrate_batch_norms(model, x)


def calibrate_batch_norms(model: nn.Module, x: torch.Tensor) -> None:
    """Batch-norm statistics of ``x`` itself (one train-mode pass with momentum 1), so that every
    norm layer is a real normalisation rather than the identity its fresh statistics give; the
    model is left in eval mode, each norm's momentum as it was."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
