"""The probe's verdict: the thresholds, the per-seed headline numbers R, gamma and G, how seeds
are aggregated, the classification, and its explanation and hint.

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from nncli.errors import InputError
from nncli.layer_kinds import NORMS, RELU_FAMILY
from nncli.probe.measure import Measurement, Point, all_points
from nncli.probe.report import LayerStats, ProbeResult, SeedProbe
from nncli.status import ProbeVerdict

Verdict = ProbeVerdict  # the probe's diagnosis; only ``healthy`` exits 0


@dataclass(frozen=True)
class Thresholds:
    """Where healthy ends. Every field has a CLI flag of the same name (``--min-ratio`` ...)."""

    min_ratio: float = 1e-3  # R below: the first layers get < 1/1000 of the output's gradient
    max_ratio: float = 1e3  # R above: the first layers get > 1000x the output's gradient
    max_growth: float = 1e3  # forward RMS growing (shrinking) by more than this: exploding (vanishing)
    min_gamma: float | None = None  # optional per-layer gate, independent of depth (off by default)
    max_gamma: float | None = None

    def to_json(self) -> dict:
        return {
            "min_ratio": self.min_ratio,
            "max_ratio": self.max_ratio,
            "max_growth": self.max_growth,
            "min_gamma": self.min_gamma,
            "max_gamma": self.max_gamma,
        }

    def check(self) -> Thresholds:
        """Raise InputError on thresholds that cannot be met (exit 2)."""
        for name in ("min_ratio", "max_ratio", "max_growth", "min_gamma", "max_gamma"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise InputError(f"--{name.replace('_', '-')}: expected a positive number, found {value}")
        if self.min_ratio >= self.max_ratio:
            raise InputError(
                f"{self.min_ratio:g} must be below the largest healthy ratio, {self.max_ratio:g}", param="min_ratio"
            )
        if self.max_growth <= 1:
            raise InputError(f"expected a number above 1, found {self.max_growth:g}", param="max_growth")
        if self.min_gamma is not None and self.max_gamma is not None and self.min_gamma >= self.max_gamma:
            raise InputError(
                f"{self.min_gamma:g} must be below the largest healthy gamma, {self.max_gamma:g}", param="min_gamma"
            )
        return self


# -- headline numbers, verdict, aggregation over seeds ----------------------------------------
def gmean(values: Sequence[float]) -> float:
    """Geometric mean; 0 if any value is 0, NaN/inf propagate."""
    if any(not math.isfinite(v) for v in values):
        return math.nan if any(math.isnan(v) for v in values) else math.inf
    if any(v <= 0 for v in values):
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def mean(values: Sequence[float | None]) -> float | None:
    """Arithmetic mean of the values that are not None; None when there are none."""
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def headline(
    grad_first: float, grad_last: float, rms_first: float, rms_last: float, depth: int
) -> tuple[float, float, float]:
    """(R, gamma, G) from the first and last points' gradient norms and RMS, over ``depth`` points."""
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
    if ratio < th.min_ratio or growth < 1.0 / th.max_growth or (th.min_gamma is not None and gamma < th.min_gamma):
        return Verdict.vanishing
    return Verdict.healthy


def aggregate(
    points: Sequence[Point],
    runs: list[Measurement],
    seeds: Sequence[int],
    th: Thresholds,
    model_types: set[str],
    weight_gain: float | None,
) -> ProbeResult:
    """One :class:`ProbeResult` from one measurement per seed: the per-layer table averaged over
    seeds, each seed's headline numbers and verdict, and the verdict on their geometric means."""
    flat = list(all_points(points))
    index = {id(p): k for k, p in enumerate(flat)}

    def row(p: Point) -> LayerStats:
        k = index[id(p)]
        per = [r.stats[k] for r in runs]

        def gm(key):
            vals = [s[key] for s in per]
            return None if any(v is None for v in vals) else gmean(vals)

        return LayerStats(
            index=p.index,
            name=p.name or p.info.name,
            type=p.info.type,
            path=p.path or p.info.path,
            fqn=p.info.fqn,
            shared=p.shared,
            act_mean=mean([s["act_mean"] for s in per]),
            act_std=mean([s["act_std"] for s in per]),
            act_rms=mean([s["act_rms"] for s in per]),
            dead_frac=mean([s["dead_frac"] for s in per]),
            saturated_frac=mean([s["saturated_frac"] for s in per]),
            grad_norm=gm("grad_norm"),
            weight_norm=gm("weight_norm"),
            weight_grad_norm=gm("weight_grad_norm"),
            weight_grad_ratio=gm("weight_grad_ratio"),
            inner=[row(c) for c in p.inner],
        )

    layers = [row(p) for p in points]
    # R ends at the output: the last row, or with several outputs the row giving the first
    end = next((k for k, p in enumerate(points) if p.output), len(points) - 1)
    depth = end + 1
    first, last = index[id(points[0])], index[id(points[end])]
    per_seed = []
    for seed, run in zip(seeds, runs):
        r, g, gr = headline(
            run.stats[first]["grad_norm"],
            run.stats[last]["grad_norm"],
            run.stats[first]["act_rms"],
            run.stats[last]["act_rms"],
            depth,
        )
        per_seed.append(SeedProbe(seed, r, g, gr, classify(r, g, gr, run.finite, th)))
    ratio = gmean([s.ratio for s in per_seed])
    growth = gmean([s.growth for s in per_seed])
    _, gamma, _ = headline(ratio, 1.0, 1.0, 1.0, depth)
    finite = all(r.finite for r in runs)
    verdict = classify(ratio, gamma, growth, finite, th)
    nonfinite_at = next((r.nonfinite_at for r in runs if r.nonfinite_at), None)
    explanation, hint = explain(
        verdict, ratio, gamma, growth, depth, th, layers, model_types, weight_gain, nonfinite_at
    )
    return ProbeResult(verdict, ratio, gamma, growth, depth, layers, per_seed, explanation, hint, nonfinite_at)


