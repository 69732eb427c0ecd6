"""The layout of ``nncli COMMAND --help``: usage, one paragraph, arguments and options, then details.

click prints a command's whole docstring before its options, so a command whose docstring
explains its method (gradcheck, probe) pushed the options a screen down. :class:`NncliCommand`
keeps the first paragraph on top and puts the rest after the options, under "Details:".

Also: typer 0.25 sets an argument's ``help`` before calling click 8.5's ``Argument.__init__``,
which resets it to None, so ``SPEC`` showed no help; the command reads it back from the
function's ``typer.Argument(help=...)``. click's own "Positional arguments" section is left out:
typer's "Arguments" already lists them.

Every command registered on :data:`nncli.cli.app.app` gets this class (:class:`NncliTyper`);
nothing of typer's is patched. Torch-free and cheap.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer
import typer.core


def _split(text: str) -> tuple[str, str]:
    """A docstring -> (first paragraph, the rest), both dedented."""
    text = inspect.cleandoc(text or "")
    head, _, rest = text.partition("\n\n")
    return head, rest.strip()


def _restore_argument_help(callback, params) -> None:
    """Give each argument that lost its help the ``help=`` of its ``typer.Argument`` default."""
    function = getattr(callback, "__wrapped__", None)
    if function is None:
        return
    try:
        defaults = {name: p.default for name, p in inspect.signature(function).parameters.items()}
    except (TypeError, ValueError):  # pragma: no cover - a callable inspect cannot read
        return
    for param in params or ():
        if getattr(param, "param_type_name", "") == "argument" and not getattr(param, "help", None):
            param.help = getattr(defaults.get(param.name), "help", None)


class NncliCommand(typer.core.TyperCommand):
    """A typer command whose help shows the first docstring paragraph, the options, then the rest."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _restore_argument_help(kwargs.get("callback"), self.params)

    def invoke(self, ctx):
        # typer turns Ctrl-C into a bare exit 130 before nncli's entry point sees it, which would
        # leave a --json caller without its error document
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            from nncli.cli.faults import Interrupted

            raise Interrupted() from exc
        except SystemExit as exc:  # nncli never calls sys.exit in a command: user code (a Custom forward) did
            from nncli.errors import InputError

            raise InputError(
                f"code nncli ran for the spec (a Custom layer) called sys.exit({exc.code!r}) while {ctx.info_name} ran",
                hint="a Custom layer must return a tensor or raise an exception, never exit",
            ) from None

    def format_help_text(self, ctx, formatter) -> None:
        head, _ = _split(self.help or "")
        if head:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(head)

    def format_arguments(self, ctx, formatter) -> None:
        """Nothing: click >= 8.5 lists "Positional arguments" here, typer's "Arguments" already does."""

    def format_epilog(self, ctx, formatter) -> None:
        _, rest = _split(self.help or "")
        if rest:
            with formatter.section("Details"):
                for para in rest.split("\n\n"):
                    formatter.write_text(para)
                    formatter.write_paragraph()
        if self.epilog:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(self.epilog)


class NncliTyper(typer.Typer):
    """A Typer app whose commands are :class:`NncliCommand` unless one names another class."""

    def command(self, *args: Any, cls: type | None = None, **kwargs: Any):
        return super().command(*args, cls=cls or NncliCommand, **kwargs)
