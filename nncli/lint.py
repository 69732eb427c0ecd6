"""``nncli check``: validate a spec and look for the lecture's classic architecture mistakes.

The rules read the built (meta) network, so every layer's real type and shape are known:

- ``linear-collapse``: weight layers (Linear, Conv) composed with only affine layers between
  them (BatchNorm, average pooling, Flatten, Dropout) are one affine map: "Oops, this is just a
  linear predictor". The finding gives the parameter count of the one equivalent layer.
- ``softmax-before-loss``: Softmax/LogSoftmax (or Sigmoid) as the last layer while the loss
  (cross_entropy / bce_with_logits) already takes logits.
- ``vanishing-risk``: 8 or more sigmoid/tanh layers with no normalisation or skip connections.
- ``bias-before-norm``: a bias right before BatchNorm, which subtracts the mean and cancels it.
- ``dropout-before-norm``: Dropout right before BatchNorm (train/eval variance shift).
- ``step-no-gradient``: a Step unit in a network meant for training: its gradient is zero.
- ``layernorm-over-width``: a plain LayerNorm on a channels-first image ``[N, C, H, W]``
  normalises its last dimension, the width, not the channels.
- ``attends-both-ways`` (info): token inputs and attention, but no attention layer sets
  ``causal``: every position sees the whole sequence, so a next-token model would read its answer.
  Only the layers an output reads through the data count: an encoder read as a decoder's
  ``memory`` attends both ways by design.

The chains (``linear-collapse``, the norm rules) follow the data: an element that reads a named
tensor (``from``, ``Merge``) starts a new chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nncli.build import Built, LayerInfo, collector_paused, infer
from nncli.layer_kinds import AFFINE_PASS, BATCH_NORMS, DROPOUTS, NORMS, SATURATING, WEIGHT_LAYERS
from nncli.spec import MergeSpec, Spec

DEEP_SATURATING = 8  # the issue's threshold: sigmoid'(z) <= 1/4 makes 8 layers attenuate by >= 4^8


@dataclass
class Finding:
    """One lint finding. ``severity`` is error, warning or info."""

    severity: str
    code: str
    message: str
    spec_path: str | None = None
    file: str | None = None
    line: int | None = None
    hint: str | None = None

    @property
    def location(self) -> str:
        parts = [p for p in (self.file, self.line) if p is not None]
        loc = ":".join(map(str, parts))
        return " ".join(p for p in (loc, self.spec_path) if p)

    def to_json(self) -> dict:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "spec_path": self.spec_path,
            "file": self.file,
            "line": self.line,
            "hint": self.hint,
        }


@dataclass
class LayerRow:
    index: int  # position among the top-level layers
    name: str
    type: str
    output_shape: tuple
    params: int
    shape_method: str = ""  # how the builder learnt output_shape (nncli.build.inference); "" for a block

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "type": self.type,
            "output_shape": list(self.output_shape),
            "params": self.params,
            "shape_method": self.shape_method,
        }


@dataclass
class CheckResult:
    """What ``nncli check`` found: the layer table and the findings."""

    name: str
    file: str | None
    input_shape: tuple
    output_shape: tuple
    total_params: int
    layers: list[LayerRow]
    findings: list[Finding] = field(default_factory=list)
    data: dict | None = None  # the data section loaded and checked: {"checked", "sizes"/"reason", ...}
    # A Graph spec's inputs and outputs, in order: {"name", "shape", "dtype"} each (empty for a chain)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {"error": 0, "warning": 0, "info": 0}
        for f in self.findings:
            out[f.severity] += 1
        return out

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "file": self.file,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "total_params": self.total_params,
            "layers": [r.to_json() for r in self.layers],
            "findings": [f.to_json() for f in self.findings],
            "counts": self.counts(),
            "data": self.data,
            **({"inputs": self.inputs, "outputs": self.outputs} if self.inputs else {}),
        }


@collector_paused()
def check_spec(spec: Spec) -> CheckResult:
    """Build ``spec`` on the meta device and lint it.

    Raises:
        SpecError: if the spec does not build (located, exit 2).
    """
    built = infer(spec)
    rows = [
        LayerRow(info.index, info.name, info.type, info.out_shape, info.params, info.shape_method)
        for info in built.layers
    ]
    total = sum(p.numel() for p in {id(p): p for p in built.model.parameters()}.values())
    result = CheckResult(
        spec.name, str(spec.path) if spec.path else None, built.input_shape, built.output_shape, total, rows
    )
    result.inputs = [{"name": n, "shape": list(s), "dtype": d} for n, s, d, _ in built.inputs]
    result.outputs = [{"name": n, "shape": list(s), "dtype": d} for n, s, d in built.outputs]
    result.findings = lint(built)
    return result


def lint(built: Built) -> list[Finding]:
    """All findings for a built network, in layer order per rule."""
    out: list[Finding] = []
    for stream in _streams(built.layers):
        out += _linear_collapse(stream)
        out += _before_norm(stream)
    out += _softmax_before_loss(built)
    out += _softmax_over_batch(built)
    out += _vanishing_risk(built)
    out += _step_units(built)
    out += _attends_both_ways(built)
    out += _layer_norm_over_width(built)
    # The copies of a Repeat share their spec lines: one finding per place in the file, not
    # the same warning once per copy (a 20-block Repeat gave 20 identical lines).
    unique: dict[tuple, Finding] = {}
    for f in out:
        unique.setdefault((f.code, f.spec_path, f.message), f)
    return list(unique.values())


# -- streams: the layers data flows through in order, a Residual body being its own stream --------
def _streams(layers: list[LayerInfo]) -> list[list[LayerInfo]]:
    streams: list[list[LayerInfo]] = []
    current: list[LayerInfo] = []

    def feed(items):
        nonlocal current
        for info in items:
            if info.spec.source is not None or isinstance(info.spec, MergeSpec):
                streams.append(current)  # it reads a named tensor, not the layer before it
                current = []
            if info.type in ("Repeat", "Block"):
                feed(info.children)  # copies / a group's layers run in sequence
            elif info.type == "Parallel":
                streams.append(current)
                # A merge point like a Residual's sum; each branch is its own stream.
                for branch in range(info.args.get("branches", 0)):
                    layers = [c for c in info.children if c.role == f"branch {branch}"]
                    if layers:
                        streams.extend(_streams(layers))
                current = []
            elif info.type == "Residual":
                streams.append(current)
                # A Residual's sum is a merge point; each branch is analysed on its own.
                for role in ("body", "shortcut"):
                    branch = [c for c in info.children if c.role == role]
                    if branch:
                        streams.extend(_streams(branch))
                current = []
            else:
                current.append(info)

    feed(layers)
    streams.append(current)
    return [s for s in streams if s]


def _finding(severity: str, code: str, message: str, info: LayerInfo, hint: str | None = None) -> Finding:
    w = info.spec.where
    return Finding(severity, code, message, w.spec_path, w.file, w.line, hint)


def _linear_collapse(stream: list[LayerInfo]) -> list[Finding]:
    findings = []
    chain: list[LayerInfo] = []

    def close():
        weights = [c for c in chain if c.type in WEIGHT_LAYERS]
        if len(weights) >= 2:
            # Trim pass-through layers after the last weight layer: they are not part of the collapse.
            last = chain.index(weights[-1])
            span = chain[: last + 1]
            findings.append(_collapse_finding(span, weights))
        chain.clear()

    for info in stream:
        if getattr(info.spec, "source", None) or getattr(info, "reads", ()):
            close()  # it reads a named tensor, not the layer before it: no composition
        if info.type in WEIGHT_LAYERS:
            chain.append(info)
        elif info.type in AFFINE_PASS:
            if chain:
                chain.append(info)
        else:
            close()
    close()
    return findings


def _collapse_finding(span: list[LayerInfo], weights: list[LayerInfo]) -> Finding:
    first = span[0]
    names = " -> ".join(_label(c) for c in span)
    own = sum(c.params for c in span)
    equiv, what = _equivalent(span)
    if own < equiv:
        # Cheaper than the one layer it composes to: a deliberate factorisation (a depthwise-
        # separable convolution, MobileNetV2's linear bottleneck, a low-rank Linear pair).
        message = (
            f"{names}: no nonlinearity between these {len(weights)} weight layers, so they compose "
            f"to one affine map ({what}, {equiv:,} parameters), factored here into {own:,} "
            "parameters: a restricted linear map, fine when deliberate"
        )
        return _finding(
            "info",
            "linear-factorisation",
            message,
            first,
            hint=f"if it is not deliberate, put a nonlinearity after {first.path} {first.type}",
        )
    message = (
        f"{names}: no nonlinearity between these {len(weights)} weight layers, so they compose to "
        f'one affine map ("Oops, this is just a linear predictor"): {what} with {equiv:,} '
        f"parameters can express every function these {own:,} parameters can"
    )
    return _finding(
        "warning",
        "linear-collapse",
        message,
        first,
        hint=f"put a nonlinearity (e.g. ReLU) after {first.path} {first.type}, or merge the layers",
    )


def _label(info: LayerInfo) -> str:
    # Copies of a Repeat share a spec path: say which copy, or a chain reads "a -> a -> a".
    copy = f" ({info.role})" if info.role and info.role.startswith("copy") else ""
    return f"{info.path} {info.type}{copy}"


def _equivalent(span: list[LayerInfo]) -> tuple[int, str]:
    first, last = span[0], span[-1]
    # Convolutions (with padding, BatchNorm, average pooling between) stay one convolution;
    # anything that flattens or adapts the spatial size makes the equivalent a dense layer.
    spatial = all(
        c.type.startswith(("Conv", "BatchNorm", "AvgPool", "Dropout", "ZeroPad", "ConstantPad", "Identity"))
        for c in span
    )
    if spatial and first.type.startswith("Conv") and len(first.in_shape) == len(last.out_shape) >= 2:
        # One convolution whose kernel is the chain's receptive field: r += (k - 1) * d * jump.
        ndim = len(first.in_shape) - 1
        field_, jump = [1] * ndim, [1] * ndim
        for c in span:
            k = _tuple(c.args.get("kernel_size", 1), ndim)
            d = _tuple(c.args.get("dilation", 1), ndim)
            s = _tuple(c.args.get("stride", c.args.get("kernel_size", 1) if "Pool" in c.type else 1), ndim)
            if c.type.startswith("Conv") or "Pool" in c.type:
                for i in range(ndim):
                    field_[i] += (k[i] - 1) * d[i] * jump[i]
                    jump[i] *= s[i]
        c_in, c_out = first.in_shape[0], last.out_shape[0]
        params = c_in * c_out * math.prod(field_) + c_out
        kernel = "x".join(map(str, field_))
        # Strides (and average pooling) multiply: the equivalent convolution steps by their product.
        stride = f", stride {'x'.join(map(str, jump))}" if any(j > 1 for j in jump) else ""
        return params, f"one {first.type} {c_in}->{c_out} with a {kernel} kernel{stride}"
    n_in, n_out = math.prod(first.in_shape), math.prod(last.out_shape)
    return n_in * n_out + n_out, f"one Linear {n_in}->{n_out}"


def _tuple(value, n: int) -> tuple:
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value,) * n


def _before_norm(stream: list[LayerInfo]) -> list[Finding]:
    findings = []
    for prev, nxt in zip(stream, stream[1:]):
        if nxt.type not in BATCH_NORMS:
            continue
        bias = getattr(prev.module, "bias", None)
        if prev.type in WEIGHT_LAYERS and bias is not None:
            findings.append(
                _finding(
                    "warning",
                    "bias-before-norm",
                    f"{prev.path} {prev.type} has a bias ({bias.numel():,} parameters) that {nxt.path} "
                    f"{nxt.type} cancels by subtracting the batch mean: wasted parameters",
                    prev,
                    hint=f"set `bias: false` on {prev.path} {prev.type}",
                )
            )
        if prev.type in DROPOUTS:
            findings.append(
                _finding(
                    "warning",
                    "dropout-before-norm",
                    f"{prev.path} {prev.type} right before {nxt.path} {nxt.type}: BatchNorm's running "
                    "variance is learned under dropout's train-time scaling and is wrong at eval time "
                    "(the variance shift of Li et al., 2019)",
                    prev,
                    hint="move Dropout after the BatchNorm and its activation",
                )
            )
    return findings


def _last_leaf(layers: list[LayerInfo]) -> LayerInfo | None:
    if not layers:
        return None
    last = layers[-1]
    if last.type in ("Repeat", "Block"):
        return _last_leaf(last.children)
    return last


def _loss(built: Built) -> tuple[str, bool]:
    """The training loss and whether the spec says it (its `train` section) or it is the default."""
    train = built.spec.train or {}
    loss = train.get("loss", "cross_entropy")
    return str(loss), bool(built.spec.train)


def _softmax_before_loss(built: Built) -> list[Finding]:
    last = _last_leaf(built.layers)
    if last is None:
        return []
    loss, explicit = _loss(built)
    if last.type == "Softmax" and loss == "cross_entropy":
        return [
            _finding(
                "error" if explicit else "warning",
                "softmax-before-loss",
                f"{last.path} Softmax is the last layer, but cross_entropy takes logits and applies "
                "log-softmax itself: the network is trained on softmax(softmax(z)), whose gradients "
                "are squashed",
                last,
                hint="remove the Softmax; apply it at prediction time if you need probabilities",
            )
        ]
    if last.type == "LogSoftmax" and loss == "cross_entropy":
        return [
            _finding(
                "info",
                "softmax-before-loss",
                f"{last.path} LogSoftmax is redundant before cross_entropy, which applies "
                "log-softmax itself (harmless: log-softmax is idempotent)",
                last,
                hint="remove it, or use loss: nll",
            )
        ]
    if last.type == "Sigmoid" and loss == "bce_with_logits":
        return [
            _finding(
                "error",
                "softmax-before-loss",
                f"{last.path} Sigmoid is the last layer, but bce_with_logits takes logits "
                "and applies the sigmoid itself",
                last,
                hint="remove the Sigmoid",
            )
        ]
    return []


SOFTMAXES = ("Softmax", "LogSoftmax", "Softmin")


def _softmax_over_batch(built: Built) -> list[Finding]:
    """A softmax whose ``dim`` is the batch dimension mixes the examples of a batch: each output
    then depends on the others, and on the batch size. torch's ``dim`` counts the batch (dim 0)."""
    out = []
    for info in built.walk():
        if info.type not in SOFTMAXES:
            continue
        dim = info.args.get("dim")
        if dim is None or dim not in (0, -(len(info.in_shape) + 1)):
            continue
        out.append(
            _finding(
                "error",
                "softmax-over-batch",
                f"{info.path} {info.type} dim {dim} is the batch dimension: it normalises across the "
                "examples of a batch, so each prediction depends on the others",
                info,
                hint=f"use dim: -1 (the last dimension of each example, here {list(info.in_shape)})",
            )
        )
    return out