def explain(
    verdict: Verdict,
    ratio: float,
    gamma: float,
    growth: float,
    depth: int,
    th: Thresholds,
    layers: list[LayerStats],
    types: set[str],
    weight_gain: float | None,
    nonfinite_at: str | None,
) -> tuple[str, str | None]:
    """A one-line explanation and a hint (None when healthy)."""
    relu = bool(types & RELU_FAMILY)
    sigmoid = "Sigmoid" in types or "Hardsigmoid" in types
    tanh = "Tanh" in types or "Hardtanh" in types
    rate = f"each of the {depth - 1} steps back multiplies it by gamma = {gamma:.3g} on average"
    gain = f"; your weights have std*sqrt(fan_in) = {weight_gain:.2f}" if weight_gain is not None else ""
    if verdict is Verdict.non_finite:
        where = f", first in {nonfinite_at}" if nonfinite_at else ""
        return (
            f"NaN or inf in the activations or gradients{where}: the numbers overflowed or a layer divided by zero",
            "scale the init down (std ~ 1/sqrt(fan_in)) or lower the learning rate; check Custom layers "
            "for log(0) and 0/0",
        )
    if verdict is Verdict.exploding:
        text = (
            f"the first layer's activation gradient is {ratio:.2e} times the output's and the forward "
            f"scale grows x{growth:.2e}: {rate}"
        )
        return text, _exploding_hint(relu, tanh or sigmoid, gain)
    if verdict is Verdict.vanishing:
        text = (
            f"the first layer's activation gradient is only {ratio:.2e} of the output's "
            f"(forward scale x{growth:.2g}): {rate}, so the first layers barely learn"
        )
        dead = max((r.dead_frac for r in layers if r.dead_frac is not None), default=0.0)
        return text, _vanishing_hint(relu, sigmoid, tanh, dead, gain)
    return _healthy_text(ratio, gamma, growth, depth, th, types), None


def _exploding_hint(relu: bool, squashing: bool, gain: str) -> str:
    """What to change when gradients explode: the init that suits the activations, or a norm layer."""
    if relu:
        return (
            f"He init for ReLU: init: {{weight: {{kaiming_normal: {{nonlinearity: relu}}}}}} "
            f"(std*sqrt(fan_in) = sqrt(2) = 1.41{gain}), or add BatchNorm"
        )
    if squashing:
        return f"Xavier init for tanh/sigmoid: init: {{weight: xavier_normal}}{gain}; or add BatchNorm"
    return f"scale the init down to std ~ 1/sqrt(fan_in){gain}; or add BatchNorm/LayerNorm"


def _vanishing_hint(relu: bool, sigmoid: bool, tanh: bool, dead: float, gain: str) -> str:
    """What to change when gradients vanish: by activation, naming dead ReLU units where there are many."""
    if sigmoid:
        return (
            "sigmoid'(z) <= 1/4 shrinks the gradient at every layer: use ReLU with He init, "
            "or add BatchNorm or skip connections (Residual)"
        )
    if tanh:
        return (
            f"Xavier init for tanh (init: {{weight: xavier_normal}}: std*sqrt(fan_in) ~ 1{gain}), "
            "or add BatchNorm or skip connections"
        )
    if relu:
        return (
            f"He init for ReLU (init: {{weight: {{kaiming_normal: {{nonlinearity: relu}}}}}}: "
            f"std*sqrt(fan_in) = 1.41{gain})"
            + (f"; up to {dead:.0%} of a layer's units are dead" if dead > 0.05 else "")
            + ", or add BatchNorm or skip connections"
        )
    return "add BatchNorm or skip connections (Residual), or scale the init up to std ~ 1/sqrt(fan_in)"


def _healthy_text(ratio: float, gamma: float, growth: float, depth: int, th: Thresholds, types: set[str]) -> str:
    """A healthy verdict's explanation: R, gamma and growth, the depth where R would leave the band, what helps."""
    normed = bool(types & NORMS)
    skips = "Residual" in types or "Parallel" in types
    text = (
        f"R = {ratio:.3g}: the first layer gets {ratio:.3g}x the output's activation gradient "
        f"(gamma = {gamma:.3g} per layer), forward scale x{growth:.3g}"
    )
    if gamma < 1 and depth > 1 and gamma > 0:
        more = math.log(th.min_ratio) / math.log(gamma) + 1
        text += f"; at this gamma R would fall below {th.min_ratio:g} at ~{more:.0f} layers"
    elif gamma > 1 and depth > 1:
        more = math.log(th.max_ratio) / math.log(gamma) + 1
        text += f"; at this gamma R would exceed {th.max_ratio:g} at ~{more:.0f} layers"
    if skips or normed:
        text += (
            " ("
            + " and ".join(w for w, on in (("skip connections", skips), ("normalisation", normed)) if on)
            + " in the path)"
        )
    return text
