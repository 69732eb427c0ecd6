"""The loaded data: the :class:`Dataset` type, and :func:`load_dataset`, which reads a source, splits
it with one seeded permutation and normalises it with statistics of the training split only (so no
information from val/test leaks into training).

torch is imported inside the functions that need it, so importing this module stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nncli.data.config import TEXT_SETS, DataConfig
from nncli.data.image_sets import read_cifar10, read_mnist
from nncli.data.inputs import fit_input_shape
from nncli.data.subsets import per_class_subset, select_classes
from nncli.data.synthetic import SYNTHETIC
from nncli.data.text import read_text_set, shipped_corpus
from nncli.data.user_files import read_file
from nncli.errors import InputError


@dataclass
class Dataset:
    """Train/validation/test tensors, normalised with training statistics.

    Shapes: ``x_*`` is ``(N, *input_shape)`` float32, or int64 token ids (the ``text`` set, or a
    file read for a spec with integer inputs); ``y_*`` is ``(N,)`` int64 class indices for
    classification (``(N, L)`` for the ``text`` set) or ``(N, *target_shape)`` float32 for regression.
    """

    name: str
    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    x_test: Any
    y_test: Any
    classes: list[str] | None = None  # names of the classes, when the source has them
    mean: Any = None  # per-channel / per-feature statistics of the training split (or None)
    std: Any = None
    normalization: dict | None = None  # how the statistics were taken, for run.yaml
    skipped: list | None = None  # unreadable files left out (skip_bad): [{"file", "reason"}]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def is_classification(self) -> bool:
        return not self.y_train.is_floating_point()

    @property
    def num_classes(self) -> int | None:
        """Number of classes the labels need (max label + 1), None for float targets."""
        if not self.is_classification:
            return None
        top = max(int(y.max()) for y in (self.y_train, self.y_val, self.y_test) if len(y))
        return max(top + 1, len(self.classes or ()))

    def split(self, which: str):
        """``(x, y)`` of ``"train"``, ``"val"`` or ``"test"``."""
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def sizes(self) -> dict[str, int]:
        return {s: int(len(getattr(self, f"y_{s}"))) for s in ("train", "val", "test")}

    def to(self, device) -> Dataset:
        """The same data on ``device`` (a new object; statistics move too)."""
        moved = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in self.__dict__.items()}
        return Dataset(**moved)


def load_dataset(config: DataConfig, integer_inputs: bool = False, input_shape=None) -> Dataset:
    """Load, split and normalise the data a :class:`DataConfig` describes.

    Args:
        config: from :func:`resolve_data_config`.
        integer_inputs: the network takes integer token ids (a spec with ``input: {dtype:
            int64, ...}``): inputs are kept as int64 and never normalised. The ``text`` set
            always gives token ids.
        input_shape: the spec's input shape; an image folder is decoded to fit it.

    Returns:
        Dataset on the CPU. The split is one seeded permutation (test first, then validation,
        the rest train); sources with their own test split (MNIST, CIFAR-10, npz with
        ``x_test``) keep it and take validation from their training part.

    Raises:
        InputError: an unreadable or corrupt file, inconsistent array lengths, a too-small set.

    Example:
        >>> ds = load_dataset(resolve_data_config({"name": "moons", "n": 200}))
        >>> ds.sizes()
        {'train': 140, 'val': 20, 'test': 40}
    """
    if config.name == "images":
        from nncli.data.images import load_image_folder

        return load_image_folder(config, input_shape)
    x, y, x_test, y_test, x_val, y_val, classes = _read_source(config)
    _refuse_non_finite(config, x, y, x_test, y_test, x_val, y_val)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = _split(config, x, y, x_test, y_test, x_val, y_val)
    tokens = integer_inputs or config.name in TEXT_SETS
    ds = Dataset(
        name=config.name if config.name != "file" else config.path.name,
        x_train=_tensor_x(x_train, tokens, config),
        y_train=_tensor_y(y_train),
        x_val=_tensor_x(x_val, tokens, config),
        y_val=_tensor_y(y_val),
        x_test=_tensor_x(x_test, tokens, config),
        y_test=_tensor_y(y_test),
        classes=classes,
    )
    _check_splits(ds, config)
    if input_shape is not None:  # statistics per channel of the network's input, whatever the file's layout
        for split in ("train", "val", "test"):
            setattr(ds, f"x_{split}", fit_input_shape(getattr(ds, f"x_{split}"), tuple(input_shape)))
    ds.normalization = {"by": "none"}
    if config.normalize and ds.x_train.is_floating_point():  # token ids are never normalised
        ds.mean, ds.std = normalization_stats(ds.x_train)
        ds.normalization = describe_normalization(tuple(ds.x_train.shape[1:]))
        for split in ("train", "val", "test"):
            setattr(ds, f"x_{split}", normalize(getattr(ds, f"x_{split}"), ds.mean, ds.std))
    return ds


def describe_normalization(example_shape: tuple) -> dict:
    """How :func:`normalization_stats` standardises examples of this shape (for ``run.yaml``)."""
    if len(example_shape) <= 1:
        return {"by": "feature", "features": int(example_shape[0]) if example_shape else 1}
    return {"by": "channel", "channels": int(example_shape[0]), "input": list(example_shape)}


def _split(config: DataConfig, x, y, x_test, y_test, x_val, y_val) -> tuple:
    """``(train, val, test)`` pairs: one seeded permutation (test first, then validation, the rest
    train); a split the source already has is kept, ``limit`` and ``per_class`` thin the data."""
    gen = np.random.default_rng(config.seed + 1_000_003)  # split stream apart from the generation stream
    if config.limit is not None:
        x, y = _subset(x, y, config.limit, gen)
        if x_test is not None:
            x_test, y_test = _subset(x_test, y_test, config.limit, gen)
    n = len(x)
    order = gen.permutation(n)
    n_test = 0 if x_test is not None else int(round(n * config.test))
    n_val = 0 if x_val is not None else int(round(n * config.val))
    if n - n_test - n_val < 1:
        raise InputError(
            f"data: {n} examples are too few to split off {n_test} test and {n_val} validation examples",
            hint="lower `val`/`test` or use more data",
        )
    test_idx, val_idx, train_idx = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    if x_test is None:
        x_test, y_test = x[test_idx], y[test_idx]
    if x_val is None:
        x_val, y_val = x[val_idx], y[val_idx]
    x_train, y_train = x[train_idx], y[train_idx]
    if config.params.get("per_class") is not None:  # thins the training split only
        x_train, y_train = per_class_subset(x_train, y_train, config.params["per_class"], gen)
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def _tensor_x(a, tokens: bool, config: DataConfig):
    """Inputs as a tensor: int64 token ids (refusing fractional values) or float32."""
    import torch

    a = np.asarray(a)
    if tokens:
        if a.dtype.kind not in "iub" and len(a) and not np.array_equal(a, np.round(a)):
            raise InputError(
                "data: the network takes integer token ids, found fractional inputs "
                f"(e.g. {a.flat[np.flatnonzero(a != np.round(a))[0]]:g})",
                file=config.path,
            )
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _tensor_y(a):
    """Targets as a tensor: int64 class ids, float32 otherwise."""
    import torch

    a = np.asarray(a)
    if a.dtype.kind in "iub":
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _check_splits(ds: Dataset, config: DataConfig) -> None:
    """Every split has the training inputs' shape per example."""
    for split in ("val", "test"):
        xs = getattr(ds, f"x_{split}")
        if len(xs) and xs.shape[1:] != ds.x_train.shape[1:]:
            raise InputError(
                f"data: {split} inputs have shape {tuple(xs.shape[1:])} per example, "
                f"train inputs {tuple(ds.x_train.shape[1:])}",
                file=config.path,
            )


