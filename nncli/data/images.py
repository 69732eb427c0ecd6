"""Image folders as training data: ``data: {path: photos/}``.

Layouts: ``photos/<class>/<image>`` (one pool, split like every other source), or
``photos/train/<class>/...`` with optional ``val/`` and ``test/`` beside it, used as the splits.
Labels are the indices of the sorted class folder names; the names are the data set's
``classes`` (kept in the run folder, shown by evaluate and predict).

Each image is read with Pillow, converted to grayscale or RGB to match the spec's input
channels, resized (``resize:``) and/or center-cropped (``crop:``) to the spec's input size, and
scaled to [0, 1]. Every file is decoded once before training: unreadable or truncated files are
named in one error (exit 2) unless ``skip_bad: true``. Normalisation statistics come from the
training split, accumulated in file order in float64, the same way for in-memory and streamed
data, so the two routes train on bit-identical inputs.

Small folders are decoded into memory; above :data:`STREAM_ABOVE_BYTES` of decoded float32
pixels (or with ``stream: true``) every split is an :class:`ImageFiles`, decoded batch by
batch. Pillow, numpy and torch are imported inside the functions: the config side stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nncli.data.image_files import Decoder, ImageFiles
from nncli.errors import InputError
from nncli.threads import cores

# Keys of an image-folder source (besides the common ones), with their defaults.
IMAGE_KEYS = {"resize": None, "crop": None, "skip_bad": False}
# Above this many bytes of decoded float32 pixels an image folder streams (unless `stream:` says
# otherwise): 1 GiB leaves room for the model and the optimizer on a laptop.
STREAM_ABOVE_BYTES = 1 << 30
SPLIT_FOLDERS = ("train", "val", "test")
BAD_SHOWN = 5  # how many unreadable files the error names


def resolve_image_params(merged: dict, err) -> dict:
    """The image keys of a ``data:`` section, checked: ``resize`` (an int: the shorter side,
    keeping the aspect ratio; ``[H, W]``: that exact size), ``crop`` (``true``: center-crop to the
    spec's input size; an int or ``[H, W]``: to that size) and ``skip_bad``."""
    out: dict[str, Any] = {}
    for key in ("resize", "crop"):
        value = merged.get(key)
        if value is None or (key == "crop" and value is False):
            continue
        if key == "crop" and value is True:
            out[key] = True
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            out[key] = value
        elif (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
        ):
            out[key] = list(value)
        else:
            what = "true, " if key == "crop" else ""
            raise err(key, f"expected {what}a size in pixels (an integer >= 1) or [height, width], found {value!r}")
    skip_bad = merged.get("skip_bad", False)
    if not isinstance(skip_bad, bool):
        raise err("skip_bad", f"expected true or false, found {skip_bad!r}")
    if skip_bad:
        out["skip_bad"] = True
    return out


# ---- the folder ------------------------------------------------------------------------------


def require_pillow() -> None:
    """Exit 2 with the install line when Pillow is missing."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise InputError(
            "image folders and image inputs are read with Pillow, which is not installed",
            hint="pip install 'nncli[images]'",
        ) from None


def image_suffixes() -> set[str]:
    """File suffixes Pillow can open (``.png``, ``.jpg``, ``.bmp``, ``.webp``, ...)."""
    require_pillow()
    from PIL import Image

    return {s.lower() for s in Image.registered_extensions()}


def _class_files(folder: Path, suffixes: set[str]) -> dict[str, list[Path]]:
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.is_symlink():  # a link may lead anywhere (to /): the walk would read the whole disk
            raise InputError(
                f"{sub}: the class folder is a symbolic link (to {os.readlink(sub)}); image folders are read "
                "without following links",
                file=sub,
                hint="copy the class's images into the folder, or point `path:` at the real folder",
            )
        files = sorted(
            f for f in sub.rglob("*") if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in suffixes
        )
        classes[sub.name] = files
    return classes


def scan_folder(root: Path) -> tuple[dict[str, tuple[list, list]], list[str]]:
    """``({split: (files, labels)}, class names)`` of an image folder; the split is ``pool``
    for a folder of class folders, else ``train``/``val``/``test`` as present.

    Raises:
        InputError: no class folders, no images, or split folders with different classes.
    """
    suffixes = image_suffixes()
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"no such image folder: {root}")
    split_dirs = {s: root / s for s in SPLIT_FOLDERS if (root / s).is_dir()}
    if split_dirs and "train" not in split_dirs:
        raise InputError(
            f"{root}: has {', '.join(f'{s}/' for s in split_dirs)} but no train/ folder",
            file=root,
            hint="an image folder holds one folder per class, or train/ (and val/, test/) "
            "each with one folder per class",
        )
    per_split = (
        {s: _class_files(d, suffixes) for s, d in split_dirs.items()}
        if split_dirs
        else {"pool": _class_files(root, suffixes)}
    )
    first = "train" if split_dirs else "pool"
    classes = sorted(per_split[first])
    if not classes:
        raise InputError(
            f"{root}: expected one folder per class with images in it, found no folders",
            file=root,
            hint="MNIST and CIFAR-10 folders need `name: mnist` or `name: cifar10`",
        )
    empty = [c for c in classes if not per_split[first][c]]
    if len(empty) == len(classes):
        raise InputError(
            f"{root}: no image files in its class folders ({', '.join(classes[:5])})",
            file=root,
            hint="images are read by Pillow: .png, .jpg, .bmp, .gif, .webp, ...",
        )
    out = {}
    for split, found in per_split.items():
        extra = sorted(set(found) - set(classes))
        if extra:
            raise InputError(
                f"{root / split}: class folder(s) {', '.join(extra)} are not in {root / first}",
                file=root / split,
                hint="every split needs the same class folders as train/",
            )
        files, labels = [], []
        for label, name in enumerate(classes):
            files += found.get(name, [])
            labels += [label] * len(found.get(name, []))
        out[split] = (files, labels)
    return out, classes


def target_layout(input_shape, params: dict) -> tuple[int, tuple[int, int], Any, Any]:
    """``(channels, (H, W), resize, crop)`` for the spec's input: ``[C, H, W]``, ``[H, W]``
    (grayscale), or flat ``[C*H*W]`` with the size taken from ``crop`` or ``resize``."""
    shape = tuple(int(d) for d in input_shape)
    crop, resize = params.get("crop"), params.get("resize")
    as_pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    if len(shape) == 3:
        channels, size = shape[0], shape[1:]
    elif len(shape) == 2:
        channels, size = 1, shape
    else:
        known = crop if crop not in (None, True) else resize if not isinstance(resize, int) else crop
        if known in (None, True):
            raise InputError(
                f"data: an image folder for the flat input {list(shape)} needs the image size",
                spec_path="data.resize",
                hint="e.g. `resize: [16, 16]` in data, or `input: [1, 16, 16]`",
            )
        size = as_pair(known)
        channels = shape[0] // (size[0] * size[1]) if len(shape) == 1 else 0
        if len(shape) != 1 or channels * size[0] * size[1] != shape[0]:
            raise InputError(
                f"data: {size[0]}x{size[1]} images do not fill the input {list(shape)}", spec_path="data.resize"
            )
    if channels not in (1, 3):
        raise InputError(
            f"data: image folders give 1 (grayscale) or 3 (RGB) channels; the spec's input "
            f"{list(shape)} asks for {channels}",
            spec_path="input",
        )
    size = tuple(size)
    if crop is True:
        crop = size
    elif crop is not None:
        crop = as_pair(crop)
        if crop != size:
            raise InputError(
                f"data.crop {list(crop)} differs from the spec's input size {list(size)}",
                spec_path="data.crop",
                hint="crop to the input size (`crop: true`), or change `input:`",
            )
    if resize is None and crop is None:
        resize = list(size)  # the default: stretch every image to the input size
    return channels, size, resize, (list(crop) if crop is not None else None)


def _decode_all(files: list, decoder: Decoder, workers: int, keep: bool):
    """``(arrays, sums, bad)`` of every file decoded in order: the arrays (None where a file
    failed, or for all when not ``keep``), per-file float64 pixel sums ``(C,)`` and sums of
    squares, and the failures ``(file, reason)``."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    def one(path):
        try:
            array = decoder(path)
        except Exception as exc:  # PIL.UnidentifiedImageError, OSError (truncated), ValueError (size)
            return None, None, f"{exc}".strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        wide = array.astype(np.float64)
        return (array if keep else None), (wide.sum(axis=(1, 2)), (wide * wide).sum(axis=(1, 2))), None

    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, files, chunksize=16))
    else:
        results = [one(f) for f in files]
    bad = [(f, why) for f, (_, _, why) in zip(files, results) if why is not None]
    return [r[0] for r in results], [r[1] for r in results], bad


