"""How the builder reads a layer's arguments: the constructor's signature, the sizes inferred
from the incoming shape (``in_features``, ``in_channels``, ``d_model``, ...), vars and
expressions evaluated, and each value checked (positive sizes, true/false flags, probabilities,
tuple lengths, dims in range), every failure located at the argument.

A mixin of the builder in :mod:`nncli.build` (it needs its ``scope``, ``spec`` and
``token_vocabulary``).
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any

from torch import nn

from nncli import modules as nm
from nncli.build import checks
from nncli.build.checks import shape_str
from nncli.errors import did_you_mean
from nncli.spec import CustomSpec, LayerSpec
from nncli.spec.source import Where

# Argument name -> how to read it off the incoming per-example shape (no batch dim).
_INFERRED: dict[str, Any] = {
    "in_features": lambda s: s[-1],  # Linear: the last dim
    "in_channels": lambda s: s[0],  # ConvNd / ConvTransposeNd: channels first
    "num_features": lambda s: s[0],  # BatchNormNd / InstanceNormNd
    "num_channels": lambda s: s[0],  # GroupNorm
    "normalized_shape": lambda s: s[-1],  # LayerNorm / RMSNorm: normalise the last dim
    "input_size": lambda s: s[-1],  # RNN / LSTM / GRU
    "embed_dim": lambda s: s[-1],  # SelfAttention, ClassToken
    "d_model": lambda s: s[-1],  # TransformerEncoderLayer
    "example_shape": lambda s: tuple(s),  # PositionEmbedding, LayerScale
}
# Arguments that are integers wherever they appear (besides _POSITIVE/_NON_NEGATIVE): an
# expression giving a fraction there is an error.
_INTEGER = {
    "dim",
    "dim0",
    "dim1",
    "dims",
    "index",
    "start",
    "length",
    "chunks",
    "shape",
    "nhead",
    "num_heads",
    "dim_feedforward",
    "proj_size",
    "padding_idx",
}

# Arguments that must be positive integers (or tuples of them) wherever a layer takes them.
_POSITIVE = {
    "in_features",
    "out_features",
    "in_channels",
    "out_channels",
    "num_features",
    "kernel_size",
    "stride",
    "dilation",
    "groups",
    "num_channels",
    "num_groups",
    "num_embeddings",
    "embedding_dim",
    "hidden_size",
    "num_layers",
    "upscale_factor",
    "downscale_factor",
    "max_length",
}
_NON_NEGATIVE = {"padding", "output_padding"}
# ... of which these are one number, never a per-dimension list.
_SCALAR = _POSITIVE - {"kernel_size", "stride", "dilation"}


class ArgResolver:
    """Mixin: ``resolve_args`` and ``check_dims`` for the builder."""

    def resolve_args(self, spec: LayerSpec, cls: type, shape: tuple, prev_label: str | None, dtype: str = "float32"):
        params = signature(cls)
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        names = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        kwargs: dict[str, Any] = {}
        for key, value in spec.args.items():
            where = spec.arg_where.get(key, spec.where)
            if key not in params and not accepts_any:
                hint = (
                    checks.unknown_argument_hint(cls.__name__, key)
                    or did_you_mean(key, names)
                    or ("it takes: " + ", ".join(names) if names else "it takes no arguments")
                )
                raise where.error(f"{cls.__name__} has no argument {key!r}", hint=hint)
            default = params[key].default if key in params else inspect.Parameter.empty
            if isinstance(spec, CustomSpec):  # its types are unknown: words stay words
                value = self.scope.loose_argument(key, value, where, shape, cls.__name__)
            else:
                value = self.scope.argument(
                    key,
                    value,
                    where,
                    shape,
                    cls.__name__,
                    integer=key in _POSITIVE
                    or key in _NON_NEGATIVE
                    or key in _INTEGER
                    or (isinstance(default, int) and not isinstance(default, bool)),
                    keep_strings=(isinstance(default, str) and key != "padding")
                    or (key == "padding" and value in ("same", "valid")),
                )
            kwargs[key] = _check_value(key, value, where, cls.__name__, default)
        checks.check_returns(spec, cls.__name__, kwargs)
        if cls.__name__ in checks.TOKEN_LAYERS:
            self.token_vocabulary(spec, cls.__name__, kwargs, dtype, prev_label)
        inferred = _batch_first(spec, cls, params, kwargs)
        self.infer_sizes(spec, cls, params, kwargs, shape, prev_label, inferred)
        missing = [
            n
            for n, p in params.items()
            if p.default is inspect.Parameter.empty
            and n not in kwargs
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if missing:
            raise spec.where.error(
                f"{cls.__name__} needs {', '.join(f'`{m}`' for m in missing)}, found no value",
                hint=f"e.g. `- {spec.type}: {{{missing[0]}: ...}}`",
            )
        if not isinstance(spec, CustomSpec):  # a Custom layer's `dim` means what its class says
            self.check_dims(spec, cls, kwargs, shape)
        checks.check_op_dims(spec, cls.__name__, kwargs, shape)
        return kwargs, tuple(inferred)

    def infer_sizes(
        self,
        spec: LayerSpec,
        cls: type,
        params: dict,
        kwargs: dict,
        shape: tuple,
        prev_label: str | None,
        inferred: list,
    ) -> None:
        """The sizes read from the incoming shape (in_features, num_features, ...): filled in
        where left out (named in ``inferred``), checked where given."""
        came_from = prev_label or "the input"
        for key, read in _INFERRED.items():
            if key not in params:
                continue
            try:
                size = read(shape)
            except IndexError:
                raise spec.where.error(
                    f"{cls.__name__} needs an input with a {key.replace('_', ' ')} "
                    f"dimension, but {came_from} gives {shape_str(shape)}"
                ) from None
            if key in kwargs:
                given = kwargs[key]
                if key == "normalized_shape":  # may name several trailing dims
                    want = tuple(given) if isinstance(given, (tuple, list)) else (given,)
                    ok = tuple(shape[len(shape) - len(want) :]) == want
                else:
                    ok = given == size
                if not ok:
                    where = spec.arg_where.get(key, spec.where)
                    raise where.error(
                        f"{cls.__name__}: {key}={given}, but {came_from} gives {shape_str(shape)} ({key} {size})",
                        hint=f"leave {key} out: nncli infers it from the incoming shape",
                    )
            elif params[key].default is inspect.Parameter.empty or key == "normalized_shape":
                kwargs[key] = size
                inferred.append(key)

    def check_dims(self, spec: LayerSpec, cls: type, kwargs: dict, shape: tuple) -> None:
        """Checks torch's meta kernels skip: tuple lengths of an Nd layer, `dim` in range."""
        nd = re.search(r"([123])d$", cls.__name__)
        if nd and cls.__name__.startswith(
            ("Conv", "MaxPool", "AvgPool", "LPPool", "AdaptiveMaxPool", "AdaptiveAvgPool")
        ):
            n = int(nd.group(1))
            for key in ("kernel_size", "stride", "padding", "dilation", "output_padding", "output_size"):
                value = kwargs.get(key)
                if isinstance(value, tuple) and len(value) != n:
                    raise spec.arg_where.get(key, spec.where).error(
                        f"{cls.__name__}: expected `{key}` to be one integer or a list of {n}, found "
                        f"{list(value)} ({len(value)} values)"
                    )
        ndim = len(shape) + 1  # the batch dimension counts for torch's `dim`
        for key in ("dim", "start_dim", "end_dim"):
            value = kwargs.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and not -ndim <= value < ndim:
                raise spec.arg_where.get(key, spec.where).error(
                    f"{cls.__name__}: {key}={value} is out of range for the incoming "
                    f"{shape_str(shape)} ({ndim} dims): expected {-ndim} to {ndim - 1}"
                )


