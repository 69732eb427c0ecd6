"""The layer view: a node per layer, edges labelled with the tensor shape they carry.

A ``Residual`` opens into a fork, its body, its shortcut (a skip edge when it is the identity)
and an add node; a ``Parallel`` into a fork, its branches side by side (an identity branch is a
skip edge) and a merge node marked with its operation (concat, +, ×, mean, max); a ``Block``
into a framed cluster of its layers; a ``Repeat`` is one "xN" box unless expanded
(``--expand``), and ``--depth`` says how many levels of nested blocks open (a closed block is one
box listing its contents). Each layer gets a category (weight, activation, norm, ...) that
picks its style.
"""

from __future__ import annotations

from nncli.build import Built, LayerInfo, count_params, shape_str
from nncli.diagram.model import Diagram, Edge, Group, Node
from nncli.diagram.node_text import arg_parts, block_title, count, merge_text, one_line, wrap
from nncli.diagram.repeat_copies import first_copy_title, more_node, vars_lines

# An expanded Repeat with more nested layers than this is drawn without its cluster frame.
REPEAT_CLUSTER_MAX = 200

# torch.nn's own source files say what a layer is; checked on the class's module path.
_CATEGORY_BY_MODULE = {
    "activation": "activation",
    "batchnorm": "norm",
    "normalization": "norm",
    "instancenorm": "norm",
    "pooling": "pool",
    "flatten": "pool",
    "pixelshuffle": "pool",
    "upsampling": "pool",
    "padding": "pool",
    "channelshuffle": "pool",
    "fold": "pool",
    "dropout": "dropout",
    "conv": "weight",
    "sparse": "weight",
    "rnn": "weight",
}


def layer_graph(
    built: Built, expand: bool = False, depth: int | None = None, rankdir: str = "TB", expand_one: bool = False
) -> Diagram:
    """The layer view of a built (or inferred) network. See :func:`build_diagram`."""
    if built.graph:  # several inputs or outputs: sources and sinks by name
        from nncli.diagram.graph_view import graph_layer_graph

        return graph_layer_graph(built, expand, depth, rankdir, expand_one)
    maker = _LayerGraph(expand, depth, expand_one)
    inp = maker.add(
        Node(
            "input",
            "input",
            "io",
            type="input",
            lines=[("title", "input"), ("args", shape_str(built.input_shape))],
            out_shape=built.input_shape,
        )
    )
    last, shape = maker.sequence(built.layers, inp.id, built.input_shape, 0, None, "data")
    out = maker.add(
        Node(
            "output",
            "output",
            "io",
            type="output",
            lines=[("title", "output"), ("args", shape_str(built.output_shape))],
            in_shape=built.output_shape,
        )
    )
    maker.edge(last, out.id, shape, "data")
    total = count_params(built.model)[0]
    return Diagram(
        built.spec.name,
        "layers",
        rankdir,
        built.input_shape,
        built.output_shape,
        total,
        maker.nodes,
        maker.edges,
        maker.groups,
    )


