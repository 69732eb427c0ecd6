"""FLOPs and saved tensors of one leaf layer, as torch 2.13 computes them on meta tensors.

:func:`layer_flops` counts what ``FlopCounterMode`` counts: matrix products and convolutions only,
2 per multiply-add, biases left out. :func:`leaf` records what the layer's backward keeps (its
input, its output, statistics, masks, pooling indices) following torch's derivative formulas, and
returns the output tensor; a layer whose input needs no gradient and that has no trainable
parameter builds no graph and saves nothing. Either returns None where no rule is exact, and the
caller falls back to torch's own count. Attention and recurrent layers: :mod:`nncli.flops.sequence`.
"""

from __future__ import annotations

import math

from torch import nn

from nncli.build import LayerInfo
from nncli.modules import (
    Chunk,
    ClassToken,
    LayerNorm2d,
    LayerScale,
    Mean,
    Narrow,
    Permute,
    PositionEmbedding,
    Reshape,
    Select,
    Step,
    StochasticDepth,
    Transpose,
)

from .storage import Saved, Tensor

# Activations that save their output for backward (derivative written in terms of the result).
_SAVE_OUTPUT = {nn.ReLU, nn.Tanh, nn.Sigmoid}
_SOFTMAX = {nn.Softmax, nn.LogSoftmax}  # also save their output, but are not elementwise
# Elementwise layers that save their input.
_SAVE_INPUT = {
    nn.GELU,
    nn.SiLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.Softplus,
    nn.Hardtanh,
    nn.ReLU6,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
}
# 2-d pooling only: its saved tensors were checked against the hooks; 1-d/3-d fall back.
_POOL = {nn.MaxPool2d, nn.AvgPool2d}
_CONV = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_CONV_T = {nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3}
_BATCH_NORM = {nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d}
_VIEWS = {nn.Identity, nn.Flatten, Permute, Transpose, Select, Narrow, Chunk, Reshape}
# Layers that run no matrix product or convolution (0 FLOPs for FlopCounterMode).
_ZERO_FLOPS = (
    _SAVE_OUTPUT
    | _SOFTMAX
    | _SAVE_INPUT
    | _POOL
    | _BATCH_NORM
    | _VIEWS
    | {
        nn.Dropout,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.AdaptiveAvgPool2d,
        nn.Embedding,
        nn.ChannelShuffle,
        Mean,
        StochasticDepth,
        ClassToken,
        PositionEmbedding,
        LayerNorm2d,
        LayerScale,
        Step,
    }
)

# Layers whose frozen form (a `transfer:` section's) is counted: on an input without gradient
# they build no graph, keep nothing and give a new contiguous tensor.
_FROZEN = set(_CONV) | set(_CONV_T) | _BATCH_NORM | {nn.Linear, nn.LayerNorm, nn.GroupNorm, nn.Embedding}

_INDEX_BYTES = 8  # int64 indices keep their own size whatever the dtype


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


def _view(module: nn.Module, t: Tensor, out: tuple, saved: Saved) -> Tensor | None:
    """The output of a view layer: the same storage, its own shape and strides."""
    cls = type(module)
    if cls is nn.Identity:
        return t
    if cls in (Permute, Transpose):
        dims = list(range(len(t.shape)))
        if cls is Permute:
            dims = [d % len(t.shape) for d in module.dims]
        else:
            a, b = module.dim0 % len(dims), module.dim1 % len(dims)
            dims[a], dims[b] = dims[b], dims[a]
        return t.view(tuple(t.shape[d] for d in dims), tuple(t.strides[d] for d in dims))
    if cls is Select:
        d = module.dim % len(t.shape)
        return t.view(out, t.strides[:d] + t.strides[d + 1 :])
    if cls in (Narrow, Chunk):
        return t.view(out, t.strides)  # the offset moves; the strides stay
    if cls is nn.Flatten and out == t.shape:
        return t  # flattening a single dim returns the input itself
    return saved.reshape(t, out)  # Flatten and Reshape: a view where possible, else a copy


def linear_input(t: Tensor, saved: Saved) -> Tensor:
    """What ``linear`` saves of its input: the input itself (2-d or contiguous), else the copy
    ``matmul``'s reshape makes of a non-viewable one."""
    if len(t.shape) == 2:
        return t
    return saved.reshape(t, (math.prod(t.shape[:-1]), t.shape[-1]))  # matmul folds the leading dims


_NOT_MINE = object()  # a rule's answer for a layer type it does not cover


def leaf(info: LayerInfo, t: Tensor, saved: Saved) -> Tensor | None:
    """Record what one leaf layer saves for backward; returns its output, None without a rule."""
    module = info.module
    cls = type(module)
    out = (saved.batch, *info.out_shape)
    params = list(module.parameters())
    trainable = sum(p.requires_grad for p in params)
    if trainable != len(params):
        if trainable or t.grad:
            return None  # partly frozen, or a gradient flowing through frozen weights
        if cls not in _FROZEN or (not t.contiguous and t.dense):
            return None  # (e.g. attention's eval-mode fast path lays out its output otherwise)
        return saved.new(out, False)  # frozen on an input without gradient: no graph at all
    graph = t.grad or bool(params)  # no graph, nothing saved
    if cls in _VIEWS:
        return _view(module, t, out, saved)
    for rule in (_random_leaf, _pointwise_leaf, _token_leaf, _row_leaf, _conv_leaf):
        y = rule(module, t, out, saved, graph)
        if y is not _NOT_MINE:
            return y
    global_mean = cls is nn.AdaptiveAvgPool2d and out[2:] == (1, 1)  # [N, C, 1, 1] has one layout
    if not t.contiguous and t.dense and not global_mean:
        return None  # a permuted layout: torch may keep it (channels-last) in the output
    return _dense_leaf(module, t, out, saved, graph)


