"""FLOPs and saved tensors of the sequence layers: SelfAttention, TransformerEncoderLayer and
the recurrent layers (RNN, LSTM, GRU), as torch 2.13 runs them on meta tensors with gradients on.

They follow the same contract as :mod:`nncli.flops.layers` (``leaf`` and ``layer_flops``):
what backward keeps, by storage, and the output tensor; None where no rule is exact. Each was
derived from torch's code path on meta tensors (``nn.MultiheadAttention``'s Python path with
SDPA in its math form; the C++ RNN cells, one step at a time) and is checked against the
autograd hooks in ``tests/cli/test_speed.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

from torch import nn

from nncli.modules import GRU, LSTM, RNN, SelfAttention, TransformerEncoderLayer

from .layers import leaf, linear_input
from .storage import Saved, Tensor

# gates per step of a recurrent cell (W_ih and W_hh have that many hidden-sized blocks)
_GATES = {LSTM: 4, GRU: 3, RNN: 1}
SEQUENCE = {SelfAttention, TransformerEncoderLayer, *_GATES}


def _attention_flops(batch: int, length: int, dim: int) -> int:
    # Q, K, V and output projections (4 E^2 multiply-adds a token), Q K^T and the weighted sum
    # of V (2 L E a token); a causal mask does not halve them (the full scores are computed)
    return 2 * batch * length * (4 * dim * dim + 2 * length * dim)


def sequence_flops(module: nn.Module, in_shape: tuple, batch: int) -> int | None:
    """Forward FLOPs of one sequence layer on ``batch`` examples of ``in_shape`` ([L, D])."""
    if len(in_shape) != 2:
        return None
    length, size = in_shape
    cls = type(module)
    if cls is SelfAttention:
        return _attention_flops(batch, length, size)
    if cls is TransformerEncoderLayer:
        ff = module.linear1.out_features  # the two feed-forward Linears, E -> F -> E
        return _attention_flops(batch, length, size) + 4 * batch * length * size * ff
    hidden, dirs, gates = module.hidden_size, 2 if module.bidirectional else 1, _GATES[cls]
    # each step of each layer and direction: x_t W_ih^T and h W_hh^T
    ins = [size] + [hidden * dirs] * (module.num_layers - 1)
    return sum(2 * batch * length * dirs * gates * hidden * (d + hidden) for d in ins)


def _attention(module: nn.MultiheadAttention, t: Tensor, saved: Saved) -> Tensor | None:
    """nn.MultiheadAttention's Python path (grad enabled), SDPA in its math form on meta tensors."""
    if len(t.shape) != 3:
        return None
    n, length, dim = t.shape
    # batch_first: the input is transposed to [L, N, E] for the packed input projection, which
    # keeps it, or the copy its matmul makes where folding [L, N] is no view (a contiguous input
    # with N and L > 1)
    saved.keep(linear_input(t.view((length, n, dim), (t.strides[1], t.strides[0], t.strides[2])), saved))
    saved.keep_new(t.shape)  # Q scaled
    saved.keep_new(t.shape)  # K^T scaled
    saved.keep_new((3, *t.shape))  # V: a view of the packed Q, K, V projection
    scores = (n, module.num_heads, length, length)
    # the softmax output; with dropout also its mask and the dropped weights
    for _ in range(3 if module.training and module.dropout > 0 else 1):
        saved.keep_new(scores)
    saved.keep_new(t.shape)  # the heads joined, the output projection's input
    out = saved.new((length, n, dim), True)  # the output projection, [L, N, E], transposed back
    return Tensor(out.storage, True, t.shape, (out.strides[1], out.strides[0], out.strides[2]))


def _sub(module: nn.Module, t: Tensor | None, saved: Saved, out_shape: tuple | None = None) -> Tensor | None:
    """A submodule of an encoder layer through :func:`nncli.flops.layers.leaf`."""
    if t is None:
        return None
    return leaf(SimpleNamespace(module=module, out_shape=out_shape or t.shape[1:]), t, saved)


def _add(a: Tensor | None, b: Tensor | None, saved: Saved) -> Tensor | None:
    """``a + b`` of one shape: keeps nothing, laid out as ``a`` when that is dense."""
    if a is None or b is None:
        return None
    return saved.like(a, grad=a.grad or b.grad) if a.dense else saved.new(a.shape, a.grad or b.grad)


