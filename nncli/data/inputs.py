"""Inputs for gradcheck, probe and predict: :func:`read_inputs` reads a file of examples, and
:func:`fit_input_shape` views them in the spec's input shape when that is a mere flatten/unflatten.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nncli.data.user_files import LABEL_NAMES, X_KEYS, csv_rows, is_number, load_arrays, pick_array, target_column
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


def read_inputs(path: Path, *, target: str | int | None = None, n_features: int | None = None):
    """Inputs for predict, gradcheck and probe: an ``.npz`` (``x`` or its only array), a ``.csv``
    of features, or a ``.pt``.

    A CSV may still hold its label column: the column the data section names (``target``), one
    named label/target/y/class, or (``n_features`` given) the one extra column beyond the
    network's inputs, found as training finds it, is dropped.

    Returns:
        float32 tensor ``(N, ...)``.

    Raises:
        InputError: missing, unreadable, not numeric, or NaN/infinite values (the first row
            named) (exit 2).
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
        x = _csv_features(path, target, n_features)
    else:
        raise InputError(f"expected an .npz, .npy, .csv or .pt input file, found {path.name}")
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise InputError(f"{path.name}: expected numeric inputs, found dtype {x.dtype}", file=path)
    if x.ndim == 0:
        raise InputError("expected one row per example, found a single number", file=path)
    if x.ndim == 1:
        x = x[:, None]
    check_finite(x, path.name, path)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _csv_features(path: Path, target, n_features: int | None):
    """The feature columns of a CSV, its label column dropped where one is known."""
    rows = csv_rows(path)
    header = None if all(is_number(c) for c in rows[0]) else [c.strip() for c in rows[0]]
    start = 0 if header is None else 1
    width = len(rows[0])
    drop = None
    named = header is not None and (
        (isinstance(target, str) and target in header)
        or (target is None and any(h.lower() in LABEL_NAMES for h in header))
    )
    if named or (n_features is not None and width == n_features + 1 and not isinstance(target, str)):
        drop = target_column(path, header, width, target)
    values = []
    for i, row in enumerate(rows[start:], start=start + 1):
        try:
            values.append([float(c) for j, c in enumerate(row) if j != drop])
        except ValueError:
            raise InputError(
                f"{path.name}: expected numbers only (features, no label column)", file=path, line=i
            ) from None
    if not values:
        raise InputError(f"{path.name}: no data rows", file=path)
    if len({len(v) for v in values}) > 1:
        raise InputError(f"{path.name}: rows have different numbers of columns", file=path)
    return np.asarray(values)


def check_finite(x, what: str, file=None, first_row: int = 0) -> None:
    """Refuse NaN or infinite inputs, naming the first example that holds one (exit 2)."""
    a = np.asarray(x)
    if a.dtype.kind != "f" or not len(a):
        return
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{what}: {int(bad.sum())} example(s) contain NaN or infinite values, the first is row {row + first_row}",
            file=file,
            hint="clean the data first (drop or impute the missing values)",
        )


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
