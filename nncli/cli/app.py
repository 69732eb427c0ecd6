"""The Typer app every command registers on, and what the commands share.

Shared: the lazily imported renderer, the root callback that completes the invocation's
:class:`~nncli.cli.options.Options` (``--traceback``, ``--no-custom``), help texts and the option
types several commands take.
"""

from __future__ import annotations

import importlib.util
from enum import Enum

import typer

from nncli.cli.help_layout import NncliTyper
from nncli.errors import CheckFailed
from nncli.lazy import LazyModule
from nncli.train.config import OPTIMIZERS

render = LazyModule("nncli.render")

app = NncliTyper(
    name="nncli",
    help="Network diagrams, checks and experiments from YAML specs.\n\n"
    "A spec lists layers (torch.nn names, Residual, Repeat, Custom, Step); nncli builds it as a "
    "torch.nn.Sequential, then checks, counts, draws, gradchecks, probes and trains it.\n\n"
    "Exit codes: 0 ok; 1 a check found a problem; 2 bad input; 3 a bug in nncli; 130 interrupted.",
    no_args_is_help=True,
    # click 8.5 suggests a close command itself (typer's would say it twice); the click that
    # typer >= 0.26 vendors does not, so there typer's suggestion is the one
    suggest_commands=importlib.util.find_spec("typer._click") is not None,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich's markdown renderer would load at every start-up
    context_settings={"help_option_names": ["-h", "--help"]},
)

JSON_HELP = "Print one JSON document on stdout (nothing else there); logs go to stderr."
SPEC_HELP = "The network spec (YAML)."


DEVICE_HELP = "auto, cpu, cuda or cuda:N (auto picks CUDA when present)."

# The training choices live once, in the torch-free nncli.train.config.
Optimizer = Enum("Optimizer", {v: v for v in OPTIMIZERS}, type=str)


class DType(str, Enum):
    float32 = "float32"
    float64 = "float64"
    float16 = "float16"
    bfloat16 = "bfloat16"


def json_flag() -> bool:
    return typer.Option(False, "--json", help=JSON_HELP)


def _print_version(value: bool) -> None:
    # An eager option callback: runs while parsing, so `nncli --version` needs no command
    # (checked inside _root it never ran: the group first failed with "Missing command").
    if value:
        from importlib.metadata import version as pkg_version

        typer.echo(f"nncli {pkg_version('nncli')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    traceback: bool = typer.Option(
        False, "--traceback", help="Show the Python traceback of an error (for bug reports)."
    ),
    version: bool = typer.Option(
        False, "--version", help="Print nncli's version and exit.", is_eager=True, callback=_print_version
    ),
    no_custom: bool = typer.Option(
        False,
        "--no-custom",
        help="Refuse every Custom layer (exit 2) before importing anything. A Custom layer runs "
        "Python code: check an untrusted spec with --no-custom (or NNCLI_NO_CUSTOM=1).",
    ),
) -> None:
    from nncli.cli.options import options_of

    # the commands below read it as their context's object (click hands it down to subcontexts)
    ctx.obj = options_of(ctx).with_root_flags(traceback=traceback, no_custom=no_custom)


def fail_check(message: str) -> None:
    """A check ran and found a problem: exit 1 after the report was printed."""
    raise CheckFailed(message)