def _stats(sums: list, pixels: int):
    """Per-channel mean and std from the training files' sums, added in file order (the same
    numbers for the in-memory and the streamed route, which see the same files)."""
    import numpy as np
    import torch

    total = np.stack([s for s, _ in sums]).sum(axis=0)
    squares = np.stack([q for _, q in sums]).sum(axis=0)
    n = max(len(sums) * pixels, 1)
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
    std = np.where(std > 1e-8, std, 1.0)  # a constant channel stays 0 after centring
    shape = (len(mean), 1, 1)
    return torch.from_numpy(mean.reshape(shape)).float(), torch.from_numpy(std.reshape(shape)).float()


def load_image_folder(config, input_shape):
    """The :class:`~nncli.data.dataset.Dataset` of an image folder ``config.path`` for a spec
    whose input is ``input_shape``: decoded into memory, or as :class:`ImageFiles` when it
    streams (``config.stream``, or more than :data:`STREAM_ABOVE_BYTES` decoded).

    Raises:
        InputError: layout problems; unreadable files (all of them counted, the first few named)
            unless ``skip_bad``; too few examples to split.
    """
    import numpy as np
    import torch

    from nncli.data.dataset import Dataset

    if input_shape is None:
        raise InputError("data: an image folder needs the spec's input shape to size its images")
    params = config.params
    channels, size, resize, crop = target_layout(input_shape, params)
    decoder = Decoder(channels, size, resize, crop)
    splits, classes = scan_folder(config.path)
    workers = min(max(1, getattr(config, "workers", 0) or 1), cores())  # decoding threads
    example_bytes = 4 * channels * size[0] * size[1]
    limit = config.limit or float("inf")
    expected = sum(min(len(f), limit) if split != "val" else len(f) for split, (f, _) in splits.items())
    stream = (
        config.stream if getattr(config, "stream", None) is not None else expected * example_bytes > STREAM_ABOVE_BYTES
    )
    # decode (and so check) everything first: bad files are found before a run folder exists;
    # a streamed folder keeps only each file's pixel sums (for the statistics), not its pixels
    decoded, bad = _decode_splits(splits, decoder, workers, keep=not stream)
    if bad and not params.get("skip_bad"):
        _refuse_bad(bad, Path(config.path))
    skipped = [{"file": str(f), "reason": why} for f, why in bad]
    parts = _split(decoded, config)
    mean, std = _stats(parts["train"][3], size[0] * size[1]) if config.normalize else (None, None)
    xs = {}
    for split, (files, _, arrays, _) in parts.items():
        if stream:
            xs[split] = ImageFiles(files, decoder, mean, std)
        else:
            x = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros((0, channels, *size))
            xs[split] = (x - mean) / std if mean is not None else x
        parts[split] = (files, parts[split][1], None, None)  # drop the decoded arrays once used
    return Dataset(
        skipped=skipped,
        name=Path(config.path).name,
        x_train=xs["train"],
        y_train=torch.from_numpy(parts["train"][1]),
        x_val=xs["val"],
        y_val=torch.from_numpy(parts["val"][1]),
        x_test=xs["test"],
        y_test=torch.from_numpy(parts["test"][1]),
        classes=classes,
        mean=mean,
        std=std,
    )


