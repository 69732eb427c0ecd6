"""Structural checks on layers with a hand-written backward (Custom layers): properties every
correct vector-Jacobian product has, exact up to float64 round-off, so they catch a broken
backward that finite differences on one input might not make obvious.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from nncli.gradcheck import replay as rng
from nncli.gradcheck.report import StructuralCheck
from nncli.gradcheck.unit import _Unit

# Structural checks of custom backwards are exact up to float64 round-off.
STRUCTURAL_RTOL = 1e-9


def _structural(unit: _Unit, gen: torch.Generator) -> list[StructuralCheck]:
    """Properties of any correct backward: repeatable, zero in -> zero out, linear in the upstream gradient."""
    base = unit.tensors()
    leaves = {n: t.detach().clone().requires_grad_(True) for n, t in base.items()}
    params, args = unit.split(leaves)
    with torch.enable_grad(), rng._replay(unit.seed, unit.device):
        y = functional_call(unit.module, params, args)
    ts = list(leaves.values())

    def vjp(upstream):
        grads = torch.autograd.grad(y, ts, upstream, retain_graph=True, allow_unused=True)
        return torch.cat([(g if g is not None else torch.zeros_like(t)).reshape(-1) for g, t in zip(grads, ts)])

    g1 = torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)
    g2 = torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)
    a, b = 0.7, -1.3
    v1 = vjp(g1)
    v1_again = vjp(g1)
    v0 = vjp(torch.zeros_like(y))
    v2 = vjp(g2)
    v12 = vjp(a * g1 + b * g2)
    scale = float(v1.norm()) + float(v2.norm()) + 1e-300
    twice = float((v1 - v1_again).norm())
    zero = float(v0.norm())
    linear = float((v12 - (a * v1 + b * v2)).norm())
    return [
        StructuralCheck(
            "backward twice",
            twice <= STRUCTURAL_RTOL * scale,
            f"two backward passes of one forward differ by {twice:.3g} (|grad| {scale:.3g})",
        ),
        StructuralCheck(
            "zero upstream",
            zero <= STRUCTURAL_RTOL * scale,
            f"a zero upstream gradient gives a gradient of norm {zero:.3g}",
        ),
        StructuralCheck(
            "linear in upstream",
            linear <= STRUCTURAL_RTOL * scale,
            f"backward({a} G1 {b:+} G2) differs from {a} backward(G1) {b:+} backward(G2) "
            f"by {linear:.3g} (|grad| {scale:.3g})",
        ),
    ]


def _deterministic(module, x: torch.Tensor | tuple, seed: int) -> StructuralCheck:
    """The forward gives one output for one input under one seed, three calls in a row.

    Checked before any finite difference: a forward drawing from Python's ``random`` or numpy's
    RNG (not replayed), or keeping state between calls, makes every difference quotient noise,
    which otherwise reads as a kink or a wrong backward.
    """
    outs = []
    xs = x if isinstance(x, tuple) else (x,)
    with torch.no_grad():
        for _ in range(3):
            with rng._replay(seed, xs[0].device):
                outs.append(module(*xs))
    if not all(isinstance(o, torch.Tensor) for o in outs):
        return StructuralCheck("deterministic forward", True, "not a tensor output: checked later")
    scale = float(outs[0].abs().max()) if outs[0].numel() else 0.0
    diff = (
        max(float((o - outs[0]).abs().max()) if o.shape == outs[0].shape else float("inf") for o in outs[1:])
        if outs[0].numel()
        else 0.0
    )
    ok = diff <= STRUCTURAL_RTOL * max(scale, 1e-300) or diff == 0.0
    return StructuralCheck(
        "deterministic forward",
        ok,
        f"three calls on one input under one seed differ by up to {diff:.3g} (|y| {scale:.3g})",
    )
