"""``nncli diagram``: the network as a graph, drawn with graphviz, so anyone can rebuild it.

The lecture's standard for a diagram is that "anyone can unambiguously reconstruct the network"
from it, and that "edges can transmit full tensors". Two views meet it:

- the **layer view** (default): a node per layer with its type, the arguments that define it and
  its parameter count; every edge is labelled with the tensor shape it carries (batch as N). A
  ``Residual`` is a fork, its body, its shortcut (a plain skip edge when it is the identity) and an
  add node; a ``Repeat`` is one "xN" box unless expanded.
- the **neuron view**: the classical picture of a small MLP, a node per unit and an edge per
  weight, each layer marked with its activation.

Building the graph (:func:`build_diagram`) is apart from writing it (:func:`write_diagram`): the
:class:`Diagram` object gives DOT source through the ``graphviz`` Python package, which needs no
``dot`` binary, so the graph can be tested and scripted (``to_json``) anywhere; only rendering to
svg/png/pdf runs ``dot``.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import graphviz

from nncli.build import Built, LayerInfo, count_params, infer, shape_str
from nncli.errors import InputError
from nncli.files import write_atomic
from nncli.formatting import jsonable
from nncli.spec import Spec

FORMATS = ("svg", "png", "pdf", "dot")
_EXTENSIONS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}

# The neuron view draws every unit and every weight; past this dot's layout gets slow and the
# picture turns into a grey blur. custom-swish.yaml (2-32-32-2: 68 units, 1,152 weights) fits.
NEURON_MAX_NODES = 200
NEURON_MAX_EDGES = 2_000

# An expanded Repeat with more nested layers than this is drawn without its cluster frame.
REPEAT_CLUSTER_MAX = 200

# The first line of every DOT file nncli writes: how a later run knows a .dot is its own.
DOT_SIGNATURE = "// nncli diagram"

INSTALL_GRAPHVIZ = (
    "install graphviz, which provides `dot`: `sudo apt-get install graphviz` (Debian/Ubuntu), "
    "`brew install graphviz` (macOS) or `conda install -c conda-forge graphviz` (conda); then run "
    "this command again"
)

# Node style per category: (legend text, graphviz node attributes). Shapes differ as well as
# colours so the kinds stay apart in greyscale print.
STYLES: dict[str, tuple[str, dict[str, str]]] = {
    "weight": ("layer with weights (Linear, Conv, ...)",
               {"shape": "box", "style": "filled", "fillcolor": "#cfe2f3", "color": "#1f4e79"}),
    "activation": ("activation (ellipse)",
                   {"shape": "ellipse", "style": "filled", "fillcolor": "#fde9c9", "color": "#b45f06"}),
    "norm": ("normalisation",
             {"shape": "box", "style": "filled,diagonals", "fillcolor": "#d9ead3", "color": "#38761d"}),
    "pool": ("pooling / reshape",
             {"shape": "box", "style": "filled,rounded", "fillcolor": "#e8e8e8", "color": "#555555"}),
    "dropout": ("dropout (dashed)", {"shape": "box", "style": "dashed", "color": "#555555"}),
    "custom": ("Custom layer (double border)",
               {"shape": "box", "style": "filled", "fillcolor": "#ead1dc", "color": "#741b47",
                "peripheries": "2"}),
    "block": ("collapsed block (Repeat, Residual)",
              {"shape": "box3d", "style": "filled", "fillcolor": "#fff2cc", "color": "#7f6000",
               "margin": "0.12,0.08"}),
    "other": ("other layer", {"shape": "box", "style": "solid", "color": "#000000"}),
    "io": ("input / output", {"shape": "parallelogram", "style": "bold", "color": "#000000"}),
}
_FORK = {"shape": "point", "width": "0.09", "color": "#cc0000"}
_ADD = {"shape": "circle", "label": "+", "width": "0.3", "fixedsize": "true", "style": "filled",
        "fillcolor": "#f4cccc", "color": "#cc0000", "fontsize": "14"}
SKIP_COLOR = "#cc0000"
_POSITIVE, _NEGATIVE = "#1f5fbf", "#d62728"  # neuron view: sign of an initial weight

# torch.nn's own source files say what a layer is; checked on the class's module path.
_CATEGORY_BY_MODULE = {
    "activation": "activation", "batchnorm": "norm", "normalization": "norm", "instancenorm": "norm",
    "pooling": "pool", "flatten": "pool", "pixelshuffle": "pool", "upsampling": "pool",
    "padding": "pool", "channelshuffle": "pool", "fold": "pool", "dropout": "dropout",
    "conv": "weight", "sparse": "weight", "rnn": "weight",
}


@dataclass
class Node:
    """One node of the graph: a layer, a collapsed block, a fork/add, the input/output, or a unit."""

    id: str
    kind: str  # "input", "output", "layer", "block", "fork", "add" or "unit"
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
        doc = {"id": self.id, "kind": self.kind, "category": self.category, "type": self.type,
               "name": self.name, "label": self.text, "args": jsonable(self.args),
               "params": self.params,
               "in_shape": list(self.in_shape) if self.in_shape is not None else None,
               "out_shape": list(self.out_shape) if self.out_shape is not None else None,
               "path": self.path, "module": self.module, "group": self.group}
        doc.update(self.extra)
        return doc


@dataclass
class Edge:
    """A tensor flowing from one node to another (layer view) or one weight (neuron view)."""

    src: str
    dst: str
    kind: str  # "data", "skip" (identity shortcut), "shortcut" (projection path) or "weight"
    shape: tuple | None = None  # per example, no batch dim
    weight: float | None = None  # neuron view with initial weights

    @property
    def label(self) -> str:
        return shape_str(self.shape) if self.shape is not None else ""

    def to_json(self) -> dict:
        doc: dict[str, Any] = {"from": self.src, "to": self.dst, "kind": self.kind,
                               "shape": list(self.shape) if self.shape is not None else None}
        if self.kind == "weight":
            doc["weight"] = self.weight
        return doc


@dataclass
class Group:
    """A cluster: an opened Residual or Repeat (layer view) or one layer of units (neuron view)."""

    id: str
    kind: str  # "residual", "repeat" or "layer"
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
        return (f"{self.total_params:,} parameters · input {shape_str(self.input_shape)} "
                f"→ output {shape_str(self.output_shape)}")

    def categories(self) -> list[str]:
        """The node styles used, in STYLES order (what the legend lists)."""
        used = {n.category for n in self.nodes}
        return [c for c in STYLES if c in used]

    def digraph(self) -> graphviz.Digraph:
        """The graph as a ``graphviz.Digraph`` (no ``dot`` binary needed to build it)."""
        return _to_digraph(self)

    @property
    def source(self) -> str:
        """DOT source text."""
        return self.digraph().source

    def to_json(self) -> dict:
        return {"name": self.name, "view": self.view, "rankdir": self.rankdir,
                "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "total_params": self.total_params,
                "nodes": [n.to_json() for n in self.nodes],
                "edges": [e.to_json() for e in self.edges],
                "groups": [g.to_json() for g in self.groups]}


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
        return {"output": str(self.output), "format": self.format, "bytes": self.bytes,
                "view": self.diagram.view, "nodes": self.node_count, "edges": self.edge_count,
                "graph": self.diagram.to_json()}


# -- the one call the CLI makes -----------------------------------------------------------------
def draw(spec: Spec, output: str | Path, fmt: str | None = None, view: str = "layers",
         expand: bool = False, depth: int | None = None, rankdir: str | None = None,
         weights: bool = False, seed: int = 0) -> DiagramResult:
    """Build a spec's diagram and write it to ``output``.

    Args:
        spec: the validated spec.
        output: the file to write; its extension picks the format unless ``fmt`` is given.
        fmt: "svg", "png", "pdf" or "dot".
        view, expand, depth, rankdir, weights, seed: as for :func:`build_diagram`.

    Returns:
        A :class:`DiagramResult`.

    Raises:
        InputError: a bad output path or format; a neuron view too large; graphviz's ``dot``
            missing for svg/png/pdf (the ``.dot`` source is written next to ``output`` first).

    Example:
        >>> draw(load_spec("specs/lenet5.yaml"), "lenet5.svg").node_count
        14
    """
    output = Path(output)
    check_output(output, spec)
    fmt = resolve_format(output, fmt)
    diagram = build_diagram(spec, view=view, expand=expand, depth=depth, rankdir=rankdir,
                            weights=weights, seed=seed)
    size = write_diagram(diagram, output, fmt)
    return DiagramResult(output, fmt, size, diagram)


def build_diagram(spec: Spec, view: str = "layers", expand: bool = False, depth: int | None = None,
                  rankdir: str | None = None, weights: bool = False, seed: int = 0) -> Diagram:
    """A spec's graph, without drawing it.

    Args:
        spec: the validated spec.
        view: "layers" (a node per layer) or "neurons" (a node per unit of a small MLP).
        expand: unroll every Repeat (layer view); by default a Repeat is one "xN" box.
        depth: how many levels of nested blocks open (layer view): 0 draws Residual and Repeat
            as single boxes; None opens every level.
        rankdir: "TB" (top to bottom) or "LR"; default TB for layers, LR for neurons.
        weights: neuron view: colour (sign) and width (size) each edge by its initial weight,
            from the real model built with ``seed``.
        seed: the seed for those weights (the same spec and seed give the same weights).

    Raises:
        InputError: the neuron view of a network that is not a small MLP.
    """
    if view not in ("layers", "neurons"):
        raise InputError(f"--view: expected layers or neurons, found {view!r}")
    if rankdir is not None and rankdir not in ("TB", "LR"):
        raise InputError(f"--rankdir: expected TB or LR, found {rankdir!r}")
    if depth is not None and depth < 0:
        raise InputError(f"--depth: expected an integer >= 0, found {depth}")
    built = infer(spec)
    if view == "neurons":
        return neuron_graph(built, weights=weights, seed=seed, rankdir=rankdir or "LR")
    return layer_graph(built, expand=expand, depth=depth, rankdir=rankdir or "TB")


# -- layer view -----------------------------------------------------------------------------------
def layer_graph(built: Built, expand: bool = False, depth: int | None = None,
                rankdir: str = "TB") -> Diagram:
    """The layer view of a built (or inferred) network. See :func:`build_diagram`."""
    maker = _LayerGraph(expand, depth)
    inp = maker.add(Node("input", "input", "io", type="input", lines=[
        ("title", "input"), ("args", shape_str(built.input_shape))], out_shape=built.input_shape))
    last, shape = maker.sequence(built.layers, inp.id, built.input_shape, 0, None, "data")
    out = maker.add(Node("output", "output", "io", type="output", lines=[
        ("title", "output"), ("args", shape_str(built.output_shape))], in_shape=built.output_shape))
    maker.edge(last, out.id, shape, "data")
    total = count_params(built.model)[0]
    return Diagram(built.spec.name, "layers", rankdir, built.input_shape, built.output_shape, total,
                   maker.nodes, maker.edges, maker.groups)


class _LayerGraph:
    """Walks LayerInfos, adding nodes, edges and clusters; every edge carries its source's output."""

    def __init__(self, expand: bool, depth: int | None) -> None:
        self.expand = expand
        self.depth = depth
        self.nodes: list[Node] = []
        self.edges: list[Edge] = []
        self.groups: list[Group] = []
        self.copies: dict[str, int] = {}  # fqn of a Repeat's direct child -> the Repeat's times

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def edge(self, src: str, dst: str, shape: tuple, kind: str) -> None:
        self.edges.append(Edge(src, dst, kind, tuple(shape)))

    def opens(self, level: int) -> bool:
        return self.depth is None or level < self.depth

    def sequence(self, infos: list[LayerInfo], src: str, shape: tuple, level: int,
                 group: str | None, kind: str) -> tuple[str, tuple]:
        """Chain ``infos`` after node ``src``; returns the last node and the shape it gives."""
        for info in infos:
            src, shape = self.layer(info, src, shape, level, group, kind)
        return src, shape

    def layer(self, info: LayerInfo, src: str, shape: tuple, level: int, group: str | None,
              kind: str) -> tuple[str, tuple]:
        # The builder chains shapes the same way; a mismatch here is a bug in this walk.
        assert tuple(shape) == tuple(info.in_shape), (info.path, shape, info.in_shape)
        key = info.fqn.replace(".", "_")
        copy = _copy_note(info, self.copies.get(info.fqn))
        if info.type == "Residual" and self.opens(level):
            return self.residual(info, key, src, shape, level, group, kind, copy)
        if info.type == "Repeat" and self.expand and self.opens(level):
            self.copies.update((c.fqn, info.args["times"]) for c in info.children)
            # A cluster frames the copies; dot's cluster layout grows fast with its size (1,000
            # layers: ~7x slower than without), so a huge Repeat goes unframed and each node
            # keeps its "copy k" note instead.
            if sum(1 for _ in info.walk()) - 1 > REPEAT_CLUSTER_MAX:
                return self.sequence(info.children, src, shape, level + 1, group, kind)
            gid = f"repeat_{key}"
            self.groups.append(Group(gid, "repeat", _block_title(info) + f" · {info.params:,} params", group))
            return self.sequence(info.children, src, shape, level + 1, gid, kind)
        node = self.add(_block_node(info, key, group, copy) if info.type in ("Residual", "Repeat")
                        else _leaf_node(info, key, group, copy))
        self.edge(src, node.id, shape, kind)
        return node.id, info.out_shape

    def residual(self, info: LayerInfo, key: str, src: str, shape: tuple, level: int,
                 group: str | None, kind: str, copy: str | None) -> tuple[str, tuple]:
        gid = f"residual_{key}"
        title = _block_title(info) + (f" ({copy})" if copy else "")
        self.groups.append(Group(gid, "residual", f"{title} · {info.params:,} params", group))
        common = dict(type=info.type, name=info.spec.name, path=info.path, module=info.fqn,
                      group=gid, params=0)
        fork = self.add(Node(f"fork_{key}", "fork", "fork", in_shape=shape, out_shape=shape,
                             lines=[("title", "fork")], **common))
        self.edge(src, fork.id, shape, kind)
        body = [c for c in info.children if c.role == "body"]
        shortcut = [c for c in info.children if c.role == "shortcut"]
        body_end, body_shape = self.sequence(body, fork.id, shape, level + 1, gid, "data")
        if shortcut:
            short_end, short_shape = self.sequence(shortcut, fork.id, shape, level + 1, gid, "shortcut")
        else:
            short_end, short_shape = fork.id, shape
        add = self.add(Node(f"add_{key}", "add", "add", in_shape=body_shape, out_shape=info.out_shape,
                            lines=[("title", "+")], **common))
        self.edge(body_end, add.id, body_shape, "data")
        self.edge(short_end, add.id, short_shape, "shortcut" if shortcut else "skip")
        return add.id, info.out_shape