def _vanishing_risk(built: Built) -> list[Finding]:
    leaves = [i for i in built.walk() if not i.children]
    saturating = [i for i in leaves if i.type in SATURATING]
    if len(saturating) < DEEP_SATURATING:
        return []
    if any(i.type in NORMS for i in leaves) or any(i.type in ("Residual", "Parallel") for i in built.walk()):
        return []
    if any(i.type == "Merge" and i.args.get("mode") == "add" for i in leaves):
        return []  # a Merge adding a named tensor back is a skip connection
    first = saturating[0]
    kinds = "/".join(sorted({i.type for i in saturating}))
    return [
        _finding(
            "warning",
            "vanishing-risk",
            f"{len(saturating)} {kinds} layers with no normalisation or skip connections: each multiplies "
            f"the backward signal by at most {('1/4' if kinds == 'Sigmoid' else '1')} times a weight "
            "matrix, so gradients reaching the first layers can vanish (run `nncli probe` to measure it)",
            first,
            hint="use ReLU with He init, add BatchNorm/LayerNorm, or add skip connections (Residual)",
        )
    ]


def _step_units(built: Built) -> list[Finding]:
    steps = [i for i in built.walk() if i.type == "Step"]
    if not steps or not built.spec.train:
        return []
    return [
        _finding(
            "warning",
            "step-no-gradient",
            f"{steps[0].path} Step has zero gradient everywhere: no layer before it can be trained by gradient descent",
            steps[0],
            hint="use Sigmoid or ReLU to train; keep Step for hand-set weights",
        )
    ]


