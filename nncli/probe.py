"""``nncli probe``: vanishing and exploding gradients, measured layer by layer and across depth.

What is measured, per seed ``s``: weights from ``build_model(spec, seed=s)``; from
``g = torch.Generator().manual_seed(s)`` first the batch (``torch.randn((N, *input), generator=g)``,
or with ``--data`` the rows ``torch.randperm(len(data), generator=g)[:N]``), then the projection
``r = torch.randn((N, *output), generator=g)`` of the loss below. So any seed's numbers can be
reproduced by hand, and the batch does not depend on the device.

- forward, for each probed layer's output ``h`` (N, *): mean, std and RMS over all elements;
  the fraction of *dead* units of a ReLU-family layer (a unit = one output element of an
  example; dead = its input is <= 0 for every example of the batch, so its output is flat and
  no gradient passes); the fraction of *saturated* outputs of a squashing layer (Sigmoid below
  0.01 or above 0.99, |Tanh| above 0.99, Hardsigmoid/Hardtanh at their clamps).
- backward: ``||dL/dh||`` (Frobenius norm over the batch) of every probed layer's output, taken
  with ``torch.autograd.grad`` on the tensors caught by forward hooks, so nothing is accumulated
  into ``.grad``; ``||dL/dW||`` and ``||dL/dW|| / ||W||`` over the layer's parameters named
  ``weight`` (biases start at zero, so their ratio says nothing at init).

**The probed layers** are the *main path* of the network: the top-level layers with every
``Repeat`` expanded into its copies' layers (recursively), each leaf layer one row, and each
``Residual`` one row (its output ``body(x) + shortcut(x)`` is the point on the path; its
weight gradients are those of every layer inside it). The layers inside a Residual are probed
too and reported under their block (``inner``), but they are branches, not points of the chain,
so they do not enter the ratio below. A 20-layer ``[Linear, Sigmoid]`` Repeat plus a Linear head
gives L = 41 rows.

**The loss** is a fixed random projection of the output: ``L = (1/N) sum_n <r_n, f(x_n)>`` with
``r_n ~ N(0, I)`` drawn per seed. Its gradient at the output is exactly ``r / N``, whatever the
network computes, so the activation gradients ``dL/dh = J_h^T r / N`` measure the network's own
backward Jacobians, the quantity the exploding/vanishing law is about, and not how a softmax
happens to saturate on random labels. It needs no labels and works for any output shape.

**The verdict** (per seed, and on the numbers aggregated over seeds):

- ``R = ||dL/dh_1|| / ||dL/dh_L||``: the first probed layer's activation gradient over the
  output's. ``gamma = R ** (1 / (L - 1))`` is the geometric-mean factor each probed layer applies
  to the gradient on its way back (R = gamma^(L-1): the exponential law in depth).
- ``G = rms(h_L) / rms(h_1)``: growth of the forward scale from the first probed layer to the
  output.
- non-finite: NaN or inf anywhere in the activations, the loss or the gradients;
  exploding: ``R > max_ratio`` or ``G > max_growth`` (or ``gamma > max_gamma`` when set);
  vanishing: ``R < min_ratio`` or ``G < 1 / max_growth`` (or ``gamma < min_gamma`` when set);
  healthy otherwise. Defaults: min_ratio 1e-3, max_ratio 1e3, max_growth 1e3, gamma gates off
  (R is what training feels; the gamma gates are for a depth-independent criterion).

Over seeds, gradient norms, R and G are aggregated by their geometric mean (they are products of
per-layer factors, so their logarithms average), activation statistics by their arithmetic mean;
any non-finite seed makes the whole verdict non-finite.

``--steps N`` trains each seed's network N optimizer steps (the spec's ``train:`` section read by
:func:`nncli.train.resolve_train_config`: adam, lr 1e-3 by default) on fresh random batches with
random targets, then probes again with the *same* batch and projection as at init, so the two
probes differ only by the weights. ``--sweep-depth`` rebuilds the spec with its first ``Repeat``
set to each count (``dataclasses.replace`` on the frozen spec), probes each, and fits
``log10 R = a + b * copies``: a straight line is the exponential law; points more than a decade
off the line, or R under/overflowing the dtype, are reported as where it breaks.

Every measurement runs in the model's training mode (the regime training sees: BatchNorm uses
batch statistics) and leaves the model as it found it: weights, buffers (BatchNorm running
statistics), train/eval flags, ``.grad`` fields and the global RNG state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from nncli.build import Built, LayerInfo, build_model
from nncli.errors import InputError
from nncli.layer_kinds import NORMS, RELU_FAMILY, WEIGHT_LAYERS
from nncli.modules import Repeat, Residual
from nncli.spec import RepeatSpec, ResidualSpec, Spec

DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_BATCH = 128

LOSS_TEXT = ("random projection L = mean_n <r_n, f(x_n)>, r_n ~ N(0, I): dL/d(output) = r/N whatever "
             "the network outputs, so activation gradients measure the backward Jacobians alone")


class Verdict(str, Enum):
    """The probe's diagnosis; only ``healthy`` exits 0."""

    healthy = "healthy"
    vanishing = "vanishing"
    exploding = "exploding"
    non_finite = "non-finite"


