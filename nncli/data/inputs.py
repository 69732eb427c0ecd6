"""Inputs for gradcheck, probe and predict: :func:`read_inputs` reads a file of examples, and
:func:`fit_input_shape` views them in the spec's input shape when that is a mere flatten/unflatten.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nncli.data.user_files import X_KEYS, csv_rows, is_number, load_arrays, pick_array
from nncli.errors import InputError


def fit_input_shape(x, shape: tuple[int, ...], what: str = "data"):
    """View inputs ``(N, *s)`` as ``(N, *shape)`` when that is a mere flatten/unflatten.

    Allowed: equal shapes; one side flat with the same number of elements (8x8 digits into an MLP
    with ``input: [64]``); shapes equal up to leading 1s (``[28, 28]`` vs ``[1, 28, 28]``).
    Anything else (say ``[3, 32, 32]`` vs ``[32, 32, 3]``) would silently scramble pixels, so it is
    refused.

    Raises:
        InputError: the shapes do not fit (exit 2).
    """
    have = tuple(x.shape[1:])
    shape = tuple(shape)
    if have == shape:
        return x
    numel = math.prod(have)
    strip = lambda s: tuple(s[next((i for i, d in enumerate(s) if d != 1), len(s)) :])  # noqa: E731
    if numel == math.prod(shape) and (len(have) == 1 or len(shape) == 1 or strip(have) == strip(shape)):
        return x.reshape((x.shape[0],) + shape)
    raise InputError(
        f"{what}: input shape does not match the spec: the spec's `input` is {list(shape)}, "
        f"the data has {list(have)} per example",
        hint="change `input:` in the spec, or pick data with that shape",
    )


def read_inputs(path: Path):
    """Inputs for ``nncli predict``: an ``.npz`` (``x`` or its only array), a ``.csv`` of features, or a ``.pt``.

    Returns:
        float32 tensor ``(N, ...)``.

    Raises:
        InputError: missing, unreadable, or not numeric (exit 2).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such input file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".npz", ".npy", ".pt", ".pth"):
        arrays = load_arrays(path)
        x = next(iter(arrays.values())) if len(arrays) == 1 else pick_array(arrays, None, X_KEYS, "input", path)
    elif suffix == ".csv":
        rows = csv_rows(path)
        start = 0 if all(is_number(c) for c in rows[0]) else 1  # else a header row
        values = []
        for i, row in enumerate(rows[start:], start=start + 1):
            try:
                values.append([float(c) for c in row])
            except ValueError:
                raise InputError(
                    f"{path.name}: expected numbers only (features, no label column)", file=path, line=i
                ) from None
        if not values:
            raise InputError(f"{path.name}: no data rows", file=path)
        if len({len(v) for v in values}) > 1:
            raise InputError(f"{path.name}: rows have different numbers of columns", file=path)
        x = np.asarray(values)
    else:
        raise InputError(f"expected an .npz, .npy, .csv or .pt input file, found {path.name}")
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise InputError(f"{path.name}: expected numeric inputs, found dtype {x.dtype}", file=path)
    if x.ndim == 1:
        x = x[:, None]
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def check_token_ids(x, high: int | None, what: str = "data", vocabulary: list | None = None):
    """Integer inputs for a spec with ``input: {dtype: int64, high: H}``: ids in ``[0, H)``, as int64.

    Float inputs holding whole numbers are converted (a ``.csv`` of ids reads as floats).

    Raises:
        InputError: fractional values, or ids outside ``[0, high)`` (an Embedding would fail
            on them mid-run), with the vocabulary size when the data has one.
    """
    import torch

    if x.is_floating_point():
        if len(x) and not (torch.isfinite(x).all() and torch.equal(x, x.round())):
            raise InputError(
                f"{what}: the network takes integer token ids, found fractional or non-finite inputs",
                hint="token ids are whole numbers in [0, high)",
            )
        x = x.long()
    elif x.dtype != torch.int64:
        x = x.long()
    if high is not None and len(x) and (int(x.min()) < 0 or int(x.max()) >= high):
        found = f"ids from {int(x.min())} to {int(x.max())}"
        if vocabulary is not None:
            found = f"{len(vocabulary)} distinct tokens ({found})"
        raise InputError(
            f"{what}: the spec's input takes token ids in [0, {high}) (`input.high`), the data has {found}",
            hint=f"set `high: {max(int(x.max()) + 1, len(vocabulary or ()))}` (or more) in the "
            "spec's input, and as many outputs"
            if int(x.min()) >= 0
            else None,
        )
    return x


def check_dataset_inputs(ds, spec) -> None:
    """The loaded inputs against the spec's input dtype: token ids for an integer input (in
    ``[0, high)``), and no token ids for a float input (an Embedding must come first)."""
    if getattr(spec, "integer_input", False):
        vocabulary = ds.classes  # the text set's characters, for the message
        for split in ("train", "val", "test"):
            x = getattr(ds, f"x_{split}")
            setattr(
                ds,
                f"x_{split}",
                check_token_ids(
                    x, spec.input_high, f"data {ds.name} ({split})", vocabulary if split == "train" else None
                ),
            )
    elif not ds.x_train.is_floating_point():
        length = list(ds.x_train.shape[1:])
        high = ds.num_classes or int(ds.x_train.max()) + 1
        raise InputError(
            f"data {ds.name}: gives integer token ids of shape {length} per example, but the spec's input is float",
            hint=f"declare the input as tokens: `input: {{shape: {length}, dtype: int64, high: {high}}}` "
            "and start the network with an Embedding",
        )
