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


class StandardizeInputs(nn.Module):
    """:class:`Standardize` for each float input of a network with several inputs (token inputs
    pass unchanged): ``forward(*inputs)`` gives the inputs back, each standardised with its own
    training statistics.

    Args:
        names: the inputs' names, in forward order.
        stats: ``{name: (mean, std)}`` for the inputs that were standardised.
    """

    def __init__(self, names, stats: dict) -> None:
        super().__init__()
        self.names = list(names)
        self.inputs = nn.ModuleDict({n: Standardize(*stats[n]) for n in self.names if n in stats})

    def forward(self, *xs: torch.Tensor) -> tuple:
        return tuple(self.inputs[n](x) if n in self.inputs else x for n, x in zip(self.names, xs))

    def extra_repr(self) -> str:
        return "inputs=" + ", ".join(self.names)


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

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor):
        """The inputs in forward order, or by name (a network with several inputs)."""
        if kwargs:
            args = self._in_order(args, kwargs)
        if isinstance(self.normalize, StandardizeInputs):  # several inputs, each with its statistics
            if len(args) != len(self.normalize.names):
                names = ", ".join(self.normalize.names)
                raise TypeError(f"expected {len(self.normalize.names)} inputs ({names}), got {len(args)}")
            return self.network(*self.normalize(*args))
        # a network with one input; a Graph's further inputs (untrained specs) pass as they come
        return self.network(self.normalize(args[0]), *args[1:])

    def _in_order(self, args: tuple, kwargs: dict) -> tuple:
        names = list(getattr(self.network, "input_names", ()) or ["input"])
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise TypeError(f"unknown input(s) {', '.join(unknown)}; the inputs are {', '.join(names)}")
        if len(args) > len(names):
            raise TypeError(f"expected at most {len(names)} inputs ({', '.join(names)}), got {len(args)}")
        twice = sorted(set(names[: len(args)]) & set(kwargs))
        if twice:
            raise TypeError(f"input(s) {', '.join(twice)} given both in order and by name")
        given = dict(zip(names, args), **kwargs)
        missing = [n for n in names if n not in given]
        if missing:
            raise TypeError(f"missing input(s) {', '.join(missing)}; the inputs are {', '.join(names)}")
        return tuple(given[n] for n in names)


class OneInputTrained(nn.Module):
    """A :class:`TrainedNetwork` of one input with a forward TorchScript can compile (``script``
    takes no variable arguments): the same modules, the same parameter names, the same function."""

    def __init__(self, trained: TrainedNetwork) -> None:
        super().__init__()
        self.normalize = trained.normalize
        self.network = trained.network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalize(x))


def trained_network(
    network: nn.Module, normalization: dict | None, classes=None, example_shape=None, input_names=None
) -> TrainedNetwork:
    """Wrap ``network`` with the ``{"mean", "std"}`` of its training data (None or empty: none).

    For several inputs (``input_names``) the statistics are dicts by input name."""
    norm = normalization or {}
    standardize = None
    if input_names is not None and len(input_names) > 1:
        stats = {n: (norm["mean"][n], norm["std"][n]) for n in (norm.get("mean") or {})}
        standardize = StandardizeInputs(input_names, stats) if stats else None
    elif norm.get("mean") is not None:
        standardize = Standardize(norm["mean"], norm["std"], example_shape)
    ref = next(iter(network.parameters()), None)
    if standardize is not None and ref is not None:
        standardize.to(ref.device)
    return TrainedNetwork(network, standardize, classes)


def statistics_as_lists(normalization: dict) -> dict:
    """``{"mean", "std"}`` as plain lists (dicts of lists by input name for several inputs), for
    metadata and reports."""
    return {
        k: {n: t.flatten().tolist() for n, t in v.items()} if isinstance(v, dict) else v.flatten().tolist()
        for k, v in normalization.items()
        if k in ("mean", "std")
    }
