"""Validation of the spec's structure and types: plain data -> :class:`~nncli.spec.model.Spec`.

Checks everything that can be checked without torch: the top-level keys, the layer forms (bare
name or one-key mapping), the reserved ``name``/``init`` keys and nncli's own composite layers.
Whether ``Conv2d`` exists and takes ``kernel_size`` is the builder's job (it asks torch).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nncli.errors import SpecError, did_you_mean
from nncli.spec.model import (
    INIT_SCHEMES, CustomSpec, InitScheme, LayerSpec, RepeatSpec, ResidualSpec, Spec,
)
from nncli.spec.source import Document, parse_yaml, read_text

TOP_LEVEL_KEYS = ("name", "description", "input", "init", "layers", "data", "train")
RESERVED = ("name", "init")
# Per-example size cap: batches, channels and dtype bytes must still fit torch's int64 sizes.
MAX_INPUT_NUMEL = 2**48
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

EXAMPLE = "input: [3, 32, 32]\nlayers:\n  - Conv2d: {out_channels: 16, kernel_size: 3}\n  - ReLU"


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _found(value: Any) -> str:
    if isinstance(value, (dict, list)) or value is None:
        return _type_name(value)
    return f"{_type_name(value)} ({value!r})"


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file.

    Args:
        path: a YAML file following DESIGN.md's spec contract.

    Returns:
        The validated :class:`Spec`; ``Custom`` file targets resolve relative to its folder.

    Raises:
        SpecError / InputError: with file, line, column and spec path.

    Example:
        >>> spec = load_spec("specs/lenet5.yaml")
        >>> spec.input
        (1, 32, 32)
    """
    path = Path(path)
    text = read_text(path)
    return parse_spec(text, file=str(path), base_dir=path.resolve().parent)


def parse_spec(text: str, file: str | None = None, base_dir: Path | None = None) -> Spec:
    """Validate a spec given as YAML text (see :func:`load_spec`)."""
    doc = parse_yaml(text, file)
    try:
        return _Parser(doc, base_dir or Path.cwd()).spec()
    except RecursionError:  # Residuals nested hundreds deep
        raise SpecError("the spec is nested too deeply to be a network spec", file=file,
                        line=1, column=1) from None


