"""Named tensors in a spec: ``inputs``, ``outputs``, and ``from``/``share``/``tie``/``memory`` on
elements, plus ``Merge``; parsed here and their names resolved against the scopes they live in.

Scoping: an element sees the inputs, the names defined before it in its own list and those
defined before the enclosing element in every enclosing list. A name defined inside a ``Block`` or
a ``Repeat`` copy is not visible outside it, except the names a ``Repeat`` lists under
``accumulate`` (summed over its copies). Pure Python: no torch.
"""

from __future__ import annotations

import re
from typing import Any

from nncli.errors import did_you_mean
from nncli.spec.model import (
    GRAPH_MERGES,
    BlockSpec,
    InputSpec,
    LayerSpec,
    MergeSpec,
    ParallelSpec,
    RepeatSpec,
    ResidualSpec,
    Spec,
    children,
)

GRAPH_KEYS = ("from", "share", "tie", "memory")
# Layers reading a second tensor, the named `memory`.
MEMORY_LAYERS = ("CrossAttention", "TransformerDecoderLayer")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _describe(value: Any) -> str:
    from nncli.spec.parse import describe_found

    return describe_found(value)


def _name(parser, value: Any, path: tuple, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise parser.fail(
            path, f"expected `{what}` to be a tensor's name (letters, digits, _), found {_describe(value)}"
        )
    return value


def graph_keys(parser, kind: str, args: dict, args_path: tuple) -> dict:
    """The LayerSpec fields of one element's ``from``, ``share``, ``tie`` and ``memory``."""
    out: dict[str, Any] = {}
    if "from" in args and kind != "Merge":
        out["source"] = _name(parser, args["from"], args_path + ("from",), "from")
    if "share" in args:
        out["share"] = _name(parser, args["share"], args_path + ("share",), "share")
        extra = [k for k in args if k not in ("name", "from", "share")]
        if extra:
            raise parser.fail(
                args_path + (extra[0],),
                f"`share: {args['share']}` applies that element's module again: it takes no arguments or "
                f"layers of its own, found `{extra[0]}`",
                "keep only name, from and share",
                key=True,
            )
    if "memory" in args:
        if kind not in MEMORY_LAYERS:
            raise parser.fail(
                args_path + ("memory",),
                f"`memory` is the second tensor of {' and '.join(MEMORY_LAYERS)}; {kind} reads one tensor",
                key=True,
            )
        out["memory"] = _name(parser, args["memory"], args_path + ("memory",), "memory")
    elif kind in MEMORY_LAYERS and "share" not in args:
        raise parser.fail(
            args_path,
            f"{kind} needs `memory`: the name of the tensor its keys and values come from",
            f"e.g. {kind}: {{memory: enc, ...}} after an element with name: enc",
        )
    if "tie" in args:
        out["tie"] = _tie(parser, args["tie"], args_path + ("tie",))
    if out:
        out["graph_where"] = {k: parser.doc.where(args_path + (k,), key=True) for k in GRAPH_KEYS if k in args}
    return out


def _tie(parser, value: Any, path: tuple) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise parser.fail(path, f"expected `tie` as {{weight: NAME}}, found {_describe(value)}")
    return {str(k): _name(parser, v, path + (k,), f"tie.{k}") for k, v in value.items()}


def merge_spec(parser, rest: dict, args_path: tuple, common: dict) -> MergeSpec:
    """``Merge: {from: [a, b], mode: concat, dim: 1}``."""
    parser.check_keys(rest, args_path, ("from", "mode", "dim"), "Merge")
    sources = rest.get("from")
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list) or not sources:
        raise parser.fail(
            args_path, "Merge needs `from`: a list of the tensors' names", "Merge: {from: [a, b], mode: concat}"
        )
    names = tuple(_name(parser, s, args_path + ("from", i), "from") for i, s in enumerate(sources))
    mode = rest.get("mode", "concat")
    if mode not in GRAPH_MERGES:
        raise parser.fail(
            args_path + ("mode",),
            f"expected `mode` to be one of {', '.join(GRAPH_MERGES)}, found {_describe(mode)}",
            did_you_mean(str(mode), GRAPH_MERGES),
        )
    if mode == "sub" and len(names) != 2:
        raise parser.fail(args_path + ("from",), f"Merge mode sub is a - b: it takes two tensors, found {len(names)}")
    dim = rest.get("dim", 1)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim == 0:
        raise parser.fail(args_path + ("dim",), f"expected `dim` to be a nonzero integer, found {_describe(dim)}")
    where = {"from": parser.doc.where(args_path + ("from",), key=True)}
    return MergeSpec(type="Merge", args={}, **common, sources=names, merge=mode, dim=dim, graph_where=where)


def parse_inputs(parser, value: Any) -> tuple[InputSpec, ...]:
    """``inputs:`` name -> what ``input:`` takes, in forward order."""
    if not isinstance(value, dict) or not value:
        raise parser.fail(
            ("inputs",),
            f"expected `inputs` as a mapping of name to shape, found {_describe(value)}",
            "e.g. inputs: {left: [1, 28, 28], right: [1, 28, 28]}",
        )
    out = []
    for key, item in value.items():
        _name(parser, key, ("inputs", key), "inputs")
        shape, dtype, high = parser.input(item, ("inputs", key))
        out.append(InputSpec(key, shape, dtype, high, parser.doc.where(("inputs", key), key=True)))
    return tuple(out)


