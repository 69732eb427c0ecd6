"""nncli's one exception family. Each kind carries its exit code (the exit-code table of docs/cli.md).

A user mistake is raised as an :class:`NncliError` subclass that knows *where* (file, line, column,
the path inside the spec) and *what* (expected versus found). ``nncli.cli.main`` catches it once, prints
``str(err)`` and exits with ``err.exit_code``; no traceback unless ``--traceback`` is given.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Process exit codes, the contract with shell scripts and CI."""

    OK = 0
    CHECK_FAILED = 1  # a check ran and found a problem (gradcheck mismatch, unhealthy probe, gate)
    BAD_INPUT = 2  # bad YAML, bad spec, bad flag, missing file, CUDA asked for but absent
    INTERNAL = 3  # a bug in nncli itself (never a user mistake): run with --traceback and report it
    INTERRUPTED = 130


class NncliError(Exception):
    """Base of every error nncli reports to a user.

    Args:
        message: what went wrong, ideally "expected X, found Y".
        file: the file the problem is in.
        line, column: 1-based position inside ``file``.
        spec_path: the path inside the spec, e.g. ``layers[3].Conv2d.kernel_size``.
        hint: one more line: a did-you-mean or the fix.
        param: the library parameter the message is about (``"batch_size"``); the message then
            starts with its name, which the command line replaces with its flag (``--batch-size``).
    """

    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        column: int | None = None,
        spec_path: str | None = None,
        hint: str | None = None,
        param: str | None = None,
    ) -> None:
        if param is not None:
            message = f"{param}: {message}"
        super().__init__(message)
        self.message = message
        self.param = param
        self.file = str(file) if file is not None else None
        self.line = line
        self.column = column
        self.spec_path = spec_path
        self.hint = hint

    @property
    def location(self) -> str:
        """``file:line:col`` (the parts that are known), empty when nothing is."""
        parts = [p for p in (self.file, self.line, self.column) if p is not None]
        return ":".join(str(p) for p in parts)

    def __str__(self) -> str:
        head = ": ".join(p for p in (self.location, self.spec_path) if p)
        text = f"{head}: {self.message}" if head else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_json(self) -> dict:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "spec_path": self.spec_path,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
        }


class SpecError(NncliError):
    """The spec is wrong: bad YAML, unknown layer, bad argument, shape mismatch."""


class InputError(NncliError):
    """Any other bad input: a missing or corrupt file, a bad flag value, CUDA asked for but absent."""


class CheckFailed(NncliError):
    """A check ran and found a problem (a budget gate, a strict lint, a failed gradcheck)."""

    exit_code = ExitCode.CHECK_FAILED


class RunFailed(NncliError):
    """A run started and could not finish (a distributed worker or a node died): exit 1, with
    the error document under ``--json`` (no report was printed before it)."""

    exit_code = ExitCode.CHECK_FAILED


def did_you_mean(word: str, choices) -> str | None:
    """A 'did you mean ...?' hint for a misspelt name, or None when nothing is close."""
    import difflib

    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    if not close:
        return None
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"
