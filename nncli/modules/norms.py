"""Per-channel layers of modern convnets: ``LayerNorm2d`` and ``LayerScale`` (ConvNeXt's).

``LayerNorm2d`` is torchvision's ConvNeXt ``LayerNorm2d``: a LayerNorm over the channel dimension
of ``[N, C, ...]`` (parameters ``weight`` and ``bias`` of shape ``[C]``), so its weights copy
across by name and shape. ``LayerScale`` is a learned scale per channel of one dimension.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over dim 1 of ``[N, C, ...]``: channels moved last, normalised, moved back."""

    def __init__(self, num_channels: int, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True):
        super().__init__(num_channels, eps=eps, elementwise_affine=elementwise_affine, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] != self.normalized_shape[0]:
            raise ValueError(
                f"LayerNorm2d({self.normalized_shape[0]}) takes [N, {self.normalized_shape[0]}, ...], "
                f"found {list(x.shape)}"
            )
        # explicit, non-negative permutations: ONNX's exporter mistranslates movedim(1, -1)
        n = x.dim()
        x = x.permute(0, *range(2, n), 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, n - 1, *range(1, n - 1))


class LayerScale(nn.Module):
    """``x * weight``: a learned scale per channel of dimension ``dim`` (counted on the batched tensor).

    ``weight`` is shaped to broadcast against the rest of the example: ``[C, 1, 1]`` for
    ``[N, C, H, W]`` and ``dim: 1`` (torchvision ConvNeXt's ``layer_scale``), ``[D]`` for
    ``[N, L, D]`` and ``dim: -1``. It starts at ``init`` everywhere.
    """

    def __init__(self, example_shape: list[int], init: float = 1e-6, dim: int = 1) -> None:
        super().__init__()
        ndim = len(example_shape) + 1
        if isinstance(dim, bool) or not isinstance(dim, int) or not -ndim <= dim < ndim:
            raise ValueError(f"dim={dim!r} is out of range for [N, {', '.join(map(str, example_shape))}]")
        if dim % ndim == 0:
            raise ValueError("dim 0 is the batch: a scale per example is not a layer's parameter")
        if isinstance(init, bool) or not isinstance(init, (int, float)):
            raise ValueError(f"init must be a number, found {init!r}")
        axis = dim % ndim - 1  # in the example, without the batch
        shape = (example_shape[axis], *(1,) * (len(example_shape) - axis - 1))
        self.dim = dim
        self.weight = nn.Parameter(torch.full(shape, float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight

    def extra_repr(self) -> str:
        return f"shape={list(self.weight.shape)}, dim={self.dim}"
