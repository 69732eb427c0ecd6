"""The ``data:`` section: its keys and defaults, the built-in sets' parameters, and its validation
into a :class:`DataConfig` (spec values, then overrides, then defaults).

Torch-free and numpy-free: a spec's data section is checked without loading any data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nncli.config_section import Section
from nncli.config_section import describe as _describe
from nncli.data.images import IMAGE_KEYS, resolve_image_params
from nncli.data.subsets import SUBSET_KEYS, resolve_subset_params
from nncli.errors import InputError, did_you_mean
from nncli.seeds import SEED_MAX

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
    "stream": None,  # read training batches through a DataLoader (None: image folders above a size)
    "workers": 0,  # DataLoader worker processes when streaming (and decoding threads for images)
    "range": None,  # [lo, hi]: the inputs' valid range (attack keeps adversarial inputs inside it)
}
# The valid input range of the sets whose format fixes it: pixels decoded to [0, 1].
FORMAT_RANGES = {"digits": (0.0, 1.0), "mnist": (0.0, 1.0), "cifar10": (0.0, 1.0), "images": (0.0, 1.0)}
# `workers` above this is refused; below it, the count is capped at the usable cores where used
# (each worker is a process holding a copy of the batches' source).
MAX_WORKERS = 64
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
    "text": {"context": 64},  # `path`: a UTF-8 text file (default: the text shipped with nncli)
}
FOLDER_SETS = ("mnist", "cifar10")
TEXT_SETS = ("text",)  # sets read from one text file named by `path`
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
    stream: bool | None = None  # batches through a DataLoader; None: image folders decide by size
    workers: int = 0  # DataLoader worker processes when streaming
    value_range: tuple | None = None  # `range`: the inputs' declared valid [lo, hi]

    @property
    def input_range(self) -> tuple | None:
        """The inputs' valid ``(lo, hi)``: declared with ``range``, or fixed by the format (pixels)."""
        return self.value_range if self.value_range is not None else FORMAT_RANGES.get(self.name)

    def to_dict(self) -> dict:
        """Plain data for ``run.yaml``: every resolved value, defaults included."""
        out: dict[str, Any] = {}
        if self.name not in ("file", "images"):  # both are told apart by `path` alone
            out["name"] = self.name
        if self.path is not None:
            out["path"] = str(self.path)
        out.update(self.params)
        out.update(seed=self.seed, val=self.val, test=self.test, normalize=self.normalize)
        if self.crop or self.flip:
            out["augment"] = {"crop": self.crop, "flip": self.flip}
        for key in ("limit", "x_key", "y_key", "target", "stream"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.workers:
            out["workers"] = self.workers
        if self.value_range is not None:
            out["range"] = list(self.value_range)
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
    fail = fail or _input_error
    spec_data = dict(spec_data or {})
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    section = Section(_without_replaced_source(spec_data, overrides), overrides, fail)
    merged, err, number = section.values, section.error, section.number
    name, resolved_path = _source(merged, section.origin, err, fail, base_dir)
    _check_keys(merged, name, err)
    params = _set_params(name, merged, err, number)
    seed = number("seed", integer=True, low=0, high=SEED_MAX, default=0)
    val = number("val", low=0, high=0.9, default=0.1)
    test = number("test", low=0, high=0.9, default=0.2)
    if val + test >= 1:
        raise err("val", f"expected val + test < 1 to leave a training split, found {val} + {test}")
    limit = None if merged.get("limit") is None else number("limit", integer=True, low=1)
    crop, flip = _augment(merged.get("augment"), err, fail, section.origin.get("augment", False))
    file_keys = _file_keys(merged, name, resolved_path, err)
    return DataConfig(
        name=name,
        path=resolved_path,
        params=params,
        seed=seed,
        val=val,
        test=test,
        crop=crop,
        flip=flip,
        limit=limit,
        **file_keys,
        **_handling(merged, err, number),
    )


def _handling(merged: dict, err, number) -> dict:
    """``normalize``, ``stream``, ``workers`` and ``range``: how the data is handled, checked."""
    normalize = merged.get("normalize", True)
    if not isinstance(normalize, bool):
        raise err("normalize", f"expected true or false, found {_describe(normalize)}")
    stream = merged.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise err("stream", f"expected true or false, found {_describe(stream)}")
    workers = number("workers", integer=True, low=0, high=MAX_WORKERS, default=0)
    return {
        "normalize": normalize,
        "stream": stream,
        "workers": workers,
        "value_range": _value_range(merged.get("range"), err),
    }


def _input_error(path: tuple, message: str, hint: str | None = None, from_override: bool = False) -> Exception:
    """The default ``fail``: a plain InputError naming the key under ``data``."""
    return InputError(message, spec_path=".".join(("data",) + tuple(map(str, path))), hint=hint)


_SOURCE_KEYS = {"name", "path"}


def _without_replaced_source(spec_data: dict, overrides: dict) -> dict:
    """The spec's section, less its set parameters (n, noise, x_key, ...) when the overrides name
    another data source, to which they no longer apply. A new ``path`` alone for a spec that reads
    a path changes that key only: the file's target column (or array names) and a folder set's
    ``name`` still apply."""
    if "name" not in overrides and "path" in overrides and spec_data.get("path") is not None:
        csv = str(overrides["path"]).lower().endswith(".csv")
        drop = {"x_key", "y_key"} if csv else {"target"}
        return {k: v for k, v in spec_data.items() if k not in drop}
    if _SOURCE_KEYS & set(overrides):
        new_source = {k: overrides.get(k) for k in _SOURCE_KEYS}
        old_source = {k: spec_data.get(k) for k in _SOURCE_KEYS}
        if new_source != old_source:
            return {k: v for k, v in spec_data.items() if k in COMMON_KEYS and k not in _SOURCE_KEYS}
    return spec_data


def _source(merged: dict, origin: dict, err, fail, base_dir: Path | None) -> tuple[str, Path | None]:
    """The data source: the set's canonical name ("file" and "images" for user data) and its
    path, resolved to an absolute one that exists."""
    name, path = merged.get("name"), merged.get("path")
    if name is not None and not isinstance(name, str):
        raise err("name", f"expected a data set name, found {_describe(name)}")
    if path is not None and not isinstance(path, (str, Path)):
        raise err("path", f"expected a file or folder path, found {_describe(path)}")
    if name is None and path is None:
        raise fail(
            (),
            "no data: expected `name` (a built-in set) or `path` (a .npz/.csv/.pt file)",
            "e.g. `data: {name: digits}` in the spec, or a data set given when training (moons)",
            False,
        )
    if name is not None:
        name = _set_name(name, merged, err)
    resolved_path = None
    if path is not None:
        resolved_path = Path(path).expanduser()
        if not resolved_path.is_absolute() and not origin.get("path") and base_dir is not None:
            resolved_path = base_dir / resolved_path
    name = _name_for_path(name, path, resolved_path, err)
    if resolved_path is not None:
        resolved_path = resolved_path.resolve()  # run.yaml must point at it from any working directory
    if resolved_path is not None and not resolved_path.exists():
        raise err("path", f"no such {'folder' if name in FOLDER_SETS else 'data file'}: {resolved_path}")
    if name in TEXT_SETS and resolved_path is not None and not resolved_path.is_file():
        raise err("path", f"expected a text file, found a folder: {resolved_path}")
    return name, resolved_path


def _set_name(name: str, merged: dict, err) -> str:
    """A built-in set's canonical name (case, dashes and aliases forgiven)."""
    name = name.strip().lower().replace("-", "").replace("_", "")
    name = {"cifar": "cifar10", "twomoons": "moons"}.get(name, name)
    if name not in SETS:
        raise err(
            "name", f"unknown data set {merged['name']!r}", did_you_mean(name, SETS) or "known: " + ", ".join(SETS)
        )
    return name


def _name_for_path(name: str | None, path, resolved_path: Path | None, err) -> str:
    """The source's name given its path: a folder of images or a user file when no name is given;
    a folder set needs a path, a generated set refuses one."""
    if name is None and resolved_path.is_dir():
        return "images"  # one folder per class, or train/ val/ test/ with class folders
    if name is None:
        if resolved_path.suffix.lower() not in FILE_SUFFIXES:
            raise err(
                "path",
                f"expected a .npz, .csv or .pt file, found {str(path)!r}",
                "MNIST and CIFAR-10 folders need `name: mnist` or `name: cifar10`",
            )
        return "file"
    if name in FOLDER_SETS and resolved_path is None:
        raise err(
            "name",
            f"{name} is read from a local folder: expected `path` next to `name`",
            f"e.g. `data: {{name: {name}, path: data/{name}}}`; nncli never downloads",
        )
    if name not in FOLDER_SETS + TEXT_SETS and resolved_path is not None:
        raise err(
            "path",
            f"`path` does not apply to the built-in set {name!r}",
            "drop `name` to read a user file, or drop `path`",
        )
    return name


def _check_keys(merged: dict, name: str, err) -> None:
    """Every key applies to this source: an unknown one gets a did-you-mean, another source's
    key says which keys this one takes."""
    allowed = dict(COMMON_KEYS)
    allowed.update(SETS.get(name, {}) if name != "file" else FILE_KEYS)
    if name == "images":
        allowed.update(IMAGE_KEYS)
    if name == "digits":  # a class subset, and N training examples per class
        allowed.update(SUBSET_KEYS)
    for key in merged:
        if key not in allowed:
            every = set(COMMON_KEYS) | set(FILE_KEYS) | set(IMAGE_KEYS) | {k for p in SETS.values() for k in p}
            if key in every:
                raise err(
                    key,
                    f"`{key}` does not apply to {'a user file' if name == 'file' else name}",
                    "keys for this source: " + ", ".join(sorted(allowed)),
                )
            raise err(
                key,
                f"unknown key {key!r} in data",
                did_you_mean(key, sorted(allowed)) or "allowed: " + ", ".join(sorted(allowed)),
            )


def _set_params(name: str, merged: dict, err, number) -> dict:
    """The set's own parameters (n, noise, classes, ...) with their defaults, checked."""
    params = {}
    for key, default in (SETS.get(name, {}) if name != "file" else {}).items():
        if key in ("n", "classes", "features", "context"):
            params[key] = number(key, integer=True, low=2 if key == "classes" else 1, default=default)
        else:
            params[key] = number(key, low=0, default=default)
    if name == "images":
        params = resolve_image_params(merged, err)
    if name == "digits":
        params = resolve_subset_params(merged, err, n_labels=10)
    if name == "spirals" and "turns" in params and params["turns"] <= 0:
        raise err("turns", f"expected a number > 0, found {params['turns']}")
    if name == "circles" and not 0 < params["factor"] < 1:
        raise err("factor", f"expected the inner radius as a fraction in (0, 1), found {params['factor']}")
    return params


def _value_range(value, err) -> tuple | None:
    """``range: [lo, hi]``: two finite numbers, lo < hi."""
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or not value[0] < value[1]:
        raise err("range", f"expected [lo, hi], two finite numbers with lo < hi, found {_describe(value)}")
    return float(value[0]), float(value[1])


def _augment(augment, err, fail, from_override: bool) -> tuple[int, bool]:
    """``augment: {crop, flip}`` -> (crop padding in pixels, flip)."""
    if augment is None:
        return 0, False
    if not isinstance(augment, dict):
        raise err("augment", f"expected a mapping like {{crop: 2, flip: true}}, found {_describe(augment)}")
    for key in augment:
        if key not in AUGMENT_KEYS:
            raise fail(
                ("augment", key),
                f"unknown key {key!r} in augment",
                did_you_mean(str(key), AUGMENT_KEYS) or "allowed: crop, flip",
                from_override,
            )
    crop = augment.get("crop", 0)
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 0:
        raise fail(
            ("augment", "crop"),
            f"expected the padding in pixels (an integer >= 0), found {_describe(crop)}",
            None,
            from_override,
        )
    flip = augment.get("flip", False)
    if not isinstance(flip, bool):
        raise fail(("augment", "flip"), f"expected true or false, found {_describe(flip)}", None, from_override)
    return crop, flip


def _file_keys(merged: dict, name: str, resolved_path: Path | None, err) -> dict:
    """A user file's ``x_key``, ``y_key`` (array names) and ``target`` (a CSV column)."""
    keys = {}
    for key in ("x_key", "y_key"):
        value = merged.get(key)
        if value is not None and not isinstance(value, str):
            raise err(key, f"expected an array name, found {_describe(value)}")
        keys[key] = value
    target = merged.get("target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, (str, int))):
        raise err("target", f"expected a column name or index, found {_describe(target)}")
    if name == "file" and resolved_path.suffix.lower() != ".csv" and target is not None:
        raise err("target", "`target` applies to .csv files; use x_key / y_key for .npz and .pt")
    keys["target"] = target
    return keys
