"""``--device auto|cpu|cuda|cuda:N`` -> a :class:`torch.device`, or a clear error when CUDA is absent.

torch is imported inside the function: ``nncli --help`` must not pay for it (a lazy heavy import).
"""

from __future__ import annotations

import re

from nncli.errors import InputError, did_you_mean

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(name: str = "auto"):
    """Turn a ``--device`` value into a concrete :class:`torch.device`.

    ``auto`` picks the current CUDA device when one is present, else the CPU. A CUDA device is
    always returned with its index (``cuda:0``, not ``cuda``) so reports name the exact card.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (case and surrounding blanks ignored).

    Returns:
        torch.device: the device to build and run on.

    Raises:
        InputError: an unknown name, CUDA asked for on a machine without it, or an index past the
            last visible GPU (exit code 2).

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    import torch

    text = str(name).strip().lower()
    if text == "cpu":
        return torch.device("cpu")
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    match = _CUDA.match(text)
    if match is None:
        raise InputError(
            f"expected one of auto, cpu, cuda, cuda:N, found {name!r}",
            param="device",
            hint=did_you_mean(text, ("auto", "cpu", "cuda")),
        )
    if not torch.cuda.is_available():
        why = (
            "this torch build has no CUDA support"
            if torch.version.cuda is None
            else "no NVIDIA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)"
        )
        raise InputError(
            f"asked for {text}, but CUDA is not available: {why}",
            param="device",
            hint="use --device cpu, or --device auto to pick CUDA only when present",
        )
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if match.group(1) is None else int(match.group(1))
    if index >= count:
        raise InputError(
            f"{text}: expected a GPU index below {count}, found {index} "
            f"({count} CUDA device{'s' if count != 1 else ''} visible)",
            param="device",
            hint="list the GPUs with nvidia-smi; indices start at 0",
        )
    return torch.device("cuda", index)
