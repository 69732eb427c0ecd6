"""Learned tensors of a sequence model: ``ClassToken`` and ``PositionEmbedding`` (ViT's).

Parameter ``weight`` in both, laid out as torchvision's ViT ``class_token`` ([1, 1, D], zeros)
and ``pos_embedding`` ([1, *example shape], normal with std 0.02), so weights copy across by shape.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassToken(nn.Module):
    """Prepend one learned vector to a sequence: ``[N, L, D] -> [N, L + 1, D]``."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.weight.expand(x.shape[0], -1, -1), x], dim=1)

    def extra_repr(self) -> str:
        return f"embed_dim={self.weight.shape[-1]}"


class PositionEmbedding(nn.Module):
    """Add a learned tensor of the example's shape: ``x + weight``, ``weight`` ``[1, *shape]``."""

    def __init__(self, example_shape: list[int]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1, *example_shape))
        with torch.no_grad():
            self.weight.normal_(0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight

    def extra_repr(self) -> str:
        return f"example_shape={list(self.weight.shape[1:])}"
