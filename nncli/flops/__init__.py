"""Exact FLOP and training-memory formulas per layer, so ``nncli params`` needs no forward pass.

The reference is torch's own accounting, which :func:`nncli.params.measure_forward` gets by
running the model on meta tensors under ``FlopCounterMode`` and ``saved_tensors_hooks``. That
costs a per-op Python dispatch (slow for train-mode BatchNorm, which DenseNet-121 has 121 of)
and a large start-up (``FlopCounterMode`` and the meta kernels import ``torch._dynamo``). The formulas
give the same two figures from the shapes the builder already knows:

- **FLOPs**, as ``FlopCounterMode`` counts them: matrix products and convolutions only, 2 per
  multiply-add, biases not counted (:func:`nncli.flops.layers.layer_flops`). Composites add
  their children: a Residual its body and shortcut, a Parallel its branches (the merge is no
  matrix product), a Repeat and a Block their layers.
- **Saved activations**: the tensors autograd keeps for backward, in bytes, each storage once and
  parameters left out, exactly as the hooks count them (:func:`nncli.flops.layers.leaf`). The
  walk follows each intermediate tensor's storage and strides (:mod:`nncli.flops.storage`), so a
  view's storage counts once and a copy (a reshape that cannot be a view) counts on its own.

Covered: Linear, ConvNd/ConvTransposeNd, BatchNorm (train mode), LayerNorm, LayerNorm2d, GroupNorm,
LayerScale, the common elementwise activations (Hardsigmoid included), Softmax, 2-d
max/average/adaptive pooling, Dropout, Embedding,
SelfAttention and TransformerEncoderLayer (causal or not, dropout, norm first or after, relu
or gelu), nncli's RNN/LSTM/GRU (:mod:`nncli.flops.sequence`), nncli's tensor ops,
ClassToken, PositionEmbedding, StochasticDepth, Step, ChannelShuffle, layers frozen by a
``transfer:`` section, and the composites Residual, Repeat, Block and Parallel (every merge).
A leaf layer without an exact rule (a Custom layer, 1-d/3-d pooling, an Upsample,
an in-place activation, weights frozen with a gradient flowing through them, ...) is run alone
by torch's dispatch (:mod:`nncli.flops.dispatch`) and the rest of the model keeps its formulas;
only such a spec imports ``torch._dynamo``. ``tests/cli/test_speed.py`` checks the result against
the whole model's dispatch on every ready spec.
"""

from __future__ import annotations

import math

from nncli.build import Built, LayerInfo

from .dispatch import dispatch_layer
from .layers import layer_flops, leaf
from .sequence import SEQUENCE, sequence_flops, sequence_leaf
from .storage import Saved, Tensor

__all__ = ["formula_forward", "layer_flops"]


def _binary(a: Tensor, b: Tensor, shape: tuple, saved: Saved) -> Tensor | None:
    """The output of ``a + b`` (or ``*``, ``maximum``): laid out as ``a`` when ``a`` is dense and
    of the output's shape (TensorIterator follows its first operand), contiguous when both are."""
    grad = a.grad or b.grad
    if a.shape == shape and a.dense:
        return saved.like(a, grad=grad)
    if a.contiguous and b.contiguous:
        return saved.new(shape, grad)
    return None


def _merge(how: str, outs: list[Tensor], shape: tuple, saved: Saved) -> Tensor | None:
    """``nncli.modules.blocks.merge`` of the branch outputs."""
    if how == "concat":  # torch.cat keeps nothing; its output is contiguous unless all inputs
        if any(o.dense and not o.contiguous for o in outs):  # share a permuted layout
            return None
        return saved.new(shape, any(o.grad for o in outs))
    out = outs[0]
    for y in outs[1:]:
        if how == "mul":  # each factor is kept for the other's gradient
            if out.grad:
                saved.keep(y)
            if y.grad:
                saved.keep(out)
        elif how == "max" and (out.grad or y.grad):
            saved.keep(out)
            saved.keep(y)
        out = _binary(
            out,
            y,
            shape if out.shape == shape or y.shape == shape else tuple(max(p, q) for p, q in zip(out.shape, y.shape)),
            saved,
        )
        if out is None:
            return None
    if how == "mean":  # divided by the count: a new tensor, nothing kept
        out = saved.like(out) if out.dense else saved.new(out.shape, out.grad)
    return out if out.shape == shape else None


