"""Parameter-free tensor operations a spec can name: Permute, Transpose, Reshape, Chunk, Select,
Narrow, Mean and torchvision's StochasticDepth.

Dimensions count on the batched tensor, as in torch (0 is the batch, negatives from the end); the
builder checks them against the incoming shape, so these modules only do the operation.
"""

from __future__ import annotations

import torch
from torch import nn


class Permute(nn.Module):
    """``x.permute(dims)``; ``dims[0]`` must stay 0 (the batch)."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={list(self.dims)}"


class Transpose(nn.Module):
    """``x.transpose(dim0, dim1)``."""

    def __init__(self, dim0: int, dim1: int) -> None:
        super().__init__()
        self.dim0, self.dim1 = dim0, dim1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.dim0, self.dim1)

    def extra_repr(self) -> str:
        return f"dim0={self.dim0}, dim1={self.dim1}"


class Reshape(nn.Module):
    """Reshape each example: ``x.reshape(N, *shape)`` (one ``-1`` allowed)."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}"


class Chunk(nn.Module):
    """``torch.chunk(x, chunks, dim)[index]``."""

    def __init__(self, chunks: int, dim: int = 1, index: int = 0) -> None:
        super().__init__()
        self.chunks, self.dim, self.index = chunks, dim, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.chunk(x, self.chunks, self.dim)[self.index]

    def extra_repr(self) -> str:
        return f"chunks={self.chunks}, dim={self.dim}, index={self.index}"


class Select(nn.Module):
    """``x.select(dim, index)``: drops ``dim`` (ViT's class token: ``Select: {dim: 1, index: 0}``)."""

    def __init__(self, dim: int, index: int) -> None:
        super().__init__()
        self.dim, self.index = dim, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.select(self.dim, self.index)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, index={self.index}"


class Narrow(nn.Module):
    """``x.narrow(dim, start, length)``."""

    def __init__(self, dim: int, start: int, length: int) -> None:
        super().__init__()
        self.dim, self.start, self.length = dim, start, length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.narrow(self.dim, self.start, self.length)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, start={self.start}, length={self.length}"


class Mean(nn.Module):
    """``x.mean(dim, keepdim)``; ``dim`` one dimension or a list."""

    def __init__(self, dim: int | list[int], keepdim: bool = False) -> None:
        super().__init__()
        self.dim = tuple(dim) if isinstance(dim, (list, tuple)) else dim
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=self.dim, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        dim = list(self.dim) if isinstance(self.dim, tuple) else self.dim
        return f"dim={dim}, keepdim={self.keepdim}"


class StochasticDepth(nn.Module):
    """torchvision's stochastic depth: in training, zero the whole input per example (``row``) or
    for the whole batch (``batch``) with probability ``p``, scaling what survives by ``1 / (1 - p)``;
    the identity in eval mode.
    """

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], found {p}")
        if mode not in ("row", "batch"):
            raise ValueError(f"mode must be 'row' or 'batch', found {mode!r}")
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.dim() - 1) if self.mode == "row" else [1] * x.dim()
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}"
