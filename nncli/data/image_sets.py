"""MNIST (idx files) and CIFAR-10 (binary batches) read byte by byte from a local folder.

nncli never downloads them and never unpickles anything.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np

from nncli.errors import InputError

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
        raise InputError(
            "not an idx file: expected the magic bytes 00 00 <type> <ndim>, "
            f"found {raw[:4].hex(' ') or 'an empty file'}",
            file=path,
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError("truncated idx file: the header is cut short", file=path)
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise InputError(
            f"corrupt idx file: the header promises {dims} ({expected} bytes of values), "
            f"found {len(raw) - header} bytes",
            file=path,
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(folder: Path, stems: list[str]) -> Path:
    places = [folder, folder / "raw", folder / "MNIST" / "raw"]
    for place in places:
        for stem in stems:
            for candidate in (place / stem, place / (stem + ".gz")):
                if candidate.is_file():
                    return candidate
    raise InputError(
        f"MNIST: no file {stems[0]}[.gz] in {folder}",
        hint="expected the four idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)",
    )


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
            raise InputError(
                f"MNIST {part}: expected images (N, H, W) and N labels, found {images.shape} and {labels.shape}",
                file=folder,
            )
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
        raise InputError(
            f"CIFAR-10: missing {', '.join(missing)} in {folder}",
            hint="nncli reads the binary version (cifar-10-binary.tar.gz), never the pickled python one"
            if pickled
            else "expected the binary batches data_batch_1.bin .. data_batch_5.bin and test_batch.bin",
        )

    def read(paths):
        chunks = []
        for path in paths:
            raw = path.read_bytes()
            if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
                raise InputError(
                    f"corrupt CIFAR-10 batch: expected a multiple of {_CIFAR_RECORD} bytes, found {len(raw)}", file=path
                )
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
