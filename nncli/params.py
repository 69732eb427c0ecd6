"""``nncli params``: parameters, buffers, FLOPs and training memory, per layer, on meta tensors.

Nothing real is allocated: the network is built on the meta device (:func:`nncli.build.infer`),
FLOPs come from torch's own ``FlopCounterMode`` (which dispatches on shapes alone, so it works on
meta tensors and counts functional ops inside Custom layers too; a multiply-add is 2 FLOPs), and
the activations kept for backward are the tensors autograd actually saves, caught with
``saved_tensors_hooks`` and de-duplicated by storage. In practice the same two figures come
from exact per-layer formulas (:mod:`nncli.flops`: Linear, Conv, norms, pooling, activations,
attention, recurrent layers, Embedding, nncli's tensor ops and tokens, frozen layers, Residual,
Repeat, Parallel, Block), without a forward pass; they agree exactly. A layer no formula covers
(a Custom layer above all) is run alone by that dispatch, the rest still by formula; only then
is ``torch._dynamo`` imported (``FlopCounterMode`` does). The whole model's dispatch
(:func:`measure_forward`) is left for what the formulas decline (a tensor too large to index,
a layer that cannot run alone).

Attention: on meta tensors ``scaled_dot_product_attention`` runs its math form, so its two
matrix products (``Q K^T`` and the weighted sum of ``V``, 2 * 2 * N * H * L * L * d FLOPs) are
counted as ``bmm``; the fused CPU kernel that real tensors take is not in torch's table, so
:func:`attention_flop_mapping` adds it with torch's own formula. A causal mask does not halve the count
(the kernels compute the full score matrix). The math form saves the ``[N, H, L, L]`` attention
weights for backward; the fused kernels real tensors take save less (a log-sum-exp per row), so
the activation memory of an attention layer is an upper bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from nncli.build import LayerInfo, collector_paused, infer
from nncli.errors import InputError
from nncli.flops import formula_forward
from nncli.flops.dispatch import attention_flop_mapping
from nncli.spec import Spec

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Optimizer state per trainable parameter, in parameter-sized tensors.
OPTIMIZER_STATE = {"sgd": 1, "adam": 2, "adamw": 2, "none": 0}  # sgd: the momentum buffer

_SI = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9, "T": 1e12}
_BYTES = {
    "": 1,
    "B": 1,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "TB": 1e12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_quantity(text: str, flag: str, *, memory: bool = False) -> float:
    """'25M' -> 25e6, '1.5e9' -> 1.5e9, '2GiB' -> 2**31 (memory). Raises InputError (exit 2)."""
    raw = str(text).strip().replace("_", "").replace(",", "")
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)", raw)
    units = _BYTES if memory else _SI
    unit = m.group(2) if m else None
    key = unit.upper() if (m and memory) else unit
    if not m or key not in units:
        example = "2GiB, 500MB or 1e9" if memory else "25M, 4G or 1.5e9"
        raise InputError(f"expected a number like {example}, found {text!r}", param=flag)
    return float(m.group(1)) * units[key]


@dataclass
class Budget:
    """CI gates: limits on parameters, forward FLOPs and training memory (None = no gate)."""

    max_params: float | None = None
    max_flops: float | None = None
    max_memory: float | None = None

    @classmethod
    def parse(
        cls, max_params: str | None = None, max_flops: str | None = None, max_memory: str | None = None
    ) -> Budget:
        return cls(
            parse_quantity(max_params, "max_params") if max_params is not None else None,
            parse_quantity(max_flops, "max_flops") if max_flops is not None else None,
            parse_quantity(max_memory, "max_memory", memory=True) if max_memory is not None else None,
        )


@dataclass
class Gate:
    name: str
    limit: float
    value: float
    ok: bool
    message: str

    def to_json(self) -> dict:
        return {"name": self.name, "limit": self.limit, "value": self.value, "ok": self.ok, "message": self.message}


@dataclass
class Memory:
    """Estimated memory of one training step, in bytes."""

    batch_size: int
    dtype: str
    optimizer: str
    weights: int
    buffers: int
    activations: int  # tensors autograd saves for backward, for this batch size
    gradients: int
    optimizer_state: int

    @property
    def total(self) -> int:
        return self.weights + self.buffers + self.activations + self.gradients + self.optimizer_state

    def to_json(self) -> dict:
        return {
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "optimizer": self.optimizer,
            "weights": self.weights,
            "buffers": self.buffers,
            "activations": self.activations,
            "gradients": self.gradients,
            "optimizer_state": self.optimizer_state,
            "total": self.total,
        }


@dataclass
class ParamRow:
    """One row of the table: a top-level layer (depth 0) or a nested one."""

    index: int  # the top-level layer this row belongs to
    index_label: str  # the module's name in the model: "3", "3.body.0", "4.1.0"
    depth: int
    name: str
    type: str
    output_shape: tuple
    params: int
    trainable: int
    buffers: int
    flops: int  # forward FLOPs for the report's batch size
    shape_method: str = ""  # how the builder learnt output_shape (nncli.build.inference); "" for a block

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "id": self.index_label,
            "depth": self.depth,
            "name": self.name,
            "type": self.type,
            "output_shape": list(self.output_shape),
            "params": self.params,
            "trainable": self.trainable,
            "frozen": self.frozen,
            "buffers": self.buffers,
            "flops": self.flops,
            "shape_method": self.shape_method,
        }

    @property
    def frozen(self) -> int:
        """Parameters that do not train: the layers a ``transfer:`` section freezes."""
        return self.params - self.trainable


@dataclass
class ParamsReport:
    """Everything ``nncli params`` reports. ``to_json`` is the stable, documented schema."""

    name: str
    input_shape: tuple
    output_shape: tuple
    total: int
    trainable: int
    buffers: int
    flops: int  # forward FLOPs for the batch
    flops_per_example: int
    layers: list[ParamRow]
    memory: Memory
    gates: list[Gate] = field(default_factory=list)
    flops_method: str = "formula"  # which path counted the FLOPs and activations (FORMULA, ...)

    @property
    def non_trainable(self) -> int:
        return self.total - self.trainable

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "total": self.total,
            "trainable": self.trainable,
            "non_trainable": self.non_trainable,
            "buffers": self.buffers,
            "flops": self.flops,
            "flops_per_example": self.flops_per_example,
            "batch_size": self.memory.batch_size,
            "memory": self.memory.to_json(),
            "layers": [r.to_json() for r in self.layers],
            "gates": [g.to_json() for g in self.gates],
            "flops_method": self.flops_method,
        }


@collector_paused()
def count(
    spec: Spec,
    batch_size: int = 1,
    dtype: str = "float32",
    optimizer: str = "adam",
    depth: int = 0,
    budget: Budget | None = None,
    built=None,
) -> ParamsReport:
    """Count a spec without allocating its weights.

    Args:
        spec: the validated spec.
        batch_size: batch for FLOPs and activation memory.
        dtype: element type for the memory figures (float32, float64, float16, bfloat16).
        optimizer: sgd (one momentum buffer), adam/adamw (two moments) or none.
        depth: how many levels of nested blocks (Residual, Repeat) get their own rows.
        budget: optional gates; each becomes a :class:`Gate` in the report.
        built: ``infer(spec)`` when the caller has it already (training does); inferred here otherwise.

    Example:
        >>> report = count(load_spec("specs/resnet18.yaml"))
        >>> report.total
        11689512
    """
    _check_options(batch_size, dtype, optimizer)
    built = built if built is not None else infer(spec)
    model = built.model
    params = {id(p): p for p in model.parameters()}.values()  # shared parameters count once
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    buffers = list({id(b): b for b in model.buffers()}.values())

    itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
    input_dtype = torch.int64 if getattr(spec, "integer_input", False) else torch.float32
    flops, activations, method = _forward_counts(built, batch_size, itemsize, input_dtype)
    rows: list[ParamRow] = []
    for info in built.layers:
        _rows(info, info.index, 0, depth, flops, rows)
    per_batch = flops.get("", 0)
    per_example = per_batch // batch_size if batch_size else 0

    memory = Memory(
        batch_size=batch_size,
        dtype=dtype,
        optimizer=optimizer,
        weights=total * itemsize,
        buffers=sum(b.numel() * (itemsize if b.is_floating_point() else b.element_size()) for b in buffers),
        activations=activations,
        gradients=trainable * itemsize,
        optimizer_state=OPTIMIZER_STATE[optimizer] * trainable * itemsize,
    )
    report = ParamsReport(
        spec.name,
        built.input_shape,
        built.output_shape,
        total,
        trainable,
        sum(b.numel() for b in buffers),
        per_batch,
        per_example,
        rows,
        memory,
        flops_method=method,
    )
    report.gates = _gates(report, budget) if budget else []
    return report


def _check_options(batch_size, dtype, optimizer) -> None:
    """Refuse (InputError) an unknown dtype or optimizer, or a batch size that is not a positive integer."""
    if dtype not in DTYPES:
        raise InputError(f"expected one of {', '.join(DTYPES)}, found {dtype!r}", param="dtype")
    if optimizer not in OPTIMIZER_STATE:
        raise InputError(f"expected one of {', '.join(OPTIMIZER_STATE)}, found {optimizer!r}", param="optimizer")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size < 2**62:
        raise InputError(f"expected an integer from 1 to 2**62, found {batch_size!r}", param="batch_size")


# How a report's FLOPs and saved activations were counted (ParamsReport.flops_method), fastest first.
FORMULA = "formula"  # every layer by its exact formula (nncli.flops)
FORMULA_AND_LAYER_DISPATCH = "formula+layer_dispatch"  # layers without a formula run alone by torch
MODEL_DISPATCH = "model_dispatch"  # the whole model by torch's dispatch (measure_forward)
MODEL_DISPATCH_EXTRAPOLATED = "model_dispatch_extrapolated"  # batch 1 from passes at 2 and 3


def _forward_counts(built, batch_size: int, itemsize: int, input_dtype: torch.dtype) -> tuple[dict, int, str]:
    """FLOPs per module, saved bytes and the method that counted them (one of the names above).

    The formulas (and layers without one run alone) give the same figures as torch's count of the
    whole model (tests/cli/test_speed.py) without a per-op dispatch of every layer or the imports that
    dispatch needs; the whole model is counted only where the formulas decline (they return None,
    never raise). That pass may raise: a RuntimeError for a tensor too large to index (worded
    here), a ValueError from BatchNorm at one value per channel (then extrapolated).
    """
    dispatched: list[str] = []
    counted = (
        None  # a Graph's elements read named tensors: the whole model is counted
        if built.spec.graph
        else formula_forward(
            built, batch_size, itemsize, integer_input=not input_dtype.is_floating_point, dispatched=dispatched
        )
    )
    if counted is not None:
        return (*counted, FORMULA_AND_LAYER_DISPATCH if dispatched else FORMULA)
    model = built.model
    try:
        return (*measure_forward(model, built.input_shape, batch_size, itemsize, input_dtype), MODEL_DISPATCH)
    except RuntimeError as exc:
        if "overflow" not in str(exc):
            raise
        # The spec built at a batch of 2; a huge batch size makes some tensor's size overflow.
        raise InputError(
            f"{batch_size:,} examples make a tensor too large for torch "
            f"to index (more than 2**63 elements): {str(exc).splitlines()[0]}",
            param="batch_size",
        ) from None
    except ValueError as exc:
        if batch_size != 1 or "value per channel" not in str(exc):
            raise
    # BatchNorm in train mode refuses one value per channel (a batch of 1 with no spatial
    # dims). FLOPs and saved bytes are affine in the batch size, f(b) = a + c*b, so two
    # passes that BatchNorm accepts give f(1) = 2*f(2) - f(3) exactly.
    f2, a2 = measure_forward(model, built.input_shape, 2, itemsize, input_dtype)
    f3, a3 = measure_forward(model, built.input_shape, 3, itemsize, input_dtype)
    return {k: 2 * f2[k] - f3.get(k, 0) for k in f2}, 2 * a2 - a3, MODEL_DISPATCH_EXTRAPOLATED


def _rows(info: LayerInfo, top: int, level: int, depth: int, flops: dict, rows: list) -> None:
    rows.append(
        ParamRow(
            top,
            info.fqn,
            level,
            info.name,
            info.type,
            info.out_shape,
            info.params,
            info.trainable,
            info.buffers,
            0 if info.shared else flops.get(info.fqn, 0),  # a shared module's FLOPs are at its first use
            info.shape_method,
        )
    )
    if level < depth:
        for child in info.children:
            _rows(child, top, level + 1, depth, flops, rows)


def measure_forward(
    model: nn.Module, input_shape: tuple, batch_size: int, itemsize: int, input_dtype: torch.dtype = torch.float32
) -> tuple[dict[str, int], int]:
    """One forward pass of a meta model: FLOPs per module and bytes saved for backward.

    Returns:
        ``({fqn: flops}, activation_bytes)``; the whole model's FLOPs are under ``""``.
        FLOPs are torch's ``FlopCounterMode`` counts (matmuls and convolutions, 2 per
        multiply-add). Saved tensors are what autograd keeps for backward: storages are counted
        once (a view and its base share one), parameters are left out (they are the weights),
        and floating tensors are scaled to the target dtype's ``itemsize``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from nncli.build.inputs import empty_inputs
    from nncli.modules import Graph

    param_storages = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in param_storages and key not in saved:
            size = itemsize if t.is_floating_point() else t.element_size()
            # The storage may be larger than this view: count the storage's elements.
            saved[key] = storage.nbytes() // t.element_size() * size
        return t

    device = next((p.device for p in model.parameters()), torch.device("meta"))
    # Token ids for an integer input (an Embedding indexes with them; on meta their values never matter).
    x = (
        torch.zeros((batch_size, *input_shape), dtype=input_dtype, device=device)
        if not input_dtype.is_floating_point
        else torch.empty((batch_size, *input_shape), device=device)
        if device.type == "meta"
        else torch.randn((batch_size, *input_shape), device=device)
    )
    if isinstance(model, Graph):  # one batch per input (their values never matter here)
        x = empty_inputs(model.input_table, batch_size, device)
    with (
        FlopCounterMode(display=False, custom_mapping=attention_flop_mapping()) as counter,
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
    ):
        model(*x) if isinstance(model, Graph) else model(x)  # noqa: B018
    # FlopCounterMode names modules "<RootClass>.<fqn>"; the root itself is "<RootClass>".
    root = type(model).__name__
    flops = {}
    for name, by_op in counter.get_flop_counts().items():
        if name == root:
            flops[""] = int(sum(by_op.values()))
        elif name.startswith(root + "."):
            flops[name[len(root) + 1 :]] = int(sum(by_op.values()))
    flops.setdefault("", int(counter.get_total_flops()))
    return flops, sum(saved.values())


def _gates(report: ParamsReport, budget: Budget) -> list[Gate]:
    from nncli.formatting import fmt_bytes, fmt_int, fmt_si

    gates = []
    for name, limit, value, fmt in (
        ("max-params", budget.max_params, report.total, lambda v: fmt_int(int(v))),
        ("max-flops", budget.max_flops, report.flops, fmt_si),
        ("max-memory", budget.max_memory, report.memory.total, fmt_bytes),
    ):
        if limit is None:
            continue
        ok = value <= limit
        if ok:
            message = f"{fmt(value)} <= {fmt(limit)}"
        else:
            # A limit of 0 is legal (a gate that any parameter fails): no percentage then.
            over = f" ({(value / limit - 1) * 100:.1f}% over)" if limit > 0 else ""
            message = f"{fmt(value)} exceeds the limit {fmt(limit)} by {fmt(value - limit)}{over}"
        gates.append(Gate(name, limit, value, ok, message))
    return gates
