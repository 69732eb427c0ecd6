"""Checks the builder runs on nncli's graph blocks and sequence layers, before torch sees them:
dimensions of the tensor operations (the batch may not move), a ``Parallel``'s merge (every
branch's shape shown on a mismatch), integer token inputs reaching a layer that wants floats,
and the argument words (``returns``, ``causal``) that only some layers take.

The merge check runs torch on tensors of the branch shapes on whatever device the build uses
(meta for inference), so it never cares whether tensors are meta or real.
"""

from __future__ import annotations

import torch

from nncli.spec import LayerSpec, ParallelSpec
from nncli.spec.source import Where

TENSOR_OPS = ("Permute", "Transpose", "Reshape", "Chunk", "Select", "Narrow", "Mean")
# Layers that take integer token ids.
TOKEN_LAYERS = ("Embedding", "EmbeddingBag")
# Layers that move or select token ids without computing with them: they may come before an
# Embedding. Every other layer (an activation, Dropout, a pooling, a sum) would compute with ids
# as if they were numbers, which no command can train, gradcheck or export.
ID_MOVERS = ("Permute", "Transpose", "Reshape", "Chunk", "Select", "Narrow", "Flatten", "Unflatten", "Identity")
# Layers that accept `causal`.
ATTENTION = ("SelfAttention", "TransformerEncoderLayer")
# torch.nn classes a spec cannot use and why; the message points to Custom.
OUT_OF_SCOPE = {
    "Transformer": "an encoder-decoder takes two inputs (source and target)",
    "TransformerDecoder": "a decoder takes two inputs (target and the encoder's memory)",
    "TransformerDecoderLayer": "a decoder layer takes two inputs (target and the encoder's memory)",
    "MultiheadAttention": "it takes query, key and value and returns a pair",
    "Bilinear": "it takes two inputs",
}


def shape_str(shape: tuple) -> str:
    return "[" + ", ".join(["N", *map(str, shape)]) + "]"


def _dims(kwargs: dict) -> list[tuple[str, int]]:
    out = []
    for key in ("dim", "dim0", "dim1"):
        value = kwargs.get(key)
        if isinstance(value, (list, tuple)):
            out += [(key, v) for v in value]
        elif value is not None:
            out.append((key, value))
    return out


# Layers that read [N, L, D]; given [N, D] torch would take it as ONE unbatched sequence of
# length N and mix the examples of a batch, with every shape still right.
SEQUENCE_LAYERS = ("SelfAttention", "TransformerEncoderLayer", "RNN", "LSTM", "GRU", "ClassToken")


def check_op_dims(spec: LayerSpec, type_name: str, kwargs: dict, shape: tuple) -> None:
    """The batch (dim 0) never moves or disappears; every dim is in range of the incoming shape."""
    ndim = len(shape) + 1
    if type_name in SEQUENCE_LAYERS and len(shape) != 2:
        raise spec.where.error(
            f"{type_name} takes sequences [N, L, D], but its input is {shape_str(shape)}",
            hint="Reshape or Unflatten to [L, D] per example first (a vector is a sequence of one: "
            "Unflatten: {dim: 1, unflattened_size: [1, D]})"
            if len(shape) == 1
            else "Flatten the extra dims first, e.g. an image [C, H, W] -> Flatten: {start_dim: 2} "
            "then Transpose: {dim0: 1, dim1: 2}",
        )
    if type_name == "Permute":
        dims = kwargs.get("dims")
        where = spec.arg_where.get("dims", spec.where)
        if not isinstance(dims, (list, tuple)) or any(isinstance(d, bool) or not isinstance(d, int) for d in dims):
            raise where.error(f"Permute: expected `dims` to be a list of integers, found {dims!r}")
        norm = [d % ndim if -ndim <= d < ndim else None for d in dims]
        if len(dims) != ndim or None in norm or sorted(norm) != list(range(ndim)):
            raise where.error(
                f"Permute: expected `dims` to order all {ndim} dims of the incoming "
                f"{shape_str(shape)} (e.g. {[0, *range(ndim - 1, 0, -1)]}), found {list(dims)}"
            )
        if norm[0] != 0:
            raise where.error(
                f"Permute: dims {list(dims)} move dim 0, the batch; it may not move",
                hint=f"start dims with 0: e.g. {[0, *range(ndim - 1, 0, -1)]}",
            )
        return
    if type_name not in TENSOR_OPS:
        return
    for key, value in _dims(kwargs):
        where = spec.arg_where.get(key, spec.where)
        if isinstance(value, bool) or not isinstance(value, int):
            raise where.error(f"{type_name}: expected `{key}` to be an integer, found {value!r}")
        if not -ndim <= value < ndim:
            raise where.error(
                f"{type_name}: {key}={value} is out of range for the incoming "
                f"{shape_str(shape)} ({ndim} dims): expected {-ndim} to {ndim - 1}"
            )
        if value % ndim == 0:
            raise where.error(
                f"{type_name}: {key}={value} is dim 0, the batch; {type_name} may not act on it",
                hint="dims count on the batched tensor: 1 is the first dim of an example",
            )


