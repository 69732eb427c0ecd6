"""A network with several float inputs, or several outputs, seen by the attacks as a classifier of
one tensor.

FGSM and PGD perturb one input tensor inside an L-infinity ball. A network with several float
inputs (a siamese net's two images) is attacked on all of them at once, under one budget: each
example's inputs are flattened and joined into one vector, and :class:`JoinedInputs` splits the
vector back before calling the network. The L-infinity ball of the joined vector is exactly the
product of the balls of the inputs, so nothing about the attacks changes. A network with several
outputs is attacked on its first output (the one ``train`` trains against the labels).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nncli.data.multi import Inputs, first_output


class JoinedInputs(nn.Module):
    """``model`` taking one tensor per example: its inputs flattened and joined (several inputs),
    or its one input as it is; the output is the model's first.

    Args:
        model: the raw-input network (:class:`~nncli.modules.TrainedNetwork`).
        names, shapes: the inputs' names and per-example shapes, in forward order.
    """

    def __init__(self, model: nn.Module, names, shapes) -> None:
        super().__init__()
        self.model = model
        self.names, self.shapes = list(names), [tuple(s) for s in shapes]
        self.sizes = [math.prod(s) for s in self.shapes]

    @property
    def joined(self) -> bool:
        return len(self.names) > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.joined:
            return first_output(self.model(x))
        parts = torch.split(x, self.sizes, dim=1)
        return first_output(self.model(*(p.reshape(len(x), *s) for p, s in zip(parts, self.shapes))))

    def join(self, x) -> torch.Tensor:
        """:class:`~nncli.data.multi.Inputs` as one ``(N, sum of sizes)`` tensor (one input: as is)."""
        if isinstance(x, Inputs):
            return torch.cat([t.flatten(1) for t in x.tensors], dim=1)
        return x

    def split(self, flat: torch.Tensor) -> dict:
        """Joined ``(..., N, D)`` values back as ``{name: (..., N, *shape)}`` per input."""
        lead = flat.shape[:-1]
        parts = torch.split(flat, self.sizes, dim=-1)
        return {n: p.reshape(*lead, *s) for n, p, s in zip(self.names, parts, self.shapes)}

    def element_std(self) -> torch.Tensor | None:
        """The training std of every element of a joined example (1 for an input kept raw), or
        for one input its own std; None when nothing was standardised."""
        normalize = self.model.normalize
        if not self.joined:
            std = getattr(normalize, "std", None)
            return None if std is None else std.detach()
        stats = getattr(normalize, "inputs", None)
        if stats is None or not len(stats):
            return None
        pieces = []
        for name, shape in zip(self.names, self.shapes):
            ones = torch.ones(shape)
            pieces.append((ones * stats[name].std.detach().cpu() if name in stats else ones).flatten())
        return torch.cat(pieces)
