"""Fault injection for the training tests: a real signal at a known training step.

:class:`SignalAt` is a training callback (nncli's public :class:`~nncli.train.Callback`) that
makes the process send itself a signal right after a global step, once that step's checkpoint
is on disk, so that the real handlers run (SIGINT: a clean stop and exit 130; SIGKILL: death).

Tests that train in-process use :func:`signal_at` (every ``run_training`` inside the block gets
the callback). Tests that need a real process (SIGKILL) run this file instead of
``python -m nncli``::

    python tests/fault_injection.py 13:SIGKILL train spec.yaml --out run

which installs the callback for every ``run_training`` of the process (``nncli train``, and
``nncli sweep``'s in-process runs), then runs nncli's command line with the remaining arguments.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from nncli.train.callbacks import Callback


class SignalAt(Callback):
    """Send this process ``signum`` right after global step ``step`` (1-based, as the run counts)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_batch_end(self, trainer, batch) -> None:
        if batch.global_step == self.step:
            trainer.files.wait()  # "after step k": the checkpoint of that step is on disk
            os.kill(os.getpid(), self.signum)


def parse(text: str) -> tuple[int, int]:
    """``"13:SIGKILL"`` -> ``(13, signal.SIGKILL)``."""
    step, _, name = text.partition(":")
    return int(step), int(getattr(signal, name))


def install(step: int, signum: int):
    """Make every ``run_training`` of this process add ``SignalAt(step, signum)``; returns an undo."""
    import nncli.train
    import nncli.train.loop as loop

    real = loop.run_training

    def run_training(*args, callbacks=(), **kwargs):
        return real(*args, callbacks=[*callbacks, SignalAt(step, signum)], **kwargs)

    loop.run_training = nncli.train.run_training = run_training

    def undo() -> None:
        loop.run_training = nncli.train.run_training = real

    return undo


@contextmanager
def signal_at(step: int, signum: int):
    """Within the block, every training run sends itself ``signum`` after global step ``step``."""
    undo = install(step, signum)
    try:
        yield
    finally:
        undo()


def command(fault: str, *args) -> list[str]:
    """The argv of a real ``nncli <args>`` process with the fault installed."""
    return [sys.executable, str(Path(__file__).resolve()), fault, *map(str, args)]


if __name__ == "__main__":
    install(*parse(sys.argv[1]))
    from nncli.cli import main

    sys.exit(main(sys.argv[2:]))
