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
from nncli.spec import graph
from nncli.spec.expr import FUNCTIONS, SHAPE_NAMES, ExprError, tokenize
from nncli.spec.families import repeat_family
from nncli.spec.model import (
    FLOAT_DTYPES,
    INIT_SCHEMES,
    INT_DTYPES,
    MERGES,
    BlockSpec,
    CustomSpec,
    InitScheme,
    LayerSpec,
    ParallelSpec,
    RepeatSpec,
    ResidualSpec,
    Spec,
)
from nncli.spec.source import Document, parse_yaml, read_text
from nncli.spec.templates import TemplateLayers, Templates, call, read_templates
from nncli.spec.transfer import parse_transfer

TOP_LEVEL_KEYS = (
    "name",
    "description",
    "input",
    "inputs",
    "outputs",
    "vars",
    "init",
    "layers",
    "data",
    "train",
    "transfer",
    "define",
)
RESERVED = ("name", "init")
# Per-example size cap: batches, channels and dtype bytes must still fit torch's int64 sizes.
MAX_INPUT_NUMEL = 2**48
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

EXAMPLE = "input: [3, 32, 32]\nlayers:\n  - Conv2d: {out_channels: 16, kernel_size: 3}\n  - ReLU"


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def describe_found(value: Any) -> str:
    """What an error message says it found: the type, and the value itself when it is short
    (a scalar); spec, sweep and override errors all word it this way."""
    if isinstance(value, (dict, list)) or value is None:
        return _type_name(value)
    return f"{_type_name(value)} ({value!r})"


