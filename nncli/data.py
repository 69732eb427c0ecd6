"""Data for ``nncli train``: built-in sets, user files, seeded splits, normalisation, augmentation.

The lecture's first step of the meta-algorithm: get the data clean and split before training.

- Synthetic sets (two moons, circles, spirals, XOR, Gaussian blobs, a regression curve) are
  generated here from a seeded numpy ``Generator``, so the same seed gives the same points on
  every platform and every version of scikit-learn.
- scikit-learn's bundled 8x8 ``digits`` (no download) is the real image set of the demo.
- User files: ``.npz`` (``allow_pickle=False``), ``.csv`` (read as text), ``.pt``
  (``torch.load(weights_only=True)``). MNIST (idx files) and CIFAR-10 (binary batches) are parsed
  byte by byte from a local folder; nothing is ever unpickled.
- One seeded permutation splits train/validation/test; normalisation statistics come from the
  training split only, so no information from val/test leaks into training.
- :func:`augment_batch` (random crop with padding, horizontal flip) works on a whole batch on
  whatever device the batch lives on, drawing from a ``torch.Generator`` that a run can checkpoint.
"""

from __future__ import annotations

import gzip
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nncli.errors import InputError, did_you_mean
from nncli.config_section import Section
from nncli.config_section import describe as _describe

# -- the data: section -------------------------------------------------------------------------

# Keys every source accepts. `seed` drives generation *and* the split, so one number fixes the data.
COMMON_KEYS = {
    "name": None,  # a built-in set (see SETS); absent when `path` names a user file
    "path": None,  # a user .npz/.csv/.pt file, or the folder holding MNIST / CIFAR-10
    "seed": 0,  # generation and split seed
    "val": 0.1,  # validation fraction (of the training pool)
    "test": 0.2,  # test fraction (ignored where the source ships its own test split)
    "normalize": True,  # standardise inputs with mean/std of the training split
    "augment": None,  # {crop: pixels of padding for a random crop, flip: horizontal flips}
    "limit": None,  # keep at most this many examples per source array (a seeded subset)
}
# Per-set parameters with their defaults. Noise levels are picked so the default sets are
# learnable but not trivially separable.
SETS: dict[str, dict[str, Any]] = {
    "moons": {"n": 1000, "noise": 0.1},
    "circles": {"n": 1000, "noise": 0.05, "factor": 0.5},
    "spirals": {"n": 1000, "noise": 0.02, "classes": 2, "turns": 1.0},
    "xor": {"n": 1000, "noise": 0.05},
    "blobs": {"n": 1000, "classes": 3, "features": 2, "spread": 1.0},
    "regression": {"n": 1000, "noise": 0.1, "features": 1},
    "digits": {},
    "mnist": {},  # needs `path`: a folder with the four idx files
    "cifar10": {},  # needs `path`: a folder with data_batch_{1..5}.bin and test_batch.bin
}
FOLDER_SETS = ("mnist", "cifar10")
FILE_KEYS = {"x_key": None, "y_key": None, "target": None}  # for user files
FILE_SUFFIXES = (".npz", ".csv", ".pt", ".pth")
AUGMENT_KEYS = {"crop": 0, "flip": False}


