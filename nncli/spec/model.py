"""The spec as frozen dataclasses: validated once at the boundary, trusted inside.

Everything here is plain Python (no torch): ``nncli --help`` and ``nncli check``'s parsing stay
fast. Layer *names* and *arguments* are checked against torch later, by the builder, which uses the
``where`` recorded on every object to point at the file, line and spec path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from nncli.spec.source import Document, Where

# torch.nn.init function names without the trailing underscore, plus the lecture's lecun_normal
# (N(0, 1/fan_in)). Static on purpose: this module must not import torch to list them.
INIT_SCHEMES = (
    "normal",
    "uniform",
    "constant",
    "ones",
    "zeros",
    "eye",
    "dirac",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "trunc_normal",
    "orthogonal",
    "sparse",
    "lecun_normal",
)

# Layer types nncli itself provides; every other name is looked up in torch.nn by the builder.
NNCLI_LAYERS = (
    "Residual",
    "Repeat",
    "Parallel",
    "Block",
    "Custom",
    "Step",
    "Identity",
    "Permute",
    "Transpose",
    "Reshape",
    "Chunk",
    "Select",
    "Narrow",
    "Mean",
    "StochasticDepth",
    "ClassToken",
    "PositionEmbedding",
    "SelfAttention",
    "LayerNorm2d",
    "LayerScale",
    "Merge",
    "CrossAttention",
)
# The blocks: layers holding layer lists. They take the reserved keys name, init and vars.
BLOCKS = ("Residual", "Repeat", "Parallel", "Block")
MERGES = ("concat", "add", "mul", "mean", "max")
GRAPH_MERGES = MERGES + ("sub",)  # Merge's modes: a - b joins two tensors
# Input dtypes a spec may declare; the integer ones are token ids and need `high`.
FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int64", "int32")


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class InitScheme:
    """One initialisation: ``kaiming_normal`` with ``{"nonlinearity": "relu"}``."""

    scheme: str  # a name from INIT_SCHEMES
    kwargs: Mapping[str, Any]  # keyword args for the torch.nn.init function
    where: Where

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", _frozen(self.kwargs))


@dataclass(frozen=True)
class LayerSpec:
    """One layer: a torch.nn class (or nncli's Step) with its keyword arguments."""

    type: str  # the class name as written: "Conv2d", "ReLU", "Step"
    args: Mapping[str, Any]  # keyword args, YAML values as they came
    where: Where  # the layer item in the file (spec path "layers[3]")
    arg_where: Mapping[str, Where] = field(default_factory=dict)  # per argument
    name: str | None = None  # reserved `name`: labels the layer in reports and diagrams
    init: Mapping[str, InitScheme] | None = None  # reserved `init`: param name -> scheme
    # A block's reserved `vars`: name -> number or expression text, evaluated in order when the
    # block is entered (``in_channels`` there is the block's input); None on other layers.
    vars: Mapping[str, Any] | None = None
    var_where: Mapping[str, Where] = field(default_factory=dict)
    # Named tensors (nncli.spec.graph): `from` (the tensor read; None = the previous output),
    # `share` (apply that element's module again), `tie` (param -> layer name), `memory` (the
    # second tensor of CrossAttention / TransformerDecoderLayer). graph_where locates each key.
    source: str | None = None
    share: str | None = None
    tie: Mapping[str, str] | None = None
    memory: str | None = None
    graph_where: Mapping[str, Where] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Frozen all the way down: the mappings are read-only views, so no tool can change a
        # spec another tool reads later.
        object.__setattr__(self, "args", _frozen(self.args))
        object.__setattr__(self, "arg_where", _frozen(self.arg_where))
        object.__setattr__(self, "var_where", _frozen(self.var_where))
        if self.init is not None:
            object.__setattr__(self, "init", _frozen(self.init))
        if self.vars is not None:
            object.__setattr__(self, "vars", _frozen(self.vars))

    @property
    def path(self) -> str:
        return self.where.spec_path


@dataclass(frozen=True)
class ResidualSpec(LayerSpec):
    """``body(x) + shortcut(x)``; an empty shortcut is the identity (a plain skip connection)."""

    body: tuple[LayerSpec, ...] = ()
    shortcut: tuple[LayerSpec, ...] = ()


@dataclass(frozen=True)
class RepeatSpec(LayerSpec):
    """``times`` fresh copies of ``layers`` in sequence (no shared weights)."""

    times: int | str = 1  # an int, or an expression's text evaluated by the builder
    layers: tuple[LayerSpec, ...] = ()
    # Names defined inside each copy that are summed over the copies and visible after the
    # Repeat under the same name (WaveNet's skip connections).
    accumulate: tuple[str, ...] = ()
    # `index`: a var bound to the copy's number (0 .. times-1); `each`: one mapping of vars per
    # copy (times is then its length), evaluated when the copy is entered; each_where locates them.
    index: str | None = None
    each: tuple[Mapping[str, Any], ...] | None = None
    each_where: tuple[Mapping[str, Where], ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class ParallelSpec(LayerSpec):
    """Every branch gets the same input; their outputs are merged (concat, add, mul, mean, max).

    An empty branch is the identity.
    """

    branches: tuple[tuple[LayerSpec, ...], ...] = ()
    merge: str = "concat"  # one of MERGES
    dim: int = 1  # concat dimension on the batched tensor; never 0


@dataclass(frozen=True)
class BlockSpec(LayerSpec):
    """A named, framed group of layers (built as one ``nn.Sequential``)."""

    layers: tuple[LayerSpec, ...] = ()
    # A use of a `define:` template: its name, and the params given at the use (their values
    # are evaluated in the caller's scope; the defaults in the template's own).
    template: str | None = None
    caller: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MergeSpec(LayerSpec):
    """``Merge``: named tensors joined into one (``mode`` as Parallel's merge, plus ``sub``)."""

    sources: tuple[str, ...] = ()
    merge: str = "concat"  # one of GRAPH_MERGES
    dim: int = 1


@dataclass(frozen=True)
class InputSpec:
    """One named input of ``inputs:`` (``input:`` is the one input named ``input``)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    high: int | None = None
    where: Where | None = None

    @property
    def integer(self) -> bool:
        return self.dtype in INT_DTYPES


@dataclass(frozen=True)
class CustomSpec(LayerSpec):
    """A user's own nn.Module: ``file.py:Class`` (relative to the spec) or ``package.module:Class``."""

    target: str = ""
    base_dir: Path | None = None  # the spec's folder, against which a file target is resolved


@dataclass(frozen=True)
class Spec:
    """A whole validated spec: the public spec contract (documented in docs/spec.md)."""

    input: tuple[int, ...]  # the shape of ONE example, no batch dimension
    layers: tuple[LayerSpec, ...]
    name: str = "network"
    input_dtype: str = "float32"  # one of FLOAT_DTYPES or INT_DTYPES
    input_high: int | None = None  # integer inputs are token ids in [0, high)
    # Top-level `vars`: name -> number or expression text (a plain mapping in the YAML data, so
    # an override `vars.width=128` is an ordinary spec path).
    vars: Mapping[str, Any] | None = None
    var_where: Mapping[str, Where] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.vars is not None:
            object.__setattr__(self, "vars", _frozen(self.vars))
        object.__setattr__(self, "var_where", _frozen(self.var_where))

    init: Mapping[str, InitScheme] | None = None  # default for every affine layer
    data: Mapping[str, Any] | None = None  # raw `data:` section, validated by nncli.data
    train: Mapping[str, Any] | None = None  # raw `train:` section, validated by nncli.train
    transfer: Any = None  # a nncli.spec.transfer.TransferSpec: weights taken from a finished run
    path: Path | None = None  # the file it came from, if any
    document: Document | None = field(default=None, repr=False, compare=False)
    # `inputs:` in forward order (empty for a spec written with `input:`) and `outputs:`.
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[str, ...] = ()

    @property
    def graph(self) -> bool:
        """Whether the spec uses named tensors (built as a Graph, not an nn.Sequential)."""
        from nncli.spec.graph import uses_graph

        return uses_graph(self)

    @property
    def input_specs(self) -> tuple[InputSpec, ...]:
        """Every input, in forward order (one named ``input`` for a spec written with ``input:``)."""
        return self.inputs or (InputSpec("input", tuple(self.input), self.input_dtype, self.input_high),)

    def where(self, path: tuple, *, key: bool = False) -> Where:
        """The location of ``path`` (e.g. ``("train", "lr")``) in the spec file."""
        if self.document is None:
            from nncli.spec.source import format_path

            return Where(str(self.path) if self.path else None, None, None, format_path(path))
        return self.document.where(path, key=key)

    def error(self, path: tuple, message: str, hint: str | None = None, *, key: bool = False):
        """A :class:`~nncli.errors.SpecError` located at ``path`` (raise it)."""
        return self.where(path, key=key).error(message, hint)

    @property
    def integer_input(self) -> bool:
        """Whether the input is integer token ids (``input: {dtype: int64, high: ...}``)."""
        return self.input_dtype in INT_DTYPES

    def walk(self):
        """Every layer spec, depth first (blocks before their contents)."""

        def visit(layers):
            for layer in layers:
                yield layer
                for inner in children(layer):
                    yield from visit(inner)

        yield from visit(self.layers)


def children(layer: LayerSpec) -> tuple[tuple[LayerSpec, ...], ...]:
    """The layer lists inside a block, in parameter order (body before shortcut, branch 0 first)."""
    if isinstance(layer, ResidualSpec):
        return (layer.body, layer.shortcut)
    if isinstance(layer, (RepeatSpec, BlockSpec)):
        return (layer.layers,)
    if isinstance(layer, ParallelSpec):
        return layer.branches
    return ()