@dataclass(frozen=True)
class Thresholds:
    """Where healthy ends. Every field has a CLI flag of the same name (``--min-ratio`` ...)."""

    min_ratio: float = 1e-3  # R below: the first layers get < 1/1000 of the output's gradient
    max_ratio: float = 1e3  # R above: the first layers get > 1000x the output's gradient
    max_growth: float = 1e3  # forward RMS growing (shrinking) by more than this: exploding (vanishing)
    min_gamma: float | None = None  # optional per-layer gate, independent of depth (off by default)
    max_gamma: float | None = None

    def to_json(self) -> dict:
        return {"min_ratio": self.min_ratio, "max_ratio": self.max_ratio, "max_growth": self.max_growth,
                "min_gamma": self.min_gamma, "max_gamma": self.max_gamma}

    def check(self) -> "Thresholds":
        """Raise InputError on thresholds that cannot be met (exit 2)."""
        for name in ("min_ratio", "max_ratio", "max_growth", "min_gamma", "max_gamma"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise InputError(f"--{name.replace('_', '-')}: expected a positive number, found {value}")
        if self.min_ratio >= self.max_ratio:
            raise InputError(f"--min-ratio {self.min_ratio:g} must be below --max-ratio {self.max_ratio:g}")
        if self.max_growth <= 1:
            raise InputError(f"--max-growth: expected a number above 1, found {self.max_growth:g}")
        if self.min_gamma is not None and self.max_gamma is not None and self.min_gamma >= self.max_gamma:
            raise InputError(f"--min-gamma {self.min_gamma:g} must be below --max-gamma {self.max_gamma:g}")
        return self


# -- result objects ----------------------------------------------------------------------------
@dataclass
class LayerStats:
    """One probed layer (a main-path row, or a layer inside a Residual: ``index`` None)."""

    index: int | None  # position on the main path; None inside a Residual
    name: str
    type: str
    path: str  # the layer's place in the spec, "layers[0].Repeat.layers[1]"
    fqn: str  # its name in model.named_modules()
    act_mean: float
    act_std: float
    act_rms: float
    dead_frac: float | None  # ReLU family only
    saturated_frac: float | None  # Sigmoid/Tanh/Hardsigmoid/Hardtanh only
    grad_norm: float  # ||dL/dh||, h this layer's output
    weight_norm: float | None  # ||W|| over its `weight` parameters (None: it has none)
    weight_grad_norm: float | None  # ||dL/dW||
    weight_grad_ratio: float | None  # ||dL/dW|| / ||W||
    inner: list["LayerStats"] = field(default_factory=list)  # a Residual's body and shortcut layers

    def to_json(self) -> dict:
        return {"index": self.index, "name": self.name, "type": self.type, "path": self.path,
                "act_mean": _num(self.act_mean), "act_std": _num(self.act_std), "act_rms": _num(self.act_rms),
                "dead_frac": _num(self.dead_frac), "saturated_frac": _num(self.saturated_frac),
                "grad_norm": _num(self.grad_norm), "weight_norm": _num(self.weight_norm),
                "weight_grad_norm": _num(self.weight_grad_norm),
                "weight_grad_ratio": _num(self.weight_grad_ratio),
                "inner": [r.to_json() for r in self.inner]}


@dataclass
class SeedProbe:
    """The headline numbers of one seed."""

    seed: int
    ratio: float
    gamma: float
    growth: float
    verdict: Verdict

    def to_json(self) -> dict:
        return {"seed": self.seed, "ratio": _num(self.ratio), "gamma": _num(self.gamma),
                "growth": _num(self.growth), "verdict": self.verdict.value}


@dataclass
class ProbeResult:
    """One probe of a network over all seeds: the verdict and the per-layer table."""

    verdict: Verdict
    ratio: float  # R, geometric mean over seeds
    gamma: float  # R ** (1 / (depth - 1))
    growth: float  # G, geometric mean over seeds
    depth: int  # L, the number of main-path rows
    layers: list[LayerStats]
    seeds: list[SeedProbe]
    explanation: str
    hint: str | None
    nonfinite_at: str | None = None  # where NaN/inf first showed, when it did

    @property
    def healthy(self) -> bool:
        return self.verdict is Verdict.healthy

    def to_json(self) -> dict:
        return {"verdict": self.verdict.value, "ratio": _num(self.ratio), "gamma": _num(self.gamma),
                "growth": _num(self.growth), "depth": self.depth, "explanation": self.explanation,
                "hint": self.hint, "nonfinite_at": self.nonfinite_at,
                "per_seed": [s.to_json() for s in self.seeds],
                "layers": [r.to_json() for r in self.layers]}


@dataclass
class Training:
    """What ``--steps`` did before the second probe."""

    steps: int
    optimizer: str
    lr: float
    loss: str  # "cross_entropy on random labels" / "mse on random N(0, 1) targets"
    loss_first: float  # mean over seeds of the first step's loss
    loss_last: float  # ... and of the last step's

    def to_json(self) -> dict:
        return {"steps": self.steps, "optimizer": self.optimizer, "lr": self.lr, "loss": self.loss,
                "loss_first": _num(self.loss_first), "loss_last": _num(self.loss_last)}


@dataclass
class SweepPoint:
    """The probe at one depth of a ``--sweep-depth`` run."""

    times: int  # Repeat.times
    depth: int  # main-path rows L at that depth
    ratio: float
    gamma: float
    growth: float
    verdict: Verdict
    residual: float | None = None  # log10 R minus the exponential fit's value (None: not fitted)

    def to_json(self) -> dict:
        return {"times": self.times, "depth": self.depth, "ratio": _num(self.ratio), "gamma": _num(self.gamma),
                "growth": _num(self.growth), "verdict": self.verdict.value, "residual": _num(self.residual)}


@dataclass
class Sweep:
    """R against depth, and the exponential law fitted to it: log10 R = a + b * times."""

    repeat: str  # the spec path of the Repeat whose `times` was varied
    points: list[SweepPoint]
    log10_ratio_per_copy: float | None  # b; None when fewer than two finite points
    intercept: float | None  # a
    gamma_per_copy: float | None  # 10 ** b: what one more copy multiplies R by
    r2: float | None  # coefficient of determination of the fit (None when R does not vary)
    breaks: list[str]  # where the law breaks: deviations > 1 decade, float under/overflow

    def to_json(self) -> dict:
        return {"repeat": self.repeat, "points": [p.to_json() for p in self.points],
                "fit": {"log10_ratio_per_copy": _num(self.log10_ratio_per_copy), "intercept": _num(self.intercept),
                        "gamma_per_copy": _num(self.gamma_per_copy), "r2": _num(self.r2)},
                "breaks": self.breaks}


@dataclass
class ProbeReport:
    """Everything ``nncli probe`` reports. ``to_json`` is the stable, documented schema.

    The top-level ``verdict``/``ratio``/``gamma``/``layers`` are the probe at initialisation;
    ``after_steps`` the probe after ``--steps`` of training; ``ok`` is False (exit 1) when either
    is not healthy. A sweep is informational and does not change ``ok``.
    """

    name: str
    file: str | None
    seeds: list[int]
    batch_size: int
    inputs: str  # where the batch came from
    loss: str
    device: str
    thresholds: Thresholds
    init: ProbeResult
    training: Training | None = None
    after: ProbeResult | None = None
    sweep: Sweep | None = None
    plot: str | None = None  # the --plot file, once written

    @property
    def ok(self) -> bool:
        return self.init.healthy and (self.after is None or self.after.healthy)

    def to_json(self) -> dict:
        doc = {"name": self.name, "file": self.file, "seeds": self.seeds, "batch_size": self.batch_size,
               "inputs": self.inputs, "loss": self.loss, "device": self.device,
               "thresholds": self.thresholds.to_json(), "ok": self.ok}
        doc.update(self.init.to_json())
        doc["after_steps"] = None if self.after is None else {**self.training.to_json(), **self.after.to_json()}
        doc["sweep"] = None if self.sweep is None else self.sweep.to_json()
        doc["plot"] = self.plot
        return doc


def _num(x: float | None):
    """JSON-safe number: NaN and infinities become the strings "nan", "inf", "-inf"."""
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


# -- which layers are probed -------------------------------------------------------------------
@dataclass
class Point:
    """A probed layer: a main-path row, or (``inner``) a layer inside a Residual."""

    info: LayerInfo
    index: int | None
    inner: list["Point"] = field(default_factory=list)


def probe_points(built: Built) -> list[Point]:
    """The main path of a built network: Repeats expanded, Residuals one row each.

    Returns:
        list of :class:`Point`, in forward order; a Residual's point holds its own layers in
        ``inner`` (Repeats inside them expanded the same way).

    Example:
        >>> [p.info.type for p in probe_points(build_model(load_spec("specs/deep-sigmoid.yaml")))][:3]
        ['Linear', 'Sigmoid', 'Linear']
    """
    points: list[Point] = []

    def expand(infos: Sequence[LayerInfo], out: list[Point], main: bool) -> None:
        for info in infos:
            if isinstance(info.module, Repeat):
                expand(info.children, out, main)
                continue
            point = Point(info, len(out) if main else None)
            if isinstance(info.module, Residual):
                expand(info.children, point.inner, False)
            out.append(point)

    expand(built.layers, points, True)
    return points


def _all_points(points: Sequence[Point]):
    for p in points:
        yield p
        yield from _all_points(p.inner)


# -- one measurement ---------------------------------------------------------------------------
@dataclass
class _Raw:
    """One seed's per-point numbers, keyed like the points (depth-first order)."""

    stats: list[dict]
    loss: float
    finite: bool
    nonfinite_at: str | None


def measure(model: nn.Module, points: Sequence[Point], x: torch.Tensor, direction: torch.Tensor) -> _Raw:
    """One forward and backward pass with hooks on every point; leaves ``model`` as it found it.

    Args:
        model: the built network (``built.model``).
        points: from :func:`probe_points` on the same build.
        x: a batch ``(N, *input_shape)`` on the model's device.
        direction: ``r``, ``(N, *output_shape)``: the loss is ``(r * f(x)).sum() / N``.

    Returns:
        per point (in ``_all_points`` order) a dict of act_mean, act_std, act_rms, dead_frac,
        saturated_frac, grad_norm, weight_norm, weight_grad_norm, weight_grad_ratio.

    The model is run in training mode; afterwards its parameters, buffers, train/eval flags and
    the global RNG state (Dropout draws from it) are restored exactly, and ``.grad`` is never
    touched (the gradients come from ``torch.autograd.grad``).
    """
    flat = list(_all_points(points))
    modes = [(m, m.training) for m in model.modules()]
    state = [(t, t.detach().clone()) for t in _tensors(model)]
    caught: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    # A later in-place layer (ReLU(inplace=True)) would overwrite a caught output and rebase its
    # autograd history; handing the network a copy keeps the caught tensor intact.
    inplace = any(getattr(m, "inplace", False) for m in model.modules())

    def hook_for(k: int):
        def hook(module, args, output):
            if not isinstance(output, torch.Tensor):
                return None
            caught[k] = (args[0] if args and isinstance(args[0], torch.Tensor) else None, output)
            return output.clone() if inplace else None
        return hook

    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    handles = []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            model.train()
            for k, p in enumerate(flat):
                handles.append(p.info.module.register_forward_hook(hook_for(k)))
            # x needs a gradient so activations have one even when every weight is frozen.
            x = x.detach().clone().requires_grad_(True)
            y = model(x)
            n = x.shape[0]
            loss = (y * direction).sum() / n
            missing = [flat[k].info.name for k in range(len(flat)) if k not in caught]
            if missing:  # e.g. a Custom layer returning a tuple
                raise InputError(f"probe could not catch the output of {', '.join(missing[:3])}",
                                 hint="probed layers must return one tensor")
            outs = [caught[k][1] for k in range(len(flat))]
            weights = [[w for name, w in p.info.module.named_parameters()
                        if name.rsplit(".", 1)[-1] == "weight" and w.requires_grad] for p in flat]
            unique_w = list({id(w): w for ws in weights for w in ws}.values())
            grads = torch.autograd.grad(loss, outs + unique_w, allow_unused=True)
            act_grads = grads[:len(outs)]
            w_grads = {id(w): g for w, g in zip(unique_w, grads[len(outs):])}
            stats = []
            for k, p in enumerate(flat):
                inp, h = caught[k]
                stats.append(_point_stats(p.info.type, inp, h.detach(), act_grads[k], weights[k], w_grads))
            return _Raw(stats, float(loss.item()), *_first_nonfinite(flat, stats, loss.item()))
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for t, saved in state:
                t.copy_(saved)
        for m, mode in modes:
            m.training = mode


def _first_nonfinite(flat: list[Point], stats: list[dict], loss: float) -> tuple[bool, str | None]:
    """(all finite?, where NaN/inf first shows): forward in layer order, then the loss, then
    backward from the output towards the input (the order the numbers are computed in)."""
    def bad(s, keys):
        return any(s[k] is not None and not math.isfinite(s[k]) for k in keys)

    def label(p):
        return f"{p.info.name} ({p.info.type})"

    main = [(p, s) for p, s in zip(flat, stats) if p.index is not None]
    for p, s in zip(flat, stats):
        if bad(s, ("act_mean", "act_std", "act_rms")):
            return False, f"the forward pass at {label(p)}"
    if not math.isfinite(loss):
        return False, "the loss"
    for p, s in reversed(main):
        if bad(s, ("grad_norm",)):
            return False, f"the backward pass at {label(p)}"
    for p, s in zip(flat, stats):
        if bad(s, ("grad_norm", "weight_norm", "weight_grad_norm", "weight_grad_ratio")):
            return False, f"the gradients of {label(p)}"
    return True, None


def _tensors(model: nn.Module):
    """Every parameter and buffer, once each (shared ones too)."""
    seen = {}
    for t in list(model.parameters()) + list(model.buffers()):
        seen.setdefault(id(t), t)
    return list(seen.values())


def _point_stats(type_name: str, inp, h: torch.Tensor, grad, weights, w_grads) -> dict:
    """Forward and backward numbers of one layer's output ``h`` (N, *)."""
    h64 = h.double()
    stats: dict[str, Any] = {
        "act_mean": h64.mean().item(),
        "act_std": h64.std(unbiased=False).item() if h.numel() > 1 else 0.0,
        "act_rms": h64.square().mean().sqrt().item(),
        "dead_frac": None,
        "saturated_frac": None,
        # None: the output does not reach the loss (a dead branch); zero gradient then.
        "grad_norm": 0.0 if grad is None else grad.double().norm().item(),
    }
    if type_name in RELU_FAMILY and inp is not None and inp.shape == h.shape:
        stats["dead_frac"] = (inp.detach() <= 0).all(dim=0).double().mean().item()
    elif type_name == "Sigmoid":
        stats["saturated_frac"] = ((h < 0.01) | (h > 0.99)).double().mean().item()
    elif type_name == "Tanh":
        stats["saturated_frac"] = (h.abs() > 0.99).double().mean().item()
    elif type_name == "Hardsigmoid":
        stats["saturated_frac"] = ((h <= 0) | (h >= 1)).double().mean().item()
    elif type_name == "Hardtanh":
        stats["saturated_frac"] = (h.abs() >= h.abs().max()).double().mean().item() if h.numel() else 0.0
    if weights:
        wn = math.sqrt(sum(w.detach().double().square().sum().item() for w in weights))
        gn = math.sqrt(sum(0.0 if w_grads[id(w)] is None else w_grads[id(w)].double().square().sum().item()
                           for w in weights))
        stats["weight_norm"] = wn
        stats["weight_grad_norm"] = gn
        stats["weight_grad_ratio"] = gn / wn if wn > 0 else None
    else:
        stats["weight_norm"] = stats["weight_grad_norm"] = stats["weight_grad_ratio"] = None
    return stats


# -- aggregation and verdict -------------------------------------------------------------------
def _gmean(values: Sequence[float]) -> float:
    """Geometric mean; 0 if any value is 0, NaN/inf propagate."""
    if any(not math.isfinite(v) for v in values):
        return math.nan if any(math.isnan(v) for v in values) else math.inf
    if any(v <= 0 for v in values):
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _headline(grad_first: float, grad_last: float, rms_first: float, rms_last: float, depth: int):
    ratio = grad_first / grad_last if grad_last > 0 else math.nan
    if math.isnan(ratio):
        gamma = math.nan
    elif depth <= 1:
        gamma = 1.0
    elif ratio == 0:
        gamma = 0.0
    elif math.isinf(ratio):
        gamma = math.inf
    else:
        gamma = ratio ** (1.0 / (depth - 1))
    growth = rms_last / rms_first if rms_first > 0 else (1.0 if rms_last == 0 else math.inf)
    return ratio, gamma, growth


def classify(ratio: float, gamma: float, growth: float, finite: bool, th: Thresholds) -> Verdict:
    """The verdict from R, gamma and G (see the module docstring for the rules)."""
    if not finite or not all(math.isfinite(v) for v in (ratio, gamma, growth)):
        return Verdict.non_finite
    if ratio > th.max_ratio or growth > th.max_growth or (th.max_gamma is not None and gamma > th.max_gamma):
        return Verdict.exploding
    if (ratio < th.min_ratio or growth < 1.0 / th.max_growth
            or (th.min_gamma is not None and gamma < th.min_gamma)):
        return Verdict.vanishing
    return Verdict.healthy


def _aggregate(points: Sequence[Point], runs: list[_Raw], seeds: Sequence[int], th: Thresholds,
               model_types: set[str], weight_gain: float | None) -> ProbeResult:
    flat = list(_all_points(points))
    index = {id(p): k for k, p in enumerate(flat)}

    def row(p: Point) -> LayerStats:
        k = index[id(p)]
        per = [r.stats[k] for r in runs]

        def gm(key):
            vals = [s[key] for s in per]
            return None if any(v is None for v in vals) else _gmean(vals)

        return LayerStats(
            index=p.index, name=p.info.name, type=p.info.type, path=p.info.path, fqn=p.info.fqn,
            act_mean=_mean([s["act_mean"] for s in per]), act_std=_mean([s["act_std"] for s in per]),
            act_rms=_mean([s["act_rms"] for s in per]),
            dead_frac=_mean([s["dead_frac"] for s in per]), saturated_frac=_mean([s["saturated_frac"] for s in per]),
            grad_norm=gm("grad_norm"), weight_norm=gm("weight_norm"), weight_grad_norm=gm("weight_grad_norm"),
            weight_grad_ratio=gm("weight_grad_ratio"), inner=[row(c) for c in p.inner],
        )

    layers = [row(p) for p in points]
    depth = len(points)
    first, last = index[id(points[0])], index[id(points[-1])]
    per_seed = []
    for seed, run in zip(seeds, runs):
        r, g, gr = _headline(run.stats[first]["grad_norm"], run.stats[last]["grad_norm"],
                             run.stats[first]["act_rms"], run.stats[last]["act_rms"], depth)
        per_seed.append(SeedProbe(seed, r, g, gr, classify(r, g, gr, run.finite, th)))
    ratio = _gmean([s.ratio for s in per_seed])
    growth = _gmean([s.growth for s in per_seed])
    _, gamma, _ = _headline(ratio, 1.0, 1.0, 1.0, depth)
    finite = all(r.finite for r in runs)
    verdict = classify(ratio, gamma, growth, finite, th)
    nonfinite_at = next((r.nonfinite_at for r in runs if r.nonfinite_at), None)
    explanation, hint = explain(verdict, ratio, gamma, growth, depth, th, layers, model_types, weight_gain,
                                nonfinite_at)
    return ProbeResult(verdict, ratio, gamma, growth, depth, layers, per_seed, explanation, hint, nonfinite_at)


def explain(verdict: Verdict, ratio: float, gamma: float, growth: float, depth: int, th: Thresholds,
            layers: list[LayerStats], types: set[str], weight_gain: float | None,
            nonfinite_at: str | None) -> tuple[str, str | None]:
    """A one-line explanation and a hint (None when healthy)."""
    relu = bool(types & RELU_FAMILY)
    sigmoid = "Sigmoid" in types or "Hardsigmoid" in types
    tanh = "Tanh" in types or "Hardtanh" in types
    normed = bool(types & NORMS)
    skips = "Residual" in types
    rate = f"each of the {depth - 1} steps back multiplies it by gamma = {gamma:.3g} on average"
    gain = (f"; your weights have std*sqrt(fan_in) = {weight_gain:.2f}" if weight_gain is not None else "")
    if verdict is Verdict.non_finite:
        where = f", first in {nonfinite_at}" if nonfinite_at else ""
        return (f"NaN or inf in the activations or gradients{where}: the numbers overflowed or a layer "
                "divided by zero",
                "scale the init down (std ~ 1/sqrt(fan_in)) or lower the learning rate; check Custom layers "
                "for log(0) and 0/0")
    if verdict is Verdict.exploding:
        text = (f"the first layer's activation gradient is {ratio:.2e} times the output's and the forward "
                f"scale grows x{growth:.2e}: {rate}")
        if relu:
            hint = (f"He init for ReLU: init: {{weight: {{kaiming_normal: {{nonlinearity: relu}}}}}} "
                    f"(std*sqrt(fan_in) = sqrt(2) = 1.41{gain}), or add BatchNorm")
        elif tanh or sigmoid:
            hint = f"Xavier init for tanh/sigmoid: init: {{weight: xavier_normal}}{gain}; or add BatchNorm"
        else:
            hint = f"scale the init down to std ~ 1/sqrt(fan_in){gain}; or add BatchNorm/LayerNorm"
        return text, hint
    if verdict is Verdict.vanishing:
        text = (f"the first layer's activation gradient is only {ratio:.2e} of the output's "
                f"(forward scale x{growth:.2g}): {rate}, so the first layers barely learn")
        dead = max((r.dead_frac for r in layers if r.dead_frac is not None), default=0.0)
        if sigmoid:
            hint = ("sigmoid'(z) <= 1/4 shrinks the gradient at every layer: use ReLU with He init, "
                    "or add BatchNorm or skip connections (Residual)")
        elif tanh:
            hint = (f"Xavier init for tanh (init: {{weight: xavier_normal}}: std*sqrt(fan_in) ~ 1{gain}), "
                    "or add BatchNorm or skip connections")
        elif relu:
            hint = (f"He init for ReLU (init: {{weight: {{kaiming_normal: {{nonlinearity: relu}}}}}}: "
                    f"std*sqrt(fan_in) = 1.41{gain})"
                    + (f"; up to {dead:.0%} of a layer's units are dead" if dead > 0.05 else "")
                    + ", or add BatchNorm or skip connections")
        else:
            hint = "add BatchNorm or skip connections (Residual), or scale the init up to std ~ 1/sqrt(fan_in)"
        return text, hint
    text = (f"R = {ratio:.3g}: the first layer gets {ratio:.3g}x the output's activation gradient "
            f"(gamma = {gamma:.3g} per layer), forward scale x{growth:.3g}")
    if gamma < 1 and depth > 1 and gamma > 0:
        more = math.log(th.min_ratio) / math.log(gamma) + 1
        text += f"; at this gamma R would fall below {th.min_ratio:g} at ~{more:.0f} layers"
    elif gamma > 1 and depth > 1:
        more = math.log(th.max_ratio) / math.log(gamma) + 1
        text += f"; at this gamma R would exceed {th.max_ratio:g} at ~{more:.0f} layers"
    if skips or normed:
        text += " (" + " and ".join(w for w, on in (("skip connections", skips), ("normalisation", normed)) if on) \
                + " in the path)"
    return text, None


def weight_gain(model: nn.Module) -> float | None:
    """Median over Linear/Conv layers of std(W) * sqrt(fan_in): He init gives sqrt(2), Xavier ~1."""
    gains = []
    for m in model.modules():
        w = getattr(m, "weight", None)
        if type(m).__name__ in WEIGHT_LAYERS and isinstance(w, torch.Tensor) and w.dim() >= 2 and w.numel() > 1:
            fan_in = w[0].numel() if not type(m).__name__.startswith("ConvTranspose") else w.shape[0] * w[0, 0].numel()
            gains.append(w.detach().double().std().item() * math.sqrt(fan_in))
    if not gains:
        return None
    gains.sort()
    return gains[len(gains) // 2]


# -- inputs ------------------------------------------------------------------------------------
def read_data(path: str | Path, input_shape: tuple) -> torch.Tensor:
    """Inputs for ``--data``: an .npz/.npy/.csv/.pt file of examples shaped like the spec's input.

    Raises:
        InputError: missing or unreadable file, or a shape that does not fit (exit 2).
    """
    from nncli.data import fit_input_shape, read_inputs

    x = read_inputs(Path(path))
    if len(x) < 2:
        raise InputError(f"--data {path}: expected at least 2 examples, found {len(x)}", file=path)
    x = fit_input_shape(x, tuple(input_shape), what=f"--data {Path(path).name}")
    if not torch.isfinite(x).all():
        raise InputError(f"--data {path}: the inputs contain NaN or infinite values", file=path)
    return x


def _batch(built: Built, seed: int, batch_size: int, data: torch.Tensor | None):
    """The seed's probe batch ``x`` (N, *input) and projection ``r`` (N, *output), on the CPU first."""
    gen = torch.Generator().manual_seed(seed)
    if data is None:
        x = torch.randn((batch_size, *built.input_shape), generator=gen)
    else:
        pick = torch.randperm(len(data), generator=gen)[:batch_size]
        x = data[pick]
    r = torch.randn((len(x), *built.output_shape), generator=gen)
    return x.to(built.device), r.to(built.device)


# -- training steps (--steps) ------------------------------------------------------------------
def train_config(spec: Spec, optimizer: str | None = None, lr: float | None = None):
    """The spec's ``train:`` section validated by :func:`nncli.train.resolve_train_config`
    (the same rules and messages as ``nncli train``), with ``--optimizer``/``--lr`` on top.

    Raises:
        SpecError: a bad value in the spec, located in the file; InputError: a bad flag.
    """
    from nncli.train import resolve_train_config

    def fail(path, message, hint=None, from_override=False):
        key = str(path[0]) if path else ""
        if from_override or spec.document is None:
            return InputError(f"--{key.replace('_', '-')}: {message}", hint=hint)
        return spec.error(("train",) + tuple(path), message, hint)

    return resolve_train_config(dict(spec.train or {}), {"optimizer": optimizer, "lr": lr}, fail=fail)


def loss_kind(spec: Spec, cfg, output_shape: tuple) -> str:
    """The spec's ``train.loss`` when it names one; else cross_entropy for a class-score vector
    output (C > 1 entries), mse for anything else."""
    if "loss" in (spec.train or {}):
        return cfg.loss
    return "cross_entropy" if len(output_shape) == 1 and output_shape[0] > 1 else "mse"


_LOSS_TEXT = {"cross_entropy": "cross_entropy on random labels", "mse": "mse on random N(0, 1) targets",
              "bce_with_logits": "bce_with_logits on random 0/1 targets"}


def train_steps(model: nn.Module, cfg, loss: str, output_shape: tuple, steps: int, seed: int,
                batch_size: int, input_shape: tuple, data: torch.Tensor | None) -> tuple[float, float]:
    """``steps`` optimizer steps on fresh random batches with random targets; returns (first, last) loss.

    The optimizer is :func:`nncli.train.build_optimizer` of the spec's ``train:`` section (lr,
    momentum, betas, weight decay; ``clip_grad_norm`` too; schedules are not applied over so few
    steps). Targets are random labels (cross_entropy), N(0, 1) values (mse) or random 0/1
    (bce_with_logits): the probe asks how the gradients behave once the weights have moved,
    not whether anything is learnt.
    """
    from nncli.train import build_optimizer

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("--steps: the network has no trainable parameters to train")
    opt = build_optimizer(cfg, params, device)
    gen = torch.Generator().manual_seed(10_007 + seed)  # apart from the probe batch's stream
    model.train()
    first = last = math.nan
    for step in range(steps):
        if data is None:
            x = torch.randn((batch_size, *input_shape), generator=gen)
        else:
            x = data[torch.randint(len(data), (batch_size,), generator=gen)]
        x = x.to(device)
        out = model(x)
        if loss == "cross_entropy":
            y = torch.randint(output_shape[0], (len(x),), generator=gen).to(device)
            value = nn.functional.cross_entropy(out, y)
        elif loss == "bce_with_logits":
            y = torch.randint(2, out.shape, generator=gen).to(device=device, dtype=out.dtype)
            value = nn.functional.binary_cross_entropy_with_logits(out, y)
        else:
            y = torch.randn(out.shape, generator=gen).to(device=device, dtype=out.dtype)
            value = nn.functional.mse_loss(out, y)
        opt.zero_grad(set_to_none=True)
        value.backward()
        if cfg.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
        opt.step()
        last = value.item()
        if step == 0:
            first = last
    opt.zero_grad(set_to_none=True)
    return first, last


# -- depth sweep -------------------------------------------------------------------------------
def with_repeat_times(spec: Spec, times: int) -> tuple[Spec, str]:
    """The spec with its first Repeat (depth-first, in file order) set to ``times`` copies.

    Returns:
        (new spec, the Repeat's spec path).

    Raises:
        InputError: the spec has no Repeat (exit 2).
    """
    found: list[str] = []

    def swap(layers: tuple) -> tuple:
        out = []
        for layer in layers:
            if not found and isinstance(layer, RepeatSpec):
                found.append(layer.path)
                layer = replace(layer, times=times)
            elif not found and isinstance(layer, ResidualSpec):
                layer = replace(layer, body=swap(layer.body), shortcut=swap(layer.shortcut))
            out.append(layer)
        return tuple(out)

    layers = swap(spec.layers)
    if not found:
        raise InputError(f"--sweep-depth needs a spec with a Repeat block; {spec.name} has none",
                         file=spec.path,
                         hint="wrap the repeating layers in `- Repeat: {times: N, layers: [...]}`")
    return replace(spec, layers=layers), found[0]


def fit_sweep(points: list[SweepPoint]) -> tuple[float | None, float | None, float | None, list[str]]:
    """Least-squares fit log10 R = a + b * times; fills each point's residual. Returns (a, b, r2, breaks)."""
    breaks = []
    usable = [p for p in points if math.isfinite(p.ratio) and p.ratio > 0]
    for p in points:
        if p.ratio == 0:
            breaks.append(f"times={p.times}: R underflowed to 0 (below the dtype's smallest number)")
        elif not math.isfinite(p.ratio):
            breaks.append(f"times={p.times}: R is {p.ratio} (overflow or NaN)")
    if len({p.times for p in usable}) < 2:
        return None, None, None, breaks
    xs = [float(p.times) for p in usable]
    ys = [math.log10(p.ratio) for p in usable]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    # Two points always fit a line exactly: r^2 says something from three on.
    r2 = 1 - ss_res / ss_tot if ss_tot > 1e-12 and len(usable) >= 3 else None
    for p, x, y in zip(usable, xs, ys):
        p.residual = y - (a + b * x)
        if abs(p.residual) > 1.0:
            breaks.append(f"times={p.times}: R = {p.ratio:.2e} is {abs(p.residual):.1f} decades "
                          f"{'above' if p.residual > 0 else 'below'} the exponential fit")
    return a, b, r2, breaks


def parse_int_list(text: str, flag: str, *, low: int = 0) -> list[int]:
    """'2,4,8' -> [2, 4, 8]; InputError (exit 2) on anything else."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        values = [int(t) for t in items]
    except ValueError:
        values = []
    if not values or any(v < low for v in values):
        raise InputError(f"{flag}: expected a comma-separated list of integers >= {low}, found {text!r}",
                         hint=f"e.g. {flag} 2,4,8,16")
    return values


# -- the whole probe ---------------------------------------------------------------------------
def probe(spec: Spec, *, seeds: Sequence[int] = DEFAULT_SEEDS, batch_size: int = DEFAULT_BATCH,
          data: str | Path | None = None, steps: int = 0, sweep_depths: Sequence[int] | None = None,
          thresholds: Thresholds = Thresholds(), device: str = "auto", optimizer: str | None = None,
          lr: float | None = None) -> ProbeReport:
    """Probe a spec for vanishing and exploding gradients at init, over seeds.

    Args:
        spec: a validated spec.
        seeds: one build and one random batch per seed (``build_model(spec, seed=s)``).
        batch_size: examples per probe batch (and per training step).
        data: a file of inputs (``.npz``/``.npy``/``.csv``/``.pt``) instead of N(0, 1) inputs.
        steps: when > 0, train each seed's network this many optimizer steps and probe again.
        sweep_depths: ``Repeat.times`` values: probe the spec rebuilt at each depth.
        thresholds: where healthy ends (:class:`Thresholds`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        optimizer, lr: override the spec's ``train:`` section for ``--steps``.

    Returns:
        :class:`ProbeReport`; ``report.ok`` is False when a probe is not healthy.

    Example:
        >>> report = probe(load_spec("specs/deep-sigmoid.yaml"), seeds=[0, 1])
        >>> report.init.verdict
        <Verdict.vanishing: 'vanishing'>
    """
    from nncli.device import resolve_device

    thresholds.check()
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise InputError("--seeds: expected at least one seed")
    if batch_size < 2:
        raise InputError(f"--batch-size: expected at least 2 (BatchNorm needs a batch), found {batch_size}")
    if steps < 0:
        raise InputError(f"--steps: expected an integer >= 0, found {steps}")
    dev = resolve_device(device)
    x_data = read_data(data, tuple(spec.input)) if data is not None else None
    cfg = train_config(spec, optimizer, lr) if steps else None
    if sweep_depths:  # fail on a bad sweep before spending time on the probe
        if any(t < 1 for t in sweep_depths):
            raise InputError(f"--sweep-depth: expected Repeat counts >= 1, found {list(sweep_depths)}")
        with_repeat_times(spec, sweep_depths[0])

    # build_model seeds the global RNG; the caller's stream is given back untouched.
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        init_runs, after_runs, losses = [], [], []
        points = types = gain = None
        for seed in seeds:
            built = build_model(spec, device=dev, seed=seed)
            points = probe_points(built)
            types = {p.info.type for p in _all_points(points)}
            if gain is None:
                gain = weight_gain(built.model)
            x, r = _batch(built, seed, batch_size, x_data)
            init_runs.append(measure(built.model, points, x, r))
            if steps:
                torch.manual_seed(seed)  # Dropout during the steps
                kind = loss_kind(spec, cfg, built.output_shape)
                losses.append(train_steps(built.model, cfg, kind, built.output_shape, steps, seed, batch_size,
                                          built.input_shape, x_data))
                after_runs.append(measure(built.model, points, x, r))
        init = _aggregate(points, init_runs, seeds, thresholds, types, gain)
        after = training = None
        if steps:
            after = _aggregate(points, after_runs, seeds, thresholds, types, None)
            training = Training(steps, cfg.optimizer, cfg.lr, _LOSS_TEXT[kind],
                                _mean([f for f, _ in losses]), _mean([l for _, l in losses]))
        sweep = _sweep(spec, sweep_depths, seeds, batch_size, x_data, thresholds, dev) if sweep_depths else None

    inputs = (f"{Path(data).name} ({len(x_data)} examples, {min(batch_size, len(x_data))} per seed)"
              if x_data is not None else f"random N(0, 1), {batch_size} per seed")
    return ProbeReport(name=spec.name, file=str(spec.path) if spec.path else None, seeds=seeds,
                       batch_size=batch_size, inputs=inputs, loss=LOSS_TEXT, device=str(dev),
                       thresholds=thresholds, init=init, training=training, after=after, sweep=sweep)


def _sweep(spec: Spec, depths: Sequence[int], seeds: list[int], batch_size: int, x_data, th: Thresholds,
           dev: torch.device) -> Sweep:
    points_out = []
    repeat_path = ""
    for times in depths:
        deep, repeat_path = with_repeat_times(spec, times)
        runs = []
        for seed in seeds:
            built = build_model(deep, device=dev, seed=seed)
            points = probe_points(built)
            x, r = _batch(built, seed, batch_size, x_data)
            runs.append(measure(built.model, points, x, r))
        res = _aggregate(points, runs, seeds, th, set(), None)
        points_out.append(SweepPoint(times, res.depth, res.ratio, res.gamma, res.growth, res.verdict))
    a, b, r2, breaks = fit_sweep(points_out)
    return Sweep(repeat_path, points_out, b, a, None if b is None else 10 ** b, r2, breaks)


# -- the figure (--plot) -----------------------------------------------------------------------
def figure(report: ProbeReport):
    """A matplotlib Figure: ||dL/dh|| per main-path layer on a log scale (at init, and after
    ``--steps``), plus R against Repeat copies for a sweep. Each line has one point per layer
    (per depth); lines carry labels "at init", "after N steps", "R".
    """
    from nncli.plot import new_figure

    panels = 2 if report.sweep else 1
    fig, axes = new_figure(ncols=panels, figsize=(6.4 * panels, 4.2))
    ax = axes[0]
    series = [("at init", report.init, "o")]
    if report.after is not None:
        series.append((f"after {report.training.steps} steps", report.after, "s"))
    for label, res, marker in series:
        xs = [row.index for row in res.layers]
        ys = [_plottable(row.grad_norm) for row in res.layers]
        ax.plot(xs, ys, marker=marker, markersize=3, linewidth=1, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("layer (main path, input -> output)")
    ax.set_ylabel("||dL/dh||")
    ax.set_title(f"{report.name}: {report.init.verdict.value}, R = {report.init.ratio:.2e}, "
                 f"gamma = {report.init.gamma:.3g}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    if report.sweep:
        ax2 = axes[1]
        xs = [p.times for p in report.sweep.points]
        ax2.plot(xs, [_plottable(p.ratio) for p in report.sweep.points], marker="o", label="R")
        if report.sweep.log10_ratio_per_copy is not None:
            a, b = report.sweep.intercept, report.sweep.log10_ratio_per_copy
            ax2.plot(xs, [10 ** (a + b * t) for t in xs], linestyle="--", linewidth=1,
                     label=f"fit: R ~ {report.sweep.gamma_per_copy:.3g}^copies")
        ax2.set_yscale("log")
        ax2.set_xlabel(f"copies of {report.sweep.repeat}")
        ax2.set_ylabel("R = ||dL/dh_1|| / ||dL/dh_L||")
        ax2.set_title("R against depth", fontsize=10)
        ax2.grid(True, which="major", alpha=0.3)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plottable(v: float | None) -> float:
    # A log axis cannot show 0 or inf: NaN leaves a gap at that point instead of a wrong value.
    return v if v is not None and math.isfinite(v) and v > 0 else math.nan


def write_plot(report: ProbeReport, path: str | Path) -> Path:
    """Write :func:`figure` to ``path`` (.png, .svg or .pdf), atomically."""
    from nncli.plot import save_figure

    written = save_figure(figure(report), path)
    report.plot = str(written)
    return written