def category(info: LayerInfo) -> str:
    """The style a layer is drawn in: weight, activation, norm, pool, dropout, custom or other."""
    if info.target is not None:
        return "custom"
    cls = type(info.module)
    if cls.__name__ == "Step":  # nncli's Heaviside unit
        return "activation"
    mod = cls.__module__
    if mod.startswith("torch.nn.modules."):
        found = _CATEGORY_BY_MODULE.get(mod.rsplit(".", 1)[-1])
        if found:
            return found
        if cls.__name__ in ("Linear", "Bilinear"):
            return "weight"
    return "weight" if info.params else "other"


def _copy_note(info: LayerInfo, times: int | None) -> str | None:
    """ "copy 3/20" for a layer of an expanded Repeat."""
    if times is None or not (info.role or "").startswith("copy "):
        return None
    return f"{info.role}/{times}"


def _leaf_node(info: LayerInfo, key: str, group: str | None, copy: str | None = None) -> Node:
    title = f"{info.spec.name}: {info.type}" if info.spec.name else info.type
    lines = [("title", title)]
    if info.target is not None:
        lines.append(("args", f"Custom {info.target}"))
    lines += [("args", line) for line in _wrap(_arg_parts(info.args))]
    note = []
    if info.params:
        note.append(_count(info.params, "param"))
    if copy:
        note.append(copy)
    if note:
        lines.append(("note", " · ".join(note)))
    return Node(f"n{key}", "layer", category(info), type=info.type, name=info.spec.name, lines=lines,
                args=dict(info.args), params=info.params, in_shape=info.in_shape,
                out_shape=info.out_shape, path=info.path, module=info.fqn, group=group,
                attrs={"tooltip": f"{info.path} (module {info.fqn})"},
                extra={"target": info.target} if info.target else {})


