"""The ``grid:`` and ``random:`` sections of a sweep file -> :class:`~nncli.sweep.plan.Axis` objects.

An axis is a spec path (``layers[2].Repeat.times: [1, 2, 4]``), a layer type to swap
(``replace:ReLU: [ReLU, Tanh]``) or a named axis writing several paths at once
(``width: {path: [...], values: [...]}``); in ``random:`` its values may be a distribution
(``{loguniform: [1e-4, 1e-1]}``). Every mistake is a SpecError located in the sweep file.
"""

from __future__ import annotations

from typing import Any

from nncli.errors import SpecError, did_you_mean
from nncli.spec.overrides import parse_path
from nncli.spec.parse import describe_found
from nncli.spec.source import Document, Where, format_path
from nncli.sweep.plan import DISTRIBUTIONS, Axis, Target


def _fail(doc: Document, path: tuple, message: str, hint: str | None = None, *, key: bool = False) -> SpecError:
    return doc.where(path, key=key).error(message, hint)


def read_axes(doc: Document, section: Any, kind: str) -> list[Axis]:
    """The axes of one section (``kind``: "grid" or "random") of the sweep file ``doc``."""
    if not isinstance(section, dict) or not section:
        raise _fail(
            doc,
            (kind,),
            f"expected `{kind}` to be a mapping of spec path (or axis name) to "
            f"{'values' if kind == 'grid' else 'a distribution'}, found {describe_found(section)}",
            "e.g. train.lr: [0.001, 0.01]" if kind == "grid" else "e.g. train.lr: {loguniform: [1e-4, 1e-1]}",
        )
    out = []
    for key, spec in section.items():
        where = doc.where((kind, key), key=True)
        vpath = (kind, key)
        if isinstance(spec, dict) and ("path" in spec or "replace" in spec):
            out.append(_named_axis(doc, key, spec, kind, where))
            continue
        key_s = str(key)
        if key_s.startswith("replace:"):
            layer_type = key_s[len("replace:") :].strip()
            if not layer_type:
                raise _fail(doc, vpath, "expected `replace:<LayerType>`, e.g. `replace:ReLU`", key=True)
            targets = (Target(replace=layer_type),)
        else:
            targets = (Target(path=parse_path(key_s, where)),)
        dkey = None
        if isinstance(spec, dict) and kind == "random" and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS:
            ((dkey, spec),) = spec.items()
            vpath = vpath + (dkey,)
        out.append(_values(doc, key_s, targets, dkey, spec, vpath, where, kind))
    return out


def _named_axis(doc: Document, key: Any, spec: dict, kind: str, where: Where) -> Axis:
    """``name: {path: [...] | replace: Type, values: [...] | <distribution>: ...}``."""
    vpath = (kind, key)
    allowed = ("path", "replace", "values") + (DISTRIBUTIONS if kind == "random" else ())
    for k in spec:
        if k not in allowed:
            raise _fail(
                doc,
                vpath + (k,),
                f"unknown key {k!r} in axis {key!r}",
                did_you_mean(str(k), allowed) or "allowed: " + ", ".join(allowed),
                key=True,
            )
    if "path" in spec and "replace" in spec:
        raise _fail(doc, vpath, "expected `path` or `replace` in an axis, not both")
    if "path" in spec:
        paths = spec["path"] if isinstance(spec["path"], list) else [spec["path"]]
        if not paths or not all(isinstance(p, str) for p in paths):
            raise _fail(
                doc, vpath + ("path",), f"expected a spec path or a list of them, found {describe_found(spec['path'])}"
            )
        pwhere = doc.where(vpath + ("path",))
        targets = tuple(Target(path=parse_path(p, pwhere)) for p in paths)
    else:
        if not isinstance(spec["replace"], str):
            raise _fail(
                doc, vpath + ("replace",), f"expected a layer type name, found {describe_found(spec['replace'])}"
            )
        targets = (Target(replace=spec["replace"].strip()),)
    rest = {k: v for k, v in spec.items() if k not in ("path", "replace")}
    if len(rest) != 1:
        raise _fail(
            doc,
            vpath,
            f"expected `values` {'or one distribution ' if kind == 'random' else ''}"
            f"in axis {key!r}, found {', '.join(rest) or 'none'}",
        )
    ((dkey, dval),) = rest.items()
    return _values(doc, str(key), targets, dkey if dkey != "values" else None, dval, vpath + (dkey,), where, kind)


def _values(
    doc: Document,
    name: str,
    targets: tuple[Target, ...],
    dist: str | None,
    value: Any,
    vpath: tuple,
    where: Where,
    kind: str,
) -> Axis:
    """An axis from its values (a list, or a `choice`) or its distribution's bounds."""
    if dist is None or dist == "choice":
        if not isinstance(value, list) or not value:
            raise _fail(
                doc,
                vpath,
                f"expected a non-empty list of values for {name!r}, found {describe_found(value)}",
                "a grid axis lists its values: [1, 2, 4]"
                + ("; a random axis may also be {uniform: [lo, hi]}" if kind == "random" else ""),
            )
        seen = []
        for v in value:
            if v in seen:
                raise _fail(doc, vpath, f"value {v!r} is listed twice for {name!r}")
            seen.append(v)
        if any(t.replace for t in targets):
            for i, v in enumerate(value):
                if not _is_layer_item(v):
                    raise _fail(
                        doc,
                        vpath + (i,),
                        f"expected a layer (a class name like `Tanh` or "
                        f"`{{LeakyReLU: {{negative_slope: 0.1}}}}`), found {describe_found(v)}",
                    )
        return Axis(name, targets, tuple(value), "choice", where=where)
    if kind != "random":
        raise _fail(doc, vpath, "distributions belong in `random:`; a grid axis lists its values")
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
    ):
        raise _fail(doc, vpath, f"expected [low, high] for {dist}, found {describe_found(value)}")
    low, high = value
    if low > high:
        raise _fail(doc, vpath, f"expected low <= high, found [{low}, {high}]")
    if dist == "loguniform" and low <= 0:
        raise _fail(doc, vpath, f"expected loguniform bounds > 0, found [{low}, {high}]")
    if dist == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise _fail(doc, vpath, f"expected integer bounds for int, found [{low}, {high}]")
    if any(t.replace for t in targets):
        raise _fail(doc, vpath, "a `replace` axis takes layer names: use `values` or `choice`")
    return Axis(name, targets, (), dist, float(low), float(high), where=where)


def _check_overlaps(axes: list[Axis]) -> None:
    """Two axes writing the same field (or one inside the other) would silently fight: refuse."""
    seen: list[tuple[tuple, Axis]] = []
    for a in axes:
        for t in a.targets:
            if not t.path:
                continue
            for path, other in seen:
                n = min(len(path), len(t.path))
                if path[:n] == t.path[:n] and other is not a:
                    raise a.where.error(
                        f"axis {a.name!r} writes {format_path(t.path)}, which axis {other.name!r} "
                        f"also writes ({format_path(path)})",
                        "give each field to one axis; a named axis can set several paths",
                    )
            seen.append((t.path, a))


def _is_layer_item(v: Any) -> bool:
    return (isinstance(v, str) and bool(v.strip())) or (
        isinstance(v, dict) and len(v) == 1 and isinstance(next(iter(v)), str)
    )
