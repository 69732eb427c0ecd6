"""A trained network as one module that takes raw inputs: ``Standardize`` (the training data's
mean and std, as buffers) in front of the network the spec builds.

Training normalises its data once, up front; everything that uses a finished run (``nncli.load``
of a run folder, predict, evaluate, attack and every export) goes through :class:`TrainedNetwork`
instead, so the statistics travel inside the model and its exported files rather than beside them.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Standardize(nn.Module):
    """``(x - mean) / std`` with fixed statistics (buffers ``mean`` and ``std``).

    The statistics are shaped to broadcast against one example: ``[F]`` per feature, ``[C, 1, ...]``
    per channel. Statistics with one value per element of the example (``[C * L]``, as older runs
    stored them for signals) are viewed in the example's shape.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, example_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32)
        std = torch.as_tensor(std, dtype=torch.float32)
        if example_shape and mean.dim() == 1 and len(example_shape) > 1 and mean.numel() == math.prod(example_shape):
            mean, std = mean.reshape(example_shape), std.reshape(example_shape)
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"shape={list(self.mean.shape)}"


class TrainedNetwork(nn.Module):
    """A run's network behind its input preprocessing: ``network(normalize(x))``.

    Attributes:
        normalize: :class:`Standardize`, or ``nn.Identity`` where the run's inputs were not
            normalised (token ids, ``normalize: false``).
        network: the module the spec builds (parameter names as in the run's checkpoints, under
            ``network.``).
        classes: the class names the run was trained with (label ``i`` is ``classes[i]``), or None.
    """

    def __init__(self, network: nn.Module, normalize: nn.Module | None = None, classes: list | None = None) -> None:
        super().__init__()
        self.normalize = normalize if normalize is not None else nn.Identity()
        self.network = network
        self.classes = list(classes) if classes else None

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        # a Graph network takes its further inputs as they come (the first is normalised)
        return self.network(self.normalize(x), *rest)


def trained_network(network: nn.Module, normalization: dict | None, classes=None, example_shape=None) -> TrainedNetwork:
    """Wrap ``network`` with the ``{"mean", "std"}`` of its training data (None or empty: none)."""
    norm = normalization or {}
    standardize = None
    if norm.get("mean") is not None:
        standardize = Standardize(norm["mean"], norm["std"], example_shape)
        ref = next(iter(network.parameters()), None)
        if ref is not None:
            standardize.to(ref.device)
    return TrainedNetwork(network, standardize, classes)
