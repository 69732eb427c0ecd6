"""Modules for specs with named tensors: ``Graph`` (several inputs and outputs), the graph
blocks inside it, and ``Merge``.

A graph runs its elements in order, each reading the previous element's output or a named
tensor, and writing its output under its name into a dict of named tensors. A shared module is
registered once (where it is first defined) and called again by later steps, so it has one set
of parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nncli.modules.blocks import MERGES, merge

GRAPH_MERGES = MERGES + ("sub",)


@dataclass(frozen=True)
class Step:
    """One element of a graph.

    ``source`` is the tensor it reads (None: the previous output); ``extra`` the further tensors
    passed after it (a decoder's memory, a Merge's other operands); ``env``: the module is a graph
    block and takes the named tensors too; ``name``: where its output is stored.
    """

    module: nn.Module
    source: str | None = None
    extra: tuple[str, ...] = ()
    env: bool = False
    name: str | None = None


class _Steps(nn.Module):
    """Runs steps over a dict of named tensors."""

    def __init__(self, modules: dict[str, nn.Module], steps: list[Step]) -> None:
        super().__init__()
        for key, module in modules.items():
            self.add_module(key, module)
        self._graph_steps = list(steps)  # shared modules appear here again, not as children

    def run(self, x: torch.Tensor, env: dict) -> torch.Tensor:
        for step in self._graph_steps:
            inp = x if step.source is None else env[step.source]
            if step.env:
                x = step.module(inp, env)
            else:
                x = step.module(inp, *[env[n] for n in step.extra])
            if step.name is not None:
                env[step.name] = x
        return x


class Graph(_Steps):
    """A network with named inputs and outputs.

    ``forward`` takes the inputs in order, or by keyword; it returns the one output, or a tuple of
    the outputs in ``outputs``' order.
    """

    def __init__(self, modules: dict[str, nn.Module], steps: list[Step], inputs: list, outputs: list[str]) -> None:
        super().__init__(modules, steps)
        # inputs: (name, per-example shape, dtype, high) each, so tools can make batches for it
        self.input_table = tuple((str(n), tuple(s), str(d), h) for n, s, d, h in inputs)
        self.input_names = tuple(row[0] for row in self.input_table)
        self.output_names = tuple(outputs)

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor):
        if len(args) > len(self.input_names):
            raise TypeError(f"expected at most {len(self.input_names)} inputs, got {len(args)}")
        env = dict(zip(self.input_names, args))
        env.update(kwargs)
        missing = [n for n in self.input_names if n not in env]
        if missing:
            raise TypeError(f"missing input(s) {', '.join(missing)}; the inputs are {', '.join(self.input_names)}")
        last = self.run(env[self.input_names[0]], env)
        if not self.output_names:
            return last
        outs = tuple(env[n] for n in self.output_names)
        return outs[0] if len(outs) == 1 else outs

    def extra_repr(self) -> str:
        return f"inputs={list(self.input_names)}, outputs={list(self.output_names) or ['last']}"


class GraphBlock(_Steps):
    """A Block whose elements read named tensors: its own names stay inside it."""

    def forward(self, x: torch.Tensor, env: dict | None = None) -> torch.Tensor:
        return self.run(x, dict(env or {}))


class GraphRepeat(nn.Module):
    """Copies of a graph block in sequence; the names in ``accumulate`` are summed over the
    copies and written to the enclosing tensors (WaveNet's skip connections)."""

    def __init__(self, copies: list[GraphBlock], accumulate: tuple[str, ...] = ()) -> None:
        super().__init__()
        for i, copy in enumerate(copies):
            self.add_module(str(i), copy)
        self.accumulate = tuple(accumulate)

    def forward(self, x: torch.Tensor, env: dict | None = None) -> torch.Tensor:
        env = env if env is not None else {}
        totals: dict[str, torch.Tensor] = {}
        for copy in self.children():
            local = dict(env)
            x = copy.run(x, local)
            for name in self.accumulate:
                totals[name] = local[name] if name not in totals else totals[name] + local[name]
        env.update(totals)
        return x


class Merge(nn.Module):
    """Named tensors joined into one: ``concat`` along ``dim``, ``add``/``mul``/``mean``/``max``
    broadcasting, or ``sub`` (a - b)."""

    def __init__(self, mode: str = "concat", dim: int = 1) -> None:
        super().__init__()
        if mode not in GRAPH_MERGES:
            raise ValueError(f"unknown merge {mode!r}: expected one of {', '.join(GRAPH_MERGES)}")
        self.mode = mode
        self.dim = dim

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        if self.mode == "sub":
            return tensors[0] - tensors[1]
        return merge(list(tensors), self.mode, self.dim)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}" + (f", dim={self.dim}" if self.mode == "concat" else "")
