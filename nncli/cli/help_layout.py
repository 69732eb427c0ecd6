"""The layout of ``nncli COMMAND --help``: usage, one paragraph, arguments and options, then details.

click prints a command's whole docstring before its options, so a command whose docstring
explains its method (gradcheck, probe) pushed the options a screen down. Here the first
paragraph stays on top and the rest follows the options, under "Details:".

Also: typer 0.25 sets an argument's ``help`` before calling click 8.5's ``Argument.__init__``,
which resets it to None, so ``SPEC`` showed no help; it is set again after (and click's own
"Positional arguments" section is left out: typer's "Arguments" lists them).

Applied once, on import (nncli/cli/__init__.py imports this module); torch-free and cheap.
"""

from __future__ import annotations

import inspect

import typer.core

_APPLIED = False


def _split(text: str) -> tuple[str, str]:
    """A docstring -> (first paragraph, the rest), both dedented."""
    text = inspect.cleandoc(text or "")
    head, _, rest = text.partition("\n\n")
    return head, rest.strip()


def apply() -> None:
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True

    arg_init = typer.core.TyperArgument.__init__

    def argument_init(self, *args, help=None, **kwargs):
        arg_init(self, *args, help=help, **kwargs)
        self.help = help

    typer.core.TyperArgument.__init__ = argument_init

    def format_help_text(self, ctx, formatter) -> None:
        head, _ = _split(self.help or "")
        if head:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(head)

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

    typer.core.TyperCommand.format_help_text = format_help_text
    if hasattr(typer.core.TyperCommand, "format_arguments"):
        # click >= 8.5 lists "Positional arguments" itself; typer's "Arguments" section already does
        typer.core.TyperCommand.format_arguments = lambda self, ctx, formatter: None
    typer.core.TyperCommand.format_epilog = format_epilog


apply()