def _block_node(info: LayerInfo, key: str, group: str | None, copy: str | None = None) -> Node:
    """A Residual or Repeat drawn as one box listing its contents."""
    lines = [("title", _block_title(info))]
    if info.type == "Repeat":
        times = info.args["times"]
        first = [c for c in info.children if c.role == "copy 1"]
        last = [c for c in info.children if c.role == f"copy {times}"]
        lines += [("args", _one_line(c)) for c in first[:8]]
        if len(first) > 8:
            lines.append(("args", f"... {len(first) - 8} more"))
        if [c.args for c in first] != [c.args for c in last]:
            lines.append(("note", f"copy 1 shown; later copies take {shape_str(last[0].in_shape)}"))
    else:
        body = [c for c in info.children if c.role == "body"]
        shortcut = [c for c in info.children if c.role == "shortcut"]
        lines += [("args", "body: " + _one_line(c) if i == 0 else "      " + _one_line(c))
                  for i, c in enumerate(body[:8])]
        if len(body) > 8:
            lines.append(("args", f"      ... {len(body) - 8} more"))
        lines += [("args", "shortcut: " + _one_line(c) if i == 0 else "      " + _one_line(c))
                  for i, c in enumerate(shortcut)] or [("args", "shortcut: identity")]
    note = [_count(info.params, "param")] if info.params else []
    if copy:
        note.append(copy)
    if note:
        lines.append(("note", " · ".join(note)))
    return Node(f"n{key}", "block", "block", type=info.type, name=info.spec.name, lines=lines,
                args=dict(info.args), params=info.params, in_shape=info.in_shape,
                out_shape=info.out_shape, path=info.path, module=info.fqn, group=group,
                attrs={"tooltip": f"{info.path} (module {info.fqn})"})


