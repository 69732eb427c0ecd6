"""Ctrl-C and SIGTERM during training, and the fault injection that tests use to send them.

A signal only sets a flag; the training loop reads it between steps, so a checkpoint is never
written from the middle of an update.
"""

from __future__ import annotations

import os
import signal
import threading

# Fault injection for tests, e.g. "13:SIGKILL" or "7:SIGINT": the process sends itself that signal
# right after global step 13 (after any checkpoint of that step), exercising the real handlers.
SIGNAL_ENV = "NNCLI_SIGNAL_AT_STEP"


def fault_injection() -> tuple[int, int]:
    """``(step, signal number)`` from :data:`SIGNAL_ENV`; ``(0, 0)`` when it is not set."""
    text = os.environ.get(SIGNAL_ENV, "")
    if not text:
        return 0, 0
    step, _, name = text.partition(":")
    return int(step), int(getattr(signal, name or "SIGKILL"))


class Interrupt:
    """SIGINT/SIGTERM -> a flag the loop reads between steps (a checkpoint is never half-updated).
    A second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False
