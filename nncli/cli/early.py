"""SIGTERM from the first moment the ``nncli`` command runs code of its own.

The entry point's handler (:func:`nncli.cli.main.main`) is installed once typer, the renderer
and every command module are imported. A SIGTERM before that would kill the process by the
signal, with no error document under ``--json``. :mod:`nncli.cli` imports this module first;
in a process started as the ``nncli`` command (the console script or ``python -m nncli``, never
a program that imports nncli, nor a worker process multiprocessing spawns from it), it installs
a handler that ends the process as an interrupted command ends: ``interrupted`` on stderr, the
error document on stdout under ``--json``, exit 130. Nothing is running yet that could be left
half done. The entry point replaces it with its own handler.

Only the standard library here: this runs before anything else of nncli is imported.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

INTERRUPTED_EXIT = 130

INTERRUPTED = {
    "error": "Interrupted",
    "message": "interrupted",
    "file": None,
    "line": None,
    "column": None,
    "spec_path": None,
    "hint": "run the command again; a training run resumes with --resume",
    "exit_code": INTERRUPTED_EXIT,
}


def started_as_nncli(argv: list[str]) -> bool:
    """Whether the interpreter's own command line (``sys.orig_argv``) runs the nncli command."""
    if "--multiprocessing-fork" in argv:  # a spawned worker re-imports the command's main module
        return False
    if "-m" in argv:
        return argv[argv.index("-m") + 1 : argv.index("-m") + 2] == ["nncli"]
    return len(argv) > 1 and os.path.basename(argv[1]) in ("nncli", "nncli.exe")


def on_terminate(signum, frame) -> None:
    """SIGTERM before the entry point's handler: leave as an interrupted command does."""
    if "--json" in sys.argv[1:]:
        os.write(1, (json.dumps(INTERRUPTED, indent=2) + "\n").encode())
    os.write(2, b"interrupted\n")
    os._exit(INTERRUPTED_EXIT)


def install() -> None:
    """Install :func:`on_terminate` where SIGTERM is still the default, in the nncli command only."""
    if threading.current_thread() is not threading.main_thread():
        return
    if not started_as_nncli(list(getattr(sys, "orig_argv", []))):
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, on_terminate)
