"""The result objects of ``nncli probe``: per-layer statistics, one probe over all seeds, the
``--steps`` training, the depth sweep, and the whole report with its ``--json`` schema.

Plain dataclasses: no torch. Non-finite numbers are written to JSON as the strings "nan", "inf"
and "-inf" (a probe that overflowed must say so, not print null).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nncli.probe.verdict import Thresholds, Verdict


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
    inner: list[LayerStats] = field(default_factory=list)  # a Residual's body and shortcut layers
    # a later use of a shared module: the element whose module it applies (its weight numbers are
    # the one parameter's, the same on every use's row)
    shared: str | None = None

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "type": self.type,
            "path": self.path,
            "act_mean": _num(self.act_mean),
            "act_std": _num(self.act_std),
            "act_rms": _num(self.act_rms),
            "dead_frac": _num(self.dead_frac),
            "saturated_frac": _num(self.saturated_frac),
            "grad_norm": _num(self.grad_norm),
            "weight_norm": _num(self.weight_norm),
            "weight_grad_norm": _num(self.weight_grad_norm),
            "weight_grad_ratio": _num(self.weight_grad_ratio),
            "inner": [r.to_json() for r in self.inner],
            "shared": self.shared,
        }


@dataclass
class SeedProbe:
    """The headline numbers of one seed."""

    seed: int
    ratio: float
    gamma: float
    growth: float
    verdict: Verdict

    def to_json(self) -> dict:
        return {
            "seed": self.seed,
            "ratio": _num(self.ratio),
            "gamma": _num(self.gamma),
            "growth": _num(self.growth),
            "verdict": self.verdict.value,
        }


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
        # by value: the Verdict enum lives with the rules that decide it (verdict.py), which
        # builds these objects, so this module names it for annotations only
        return self.verdict.value == "healthy"

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict.value,
            "ratio": _num(self.ratio),
            "gamma": _num(self.gamma),
            "growth": _num(self.growth),
            "depth": self.depth,
            "explanation": self.explanation,
            "hint": self.hint,
            "nonfinite_at": self.nonfinite_at,
            "per_seed": [s.to_json() for s in self.seeds],
            "layers": [r.to_json() for r in self.layers],
        }


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
        return {
            "steps": self.steps,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "loss": self.loss,
            "loss_first": _num(self.loss_first),
            "loss_last": _num(self.loss_last),
        }


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
        return {
            "times": self.times,
            "depth": self.depth,
            "ratio": _num(self.ratio),
            "gamma": _num(self.gamma),
            "growth": _num(self.growth),
            "verdict": self.verdict.value,
            "residual": _num(self.residual),
        }


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
        return {
            "repeat": self.repeat,
            "points": [p.to_json() for p in self.points],
            "fit": {
                "log10_ratio_per_copy": _num(self.log10_ratio_per_copy),
                "intercept": _num(self.intercept),
                "gamma_per_copy": _num(self.gamma_per_copy),
                "r2": _num(self.r2),
            },
            "breaks": self.breaks,
        }


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
        doc = {
            "name": self.name,
            "file": self.file,
            "seeds": self.seeds,
            "batch_size": self.batch_size,
            "inputs": self.inputs,
            "loss": self.loss,
            "device": self.device,
            "thresholds": self.thresholds.to_json(),
            "ok": self.ok,
        }
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