def check_returns(spec: LayerSpec, type_name: str, kwargs: dict) -> None:
    """``returns`` is sequence or last; ``causal`` only on attention layers."""
    if "returns" in kwargs and kwargs["returns"] not in ("sequence", "last"):
        raise spec.arg_where.get("returns", spec.where).error(
            f"{type_name}: expected `returns` to be sequence or last, found {kwargs['returns']!r}",
            hint="sequence: the output [N, L, D*H]; last: the last layer's final hidden state [N, D*H]",
        )


def unknown_argument_hint(type_name: str, key: str) -> str | None:
    """A better hint than did-you-mean for reserved words used on the wrong layer."""
    if key == "causal":
        return f"`causal` masks attention; it applies to {' and '.join(ATTENTION)}, and {type_name} has no attention"
    if key == "returns":
        return "`returns` applies to the recurrent layers RNN, LSTM and GRU"
    if key == "vars":
        return "`vars` is taken by the blocks Residual, Repeat, Parallel and Block, or the top level"
    return None


def computes_on_ids(spec: LayerSpec, type_name: str, dtype: str) -> bool:
    """Whether a layer reading ``dtype`` would compute with token ids as numbers (a Custom layer's
    code decides for itself)."""
    return (
        dtype.startswith("int")
        and type_name not in TOKEN_LAYERS + ID_MOVERS
        and getattr(spec, "type", None) != "Custom"
    )


def check_id_merge(spec: LayerSpec, dtype: str, came_from: str) -> None:
    """Residual's sum and Parallel's add/mul/mean/max over token ids: a located error."""
    if not dtype.startswith("int"):
        return
    if isinstance(spec, ParallelSpec) and spec.merge != "concat":
        raise spec.where.error(
            f"Parallel merge {spec.merge} over {dtype} token ids from {came_from}: ids are labels, not numbers",
            hint="put an Embedding first (or merge with concat)",
        )
    if type(spec).__name__ == "ResidualSpec":
        raise spec.where.error(
            f"Residual adds {dtype} token ids from {came_from}: ids are labels, not numbers",
            hint="put an Embedding first: it turns token ids into vectors",
        )


def integer_input_error(spec: LayerSpec, type_name: str, dtype: str, came_from: str):
    """The error for token ids reaching a layer that computes with floats."""
    return spec.where.error(
        f"{type_name} expects float input, but {came_from} gives {dtype} tokens",
        hint="put an Embedding first: it turns token ids into vectors",
    )


def merge_shape(spec: ParallelSpec, shapes: list[tuple], dtypes: list[torch.dtype], device: torch.device) -> tuple:
    """The shape a Parallel's merge gives, or a located error showing every branch's shape."""
    from nncli.modules.blocks import merge

    ndim = len(shapes[0]) + 1
    if spec.merge == "concat":
        if len({len(s) for s in shapes}) > 1:
            raise _branch_error(spec, shapes, "concat needs branches with the same number of dims")
        if not -ndim <= spec.dim < ndim:
            raise _branch_error(
                spec, shapes, f"dim {spec.dim} is out of range for {ndim} dims (expected {-ndim} to {ndim - 1})"
            )
        if spec.dim % ndim == 0:
            raise _branch_error(
                spec, shapes, f"dim {spec.dim} is dim 0, the batch: branches may not be concatenated along it"
            )
    try:
        with torch.no_grad():
            out = merge(
                [torch.zeros((2, *s), dtype=d, device=device) for s, d in zip(shapes, dtypes)], spec.merge, spec.dim
            )
    except Exception:  # torch's cat/broadcast refusal: the branch shapes say it better
        need = (
            f"concat along dim {spec.dim} needs equal shapes except at dim {spec.dim}"
            if spec.merge == "concat"
            else f"{spec.merge} needs shapes that broadcast"
        )
        raise _branch_error(spec, shapes, need) from None
    if out.shape[0] != 2:
        raise _branch_error(spec, shapes, f"{spec.merge} would broadcast over the batch")
    return tuple(out.shape[1:])


def _branch_error(spec: ParallelSpec, shapes: list[tuple], need: str):
    listed = "; ".join(f"branch {i} gives {shape_str(s)}" for i, s in enumerate(shapes))
    where: Where = spec.where
    return where.error(
        f"Parallel ({spec.merge}): {listed}: {need}", hint="make every branch end in a shape the merge takes"
    )


def kwargs_str(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
