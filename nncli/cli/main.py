"""The console-script entry point: run the app once, map every error to its exit code.

Errors are caught here, once: an ``NncliError`` prints its located message and exits with its
code (2 bad input, 1 a failed check); the machine's trouble (out of memory, a read-only or full
disk, permission denied) is exit 2 as well (:mod:`nncli.cli.faults`); anything else is a bug in
nncli (exit 3). Under ``--json`` every error, usage errors included, also prints its JSON document
on stdout. ``--traceback`` (or ``NNCLI_TRACEBACK=1``) adds the Python traceback on stderr, for bug
reports, and never changes the exit code.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from contextlib import contextmanager, nullcontext

import typer

from nncli.cli.app import app, render
from nncli.cli.options import Options
from nncli.errors import CheckFailed, ExitCode, NncliError


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app, map errors to exit codes.

    Each call builds its own :class:`~nncli.cli.options.Options`: a program (or a test) that
    calls it many times starts every call clean, with nothing to reset.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    # Usage errors happen before a command runs: --json and --traceback are read from the words.
    options = Options.from_argv(args)
    # under --json, stdout is the JSON document's alone (the renderer loads only then: --help stays fast)
    for_json = render.console.json_stdout(True) if options.json else nullcontext()
    with _terminate_as_interrupt(options.json), for_json:
        try:
            rv = app(args=args, prog_name="nncli", standalone_mode=False, obj=options)
            code = rv if isinstance(rv, int) else 0
        except BaseException as exc:  # noqa: BLE001 - each kind is mapped to its exit code below
            code = _exit_code(exc, options)
        sys.stdout.flush()
    return code


@contextmanager
def _terminate_as_interrupt(as_json: bool):
    """SIGTERM as Ctrl-C for the command (a KeyboardInterrupt: exit 130, and the error document
    under --json) where nothing else handles it; training replaces it with its own handler, which
    saves a checkpoint first."""
    from nncli.cli import early

    main_thread = threading.current_thread() is threading.main_thread()
    if not main_thread or signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, early.on_terminate):
        yield
        return
    signal.signal(signal.SIGTERM, functools.partial(_on_terminate, as_json))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _on_terminate(as_json: bool, signum, frame) -> None:
    if not _importing(frame):
        raise KeyboardInterrupt
    # An import cut short leaves half-initialised modules that later code trips over (an exit 3):
    # leave now, as the interrupted exit would, without running anything more.
    if as_json:
        from nncli.cli import faults

        render.print_json(faults.interrupted_json())
    os.write(2, b"interrupted\n")
    os._exit(int(ExitCode.INTERRUPTED))


def _importing(frame) -> bool:
    """Whether ``frame`` runs inside an import (importlib's frames are on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _exit_code(exc: BaseException, options: Options) -> int:
    """Report ``exc`` the way its kind asks and return the exit code (re-raise what is not ours)."""
    try:  # typer >= 0.26 vendors click; older releases depend on it
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click import ClickException
    from nncli.cli import faults
    from nncli.cli.flags import flag_names
    from nncli.cli.run_options import name_the_set

    if isinstance(exc, NncliError):
        _show_traceback(exc, options)
        name_the_set(exc, options.applied_sets)
        flag_names(exc)
        if isinstance(exc, CheckFailed):
            render.stderr_console().print(f"[bold red]check failed:[/] {render.escape(str(exc))}")
        else:
            render.error(exc, options.json)
        return int(exc.exit_code)
    if isinstance(exc, (typer.Abort, KeyboardInterrupt, faults.Interrupted)):
        render.stderr_console().print("interrupted")
        if options.json:
            render.print_json(faults.interrupted_json())
        return int(ExitCode.INTERRUPTED)
    if isinstance(exc, ClickException):  # bad flag or argument: typer/click's own message
        exc.show()
        if options.json:
            render.print_json(faults.usage_error_json(exc.format_message()))
        return int(ExitCode.BAD_INPUT)
    if isinstance(exc, typer.Exit):
        return exc.exit_code
    if isinstance(exc, BrokenPipeError):  # `nncli params ... | head`
        return 0
    if not isinstance(exc, Exception):  # SystemExit and the like are not ours to map
        raise exc
    _show_traceback(exc, options)
    env_err = faults.environment_error(exc)
    if env_err is not None:  # out of memory, read-only/full disk: the machine, not nncli
        render.error(env_err, options.json)
        return int(env_err.exit_code)
    # a bug in nncli, not a user mistake: say so briefly
    render.stderr_console().print(
        f"[bold red]internal error:[/] {type(exc).__name__}: {render.escape(str(exc))}\n"
        "  this is a bug in nncli; run again with --traceback and report it"
    )
    if options.json:
        render.print_json(faults.internal_error_json(exc))
    return int(ExitCode.INTERNAL)


def _show_traceback(exc: BaseException, options: Options) -> None:
    """With --traceback: the exception's traceback, on stderr (the exit code stays the same)."""
    if options.traceback:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


def run() -> None:
    sys.exit(main())
