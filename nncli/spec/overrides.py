"""Overrides on a spec's plain YAML data, before it is validated: ``PATH=VALUE`` and ``replace:``.

A path names any field of a spec the way errors print it: ``layers[2].Repeat.times``,
``layers[0].Linear.out_features``, ``train.lr``, ``data.noise``. ``replace:ReLU`` swaps every
layer of that type (nested ones inside Residual and Repeat too). A path that does not exist is
refused with what is there and a did-you-mean, located where the override was written.

Pure Python (no torch): ``nncli sweep`` writes its trials with these, and any command taking
``--set PATH=VALUE`` can.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from nncli.errors import did_you_mean
from nncli.spec.parse import TOP_LEVEL_KEYS, describe_found
from nncli.spec.source import Where, format_path

LAYER_LISTS = ("layers", "body", "shortcut")  # keys whose lists hold layer items
BRANCH_LISTS = ("branches",)  # keys whose lists hold layer lists (Parallel's branches)
_PATH_HEAD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH_STEP = re.compile(r"\[\s*(-?\d+)\s*\]|\.([A-Za-z_][A-Za-z0-9_]*)")


def parse_path(text: str, where: Where | None = None) -> tuple:
    """``"layers[2].Repeat.times"`` -> ``("layers", 2, "Repeat", "times")``.

    Raises:
        SpecError: located at ``where`` when the text is not a path.
    """
    text = str(text).strip()
    where = where or Where(None, None, None, "")
    m = _PATH_HEAD.match(text)
    if not m:
        raise where.error(
            f"expected a spec path starting with a key (`layers`, `train`, `data`, ...), found {text!r}",
            "e.g. layers[2].Repeat.times, train.lr, data.noise",
        )
    out: list = [m.group(0)]
    pos = m.end()
    while pos < len(text):
        m = _PATH_STEP.match(text, pos)
        if not m:
            raise where.error(
                f"expected a spec path like `layers[2].Repeat.times`, found {text!r} (cannot read {text[pos:]!r})"
            )
        out.append(int(m.group(1)) if m.group(1) is not None else m.group(2))
        pos = m.end()
    return tuple(out)


def apply_override(
    spec_data: dict,
    path: str | tuple,
    value: Any,
    *,
    where: Where | None = None,
    source: str = "the spec",
    written: list | None = None,
) -> dict:
    """Set one field of a spec (as plain YAML data) in place, before validation.

    Args:
        spec_data: the spec as loaded from YAML (a dict); modified in place.
        path: ``"layers[2].Repeat.times"``, ``"train.lr"``, ``"data.noise"`` (or a parsed tuple);
            ``"replace:ReLU"`` swaps every ReLU layer (also inside Residual and Repeat) for ``value``.
        value: the new value (for a replace: a layer, ``"Tanh"`` or ``{"LeakyReLU": {...}}``).
        where: where the override was written (the error's location); ``source`` names the spec.
        written: if given, the path of every field the override wrote is appended to it (one
            per replaced layer for ``replace:``), so later errors can name the override.

    Returns:
        ``spec_data``.

    Raises:
        SpecError: the path does not exist in the spec, with what is there and a did-you-mean.

    Example:
        >>> d = {"input": [2], "layers": [{"Linear": {"out_features": 8}}, "ReLU"]}
        >>> apply_override(d, "layers[0].Linear.out_features", 32)["layers"][0]
        {'Linear': {'out_features': 32}}
        >>> apply_override(d, "replace:ReLU", "Tanh")["layers"][1]
        'Tanh'
    """
    where = where or Where(None, None, None, str(path))
    if isinstance(path, str) and path.startswith("replace:"):
        replace_layers(spec_data, path[len("replace:") :].strip(), value, where, source, written)
    else:
        parsed = parse_path(path, where) if isinstance(path, str) else tuple(path)
        set_path(spec_data, parsed, value, where, source)
        if written is not None:
            written.append(parsed)
    return spec_data


def replace_layers(
    spec_data: dict, layer_type: str, value: Any, where: Where, source: str, written: list | None = None
) -> int:
    """Swap every layer of type ``layer_type`` for ``value`` (recursively); returns how many.

    ``written``, if given, gets the path of every replaced layer (``("layers", 1)``, ...).

    Raises:
        SpecError: located at ``where``, when ``source`` has no such layer (with the types it has).
    """
    found: list[str] = []
    n = _replace_layers(
        spec_data.get("layers"), layer_type, value, found, ("layers",), [] if written is None else written
    )
    if n == 0:
        hint = did_you_mean(layer_type, sorted(set(found)))
        raise where.error(
            f"no {layer_type} layer in {source} to replace",
            hint or ("layer types there: " + ", ".join(sorted(set(found))) if found else None),
        )
    return n


def _layer_type(item: Any) -> str | None:
    if isinstance(item, str):
        return item.strip()
    if isinstance(item, dict) and len(item) == 1:
        return str(next(iter(item)))
    return None


def _replace_layers(layers: Any, old: str, new: Any, seen: list[str], at: tuple, written: list) -> int:
    """Swap every layer item of type ``old`` (recursively) in the list at path ``at``; returns
    how many were swapped, appending their paths to ``written``."""
    if not isinstance(layers, list):
        return 0
    n = 0
    for i, item in enumerate(layers):
        kind = _layer_type(item)
        if kind is None:
            continue
        seen.append(kind)
        if kind == old:
            new_item = copy.deepcopy(new)
            args = item.get(kind) if isinstance(item, dict) else None
            if isinstance(new_item, str) and isinstance(args, dict) and "name" in args:
                new_item = {new_item: {"name": args["name"]}}  # keep the label; other args belonged to `old`
            layers[i] = new_item
            written.append(at + (i,))
            n += 1
            continue
        args = item.get(kind) if isinstance(item, dict) else None
        if isinstance(args, dict):
            for key in LAYER_LISTS:
                n += _replace_layers(args.get(key), old, new, seen, at + (i, kind, key), written)
            for key in BRANCH_LISTS:
                for b, branch in enumerate(args.get(key) or []):
                    n += _replace_layers(branch, old, new, seen, at + (i, kind, key, b), written)
    return n


def set_path(root: dict, path: tuple, value: Any, where: Where, source: str) -> None:
    """Set the field at a parsed ``path`` of ``root`` (spec data) to a copy of ``value``.

    Raises:
        SpecError: located at ``where``, when the path does not exist in ``source``.
    """
    node: Any = root
    layer_list = False  # is `node` a list of layer items?
    branch_list = False  # is `node` a list of layer lists (Parallel's branches)?
    for depth, part in enumerate(path):
        here = format_path(path[:depth]) or "the top level"
        last = depth == len(path) - 1
        if isinstance(part, int):
            if not isinstance(node, list):
                raise where.error(f"{here} of {source} is {describe_found(node)}, not a list: cannot index [{part}]")
            if not -len(node) <= part < len(node):
                raise where.error(
                    f"{here} of {source} has {len(node)} item(s) (indices 0..{len(node) - 1}), found index {part}"
                )
            if last:
                node[part] = copy.deepcopy(value)
                return
            item = node[part]
            if branch_list:  # branches[1] is itself a list of layers
                node, layer_list, branch_list = item, isinstance(item, list), False
                continue
            if layer_list:
                item = _layer_item(node, path, depth, where, source)
            node, layer_list = item, False
            continue
        if not isinstance(node, dict):
            raise where.error(f"{here} of {source} is {describe_found(node)}, not a mapping: no key {part!r}")
        if part not in node:
            if (depth == 0 and part in TOP_LEVEL_KEYS) or _open_mapping(path[:depth], part):
                # optional sections (train, data, init) and a layer's arguments may gain keys; what
                # the key means is checked later by the spec parser, the builder or the trainer
                node[part] = {}  # the value, when this is the last part, is set just below
            else:
                keys = [str(k) for k in node]
                raise where.error(
                    f"no {part!r} at {here} of {source}",
                    did_you_mean(str(part), keys) or ("keys there: " + ", ".join(keys) if keys else None),
                )
        if last:
            node[part] = copy.deepcopy(value)
            return
        if node[part] is None:
            node[part] = {}
        layer_list = part in LAYER_LISTS and isinstance(node[part], list)
        branch_list = part in BRANCH_LISTS and isinstance(node[part], list)
        node = node[part]


def _layer_item(layers: list, path: tuple, depth: int, where: Where, source: str) -> Any:
    """Layer ``path[depth]`` of ``layers``, opened so that the path's next parts can set its arguments."""
    part = path[depth]
    item = layers[part]
    if isinstance(item, str):
        # a bare layer (`- ReLU`) becomes `{ReLU: {}}` so its arguments can be set
        item = layers[part] = {item.strip(): {}}
    if isinstance(item, dict) and len(item) == 1:
        kind = next(iter(item))
        nxt = path[depth + 1]
        if nxt != kind:
            raise where.error(
                f"{format_path(path[: depth + 1])} of {source} is a {kind} layer, found {nxt!r} in the path",
                f"write the layer's type: {format_path(path[: depth + 1] + (kind,))}.<argument>",
            )
        if item[kind] is None:
            item[kind] = {}
    return item


def _open_mapping(parent: tuple, key: str) -> bool:
    """May an override add ``key`` under ``parent``? Into train, data and a layer's arguments: yes.

    The top level takes only the spec contract's keys and nncli's composite layers only their
    optional ones, so a misspelt key there is refused at once with a did-you-mean; a torch
    layer's new argument is checked against torch by the builder.
    """
    if not parent:
        return False
    if parent[0] in ("train", "data", "init"):
        return True
    if len(parent) >= 3 and isinstance(parent[-2], int):  # layers[i].Type: its argument mapping
        if parent[-1] in ("Repeat", "Residual", "Custom", "Parallel", "Block"):
            return key in ("shortcut", "args", "name", "init", "vars", "merge", "dim")
        return True
    return parent[-1] in ("init", "args")


def make_paths_absolute(data: dict, base_dir: Path) -> None:
    """In place: the relative ``data.path`` and Custom file targets of spec ``data``, made absolute
    against ``base_dir`` (a spec written elsewhere, a run's or a sweep trial's, still finds them)."""
    make_data_path_absolute(data, base_dir)
    _absolute_custom(data.get("layers"), base_dir)


def make_data_path_absolute(data: dict, base_dir: Path) -> None:
    """In place: a relative ``data.path`` of spec ``data``, made absolute against ``base_dir``."""
    section = data.get("data")
    if isinstance(section, dict) and isinstance(section.get("path"), str):
        p = Path(section["path"]).expanduser()
        if not p.is_absolute():
            section["path"] = str(base_dir / p)


def _absolute_custom(layers: Any, base_dir: Path) -> None:
    if not isinstance(layers, list):
        return
    for item in layers:
        if not (isinstance(item, dict) and len(item) == 1):
            continue
        ((kind, args),) = item.items()
        if not isinstance(args, dict):
            continue
        if kind == "Custom" and isinstance(args.get("target"), str) and ":" in args["target"]:
            file, cls = args["target"].rsplit(":", 1)
            if file.endswith(".py") and not Path(file).expanduser().is_absolute():
                args["target"] = f"{base_dir / file}:{cls}"
        for key in LAYER_LISTS:
            _absolute_custom(args.get(key), base_dir)
        for key in BRANCH_LISTS:  # Parallel's branches: a list of layer lists
            for branch in args.get(key) or []:
                _absolute_custom(branch, base_dir)


def load_with_overrides(
    path: Path,
    overrides: dict,
    *,
    allow_custom: bool = True,
    detach: bool = False,
    origin: str = "override",
    applied: list | None = None,
):
    """:func:`nncli.spec.load_spec` with ``overrides``: each written into the file's YAML data,
    then the result validated with the file's positions (a later error, from the builder or the
    train: and data: sections, still points at the field's line in the user's file).

    Raises:
        SpecError / InputError: a path that is not in the spec (with a did-you-mean, located at
            ``origin KEY``), or a value the spec refuses (located at that field in the file).
    """
    import dataclasses

    from nncli.spec.parse import load_spec, spec_from_document
    from nncli.spec.source import parse_yaml, read_text

    path = Path(path)
    doc = parse_yaml(read_text(path), str(path))
    if not isinstance(doc.data, dict):
        return load_spec(path, allow_custom=allow_custom)  # the spec's own error (not a mapping) says it best
    record = applied if applied is not None else []
    for key, value in overrides.items():
        written: list[tuple] = []
        apply_override(
            doc.data, key, value, where=Where(None, None, None, f"{origin} {key}"), source=str(path), written=written
        )
        record.extend((field, f"{key}={value!r}", str(path)) for field in written)
    data = doc.data
    if detach:
        data = copy.deepcopy(doc.data)
        make_paths_absolute(data, path.resolve().parent)
    spec = spec_from_document(
        dataclasses.replace(doc, data=data), base_dir=path.resolve().parent, allow_custom=allow_custom
    )
    return dataclasses.replace(spec, path=None) if detach else spec