class _Parser:
    def __init__(self, doc: Document, base_dir: Path) -> None:
        self.doc = doc
        self.base_dir = base_dir

    def fail(self, path: tuple, message: str, hint: str | None = None, *, key: bool = False):
        return self.doc.where(path, key=key).error(message, hint)

    def check_keys(self, mapping: dict, path: tuple, allowed, what: str) -> None:
        for key in mapping:
            if key not in allowed:
                hint = did_you_mean(key, allowed) or "allowed: " + ", ".join(allowed)
                raise self.fail(path + (key,), f"unknown key {key!r} in {what}", hint, key=True)

    # -- top level ------------------------------------------------------------------------
    def spec(self) -> Spec:
        data = self.doc.data
        if data is None:
            raise SpecError(
                "empty spec: expected a mapping with `input` and `layers`",
                file=self.doc.file, line=1, column=1, hint="a minimal spec:\n" + EXAMPLE,
            )
        if not isinstance(data, dict):
            raise self.fail((), f"expected a mapping with `input` and `layers` at the top level, found {_type_name(data)}",
                            "a minimal spec:\n" + EXAMPLE)
        self.check_keys(data, (), TOP_LEVEL_KEYS, "the spec's top level")
        for required in ("input", "layers"):
            if required not in data:
                # Located at the top-level mapping, named by the missing key's spec path.
                raise self.fail((required,), f"missing required key `{required}`",
                                "a minimal spec:\n" + EXAMPLE)
        name = data.get("name", None)
        if name is None:
            name = Path(self.doc.file).stem if self.doc.file else "network"
        elif not isinstance(name, str) or not name.strip():
            raise self.fail(("name",), f"expected a non-empty string, found {_found(name)}")
        if "description" in data and not isinstance(data["description"], str):
            raise self.fail(("description",), f"expected a string, found {_found(data['description'])}")
        for section in ("data", "train"):
            if section in data and not isinstance(data[section], (dict, type(None))):
                raise self.fail((section,), f"expected a mapping, found {_found(data[section])}")
        return Spec(
            input=self.input_shape(data["input"]),
            layers=self.layer_list(data["layers"], ("layers",), "layers"),
            name=name,
            init=self.init(data["init"], ("init",)) if data.get("init") is not None else None,
            data=data.get("data") or None,
            train=data.get("train") or None,
            path=Path(self.doc.file) if self.doc.file else None,
            document=self.doc,
        )

    def input_shape(self, value: Any) -> tuple[int, ...]:
        path = ("input",)
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]  # `input: 784` is unambiguous shorthand for [784]
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"expected the shape of one example as a list of positive integers "
                                  f"(e.g. [3, 32, 32]), found {_found(value)}")
        for i, dim in enumerate(value):
            if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
                raise self.fail(path + (i,), f"expected a positive integer size, found {_found(dim)}",
                                "`input` has no batch dimension: [3, 32, 32], not [N, 3, 32, 32]")
        numel = 1
        for dim in value:
            numel *= dim
        if numel >= MAX_INPUT_NUMEL:  # torch indexes with int64: a batch of these cannot exist
            raise self.fail(path, f"expected at most 2**48 values per example, found {numel:,} "
                                  f"({' x '.join(map(str, value))})")
        return tuple(value)

    # -- layers ---------------------------------------------------------------------------
    def layer_list(self, value: Any, path: tuple, what: str) -> tuple[LayerSpec, ...]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected `{what}` to be a list of layers, found {_found(value)}",
                            "write each layer on its own line starting with `- `")
        if not value:
            raise self.fail(path, f"expected at least one layer in `{what}`, found an empty list")
        return tuple(self.layer(item, path + (i,)) for i, item in enumerate(value))

    def layer(self, item: Any, path: tuple) -> LayerSpec:
        where = self.doc.where(path)
        if isinstance(item, str):
            # A bare name's arguments live, empty, at the same path a mapping's would:
            # errors then read `layers[3].Custom.target` whichever form was written.
            kind, args = item.strip(), None
            args_path = path + (kind,)
        elif isinstance(item, dict):
            if len(item) != 1:
                keys = ", ".join(map(str, item))
                hint = ("indent the arguments under the class name: `- Linear: {out_features: 10}`"
                        if any(v is None for v in item.values()) else
                        "write one layer per list item: `- Conv2d: {...}` then `- ReLU`")
                raise self.fail(path, f"expected a one-key mapping {{ClassName: {{args}}}}, found keys {keys}", hint)
            ((kind, args),) = item.items()
            args_path = path + (kind,)
        else:
            raise self.fail(path, f"expected a layer: a class name (`ReLU`) or `{{ClassName: {{args}}}}`, "
                                  f"found {_found(item)}")
        if not _IDENT.match(kind):
            raise self.fail(path, f"expected a layer class name (letters, digits, _), found {kind!r}")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise self.fail(args_path, f"expected the arguments of {kind} as a mapping "
                                       f"(`{kind}: {{name: value}}`), found {_found(args)}",
                            f"e.g. `- {kind}: {{...}}`; a bare `- {kind}` means no arguments")
        name = args.get("name")
        if "name" in args and (not isinstance(name, str) or not name.strip()):
            raise self.fail(args_path + ("name",), f"expected `name` to be a non-empty string, found {_found(name)}")
        init = self.init(args["init"], args_path + ("init",)) if args.get("init") is not None else None
        rest = {k: v for k, v in args.items() if k not in RESERVED}
        arg_where = {k: self.doc.where(args_path + (k,), key=True) for k in rest}
        common = dict(where=where, name=name, init=init)
        if kind == "Residual":
            self.check_keys(rest, args_path, ("body", "shortcut"), "Residual")
            if "body" not in rest:
                raise self.fail(args_path, "Residual needs a `body` (a list of layers)",
                                "Residual: {body: [...], shortcut: [...]} computes body(x) + shortcut(x)")
            shortcut = rest.get("shortcut")
            return ResidualSpec(
                type=kind, args={}, arg_where=arg_where, **common,
                body=self.layer_list(rest["body"], args_path + ("body",), "body"),
                shortcut=(() if shortcut in (None, [])
                          else self.layer_list(shortcut, args_path + ("shortcut",), "shortcut")),
            )
        if kind == "Repeat":
            self.check_keys(rest, args_path, ("times", "layers"), "Repeat")
            for required in ("times", "layers"):
                if required not in rest:
                    raise self.fail(args_path, f"Repeat needs `{required}`",
                                    "Repeat: {times: 3, layers: [...]} stacks 3 fresh copies")
            times = rest["times"]
            if isinstance(times, bool) or not isinstance(times, int) or times < 1:
                raise self.fail(args_path + ("times",), f"expected `times` to be an integer >= 1, found {_found(times)}")
            return RepeatSpec(type=kind, args={}, arg_where=arg_where, **common, times=times,
                              layers=self.layer_list(rest["layers"], args_path + ("layers",), "layers"))
        if kind == "Custom":
            self.check_keys(rest, args_path, ("target", "args"), "Custom")
            target = rest.get("target")
            if not isinstance(target, str) or ":" not in target or target.rsplit(":", 1)[1] == "":
                raise self.fail(args_path + ("target",),
                                f"expected `target` as \"file.py:Class\" or \"package.module:Class\", found {_found(target)}")
            cargs = rest.get("args") or {}
            if not isinstance(cargs, dict):
                raise self.fail(args_path + ("args",), f"expected `args` to be a mapping of keyword arguments, found {_found(cargs)}")
            cwhere = {k: self.doc.where(args_path + ("args", k), key=True) for k in cargs}
            return CustomSpec(type=kind, args=cargs, arg_where=cwhere, **common,
                              target=target, base_dir=self.base_dir)
        return LayerSpec(type=kind, args=rest, arg_where=arg_where, **common)

    # -- init -----------------------------------------------------------------------------
    def init(self, value: Any, path: tuple) -> dict[str, InitScheme]:
        if not isinstance(value, dict) or not value:
            raise self.fail(path, f"expected `init` as a mapping of parameter name to scheme "
                                  f"(e.g. {{weight: kaiming_normal, bias: zeros}}), found {_found(value)}")
        out = {}
        for param, scheme in value.items():
            spath = path + (param,)
            kwargs: Any = {}
            if isinstance(scheme, dict):
                if len(scheme) != 1:
                    raise self.fail(spath, f"expected one scheme as `{{scheme: {{args}}}}`, found keys {', '.join(scheme)}")
                ((scheme, kwargs),) = scheme.items()
                kwargs = kwargs or {}
                if not isinstance(kwargs, dict):
                    raise self.fail(spath + (scheme,), f"expected the arguments of {scheme} as a mapping, found {_found(kwargs)}")
            if not isinstance(scheme, str):
                raise self.fail(spath, f"expected an init scheme name, found {_found(scheme)}")
            if scheme.endswith("_") and scheme[:-1] in INIT_SCHEMES:
                scheme = scheme[:-1]  # torch's in-place spelling, normal_ -> normal
            if scheme not in INIT_SCHEMES:
                raise self.fail(spath, f"unknown init scheme {scheme!r}",
                                did_you_mean(scheme, INIT_SCHEMES) or "known: " + ", ".join(INIT_SCHEMES))
            out[param] = InitScheme(scheme=scheme, kwargs=dict(kwargs), where=self.doc.where(spath))
        return out
