"""YAML text -> plain Python data, remembering where every value came from.

PyYAML's ``safe_load`` forgets positions, and DESIGN.md wants every error to name file, line and
column. So the text is *composed* into a node tree (positions intact) and converted here, recording
``path -> (line, column)`` for every value and every mapping key. Only YAML's standard tags are
accepted: any ``!!python/...`` or other custom tag is refused before anything is constructed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nncli.errors import SpecError

Path_ = tuple  # a path inside the document: ("layers", 3, "Conv2d", "kernel_size")

_STANDARD_TAGS = {
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "seq", "map", "binary", "timestamp")
}


def format_path(path: Path_) -> str:
    """``("layers", 3, "Conv2d")`` -> ``layers[3].Conv2d``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass(frozen=True)
class Where:
    """A place in a spec file: enough to point a user at it."""

    file: str | None
    line: int | None
    column: int | None
    spec_path: str

    def error(self, message: str, hint: str | None = None, kind=SpecError):
        """Make (not raise) an error located here."""
        return kind(
            message, file=self.file, line=self.line, column=self.column,
            spec_path=self.spec_path or None, hint=hint,
        )


@dataclass
class Document:
    """A parsed YAML document plus the position of every value and key in it."""

    data: Any
    file: str | None
    values: dict = field(default_factory=dict)  # path -> (line, col) of the value
    keys: dict = field(default_factory=dict)  # path -> (line, col) of the mapping key naming it

    def where(self, path: Path_, *, key: bool = False) -> Where:
        """Location of ``path`` (its key when ``key`` and the path ends in a mapping key).

        Falls back to the nearest enclosing path that has a position.
        """
        path = tuple(path)
        table = self.keys if key else self.values
        probe = path
        while probe:
            if probe in table:
                line, col = table[probe]
                return Where(self.file, line, col, format_path(path))
            if probe in self.values:
                line, col = self.values[probe]
                return Where(self.file, line, col, format_path(path))
            probe = probe[:-1]
        line, col = self.values.get((), (None, None))
        return Where(self.file, line, col, format_path(path))


def read_text(path: Path) -> str:
    """Read a spec file as UTF-8 text, with located errors for missing, binary or undecodable files."""
    from nncli.errors import InputError

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such spec file: {path}", file=path) from None
    except IsADirectoryError:
        raise InputError(f"expected a YAML spec file, found a directory: {path}", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read spec file: {exc.strerror}", file=path) from None
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise SpecError(
            "expected a YAML text file, found binary data (a NUL byte)", file=path, line=line,
            hint="pass the .yaml spec, not a checkpoint or data file",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            f"expected UTF-8 text, found byte 0x{raw[exc.start]:02x} that is not valid UTF-8",
            file=path, line=line, column=col,
        ) from None


def parse_yaml(text: str, file: str | None = None) -> Document:
    """Parse YAML ``text`` into a :class:`Document`.

    Raises:
        SpecError: bad YAML syntax, a non-standard tag, a duplicate key, or several documents.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}, {problem}"
        raise SpecError(
            f"invalid YAML: {problem}", file=file,
            line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:  # e.g. a ReaderError for control characters
        raise SpecError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()
    doc = Document(data=None, file=file)
    if node is None:
        return doc
    doc.data = _convert(node, (), doc, yaml.SafeLoader(""))
    return doc


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(node, path: Path_, doc: Document, constructor) -> Any:
    doc.values[path] = _mark(node)
    if node.tag not in _STANDARD_TAGS:
        line, col = _mark(node)
        raise SpecError(
            f"refused YAML tag {node.tag!r}: specs are plain data; only YAML's standard tags are allowed",
            file=doc.file, line=line, column=col, spec_path=format_path(path) or None,
            hint="remove the tag; Custom layers are named with `Custom: {target: \"file.py:Class\"}`",
        )
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, path + ("<key>",), doc, constructor)
            doc.values.pop(path + ("<key>",), None)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                line, col = _mark(key_node)
                raise SpecError(
                    f"expected a plain mapping key, found {type(key).__name__}",
                    file=doc.file, line=line, column=col, spec_path=format_path(path) or None,
                )
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                line, col = _mark(key_node)
                first = doc.keys[path + (key,)][0]
                raise SpecError(
                    f"duplicate key {key!r} (first given on line {first})",
                    file=doc.file, line=line, column=col, spec_path=format_path(path + (key,)),
                )
            doc.keys[path + (key,)] = _mark(key_node)
            out[key] = _convert(value_node, path + (key,), doc, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), doc, constructor) for i, item in enumerate(node.value)]
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        line, col = _mark(node)
        raise SpecError(
            f"invalid value: {getattr(exc, 'problem', exc)}", file=doc.file, line=line, column=col,
            spec_path=format_path(path) or None,
        ) from None
