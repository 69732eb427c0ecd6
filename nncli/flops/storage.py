"""The tensors the formulas follow through a network: storages, shapes and strides, no data.

What autograd saves is counted per *storage* (a view and its base count once), so the formulas
track which storage each intermediate tensor lives in and its layout: whether a later op saves
that storage or a copy of it (``reshape`` of a non-viewable tensor, ``linear`` on a
non-contiguous 3-d input) depends on the strides, as does the layout of an elementwise op's
output (it follows its input's).
"""

from __future__ import annotations

import math
from typing import NamedTuple


def contiguous_strides(shape: tuple) -> tuple:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


class Tensor(NamedTuple):
    """One intermediate tensor: its storage id, whether it needs a gradient, batched shape, strides."""

    storage: int
    grad: bool
    shape: tuple
    strides: tuple

    @property
    def contiguous(self) -> bool:
        # torch's rule: dims of size 1 (and empty tensors) never break contiguity
        if math.prod(self.shape) == 0:
            return True
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self.strides)):
            if size != 1:
                if stride != expected:
                    return False
                expected *= size
        return True

    @property
    def dense(self) -> bool:
        """Non-overlapping and dense: a permutation of a contiguous layout (what empty_like keeps)."""
        dims = sorted((st, sz) for sz, st in zip(self.shape, self.strides) if sz != 1)
        expected = 1
        for stride, size in dims:
            if stride != expected:
                return False
            expected *= size
        return True

    def view(self, shape: tuple, strides: tuple | None = None) -> Tensor:
        return Tensor(self.storage, self.grad, shape, strides or contiguous_strides(shape))

    def view_strides(self, shape: tuple) -> tuple | None:
        """The strides of ``self.view(shape)``, or None where torch's reshape must copy
        (ATen's ``computeStride``: each run of merged dims must be contiguous within itself)."""
        old_shape, old_strides = self.shape, self.strides
        if math.prod(old_shape) == 0 or not old_shape:
            return contiguous_strides(shape)
        strides = [0] * len(shape)
        view_d = len(shape) - 1
        base = old_strides[-1]
        tensor_numel = view_numel = 1
        for d in reversed(range(len(old_shape))):
            tensor_numel *= old_shape[d]
            if d == 0 or (old_shape[d - 1] != 1 and old_strides[d - 1] != tensor_numel * base):
                while view_d >= 0 and (view_numel < tensor_numel or shape[view_d] == 1):
                    strides[view_d] = view_numel * base
                    view_numel *= shape[view_d]
                    view_d -= 1
                if view_numel != tensor_numel:
                    return None
                if d > 0:
                    base = old_strides[d - 1]
                    tensor_numel = view_numel = 1
        return tuple(strides) if view_d == -1 else None


class Saved:
    """Storages that exist and the ones autograd keeps, in bytes (each storage once, parameters never)."""

    def __init__(self, batch: int, itemsize: int) -> None:
        self.batch = batch
        self.itemsize = itemsize
        self.sizes: dict[int, int] = {}  # storage -> bytes at the target dtype
        self.kept: set[int] = set()
        self._log: list[int] = []  # storages in the order they were first kept, for restore()
        self.overflow = False
        self.integer: set[int] = set()  # storages of int64 token ids (the model's input)

    def new(self, shape: tuple, grad: bool, element_bytes: int | None = None) -> Tensor:
        """A fresh contiguous tensor of the batched ``shape`` in a storage of its own."""
        storage = len(self.sizes) + 1
        elements = math.prod(shape)
        # torch refuses a tensor of 2**63 bytes or more: leave anything near that to it
        self.overflow = self.overflow or elements >= 2**60
        self.sizes[storage] = elements * (element_bytes or self.itemsize)
        return Tensor(storage, grad, shape, contiguous_strides(shape))

    def like(self, t: Tensor, shape: tuple | None = None, grad: bool | None = None) -> Tensor:
        """The output of an elementwise op on ``t``: a new storage laid out as ``t`` when it is dense."""
        out = self.new(shape or t.shape, t.grad if grad is None else grad)
        if (shape is None or shape == t.shape) and t.dense:
            return out._replace(strides=t.strides)
        return out

    def reshape(self, t: Tensor, shape: tuple) -> Tensor:
        """``t.reshape(shape)``: a view where one is possible, else a contiguous copy (keeps nothing)."""
        strides = t.view_strides(shape)
        return t.view(shape, strides) if strides is not None else self.new(shape, t.grad)

    def keep(self, t: Tensor) -> None:
        """Autograd saves ``t``: its whole storage is kept alive."""
        self._keep(t.storage)

    def _keep(self, storage: int) -> None:
        if storage not in self.kept:
            self.kept.add(storage)
            self._log.append(storage)

    def mark(self) -> int:
        """A point to go back to when a rule gives up half way (see :meth:`restore`)."""
        return len(self._log)

    def restore(self, mark: int) -> None:
        """Forget what was kept since ``mark``."""
        for storage in self._log[mark:]:
            self.kept.discard(storage)
        del self._log[mark:]

    def keep_bytes(self, size: int) -> None:
        """Autograd saves a storage of its own of ``size`` bytes (one a dispatched layer made)."""
        storage = len(self.sizes) + 1
        self.sizes[storage] = size
        self._keep(storage)

    def keep_new(self, shape: tuple, element_bytes: int | None = None) -> None:
        """Autograd saves a tensor made inside the op (statistics, masks, indices)."""
        self.keep(self.new(shape, False, element_bytes))

    @property
    def total(self) -> int:
        return sum(self.sizes[s] for s in self.kept)
