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


def load(
    path_or_text: str | Path, seed: int | None = 0, *, checkpoint: str = "best", allow_custom: bool = True
) -> nn.Module:
    """Build a spec into an initialised ``torch.nn.Sequential``, or open a trained model.

    Args:
        path_or_text: a spec file (``str`` or ``Path``), or the YAML text itself. A one-line
            string naming an existing file or ending in ``.yaml``/``.yml`` is a path. A run
            folder written by ``nncli train`` gives its trained model (``checkpoint`` weights); a
            ``.safetensors`` file written by ``nncli export`` gives the model it holds (rebuilt
            from the spec in the file's metadata). In both cases ``seed`` does not apply.
        seed: seeds torch's RNG before construction (same spec and seed, same weights); ``None``
            leaves the RNG alone.
        checkpoint: for a run folder, ``best`` (the default) or ``last``.
        allow_custom: for a run folder, False refuses a spec with Custom layers before any of
            their code is imported.

    Returns:
        For a spec: the model, on CPU in float32, in train mode. Parameter names follow the spec:
        ``"3.weight"``, ``"4.body.0.weight"``, ``"5.branches.1.0.weight"``. For a run folder or
        an exported file of one: a :class:`nncli.modules.TrainedNetwork` in eval mode that takes
        raw inputs (the training data's normalisation is its first module), with ``.classes``.

    Raises:
        nncli.errors.SpecError: the spec is wrong (message with file, line and spec path).
        nncli.errors.InputError: the file cannot be read.

    Example:
        >>> import nncli, torch
        >>> model = nncli.load("input: [4]\\nlayers:\\n  - Linear: {out_features: 2}\\n")
        >>> model(torch.zeros(3, 4)).shape
        torch.Size([3, 2])
    """
    one_line = "\n" not in str(path_or_text)
    if (
        one_line and str(path_or_text).strip() and Path(str(path_or_text).strip()).is_dir()
    ):  # a run folder (open_run says if it is not)
        return _load_run(Path(str(path_or_text).strip()), checkpoint, allow_custom)
    if one_line and str(path_or_text).strip().endswith(".safetensors"):
        from nncli.export.safetensors_file import load_safetensors

        return load_safetensors(str(path_or_text).strip())
    from nncli.build import build_model
    from nncli.spec import load_spec, parse_spec

    if isinstance(path_or_text, Path) or (
        one_line and (Path(path_or_text).exists() or path_or_text.strip().endswith((".yaml", ".yml")))
    ):
        spec = load_spec(path_or_text)
    else:
        spec = parse_spec(path_or_text)
    return build_model(spec, seed=seed).model


def _load_run(run_dir: Path, checkpoint: str, allow_custom: bool) -> nn.Module:
    from nncli.train.trained import load_trained, open_run

    run = open_run(run_dir, allow_custom=allow_custom)
    return load_trained(run, checkpoint, "cpu").raw_input_model(run.classes)
