"""Streamed training batches: a ``torch.utils.data.DataLoader`` with worker processes that
yields exactly the batches the in-memory route cuts, in the same seeded order.

The trainer owns the order: each epoch's permutation is a function of (seed, epoch), and a run
resumed mid-epoch starts at its step. :func:`batch_source` turns that permutation into one
DataLoader key per step (this rank's share of the global batch), and each key is decoded as a
whole batch in a worker (image folders: :class:`~nncli.data.images.ImageFiles`; in-memory
tensors: a gather). Augmentation stays in the trainer, on the batch, after it arrives, so it
draws from the same generator as in memory. Batches land in pinned memory on CUDA.

Data streams when ``data.stream`` is true, or when an image folder was too large to decode into
memory (its splits are then :class:`ImageFiles`).
"""

from __future__ import annotations


def streams(x_train, data_cfg) -> bool:
    """Whether training batches come through :func:`batch_source` (rather than indexing)."""
    from nncli.data.image_files import ImageFiles

    return isinstance(x_train, ImageFiles) or bool(getattr(data_cfg, "stream", None))


class BatchesOf:
    """A map-style dataset whose keys are lists of example indices and whose items are whole
    batches ``(x, y)`` on the CPU: one DataLoader task per batch, so a worker decodes a batch
    while the trainer computes the previous one."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, indices):
        import torch

        from nncli.data.image_files import ImageFiles

        idx = torch.as_tensor(indices, dtype=torch.int64)
        xb = self.x.batch(indices) if isinstance(self.x, ImageFiles) else self.x[idx]
        return xb, self.y[idx]


def batch_keys(perm, start_step: int, batch_size: int, steps: int, rank: int = 0, world: int = 1) -> list:
    """The index lists of steps ``start_step .. steps-1`` of an epoch: this rank's share of each
    global batch ``perm[step*bs:(step+1)*bs]``, as the in-memory trainer cuts it."""
    keys = []
    for step in range(start_step, steps):
        idx = perm[step * batch_size : (step + 1) * batch_size]
        local = idx[rank::world] if world > 1 else idx
        keys.append(local.cpu().tolist())
    return keys


def batch_source(
    x_train,
    y_train,
    data_cfg,
    perm,
    start_step: int,
    *,
    batch_size: int,
    steps: int,
    device,
    rank: int = 0,
    world: int = 1,
    channels_last: bool = False,
):
    """An iterator over this epoch's remaining training batches ``(xb, yb)`` on ``device``, or
    None when the data does not stream (the trainer then indexes its tensors).

    Args:
        x_train, y_train: the training split (tensors, or ImageFiles and a label tensor).
        data_cfg: the run's DataConfig (``stream``, ``workers``).
        perm: the epoch's permutation; ``start_step``: the first step still to run.
        batch_size, steps: the global batch size and the steps per epoch.
        device: where batches go (pinned host memory first on CUDA).
        rank, world: DDP shard of each global batch.
    """
    if not streams(x_train, data_cfg):
        return None
    import torch
    from torch.utils.data import DataLoader

    from nncli.data.image_files import ImageFiles

    if isinstance(x_train, ImageFiles):
        x_train = x_train.to("cpu")
    elif x_train.device.type != "cpu":  # tensors already on the device: nothing to stream
        x_train = x_train.cpu()
    y_train = y_train.cpu()
    keys = batch_keys(perm, start_step, batch_size, steps, rank, world)
    from nncli.threads import cores

    workers = min(int(getattr(data_cfg, "workers", 0) or 0), cores())  # more only wait for each other
    cuda = torch.device(device).type == "cuda"
    # generator: a DataLoader draws its workers' base seed from the global RNG otherwise, which
    # would shift dropout's random numbers away from the in-memory route (and from a resume)
    loader = DataLoader(
        BatchesOf(x_train, y_train),
        sampler=keys,
        batch_size=None,
        num_workers=workers,
        pin_memory=cuda,
        prefetch_factor=4 if workers else None,
        generator=torch.Generator().manual_seed(0),
    )

    def generate():
        for xb, yb in loader:
            if cuda:
                xb = xb.to(device, non_blocking=True)
                yb = yb.to(device, non_blocking=True)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb

    return generate()
