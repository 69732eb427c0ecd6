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
    per channel. Statistics in the layouts older runs stored (taken in the data file's layout
    rather than the input's) are reshaped to give the same values (:func:`_fit`).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, example_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32)
        std = torch.as_tensor(std, dtype=torch.float32)
        mean, std = _fit(mean, example_shape), _fit(std, example_shape)
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"shape={list(self.mean.shape)}"


def _fit(stat: torch.Tensor, example_shape) -> torch.Tensor:
    """Statistics as older runs stored them, shaped for the network's input: one value per element
    (``[C * L]``) viewed as the example, or per channel of images (``[C, 1, 1]``) spread over a
    flat input, channel by channel, as the images were flattened."""
    if not example_shape:
        return stat
    n = math.prod(example_shape)
    if stat.dim() == 1 and len(example_shape) > 1 and stat.numel() == n:
        return stat.reshape(example_shape)
    if len(example_shape) == 1 and stat.dim() > 1 and n % stat.numel() == 0:
        return stat.flatten().repeat_interleave(n // stat.numel())
    return stat


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
