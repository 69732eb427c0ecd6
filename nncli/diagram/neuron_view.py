"""The neuron view: the classical picture of a small MLP, a node per unit and an edge per weight.

Only MLPs fit (Linear layers with shape-keeping, parameter-free layers between them), and only
small ones: past :data:`NEURON_MAX_NODES` units or :data:`NEURON_MAX_EDGES` weights the picture
is refused. ``weights=True`` colours and widens each edge by its initial weight.
"""

from __future__ import annotations

from typing import Any

from nncli.build import Built, LayerInfo, count_params, shape_str
from nncli.diagram.model import Diagram, Edge, Group, Node
from nncli.diagram.node_text import arg_parts
from nncli.errors import InputError
from nncli.spec import Spec

# The neuron view draws every unit and every weight; past this dot's layout gets slow and the
# picture turns into a grey blur. custom-swish.yaml (2-32-32-2: 68 units, 1,152 weights) fits.
NEURON_MAX_NODES = 200
NEURON_MAX_EDGES = 2_000


def neuron_graph(built: Built, weights: bool = False, seed: int = 0, rankdir: str = "LR") -> Diagram:
    """The neuron view of a small MLP: a node per unit, an edge per weight. See :func:`build_diagram`.

    Raises:
        InputError: a layer other than Linear or a shape-keeping parameter-free layer (activation,
            Dropout, ...), an input that is not a vector, or more than NEURON_MAX_NODES units /
            NEURON_MAX_EDGES weights.
    """
    spec = built.spec
    stages = _stages(built)
    _check_size(spec, stages)
    modules = None
    if weights:
        from nncli.build import build_model

        real = build_model(spec, device="cpu", seed=seed)
        modules = {info.fqn: info.module for info in real.walk()}

    nodes: list[Node] = []
    edges: list[Edge] = []
    groups: list[Group] = []
    prev_ids: list[str] = []
    for k, stage in enumerate(stages):
        prev_ids = _draw_stage(k, stage, len(stages) - 1, modules, prev_ids, nodes, edges, groups)
    if weights:
        notes = [
            f"edge colour: sign of the initial weight (seed {seed}): blue +, red −",
            "edge width: |weight| / largest |weight| of its layer",
            "biases: on each unit's tooltip and in --json",
        ]
    else:
        notes = ["one edge per weight; biases not drawn (one per unit)"]
    return Diagram(
        spec.name,
        "neurons",
        rankdir,
        built.input_shape,
        built.output_shape,
        count_params(built.model)[0],
        nodes,
        edges,
        groups,
        notes,
    )


def _stages(built: Built) -> list[list[Any]]:
    """The MLP's stages: ``[linear LayerInfo or None for the input, units, [marker layers after it]]``.

    Raises:
        InputError: the input is not a vector, or a layer is neither Linear nor shape-keeping
            and parameter-free.
    """
    spec = built.spec
    if len(built.input_shape) != 1:
        raise InputError(
            f"the neuron view draws MLPs on vector inputs; {spec.name}'s input is {shape_str(built.input_shape)}",
            file=_file(spec),
            spec_path="input",
            hint="draw it with the layer view (the default)",
        )
    stages: list[list[Any]] = [[None, built.input_shape[0], []]]
    for info in _leaves(built.layers):
        if info.type in ("Parallel", "Residual"):
            # Branches that merge give a unit several incoming paths; the one-edge-per-weight
            # picture of a chain of layers cannot show them.
            what = (
                "branches merged by " + info.args.get("merge", "concat")
                if info.type == "Parallel"
                else "body(x) + shortcut(x)"
            )
            raise InputError(
                f"the neuron view draws a chain of Linear layers; {info.path} is a {info.type} ({what}), "
                "which it cannot draw",
                file=info.spec.where.file,
                line=info.spec.where.line,
                column=info.spec.where.column,
                spec_path=info.path,
                hint="draw it with the layer view (the default): the branches side by side",
            )
        if info.type == "Linear":
            stages.append([info, info.args["out_features"], []])
        elif info.params == 0 and tuple(info.in_shape) == tuple(info.out_shape):
            stages[-1][2].append(info)
        else:
            raise InputError(
                f"the neuron view draws MLPs: Linear layers with parameter-free, shape-keeping layers "
                f"(activations, Dropout) between them; {info.path} is {info.type} "
                f"({shape_str(info.in_shape)} -> {shape_str(info.out_shape)}, {info.params:,} params)",
                file=info.spec.where.file,
                line=info.spec.where.line,
                column=info.spec.where.column,
                spec_path=info.path,
                hint="draw it with the layer view (the default)",
            )
    return stages


