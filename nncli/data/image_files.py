"""One image file to one input array (:class:`Decoder`), and :class:`ImageFiles`, a split of an
image folder decoded on demand (the streamed route of :mod:`nncli.data.images`).

Both are plain picklable objects: DataLoader worker processes receive them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Decoder:
    """How one file becomes a ``(C, H, W)`` float32 array in [0, 1]: picklable, for DataLoader workers."""

    channels: int  # 1 (grayscale) or 3 (RGB)
    size: tuple[int, int]  # the final (H, W)
    resize: Any = None  # None, an int (shorter side) or [H, W]
    crop: Any = None  # None or [H, W] (center crop)

    def __call__(self, path):
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            image = image.convert("L" if self.channels == 1 else "RGB")
            if self.resize is not None:
                width, height = image.size
                if isinstance(self.resize, int):
                    scale = self.resize / min(width, height)
                    new = (max(1, round(width * scale)), max(1, round(height * scale)))
                else:
                    new = (self.resize[1], self.resize[0])
                if new != image.size:
                    image = image.resize(new, Image.BILINEAR)
            if self.crop is not None:
                width, height = image.size
                top, left = (height - self.crop[0]) // 2, (width - self.crop[1]) // 2
                image = image.crop((left, top, left + self.crop[1], top + self.crop[0]))
            array = np.asarray(image, dtype=np.float32) / np.float32(255.0)
        if array.shape[:2] != self.size:
            raise ValueError(f"became {array.shape[0]}x{array.shape[1]} pixels, expected {self.size[0]}x{self.size[1]}")
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


class ImageFiles:
    """One split of an image folder, decoded on demand. It stands in for the ``(N, C, H, W)``
    float tensor of the in-memory route where the trainer and evaluation use it (``len``,
    ``shape``, ``device``, indexing by an index tensor), normalised with the training statistics.
    """

    def __init__(self, files: list, decoder: Decoder, mean=None, std=None, shape=None, device="cpu"):
        self.files = list(files)
        self.decoder = decoder
        self.mean, self.std = mean, std
        self.example_shape = tuple(shape) if shape is not None else (decoder.channels, *decoder.size)
        self._device = str(device)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self):
        import torch

        return torch.Size((len(self.files), *self.example_shape))

    @property
    def device(self):
        import torch

        return torch.device(self._device)

    @property
    def dtype(self):
        import torch

        return torch.float32

    def is_floating_point(self) -> bool:
        return True

    def dim(self) -> int:
        return 1 + len(self.example_shape)

    def numel(self) -> int:
        return len(self.files) * math.prod(self.example_shape)

    def element_size(self) -> int:
        return 4

    def _copy(self, **changes) -> ImageFiles:
        kw = dict(
            files=self.files,
            decoder=self.decoder,
            mean=self.mean,
            std=self.std,
            shape=self.example_shape,
            device=self._device,
        )
        kw.update(changes)
        return ImageFiles(**kw)

    def reshape(self, shape) -> ImageFiles:
        """The same files viewed as ``shape`` (``(N, *example)``), e.g. flat for an MLP."""
        return self._copy(shape=tuple(shape)[1:])

    def to(self, device, **_) -> ImageFiles:
        return self._copy(device=str(device))

    def pin_memory(self) -> ImageFiles:
        return self

    def contiguous(self, **_) -> ImageFiles:
        return self

    def batch(self, indices):
        """The examples ``indices`` (list of ints) decoded, normalised, stacked on the CPU."""
        import numpy as np
        import torch

        if not len(indices):
            return torch.zeros((0, *self.example_shape))
        x = torch.from_numpy(np.stack([self.decoder(self.files[i]) for i in indices]))
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x.reshape((len(indices), *self.example_shape))

    def __getitem__(self, index):
        import torch

        if isinstance(index, int):
            return self.batch([index])[0].to(self.device)
        if isinstance(index, slice):
            indices = list(range(len(self.files)))[index]
        else:
            indices = torch.as_tensor(index).cpu().reshape(-1).tolist()
        return self.batch(indices).to(self.device)
