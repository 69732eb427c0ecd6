"""The lecture's Heaviside threshold unit, ``Step``: ``1[z >= 0]`` with a zero gradient."""

from __future__ import annotations

import torch
from torch import nn


class _HeavisideFn(torch.autograd.Function):
    """1[z >= 0] with a zero gradient everywhere (its true derivative almost everywhere)."""

    @staticmethod
    def forward(ctx, z):  # (N, *) -> (N, *)
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        # The step is flat on both sides of 0: the lecture's reason it cannot be trained by gradient descent.
        return torch.zeros_like(grad_out)


class Step(nn.Module):
    """The Heaviside threshold unit of the lecture's perceptron: ``1[z >= 0]``, gradient zero.

    Shape:
        input (N, *), output (N, *), same dtype.
    """

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _HeavisideFn.apply(z)
