"""The terminal plumbing every view shares: the two consoles, ``emit``, ``--json`` output, errors,
tables, lint findings and markup escaping.

Human output goes to stdout through rich, which honours NO_COLOR and plain (non-TTY) streams;
progress and errors go to stderr. ``--json`` writes one strict JSON document on stdout instead.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from contextlib import contextmanager, redirect_stdout
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from nncli.formatting import jsonable

if TYPE_CHECKING:
    from nncli.errors import NncliError
    from nncli.lint import Finding

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _color_system() -> str | None:
    # rich's own NO_COLOR handling drops colours but still writes bold/italic escapes on a
    # terminal; no-color.org users (and screen readers, log files) want plain text.
    return None if os.environ.get("NO_COLOR") else "auto"


# Width for tables when the output is not a terminal: wide enough that no table is squeezed; a
# table is only as wide as its cells, so nothing gets padded to it.
PIPE_WIDTH = 10_000


class _RstripLines:
    """A text stream that drops the spaces rich pads lines with (a table's title is padded to the
    table's width): piped output is diffed and grepped, and trailing spaces are noise there."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(_TRAILING.sub("\n", text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()


_TRAILING = re.compile(r"[ \t]+\n")


def _plain(stream) -> bool:
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


def stdout_console() -> Console:
    # Piped or redirected output is read by scripts and diffs: never wrapped (soft_wrap; width
    # only bounds tables), no trailing spaces. COLUMNS, when set, still limits the width.
    if not _plain(sys.stdout):
        return Console(highlight=False, soft_wrap=False, color_system=_color_system())
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else PIPE_WIDTH
    return Console(
        file=_RstripLines(sys.stdout), highlight=False, soft_wrap=True, width=width, color_system=_color_system()
    )


def stderr_console() -> Console:
    # soft_wrap: a located error is one line (rich would cut `file:line: spec.path` at 80
    # columns on a non-TTY, where CI logs and `2> err.txt` read it).
    if not _plain(sys.stderr):
        return Console(stderr=True, highlight=False, soft_wrap=True, color_system=_color_system())
    return Console(file=_RstripLines(sys.stderr), highlight=False, soft_wrap=True, color_system=_color_system())


def emit(result: Any, as_json: bool, human: Callable[[Console, Any], None], console: Console | None = None) -> None:
    """Print ``result``: one JSON document on stdout, or the human view."""
    if as_json:
        print_json(result.to_json())
    else:
        human(console or stdout_console(), result)


# Where --json documents go while user code's stdout is sent to stderr (see json_stdout).
_json_stream = None


@contextmanager
def json_stdout(enabled: bool):
    """Under ``--json``, for the block: stdout belongs to the JSON document. Whatever else writes
    to ``sys.stdout`` (a Custom layer's print) goes to stderr; :func:`print_json` writes to the
    stdout the block started with."""
    global _json_stream
    if not enabled:
        yield
        return
    previous, _json_stream = _json_stream, sys.stdout
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        _json_stream = previous


def print_json(doc: Any, file=None) -> None:
    """Write ``doc`` as one strict JSON document (cleaned by :func:`jsonable`) and flush."""
    file = file or _json_stream or sys.stdout
    file.write(json.dumps(jsonable(doc), indent=2, allow_nan=False) + "\n")
    file.flush()


def error(err: NncliError, as_json: bool) -> None:
    """Report an NncliError: a located message on stderr; with --json also a JSON document."""
    text = str(err)
    if err.file and err.line is None and not err.spec_path and err.file in err.message:
        # "no such spec file: x.yaml" already names the file: "x.yaml: " before it says it twice
        text = err.message + (f"\n  hint: {err.hint}" if err.hint else "")
    stderr_console().print(f"[bold red]error:[/] {escape(text)}")
    if as_json:
        print_json(err.to_json())


def escape(text: str) -> str:
    """``text`` with rich markup disarmed: layer names like ``[0]`` print as they are."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def table(title: str | None = None, **kwargs) -> Table:
    return Table(title=title, title_justify="left", header_style="bold", **kwargs)


def pct(x: float | None) -> str:
    """A fraction as a percentage with two decimals: 0.9731 -> '97.31%'; None -> '-'."""
    return "-" if x is None else f"{100 * x:.2f}%"


def metric(name: str, x: float | None, std: float | None = None) -> str:
    """A metric for people, the same in every command: accuracy as a percentage with two decimals
    (its spread in percentage points), anything else (loss) to four significant digits.
    ``--json`` keeps fractions."""
    from nncli.formatting import fmt_float

    if "accuracy" in name:
        text = pct(x)
        return text + (f" ± {100 * std:.2f}" if std else "")
    return fmt_float(x, 4) + (f" ± {fmt_float(std, 2)}" if std else "")


def findings(console: Console, items: Iterable[Finding]) -> None:
    """Lint findings, one per line, with severity, location and the fix."""
    for f in items:
        style = _SEVERITY_STYLE.get(f.severity, "")
        where = f" {f.location}" if f.location else ""
        console.print(f"[{style}]{f.severity}[/] {escape(f'[{f.code}]')}{escape(where)}: {escape(f.message)}")
        if f.hint:
            console.print(f"    hint: {escape(f.hint)}", highlight=False)
