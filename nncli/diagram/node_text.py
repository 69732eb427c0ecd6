"""How a layer reads inside a node's label: constructor arguments, a block's title, one-line summaries."""

from __future__ import annotations

from typing import Any

from nncli.build import LayerInfo

# The merge node of a Parallel shows its operation: a symbol for the arithmetic ones.
MERGE_SYMBOLS = {"concat": "concat", "add": "+", "mul": "×", "mean": "mean", "max": "max"}


def merge_text(info: LayerInfo) -> str:
    """ "concat (dim 1)", "+", "×", "mean", "max": a Parallel's merge as its node shows it."""
    merge = info.args.get("merge", "concat")
    text = MERGE_SYMBOLS.get(merge, merge)
    return f"{text} (dim {info.args.get('dim', 1)})" if merge == "concat" else text


def block_title(info: LayerInfo) -> str:
    if info.type == "Repeat":
        kind = f"Repeat ×{info.args['times']}"
    elif info.type == "Parallel":
        kind = f"Parallel ({info.args.get('branches', 0)} branches, {info.args.get('merge', 'concat')})"
    elif getattr(info.spec, "template", None):  # a use of a `define:` template: its name, the numbers given
        given = getattr(info.spec, "caller", ())
        numbers = [f"{k} = {v}" for k, v in (info.spec.vars or {}).items() if k in given and _number(v)]
        kind = info.spec.template + (f" ({', '.join(numbers)})" if numbers else "")
    else:
        kind = info.type
    return f"{info.spec.name}: {kind}" if info.spec.name else kind


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def one_line(info: LayerInfo) -> str:
    """A layer in one line, for the contents of a collapsed block."""
    if info.type == "Residual":
        n_body = sum(c.role == "body" for c in info.children)
        n_short = sum(c.role == "shortcut" for c in info.children)
        return f"Residual (body {n_body} layers, shortcut {f'{n_short} layers' if n_short else 'identity'})"
    if info.type == "Repeat":
        return f"Repeat ×{info.args['times']} ({len(info.children) // info.args['times']} layers each)"
    if info.type == "Parallel":
        return f"Parallel ({info.args.get('branches', 0)} branches → {merge_text(info)})"
    if info.type == "Block":
        kind = block_title(info) if getattr(info.spec, "template", None) else "Block"
        return f"{kind} ({len(info.children)} layers)"
    parts = arg_parts(info.args)
    return info.type + (" " + ", ".join(parts) if parts else "")


def arg_parts(args: dict) -> list[str]:
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


def wrap(parts: list[str], width: int = 34) -> list[str]:
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            lines.append(part)
    return lines


def count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")
