"""``define:`` templates: a family of blocks written once and used as a layer kind anywhere.

```yaml
define:
  ConvBNReLU:
    params: {c: null, k: 3, s: 1}       # null = required
    layers: [{Conv2d: {out_channels: c, kernel_size: k, stride: s}}, BatchNorm2d, ReLU]
layers:
  - ConvBNReLU: {c: 32, s: 2}
```

A use is parsed into a ``Block`` whose vars are the template's params: the arguments given where
it is used (evaluated in the caller's scope), then the defaults of the others (which may read the
params before them). The template's layers are parsed anew at every use, with the template's own
spec paths, so an error inside them points at the template's line. Templates may use templates;
a cycle is refused when the templates are read, and an expansion that would pass the layer limit
is refused before it is made (sizes are worked out from the text, never by expanding).
Pure Python (no torch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from nncli.errors import did_you_mean
from nncli.spec.expr import FUNCTIONS, SHAPE_NAMES, ExprError, tokenize

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TEMPLATE_KEYS = ("params", "layers", "description")
# Keys of a use that are not params: what any element may carry (a Block's reserved keys and the
# named-tensor keys), passed on to the Block the use becomes.
ELEMENT_KEYS = ("name", "init", "from", "share", "tie")


@dataclass(frozen=True)
class TemplateLayers:
    """A template's raw layer list and the spec path it is written at (``define.X.layers``)."""

    data: Any
    path: tuple


@dataclass(frozen=True)
class Template:
    name: str
    params: dict  # name -> default as written (None = required)
    layers: Any  # the raw YAML list
    path: tuple  # ("define", name)


@dataclass
class Templates:
    """The spec's templates, with what the parser needs to expand them safely."""

    defined: dict = field(default_factory=dict)  # name -> Template
    sizes: dict = field(default_factory=dict)  # name -> layers one use makes (an upper bound)
    expanded: int = 0  # layers made by every use so far

    def __contains__(self, kind: str) -> bool:
        return kind in self.defined


def read_templates(parser, value: Any) -> Templates:
    """``define:``'s templates, checked (names, params, keys) and free of cycles."""
    out = Templates()
    if value is None:
        return out
    if not isinstance(value, dict):
        raise parser.fail(
            ("define",), "expected `define` to be a mapping of template name to {params, layers}", _EXAMPLE
        )
    from nncli.spec.model import BLOCKS, NNCLI_LAYERS

    for name, body in value.items():
        path = ("define", name)
        if not isinstance(name, str) or not _IDENT.match(name):
            raise parser.fail(path, f"a template name is a layer kind (letters, digits, _), found {name!r}", key=True)
        if name in NNCLI_LAYERS or name in BLOCKS:
            raise parser.fail(path, f"a template may not be called {name!r}: it is one of nncli's layers", key=True)
        if not isinstance(body, dict):
            raise parser.fail(path, f"expected template {name} as a mapping with `layers`", _EXAMPLE)
        parser.check_keys(body, path, TEMPLATE_KEYS, f"template {name}")
        if "layers" not in body:
            raise parser.fail(path, f"template {name} needs `layers`", _EXAMPLE)
        out.defined[name] = Template(
            name, _params(parser, body.get("params"), path + ("params",)), body["layers"], path
        )
    _refuse_cycles(parser, out)
    for name in out.defined:
        _size(out, name)
    return out


_EXAMPLE = (
    "define: {ConvBN: {params: {c: null, k: 3}, layers: [{Conv2d: {out_channels: c, kernel_size: k}}, BatchNorm2d]}}"
)


def _params(parser, value: Any, path: tuple) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise parser.fail(path, "expected `params` to be a mapping of name to default (null = required)")
    for key, default in value.items():
        ppath = path + (key,)
        if not isinstance(key, str) or not _IDENT.match(key) or key in SHAPE_NAMES or key in FUNCTIONS:
            raise parser.fail(ppath, f"a param may not be called {key!r}: it must be a var name", key=True)
        if isinstance(default, str):
            try:
                tokenize(default)
            except ExprError as err:
                raise parser.fail(ppath, f"bad expression {default!r}: {err.message}") from None
        elif default is not None and (isinstance(default, bool) or not isinstance(default, (int, float))):
            raise parser.fail(
                ppath, f"expected a param's default to be a number, an expression or null (required), found {default!r}"
            )
    return dict(value)