def _block_title(info: LayerInfo) -> str:
    kind = f"Repeat ×{info.args['times']}" if info.type == "Repeat" else info.type
    return f"{info.spec.name}: {kind}" if info.spec.name else kind


def _one_line(info: LayerInfo) -> str:
    """A layer in one line, for the contents of a collapsed block."""
    if info.type == "Residual":
        n_body = sum(c.role == "body" for c in info.children)
        n_short = sum(c.role == "shortcut" for c in info.children)
        return f"Residual (body {n_body} layers, shortcut {f'{n_short} layers' if n_short else 'identity'})"
    if info.type == "Repeat":
        return f"Repeat ×{info.args['times']} ({len(info.children) // info.args['times']} layers each)"
    parts = _arg_parts(info.args)
    return info.type + (" " + ", ".join(parts) if parts else "")


def _arg_parts(args: dict) -> list[str]:
    """Constructor arguments, the in/out sizes first as "in → out"."""
    args = dict(args)
    parts = []
    for a, b in (("in_features", "out_features"), ("in_channels", "out_channels")):
        if a in args and b in args:
            parts.append(f"{_value(args.pop(a))} → {_value(args.pop(b))}")
    parts += [f"{k}={_value(v)}" for k, v in args.items()]
    return parts


def _value(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)


