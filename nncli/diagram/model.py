"""The graph of a network as plain data: nodes, edges, clusters, and what ``nncli diagram`` wrote.

A :class:`Diagram` becomes DOT source (:mod:`nncli.diagram.dot`, no ``dot`` binary needed) or
JSON (``to_json``), so it can be tested and scripted anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import graphviz

from nncli.build import shape_str
from nncli.diagram.dot import to_digraph
from nncli.diagram.styles import STYLES
from nncli.formatting import jsonable


@dataclass
class Node:
    """One node of the graph: a layer, a collapsed block, a fork/add, the input/output, or a unit."""

    id: str
    kind: str  # "input", "output", "layer", "block", "fork", "add", "merge" (a Parallel's) or "unit"
    category: str  # a key of STYLES, or "fork"/"add"/"unit"
    type: str = ""
    name: str | None = None  # the spec's `name`, when given
    lines: list[tuple[str, str]] = field(default_factory=list)  # (style, text): title/args/note
    args: dict = field(default_factory=dict)
    params: int = 0
    in_shape: tuple | None = None
    out_shape: tuple | None = None
    path: str | None = None  # where in the spec: "layers[4].Residual.body[0]"
    module: str | None = None  # the module's name in the built nn.Sequential: "4.body.0"
    group: str | None = None  # the cluster it is drawn in
    attrs: dict = field(default_factory=dict)  # extra graphviz attributes
    extra: dict = field(default_factory=dict)  # extra JSON fields (a unit's bias)

    @property
    def text(self) -> str:
        return "\n".join(text for _, text in self.lines)

    def to_json(self) -> dict:
        doc = {
            "id": self.id,
            "kind": self.kind,
            "category": self.category,
            "type": self.type,
            "name": self.name,
            "label": self.text,
            "args": jsonable(self.args),
            "params": self.params,
            "in_shape": list(self.in_shape) if self.in_shape is not None else None,
            "out_shape": list(self.out_shape) if self.out_shape is not None else None,
            "path": self.path,
            "module": self.module,
            "group": self.group,
        }
        doc.update(self.extra)
        return doc


@dataclass
class Edge:
    """A tensor flowing from one node to another (layer view) or one weight (neuron view)."""

    src: str
    dst: str
    kind: str  # "data", "skip" (identity shortcut or branch), "shortcut" (projection path) or "weight"
    shape: tuple | None = None  # per example, no batch dim
    weight: float | None = None  # neuron view with initial weights

    @property
    def label(self) -> str:
        return shape_str(self.shape) if self.shape is not None else ""

    def to_json(self) -> dict:
        doc: dict[str, Any] = {
            "from": self.src,
            "to": self.dst,
            "kind": self.kind,
            "shape": list(self.shape) if self.shape is not None else None,
        }
        if self.kind == "weight":
            doc["weight"] = self.weight
        return doc


@dataclass
class Group:
    """A cluster: an opened Residual, Repeat, Parallel or Block (layer view) or one layer of units
    (neuron view)."""

    id: str
    kind: str  # "residual", "repeat", "parallel", "block" or "layer"
    label: str
    parent: str | None = None
    scale: float = 0.0  # neuron view: the layer's largest |weight|, against which edge widths scale

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "label": self.label, "parent": self.parent}


@dataclass
class Diagram:
    """A network's graph: nodes, edges and clusters, ready to become DOT source or JSON.

    Example:
        >>> d = build_diagram(load_spec("specs/lecture-mlp.yaml"))
        >>> len(d.nodes), len(d.edges)
        (7, 6)
        >>> d.source.startswith("// nncli diagram")
        True
    """

    name: str
    view: str  # "layers" or "neurons"
    rankdir: str  # "TB" or "LR"
    input_shape: tuple
    output_shape: tuple
    total_params: int
    nodes: list[Node]
    edges: list[Edge]
    groups: list[Group] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # extra legend lines (neuron view)

    @property
    def title(self) -> str:
        return (
            f"{self.total_params:,} parameters · input {shape_str(self.input_shape)} "
            f"→ output {shape_str(self.output_shape)}"
        )

    def categories(self) -> list[str]:
        """The node styles used, in STYLES order (what the legend lists)."""
        used = {n.category for n in self.nodes}
        return [c for c in STYLES if c in used]

    def digraph(self) -> graphviz.Digraph:
        """The graph as a ``graphviz.Digraph`` (no ``dot`` binary needed to build it)."""
        return to_digraph(self)

    @property
    def source(self) -> str:
        """DOT source text."""
        return self.digraph().source

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "view": self.view,
            "rankdir": self.rankdir,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "total_params": self.total_params,
            "nodes": [n.to_json() for n in self.nodes],
            "edges": [e.to_json() for e in self.edges],
            "groups": [g.to_json() for g in self.groups],
        }


@dataclass
class DiagramResult:
    """What ``nncli diagram`` did: the file it wrote and the graph it drew."""

    output: Path
    format: str
    bytes: int
    diagram: Diagram

    @property
    def node_count(self) -> int:
        return len(self.diagram.nodes)

    @property
    def edge_count(self) -> int:
        return len(self.diagram.edges)

    def to_json(self) -> dict:
        return {
            "output": str(self.output),
            "format": self.format,
            "bytes": self.bytes,
            "view": self.diagram.view,
            "nodes": self.node_count,
            "edges": self.edge_count,
            "graph": self.diagram.to_json(),
        }