def _check_size(spec: Spec, stages: list[list[Any]]) -> None:
    """Refuse a picture past NEURON_MAX_NODES units or NEURON_MAX_EDGES weights."""
    n_nodes = sum(s[1] for s in stages)
    n_edges = sum(a[1] * b[1] for a, b in zip(stages, stages[1:], strict=False))
    if n_nodes > NEURON_MAX_NODES or n_edges > NEURON_MAX_EDGES:
        raise InputError(
            f"the neuron view of {spec.name} would draw {n_nodes:,} nodes and {n_edges:,} edges; "
            f"the limit is {NEURON_MAX_NODES:,} nodes and {NEURON_MAX_EDGES:,} edges",
            file=_file(spec),
            hint="draw it with the layer view (the default): one node per layer",
        )


def _stage_label(k: int, last: int, linear: LayerInfo | None, units: int, markers: list) -> str:
    """The caption of stage ``k``'s group: its role, its Linear and what follows it."""
    marks = ", ".join(_marker_text(m) for m in markers)
    if k == 0:
        return f"input: {units}" + (f" · {marks}" if marks else "")
    role = "output" if k == last else f"hidden layer {k}"
    what = f"{linear.spec.name}: Linear" if linear.spec.name else "Linear"
    return f"{role}: {what} {linear.args['in_features']} → {units} · {marks or 'no activation'}"


def _draw_stage(
    k: int,
    stage: list[Any],
    last: int,
    modules: dict | None,
    prev_ids: list[str],
    nodes: list[Node],
    edges: list[Edge],
    groups: list[Group],
) -> list[str]:
    """Append stage ``k``'s group, its units and the weights into it; returns the units' ids."""
    linear, units, markers = stage
    letter = "x" if k == 0 else ("y" if k == last else "h")
    label = _stage_label(k, last, linear, units, markers)
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
        node = Node(
            f"u{k}_{j}",
            "unit",
            cat,
            type=linear.type if linear else "input",
            name=linear.spec.name if linear else None,
            lines=[("title", letter + _subscript(j + 1))],
            path=linear.path if linear else "input",
            module=linear.fqn if linear else None,
            group=gid,
            extra=extra,
            attrs={"tooltip": f"{label}, unit {j + 1}" + (f", bias {float(b[j]):.3g}" if b is not None else "")},
        )
        nodes.append(node)
        ids.append(node.id)
    if k > 0:
        # weight (out, in): the edge from unit i of the previous layer to unit j is w[j, i]
        for j, dst in enumerate(ids):
            for i, src in enumerate(prev_ids):
                edges.append(Edge(src, dst, "weight", None, float(w[j, i]) if w is not None else None))
        if w is not None and w.numel():
            groups[-1].scale = float(w.abs().max())
    return ids


def _leaves(infos: list[LayerInfo]):
    """Layers in the order data meets them, Repeat copies and Blocks unrolled; a Residual or a
    Parallel is refused by the caller."""
    for info in infos:
        if info.type in ("Repeat", "Block"):
            yield from _leaves([c for c in info.children])
        else:
            yield info


def _marker_text(info: LayerInfo) -> str:
    parts = arg_parts(info.args)
    return info.type + (f"({', '.join(parts)})" if parts else "")


_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _subscript(n: int) -> str:
    return str(n).translate(_SUB)


def _file(spec: Spec) -> str | None:
    return str(spec.path) if spec.path else None