def _random_leaf(module, t: Tensor, out: tuple, saved: Saved, graph: bool):
    """Dropout and StochasticDepth: the input itself when off, else a new tensor and the scaled mask."""
    cls = type(module)
    if cls is not nn.Dropout and cls is not StochasticDepth:
        return _NOT_MINE
    if module.p == 0 or not module.training:
        return t  # the input itself
    if cls is nn.Dropout:
        if module.p >= 1:
            return None
        if t.grad:
            saved.keep_new(t.shape)  # the scaled keep-mask
        return saved.like(t)
    if t.grad:  # the scaled survival noise, one value per example (row) or per batch
        saved.keep_new((saved.batch if module.mode == "row" else 1,) + (1,) * (len(t.shape) - 1))
    return saved.like(t)


def _pointwise_leaf(module, t: Tensor, out: tuple, saved: Saved, graph: bool):
    """Elementwise activations: their output or their input kept (Step keeps nothing); LayerScale."""
    cls = type(module)
    if cls is LayerScale:  # x * weight: the weight's gradient needs x (the weight, a parameter, is not counted)
        if not t.dense:
            return None
        saved.keep(t)
        return saved.like(t, grad=True)  # laid out as x, the first operand
    if not (cls in _SAVE_OUTPUT or cls in _SAVE_INPUT or cls is Step):
        return _NOT_MINE
    if getattr(module, "inplace", False):
        return None
    y = saved.like(t)
    if graph and cls is not Step:  # Step's own backward keeps nothing
        saved.keep(y if cls in _SAVE_OUTPUT else t)
    return y


def _token_leaf(module, t: Tensor, out: tuple, saved: Saved, graph: bool):
    """Embedding, PositionEmbedding and ClassToken."""
    cls = type(module)
    if cls is PositionEmbedding:
        return saved.like(t, grad=True)  # x + weight keeps nothing
    if cls is nn.Embedding:
        if module.max_norm is not None or module.sparse:
            return None  # renormalises its weight in place / a sparse gradient
        saved.keep(t)  # the indices, for the weight's gradient
        return saved.new(out, True)
    if cls is ClassToken:
        return saved.new(out, True)  # a concatenation keeps nothing
    return _NOT_MINE


def _row_leaf(module, t: Tensor, out: tuple, saved: Saved, graph: bool):
    """Linear and LayerNorm, which take any layout and give a contiguous output (LayerNorm2d: permuted back)."""
    cls = type(module)
    if cls is nn.Linear:
        saved.keep(linear_input(t, saved))  # for the weight's gradient
        return saved.new(out, True)
    if cls is nn.LayerNorm:
        if not module.elementwise_affine or module.bias is None:
            return None
        saved.keep(t)
        lead = t.shape[: len(t.shape) - len(module.normalized_shape)]
        saved.keep_new((2 * math.prod(lead),))  # mean and reciprocal std per row
        return saved.new(out, True)
    if cls is LayerNorm2d:  # channels moved last (a view), layer_norm, moved back (a view)
        if not module.elementwise_affine or module.bias is None:
            return None
        n = len(t.shape)
        last = (0, *range(2, n), 1)
        saved.keep(t)  # the permuted input is a view of t's storage
        saved.keep_new((2 * math.prod(out) // out[1],))  # mean and reciprocal std per position
        y = saved.new(tuple(out[d] for d in last), True)  # contiguous, channels last
        back = (0, n - 1, *range(1, n - 1))
        return y.view(out, tuple(y.strides[d] for d in back))
    return _NOT_MINE


def _conv_leaf(module, t: Tensor, out: tuple, saved: Saved, graph: bool):
    """Convolutions on any layout: the input kept, the output contiguous, as the meta kernel that
    ``params`` counts on makes it (a channels-last input comes from LayerNorm2d)."""
    cls = type(module)
    if cls not in _CONV and cls not in _CONV_T:
        return _NOT_MINE
    if module.padding_mode != "zeros" or (
        module.padding == "same" and any(d * (k - 1) % 2 for d, k in zip(module.dilation, module.kernel_size))
    ):
        return None  # the input is padded into a copy first, and the copy is what is kept
    saved.keep(t)  # the input, for the weight's gradient
    return saved.new(out, graph)


def _dense_leaf(module, t: Tensor, out: tuple, saved: Saved, graph: bool) -> Tensor | None:
    """Batch and group norms, softmax and pools on a contiguous input."""
    cls = type(module)
    if cls in _BATCH_NORM:
        if not (module.affine and module.track_running_stats and module.training):
            return None
        saved.keep(t)
        for _ in range(4):  # running mean and var (buffers), batch mean and inverse std
            saved.keep_new((module.num_features,))
    elif cls is nn.GroupNorm:
        if not module.affine:
            return None
        saved.keep(t)
        saved.keep_new((2 * saved.batch * module.num_groups,))
    elif cls in _SOFTMAX:
        y = saved.new(out, t.grad)
        if graph:
            saved.keep(y)
        return y
    elif cls in _POOL:
        if getattr(module, "return_indices", False) or len(out) != 4:
            return None
        if graph:
            saved.keep(t)
            if cls is nn.MaxPool2d:
                saved.keep_new(out, _INDEX_BYTES)
    elif cls is nn.AdaptiveAvgPool2d:
        if len(out) != 4:
            return None
        if graph and out[2:] != (1, 1):  # (1, 1) is a mean: it saves no tensor
            saved.keep(t)
    elif cls not in (Mean, nn.ChannelShuffle):  # those keep nothing
        return None
    return saved.new(out, graph)