def _wrap(parts: list[str], width: int = 34) -> list[str]:
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            lines.append(part)
    return lines


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


# -- neuron view ----------------------------------------------------------------------------------
def neuron_graph(built: Built, weights: bool = False, seed: int = 0, rankdir: str = "LR") -> Diagram:
    """The neuron view of a small MLP: a node per unit, an edge per weight. See :func:`build_diagram`.

    Raises:
        InputError: a layer other than Linear or a shape-keeping parameter-free layer (activation,
            Dropout, ...), an input that is not a vector, or more than NEURON_MAX_NODES units /
            NEURON_MAX_EDGES weights.
    """
    spec = built.spec
    if len(built.input_shape) != 1:
        raise InputError(f"the neuron view draws MLPs on vector inputs; {spec.name}'s input is "
                         f"{shape_str(built.input_shape)}", file=_file(spec), spec_path="input",
                         hint="draw it with the layer view (the default)")
    # stages[k] = (linear LayerInfo or None for the input, units, [marker layers after it])
    stages: list[list[Any]] = [[None, built.input_shape[0], []]]
    for info in _leaves(built.layers):
        if info.type == "Linear":
            stages.append([info, info.args["out_features"], []])
        elif info.params == 0 and tuple(info.in_shape) == tuple(info.out_shape):
            stages[-1][2].append(info)
        else:
            raise InputError(
                f"the neuron view draws MLPs: Linear layers with parameter-free, shape-keeping layers "
                f"(activations, Dropout) between them; {info.path} is {info.type} "
                f"({shape_str(info.in_shape)} -> {shape_str(info.out_shape)}, {info.params:,} params)",
                file=info.spec.where.file, line=info.spec.where.line, column=info.spec.where.column,
                spec_path=info.path, hint="draw it with the layer view (the default)")
    n_nodes = sum(s[1] for s in stages)
    n_edges = sum(a[1] * b[1] for a, b in zip(stages, stages[1:]))
    if n_nodes > NEURON_MAX_NODES or n_edges > NEURON_MAX_EDGES:
        raise InputError(
            f"the neuron view of {spec.name} would draw {n_nodes:,} nodes and {n_edges:,} edges; "
            f"the limit is {NEURON_MAX_NODES:,} nodes and {NEURON_MAX_EDGES:,} edges",
            file=_file(spec), hint="draw it with the layer view (the default): one node per layer")

    modules = None
    if weights:
        from nncli.build import build_model

        real = build_model(spec, device="cpu", seed=seed)
        modules = {info.fqn: info.module for info in real.walk()}

    nodes: list[Node] = []
    edges: list[Edge] = []
    groups: list[Group] = []
    last = len(stages) - 1
    prev_ids: list[str] = []
    for k, (linear, units, markers) in enumerate(stages):
        letter = "x" if k == 0 else ("y" if k == last else "h")
        marks = ", ".join(_marker_text(m) for m in markers)
        if k == 0:
            label = f"input: {units}" + (f" · {marks}" if marks else "")
        else:
            role = "output" if k == last else f"hidden layer {k}"
            what = f"{linear.spec.name}: Linear" if linear.spec.name else "Linear"
            label = f"{role}: {what} {linear.args['in_features']} → {units} · {marks or 'no activation'}"
        gid = f"layer{k}"
        groups.append(Group(gid, "layer", label))
        cat = "io" if k == 0 else ("activation" if markers else "weight")
        w = b = None
        if modules is not None and linear is not None:
            mod = modules[linear.fqn]
            w = mod.weight.detach().cpu()
            b = mod.bias.detach().cpu() if mod.bias is not None else None
        ids = []
        for j in range(units):
            extra = {"layer": k, "unit": j}
            if b is not None:
                extra["bias"] = float(b[j])
            node = Node(f"u{k}_{j}", "unit", cat, type=linear.type if linear else "input",
                        name=linear.spec.name if linear else None,
                        lines=[("title", letter + _subscript(j + 1))],
                        path=linear.path if linear else "input",
                        module=linear.fqn if linear else None, group=gid, extra=extra,
                        attrs={"tooltip": f"{label}, unit {j + 1}" +
                               (f", bias {float(b[j]):.3g}" if b is not None else "")})
            nodes.append(node)
            ids.append(node.id)
        if k > 0:
            # weight (out, in): the edge from unit i of the previous layer to unit j is w[j, i]
            for j, dst in enumerate(ids):
                for i, src in enumerate(prev_ids):
                    edges.append(Edge(src, dst, "weight", None, float(w[j, i]) if w is not None else None))
            if w is not None and w.numel():
                groups[-1].scale = float(w.abs().max())
        prev_ids = ids
    notes = []
    if weights:
        notes = [f"edge colour: sign of the initial weight (seed {seed}): blue +, red −",
                 "edge width: |weight| / largest |weight| of its layer",
                 "biases: on each unit's tooltip and in --json"]
    else:
        notes = ["one edge per weight; biases not drawn (one per unit)"]
    return Diagram(spec.name, "neurons", rankdir, built.input_shape, built.output_shape,
                   count_params(built.model)[0], nodes, edges, groups, notes)


