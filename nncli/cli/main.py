"""The console-script entry point: run the app once, map every error to its exit code.

Errors are caught here, once: an ``NncliError`` prints its located message and exits with its
code (2 bad input, 1 a failed check); ``--traceback`` (or ``NNCLI_TRACEBACK=1``) re-raises
instead, for bug reports; anything else is a bug in nncli (exit 3).
"""

from __future__ import annotations

import os
import sys
from typing import List

import typer

from nncli.cli.app import _state, app, render
from nncli.errors import CheckFailed, ExitCode, NncliError


def main(argv: List[str] | None = None) -> int:
    """Console-script entry point: run the app, map errors to exit codes."""
    try:  # typer >= 0.26 vendors click; older releases depend on it
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click import ClickException

    args = sys.argv[1:] if argv is None else list(argv)
    # Per call, not per process: tests and embedding programs call main() many times.
    _state["traceback"] = ("--traceback" in args
                           or os.environ.get("NNCLI_TRACEBACK", "") not in ("", "0"))
    _state["json"] = False
    try:
        rv = app(args=args, prog_name="nncli", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except NncliError as err:
        if _state["traceback"]:
            raise
        if isinstance(err, CheckFailed):
            render.stderr_console().print(f"[bold red]check failed:[/] {render.escape(str(err))}")
            code = int(err.exit_code)
        else:
            render.error(err, _state["json"])
            code = int(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        render.stderr_console().print("interrupted")
        code = int(ExitCode.INTERRUPTED)
    except ClickException as exc:  # bad flag or argument: typer/click's own message
        exc.show()
        code = int(ExitCode.BAD_INPUT)
    except typer.Exit as exc:
        code = exc.exit_code
    except BrokenPipeError:  # `nncli params ... | head`
        code = 0
    except Exception as exc:  # a bug in nncli, not a user mistake: say so briefly
        if _state["traceback"]:
            raise
        render.stderr_console().print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {render.escape(str(exc))}\n"
            "  this is a bug in nncli; run again with --traceback and report it")
        code = int(ExitCode.INTERNAL)
    sys.stdout.flush()
    return code


def run() -> None:
    sys.exit(main())
