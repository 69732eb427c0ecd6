"""Exact FLOP and training-memory formulas per layer, so ``nncli params`` needs no forward pass.

The reference is torch's own accounting, which :func:`nncli.params.measure_forward` gets by
running the model on meta tensors under ``FlopCounterMode`` and ``saved_tensors_hooks``. That
costs a per-op Python dispatch (2 s for a 1,000-layer MLP) and 1 to 2 s of start-up (the meta
kernels import ``torch._dynamo``). The formulas below give the same two figures from the shapes
the builder already knows:

- **FLOPs**, as ``FlopCounterMode`` counts them: only matrix products and convolutions, 2 per
  multiply-add, biases not counted. ``Linear``: ``2 N m in out`` (``m`` the leading dims of an
  example); ``ConvNd``: ``2 N prod(out spatial) out_channels (in_channels / groups) prod(kernel)``;
  ``ConvTransposeNd``: the same over the *input's* spatial positions. Every other layer listed in
  :data:`_ZERO_FLOPS` does no counted op. Composites (Residual, Repeat) add their children: a
  Repeat's copies are each a few integer multiplications, so no separate "times" rule is needed.
- **Saved activations**: the tensors autograd keeps for backward, in bytes, each storage once and
  parameters left out, exactly as the hooks count them. Per layer, what it saves (its input, its
  output, small statistics, int64 pooling indices) as torch 2.13's derivative formulas do; a
  layer whose input needs no gradient and that has no trainable parameter builds no graph and
  saves nothing. Views (Flatten, Identity, Dropout with p = 0) pass their input's storage on.

Anything without an exact rule (a Custom layer, RNNs, attention, frozen parameters, in-place
activations, ...) makes :func:`formula_forward` return None, and the caller falls back to the
dispatch path. ``tests/test_speed.py`` checks both against each other on every ready spec.
"""

from __future__ import annotations

import math

from torch import nn

from nncli.build import Built, LayerInfo

# Activations that save their output for backward (derivative written in terms of the result).
_SAVE_OUTPUT = {nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Softmax, nn.LogSoftmax}
# Activations that save their input.
_SAVE_INPUT = {nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Hardtanh, nn.ReLU6, nn.Mish,
               nn.Hardswish, nn.AvgPool2d}
# Only the 2-d pools, whose saved tensors were checked against the hooks; 1-d/3-d fall back.
_MAX_POOL = {nn.MaxPool2d}
_CONV = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_CONV_T = {nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3}
_BATCH_NORM = {nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d}
_VIEWS = {nn.Identity, nn.Flatten}
# Layers that run no matrix product or convolution (0 FLOPs for FlopCounterMode).
_ZERO_FLOPS = (_SAVE_OUTPUT | _SAVE_INPUT | _MAX_POOL | _BATCH_NORM | _VIEWS
               | {nn.Dropout, nn.LayerNorm, nn.GroupNorm, nn.AdaptiveAvgPool2d})

_INDEX_BYTES = 8  # int64 pooling indices keep their own size whatever the dtype


def layer_flops(info: LayerInfo, batch: int) -> int | None:
    """Forward FLOPs of one leaf layer for ``batch`` examples; None where there is no formula."""
    module = info.module
    cls = type(module)
    if cls is nn.Linear:
        if not info.in_shape or info.in_shape[-1] != module.in_features:
            return None
        return 2 * batch * math.prod(info.in_shape[:-1]) * module.in_features * module.out_features
    n = _CONV.get(cls) or _CONV_T.get(cls)
    if n is not None:
        if len(info.in_shape) != n + 1 or len(info.out_shape) != n + 1:
            return None  # an unbatched reading: leave it to torch's count
        # the weight is (out, in / groups, *k) for a convolution, (in, out / groups, *k) transposed
        c_out, c_in, *kernel = module.weight.shape
        positions = info.in_shape[1:] if cls in _CONV_T else info.out_shape[1:]
        return 2 * batch * math.prod(positions) * c_out * c_in * math.prod(kernel)
    if cls in _ZERO_FLOPS:
        return 0
    return None


class _Saved:
    """Storages autograd keeps, by id, in bytes; ids stand for storages (a view keeps its base's)."""

    def __init__(self, batch: int, itemsize: int) -> None:
        self.batch = batch
        self.itemsize = itemsize
        self.bytes: dict[int, int] = {}
        self._next = 0

    def new(self) -> int:
        self._next += 1
        return self._next

    def keep(self, storage: int, shape: tuple, element_bytes: int | None = None) -> None:
        self.bytes.setdefault(storage, self.batch * math.prod(shape) * (element_bytes or self.itemsize))

    def keep_new(self, elements: int, element_bytes: int | None = None) -> None:
        self.bytes[self.new()] = elements * (element_bytes or self.itemsize)