@dataclass(frozen=True)
class DataConfig:
    """The validated ``data:`` section (spec values, then overrides, then defaults)."""

    name: str  # a key of SETS, or "file" for a user file
    path: Path | None = None  # user file or MNIST/CIFAR folder, resolved
    params: dict = field(default_factory=dict)  # the set's own parameters (n, noise, ...)
    seed: int = 0
    val: float = 0.1
    test: float = 0.2
    normalize: bool = True
    crop: int = 0  # random-crop padding in pixels (0: off)
    flip: bool = False  # random horizontal flips
    limit: int | None = None
    x_key: str | None = None  # npz/pt key of the inputs (default: x, X, inputs, features, data)
    y_key: str | None = None  # npz/pt key of the targets (default: y, Y, labels, targets)
    target: str | int | None = None  # csv label column: name or index (default: label/target/y, else last)

    def to_dict(self) -> dict:
        """Plain data for ``run.yaml``: every resolved value, defaults included."""
        out: dict[str, Any] = {}
        if self.name != "file":
            out["name"] = self.name
        if self.path is not None:
            out["path"] = str(self.path)
        out.update(self.params)
        out.update(seed=self.seed, val=self.val, test=self.test, normalize=self.normalize)
        if self.crop or self.flip:
            out["augment"] = {"crop": self.crop, "flip": self.flip}
        for key in ("limit", "x_key", "y_key", "target"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def resolve_data_config(
    spec_data: dict | None,
    overrides: dict | None = None,
    *,
    fail: Callable[[tuple, str, str | None, bool], Exception] | None = None,
    base_dir: Path | None = None,
) -> DataConfig:
    """Validate a ``data:`` section and apply overrides on top.

    Args:
        spec_data: the spec's raw ``data:`` mapping (or None).
        overrides: values from flags or a sweep, same keys; a new ``name`` or ``path`` replaces the
            data source, and the spec's set-specific keys (``n``, ``noise``, ...) are then dropped.
        fail: ``fail(path, message, hint, from_override) -> Exception`` builds a located error;
            ``path`` is relative to the section, e.g. ``("noise",)``. Defaults to plain InputErrors.
        base_dir: folder against which a relative ``path`` from the spec is resolved (the spec's
            folder); override paths resolve against the working directory.

    Returns:
        DataConfig with every default filled in.

    Raises:
        SpecError / InputError: an unknown key (with did-you-mean), a bad value, a missing file.

    Example:
        >>> resolve_data_config({"name": "moons", "n": 500}).params
        {'n': 500, 'noise': 0.1}
    """
    if fail is None:
        def fail(path, message, hint=None, from_override=False):
            return InputError(message, spec_path=".".join(("data",) + tuple(map(str, path))), hint=hint)

    spec_data = dict(spec_data or {})
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    source_keys = {"name", "path"}
    if source_keys & set(overrides):
        new_source = {k: overrides.get(k) for k in source_keys}
        old_source = {k: spec_data.get(k) for k in source_keys}
        if new_source != old_source:
            # another data source: the spec's set parameters (n, noise, x_key, ...) no longer apply
            spec_data = {k: v for k, v in spec_data.items() if k in COMMON_KEYS and k not in source_keys}
    section = Section(spec_data, overrides, fail)
    merged, origin, err, number = section.values, section.origin, section.error, section.number

    name, path = merged.get("name"), merged.get("path")
    if name is not None and not isinstance(name, str):
        raise err("name", f"expected a data set name, found {_describe(name)}")
    if path is not None and not isinstance(path, (str, Path)):
        raise err("path", f"expected a file or folder path, found {_describe(path)}")
    if name is None and path is None:
        raise fail((), "no data: expected `name` (a built-in set) or `path` (a .npz/.csv/.pt file)",
                   "e.g. `data: {name: digits}` in the spec, or --data moons", False)
    if name is not None:
        name = name.strip().lower().replace("-", "").replace("_", "")
        name = {"cifar": "cifar10", "twomoons": "moons"}.get(name, name)
        if name not in SETS:
            raise err("name", f"unknown data set {merged['name']!r}",
                      did_you_mean(name, SETS) or "known: " + ", ".join(SETS))
    resolved_path = None
    if path is not None:
        resolved_path = Path(path).expanduser()
        if not resolved_path.is_absolute() and not origin.get("path") and base_dir is not None:
            resolved_path = base_dir / resolved_path
    if name is None:
        if resolved_path.suffix.lower() not in FILE_SUFFIXES:
            raise err("path", f"expected a .npz, .csv or .pt file, found {str(path)!r}",
                      "MNIST and CIFAR-10 folders need `name: mnist` or `name: cifar10`")
        name = "file"
    elif name in FOLDER_SETS and resolved_path is None:
        raise err("name", f"{name} is read from a local folder: expected `path` next to `name`",
                  f"e.g. `data: {{name: {name}, path: data/{name}}}`; nncli never downloads")
    elif name not in FOLDER_SETS and resolved_path is not None:
        raise err("path", f"`path` does not apply to the built-in set {name!r}",
                  "drop `name` to read a user file, or drop `path`")
    if resolved_path is not None:
        resolved_path = resolved_path.resolve()  # run.yaml must point at it from any working directory
    if resolved_path is not None and not resolved_path.exists():
        raise err("path", f"no such {'folder' if name in FOLDER_SETS else 'data file'}: {resolved_path}")

    allowed = dict(COMMON_KEYS)
    allowed.update(SETS.get(name, {}) if name != "file" else FILE_KEYS)
    for key in merged:
        if key not in allowed:
            every = set(COMMON_KEYS) | set(FILE_KEYS) | {k for p in SETS.values() for k in p}
            if key in every:
                raise err(key, f"`{key}` does not apply to {'a user file' if name == 'file' else name}",
                          "keys for this source: " + ", ".join(sorted(allowed)))
            raise err(key, f"unknown key {key!r} in data", did_you_mean(key, sorted(allowed))
                      or "allowed: " + ", ".join(sorted(allowed)))

    params = {}
    for key, default in (SETS.get(name, {}) if name != "file" else {}).items():
        if key in ("n", "classes", "features"):
            params[key] = number(key, integer=True, low=2 if key == "classes" else 1, default=default)
        else:
            params[key] = number(key, low=0, default=default)
    if name == "spirals" and "turns" in params and params["turns"] <= 0:
        raise err("turns", f"expected a number > 0, found {params['turns']}")
    if name == "circles" and not 0 < params["factor"] < 1:
        raise err("factor", f"expected the inner radius as a fraction in (0, 1), found {params['factor']}")
    seed = number("seed", integer=True, low=0, default=0)
    val = number("val", low=0, high=0.9, default=0.1)
    test = number("test", low=0, high=0.9, default=0.2)
    if val + test >= 1:
        raise err("val", f"expected val + test < 1 to leave a training split, found {val} + {test}")
    normalize = merged.get("normalize", True)
    if not isinstance(normalize, bool):
        raise err("normalize", f"expected true or false, found {_describe(normalize)}")
    limit = None if merged.get("limit") is None else number("limit", integer=True, low=1)
    crop, flip = 0, False
    augment = merged.get("augment")
    if augment is not None:
        if not isinstance(augment, dict):
            raise err("augment", f"expected a mapping like {{crop: 2, flip: true}}, found {_describe(augment)}")
        for key in augment:
            if key not in AUGMENT_KEYS:
                raise fail(("augment", key), f"unknown key {key!r} in augment",
                           did_you_mean(str(key), AUGMENT_KEYS) or "allowed: crop, flip", origin.get("augment", False))
        crop = augment.get("crop", 0)
        if isinstance(crop, bool) or not isinstance(crop, int) or crop < 0:
            raise fail(("augment", "crop"), f"expected the padding in pixels (an integer >= 0), found {_describe(crop)}",
                       None, origin.get("augment", False))
        flip = augment.get("flip", False)
        if not isinstance(flip, bool):
            raise fail(("augment", "flip"), f"expected true or false, found {_describe(flip)}", None,
                       origin.get("augment", False))
    file_keys = {}
    for key in ("x_key", "y_key"):
        value = merged.get(key)
        if value is not None and not isinstance(value, str):
            raise err(key, f"expected an array name, found {_describe(value)}")
        file_keys[key] = value
    target = merged.get("target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, (str, int))):
        raise err("target", f"expected a column name or index, found {_describe(target)}")
    if name == "file" and resolved_path.suffix.lower() != ".csv" and target is not None:
        raise err("target", "`target` applies to .csv files; use x_key / y_key for .npz and .pt")
    return DataConfig(name=name, path=resolved_path, params=params, seed=seed, val=val, test=test,
                      normalize=normalize, crop=crop, flip=flip, limit=limit, target=target, **file_keys)


# -- the loaded data ---------------------------------------------------------------------------


@dataclass
class Dataset:
    """Train/validation/test tensors, normalised with training statistics.

    Shapes: ``x_*`` is ``(N, *input_shape)`` float32; ``y_*`` is ``(N,)`` int64 class indices for
    classification or ``(N, *target_shape)`` float32 for regression.
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

    def to(self, device) -> "Dataset":
        """The same data on ``device`` (a new object; statistics move too)."""
        moved = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in self.__dict__.items()}
        return Dataset(**moved)


def load_dataset(config: DataConfig) -> Dataset:
    """Load, split and normalise the data a :class:`DataConfig` describes.

    Args:
        config: from :func:`resolve_data_config`.

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
    import torch

    x, y, x_test, y_test, x_val, y_val, classes = _read_source(config)
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
        raise InputError(f"data: {n} examples are too few to split off {n_test} test and {n_val} validation examples",
                         hint="lower `val`/`test` or use more data")
    test_idx, val_idx, train_idx = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    if x_test is None:
        x_test, y_test = x[test_idx], y[test_idx]
    if x_val is None:
        x_val, y_val = x[val_idx], y[val_idx]
    x_train, y_train = x[train_idx], y[train_idx]

    def tensor_x(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def tensor_y(a):
        a = np.asarray(a)
        if a.dtype.kind in "iub":
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    ds = Dataset(
        name=config.name if config.name != "file" else config.path.name,
        x_train=tensor_x(x_train), y_train=tensor_y(y_train),
        x_val=tensor_x(x_val), y_val=tensor_y(y_val),
        x_test=tensor_x(x_test), y_test=tensor_y(y_test), classes=classes,
    )
    for split in ("val", "test"):
        xs = getattr(ds, f"x_{split}")
        if len(xs) and xs.shape[1:] != ds.x_train.shape[1:]:
            raise InputError(f"data: {split} inputs have shape {tuple(xs.shape[1:])} per example, "
                             f"train inputs {tuple(ds.x_train.shape[1:])}", file=config.path)
    if not torch.isfinite(ds.x_train).all():
        raise InputError("data: the training inputs contain NaN or infinite values", file=config.path,
                         hint="clean the data first (drop or impute the missing values)")
    if config.normalize:
        ds.mean, ds.std = normalization_stats(ds.x_train)
        for split in ("train", "val", "test"):
            setattr(ds, f"x_{split}", normalize(getattr(ds, f"x_{split}"), ds.mean, ds.std))
    return ds


def _subset(x, y, limit, gen):
    if len(x) <= limit:
        return x, y
    keep = np.sort(gen.choice(len(x), size=limit, replace=False))
    return x[keep], y[keep]


def normalization_stats(x):
    """Mean and std of training inputs: per channel for images, per feature for vectors.

    Args:
        x: ``(N, F)`` features or ``(N, C, ...)`` images.

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
    strip = lambda s: tuple(s[next((i for i, d in enumerate(s) if d != 1), len(s)):])  # noqa: E731
    if numel == math.prod(shape) and (len(have) == 1 or len(shape) == 1 or strip(have) == strip(shape)):
        return x.reshape((x.shape[0],) + shape)
    raise InputError(
        f"{what}: input shape does not match the spec: the spec's `input` is {list(shape)}, "
        f"the data has {list(have)} per example",
        hint="change `input:` in the spec, or pick data with that shape",
    )


# -- augmentation ------------------------------------------------------------------------------


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
        raise InputError(f"augment: expected image batches (B, C, H, W), found shape {tuple(x.shape)}",
                         hint="crop and flip apply to images; remove `augment` for vector data")
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


# -- sources -----------------------------------------------------------------------------------


def _read_source(config: DataConfig):
    """``(x, y, x_test, y_test, x_val, y_val, classes)`` as numpy arrays (the last five may be None)."""
    if config.name == "file":
        return _read_file(config)
    if config.name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = digits.images.astype(np.float32)[:, None] / 16.0  # (1797, 1, 8, 8), pixel values 0..16
        return x, digits.target.astype(np.int64), None, None, None, None, [str(c) for c in digits.target_names]
    if config.name == "mnist":
        return (*read_mnist(config.path), None, None, [str(i) for i in range(10)])
    if config.name == "cifar10":
        x, y, x_test, y_test, classes = read_cifar10(config.path)
        return x, y, x_test, y_test, None, None, classes
    x, y = SYNTHETIC[config.name](np.random.default_rng(config.seed), **config.params)
    return x, y, None, None, None, None, None


def _split_counts(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def make_moons(rng, n: int, noise: float):
    """Two interleaving half circles (outer: label 0, inner: label 1) plus Gaussian noise."""
    n_out, n_in = _split_counts(n, 2)
    t_out = rng.uniform(0, np.pi, n_out)
    t_in = rng.uniform(0, np.pi, n_in)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], 1)
    inner = np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], 1)
    x = np.concatenate([outer, inner]) + rng.normal(0, noise, (n, 2))
    return x.astype(np.float32), np.repeat([0, 1], [n_out, n_in])


def make_circles(rng, n: int, noise: float, factor: float):
    """A circle of radius 1 (label 0) around one of radius ``factor`` (label 1)."""
    n_out, n_in = _split_counts(n, 2)
    t = rng.uniform(0, 2 * np.pi, n)
    radius = np.repeat([1.0, factor], [n_out, n_in])
    x = np.stack([radius * np.cos(t), radius * np.sin(t)], 1) + rng.normal(0, noise, (n, 2))
    return x.astype(np.float32), np.repeat([0, 1], [n_out, n_in])


def make_spirals(rng, n: int, noise: float, classes: int, turns: float):
    """``classes`` interleaved Archimedean spiral arms, ``turns`` revolutions each."""
    counts = _split_counts(n, classes)
    xs, ys = [], []
    for c, count in enumerate(counts):
        r = rng.uniform(0.05, 1.0, count)
        angle = 2 * np.pi * (turns * r + c / classes)
        xs.append(np.stack([r * np.cos(angle), r * np.sin(angle)], 1))
        ys.append(np.full(count, c))
    x = np.concatenate(xs) + rng.normal(0, noise, (n, 2))
    return x.astype(np.float32), np.concatenate(ys)


def make_xor(rng, n: int, noise: float):
    """Points in [-1, 1]^2 labelled by the XOR of the signs of their coordinates."""
    x = rng.uniform(-1, 1, (n, 2))
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)
    return (x + rng.normal(0, noise, (n, 2))).astype(np.float32), y


def make_blobs(rng, n: int, classes: int, features: int, spread: float):
    """Isotropic Gaussian blobs around centres drawn uniformly from [-5, 5]^features."""
    centres = rng.uniform(-5, 5, (classes, features))
    y = np.repeat(np.arange(classes), _split_counts(n, classes))
    x = centres[y] + rng.normal(0, spread, (n, features))
    return x.astype(np.float32), y


def make_regression(rng, n: int, noise: float, features: int):
    """``y = sum_i sin(x_i) / sqrt(features) + noise``, x uniform in [-3, 3]^features; y is (n, 1)."""
    x = rng.uniform(-3, 3, (n, features))
    y = np.sin(x).sum(1, keepdims=True) / np.sqrt(features) + rng.normal(0, noise, (n, 1))
    return x.astype(np.float32), y.astype(np.float32)


SYNTHETIC = {"moons": make_moons, "circles": make_circles, "spirals": make_spirals, "xor": make_xor,
             "blobs": make_blobs, "regression": make_regression}


# -- MNIST and CIFAR-10 from their binary files ------------------------------------------------

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse one idx file (MNIST's format, optionally gzipped) without any unpickling.

    Layout: two zero bytes, a type code, the number of dimensions, then each dimension as a
    big-endian uint32, then the values.

    Raises:
        InputError: not an idx file, or truncated (exit 2).
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"cannot read idx file: {exc}", file=path) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise InputError("not an idx file: expected the magic bytes 00 00 <type> <ndim>, "
                         f"found {raw[:4].hex(' ') or 'an empty file'}", file=path)
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError("truncated idx file: the header is cut short", file=path)
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise InputError(f"corrupt idx file: the header promises {dims} ({expected} bytes of values), "
                         f"found {len(raw) - header} bytes", file=path)
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(folder: Path, stems: list[str]) -> Path:
    places = [folder, folder / "raw", folder / "MNIST" / "raw"]
    for place in places:
        for stem in stems:
            for candidate in (place / stem, place / (stem + ".gz")):
                if candidate.is_file():
                    return candidate
    raise InputError(f"MNIST: no file {stems[0]}[.gz] in {folder}",
                     hint="expected the four idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                          "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)")


def read_mnist(folder: Path):
    """MNIST-format idx files in ``folder`` (also Fashion-MNIST / KMNIST, same layout).

    Returns:
        ``(x_train, y_train, x_test, y_test)``: images ``(N, 1, 28, 28)`` float32 in [0, 1],
        labels int64.
    """
    out = []
    for part in ("train", "t10k"):
        images = read_idx(_find(folder, [f"{part}-images-idx3-ubyte", f"{part}-images.idx3-ubyte"]))
        labels = read_idx(_find(folder, [f"{part}-labels-idx1-ubyte", f"{part}-labels.idx1-ubyte"]))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise InputError(f"MNIST {part}: expected images (N, H, W) and N labels, found {images.shape} "
                             f"and {labels.shape}", file=folder)
        out += [images.astype(np.float32)[:, None] / 255.0, labels.astype(np.int64)]
    return tuple(out)


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 1024 red, 1024 green, 1024 blue bytes


def read_cifar10(folder: Path):
    """CIFAR-10's *binary* version (``data_batch_1.bin`` ... ``test_batch.bin``) from ``folder``.

    The python version of CIFAR-10 is a pickle; nncli refuses to unpickle downloaded files.

    Returns:
        ``(x_train, y_train, x_test, y_test, classes)``: images ``(N, 3, 32, 32)`` float32 in [0, 1].
    """
    if (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"
    train_files = [folder / f"data_batch_{i}.bin" for i in range(1, 6)]
    test_file = folder / "test_batch.bin"
    missing = [p.name for p in train_files + [test_file] if not p.is_file()]
    if missing:
        pickled = (folder / "data_batch_1").exists() or (folder / "cifar-10-batches-py").exists()
        raise InputError(f"CIFAR-10: missing {', '.join(missing)} in {folder}",
                         hint="nncli reads the binary version (cifar-10-binary.tar.gz), never the pickled "
                              "python one" if pickled else "expected the binary batches data_batch_1.bin .. "
                              "data_batch_5.bin and test_batch.bin")

    def read(paths):
        chunks = []
        for path in paths:
            raw = path.read_bytes()
            if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
                raise InputError(f"corrupt CIFAR-10 batch: expected a multiple of {_CIFAR_RECORD} bytes, "
                                 f"found {len(raw)}", file=path)
            chunks.append(np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD))
        records = np.concatenate(chunks)
        labels = records[:, 0].astype(np.int64)
        if labels.max() > 9:
            raise InputError(f"corrupt CIFAR-10 batch: a label byte is {labels.max()}, expected 0..9", file=paths[0])
        return records[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels

    x, y = read(train_files)
    x_test, y_test = read([test_file])
    classes = CIFAR10_CLASSES
    meta = folder / "batches.meta.txt"
    if meta.is_file():
        names = [line.strip() for line in meta.read_text(errors="replace").splitlines() if line.strip()]
        if len(names) == 10:
            classes = names
    return x, y, x_test, y_test, list(classes)


# -- user files --------------------------------------------------------------------------------

X_KEYS = ("x", "X", "inputs", "features", "data")
Y_KEYS = ("y", "Y", "labels", "targets", "target")


def _pick(arrays: dict, key: str | None, defaults, what: str, path: Path, suffix: str = ""):
    if key is not None:
        if key + suffix in arrays:
            return arrays[key + suffix]
        if suffix:
            return None
        raise InputError(f"no array {key!r} in {path.name}; found {', '.join(map(str, arrays)) or 'none'}",
                         file=path, hint=did_you_mean(key, map(str, arrays)))
    for name in defaults:
        if name + suffix in arrays:
            return arrays[name + suffix]
    if suffix:
        return None
    raise InputError(f"no {what} array in {path.name}: expected one named {' / '.join(defaults)}; "
                     f"found {', '.join(map(str, arrays)) or 'none'}", file=path,
                     hint=f"name the array with `{'x_key' if what == 'input' else 'y_key'}:` in data")


def _as_numpy(value: np.ndarray, path: Path, key: str) -> np.ndarray:
    if value.dtype == object or value.dtype.kind not in "biuf" and key.startswith("x"):
        raise InputError(f"array {key!r}: expected numbers, found dtype {value.dtype}", file=path)
    return value


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
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
            raise InputError(f"cannot read {path.name}: {exc} (object arrays are refused: no unpickling)",
                             file=path) from None
        except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError: a corrupt or foreign file
            raise InputError(f"cannot read {path.name} as {suffix}: {exc}", file=path) from None
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError for anything but tensors/containers
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {path.name} with torch.load(weights_only=True): {first}", file=path,
                         hint="save a dict {'x': tensor, 'y': tensor} or a tuple (x, y) of tensors") from None
    if isinstance(loaded, torch.Tensor):
        loaded = {"x": loaded}
    elif isinstance(loaded, (tuple, list)) and len(loaded) in (1, 2):
        loaded = dict(zip(("x", "y"), loaded))
    if not isinstance(loaded, dict):
        size = f" of {len(loaded)}" if isinstance(loaded, (tuple, list)) else ""
        raise InputError(f"{path.name}: expected a dict of tensors, a tensor or a pair (x, y), "
                         f"found {type(loaded).__name__}{size}", file=path)
    return {str(k): _to_numpy(v) for k, v in loaded.items()}


def _to_numpy(value) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        # numpy has no bfloat16 (or other low-precision floats): widen them, exactly.
        return (value.float() if value.is_floating_point() and value.dtype not in
                (torch.float16, torch.float32, torch.float64) else value).numpy()
    try:
        return np.asarray(value)
    except ValueError:  # ragged lists
        return np.asarray([value], dtype=object)


def _read_file(config: DataConfig):
    path = config.path
    if path.suffix.lower() == ".csv":
        x, y, classes = read_csv(path, config.target)
        return x, y, None, None, None, None, classes
    arrays = _load_arrays(path)
    # an explicit split (x_train, x_val, x_test) wins over one pool of x/y
    x_train = _pick(arrays, config.x_key, X_KEYS, "input", path, "_train")
    if x_train is not None:
        y_train = _pick(arrays, config.y_key, Y_KEYS, "target", path, "_train")
        parts = [x_train, y_train]
        for split in ("_test", "_val"):
            parts += [_pick(arrays, config.x_key, X_KEYS, "input", path, split),
                      _pick(arrays, config.y_key, Y_KEYS, "target", path, split)]
    else:
        parts = [_pick(arrays, config.x_key, X_KEYS, "input", path),
                 _pick(arrays, config.y_key, Y_KEYS, "target", path), None, None, None, None]
    names = ["x", "y", "x_test", "y_test", "x_val", "y_val"]
    parts = [None if p is None else _as_numpy(p, path, k) for p, k in zip(parts, names)]
    for i in range(0, 6, 2):
        xs, ys = parts[i], parts[i + 1]
        if (xs is None) != (ys is None):
            raise InputError(f"{path.name}: {names[i] if xs is not None else names[i + 1]} has no partner array",
                             file=path)
        if xs is not None and len(xs) != len(ys):
            raise InputError(f"{path.name}: {len(xs)} inputs but {len(ys)} targets in {names[i]}/{names[i + 1]}",
                             file=path)
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
    rows = _csv_rows(path)
    header = None if all(_is_number(c) for c in rows[0]) else [c.strip() for c in rows[0]]
    body = rows[1:] if header else rows
    first_line = 2 if header else 1
    width = len(rows[0])
    if width < 2:
        raise InputError(f"{path.name}: expected at least one feature column and one target column, "
                         f"found {width} column", file=path)
    if isinstance(target, str):
        if header is None or target not in header:
            raise InputError(f"{path.name}: no column named {target!r}", file=path,
                             hint=did_you_mean(target, header or []) if header else "the file has no header row")
        col = header.index(target)
    elif isinstance(target, int):
        if not -width <= target < width:
            raise InputError(f"{path.name}: target column {target} is out of range for {width} columns", file=path)
        col = target % width
    else:
        known = [i for i, h in enumerate(header or []) if h.lower() in ("label", "target", "y", "class")]
        col = known[0] if known else width - 1
    features, labels = [], []
    for offset, row in enumerate(body):
        line = first_line + offset
        if len(row) != width:
            raise InputError(f"{path.name}: expected {width} columns, found {len(row)}", file=path, line=line)
        try:
            features.append([float(c) for j, c in enumerate(row) if j != col])
        except ValueError:
            bad = next(j for j, c in enumerate(row) if j != col and not _is_number(c))
            raise InputError(f"{path.name}: expected a number in column {bad + 1}, found {row[bad]!r}",
                             file=path, line=line) from None
        labels.append(row[col].strip())
    if not features:
        raise InputError(f"{path.name}: no data rows", file=path)
    x = np.asarray(features, dtype=np.float32)
    if all(_is_number(v) for v in labels):
        values = np.asarray([float(v) for v in labels])
        if np.all(values == np.round(values)) and values.min() >= 0:
            return x, values.astype(np.int64), None
        return x, values.astype(np.float32)[:, None], None
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    return x, np.asarray([index[v] for v in labels], dtype=np.int64), classes


def _csv_rows(path: Path) -> list[list[str]]:
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


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


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
        arrays = _load_arrays(path)
        x = next(iter(arrays.values())) if len(arrays) == 1 else _pick(arrays, None, X_KEYS, "input", path)
    elif suffix == ".csv":
        rows = _csv_rows(path)
        start = 0 if all(_is_number(c) for c in rows[0]) else 1  # else a header row
        values = []
        for i, row in enumerate(rows[start:], start=start + 1):
            try:
                values.append([float(c) for c in row])
            except ValueError:
                raise InputError(f"{path.name}: expected numbers only (features, no label column)",
                                 file=path, line=i) from None
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