def _decode_splits(splits: dict, decoder, workers: int, keep: bool) -> tuple[dict, list]:
    """Each split's readable (files, labels, arrays, pixel sums), and the (file, why) of the unreadable ones."""
    import numpy as np

    decoded, bad = {}, []
    for split, (files, labels) in splits.items():
        arrays, sums, bad_here = _decode_all(files, decoder, workers, keep=keep)
        bad += bad_here
        ok = [i for i, s in enumerate(sums) if s is not None]
        decoded[split] = (
            [files[i] for i in ok],
            np.asarray([labels[i] for i in ok], dtype=np.int64),
            [arrays[i] for i in ok],
            [sums[i] for i in ok],
        )
    return decoded, bad


def _refuse_bad(bad: list, root: Path) -> None:
    """Raise the InputError that counts the unreadable files and names the first few."""
    shown = "; ".join(f"{_rel(f, root)}: {why}" for f, why in bad[:BAD_SHOWN])
    more = f" (and {len(bad) - BAD_SHOWN} more)" if len(bad) > BAD_SHOWN else ""
    raise InputError(
        f"{len(bad)} unreadable image file{'s' if len(bad) != 1 else ''} in {root}: {shown}{more}",
        file=root,
        spec_path="data.path",
        hint="fix or remove them, or set `skip_bad: true` in data to train without them",
    )


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _split(decoded: dict, config) -> dict:
    """train/val/test ``(files, labels, arrays, sums)``: the folder's own splits where it has them, the
    rest cut from the pool (or train/) with the seeded permutation every source uses."""
    import numpy as np

    def take(part, idx):
        return tuple(column[idx] if isinstance(column, np.ndarray) else [column[i] for i in idx] for column in part)

    pool = decoded.get("pool") or decoded["train"]
    gen = np.random.default_rng(config.seed + 1_000_003)  # the split stream of load_dataset
    if config.limit is not None and len(pool[0]) > config.limit:
        pool = take(pool, np.sort(gen.choice(len(pool[0]), size=config.limit, replace=False)))
    test = decoded.get("test")
    if test is not None and config.limit is not None and len(test[0]) > config.limit:
        test = take(test, np.sort(gen.choice(len(test[0]), size=config.limit, replace=False)))
    n = len(pool[0])
    order = gen.permutation(n)
    n_test = 0 if test is not None else int(round(n * config.test))
    n_val = 0 if decoded.get("val") is not None else int(round(n * config.val))
    if n - n_test - n_val < 1:
        raise InputError(
            f"data: {n} images are too few to split off {n_test} test and {n_val} validation examples",
            hint="lower `val`/`test` or add images",
        )

    return {
        "test": test if test is not None else take(pool, order[:n_test]),
        "val": decoded.get("val") or take(pool, order[n_test : n_test + n_val]),
        "train": take(pool, order[n_test + n_val :]),
    }


