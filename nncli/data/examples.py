"""Examples from a file for a spec (``gradcheck --data``, ``probe --data``), read as training reads
them: the spec's ``data:`` section names the label column to drop, and the inputs are standardised
with the statistics training would use, so a probe sees the activations training sees.
"""

from __future__ import annotations

import math
from pathlib import Path

from nncli.data.config import resolve_data_config
from nncli.data.dataset import normalization_stats, normalize
from nncli.data.inputs import check_token_ids, fit_input_shape, read_inputs
from nncli.errors import NncliError


def read_examples(path: str | Path, spec) -> tuple:
    """The examples of ``path`` in the spec's input shape, and how they were standardised.

    The statistics are those of the training split of the spec's own ``data:`` section when it
    names data that can be read here; else the file's own (per channel of the input, as training
    takes them). Token ids are checked, never standardised; ``normalize: false`` leaves floats raw.

    Returns:
        ``(x, how)``: float32 (or int64 ids) tensor ``(N, *input)``, and ``"spec data"``,
        ``"file"`` or ``None`` (left raw).

    Raises:
        InputError: missing or unreadable file, NaN values, a shape that does not fit (exit 2).
    """
    path = Path(path)
    config = _spec_data(spec)
    target = config.target if config is not None else None
    x = read_inputs(path, target=target, n_features=math.prod(spec.input))
    x = fit_input_shape(x, tuple(spec.input), what=path.name)
    if getattr(spec, "integer_input", False):
        return check_token_ids(x, spec.input_high, path.name), None
    if config is not None and not config.normalize:
        return x, None
    mean, std, how = _training_statistics(config, spec)
    if mean is None:
        mean, std = normalization_stats(x)
        how = "file"
    return normalize(x, mean, std), how


def _spec_data(spec):
    """The spec's resolved data section, or None (absent, or naming data not on this machine)."""
    if getattr(spec, "data", None) is None:
        return None
    base_dir = Path(spec.path).resolve().parent if getattr(spec, "path", None) else Path.cwd()
    try:
        return resolve_data_config(spec.data, {}, base_dir=base_dir)
    except NncliError:
        return None


def _training_statistics(config, spec) -> tuple:
    """Mean and std of the spec data's training split, as ``nncli train`` would compute them
    (dicts by input name for a spec with several inputs)."""
    from nncli.data.multi import load_spec_dataset

    if config is None:
        return None, None, None
    try:
        ds = load_spec_dataset(config, spec)
    except NncliError:
        return None, None, None
    if ds.mean is None:
        return None, None, None
    return ds.mean, ds.std, "spec data"


def read_multi_examples(path: str | Path, spec, command: str) -> tuple:
    """:func:`read_examples` for a spec with several inputs: one array per input name
    (:func:`~nncli.data.multi.read_multi_inputs`), each float input standardised as training
    standardises it (with its own statistics from the spec data's training split, else the
    file's own; left raw under ``normalize: false``), token ids checked and kept.

    Returns:
        ``(x, how)``: :class:`~nncli.data.multi.Inputs` and ``"spec data"``, ``"file"`` or ``None``.
    """
    from nncli.data.multi import read_multi_inputs

    x = read_multi_inputs(Path(path), spec, command)
    config = _spec_data(spec)
    floats = [inp.name for inp in spec.input_specs if not inp.dtype.startswith("int")]
    if not floats or (config is not None and not config.normalize):
        return x, None
    mean, std, how = _training_statistics(config, spec)
    if mean is None:
        tensors = dict(zip(x.names, x.tensors))
        mean, std = {}, {}
        for name in floats:
            mean[name], std[name] = normalization_stats(tensors[name])
        how = "file"
    return x.standardized(mean, std), how
