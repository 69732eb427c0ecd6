"""nncli: read a neural network as a YAML spec, build it as ``torch.nn.Sequential``, and draw,
count, gradcheck, probe, train and sweep it.

The Python entry point is :func:`load`; importing ``nncli`` stays cheap (torch is imported
inside ``load``, not here).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["load"]


def load(path_or_text: str | Path, seed: int | None = 0) -> nn.Sequential:
    """Build a spec into an initialised ``torch.nn.Sequential``.

    Args:
        path_or_text: a spec file (``str`` or ``Path``), or the YAML text itself. A one-line
            string naming an existing file or ending in ``.yaml``/``.yml`` is a path. A
            ``.safetensors`` file written by ``nncli export`` gives its network with its weights
            (rebuilt from the spec in the file's metadata; ``seed`` does not apply), in eval mode.
        seed: seeds torch's RNG before construction (same spec and seed, same weights); ``None``
            leaves the RNG alone.

    Returns:
        The model, on CPU in float32, in train mode. Parameter names follow the spec:
        ``"3.weight"``, ``"4.body.0.weight"``, ``"5.branches.1.0.weight"``.

    Raises:
        nncli.errors.SpecError: the spec is wrong (message with file, line and spec path).
        nncli.errors.InputError: the file cannot be read.

    Example:
        >>> import nncli, torch
        >>> model = nncli.load("input: [4]\\nlayers:\\n  - Linear: {out_features: 2}\\n")
        >>> model(torch.zeros(3, 4)).shape
        torch.Size([3, 2])
    """
    if "\n" not in str(path_or_text) and str(path_or_text).strip().endswith(".safetensors"):
        from nncli.export.safetensors_file import load_safetensors

        return load_safetensors(str(path_or_text).strip())
    from nncli.build import build_model
    from nncli.spec import load_spec, parse_spec

    one_line = "\n" not in path_or_text if isinstance(path_or_text, str) else False
    if isinstance(path_or_text, Path) or (
        one_line and (Path(path_or_text).exists() or path_or_text.strip().endswith((".yaml", ".yml")))
    ):
        spec = load_spec(path_or_text)
    else:
        spec = parse_spec(path_or_text)
    return build_model(spec, seed=seed).model