def _bad_rows(a) -> np.ndarray:
    """Indices of the examples of ``a`` holding NaN or infinite values (none for integer data)."""
    a = None if a is None else np.asarray(a)
    if a is None or a.dtype.kind != "f" or not len(a):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(axis=1))


def _refuse_non_finite(config: DataConfig, x, y, x_test, y_test, x_val, y_val) -> None:
    """NaN or infinite inputs or targets in any split are refused before training, naming the
    split and the first such example as the source numbers it (the split is replayed on row numbers)."""
    bad = [
        set(_bad_rows(a).tolist()) | set(_bad_rows(b).tolist()) for a, b in ((x, y), (x_test, y_test), (x_val, y_val))
    ]
    if not any(bad):
        return
    rows = [None if a is None else np.arange(len(a)) for a in (x, x_test, x_val)]
    pairs = _split(config, rows[0], y, rows[1], y_test, rows[2], y_val)
    own = {"train": None, "test": 1, "val": 2}  # which source array a split's rows index
    for split, (index, _) in zip(("train", "val", "test"), pairs):
        source = own[split] if own[split] is not None and rows[own[split]] is not None else 0
        found = sorted(int(r) for r in index if int(r) in bad[source])
        if found:
            of = {0: "", 1: " of x_test", 2: " of x_val"}[source]
            raise InputError(
                f"data: the {split} split has {len(found)} example(s) with NaN or infinite values; the first is "
                f"row {found[0]}{of} (counting data rows from 0)",
                file=config.path,
                hint="clean the data first (drop or impute the missing values)",
            )


