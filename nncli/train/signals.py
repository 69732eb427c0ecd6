"""Ctrl-C and SIGTERM during training.

A signal only sets a flag; the training loop reads it between steps, so a checkpoint is never
written from the middle of an update.
"""

from __future__ import annotations

import signal
import threading


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
