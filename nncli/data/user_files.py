"""User data files: ``.npz``/``.npy`` (``allow_pickle=False``), ``.pt``/``.pth``
(``torch.load(weights_only=True)``) and ``.csv`` (read as text); nothing is ever unpickled.

:func:`read_file` gives a ``data: {path: ...}`` source's arrays; the helpers that find, load and
check arrays are shared with :mod:`nncli.data.inputs`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nncli.data.config import DataConfig
from nncli.errors import InputError, did_you_mean

X_KEYS = ("x", "X", "inputs", "features", "data")
Y_KEYS = ("y", "Y", "labels", "targets", "target")


def pick_array(arrays: dict, key: str | None, defaults, what: str, path: Path, suffix: str = ""):
    if key is not None:
        if key + suffix in arrays:
            return arrays[key + suffix]
        if suffix:
            return None
        raise InputError(
            f"no array {key!r} in {path.name}; found {', '.join(map(str, arrays)) or 'none'}",
            file=path,
            hint=did_you_mean(key, map(str, arrays)),
        )
    for name in defaults:
        if name + suffix in arrays:
            return arrays[name + suffix]
    if suffix:
        return None
    raise InputError(
        f"no {what} array in {path.name}: expected one named {' / '.join(defaults)}; "
        f"found {', '.join(map(str, arrays)) or 'none'}",
        file=path,
        hint=f"name the array with `{'x_key' if what == 'input' else 'y_key'}:` in data",
    )


def _as_numpy(value: np.ndarray, path: Path, key: str) -> np.ndarray:
    if value.dtype == object or value.dtype.kind not in "biuf" and key.startswith("x"):
        raise InputError(f"array {key!r}: expected numbers, found dtype {value.dtype}", file=path)
    if np.ndim(value) == 0:
        raise InputError(f"array {key!r}: expected one row per example, found a single number", file=path)
    return value


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The named arrays in an ``.npz``, ``.npy`` or ``.pt``/``.pth`` file; nothing is unpickled.

    A ``.pt`` may hold a dict of tensors, one tensor (named ``x``) or a pair ``(x, y)``; a ``.npy``
    is one array, named ``x``. Values that are not arrays become numpy arrays (object dtype where
    numpy cannot make numbers of them, which the callers refuse once they pick that array).

    Raises:
        InputError: corrupt or foreign file, pickled objects, or an unexpected layout (exit 2).
    """
    suffix = path.suffix.lower()
    if suffix in (".npz", ".npy"):
        try:
            # allow_pickle=False: an object array would need unpickling (arbitrary code).
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.ndarray):  # a .npy (whatever its suffix): one array
                return {"x": loaded}
            with loaded as npz:
                return {k: npz[k] for k in npz.files}
        except ValueError as exc:
            raise InputError(
                f"cannot read {path.name}: {exc} (object arrays are refused: no unpickling)", file=path
            ) from None
        except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError: a corrupt or foreign file
            raise InputError(f"cannot read {path.name} as {suffix}: {exc}", file=path) from None
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError for anything but tensors/containers
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"cannot read {path.name} with torch.load(weights_only=True): {first}",
            file=path,
            hint="save a dict {'x': tensor, 'y': tensor} or a tuple (x, y) of tensors",
        ) from None
    if isinstance(loaded, torch.Tensor):
        loaded = {"x": loaded}
    elif isinstance(loaded, (tuple, list)) and len(loaded) in (1, 2):
        loaded = dict(zip(("x", "y"), loaded))
    if not isinstance(loaded, dict):
        size = f" of {len(loaded)}" if isinstance(loaded, (tuple, list)) else ""
        raise InputError(
            f"{path.name}: expected a dict of tensors, a tensor or a pair (x, y), found {type(loaded).__name__}{size}",
            file=path,
        )
    return {str(k): _to_numpy(v) for k, v in loaded.items()}


def _to_numpy(value) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        # numpy has no bfloat16 (or other low-precision floats): widen them, exactly.
        return (
            value.float()
            if value.is_floating_point() and value.dtype not in (torch.float16, torch.float32, torch.float64)
            else value
        ).numpy()
    try:
        return np.asarray(value)
    except ValueError:  # ragged lists
        return np.asarray([value], dtype=object)


