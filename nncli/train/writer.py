"""The background writer of run files, and the CPU snapshot it writes from.

Pickling a checkpoint and fsyncing it take longer than a small model's training step, so run
files are written on one background thread while the next steps run.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch


def snapshot(obj):
    """A deep copy of a checkpoint's tensors on the CPU: the background writer must not see the
    weights and optimizer moments change under it while the next steps run."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class BackgroundFiles:
    """Writes run files on one background thread, in the order submitted, so that pickling and
    fsync overlap the next training steps instead of stalling them. ``wait()`` blocks until
    everything submitted is on disk and re-raises a failed write."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nncli-files")
        self.pending: list = []

    def submit(self, fn, *args) -> None:
        self.pending.append(self.pool.submit(fn, *args))

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)