ATTENTION = ("SelfAttention", "TransformerEncoderLayer")
CAUSAL = ATTENTION + ("TransformerDecoderLayer",)  # the layers whose `causal` masks the future


def _feeding_outputs(built: Built) -> set[int]:
    """The top-level elements an output reads through the data (the previous output, `from`, a
    Merge's operands), not through a `memory`: every element when the spec names no tensors."""
    top = built.layers
    if not built.spec.graph:
        return {info.index for info in top}
    producer = {}
    for info in top:
        for name in (info.spec.name, *getattr(info.spec, "accumulate", ())):
            if name:
                producer[name] = info.index
    outputs = list(built.spec.outputs) or [None]
    todo = [producer.get(name, top[-1].index) if name else top[-1].index for name in outputs]
    seen: set[int] = set()
    while todo:
        index = todo.pop()
        if index in seen:
            continue
        seen.add(index)
        spec = top[index].spec
        reads = _data_reads(spec)
        todo += [producer[name] for name in reads if name in producer]
        if spec.source is None and not isinstance(spec, MergeSpec) and index > 0:
            todo.append(index - 1)  # it reads the previous element's output
    return seen


def _data_reads(spec) -> list[str]:
    """The names an element and everything inside it read as data (`from`, Merge), not `memory`."""
    reads = list(getattr(spec, "sources", ()))
    if spec.source:
        reads.append(spec.source)
    children = [*getattr(spec, "body", ()), *getattr(spec, "shortcut", ()), *getattr(spec, "layers", ())]
    for branch in getattr(spec, "branches", ()):
        children += branch
    for child in children:
        reads += _data_reads(child)
    return reads


