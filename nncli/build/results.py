"""What a build gives: the network and a description of every layer (:class:`Built`, :class:`LayerInfo`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from nncli.spec import LayerSpec, Spec


@dataclass
class LayerInfo:
    """What the builder knows about one layer (top level or nested).

    ``in_shape``/``out_shape`` are per example (no batch dim). ``children`` holds a Residual's
    body then shortcut layers (``role`` "body"/"shortcut"), a Repeat's copies (``role``
    "copy 1", ...), a Parallel's branches in order (``role`` "branch 0", "branch 1", ..., as
    the parameter names ``branches.0.*``; an identity branch has no children, ``args["branches"]``
    is the count) or a Block's layers (``role`` "block").
    """

    index: int  # position among its siblings
    path: str  # "layers[3]" or "layers[3].Residual.body[0]"
    name: str  # the spec's `name`, else "<type lower>_<index>"
    type: str  # "Conv2d", "Residual", "Repeat", or a Custom layer's class name
    args: dict  # resolved constructor kwargs, inferred ones included
    in_shape: tuple
    out_shape: tuple
    params: int
    trainable: int
    buffers: int
    module: nn.Module
    spec: LayerSpec = field(repr=False)
    children: list[LayerInfo] = field(default_factory=list)
    role: str | None = None
    inferred: tuple = ()  # names of the args nncli inferred
    target: str | None = None  # a Custom layer's target
    fqn: str = ""  # the module's name in ``model.named_modules()``: "3", "3.body.0", "4.1.0"
    in_dtype: str = "float32"  # "int64" for token ids
    out_dtype: str = "float32"
    shape_method: str = ""  # how out_shape was learnt: "rule", "cpu_zeros", "meta" or "device"
    # Named tensors (a Graph spec): the names it reads (from, memory, Merge operands; empty = the
    # previous output), the element whose module it applies again (share), and tied parameters.
    reads: tuple = ()
    shared: str | None = None
    tied: dict = field(default_factory=dict)  # param name -> the layer whose parameter it is

    def walk(self):
        """This layer and every nested one, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Built:
    """A built network and its per-layer description."""

    spec: Spec
    model: nn.Sequential
    layers: list[LayerInfo]
    input_shape: tuple
    output_shape: tuple
    device: torch.device
    input_dtype: str = "float32"  # "int64"/"int32": token ids in [0, input_high)
    input_high: int | None = None
    # Every input and output of a Graph spec, in forward order: (name, shape, dtype, high) and
    # (name, shape, dtype). A chain spec has one of each, named input and output.
    inputs: tuple = ()
    outputs: tuple = ()

    @property
    def graph(self) -> bool:
        """Whether the model is a Graph: forward takes several inputs or returns several outputs."""
        return bool(self.inputs)

    def walk(self):
        """Every layer, nested ones included, depth first."""
        for layer in self.layers:
            yield from layer.walk()
