"""The console-script entry point: run the app once, map every error to its exit code.

Errors are caught here, once: an ``NncliError`` prints its located message and exits with its
code (2 bad input, 1 a failed check); the machine's trouble (out of memory, a read-only or full
disk, permission denied) is exit 2 as well (:mod:`nncli.cli.faults`); anything else is a bug in
nncli (exit 3). Under ``--json`` every error, usage errors included, also prints its JSON document
on stdout. ``--traceback`` (or ``NNCLI_TRACEBACK=1``) adds the Python traceback on stderr, for bug
reports, and never changes the exit code.
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
    from nncli.cli import faults
    from nncli.cli.run_options import forget_sets, name_the_set
    from nncli.spec.trust import set_no_custom

    args = sys.argv[1:] if argv is None else list(argv)
    # Per call, not per process: tests and embedding programs call main() many times.
    _state["traceback"] = ("--traceback" in args
                           or os.environ.get("NNCLI_TRACEBACK", "") not in ("", "0"))
    _state["json"] = False
    set_no_custom(False)
    forget_sets()
    # Usage errors happen before a command runs (and sets _state["json"]): look at the words.
    wants_json = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
    try:
        rv = app(args=args, prog_name="nncli", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except NncliError as err:
        _show_traceback()
        name_the_set(err)
        if isinstance(err, CheckFailed):
            render.stderr_console().print(f"[bold red]check failed:[/] {render.escape(str(err))}")
        else:
            render.error(err, _state["json"] or wants_json)
        code = int(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        render.stderr_console().print("interrupted")
        code = int(ExitCode.INTERRUPTED)
    except ClickException as exc:  # bad flag or argument: typer/click's own message
        exc.show()
        if wants_json:
            render.print_json(faults.usage_error_json(exc.format_message()))
        code = int(ExitCode.BAD_INPUT)
    except typer.Exit as exc:
        code = exc.exit_code
    except BrokenPipeError:  # `nncli params ... | head`
        code = 0
    except Exception as exc:
        _show_traceback()
        env_err = faults.environment_error(exc)
        if env_err is not None:  # out of memory, read-only/full disk: the machine, not nncli
            render.error(env_err, _state["json"] or wants_json)
            code = int(env_err.exit_code)
        else:  # a bug in nncli, not a user mistake: say so briefly
            render.stderr_console().print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {render.escape(str(exc))}\n"
                "  this is a bug in nncli; run again with --traceback and report it")
            if _state["json"] or wants_json:
                render.print_json(faults.internal_error_json(exc))
            code = int(ExitCode.INTERNAL)
    finally:
        set_no_custom(False)
    sys.stdout.flush()
    return code


def _show_traceback() -> None:
    """With --traceback: the exception being handled, on stderr (the exit code stays the same)."""
    if _state["traceback"]:
        import traceback

        traceback.print_exc(file=sys.stderr)


def run() -> None:
    sys.exit(main())