def _attends_both_ways(built: Built) -> list[Finding]:
    if not built.spec.integer_input:
        return []
    # An encoder whose output a decoder reads only as its `memory` is meant to attend both ways:
    # only the layers on the way to an output through the data itself are asked about.
    kept = _feeding_outputs(built)
    layers = [i for top in built.layers if top.index in kept for i in top.walk()]
    attention = [i for i in layers if i.type in ATTENTION]
    if not attention or any(getattr(i.module, "causal", False) for i in layers if i.type in CAUSAL):
        return []
    first = attention[0]
    return [
        _finding(
            "info",
            "attends-both-ways",
            f"token inputs and {len(attention)} attention layer(s), none with `causal: true`: "
            f"{first.path} {first.type} attends both ways, every position seeing the whole sequence "
            "(right for a classifier or an encoder; a next-token model would read the token it predicts)",
            first,
            hint=f"for a GPT-style model set `causal: true` on {first.path} {first.type}",
        )
    ]


# Layers whose output is a channels-first map [C, H, W] when it is 3-D per example; layout
# operations (Permute, Transpose, Reshape, ...) or anything else may have put the channels last.
_CHANNELS_FIRST = (
    "Conv",
    "MaxPool",
    "AvgPool",
    "AdaptiveMaxPool",
    "AdaptiveAvgPool",
    "LPPool",
    "FractionalMaxPool",
    "BatchNorm",
    "InstanceNorm",
    "GroupNorm",
    "LayerNorm2d",
    "Upsample",
    "PixelShuffle",
    "PixelUnshuffle",
    "ChannelShuffle",
    "ZeroPad",
    "ConstantPad",
    "ReflectionPad",
    "ReplicationPad",
    "CircularPad",
)


