"""``nncli probe --sweep-depth``: R against depth, and the exponential law fitted to it.

The spec is rebuilt with its first ``Repeat`` set to each count (``dataclasses.replace`` on the
frozen spec) and probed at each depth over the same seeds; then ``log10 R = a + b * copies`` is
fitted by least squares. A straight line is the exponential law; points more than a decade off
the line, or R under/overflowing the dtype, are reported as where it breaks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch

from nncli.build import build_model
from nncli.errors import InputError
from nncli.probe.measure import measure, probe_batch, probe_points
from nncli.probe.report import Sweep, SweepPoint
from nncli.probe.verdict import Thresholds, aggregate
from nncli.spec import BlockSpec, ParallelSpec, RepeatSpec, ResidualSpec, Spec


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
            elif not found and isinstance(layer, BlockSpec):
                layer = replace(layer, layers=swap(layer.layers))
            elif not found and isinstance(layer, ParallelSpec):
                layer = replace(layer, branches=tuple(swap(branch) for branch in layer.branches))
            out.append(layer)
        return tuple(out)

    layers = swap(spec.layers)
    if not found:
        raise InputError(
            f"needs a spec with a Repeat block; {spec.name} has none",
            param="sweep_depths",
            file=spec.path,
            hint="wrap the repeating layers in `- Repeat: {times: N, layers: [...]}`",
        )
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
            breaks.append(
                f"times={p.times}: R = {p.ratio:.2e} is {abs(p.residual):.1f} decades "
                f"{'above' if p.residual > 0 else 'below'} the exponential fit"
            )
    return a, b, r2, breaks


def depth_sweep(
    spec: Spec,
    depths: Sequence[int],
    seeds: list[int],
    batch_size: int,
    x_data: torch.Tensor | None,
    th: Thresholds,
    dev: torch.device,
) -> Sweep:
    """Probe ``spec`` with its first Repeat at each of ``depths`` copies and fit the law."""
    points_out = []
    repeat_path = ""
    for times in depths:
        deep, repeat_path = with_repeat_times(spec, times)
        runs = []
        for seed in seeds:
            built = build_model(deep, device=dev, seed=seed)
            points = probe_points(built)
            x, r = probe_batch(built, seed, batch_size, x_data)
            runs.append(measure(built.model, points, x, r))
        res = aggregate(points, runs, seeds, th, set(), None)
        points_out.append(SweepPoint(times, res.depth, res.ratio, res.gamma, res.growth, res.verdict))
    a, b, r2, breaks = fit_sweep(points_out)
    return Sweep(repeat_path, points_out, b, a, None if b is None else 10**b, r2, breaks)