def _uses(data: Any, names) -> list[str]:
    """The template names a raw layer list uses, anywhere inside it (in order, with repeats)."""
    found = []
    if isinstance(data, list):
        for item in data:
            if isinstance(item, str) and item.strip() in names:
                found.append(item.strip())
            else:
                found += _uses(item, names)
    elif isinstance(data, dict):
        if len(data) == 1 and next(iter(data)) in names:
            found.append(next(iter(data)))
        for item in data.values():
            found += _uses(item, names)
    return found


def _refuse_cycles(parser, templates: Templates) -> None:
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for used in _uses(templates.defined[name].layers, templates.defined):
            if state.get(used) == 1:
                cycle = " -> ".join(trail[trail.index(used) :] + [name, used]) if used in trail else f"{name} -> {used}"
                raise parser.fail(
                    templates.defined[name].path + ("layers",),
                    f"templates use each other in a cycle ({cycle}): the expansion would never end",
                )
            if state.get(used) is None:
                visit(used, trail + [name])
        state[name] = 2

    for name in templates.defined:
        if name not in state:
            visit(name, [])


def _size(templates: Templates, name: str) -> int:
    """Layers one use of ``name`` makes (an upper bound counting every list item), memoised."""
    if name not in templates.sizes:

        def count(data: Any) -> int:
            total = 0
            if isinstance(data, list):
                for item in data:
                    if isinstance(item, str) and item.strip() in templates.defined:
                        total += _size(templates, item.strip())
                    elif isinstance(item, (str, dict)):
                        total += 1
                    total += count(item) if isinstance(item, (list, dict)) else 0
            elif isinstance(data, dict):
                if len(data) == 1 and next(iter(data)) in templates.defined:
                    total += _size(templates, next(iter(data)))
                for item in data.values():
                    total += count(item)
            return total

        templates.sizes[name] = 1 + count(templates.defined[name].layers)
    return templates.sizes[name]


@dataclass(frozen=True)
class Call:
    """One use of a template, ready for the parser: the Block's arguments and its vars."""

    name: str  # the template's
    args: dict  # the element keys given at the use, plus `layers` (a TemplateLayers)
    vars: dict  # param -> value as written (given, else the default)
    var_where: dict
    caller: frozenset  # the params given at the use (evaluated in the caller's scope)


def call(parser, templates: Templates, name: str, args: dict, args_path: tuple) -> Call:
    """A use of template ``name`` with ``args``: params checked, the expansion bounded."""
    from nncli.spec.limits import MAX_LAYERS

    template = templates.defined[name]
    where_defined = parser.doc.where(template.path, key=True)
    at = f"template {name} (defined at line {where_defined.line})"
    given = {k: v for k, v in args.items() if k not in ELEMENT_KEYS}
    for key in given:
        if key not in template.params:
            known = ", ".join(template.params) or "none"
            hint = did_you_mean(str(key), list(template.params)) or f"its params: {known}"
            raise parser.fail(args_path + (key,), f"{at} has no param {key!r}", hint, key=True)
    missing = [k for k, v in template.params.items() if v is None and k not in given]
    if missing:
        raise parser.fail(
            args_path,
            f"{at} needs {', '.join(f'`{m}`' for m in missing)}, found no value",
            f"e.g. `- {name}: {{{missing[0]}: ...}}`",
        )
    values, where = {}, {}
    for key, default in template.params.items():
        vpath = args_path + (key,) if key in given else template.path + ("params", key)
        value = given.get(key, default)
        checked, _ = parser.vars({key: value}, vpath[:-1])
        values[key] = checked[key]
        where[key] = parser.doc.where(vpath)
    limit = MAX_LAYERS.value()
    templates.expanded += templates.sizes[name]
    if templates.expanded > limit:
        raise parser.fail(
            args_path,
            f"the templates expand to more than {limit:,} layers (here {name}, {templates.sizes[name]:,} per use)",
            MAX_LAYERS.hint(),
        )
    element = {k: v for k, v in args.items() if k in ELEMENT_KEYS}
    element["layers"] = TemplateLayers(template.layers, template.path + ("layers",))
    return Call(name, element, values, where, frozenset(given))
