"""``--out``/``-o``: the one name of the output flag of every command that writes a file.

A command whose output flag had another name (``diagram --output``, ``attack --save``) keeps
accepting it, hidden from ``--help``, so that scripts written against it still run; an error about
the output then names the flag the user typed.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer

from nncli.errors import InputError, NncliError


def old_out_option(name: str):
    """The hidden option for the output flag's old ``name`` (``--save``)."""
    return typer.Option(None, name, hidden=True, help="The old name of --out.")


def either_out(out: Path | None, old: Path | None, old_name: str) -> Path | None:
    """The output path given by ``--out`` or by its old name ``old_name``.

    Raises:
        InputError: both flags given, with different paths (exit 2).
    """
    if out is not None and old is not None and out != old:
        raise InputError(f"--out {out} and {old_name} {old}: {old_name} is the old name of --out; give one of them")
    return out if out is not None else old


@contextmanager
def chosen_out(out: Path | None, old: Path | None, old_name: str, param: str):
    """Yield :func:`either_out`; within the block, an error the library raises about ``param``
    names the flag that was typed (``--out`` or the old name)."""
    typed = old_name if out is None and old is not None else "--out"
    try:
        yield either_out(out, old, old_name)
    except NncliError as err:
        if getattr(err, "param", None) == param and err.message.startswith(f"{param}:"):
            err.message = typed + err.message[len(param) :]
            err.param = None  # named already: the command line's own mapping leaves it alone
        raise


def out_option(help: str, default=None):
    """The ``--out``/``-o`` option with this help text."""
    return typer.Option(default, "--out", "-o", help=help)
