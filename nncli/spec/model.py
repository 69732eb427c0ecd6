"""The spec as frozen dataclasses: validated once at the boundary, trusted inside.

Everything here is plain Python (no torch): ``nncli --help`` and ``nncli check``'s parsing stay
fast. Layer *names* and *arguments* are checked against torch later, by the builder, which uses the
``where`` recorded on every object to point at the file, line and spec path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from nncli.spec.source import Document, Where

# torch.nn.init function names without the trailing underscore, plus the lecture's lecun_normal
# (N(0, 1/fan_in)). Static on purpose: this module must not import torch to list them.
INIT_SCHEMES = (
    "normal", "uniform", "constant", "ones", "zeros", "eye", "dirac", "xavier_uniform",
    "xavier_normal", "kaiming_uniform", "kaiming_normal", "trunc_normal", "orthogonal", "sparse",
    "lecun_normal",
)

# Layer types nncli itself provides; every other name is looked up in torch.nn by the builder.
NNCLI_LAYERS = ("Residual", "Repeat", "Custom", "Step", "Identity")


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

    def __post_init__(self) -> None:
        # Frozen all the way down: the mappings are read-only views, so no tool can change a
        # spec another tool reads later.
        object.__setattr__(self, "args", _frozen(self.args))
        object.__setattr__(self, "arg_where", _frozen(self.arg_where))
        if self.init is not None:
            object.__setattr__(self, "init", _frozen(self.init))

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

    times: int = 1
    layers: tuple[LayerSpec, ...] = ()


@dataclass(frozen=True)
class CustomSpec(LayerSpec):
    """A user's own nn.Module: ``file.py:Class`` (relative to the spec) or ``package.module:Class``."""

    target: str = ""
    base_dir: Path | None = None  # the spec's folder, against which a file target is resolved


@dataclass(frozen=True)
class Spec:
    """A whole validated spec (DESIGN.md, "The spec contract")."""

    input: tuple[int, ...]  # the shape of ONE example, no batch dimension
    layers: tuple[LayerSpec, ...]
    name: str = "network"
    init: Mapping[str, InitScheme] | None = None  # default for every affine layer
    data: Mapping[str, Any] | None = None  # raw `data:` section, validated by nncli.data
    train: Mapping[str, Any] | None = None  # raw `train:` section, validated by nncli.train
    path: Path | None = None  # the file it came from, if any
    document: Document | None = field(default=None, repr=False, compare=False)

    def where(self, path: tuple, *, key: bool = False) -> Where:
        """The location of ``path`` (e.g. ``("train", "lr")``) in the spec file."""
        if self.document is None:
            from nncli.spec.source import format_path

            return Where(str(self.path) if self.path else None, None, None, format_path(path))
        return self.document.where(path, key=key)

    def error(self, path: tuple, message: str, hint: str | None = None, *, key: bool = False):
        """A :class:`~nncli.errors.SpecError` located at ``path`` (raise it)."""
        return self.where(path, key=key).error(message, hint)

    def walk(self):
        """Every layer spec, depth first (Residual/Repeat before their contents)."""

        def visit(layers):
            for layer in layers:
                yield layer
                if isinstance(layer, ResidualSpec):
                    yield from visit(layer.body)
                    yield from visit(layer.shortcut)
                elif isinstance(layer, RepeatSpec):
                    yield from visit(layer.layers)

        yield from visit(self.layers)