def _walk(
    infos: list[LayerInfo], t: Tensor, saved: Saved, flops: dict[str, int], dispatch: bool | list
) -> tuple[Tensor, int] | None:
    """Run the formulas over a sequence; returns (output tensor, FLOPs) or None."""
    total = 0
    for info in infos:
        shape = (saved.batch, *info.out_shape)
        kind = info.type if info.target is None else "Custom"  # a Custom class may be named "Block"
        if kind == "Residual" and info.children:
            body = _walk([c for c in info.children if c.role == "body"], t, saved, flops, dispatch)
            shortcut = [c for c in info.children if c.role == "shortcut"]
            skip = _walk(shortcut, t, saved, flops, dispatch) if shortcut else (t, 0)
            if body is None or skip is None:
                return None
            t, f = _binary(body[0], skip[0], shape, saved), body[1] + skip[1]  # the sum keeps nothing
        elif kind in ("Repeat", "Block") and info.children:
            r = _walk(info.children, t, saved, flops, dispatch)
            if r is None:
                return None
            t, f = r
        elif kind == "Parallel":
            outs, f = [], 0
            for k in range(len(info.module.branches)):
                r = _walk([c for c in info.children if c.role == f"branch {k}"], t, saved, flops, dispatch)
                if r is None:
                    return None
                outs.append(r[0])
                f += r[1]
            t = _merge(info.module.merge, outs, shape, saved)
        elif info.children:
            return None  # a composite without a rule
        else:
            module, out, f, mark = info.module, None, None, saved.mark()
            if info.target is None and type(module) in SEQUENCE:
                f = sequence_flops(module, info.in_shape, saved.batch)
                out = sequence_leaf(module, t, saved) if f is not None else None
            elif info.target is None:
                f = layer_flops(info, saved.batch)
                out = leaf(info, t, saved) if f is not None else None
            if out is None:
                saved.restore(mark)  # a rule that gave up half way (an encoder layer's) kept some
            if out is None and dispatch is not False:  # a Custom layer, or no rule: torch counts this one
                counted = dispatch_layer(info.module, t, saved)
                out, f = counted if counted is not None else (None, None)
                if counted is not None and isinstance(dispatch, list):
                    dispatch.append(info.fqn)
            t = out
        if t is None or t.shape != shape:
            return None
        flops[info.fqn] = f
        total += f
    return t, total


def formula_forward(
    built: Built,
    batch_size: int,
    itemsize: int,
    integer_input: bool = False,
    dispatch: bool = True,
    dispatched: list | None = None,
) -> tuple[dict[str, int], int] | None:
    """FLOPs per module and bytes saved for backward, by formula; None where that fails.

    Returns the same as :func:`nncli.params.measure_forward`: ``({fqn: flops}, activation_bytes)``
    with the whole model's FLOPs under ``""`` (modules with no counted op may be present as 0).
    ``integer_input``: the input is int64 token ids (8 bytes each whatever ``itemsize``).
    ``dispatch``: a leaf layer without a rule (a Custom layer) is run alone by torch's dispatch
    (:func:`nncli.flops.dispatch.dispatch_layer`, which imports ``torch._dynamo``); False makes
    it return None instead. None also when such a layer does not run alone, or a composite has
    no rule: the caller then counts the whole model by dispatch.
    ``dispatched``: a list that receives the name of every layer counted by dispatch (so the
    caller can say which method counted the model).
    """
    biggest = max((math.prod(s) for i in built.walk() for s in (i.in_shape, i.out_shape)), default=1)
    if batch_size * biggest >= 2**60:
        return None  # torch cannot allocate 2**63 bytes (8 per element at most): its own pass
        # raises and says so, or counts it
    saved = Saved(batch_size, itemsize)
    flops: dict[str, int] = {}
    x = saved.new((batch_size, *built.input_shape), False, 8 if integer_input else None)
    if integer_input:
        saved.integer.add(x.storage)
    out = _walk(built.layers, x, saved, flops, (dispatched if dispatched is not None else []) if dispatch else False)
    if out is None or saved.overflow:
        return None  # (an intermediate too large to index, attention's scores: torch says so)
    flops[""] = out[1]
    return flops, saved.total
