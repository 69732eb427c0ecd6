"""The background writer of run files, and the CPU snapshot it writes from.

Pickling a checkpoint and fsyncing it take longer than a small model's training step, so run
files are written on one background thread while the next steps run.
"""

from __future__ import annotations

import torch

from nncli.files import OneThread


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


class BackgroundFiles(OneThread):
    """Writes run files on one background thread, in the order submitted, so that pickling and
    fsync overlap the next training steps instead of stalling them. ``wait()`` blocks until
    everything submitted is on disk and re-raises a failed write."""

    def __init__(self) -> None:
        super().__init__("nncli-files")
