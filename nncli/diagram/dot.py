"""DOT source of a :class:`~nncli.diagram.model.Diagram`: nodes, clusters, edge styles, title and legend.

Built with the ``graphviz`` Python package, which needs no ``dot`` binary; every file starts with
:data:`DOT_SIGNATURE` (graphviz writes the digraph's comment first), so a later run knows a .dot
is its own.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import graphviz

from nncli.diagram.styles import (
    ADD,
    FORK,
    GROUP_STYLES,
    MERGE_SYMBOL,
    MERGE_WORD,
    NEGATIVE,
    POSITIVE,
    SKIP_COLOR,
    STYLES,
)

if TYPE_CHECKING:
    from nncli.diagram.model import Diagram, Group, Node

# The first line of every DOT file nncli writes: how a later run knows a .dot is its own.
DOT_SIGNATURE = "// nncli diagram"


def to_digraph(d: Diagram) -> graphviz.Digraph:
    """The diagram as a ``graphviz.Digraph``: clusters nested, nodes in data order, then the legend."""
    g = _new_digraph(d)
    _emit_nodes(g, d)
    _emit_edges(g, d)
    _emit_legend(g, d)
    return g


def _new_digraph(d: Diagram) -> graphviz.Digraph:
    """An empty digraph with the view's graph, node and edge attributes and the title."""
    neurons = d.view == "neurons"
    return graphviz.Digraph(
        # escape(): a backslash in a user's name stays a backslash (not a DOT \n or \l), and a
        # name like "<x>" is not taken for an HTML label.
        name=graphviz.escape(d.name),
        comment=f"nncli diagram: {' '.join(d.name.splitlines())} ({d.view} view)",
        graph_attr={
            "rankdir": d.rankdir,
            "fontname": "Helvetica",
            "labelloc": "t",
            "labeljust": "c",
            "label": _html_title(d),
            "fontsize": "12",
            "nodesep": "0.12" if neurons else "0.25",
            "ranksep": "1.2" if neurons else "0.3",
            "splines": "line" if neurons else "spline",
            "outputorder": "edgesfirst",
            # neurons: every order of a dense layer crosses about as much, and dot's
            # crossing minimisation only rotated units (h3, h4, h1, h2): keep data order
            **({"ordering": "out", "mclimit": "0.01"} if neurons else {}),
        },
        node_attr={"fontname": "Helvetica", "fontsize": "10", "margin": "0.08,0.03"},
        edge_attr={
            "fontname": "Helvetica",
            "fontsize": "8",
            "fontcolor": "#444444",
            "arrowsize": "0.4" if neurons else "0.6",
            "color": "#444444",
        },
    )


def _emit_nodes(g: graphviz.Digraph, d: Diagram) -> None:
    """Every node, each inside its (nested) clusters."""
    neurons = d.view == "neurons"
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
            style = GROUP_STYLES[grp.kind]
            sub.attr(
                label=graphviz.escape(grp.label),
                style=style[0],
                color=style[1],
                fontsize="10",
                labeljust="l",
                fontcolor="#333333",
                **{"class": grp.kind},
            )
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


def _emit_edges(g: graphviz.Digraph, d: Diagram) -> None:
    """Every edge: weights coloured and widened by sign and size, skips and shortcuts set apart."""
    scales = {grp.id: grp.scale for grp in d.groups}
    group_of = {n.id: n.group for n in d.nodes}
    for e in d.edges:
        attrs: dict[str, str] = {}
        if e.kind == "weight":
            if e.weight is not None:
                scale = scales.get(group_of[e.dst] or "", 0.0) or 1.0
                attrs = {
                    "color": POSITIVE if e.weight >= 0 else NEGATIVE,
                    "penwidth": f"{0.3 + 2.7 * abs(e.weight) / scale:.2f}",
                    "tooltip": f"w = {e.weight:.4g}",
                }
            else:
                attrs = {"color": "#777777", "penwidth": "0.6"}
        else:
            attrs["label"] = e.label
            if e.kind in ("skip", "shortcut"):
                attrs.update(color=SKIP_COLOR, fontcolor=SKIP_COLOR, penwidth="1.6")
            if e.kind == "skip":
                attrs["class"] = "skip"
        g.edge(e.src, e.dst, **attrs)


def _emit_node(g: graphviz.Digraph, node: Node, neurons: bool) -> None:
    if node.kind == "fork":
        attrs = dict(FORK)
        attrs["tooltip"] = (
            f"{node.path}: fork (x goes to every branch)"
            if node.type == "Parallel"
            else f"{node.path}: fork (x goes to the body and the shortcut)"
        )
    elif node.kind == "merge":
        symbol = node.lines[0][1]
        attrs = dict(MERGE_SYMBOL if len(symbol) == 1 else MERGE_WORD)
        attrs["label"] = symbol
        attrs["tooltip"] = f"{node.path}: merge the branches ({node.args.get('merge', 'concat')})"
    elif node.kind == "add":
        attrs = dict(ADD)
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
    return (
        f'<<FONT POINT-SIZE="16"><B>{html.escape(d.name, quote=False)}</B></FONT>'
        f"<BR/>{html.escape(d.title, quote=False)} · {view}<BR/> >"
    )


def _emit_legend(g: graphviz.Digraph, d: Diagram) -> None:
    rows = ['<TR><TD BORDER="0"><B>legend</B></TD></TR>']
    if d.view == "layers":
        for cat in d.categories():
            text, attrs = STYLES[cat]
            fill = attrs.get("fillcolor", "#ffffff") if "filled" in attrs.get("style", "") else "#ffffff"
            rows.append(
                f'<TR><TD BGCOLOR="{fill}" COLOR="{attrs.get("color", "#000000")}">'
                f"{html.escape(text, quote=False)}</TD></TR>"
            )
        if any(e.kind in ("skip", "shortcut") for e in d.edges):
            rows.append(
                f'<TR><TD BORDER="0"><FONT COLOR="{SKIP_COLOR}">red edges: skip connection '
                f"(shortcut, identity branch); ● fork, ⊕ add</FONT></TD></TR>"
            )
        if any(n.kind == "merge" for n in d.nodes):
            rows.append(
                '<TR><TD BORDER="0">Parallel: branches side by side, merged by concat, +, ×, mean or max</TD></TR>'
            )
        rows.append('<TR><TD BORDER="0">edge label: tensor shape, N = batch</TD></TR>')
    else:
        rows += [f'<TR><TD BORDER="0">{html.escape(note, quote=False)}</TD></TR>' for note in d.notes]
        rows.append('<TR><TD BORDER="0">x: inputs, h: hidden units, y: outputs</TD></TR>')
    label = '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="2" CELLPADDING="3">' + "".join(rows) + "</TABLE>>"
    g.node("legend", label=label, shape="plaintext", fontsize="9", margin="0", **{"class": "legend"})