def _leaf(info: LayerInfo, x: int, needs_grad: bool, saved: _Saved) -> tuple[int, bool] | None:
    """Record what one leaf saves; returns (output storage, whether the output needs a gradient)."""
    module = info.module
    cls = type(module)
    params = list(module.parameters())
    if any(not p.requires_grad for p in params):
        return None  # frozen weights change what autograd saves: leave it to the hooks
    graph = needs_grad or bool(params)  # no graph, nothing saved
    out_grad = graph
    if cls in _VIEWS or (cls is nn.Dropout and (module.p == 0 or not module.training)):
        return x, needs_grad
    if cls is nn.Dropout:
        if module.p >= 1:
            return None
        if graph:
            saved.keep_new(saved.batch * math.prod(info.out_shape))  # the scaled keep-mask
        return saved.new(), out_grad
    y = saved.new()
    if cls is nn.Linear or cls in _CONV or cls in _CONV_T:
        saved.keep(x, info.in_shape)  # the input, for the weight's gradient
    elif cls in _BATCH_NORM:
        if not (module.affine and module.track_running_stats and module.training):
            return None
        saved.keep(x, info.in_shape)
        c = module.num_features  # running mean and var (buffers), batch mean and inverse std
        for _ in range(4):
            saved.keep_new(c)
    elif cls is nn.LayerNorm:
        if not module.elementwise_affine or module.bias is None:
            return None
        saved.keep(x, info.in_shape)
        lead = info.in_shape[:len(info.in_shape) - len(module.normalized_shape)]
        saved.keep_new(2 * saved.batch * math.prod(lead))  # mean and reciprocal std per row
    elif cls is nn.GroupNorm:
        if not module.affine:
            return None
        saved.keep(x, info.in_shape)
        saved.keep_new(2 * saved.batch * module.num_groups)
    elif cls in _SAVE_OUTPUT or cls in _SAVE_INPUT:
        if getattr(module, "inplace", False):
            return None
        if graph:
            saved.keep(y if cls in _SAVE_OUTPUT else x, info.out_shape if cls in _SAVE_OUTPUT else info.in_shape)
    elif cls in _MAX_POOL:
        if getattr(module, "return_indices", False):
            return None
        if graph:
            saved.keep(x, info.in_shape)
            saved.keep_new(saved.batch * math.prod(info.out_shape), _INDEX_BYTES)
    elif cls is nn.AdaptiveAvgPool2d:
        if len(info.out_shape) != 3:
            return None
        if graph and tuple(info.out_shape[1:]) != (1, 1):  # (1, 1) is a mean: it saves no tensor
            saved.keep(x, info.in_shape)
    else:
        return None
    return y, out_grad


def _walk(infos: list[LayerInfo], x: int, needs_grad: bool, saved: _Saved, batch: int,
          flops: dict[str, int]) -> tuple[int, bool, int] | None:
    """Run the formulas over a sequence; returns (output storage, needs grad, FLOPs) or None."""
    total = 0
    for info in infos:
        if info.type == "Residual" and info.children:
            body = [c for c in info.children if c.role == "body"]
            shortcut = [c for c in info.children if c.role == "shortcut"]
            b = _walk(body, x, needs_grad, saved, batch, flops)
            s = _walk(shortcut, x, needs_grad, saved, batch, flops) if shortcut else (x, needs_grad, 0)
            if b is None or s is None:
                return None
            x, needs_grad, f = saved.new(), b[1] or s[1], b[2] + s[2]  # the sum saves nothing
        elif info.type == "Repeat" and info.children:
            r = _walk(info.children, x, needs_grad, saved, batch, flops)
            if r is None:
                return None
            x, needs_grad, f = r
        elif info.children or info.target is not None:
            return None  # other composites and Custom layers: no formula
        else:
            f = layer_flops(info, batch)
            step = _leaf(info, x, needs_grad, saved)
            if f is None or step is None:
                return None
            x, needs_grad = step
        flops[info.fqn] = f
        total += f
    return x, needs_grad, total


def formula_forward(built: Built, batch_size: int, itemsize: int) -> tuple[dict[str, int], int] | None:
    """FLOPs per module and bytes saved for backward, by formula; None if any layer lacks one.

    Returns the same as :func:`nncli.params.measure_forward`: ``({fqn: flops}, activation_bytes)``
    with the whole model's FLOPs under ``""`` (modules with no counted op may be present as 0).
    """
    biggest = max((math.prod(s) for i in built.walk() for s in (i.in_shape, i.out_shape)), default=1)
    if batch_size * biggest >= 2**63:
        return None  # torch cannot index such a tensor: its own pass raises and says so
    saved = _Saved(batch_size, itemsize)
    flops: dict[str, int] = {}
    out = _walk(built.layers, saved.new(), False, saved, batch_size, flops)
    if out is None:
        return None
    flops[""] = out[2]
    return flops, sum(saved.bytes.values())
