"""Batches for every input of a Graph spec (several inputs, each with its own shape and dtype).

An input is described as :attr:`nncli.build.Built.inputs` holds it: ``(name, shape, dtype, high)``.
"""

from __future__ import annotations

import torch

from nncli.spec import Spec


def input_table(spec: Spec) -> tuple[tuple, ...]:
    """``(name, shape, dtype, high)`` of every input of ``spec``, in forward order."""
    return tuple((i.name, tuple(i.shape), i.dtype, i.high) for i in spec.input_specs)


def random_inputs(
    inputs: tuple,
    batch: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, ...]:
    """One random batch per input: token ids in ``[0, high)`` for integer inputs, else normal
    values (in ``dtype``, default the input's own)."""
    out = []
    for _, shape, kind, high in inputs:
        size = (batch, *shape)
        if kind.startswith("int"):
            out.append(torch.randint(0, high, size, generator=generator, dtype=getattr(torch, kind)).to(device))
        else:
            out.append(torch.randn(size, generator=generator, dtype=dtype or getattr(torch, kind)).to(device))
    return tuple(out)


def empty_inputs(inputs: tuple, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Inputs whose values never matter (shapes and counts): zeros for ids, empty floats."""
    return tuple(
        torch.zeros((batch, *shape), dtype=getattr(torch, kind), device=device)
        if kind.startswith("int")
        else torch.empty((batch, *shape), device=device)
        for _, shape, kind, _ in inputs
    )