def _layer_norm_over_width(built: Built) -> list[Finding]:
    """A LayerNorm over the last dim of a 4-D tensor that came from convolutions (or an image
    input): torch normalises the width, silently; ConvNeXt permutes channels last first."""
    leaves = [i for i in built.walk() if not i.children and i.module is not None]
    out = []
    for n, info in enumerate(leaves):
        shape = getattr(info.module, "normalized_shape", ())
        if info.type != "LayerNorm" or len(info.in_shape) != 3 or len(shape) != 1:
            continue
        source = next(
            (p for p in reversed(leaves[:n]) if p.type.startswith(_CHANNELS_FIRST) or p.in_shape != p.out_shape), None
        )
        if source is not None and not source.type.startswith(_CHANNELS_FIRST):
            continue  # a Permute, Reshape or Custom layer decides the layout: trust it
        c, h, w = info.in_shape
        after = f"{source.path} {source.type}" if source is not None else "the input"
        out.append(
            _finding(
                "warning",
                "layernorm-over-width",
                f"{info.path} LayerNorm normalises the last dimension of {list(info.in_shape)}: after {after} "
                f"that is the width ({w}), not the {c} channels",
                info,
                hint="use LayerNorm2d to normalise the channels of [N, C, H, W], or Permute to channels-last "
                "first (Permute [0, 2, 3, 1], LayerNorm, Permute [0, 3, 1, 2])",
            )
        )
    return out
