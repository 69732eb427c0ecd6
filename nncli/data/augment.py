"""Augmentation of image batches (random crop with padding, horizontal flip), on the batch's device."""

from __future__ import annotations

from nncli.errors import InputError


def augment_batch(x, *, crop: int = 0, flip: bool = False, generator=None):
    """Random crop with zero padding and random horizontal flip, for a whole batch at once.

    Each example gets its own offset and its own coin; the work is a pad and one gather, on the
    device ``x`` lives on (no per-example Python loop, no host round trip).

    Args:
        x: images ``(B, C, H, W)``.
        crop: pad every side by this many pixels, then cut a random ``H x W`` window (0: off).
        flip: mirror each image left-right with probability 1/2.
        generator: a ``torch.Generator`` on ``x``'s device (for reproducible, resumable runs).

    Returns:
        Tensor ``(B, C, H, W)``, a new tensor (``x`` is left alone).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> augment_batch(torch.zeros(4, 1, 8, 8), crop=2, flip=True, generator=g).shape
        torch.Size([4, 1, 8, 8])
    """
    import torch
    import torch.nn.functional as F

    if x.dim() != 4:
        raise InputError(
            f"augment: expected image batches (B, C, H, W), found shape {tuple(x.shape)}",
            hint="crop and flip apply to images; remove `augment` for vector data",
        )
    batch, _, height, width = x.shape
    if crop:
        padded = F.pad(x, (crop, crop, crop, crop))  # (B, C, H+2p, W+2p)
        dy = torch.randint(0, 2 * crop + 1, (batch,), device=x.device, generator=generator)
        dx = torch.randint(0, 2 * crop + 1, (batch,), device=x.device, generator=generator)
        rows = (dy[:, None] + torch.arange(height, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
        b = torch.arange(batch, device=x.device)[:, None, None, None]
        c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[b, c, rows, cols]  # (B, C, H, W)
    if flip:
        coin = torch.rand(batch, device=x.device, generator=generator) < 0.5
        x = torch.where(coin[:, None, None, None], x.flip(-1), x)
    return x
