"""A Repeat's copies as the diagram shows them: the vars each copy binds (``index``, ``each``), and
the node that stands for the copies after the first when one copy is opened (``--expand-one``).

The vars are shown as the spec writes them (an ``each`` entry's expression stays its text): they
say which copy is which, the layers' own arguments already show the values they gave.
"""

from __future__ import annotations

from nncli.build import LayerInfo
from nncli.diagram.model import Node
from nncli.diagram.node_text import count

EACH_SHOWN = 6  # each-entries listed in a box; the rest are counted


def copy_vars(info: LayerInfo, copy: int) -> list[tuple[str, object]]:
    """The vars copy ``copy`` (0-based) of a Repeat binds: its index, then its each-entry."""
    spec = info.spec
    found: list[tuple[str, object]] = []
    if getattr(spec, "index", None):
        found.append((spec.index, copy))
    each = getattr(spec, "each", None)
    if each and copy < len(each):
        found += list(each[copy].items())
    return found


def copy_text(info: LayerInfo, copy: int) -> str:
    """ "i = 0" or "m = 2, n = 3, first = 3": what copy ``copy`` binds ("" when nothing)."""
    return ", ".join(f"{k} = {v}" for k, v in copy_vars(info, copy))


def vars_lines(info: LayerInfo, first: int = 0) -> list[str]:
    """The vars of copies ``first``.. of a Repeat, a line each: "i = 0..9", "copy 2: c = 64", ..."""
    spec, times = info.spec, info.args["times"]
    if first >= times:
        return []
    lines = []
    if getattr(spec, "index", None):
        lines.append(f"{spec.index} = {first}" + (f"..{times - 1}" if times - 1 > first else ""))
    if getattr(spec, "each", None):
        shown = range(first, min(times, first + EACH_SHOWN))
        lines += [f"copy {k + 1}: " + ", ".join(f"{a} = {v}" for a, v in spec.each[k].items()) for k in shown]
        if times > first + EACH_SHOWN:
            lines.append(f"... {times - first - EACH_SHOWN} more")
    return lines


def copy_params(info: LayerInfo, copy: int) -> int:
    """Parameters of copy ``copy`` (0-based): its top layers' counts."""
    return sum(c.params for c in info.children if c.role == f"copy {copy + 1}")


def more_node(info: LayerInfo, key: str, group: str | None) -> Node:
    """The copies after the first, as one box: "×(N-1) more", their vars and parameters."""
    times = info.args["times"]
    rest = info.params - copy_params(info, 0)
    lines = [("title", f"×{times - 1} more"), ("args", f"copies 2..{times} of {info.type}")]
    lines += [("args", line) for line in vars_lines(info, 1)]
    accumulate = getattr(info.spec, "accumulate", ())
    if accumulate:
        lines.append(("args", "sums " + ", ".join(accumulate) + " over all copies"))
    if rest:
        lines.append(("note", count(rest, "param")))
    first = [c for c in info.children if c.role == "copy 2"]
    return Node(
        f"more_{key}",
        "block",
        "block",
        type=info.type,
        name=info.spec.name,
        lines=lines,
        args=dict(info.args),
        params=rest,
        in_shape=first[0].in_shape if first else info.out_shape,
        out_shape=info.out_shape,
        path=info.path,
        module=info.fqn,
        group=group,
        attrs={"tooltip": f"{info.path} copies 2..{times} (module {info.fqn})"},
    )


def first_copy_title(info: LayerInfo, title: str) -> str:
    """A frame's title for the opened first copy: "Repeat ×10 · copy 1 of 10: i = 0 · 13,664 params"."""
    times = info.args["times"]
    binds = copy_text(info, 0)
    return f"{title} · copy 1 of {times}" + (f": {binds}" if binds else "") + f" · {copy_params(info, 0):,} params"
