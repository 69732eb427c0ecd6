"""nncli's command line: parse -> call one library function -> render -> exit code.

Thin on purpose. Each command lives in its own module here and imports its tool lazily (torch
is slow to load and ``nncli --help`` must not pay for it), calls one function returning a result
object, and hands it to :mod:`nncli.render`. ``app.py`` holds the Typer app and what commands
share; ``main.py`` the entry point that maps errors to exit codes.
"""

from nncli.cli import early

early.install()  # SIGTERM from now on ends the nncli command cleanly, before the imports below

from nncli.cli.app import app  # noqa: E402

# Each import registers its commands on `app`, in the order `nncli --help` lists them.
from nncli.cli import check, diagram, probe, train, attack, sweep, gradcheck, export, config  # noqa: E402,F401  (isort: skip)
from nncli.cli.main import main, run  # noqa: E402

__all__ = ["app", "main", "run"]