def _encoder_layer(module: TransformerEncoderLayer, t: Tensor, saved: Saved) -> Tensor | None:
    """torch's TransformerEncoderLayer, slow path (training or gradients on): attention block
    and feed-forward block, each added to its input, LayerNorm before (norm_first) or after."""
    if module.activation_relu_or_gelu == 0 or not module.self_attn.batch_first:
        return None  # an activation module of the user's own: no rule

    def attention_block(x):
        return _sub(module.dropout1, _attention(module.self_attn, x, saved) if x is not None else None, saved)

    def feed_forward(x):
        h = _sub(module.linear1, x, saved, x.shape[1:-1] + (module.linear1.out_features,)) if x is not None else None
        if h is None:
            return None
        y = saved.like(h)
        saved.keep(y if module.activation_relu_or_gelu == 1 else h)  # relu keeps its output, gelu its input
        y = _sub(module.linear2, _sub(module.dropout, y, saved), saved, x.shape[1:])
        return _sub(module.dropout2, y, saved)

    if module.norm_first:
        x = _add(t, attention_block(_sub(module.norm1, t, saved)), saved)
        return _add(x, feed_forward(_sub(module.norm2, x, saved) if x is not None else None), saved)
    x = _sub(module.norm1, _add(t, attention_block(t), saved), saved)
    return _sub(module.norm2, _add(x, feed_forward(x), saved), saved)


def _recurrent(module: nn.Module, t: Tensor, saved: Saved) -> Tensor | None:
    """torch's C++ RNN/LSTM/GRU on meta tensors: one cell per step, no fused kernel.

    Per layer and direction the steps keep: the layer's input (each ``x_t`` is a view of it,
    for ``W_ih``), the initial ``h`` (and ``c``: views of one zeros tensor for all layers), each
    step's gates (written in place: one ``G H`` storage), and per step ``k`` hidden-sized tensors
    besides: LSTM ``tanh(c_t)``, then ``h_t`` and ``c_t`` for the next step; GRU two clones the
    in-place products keep and ``tanh``'s result, then ``h_t``; RNN ``h_t``, which ``tanh``
    keeps and the next step reuses.
    """
    if (
        len(t.shape) != 3
        or not module.batch_first
        or getattr(module, "proj_size", 0)
        or getattr(module, "nonlinearity", "tanh") not in ("tanh", "relu")
    ):
        return None
    n, length, _ = t.shape
    hidden, dirs = module.hidden_size, 2 if module.bidirectional else 1
    nh = n * hidden
    states = module.num_layers * dirs * nh  # h_0 (and c_0): one zeros tensor each
    saved.keep_new((states,))
    if type(module) is LSTM:
        saved.keep_new((states,))
    per_direction = {LSTM: 7 * length - 2, GRU: 7 * length - 1, RNN: length}[type(module)]
    layer_input = t
    for layer in range(module.num_layers):
        saved.keep(layer_input)
        for _ in range(dirs):
            saved.keep_new((per_direction * nh,))  # the steps' own tensors, as one block of bytes
        output = saved.new((length, n, hidden * dirs), True)  # the steps' outputs stacked
        if module.dropout and module.training and layer < module.num_layers - 1:
            saved.keep_new(output.shape)  # the dropout mask between layers
            output = saved.new(output.shape, True)
        layer_input = output
    if module.returns == "sequence":  # [L, N, H] transposed back to batch first
        return Tensor(
            layer_input.storage, True, (n, length, hidden * dirs), (layer_input.strides[1], layer_input.strides[0], 1)
        )
    if dirs == 2:
        return saved.new((n, 2 * hidden), True)  # the two final states concatenated
    final = saved.new((module.num_layers, n, hidden), True)  # the final states, stacked
    return final.view((n, hidden))  # the last layer's: a view of that storage


def sequence_leaf(module: nn.Module, t: Tensor, saved: Saved) -> Tensor | None:
    """What one sequence layer keeps for backward; its output, None without a rule."""
    if not all(p.requires_grad for p in module.parameters()):
        return None  # frozen: torch may take a fused eval-mode path
    cls = type(module)
    if cls is SelfAttention:
        return _attention(module, t, saved)
    if cls is TransformerEncoderLayer:
        return _encoder_layer(module, t, saved)
    return _recurrent(module, t, saved)