def _leaves(infos: list[LayerInfo]):
    """Layers in the order data meets them, Repeat copies unrolled; a Residual is refused later."""
    for info in infos:
        if info.type == "Repeat":
            yield from _leaves([c for c in info.children])
        else:
            yield info


def _marker_text(info: LayerInfo) -> str:
    parts = _arg_parts(info.args)
    return info.type + (f"({', '.join(parts)})" if parts else "")


_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _subscript(n: int) -> str:
    return str(n).translate(_SUB)


def _file(spec: Spec) -> str | None:
    return str(spec.path) if spec.path else None


# -- DOT --------------------------------------------------------------------------------------------
def _to_digraph(d: Diagram) -> graphviz.Digraph:
    neurons = d.view == "neurons"
    g = graphviz.Digraph(
        # escape(): a backslash in a user's name stays a backslash (not a DOT \n or \l), and a
        # name like "<x>" is not taken for an HTML label.
        name=graphviz.escape(d.name), comment=f"nncli diagram: {' '.join(d.name.splitlines())} ({d.view} view)",
        graph_attr={"rankdir": d.rankdir, "fontname": "Helvetica", "labelloc": "t",
                    "labeljust": "c", "label": _html_title(d), "fontsize": "12",
                    "nodesep": "0.12" if neurons else "0.25", "ranksep": "1.2" if neurons else "0.3",
                    "splines": "line" if neurons else "spline", "outputorder": "edgesfirst"},
        node_attr={"fontname": "Helvetica", "fontsize": "10", "margin": "0.08,0.03"},
        edge_attr={"fontname": "Helvetica", "fontsize": "8", "fontcolor": "#444444",
                   "arrowsize": "0.4" if neurons else "0.6", "color": "#444444"},
    )
    children: dict[str | None, list[Group]] = {}
    for grp in d.groups:
        children.setdefault(grp.parent, []).append(grp)
    members: dict[str | None, list[Node]] = {}
    for node in d.nodes:
        members.setdefault(node.group, []).append(node)
    top_of = {grp.id: grp for grp in d.groups}

    def root(gid: str) -> str:
        while top_of[gid].parent is not None:
            gid = top_of[gid].parent  # type: ignore[assignment]
        return gid

    def emit_group(parent: graphviz.Digraph, grp: Group) -> None:
        with parent.subgraph(name=f"cluster_{grp.id}") as sub:
            style = {"residual": ("rounded,dashed", "#cc0000"), "repeat": ("rounded", "#7f6000"),
                     "layer": ("rounded", "#999999")}[grp.kind]
            sub.attr(label=graphviz.escape(grp.label), style=style[0], color=style[1], fontsize="10",
                     labeljust="l", fontcolor="#333333", **{"class": grp.kind})
            for node in members.get(grp.id, []):
                _emit_node(sub, node, neurons)
            for child in children.get(grp.id, []):
                emit_group(sub, child)

    # Declare nodes in the order data meets them, each cluster where its first node falls, so
    # dot's initial ordering already follows the network.
    done: set[str] = set()
    for node in d.nodes:
        if node.group is None:
            _emit_node(g, node, neurons)
            continue
        top = root(node.group)
        if top not in done:
            done.add(top)
            emit_group(g, top_of[top])

    scales = {grp.id: grp.scale for grp in d.groups}
    group_of = {n.id: n.group for n in d.nodes}
    for e in d.edges:
        attrs: dict[str, str] = {}
        if e.kind == "weight":
            if e.weight is not None:
                scale = scales.get(group_of[e.dst] or "", 0.0) or 1.0
                attrs = {"color": _POSITIVE if e.weight >= 0 else _NEGATIVE,
                         "penwidth": f"{0.3 + 2.7 * abs(e.weight) / scale:.2f}",
                         "tooltip": f"w = {e.weight:.4g}"}
            else:
                attrs = {"color": "#777777", "penwidth": "0.6"}
        else:
            attrs["label"] = e.label
            if e.kind in ("skip", "shortcut"):
                attrs.update(color=SKIP_COLOR, fontcolor=SKIP_COLOR, penwidth="1.6")
            if e.kind == "skip":
                attrs["class"] = "skip"
        g.edge(e.src, e.dst, **attrs)
    _emit_legend(g, d)
    return g