def parse_outputs(parser, value: Any) -> tuple[str, ...]:
    """``outputs:`` one name or a list of names."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise parser.fail(("outputs",), f"expected `outputs` as a list of names, found {_describe(value)}")
    names = tuple(_name(parser, v, ("outputs", i), "outputs") for i, v in enumerate(items))
    if len(set(names)) != len(names):
        raise parser.fail(("outputs",), f"`outputs` names a tensor twice: {list(names)}")
    return names


def uses_graph(spec: Spec) -> bool:
    """Whether a spec uses named tensors: it is then built as a Graph."""
    return bool(spec.inputs or spec.outputs) or any(_graph_element(layer) for layer in spec.walk())


def _graph_element(layer: LayerSpec) -> bool:
    return bool(
        layer.source
        or layer.share
        or layer.tie
        or layer.memory
        or isinstance(layer, MergeSpec)
        or (isinstance(layer, RepeatSpec) and layer.accumulate)
    )


def needs_env(layer: LayerSpec) -> bool:
    """Whether a Block or Repeat holds elements that read named tensors (built as a graph block)."""
    return any(_graph_element(inner) or needs_env(inner) for lst in children(layer) for inner in lst)


def references(layer: LayerSpec) -> list[tuple[str, str]]:
    """(key, name) for every name an element reads."""
    refs = [("from", layer.source)] if layer.source else []
    if isinstance(layer, MergeSpec):
        refs += [("from", s) for s in layer.sources]
    refs += [("memory", layer.memory)] if layer.memory else []
    refs += [("share", layer.share)] if layer.share else []
    refs += [("tie", name) for name in (layer.tie or {}).values()]
    return refs


def check_names(spec: Spec) -> None:
    """Every name read is defined before, in scope; names are unique among the scopes around them."""
    scope: dict[str, LayerSpec | None] = {i.name: None for i in spec.input_specs}
    local = _check_list(spec.layers, [scope])
    visible = {**scope, **local}
    for i, name in enumerate(spec.outputs):
        if name not in visible:
            raise spec.error(("outputs", i), f"`outputs`: unknown name {name!r}", _in_scope(visible))


def _check_list(layers, scopes: list[dict]) -> dict:
    local: dict[str, LayerSpec | None] = {}
    later = {layer.name for layer in layers if layer.name}
    for layer in layers:
        visible = {k: v for s in scopes + [local] for k, v in s.items()}
        for key, ref in references(layer):
            _check_ref(layer, key, ref, visible, later)
        if isinstance(layer, (BlockSpec, RepeatSpec)) and not layer.share:
            inner = _check_list(layer.layers, scopes + [local])
            for acc in getattr(layer, "accumulate", ()):
                if acc not in inner:
                    raise layer.where.error(
                        f"Repeat: `accumulate` names {acc!r}, which no element of its layers defines", _in_scope(inner)
                    )
                local[acc] = inner[acc]
        elif isinstance(layer, (ResidualSpec, ParallelSpec)):
            _refuse_inside(layer)
        if layer.name:
            _define(layer, visible, local)
    return local


def _check_ref(layer: LayerSpec, key: str, ref: str, visible: dict, later: set) -> None:
    where = layer.graph_where.get(key, layer.where)
    if ref not in visible:
        why = "is defined later: an element reads only names defined before it" if ref in later else "is not in scope"
        raise where.error(f"`{key}: {ref}`: the name {ref!r} {why}", _in_scope(visible))
    if key in ("share", "tie") and visible[ref] is None:
        raise where.error(f"`{key}: {ref}`: {ref!r} is an input, not an element with a module", _in_scope(visible))


def _define(layer: LayerSpec, visible: dict, local: dict) -> None:
    if not _NAME.match(layer.name):
        raise layer.where.error(
            f"`name: {layer.name}`: in a spec with named tensors a name is letters, digits and _", "e.g. name: encoder"
        )
    if layer.name in visible:
        other = visible[layer.name]
        at = f" (line {other.where.line})" if other is not None and other.where.line else ""
        raise layer.where.error(f"the name {layer.name!r} is already defined{at}: names are unique in their scope")
    local[layer.name] = layer


def _refuse_inside(layer: LayerSpec) -> None:
    for lst in children(layer):
        for inner in lst:
            if _graph_element(inner) or needs_env(inner):
                raise inner.where.error(
                    f"{inner.type} inside a {layer.type} reads a named tensor: named tensors are read in a "
                    "layer list, a Block or a Repeat, not inside Residual or Parallel branches",
                    "write the branches as elements with `from:` and join them with Merge",
                )


def _in_scope(visible: dict) -> str:
    return "names in scope: " + (", ".join(visible) if visible else "none")


def parse_accumulate(parser, value: Any, path: tuple) -> tuple[str, ...]:
    """A Repeat's ``accumulate``: names summed over its copies (a name or a list of names)."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise parser.fail(path, f"expected `accumulate` as a list of names, found {_describe(value)}")
    return tuple(_name(parser, v, path + (i,), "accumulate") for i, v in enumerate(items))
