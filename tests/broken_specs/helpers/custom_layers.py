"""Custom-layer targets for the broken-spec corpus (tests/broken_specs/*.yaml)."""

from torch import nn


class Gate(nn.Module):
    """A valid Custom layer: x * sigmoid(x). The misspelt target `Gat` should suggest it."""

    def forward(self, x):
        return x * x.sigmoid()


class Plain:
    """A class that is not an nn.Module."""


def helper(x):
    """A function, not a class."""
    return x


class TwoOutputs(nn.Module):
    """Returns a tuple, like nn.LSTM: not a layer of a Sequential spec."""

    def forward(self, x):
        return x, x
