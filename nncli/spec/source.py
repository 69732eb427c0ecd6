"""YAML text -> plain Python data, remembering where every value came from.

PyYAML's ``safe_load`` forgets positions, and every nncli error names the file, line and
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
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "binary", "timestamp")
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
            message, file=self.file, line=self.line, column=self.column, spec_path=self.spec_path or None, hint=hint
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
        from nncli.spec.limits import check_text_size

        check_text_size(path.stat().st_size, path)  # before reading: a huge file costs nothing
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such spec file: {path}", file=path) from None
    except IsADirectoryError:
        raise InputError(f"expected a YAML spec file, found a directory: {path}", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read spec file: {exc.strerror}", file=path) from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # PowerShell's `>` writes UTF-16 with a BOM
        raise SpecError(
            "expected UTF-8 text, found UTF-16 (a byte-order mark)",
            file=path,
            line=1,
            column=1,
            hint="save the spec as UTF-8",
        )
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise SpecError(
            "expected a YAML text file, found binary data (a NUL byte)",
            file=path,
            line=line,
            hint="pass the .yaml spec, not a checkpoint or data file",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            f"expected UTF-8 text, found byte 0x{raw[exc.start]:02x} that is not valid UTF-8",
            file=path,
            line=line,
            column=col,
        ) from None


def parse_yaml(text: str, file: str | None = None) -> Document:
    """Parse YAML ``text`` into a :class:`Document`.

    Raises:
        SpecError: bad YAML syntax, a non-standard tag, a duplicate key, or several documents.
    """
    from nncli.spec.limits import check_text_size

    check_text_size(len(text), file)  # PyYAML composes the whole text before any other bound applies
    node = _compose_fast(text)
    if node is not _FAILED:
        return _document(node, file)
    loader = None
    try:
        # The Reader checks for control characters as it is constructed: inside the try.
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}, {problem}"
        hint = "indent with spaces; YAML does not allow tabs for indentation" if "'\\t'" in problem else None
        raise SpecError(
            f"invalid YAML: {problem}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            hint=hint,
        ) from None
    except yaml.reader.ReaderError as exc:  # a control character (e.g. \x07) in the text
        line, col = _line_col(text, exc.position)
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        raise SpecError(
            f"invalid YAML: character {char!r} is not allowed ({exc.reason})", file=file, line=line, column=col
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=file, line=1) from None
    except RecursionError:  # the composer recurses once per nesting level
        raise SpecError(
            "invalid YAML: nested more than Python's recursion limit allows", file=file, line=1, column=1
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return _document(node, file)


_FAILED = object()
_C_LOADER = getattr(yaml, "CSafeLoader", None)  # PyYAML built without libyaml has none


def _compose_fast(text: str):
    """The node tree by libyaml's C parser, or ``_FAILED`` when it refuses the text or is missing.

    The C parser composes a spec much faster than PyYAML's pure-Python one (which would be a
    large share of a small ``check``) and gives the same tags, values and positions. It words its
    errors differently, though, so a text it refuses is parsed again by the Python parser, whose
    messages the error tests pin. It stops at 1,000 nesting levels by itself (no deep recursion).
    The two differ on tabs, so a text with one is left to the Python parser.
    """
    if _C_LOADER is None or "\t" in text:
        # libyaml accepts a tab as a separator (`a: 1\t`, `[1,\t2]`) where PyYAML refuses it:
        # such a text goes to PyYAML, so whether a spec is valid never depends on the build.
        return _FAILED
    try:
        loader = _C_LOADER(text)
    except yaml.YAMLError:
        return _FAILED
    try:
        return loader.get_single_node()
    except (yaml.YAMLError, RecursionError):
        return _FAILED
    finally:
        loader.dispose()


def _document(node, file: str | None) -> Document:
    doc = Document(data=None, file=file)
    if node is None:
        return doc
    try:
        doc.data = _convert(node, (), doc, yaml.SafeLoader(""), _Budget())
    except RecursionError:
        line, col = _mark(node)
        raise SpecError(
            "the spec is nested too deeply to be a network spec", file=file, line=line, column=col
        ) from None
    return doc


# Aliases can make a tiny file expand exponentially (the "billion laughs" pattern): conversion
# stops once the values that aliases repeat pass this many. Values written out in the file are
# not counted: the file-size limit bounds them, and a long plain spec is no bomb.
MAX_VALUES = 100_000


class _Budget:
    """Counts the values aliases repeat, and the aliases being expanded (to refuse recursive ones)."""

    def __init__(self) -> None:
        self.values = 0
        self.open: set[int] = set()  # id() of the collection nodes being converted right now
        self.seen: set[int] = set()  # id() of every node converted once (a second time is an alias)
        self.replaying = 0  # > 0 while converting a node for the second time or more
        self.merged: dict[int, int] = {}  # id() of a flattened mapping node -> its merged pairs


def _line_col(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(node, path: Path_, doc: Document, constructor, budget: _Budget) -> Any:
    replay = id(node) in budget.seen
    budget.seen.add(id(node))
    budget.replaying += replay
    try:
        return _convert_node(node, path, doc, constructor, budget)
    finally:
        budget.replaying -= replay


def _convert_node(node, path: Path_, doc: Document, constructor, budget: _Budget) -> Any:
    budget.values += budget.replaying > 0
    if budget.values > MAX_VALUES:
        # Located at the top-level key being expanded: an expanded alias carries its anchor's
        # position, which says nothing about where the expansion blew up.
        line, col = doc.values.get(path[:1], _mark(node))
        raise SpecError(
            f"the spec expands to more than {MAX_VALUES:,} values (aliases expanding into aliases?)",
            file=doc.file,
            line=line,
            column=col,
            spec_path=format_path(path[:1]) or None,
        )
    doc.values[path] = _mark(node)
    if node.tag not in _STANDARD_TAGS:
        line, col = _mark(node)
        raise SpecError(
            f"refused YAML tag {node.tag!r}: specs are plain data; only YAML's standard tags are allowed",
            file=doc.file,
            line=line,
            column=col,
            spec_path=format_path(path) or None,
            hint='remove the tag; Custom layers are named with `Custom: {target: "file.py:Class"}`',
        )
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        if id(node) in budget.open:  # `a: &a [*a]`: an alias inside its own anchor
            line, col = _mark(node)
            raise SpecError(
                "recursive YAML alias: a value that contains itself",
                file=doc.file,
                line=line,
                column=col,
                spec_path=format_path(path) or None,
            )
        budget.open.add(id(node))
        try:
            return _convert_collection(node, path, doc, constructor, budget)
        finally:
            budget.open.discard(id(node))
    try:
        return constructor.construct_object(node, deep=True)
    except ValueError as exc:  # Python's own int(): more than sys.get_int_max_str_digits() digits
        line, col = _mark(node)
        raise SpecError(
            f"invalid number: {exc}".split(";")[0],
            file=doc.file,
            line=line,
            column=col,
            spec_path=format_path(path) or None,
            hint="sizes and counts are int64: at most 19 digits",
        ) from None
    except yaml.YAMLError as exc:
        line, col = _mark(node)
        raise SpecError(
            f"invalid value: {getattr(exc, 'problem', exc)}",
            file=doc.file,
            line=line,
            column=col,
            spec_path=format_path(path) or None,
        ) from None


_FLATTENED_TAGS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")  # what flatten_mapping rewrites


def _flatten(node, path: Path_, doc: Document, constructor, budget: _Budget) -> int:
    """Resolve a mapping's merge keys (<<) in place; returns how many of its pairs were merged in.

    flatten_mapping puts the merged pairs first; YAML lets later pairs override them
    (`{<<: *conv, stride: 2}`), so only a key written twice explicitly is a duplicate. It also
    rewrites the node itself, which an alias shares: a second visit finds it flattened already,
    so the count from the first visit is kept.
    """
    if id(node) in budget.merged:
        return budget.merged[id(node)]
    explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
    # only where a merge key (<<) or a value key (=) is there: most mappings have neither
    if any(k.tag in _FLATTENED_TAGS for k, _ in node.value):
        try:
            constructor.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:  # e.g. `<<: 5`, a merge of something not a mapping
            mark = exc.problem_mark or node.start_mark
            raise SpecError(
                f"invalid YAML merge: {exc.problem}",
                file=doc.file,
                line=mark.line + 1,
                column=mark.column + 1,
                spec_path=format_path(path) or None,
            ) from None
    budget.merged[id(node)] = len(node.value) - explicit
    return budget.merged[id(node)]


def _convert_collection(node, path: Path_, doc: Document, constructor, budget: _Budget) -> Any:
    if isinstance(node, yaml.MappingNode):
        n_merged = _flatten(node, path, doc, constructor, budget)
        merged: set[str] = set()
        out: dict = {}
        for i, (key_node, value_node) in enumerate(node.value):
            key = _convert(key_node, path + ("<key>",), doc, constructor, budget)
            doc.values.pop(path + ("<key>",), None)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                line, col = _mark(key_node)
                raise SpecError(
                    f"expected a plain mapping key, found {type(key).__name__}",
                    file=doc.file,
                    line=line,
                    column=col,
                    spec_path=format_path(path) or None,
                )
            key = str(key) if not isinstance(key, str) else key
            if key in out and key in merged:
                merged.discard(key)
            elif key in out:
                line, col = _mark(key_node)
                first = doc.keys[path + (key,)][0]
                raise SpecError(
                    f"duplicate key {key!r} (first given on line {first})",
                    file=doc.file,
                    line=line,
                    column=col,
                    spec_path=format_path(path + (key,)),
                )
            if i < n_merged:
                merged.add(key)
            doc.keys[path + (key,)] = _mark(key_node)
            out[key] = _convert(value_node, path + (key,), doc, constructor, budget)
        return out
    return [_convert(item, path + (i,), doc, constructor, budget) for i, item in enumerate(node.value)]