def _subset(x, y, limit, gen):
    if len(x) <= limit:
        return x, y
    keep = np.sort(gen.choice(len(x), size=limit, replace=False))
    return x[keep], y[keep]


def normalization_stats(x):
    """Mean and std of training inputs: per channel for ``[C, ...]`` examples (images, signals),
    per feature for ``[F]`` vectors.

    Args:
        x: ``(N, F)`` features or ``(N, C, ...)`` images and signals, already in the network's
            input shape (a file's ``(N, 40)`` rows for an ``input: [1, 40]`` network are viewed as
            ``(N, 1, 40)`` first, so a signal is standardised per channel, not per position).

    Returns:
        ``(mean, std)`` shaped to broadcast against one example: ``(F,)`` or ``(C, 1, ..., 1)``.
        A constant feature (std 0, e.g. a digits pixel that is always blank) gets std 1 so it
        stays 0 after centring instead of dividing by zero.
    """
    import torch

    if x.dim() <= 2:
        dims, shape = (0,), x.shape[1:]
    else:
        dims = (0,) + tuple(range(2, x.dim()))
        shape = (x.shape[1],) + (1,) * (x.dim() - 2)
    x64 = x.double()  # float64 sums: the statistics of 50k CIFAR images stay exact enough
    mean = x64.mean(dim=dims)
    std = x64.std(dim=dims, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return mean.reshape(shape).float(), std.reshape(shape).float()


def normalize(x, mean, std):
    """``(x - mean) / std`` with statistics from :func:`normalization_stats`."""
    return (x - mean) / std


def _read_source(config: DataConfig):
    """``(x, y, x_test, y_test, x_val, y_val, classes)`` as numpy arrays (the last five may be None)."""
    if config.name == "file":
        return read_file(config)
    if config.name in TEXT_SETS:
        x, y, vocabulary = read_text_set(config.path or shipped_corpus(), config.params["context"])
        return x, y, None, None, None, None, vocabulary
    if config.name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = digits.images.astype(np.float32)[:, None] / 16.0  # (1797, 1, 8, 8), pixel values 0..16
        y, names = digits.target.astype(np.int64), [str(c) for c in digits.target_names]
        if config.params.get("classes"):
            x, y, names = select_classes(x, y, config.params["classes"], names)
        return x, y, None, None, None, None, names
    if config.name == "mnist":
        return (*read_mnist(config.path), None, None, [str(i) for i in range(10)])
    if config.name == "cifar10":
        x, y, x_test, y_test, classes = read_cifar10(config.path)
        return x, y, x_test, y_test, None, None, classes
    x, y = SYNTHETIC[config.name](np.random.default_rng(config.seed), **config.params)
    return x, y, None, None, None, None, None
