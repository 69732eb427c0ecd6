"""Custom layers for ``custom-swish.yaml``: an example of ``Custom: {target: "file.py:Class"}``."""

import torch
from torch import nn


class Swish(nn.Module):
    """Swish / SiLU activation (Ramachandran, Zoph & Le, 2017): ``x * sigmoid(beta * x)``.

    With ``beta = 1`` it equals ``torch.nn.SiLU``; as ``beta`` grows it approaches ReLU.

    Args:
        beta: slope inside the sigmoid; a fixed float, not a learned parameter.

    Shape:
        - Input: any shape. Output: the same shape.

    Example:
        >>> Swish(beta=1.0)(torch.zeros(3))
        tensor([0., 0., 0.])
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"