def read_file(config: DataConfig):
    path = config.path
    if path.suffix.lower() == ".csv":
        x, y, classes = read_csv(path, config.target)
        return x, y, None, None, None, None, classes
    arrays = load_arrays(path)
    # The training pool is x_train/y_train, else x/y; an explicit x_test or x_val beside either is
    # that split (a file with x, y, x_test, y_test keeps its own test set).
    suffix = "_train" if pick_array(arrays, config.x_key, X_KEYS, "input", path, "_train") is not None else ""
    parts = [
        pick_array(arrays, config.x_key, X_KEYS, "input", path, suffix),
        pick_array(arrays, config.y_key, Y_KEYS, "target", path, suffix),
    ]
    for split in ("_test", "_val"):
        parts += [
            pick_array(arrays, config.x_key, X_KEYS, "input", path, split),
            pick_array(arrays, config.y_key, Y_KEYS, "target", path, split),
        ]
    names = ["x", "y", "x_test", "y_test", "x_val", "y_val"]
    parts = [None if p is None else _as_numpy(p, path, k) for p, k in zip(parts, names)]
    for i in range(0, 6, 2):
        xs, ys = parts[i], parts[i + 1]
        if (xs is None) != (ys is None):
            raise InputError(
                f"{path.name}: {names[i] if xs is not None else names[i + 1]} has no partner array", file=path
            )
        if xs is not None and len(xs) != len(ys):
            raise InputError(
                f"{path.name}: {len(xs)} inputs but {len(ys)} targets in {names[i]}/{names[i + 1]}", file=path
            )
        if xs is not None and xs.dtype.kind not in "biuf":
            raise InputError(f"{path.name}: inputs must be numbers, found dtype {xs.dtype}", file=path)
        if ys is not None:
            parts[i + 1] = _labels(ys, path)
    if parts[0].ndim == 1:
        parts = [p[:, None] if (p is not None and j % 2 == 0) else p for j, p in enumerate(parts)]
    return (*parts, None)


def _labels(y: np.ndarray, path: Path) -> np.ndarray:
    """Integer labels stay integers; float arrays stay float (regression targets)."""
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    if y.dtype.kind in "iu":
        if len(y) and y.min() < 0:
            raise InputError(f"{path.name}: class labels must be >= 0, found {int(y.min())}", file=path)
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        return y.astype(np.float32)
    raise InputError(f"{path.name}: expected numeric targets, found dtype {y.dtype}", file=path)


def read_csv(path: Path, target: str | int | None = None):
    """A numeric CSV with one target column (names or numbers; string labels become classes).

    The first row is a header when any of its cells is not a number. The target column is
    ``target`` (a name, or a 0-based index), else a column named label/target/y/class, else the
    last one. Integer-valued targets are class labels; other numbers are regression targets.

    Returns:
        ``(x (N, F) float32, y, classes or None)``.
    """
    rows = csv_rows(path)
    header = None if all(is_number(c) for c in rows[0]) else [c.strip() for c in rows[0]]
    body = rows[1:] if header else rows
    first_line = 2 if header else 1
    width = len(rows[0])
    if width < 2:
        raise InputError(
            f"{path.name}: expected at least one feature column and one target column, found {width} column", file=path
        )
    col = target_column(path, header, width, target)
    features, labels = [], []
    for offset, row in enumerate(body):
        line = first_line + offset
        if len(row) != width:
            raise InputError(f"{path.name}: expected {width} columns, found {len(row)}", file=path, line=line)
        try:
            features.append([float(c) for j, c in enumerate(row) if j != col])
        except ValueError:
            bad = next(j for j, c in enumerate(row) if j != col and not is_number(c))
            raise InputError(
                f"{path.name}: expected a number in column {bad + 1}, found {row[bad]!r}", file=path, line=line
            ) from None
        labels.append(row[col].strip())
    if not features:
        raise InputError(f"{path.name}: no data rows", file=path)
    x = np.asarray(features, dtype=np.float32)
    if all(is_number(v) for v in labels):
        values = np.asarray([float(v) for v in labels])
        if np.all(values == np.round(values)) and values.min() >= 0:
            return x, values.astype(np.int64), None
        return x, values.astype(np.float32)[:, None], None
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    return x, np.asarray([index[v] for v in labels], dtype=np.int64), classes


LABEL_NAMES = ("label", "target", "y", "class")  # a CSV column of these names is the target by default


def target_column(path: Path, header: list | None, width: int, target: str | int | None) -> int:
    """The 0-based target column of a CSV: ``target`` (a name or an index), else the first column
    named label/target/y/class, else the last one."""
    if isinstance(target, str):
        if header is None or target not in header:
            raise InputError(
                f"{path.name}: no column named {target!r}",
                file=path,
                hint=did_you_mean(target, header or []) if header else "the file has no header row",
            )
        return header.index(target)
    if isinstance(target, int):
        if not -width <= target < width:
            raise InputError(f"{path.name}: target column {target} is out of range for {width} columns", file=path)
        return target % width
    known = [i for i, h in enumerate(header or []) if h.lower() in LABEL_NAMES]
    return known[0] if known else width - 1


def csv_rows(path: Path) -> list[list[str]]:
    """The non-blank rows of a CSV file (a UTF-8 byte-order mark is dropped); InputError if none."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path.name} as CSV: {exc}", file=path) from None
    if not rows:
        raise InputError(f"{path.name}: the CSV file is empty", file=path)
    return rows


def is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False