def load_spec(
    path: str | Path,
    overrides: dict | None = None,
    *,
    allow_custom: bool = True,
    detach: bool = False,
    origin: str = "override",
    applied: list | None = None,
) -> Spec:
    """Read and validate a spec file, with ``overrides`` written into its data first.

    Args:
        path: a YAML file following the spec contract (docs/spec.md).
        overrides: ``{"train.lr": 0.01, "layers[0].Linear.out_features": 32, "replace:ReLU": "Tanh"}``
            (:mod:`nncli.spec.overrides`' paths); errors still point at the file's lines.
        allow_custom: False refuses every Custom layer (exit 2) before any is imported.
        detach: with ``overrides``, the spec forgets its file, and relative data and Custom
            paths are made absolute (a run folder stores the overridden spec, not the file's text).
        origin: how the caller names an override in an error (``"--set"`` on the command line).
        applied: a list that receives ``(field path, "KEY=VALUE", file)`` for each field an
            override wrote, to name it in a later error at that field.

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
    if overrides:
        from nncli.spec.overrides import load_with_overrides

        return load_with_overrides(
            path, overrides, allow_custom=allow_custom, detach=detach, origin=origin, applied=applied
        )
    text = read_text(path)
    return parse_spec(text, file=str(path), base_dir=path.resolve().parent, allow_custom=allow_custom)


def parse_spec(text: str, file: str | None = None, base_dir: Path | None = None, *, allow_custom: bool = True) -> Spec:
    """Validate a spec given as YAML text (see :func:`load_spec`)."""
    return spec_from_document(parse_yaml(text, file), base_dir, allow_custom=allow_custom)


def spec_from_document(doc: Document, base_dir: Path | None = None, *, allow_custom: bool = True) -> Spec:
    """Validate a spec already parsed into a :class:`Document` (data plus positions).

    ``--set`` edits a document's data and validates it here, so every later error still points
    at the line of the user's file (a field the override added points at its nearest parent).
    """
    try:
        spec = _Parser(doc, base_dir or Path.cwd()).spec()
    except RecursionError:  # Residuals nested hundreds deep
        raise SpecError("the spec is nested too deeply to be a network spec", file=doc.file, line=1, column=1) from None
    from nncli.spec.limits import check_spec
    from nncli.spec.trust import refuse_custom_layers

    if spec.graph:  # every name read is defined, in scope, before it is read
        graph.check_names(spec)
    check_spec(spec)  # nesting depth and layers after expanding Repeat, before anything is built
    refuse_custom_layers(spec, allow_custom=allow_custom)  # before any Custom code is imported
    return spec


class _Parser:
    def __init__(self, doc: Document, base_dir: Path) -> None:
        self.doc = doc
        self.base_dir = base_dir
        # Names an expression may use here: the incoming sizes plus the vars of every enclosing
        # scope (top level first). Lets `times: three` be refused as a string at once.
        self.names: list[set[str]] = [set(SHAPE_NAMES)]
        self.templates = Templates()  # `define:`, read before the layers

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
                file=self.doc.file,
                line=1,
                column=1,
                hint="a minimal spec:\n" + EXAMPLE,
            )
        if not isinstance(data, dict):
            raise self.fail(
                (),
                f"expected a mapping with `input` and `layers` at the top level, found {_type_name(data)}",
                "a minimal spec:\n" + EXAMPLE,
            )
        self.check_keys(data, (), TOP_LEVEL_KEYS, "the spec's top level")
        if "inputs" in data and "input" in data:
            raise self.fail(("inputs",), "give `input` (one input) or `inputs` (named inputs), not both", key=True)
        for required in ("input" if "inputs" not in data else "inputs", "layers"):
            if required not in data:
                # Located at the top-level mapping, named by the missing key's spec path.
                raise self.fail((required,), f"missing required key `{required}`", "a minimal spec:\n" + EXAMPLE)
        name = self.name_and_sections(data)
        inputs = graph.parse_inputs(self, data["inputs"]) if "inputs" in data else ()
        if inputs:
            input_shape, dtype, high = inputs[0].shape, inputs[0].dtype, inputs[0].high
        else:
            input_shape, dtype, high = self.input(data["input"])
        top_vars, var_where = self.vars(data.get("vars"), ("vars",))
        self.names.append(set(top_vars or ()))
        self.templates = read_templates(self, data.get("define"))
        layers = self.layer_list(data["layers"], ("layers",), "layers")
        return Spec(
            input=input_shape,
            layers=layers,
            name=name,
            input_dtype=dtype,
            input_high=high,
            vars=top_vars,
            var_where=var_where,
            init=self.init(data["init"], ("init",)) if data.get("init") is not None else None,
            data=data.get("data") or None,
            train=data.get("train") or None,
            transfer=(
                parse_transfer(data["transfer"], self.doc, layers, self.base_dir)
                if data.get("transfer") is not None
                else None
            ),
            path=Path(self.doc.file) if self.doc.file else None,
            document=self.doc,
            inputs=inputs,
            outputs=graph.parse_outputs(self, data["outputs"]) if data.get("outputs") is not None else (),
        )

    def name_and_sections(self, data: dict) -> str:
        """The spec's name (the file's stem by default), with `description`, `data` and `train`
        checked for their types."""
        name = data.get("name", None)
        if name is None:
            name = Path(self.doc.file).stem if self.doc.file else "network"
        elif not isinstance(name, str) or not name.strip():
            raise self.fail(("name",), f"expected a non-empty string, found {describe_found(name)}")
        if "description" in data and not isinstance(data["description"], str):
            raise self.fail(("description",), f"expected a string, found {describe_found(data['description'])}")
        for section in ("data", "train"):
            if section in data and not isinstance(data[section], (dict, type(None))):
                raise self.fail((section,), f"expected a mapping, found {describe_found(data[section])}")
        return name

    def input(self, value: Any, path: tuple = ("input",)) -> tuple[tuple[int, ...], str, int | None]:
        """``input``: a shape, or ``{shape, dtype, high}`` for integer token ids."""
        if not isinstance(value, dict):
            return self.input_shape(value, path), "float32", None
        self.check_keys(value, path, ("shape", "dtype", "high"), "input")
        if "shape" not in value:
            raise self.fail(
                path, "`input` as a mapping needs `shape`", "e.g. input: {shape: [64], dtype: int64, high: 5000}"
            )
        shape = self.input_shape(value["shape"], path + ("shape",))
        dtype = value.get("dtype", "float32")
        if dtype not in FLOAT_DTYPES + INT_DTYPES:
            raise self.fail(
                path + ("dtype",),
                f"expected `dtype` to be one of {', '.join(FLOAT_DTYPES + INT_DTYPES)}, found {describe_found(dtype)}",
            )
        high = value.get("high")
        if dtype in INT_DTYPES:
            if high is None:
                raise self.fail(
                    path,
                    f"integer input ({dtype}) needs `high`: tokens are drawn from [0, high)",
                    "e.g. input: {shape: [64], dtype: int64, high: 5000} (the vocabulary size)",
                )
            if isinstance(high, bool) or not isinstance(high, int) or high < 1:
                raise self.fail(
                    path + ("high",), f"expected `high` to be a positive integer, found {describe_found(high)}"
                )
        elif high is not None:
            raise self.fail(
                path + ("high",),
                f"`high` applies to integer inputs, and dtype is {dtype}",
                "add dtype: int64 for token ids, or remove `high`",
            )
        return shape, dtype, high

    def vars(self, value: Any, path: tuple) -> tuple[dict | None, dict]:
        """``vars``: name -> number or expression text, kept as written (evaluated by the builder)."""
        if value is None:
            return None, {}
        if not isinstance(value, dict):
            raise self.fail(
                path,
                f"expected `vars` to be a mapping of name to number or expression, found {describe_found(value)}",
                "e.g. vars: {width: 64, expansion: 6}",
            )
        out, where = {}, {}
        for key, item in value.items():
            vpath = path + (key,)
            if not _IDENT.match(key) or key in SHAPE_NAMES or key in FUNCTIONS:
                why = (
                    "is the incoming tensor's size, set by nncli"
                    if key in SHAPE_NAMES
                    else "is a function name"
                    if key in FUNCTIONS
                    else "is not a name (letters, digits, _)"
                )
                raise self.fail(vpath, f"a var may not be called {key!r}: it {why}", key=True)
            if isinstance(item, str):
                try:
                    tokenize(item)
                except ExprError as err:
                    raise self.fail(vpath, f"bad expression {item!r}: {err.message}") from None
            elif isinstance(item, bool) or not isinstance(item, (int, float)):
                raise self.fail(vpath, f"expected a var to be a number or an expression, found {describe_found(item)}")
            out[key] = item
            where[key] = self.doc.where(vpath)
        return out, where

    def input_shape(self, value: Any, path: tuple = ("input",)) -> tuple[int, ...]:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]  # `input: 784` is unambiguous shorthand for [784]
        if not isinstance(value, list) or not value:
            raise self.fail(
                path,
                f"expected the shape of one example as a list of positive integers "
                f"(e.g. [3, 32, 32]), found {describe_found(value)}",
            )
        for i, dim in enumerate(value):
            if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
                raise self.fail(
                    path + (i,),
                    f"expected a positive integer size, found {describe_found(dim)}",
                    "`input` has no batch dimension: [3, 32, 32], not [N, 3, 32, 32]",
                )
        numel = 1
        for dim in value:
            numel *= dim
        if numel >= MAX_INPUT_NUMEL:  # torch indexes with int64: a batch of these cannot exist
            raise self.fail(
                path, f"expected at most 2**48 values per example, found {numel:,} ({' x '.join(map(str, value))})"
            )
        return tuple(value)

    # -- layers ---------------------------------------------------------------------------
    def layer_list(self, value: Any, path: tuple, what: str) -> tuple[LayerSpec, ...]:
        if not isinstance(value, list):
            raise self.fail(
                path,
                f"expected `{what}` to be a list of layers, found {describe_found(value)}",
                "write each layer on its own line starting with `- `",
            )
        if not value:
            raise self.fail(path, f"expected at least one layer in `{what}`, found an empty list")
        return tuple(self.layer(item, path + (i,)) for i, item in enumerate(value))

    def layer(self, item: Any, path: tuple) -> LayerSpec:
        where = self.doc.where(path)
        kind, args, args_path = self._kind_and_args(item, path)
        template = call(self, self.templates, kind, args, args_path) if kind in self.templates else None
        if template is not None:  # a use of a `define:` template is a Block with its params as vars
            kind, args = "Block", template.args
        name = args.get("name")
        if "name" in args and (not isinstance(name, str) or not name.strip()):
            raise self.fail(
                args_path + ("name",), f"expected `name` to be a non-empty string, found {describe_found(name)}"
            )
        # LayerScale's `init: 1.0e-6` is its starting value, an argument; a mapping is the init scheme.
        scale = kind == "LayerScale" and not isinstance(args.get("init"), (dict, type(None)))
        init = self.init(args["init"], args_path + ("init",)) if args.get("init") is not None and not scale else None
        block = kind in ("Residual", "Repeat", "Parallel", "Block")
        reserved = RESERVED + ("vars",) if block else RESERVED
        named = graph.graph_keys(self, kind, args, args_path)  # from, share, tie, memory
        reserved += graph.GRAPH_KEYS if kind != "Merge" else ()
        rest = {k: v for k, v in args.items() if k not in reserved or (scale and k == "init")}
        arg_where = {k: self.doc.where(args_path + (k,), key=True) for k in rest}
        common = dict(where=where, name=name, init=init, **named)
        if named.get("share"):  # the element applies another's module: nothing of its own
            return LayerSpec(type=kind, args={}, **common)
        if kind == "Merge":
            return graph.merge_spec(self, rest, args_path, common)
        if block:
            block_vars, var_where = self.vars(args.get("vars"), args_path + ("vars",))
            if template is not None:
                block_vars, var_where = template.vars, template.var_where
                common.update(template=template.name, caller=template.caller)
            common.update(vars=block_vars, var_where=var_where)
            self.names.append(set(block_vars or ()))
            try:
                return self.block(kind, rest, args_path, arg_where, common)
            finally:
                self.names.pop()
        if kind == "Custom":
            return self._custom(rest, args_path, common)
        return LayerSpec(type=kind, args=rest, arg_where=arg_where, **common)

    def _kind_and_args(self, item: Any, path: tuple) -> tuple[str, dict, tuple]:
        """A layer item's class name, its arguments (a mapping) and the path they live at."""
        if isinstance(item, str):
            # A bare name's arguments live, empty, at the same path a mapping's would:
            # errors then read `layers[3].Custom.target` whichever form was written.
            kind, args = item.strip(), None
            args_path = path + (kind,)
        elif isinstance(item, dict):
            if len(item) != 1:
                keys = ", ".join(map(str, item))
                hint = (
                    "indent the arguments under the class name: `- Linear: {out_features: 10}`"
                    if any(v is None for v in item.values())
                    else "write one layer per list item: `- Conv2d: {...}` then `- ReLU`"
                )
                raise self.fail(path, f"expected a one-key mapping {{ClassName: {{args}}}}, found keys {keys}", hint)
            ((kind, args),) = item.items()
            args_path = path + (kind,)
        else:
            raise self.fail(
                path,
                f"expected a layer: a class name (`ReLU`) or `{{ClassName: {{args}}}}`, found {describe_found(item)}",
            )
        if not _IDENT.match(kind):
            raise self.fail(path, f"expected a layer class name (letters, digits, _), found {kind!r}")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise self.fail(
                args_path,
                f"expected the arguments of {kind} as a mapping "
                f"(`{kind}: {{name: value}}`), found {describe_found(args)}",
                f"e.g. `- {kind}: {{...}}`; a bare `- {kind}` means no arguments",
            )
        return kind, args, args_path

    def _custom(self, rest: dict, args_path: tuple, common: dict) -> CustomSpec:
        """A `Custom` layer: its `target` and keyword `args` checked."""
        self.check_keys(rest, args_path, ("target", "args"), "Custom")
        target = rest.get("target")
        if not isinstance(target, str) or ":" not in target or target.rsplit(":", 1)[1] == "":
            raise self.fail(
                args_path + ("target",),
                f'expected `target` as "file.py:Class" or "package.module:Class", found {describe_found(target)}',
            )
        cargs = rest.get("args") or {}
        if not isinstance(cargs, dict):
            raise self.fail(
                args_path + ("args",),
                f"expected `args` to be a mapping of keyword arguments, found {describe_found(cargs)}",
            )
        cwhere = {k: self.doc.where(args_path + ("args", k), key=True) for k in cargs}
        return CustomSpec(type="Custom", args=cargs, arg_where=cwhere, **common, target=target, base_dir=self.base_dir)

    def known_names(self) -> set[str]:
        return set().union(*self.names)

    def block(self, kind: str, rest: dict, args_path: tuple, arg_where: dict, common: dict) -> LayerSpec:
        """Residual, Repeat, Parallel or Block (their vars already in scope)."""
        parse = {
            "Parallel": self.parallel,
            "Block": self.plain_block,
            "Residual": self.residual,
            "Repeat": self.repeat,
        }[kind]
        return parse(kind, rest, args_path, arg_where, common)

    def parallel(self, kind: str, rest: dict, args_path: tuple, arg_where: dict, common: dict) -> ParallelSpec:
        """A Parallel: two or more branches, their merge and its dim."""
        self.check_keys(rest, args_path, ("branches", "merge", "dim"), "Parallel")
        branches = rest.get("branches")
        bpath = args_path + ("branches",)
        if "branches" not in rest:
            raise self.fail(
                args_path,
                "Parallel needs `branches` (a list of layer lists)",
                "Parallel: {branches: [[], [Conv2d...]], merge: concat}",
            )
        if not isinstance(branches, list) or len(branches) < 2:
            raise self.fail(
                bpath,
                f"expected `branches` to be a list of two or more layer lists, "
                f"found {describe_found(branches) if not isinstance(branches, list) else f'{len(branches)} branch(es)'}",
                "`[]` is the identity branch: branches: [[], [ReLU]]",
            )
        parsed = []
        for i, branch in enumerate(branches):
            if branch in (None, []):
                parsed.append(())
            elif not isinstance(branch, list):
                raise self.fail(
                    bpath + (i,),
                    f"expected branch {i} to be a list of layers ([] for the identity), found {describe_found(branch)}",
                    "each branch is a list: branches: [[ReLU], [Conv2d: {...}]]",
                )
            else:
                parsed.append(self.layer_list(branch, bpath + (i,), f"branches[{i}]"))
        merge = rest.get("merge", "concat")
        if merge not in MERGES:
            raise self.fail(
                args_path + ("merge",),
                f"expected `merge` to be one of {', '.join(MERGES)}, found {describe_found(merge)}",
                did_you_mean(str(merge), MERGES),
            )
        dim = rest.get("dim", 1)
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise self.fail(args_path + ("dim",), f"expected `dim` to be an integer, found {describe_found(dim)}")
        if dim == 0:
            raise self.fail(
                args_path + ("dim",),
                "Parallel: dim 0 is the batch: branches may not be concatenated along it",
                "dim: 1 joins channels (the default)",
            )
        return ParallelSpec(
            type=kind, args={}, arg_where=arg_where, **common, branches=tuple(parsed), merge=merge, dim=dim
        )

    def plain_block(self, kind: str, rest: dict, args_path: tuple, arg_where: dict, common: dict) -> BlockSpec:
        """A Block: a named list of layers."""
        self.check_keys(rest, args_path, ("layers",), "Block")
        if "layers" not in rest:
            raise self.fail(args_path, "Block needs `layers`", "Block: {name: stem, layers: [...]}")
        return BlockSpec(
            type=kind, args={}, arg_where=arg_where, **common, layers=self.template_layers(rest["layers"], args_path)
        )

    def template_layers(self, layers: Any, args_path: tuple) -> tuple[LayerSpec, ...]:
        """A Block's layers: as written, or a template's, parsed at the template's own paths."""
        if isinstance(layers, TemplateLayers):
            return self.layer_list(layers.data, layers.path, "layers")
        return self.layer_list(layers, args_path + ("layers",), "layers")

    def residual(self, kind: str, rest: dict, args_path: tuple, arg_where: dict, common: dict) -> ResidualSpec:
        """A Residual: a body and an optional shortcut (the identity when absent)."""
        self.check_keys(rest, args_path, ("body", "shortcut"), "Residual")
        if "body" not in rest:
            raise self.fail(
                args_path,
                "Residual needs a `body` (a list of layers)",
                "Residual: {body: [...], shortcut: [...]} computes body(x) + shortcut(x)",
            )
        shortcut = rest.get("shortcut")
        return ResidualSpec(
            type=kind,
            args={},
            arg_where=arg_where,
            **common,
            body=self.layer_list(rest["body"], args_path + ("body",), "body"),
            shortcut=(
                () if shortcut in (None, []) else self.layer_list(shortcut, args_path + ("shortcut",), "shortcut")
            ),
        )

    def repeat(self, kind: str, rest: dict, args_path: tuple, arg_where: dict, common: dict) -> RepeatSpec:
        """A Repeat: ``times`` fresh copies of its layers."""
        self.check_keys(rest, args_path, ("times", "layers", "accumulate", "index", "each"), "Repeat")
        family = repeat_family(self, rest, args_path)  # times, index and each, checked
        self.names.append(family.names)
        try:
            layers = self.layer_list(rest["layers"], args_path + ("layers",), "layers")
        finally:
            self.names.pop()
        return RepeatSpec(
            type=kind,
            args={},
            arg_where=arg_where,
            **common,
            times=family.times,
            index=family.index,
            each=family.each,
            each_where=family.each_where,
            layers=layers,
            accumulate=graph.parse_accumulate(self, rest.get("accumulate"), args_path + ("accumulate",)),
        )

    # -- init -----------------------------------------------------------------------------
    def init(self, value: Any, path: tuple) -> dict[str, InitScheme]:
        if not isinstance(value, dict) or not value:
            raise self.fail(
                path,
                f"expected `init` as a mapping of parameter name to scheme "
                f"(e.g. {{weight: kaiming_normal, bias: zeros}}), found {describe_found(value)}",
            )
        out = {}
        for param, scheme in value.items():
            spath = path + (param,)
            kwargs: Any = {}
            if isinstance(scheme, dict):
                if len(scheme) != 1:
                    raise self.fail(
                        spath, f"expected one scheme as `{{scheme: {{args}}}}`, found keys {', '.join(scheme)}"
                    )
                ((scheme, kwargs),) = scheme.items()
                kwargs = kwargs or {}
                if not isinstance(kwargs, dict):
                    raise self.fail(
                        spath + (scheme,),
                        f"expected the arguments of {scheme} as a mapping, found {describe_found(kwargs)}",
                    )
            if not isinstance(scheme, str):
                raise self.fail(spath, f"expected an init scheme name, found {describe_found(scheme)}")
            if scheme.endswith("_") and scheme[:-1] in INIT_SCHEMES:
                scheme = scheme[:-1]  # torch's in-place spelling, normal_ -> normal
            if scheme not in INIT_SCHEMES:
                raise self.fail(
                    spath,
                    f"unknown init scheme {scheme!r}",
                    did_you_mean(scheme, INIT_SCHEMES) or "known: " + ", ".join(INIT_SCHEMES),
                )
            out[param] = InitScheme(scheme=scheme, kwargs=dict(kwargs), where=self.doc.where(spath))
        return out
