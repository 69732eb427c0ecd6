"""A ``Repeat``'s family of copies: ``times``, ``index`` (the copy's number as a var) and ``each``
(one copy per mapping of vars). Pure Python (no torch).

```yaml
- Repeat: {times: 4, index: i, layers: [{Conv2d: {out_channels: "32 * 2 ** i", kernel_size: 3}}]}
- Repeat: {each: [{c: 64, n: 2}, {c: 128, n: 3}], layers: [...]}   # times is len(each)
```

``index`` binds 0 .. times-1; an ``each`` entry's values are numbers or expressions, evaluated
when its copy is entered (``in_channels`` there is the copy's input), after ``index``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nncli.spec.expr import FUNCTIONS, SHAPE_NAMES, looks_like_expression

_HINT = "Repeat: {times: 3, layers: [...]} stacks 3 fresh copies; Repeat: {each: [{c: 64}, {c: 128}], layers: [...]}"


@dataclass(frozen=True)
class Family:
    times: int | str
    index: str | None = None
    each: tuple | None = None  # one mapping of vars per copy
    each_where: tuple = ()  # per copy: var -> Where
    names: set = field(default_factory=set)  # the names the copies' layers see besides the scope's


def repeat_family(parser, rest: dict, args_path: tuple) -> Family:
    """``times``, ``index`` and ``each`` of a Repeat, checked; ``times`` is ``len(each)`` when left out."""
    from nncli.spec.parse import describe_found

    if "layers" not in rest:
        raise parser.fail(args_path, "Repeat needs `layers`", _HINT)
    if "times" not in rest and "each" not in rest:
        raise parser.fail(args_path, "Repeat needs `times` (or `each`, one copy per entry)", _HINT)
    each, each_where = _each(parser, rest.get("each"), args_path + ("each",)) if "each" in rest else (None, ())
    times = rest.get("times", len(each) if each is not None else 1)
    if isinstance(times, str) and looks_like_expression(times, parser.known_names()):
        pass  # an expression: evaluated by the builder, with the Repeat's input in scope
    elif isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise parser.fail(
            args_path + ("times",),
            f"expected `times` to be an integer >= 1 or an expression, found {describe_found(times)}",
        )
    if each is not None and "times" in rest and times != len(each):
        raise parser.fail(
            args_path + ("times",),
            f"`times` is {times!r} but `each` has {len(each)} entries: one copy per entry",
            "leave `times` out: it is the number of entries",
        )
    index = _index(parser, rest.get("index"), args_path + ("index",)) if "index" in rest else None
    names = set(each[0]) if each else set()
    if index is not None and index in names:
        raise parser.fail(args_path + ("index",), f"`index` {index!r} is also a key of `each`: one name, two values")
    return Family(times, index, each, each_where, names | ({index} if index else set()))


def _index(parser, value: Any, path: tuple) -> str:
    if not isinstance(value, str) or not value.isidentifier() or value in SHAPE_NAMES or value in FUNCTIONS:
        raise parser.fail(path, f"expected `index` to be a var name (letters, digits, _), found {value!r}")
    return value


def _each(parser, value: Any, path: tuple) -> tuple[tuple, tuple]:
    if not isinstance(value, list) or not value:
        raise parser.fail(path, "expected `each` to be a non-empty list of mappings of vars, one per copy")
    entries, wheres = [], []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or not entry:
            raise parser.fail(path + (i,), f"expected entry {i} of `each` to be a mapping of vars, found {entry!r}")
        if entries and set(entry) != set(entries[0]):
            raise parser.fail(
                path + (i,),
                f"entry {i} of `each` binds {', '.join(entry)}, entry 0 binds {', '.join(entries[0])}: "
                "every copy binds the same names",
            )
        checked, where = parser.vars(entry, path + (i,))
        entries.append(checked)
        wheres.append(where)
    return tuple(entries), tuple(wheres)
