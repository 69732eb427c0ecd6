"""Worker processes for the sweep's stop test: code that runs inside spawned children, so it lives
in an importable module rather than in a test file."""

from __future__ import annotations

import signal
import time


def sleep_until_stopped(ready) -> None:
    """A worker that SIGTERM ends at once."""
    ready.set()
    time.sleep(600)


def ignore_sigterm(ready) -> None:
    """A worker that does not stop on SIGTERM (stuck saving, say): only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    time.sleep(600)