def _emit_node(g: graphviz.Digraph, node: Node, neurons: bool) -> None:
    if node.kind == "fork":
        attrs = dict(_FORK)
        attrs["tooltip"] = f"{node.path}: fork (x goes to the body and the shortcut)"
    elif node.kind == "add":
        attrs = dict(_ADD)
        attrs["tooltip"] = f"{node.path}: body(x) + shortcut(x)"
    else:
        attrs = dict(STYLES[node.category][1])
        attrs["label"] = _html_label(node.lines)
        if neurons:
            attrs.update(shape="circle", width="0.38", fixedsize="true", margin="0")
    attrs.update(node.attrs)
    attrs["class"] = f"{node.kind} {node.category}"
    g.node(node.id, **attrs)


def _html_label(lines: list[tuple[str, str]]) -> str:
    rows = []
    for style, text in lines:
        t = html.escape(text, quote=False)
        if style == "title":
            rows.append(f"<B>{t}</B>")
        elif style == "args":
            rows.append(f'<FONT POINT-SIZE="9">{t}</FONT>')
        else:
            rows.append(f'<FONT POINT-SIZE="8" COLOR="#555555">{t}</FONT>')
    return "<" + "<BR/>".join(rows) + ">"


def _html_title(d: Diagram) -> str:
    view = "neuron view" if d.view == "neurons" else "layer view"
    return (f'<<FONT POINT-SIZE="16"><B>{html.escape(d.name, quote=False)}</B></FONT>'
            f'<BR/>{html.escape(d.title, quote=False)} · {view}<BR/> >')