@functools.cache  # inspect.signature is slow and a deep spec asks per layer
def signature(cls: type) -> dict[str, inspect.Parameter]:
    """A class's constructor arguments (shared and cached: callers must not change the dict)."""
    if cls.__init__ is nn.Module.__init__:
        return {}  # no __init__ of its own (Step, many Custom layers): takes no arguments
    if cls in (nm.RNN, nm.LSTM, nm.GRU, nm.TransformerEncoderLayer):
        # nncli's subclasses add one keyword (returns / causal) to torch's own signature
        key, default = ("causal", False) if cls is nm.TransformerEncoderLayer else ("returns", "sequence")
        params = dict(signature(cls.__mro__[1] if cls is nm.TransformerEncoderLayer else cls.__mro__[2]))
        params[key] = inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default)
        return params
    if cls.__init__ in (nn.RNN.__init__, nn.LSTM.__init__, nn.GRU.__init__):
        # torch's RNN/LSTM/GRU take (*args, **kwargs) and pass them to RNNBase(mode, ...): use
        # that signature, so input_size is inferred and a misspelt argument gets a did-you-mean.
        params = dict(inspect.signature(nn.RNNBase.__init__).parameters)
        params.pop("mode")
        if cls.__init__ is nn.RNN.__init__:
            params["nonlinearity"] = inspect.Parameter("nonlinearity", inspect.Parameter.KEYWORD_ONLY, default="tanh")
    else:
        params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    for framework in ("device", "dtype"):  # placement is nncli's job, not the spec's
        params.pop(framework, None)
    return params


def _check_value(key: str, value: Any, where: Where, type_name: str, default: Any = inspect.Parameter.empty) -> Any:
    if value is None and default is None:
        return value  # the signature's own "not given" (MaxPool2d's stride)
    if isinstance(default, bool) and not isinstance(value, bool):
        # torch would take any truthy value: `bias: nope` must not mean bias=True
        raise where.error(f"{type_name}: expected `{key}` to be true or false, found {value!r}")
    if isinstance(value, list):
        value = tuple(value)
    items = value if isinstance(value, tuple) else (value,)
    if key in _POSITIVE or key in _NON_NEGATIVE:
        low = 1 if key in _POSITIVE else 0
        bad = [v for v in items if isinstance(v, bool) or not isinstance(v, int) or not low <= v < 2**63]
        if key == "padding" and isinstance(value, str):
            bad = [] if value in ("same", "valid") else [value]
        if isinstance(value, tuple) and key in _SCALAR:
            bad = [value]
        if bad or not items:
            need = "a positive integer" if low else "an integer >= 0"
            need += "" if key in _SCALAR else " (or a list of them)"
            raise where.error(f"{type_name}: expected `{key}` to be {need}, found {value!r}")
    if key == "p" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
        raise where.error(f"{type_name}: expected `p` to be a probability in [0, 1], found {value!r}")
    return value


def _batch_first(spec: LayerSpec, cls: type, params: dict, kwargs: dict) -> list:
    """``batch_first`` set true where the layer takes it; returns the inferred names so far.

    A spec's tensors are [N, ...]: with torch's default batch_first=False a
    TransformerEncoderLayer (or RNN) would read the batch as the sequence and mix examples, with
    every shape still right.
    """
    if "batch_first" not in params:
        return []
    if kwargs.get("batch_first", True) is not True:
        raise spec.arg_where.get("batch_first", spec.where).error(
            f"{cls.__name__}: batch_first=false would read dim 0 of [N, ...] as the sequence, "
            "mixing the examples of a batch",
            hint="leave batch_first out (nncli sets it true)",
        )
    if "batch_first" in kwargs:
        return []
    kwargs["batch_first"] = True
    return ["batch_first"]
