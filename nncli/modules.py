"""nncli's own modules: the pieces a spec names that torch.nn does not have.

Kept tiny and dependency-free so saved models only need nncli importable to load.
"""

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


class Residual(nn.Module):
    """A skip connection: ``body(x) + shortcut(x)``; the shortcut defaults to the identity.

    Args:
        body: the residual branch.
        shortcut: the skip branch; ``nn.Identity()`` for a plain skip, or a projection
            (e.g. a 1x1 Conv2d with stride plus BatchNorm2d) when the body changes the shape.
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class Repeat(nn.Sequential):
    """``times`` independent copies of a block in sequence; each child is one copy (an nn.Sequential)."""