class _LayerGraph:
    """Walks LayerInfos, adding nodes, edges and clusters; every edge carries its source's output."""

    def __init__(self, expand: bool, depth: int | None, expand_one: bool = False) -> None:
        self.expand = expand
        self.expand_one = expand_one  # open each Repeat's first copy, the rest one node
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

    def sequence(
        self, infos: list[LayerInfo], src: str, shape: tuple, level: int, group: str | None, kind: str
    ) -> tuple[str, tuple]:
        """Chain ``infos`` after node ``src``; returns the last node and the shape it gives."""
        for info in infos:
            src, shape = self.layer(info, src, shape, level, group, kind)
        return src, shape

    def layer(
        self, info: LayerInfo, src: str, shape: tuple, level: int, group: str | None, kind: str
    ) -> tuple[str, tuple]:
        # The builder chains shapes the same way; a mismatch here is a bug in this walk.
        assert tuple(shape) == tuple(info.in_shape), (info.path, shape, info.in_shape)
        key = info.fqn.replace(".", "_")
        copy = _copy_note(info, self.copies.get(info.fqn))
        if info.type == "Residual" and self.opens(level):
            return self.residual(info, key, src, shape, level, group, kind, copy)
        if info.type == "Parallel" and self.opens(level):
            return self.parallel(info, key, src, shape, level, group, kind, copy)
        if info.type == "Block" and self.opens(level):
            title = block_title(info) + (f" ({copy})" if copy else "")
            gid = f"block_{key}"
            self.groups.append(Group(gid, "block", f"{title} · {info.params:,} params", group))
            return self.sequence(info.children, src, shape, level + 1, gid, kind)
        if info.type == "Repeat" and self.expand_one and self.opens(level):
            return self.first_copy(info, key, src, shape, level, group, kind)
        if info.type == "Repeat" and self.expand and self.opens(level):
            self.copies.update((c.fqn, info.args["times"]) for c in info.children)
            # A cluster frames the copies; dot's cluster layout grows fast with its size (a
            # large framed Repeat dominates the layout), so a huge Repeat goes unframed and each node
            # keeps its "copy k" note instead.
            if sum(1 for _ in info.walk()) - 1 > REPEAT_CLUSTER_MAX:
                return self.sequence(info.children, src, shape, level + 1, group, kind)
            gid = f"repeat_{key}"
            self.groups.append(Group(gid, "repeat", block_title(info) + f" · {info.params:,} params", group))
            return self.sequence(info.children, src, shape, level + 1, gid, kind)
        node = self.add(
            _block_node(info, key, group, copy) if info.type in BLOCK_TYPES else _leaf_node(info, key, group, copy)
        )
        self.edge(src, node.id, shape, kind)
        return node.id, info.out_shape

    def first_copy(
        self, info: LayerInfo, key: str, src: str, shape: tuple, level: int, group: str | None, kind: str
    ) -> tuple[str, tuple]:
        """A Repeat's first copy framed with the vars it binds, then one node for the other copies."""
        gid = f"repeat_{key}"
        self.groups.append(Group(gid, "repeat", first_copy_title(info, block_title(info)), group))
        copy = [c for c in info.children if c.role == "copy 1"]
        end, end_shape = self.sequence(copy, src, shape, level + 1, gid, kind)
        return self.more(info, key, end, end_shape, group)

    def more(self, info: LayerInfo, key: str, end: str, end_shape: tuple, group: str | None) -> tuple[str, tuple]:
        """After the first copy ends at node ``end``: the "×(N-1) more" node (none for one copy)."""
        if info.args["times"] == 1:
            return end, end_shape
        node = self.add(more_node(info, key, group))
        self.edge(end, node.id, end_shape, "data")
        return node.id, info.out_shape

    def fork(
        self,
        info: LayerInfo,
        category: str,
        key: str,
        src: str,
        shape: tuple,
        group: str | None,
        kind: str,
        copy: str | None,
    ) -> tuple[str, Node, dict]:
        """A Residual's or Parallel's frame and its fork node, fed from ``src``: (group id, fork,
        the node fields the block's own nodes share)."""
        gid = f"{category}_{key}"
        title = block_title(info) + (f" ({copy})" if copy else "")
        self.groups.append(Group(gid, category, f"{title} · {info.params:,} params", group))
        common = dict(type=info.type, name=info.spec.name, path=info.path, module=info.fqn, group=gid, params=0)
        fork = self.add(
            Node(f"fork_{key}", "fork", "fork", in_shape=shape, out_shape=shape, lines=[("title", "fork")], **common)
        )
        self.edge(src, fork.id, shape, kind)
        return gid, fork, common

    def residual(
        self,
        info: LayerInfo,
        key: str,
        src: str,
        shape: tuple,
        level: int,
        group: str | None,
        kind: str,
        copy: str | None,
    ) -> tuple[str, tuple]:
        gid, fork, common = self.fork(info, "residual", key, src, shape, group, kind, copy)
        body = [c for c in info.children if c.role == "body"]
        shortcut = [c for c in info.children if c.role == "shortcut"]
        body_end, body_shape = self.sequence(body, fork.id, shape, level + 1, gid, "data")
        if shortcut:
            short_end, short_shape = self.sequence(shortcut, fork.id, shape, level + 1, gid, "shortcut")
        else:
            short_end, short_shape = fork.id, shape
        add = self.add(
            Node(
                f"add_{key}",
                "add",
                "add",
                in_shape=body_shape,
                out_shape=info.out_shape,
                lines=[("title", "+")],
                **common,
            )
        )
        self.edge(body_end, add.id, body_shape, "data")
        self.edge(short_end, add.id, short_shape, "shortcut" if shortcut else "skip")
        return add.id, info.out_shape

    def parallel(
        self,
        info: LayerInfo,
        key: str,
        src: str,
        shape: tuple,
        level: int,
        group: str | None,
        kind: str,
        copy: str | None,
    ) -> tuple[str, tuple]:
        """A fork, each branch from it side by side (identity: a skip edge), and the merge node."""
        gid, fork, common = self.fork(info, "parallel", key, src, shape, group, kind, copy)
        ends = []
        for b in range(info.args.get("branches", 0)):
            layers = [c for c in info.children if c.role == f"branch {b}"]
            if layers:
                ends.append((*self.sequence(layers, fork.id, shape, level + 1, gid, "data"), "data"))
            else:
                ends.append((fork.id, shape, "skip"))
        merge = self.add(
            Node(
                f"merge_{key}",
                "merge",
                "merge",
                in_shape=shape,
                out_shape=info.out_shape,
                lines=[("title", merge_text(info))],
                args=dict(info.args),
                **common,
            )
        )
        for end, end_shape, edge_kind in ends:
            self.edge(end, merge.id, end_shape, edge_kind)
        return merge.id, info.out_shape


