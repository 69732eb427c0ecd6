"""The blocks that hold layer lists: ``Residual``, ``Repeat``, ``Parallel`` and ``Block``.

Each takes one tensor and returns one, so a spec stays an ``nn.Sequential`` with a graph inside
some of its elements. Parameter names follow the spec's order: ``body.*`` before ``shortcut.*``,
``branches.0.*`` before ``branches.1.*``.
"""

from __future__ import annotations

import torch
from torch import nn

MERGES = ("concat", "add", "mul", "mean", "max")


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


class Block(nn.Sequential):
    """A named group of layers, framed as one unit in diagrams and reports."""


def merge(outputs: list[torch.Tensor], how: str, dim: int = 1) -> torch.Tensor:
    """Join branch outputs: ``concat`` along ``dim``; ``add``/``mul``/``mean``/``max`` broadcast.

    A plain function of tensors: it runs the same on meta tensors (shape inference) and real ones.
    """
    if how == "concat":
        return torch.cat(outputs, dim=dim)
    out = outputs[0]
    for y in outputs[1:]:
        if how in ("add", "mean"):
            out = out + y
        elif how == "mul":
            out = out * y
        elif how == "max":
            out = torch.maximum(out, y)
        else:
            raise ValueError(f"unknown merge {how!r}: expected one of {', '.join(MERGES)}")
    return out / len(outputs) if how == "mean" else out


class Parallel(nn.Module):
    """Branches that all take the same input, their outputs merged.

    Args:
        branches: one module per branch (an empty ``nn.Sequential`` is the identity).
        merge: ``concat`` (along ``dim``), ``add``, ``mul``, ``mean`` or ``max`` (broadcasting:
            the squeeze-excitation gate ``[N, C, H, W] * [N, C, 1, 1]``).
        dim: the concat dimension on the batched tensor; never 0 (the batch).
    """

    def __init__(self, branches: list[nn.Module], merge: str = "concat", dim: int = 1) -> None:
        super().__init__()
        if merge not in MERGES:
            raise ValueError(f"unknown merge {merge!r}: expected one of {', '.join(MERGES)}")
        if dim == 0:
            raise ValueError("dim 0 is the batch: branches cannot be joined along it")
        self.branches = nn.ModuleList(branches)
        self.merge = merge
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return merge([branch(x) for branch in self.branches], self.merge, self.dim)

    def extra_repr(self) -> str:
        return f"merge={self.merge!r}" + (f", dim={self.dim}" if self.merge == "concat" else "")