def _emit_legend(g: graphviz.Digraph, d: Diagram) -> None:
    rows = ['<TR><TD BORDER="0"><B>legend</B></TD></TR>']
    if d.view == "layers":
        for cat in d.categories():
            text, attrs = STYLES[cat]
            fill = attrs.get("fillcolor", "#ffffff") if "filled" in attrs.get("style", "") else "#ffffff"
            rows.append(f'<TR><TD BGCOLOR="{fill}" COLOR="{attrs.get("color", "#000000")}">'
                        f"{html.escape(text, quote=False)}</TD></TR>")
        if any(e.kind in ("skip", "shortcut") for e in d.edges):
            rows.append(f'<TR><TD BORDER="0"><FONT COLOR="{SKIP_COLOR}">red edges: skip connection '
                        f"(shortcut); ● fork, ⊕ add</FONT></TD></TR>")
        rows.append('<TR><TD BORDER="0">edge label: tensor shape, N = batch</TD></TR>')
    else:
        rows += [f'<TR><TD BORDER="0">{html.escape(note, quote=False)}</TD></TR>' for note in d.notes]
        rows.append('<TR><TD BORDER="0">x: inputs, h: hidden units, y: outputs</TD></TR>')
    label = ('<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="2" CELLPADDING="3">'
             + "".join(rows) + "</TABLE>>")
    g.node("legend", label=label, shape="plaintext", fontsize="9", margin="0",
           **{"class": "legend"})


# -- writing -----------------------------------------------------------------------------------------
def resolve_format(output: Path, fmt: str | None) -> str:
    """The output format: ``fmt`` if given (it must agree with a known extension), else the extension's."""
    ext = output.suffix.lower()
    by_ext = _EXTENSIONS.get(ext)
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(f"--format: expected one of {', '.join(FORMATS)}, found {fmt!r}")
        if by_ext is not None and by_ext != fmt:
            raise InputError(f"--format {fmt} but the output {output} ends in {ext} ({by_ext})",
                             hint=f"name the file {output.with_suffix('.' + fmt)} or drop --format")
        return fmt
    if by_ext is None:
        raise InputError(f"cannot tell the format of {output} from its extension "
                         f"({ext or 'none'}); expected .svg, .png, .pdf or .dot",
                         hint="use one of those extensions or give --format svg|png|pdf|dot")
    return by_ext


def check_output(output: Path, spec: Spec | None = None) -> None:
    """Refuse an output path that is a folder, in a missing folder, or the spec file itself."""
    if output.is_dir():
        raise InputError(f"the output {output} is a folder; expected a file name such as {output / 'net.svg'}")
    parent = output.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {output}: the folder {parent} does not exist")
    if output.exists() and not output.is_file():
        raise InputError(f"cannot write {output}: it exists and is not a regular file")
    if spec is not None and spec.path is not None and output.exists() and Path(spec.path).exists() \
            and os.path.samefile(output, spec.path):
        raise InputError(f"refusing to overwrite the spec file {spec.path} with the diagram",
                         hint="give another output path with -o")


def write_diagram(diagram: Diagram, output: str | Path, fmt: str) -> int:
    """Write the diagram as ``fmt``; returns the bytes written.

    DOT needs only the ``graphviz`` Python package. svg/png/pdf run graphviz's ``dot``; where it
    is missing, the DOT source goes to ``output`` with a ``.dot`` extension (never over a file
    nncli did not write) and an :class:`InputError` says how to install graphviz.
    """
    output = Path(output)
    source = diagram.source
    if fmt == "dot":
        data = source.encode("utf-8")
        write_atomic(output, data)
        return len(data)
    try:
        data = graphviz.pipe("dot", fmt, source.encode("utf-8"))
    except graphviz.ExecutableNotFound:
        dot_path = output.with_suffix(".dot")
        if dot_path.exists() and not _is_ours(dot_path):
            raise InputError(
                f"rendering {fmt} needs graphviz's `dot` program, which is not on PATH; and "
                f"{dot_path} exists and was not written by nncli, so the DOT source was not saved",
                hint=INSTALL_GRAPHVIZ + f"; or write the source elsewhere: -o other.dot") from None
        write_atomic(dot_path, source.encode("utf-8"))
        raise InputError(
            f"rendering {fmt} needs graphviz's `dot` program, which is not on PATH; "
            f"wrote the DOT source to {dot_path} instead",
            hint=INSTALL_GRAPHVIZ + f"; or render the saved source: dot -T{fmt} {dot_path} -o {output}",
        ) from None
    write_atomic(output, data)
    return len(data)


def _is_ours(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(DOT_SIGNATURE)).decode("utf-8", "replace") == DOT_SIGNATURE
    except OSError:
        return False