def read_image_inputs(path: Path, input_shape, params: dict):
    """Inputs for ``nncli predict`` from an image file or a folder of images (searched
    recursively, sorted), decoded as the run's training data was (not yet normalised).

    Returns:
        ``(x float32 (N, C, H, W), files)``.

    Raises:
        InputError: no images, or unreadable ones (named).
    """
    import numpy as np
    import torch

    channels, size, resize, crop = target_layout(input_shape, params)
    decoder = Decoder(channels, size, resize, crop)
    path = Path(path)
    if path.is_dir():
        suffixes = image_suffixes()
        files = sorted(
            f for f in path.rglob("*") if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in suffixes
        )
        if not files:
            raise InputError(f"{path}: no image files in this folder", file=path)
    else:
        files = [path]
    arrays, _, bad = _decode_all(files, decoder, 1, keep=True)
    if bad:
        shown = "; ".join(f"{_rel(f, path) if path.is_dir() else f.name}: {why}" for f, why in bad[:BAD_SHOWN])
        raise InputError(f"{len(bad)} unreadable image file{'s' if len(bad) != 1 else ''}: {shown}", file=path)
    return torch.from_numpy(np.stack(arrays)), [str(f) for f in files]


def is_image_input(path: Path) -> bool:
    """Whether ``nncli predict`` should read ``path`` as images: a folder, or a file Pillow opens."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in image_suffixes()
