"""The layer view of a spec with named tensors: one source node per input, one sink per output,
and an edge from every tensor an element reads (``from``, ``memory``, a Merge's operands).

A shared module is drawn once per use, marked "shared with NAME"; an element whose blocks read
named tensors is drawn as one box.
"""

from __future__ import annotations

from nncli import modules as nm
from nncli.build import Built, LayerInfo, count_params, shape_str
from nncli.diagram.layer_view import _block_node, _LayerGraph, _leaf_node
from nncli.diagram.model import Diagram, Node


def graph_layer_graph(built: Built, expand: bool = False, depth: int | None = None, rankdir: str = "TB") -> Diagram:
    """Several sources and sinks: see the module's docstring."""
    maker = _LayerGraph(expand, depth)
    nodes: dict[str, tuple[str, tuple]] = {}  # tensor name -> (node id, shape)
    for name, shape, dtype, _ in built.inputs:
        lines = [("title", f"input {name}"), ("args", shape_str(shape) + ("" if dtype == "float32" else f" {dtype}"))]
        maker.add(Node(f"input_{name}", "input", "io", type="input", name=name, lines=lines, out_shape=shape))
        nodes[name] = (f"input_{name}", shape)
    last = nodes[built.inputs[0][0]]
    for info in built.layers:
        last = _element(maker, info, nodes, last)
        if info.spec.name:
            nodes[info.spec.name] = last
        nodes.update((acc, last) for acc in getattr(info, "accumulated", {}))
    for name, shape, _ in built.outputs:
        src = nodes[name] if name in nodes and built.spec.outputs else last
        out = maker.add(
            Node(
                f"output_{name}",
                "output",
                "io",
                type="output",
                name=name,
                lines=[("title", f"output {name}"), ("args", shape_str(shape))],
                in_shape=shape,
            )
        )
        maker.edge(src[0], out.id, shape, "data")
    return Diagram(
        built.spec.name,
        "layers",
        rankdir,
        built.input_shape,
        built.output_shape,
        count_params(built.model)[0],
        maker.nodes,
        maker.edges,
        maker.groups,
    )


def _element(maker: _LayerGraph, info: LayerInfo, nodes: dict, last: tuple) -> tuple[str, tuple]:
    """Draw one top-level element fed by the tensors it reads; its (node id, output shape)."""
    reads = [nodes[r] for r in info.reads]
    spec = info.spec
    first = nodes[spec.source] if spec.source else (reads[0] if info.type == "Merge" else last)
    extra = reads[1:] if info.type == "Merge" else [nodes[spec.memory]] if spec.memory else []
    if isinstance(info.module, (nm.GraphBlock, nm.GraphRepeat)) and not info.shared:
        local = {c.spec.name for c in info.walk() if c.spec.name}
        inner = {r for c in info.walk() for r in c.reads if r not in local and r in nodes and r != spec.source}
        extra += [nodes[r] for r in sorted(inner)]  # names read inside the block (a decoder's memory)
    key = f"use{info.index}_{info.fqn.replace('.', '_')}"  # a shared module's node is one per use
    if info.shared or isinstance(info.module, (nm.GraphBlock, nm.GraphRepeat)):
        node = (
            _block_node(info, key, None)
            if info.children or info.type in ("Block", "Repeat")
            else _leaf_node(info, key, None)
        )
        if info.shared:
            node.lines.append(("note", f"shared with {info.shared}"))
            node.attrs["style"] = "dashed,rounded,filled"
        maker.add(node)
        maker.edge(first[0], node.id, first[1], "data")
        out = (node.id, info.out_shape)
    else:
        out = maker.layer(info, first[0], info.in_shape, 0, None, "data")
    for src, shape in extra:  # the second tensor: memory, or the Merge's further operands
        maker.edge(src, out[0], shape, "data")
    return out
