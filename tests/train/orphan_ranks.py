"""Worker-side helpers for the lock tests: code that runs inside spawned DDP ranks and spawned
lock holders, so it lives in an importable module rather than in a test file."""

from __future__ import annotations

import time

from nncli.train.callbacks import Callback


class SlowEpochs(Callback):
    """Half a second per epoch: the ranks are still training when the test looks at them."""

    def on_epoch_end(self, trainer, record, improved) -> None:
        time.sleep(0.5)


def outlive_the_launcher() -> list:
    """A DDP callbacks factory that undoes the rank's parent-death signal, as a platform without one
    (or a rank that missed it) would be: the rank goes on after its launcher dies."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 0)  # PR_SET_PDEATHSIG off
    return [SlowEpochs()]


def hold_shared(lock, ready) -> None:
    """A spawned child that holds ``lock`` (a SharedLock it was given) until it is killed."""
    ready.set()
    time.sleep(600)