# The blocks drawn as one box when they do not open.
BLOCK_TYPES = ("Residual", "Repeat", "Parallel", "Block")


def category(info: LayerInfo) -> str:
    """The style a layer is drawn in: weight, activation, norm, pool, dropout, custom or other."""
    if info.target is not None:
        return "custom"
    cls = type(info.module)
    if cls.__name__ == "Step":  # nncli's Heaviside unit
        return "activation"
    mod = cls.__module__
    if cls.__name__ == "StochasticDepth":  # drops whole examples in training, like a dropout
        return "dropout"
    if mod == "nncli.modules.tensor_ops":  # Permute, Reshape, Chunk, Mean, ...: no weights
        return "pool"
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
    lines += [("args", line) for line in wrap(arg_parts(info.args))]
    note = []
    if info.params:
        note.append(count(info.params, "param"))
    if copy:
        note.append(copy)
    if note:
        lines.append(("note", " · ".join(note)))
    return _node_of(
        info, key, "layer", category(info), lines, group, extra={"target": info.target} if info.target else {}
    )


def _node_of(info: LayerInfo, key: str, kind: str, cat: str, lines: list, group: str | None, **more) -> Node:
    """The drawn node of one layer or block: its text ``lines`` plus what the DOT and JSON keep of it."""
    return Node(
        f"n{key}",
        kind,
        cat,
        type=info.type,
        name=info.spec.name,
        lines=lines,
        args=dict(info.args),
        params=info.params,
        in_shape=info.in_shape,
        out_shape=info.out_shape,
        path=info.path,
        module=info.fqn,
        group=group,
        attrs={"tooltip": f"{info.path} (module {info.fqn})"},
        **more,
    )


def _block_node(info: LayerInfo, key: str, group: str | None, copy: str | None = None) -> Node:
    """A Residual, Repeat, Parallel or Block drawn as one box listing its contents."""
    lines = [("title", block_title(info))]
    if info.type == "Repeat":
        lines += [("args", line) for line in vars_lines(info)]
        times = info.args["times"]
        first = [c for c in info.children if c.role == "copy 1"]
        last = [c for c in info.children if c.role == f"copy {times}"]
        lines += [("args", one_line(c)) for c in first[:8]]
        if len(first) > 8:
            lines.append(("args", f"... {len(first) - 8} more"))
        if [c.args for c in first] != [c.args for c in last]:
            lines.append(("note", f"copy 1 shown; later copies take {shape_str(last[0].in_shape)}"))
    elif info.type == "Parallel":
        for b in range(info.args.get("branches", 0)):
            layers = [c for c in info.children if c.role == f"branch {b}"]
            head = f"branch {b}: "
            lines += [
                ("args", head + one_line(c) if i == 0 else " " * len(head) + one_line(c))
                for i, c in enumerate(layers[:6])
            ] or [("args", head + "identity")]
            if len(layers) > 6:
                lines.append(("args", " " * len(head) + f"... {len(layers) - 6} more"))
        lines.append(("args", "merge: " + merge_text(info)))
    elif info.type == "Block":
        lines += [("args", one_line(c)) for c in info.children[:8]]
        if len(info.children) > 8:
            lines.append(("args", f"... {len(info.children) - 8} more"))
    else:
        body = [c for c in info.children if c.role == "body"]
        shortcut = [c for c in info.children if c.role == "shortcut"]
        lines += [
            ("args", "body: " + one_line(c) if i == 0 else "      " + one_line(c)) for i, c in enumerate(body[:8])
        ]
        if len(body) > 8:
            lines.append(("args", f"      ... {len(body) - 8} more"))
        lines += [
            ("args", "shortcut: " + one_line(c) if i == 0 else "      " + one_line(c)) for i, c in enumerate(shortcut)
        ] or [("args", "shortcut: identity")]
    note = [count(info.params, "param")] if info.params else []
    if copy:
        note.append(copy)
    if note:
        lines.append(("note", " · ".join(note)))
    return _node_of(info, key, "block", "block", lines, group)
