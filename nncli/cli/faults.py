"""The machine's trouble as exit 2: out of memory, read-only or full disks, permission denied,
an output path that cannot exist, a process or thread limit reached.

These are not bugs in nncli (exit 3): the environment is wrong, and the user can act on it. Each
becomes an :class:`~nncli.errors.InputError` naming the path (when there is one) and what to do.
No torch import here: torch's OutOfMemoryError is recognised by its name.
"""

from __future__ import annotations

import errno

from nncli.errors import InputError

_DISK_ADVICE = {
    errno.EROFS: ("the file system is read-only", "write to a writable folder (--out / --output)"),
    errno.ENOSPC: ("the disk is full", "free some space, or write to another disk"),
    errno.EDQUOT: ("the disk quota is exhausted", "free some space, or write to another disk"),
    errno.EACCES: ("permission denied", "write to a folder you own, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "write to a folder you own, or fix its permissions"),
}

_OOM_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory")

# A path the user gave that cannot be a file or folder: an output under a regular file, a folder
# under /proc, a name too long. The OSError names the path.
_PATH_ADVICE = {
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "the folder does not exist or cannot hold files",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ELOOP: "too many symbolic links",
}
# Process, thread and file limits: the machine (or its limits) refused, not nncli.
_REFUSED_WORDS = ("can't start new thread", "cannot start new thread", "resource temporarily unavailable")
_REFUSED_ERRNOS = (errno.EAGAIN, errno.EMFILE, errno.ENFILE)


def is_out_of_memory(exc: BaseException) -> bool:
    """A Python MemoryError, torch's OutOfMemoryError, or an allocator's RuntimeError."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in _OOM_WORDS)


def environment_error(exc: BaseException) -> InputError | None:
    """The exit-2 error that ``exc`` means, or None when it is not the environment's fault."""
    if is_out_of_memory(exc):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return InputError(
            f"out of memory: {first}",
            hint="use a smaller --batch-size, a smaller model, --amp bf16/fp16, or a machine with more memory",
        )
    if isinstance(exc, OSError) and exc.errno in _DISK_ADVICE:
        what, advice = _DISK_ADVICE[exc.errno]
        path = exc.filename if exc.filename is not None else None
        where = f" writing {path}" if path else ""
        return InputError(f"{what}{where} ({exc.strerror or exc})", file=path, hint=advice)
    if isinstance(exc, OSError) and exc.errno in _PATH_ADVICE and exc.filename is not None:
        return InputError(
            f"cannot use {exc.filename}: {_PATH_ADVICE[exc.errno]} ({exc.strerror})",
            hint="give a path in a folder you can write to",
        )
    return refused_error(exc)


def refused_error(exc: BaseException) -> InputError | None:
    """Exit 2 for a process, thread or open-file limit reached (EAGAIN on fork, a thread that cannot start)."""
    refused = isinstance(exc, OSError) and exc.errno in _REFUSED_ERRNOS
    refused = refused or isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in _REFUSED_WORDS)
    if not refused:
        return None
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return InputError(
        f"the machine refused to start a process or thread, or to open a file: {first}",
        hint="fewer --threads or data workers, or raise the limits (ulimit -u, ulimit -n)",
    )


def internal_error_json(exc: BaseException) -> dict:
    """The ``--json`` error document of a bug in nncli (the same keys as NncliError.to_json)."""
    return {
        "error": "InternalError",
        "message": f"{type(exc).__name__}: {exc}",
        "file": None,
        "line": None,
        "column": None,
        "spec_path": None,
        "hint": "this is a bug in nncli; run again with --traceback and report it",
        "exit_code": 3,
    }


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) while a command ran, carried past typer to the entry point."""


def interrupted_json() -> dict:
    """The ``--json`` error document of Ctrl-C or SIGTERM before a command finished (exit 130)."""
    from nncli.cli.early import INTERRUPTED

    return dict(INTERRUPTED)


def usage_error_json(message: str) -> dict:
    """The ``--json`` error document of a bad flag or argument (click's usage errors)."""
    return {
        "error": "UsageError",
        "message": message,
        "file": None,
        "line": None,
        "column": None,
        "spec_path": None,
        "hint": "see --help",
        "exit_code": 2,
    }
