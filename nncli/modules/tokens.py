"""Learned tensors of a sequence model: ``ClassToken`` and ``PositionEmbedding`` (ViT's, BERT's).

Parameter ``weight`` in both, laid out as torchvision's ViT ``class_token`` ([1, 1, D], zeros)
and ``pos_embedding`` ([1, *example shape], normal with std 0.02), or with ``max_length`` as a
position table ``[max_length, D]`` (BERT's ``position_embeddings``), so weights copy across by shape.
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
    """Add learned positions.

    Without ``max_length``: a tensor of the example's shape, ``x + weight`` with ``weight``
    ``[1, *shape]`` (ViT's ``pos_embedding``). With ``max_length``: a table ``[max_length, D]``
    whose first ``L`` rows are added to a ``[N, L, D]`` sequence (BERT's and GPT-2's position
    embeddings), so one model takes any length up to ``max_length``.
    """

    def __init__(self, example_shape: list[int], max_length: int | None = None) -> None:
        super().__init__()
        if max_length is None:
            self.weight = nn.Parameter(torch.empty(1, *example_shape))
        else:
            if len(example_shape) != 2:
                raise ValueError(
                    f"max_length needs sequences [N, L, D], found [N, {', '.join(map(str, example_shape))}]"
                )
            if example_shape[0] > max_length:
                raise ValueError(f"the sequence has {example_shape[0]} positions, more than max_length={max_length}")
            self.weight = nn.Parameter(torch.empty(max_length, example_shape[-1]))
        self.max_length = max_length
        with torch.no_grad():
            self.weight.normal_(0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_length is None:
            return x + self.weight
        if x.shape[1] > self.max_length:
            raise ValueError(f"the sequence has {x.shape[1]} positions, more than max_length={self.max_length}")
        return x + self.weight[: x.shape[1]]

    def extra_repr(self) -> str:
        if self.max_length is None:
            return f"example_shape={list(self.weight.shape[1:])}"
        return f"max_length={self.max_length}, embed_dim={self.weight.shape[-1]}"
