"""The layer view of a spec with named tensors: one source node per input, one sink per output,
and an edge from every tensor an element reads (``from``, ``memory``, a Merge's operands).

A shared module is drawn once per use, marked "shared with NAME"; an element whose blocks read
named tensors is drawn as one box, except a Repeat opened by ``--expand`` (every copy framed, the
names it sums over its copies meeting at an add node) or ``--expand-one`` (the first copy, then
one node for the rest).
"""

from __future__ import annotations

from nncli import modules as nm
from nncli.build import Built, LayerInfo, count_params, shape_str
from nncli.diagram.layer_view import _block_node, _LayerGraph, _leaf_node
from nncli.diagram.model import Diagram, Group, Node
from nncli.diagram.node_text import block_title
from nncli.diagram.repeat_copies import copy_params, copy_text


def graph_layer_graph(
    built: Built, expand: bool = False, depth: int | None = None, rankdir: str = "TB", expand_one: bool = False
) -> Diagram:
    """Several sources and sinks: see the module's docstring."""
    maker = _LayerGraph(expand, depth, expand_one)
    nodes: dict[str, tuple[str, tuple]] = {}  # tensor name -> (node id, shape)
    for name, shape, dtype, _ in built.inputs:
        lines = [("title", f"input {name}"), ("args", shape_str(shape) + ("" if dtype == "float32" else f" {dtype}"))]
        maker.add(Node(f"input_{name}", "input", "io", type="input", name=name, lines=lines, out_shape=shape))
        nodes[name] = (f"input_{name}", shape)
    last = _elements(maker, built.layers, nodes, nodes[built.inputs[0][0]], None, 0)
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


def _elements(maker: _LayerGraph, infos: list, nodes: dict, last: tuple, group: str | None, level: int) -> tuple:
    """Draw an element list in order, naming each named output in ``nodes``; the last output."""
    for info in infos:
        last, sums = _element(maker, info, nodes, last, group, level)
        if info.spec.name:
            nodes[info.spec.name] = last
        nodes.update((acc, sums.get(acc, last)) for acc in getattr(info, "accumulated", {}))
    return last


def _element(
    maker: _LayerGraph, info: LayerInfo, nodes: dict, last: tuple, group: str | None, level: int
) -> tuple[tuple[str, tuple], dict]:
    """Draw one element fed by the tensors it reads: its (node id, output shape), and where the
    names a Repeat sums over its copies (``accumulate``) were drawn, when its copies open."""
    reads = [nodes[r] for r in info.reads]
    spec = info.spec
    first = nodes[spec.source] if spec.source else (reads[0] if info.type == "Merge" else last)
    graph_block = isinstance(info.module, (nm.GraphBlock, nm.GraphRepeat))
    if graph_block and not info.shared and maker.opens(level):
        if isinstance(info.module, nm.GraphRepeat) and (maker.expand or maker.expand_one):
            return open_copies(maker, info, nodes, first, group, level)
    extra = reads[1:] if info.type == "Merge" else [nodes[spec.memory]] if spec.memory else []
    if graph_block and not info.shared:
        local = {c.spec.name for c in info.walk() if c.spec.name}
        inner = {r for c in info.walk() for r in c.reads if r not in local and r in nodes and r != spec.source}
        extra += [nodes[r] for r in sorted(inner)]  # names read inside the block (a decoder's memory)
    key = f"use{info.index}_{info.fqn.replace('.', '_')}"  # a shared module's node is one per use
    if info.shared or graph_block:
        node = (
            _block_node(info, key, group)
            if info.children or info.type in ("Block", "Repeat")
            else _leaf_node(info, key, group)
        )
        if info.shared:
            node.lines.append(("note", f"shared with {info.shared}"))
            node.attrs["style"] = "dashed,rounded,filled"
        maker.add(node)
        maker.edge(first[0], node.id, first[1], "data")
        out = (node.id, info.out_shape)
    else:
        out = maker.layer(info, first[0], info.in_shape, level, group, "data")
    for src, shape in extra:  # the second tensor: memory, or the Merge's further operands
        maker.edge(src, out[0], shape, "data")
    return out, {}


def open_copies(maker: _LayerGraph, info: LayerInfo, nodes: dict, first: tuple, group: str | None, level: int):
    """A Repeat whose copies read names, opened: every copy (``--expand``) or the first and one
    node for the rest (``--expand-one``), each copy framed with its vars and its names local.
    The names it sums over its copies (``accumulate``) meet at an add node, or at the rest's node."""
    times, key = info.args["times"], f"use{info.index}_{info.fqn.replace('.', '_')}"
    shown = 1 if maker.expand_one else times
    last, summed = first, {acc: [] for acc in info.spec.accumulate}
    for k in range(shown):
        gid = f"repeat_{key}_{k + 1}"
        binds = copy_text(info, k)
        title = f"{block_title(info)} · copy {k + 1} of {times}" + (f": {binds}" if binds else "")
        params = copy_params(info, k)
        maker.groups.append(Group(gid, "repeat", f"{title} · {params:,} params", group))
        scope = dict(nodes)  # a copy's names stay inside it
        last = _elements(maker, [c for c in info.children if c.role == f"copy {k + 1}"], scope, last, gid, level + 1)
        for acc, found in summed.items():
            found.append(scope[acc])
    if maker.expand_one:
        end = maker.more(info, key, last[0], last[1], group)
        for found in summed.values():
            maker.edge(found[0][0], end[0], found[0][1], "data")
        return end, {acc: (end[0], info.accumulated[acc].shape) for acc in summed}
    sums = {}
    for acc, found in summed.items():
        shape = info.accumulated[acc].shape
        add = maker.add(
            Node(
                f"sum_{key}_{acc}",
                "merge",
                "merge",
                type=info.type,
                name=acc,
                lines=[("title", f"+ {acc}")],
                args={"merge": "add"},
                in_shape=shape,
                out_shape=shape,
                path=info.path,
                module=info.fqn,
                group=group,
                attrs={"tooltip": f"{info.path}: {acc} summed over the {times} copies"},
            )
        )
        for node, node_shape in found:
            maker.edge(node, add.id, node_shape, "data")
        sums[acc] = (add.id, shape)
    return last, sums
