"""The finite-difference checks of one unit: random directions (default) or every coordinate.

Random directions: for each tensor, ``k`` Gaussian directions ``v``, the central difference
``D = (F(w + h v) - F(w - h v)) / 2h`` against ``<g, v>``; a direction that disagrees is looked at
again from 5 points (step h/2, one-sided Richardson slopes) to tell a wrong gradient from
truncation error and from a kink, which is retried along a new direction. The 2k evaluations of
the first k directions of every tensor of a unit run as one ``vmap``ped call (:func:`_plus_minus`),
except for units that draw random numbers, which are evaluated one at a time, replayed. Exhaustive: every
coordinate, the perturbations batched through ``vmap`` (:meth:`_Unit.batch_values`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from nncli.gradcheck.report import TensorCheck, Verdict
from nncli.gradcheck.unit import INPUT, _Unit

KINK_RETRIES = 6  # new directions drawn, per tensor, to replace directions that hit a kink
# Working memory for one vectorised chunk of exhaustive perturbations.
EXHAUSTIVE_CHUNK_BYTES = 64 * 2**20  # smaller chunks: vmap call overhead; larger: no faster (measured)


@dataclass
class _Settings:
    rtol: float
    atol: float
    eps: float
    directions: int
    exhaustive: bool

    def tol(self, grad_norm: float) -> float:
        return self.atol + self.rtol * grad_norm


@dataclass
class _DirectionOutcome:
    verdict: Verdict
    err: float  # |<g,v> - D| with the best available D


def _classify(gv, d1, d2, right, left, kink_tol):
    """Tell a wrong gradient from truncation error and from kinks, from 5 points along a direction.

    ``d1``/``d2``: central differences with steps h and h/2; ``right``/``left``: one-sided slopes
    from each side, Richardson-extrapolated. Tensors of equal shape (one entry per direction or
    coordinate). Returns (error, is_kink).

    - Smooth, truncation-dominated: central differences are even in h, so the Richardson value
      ``(4 d2 - d1) / 3`` removes the h^2 term and the error drops by orders of magnitude.
    - Smooth: the extrapolated one-sided slopes agree to O(h^3), and ``d1 - d2`` is O(h^2).
      A kink within h of the point (ReLU at 0, max-pool ties, Step) breaks one or the other by
      its slope jump: more than ``kink_tol`` (the check's tolerance). Comparing the jump with the
      disagreement itself would not do: many kinks at once (a max-pool of ReLU zeros) add jumps
      of random signs that partly cancel.
    - A wrong gradient on a smooth function leaves all four estimates equal: the error stays.
    """
    e1 = (gv - d1).abs()
    richardson = (4 * d2 - d1) / 3
    e_r = (gv - richardson).abs()
    spread = (d1 - d2).abs()
    truncation = (e_r <= e1 / 10) & (spread <= 2 * e1)
    kink = ~truncation & (torch.maximum(spread, (right - left).abs()) > kink_tol)
    err = torch.where(truncation, e_r, torch.minimum(e1, e_r))
    return err, kink


def _noisy(f0: float, f0_again: float, h: float, tol: float) -> bool:
    """Two evaluations at one point differ by enough to fake a slope jump above the tolerance."""
    return abs(f0 - f0_again) / h > tol / 10


def _judge(gv: float, f: Callable[[float], float], fp: float, fm: float, h: float, tol: float) -> _DirectionOutcome:
    """Classify one direction: ok, FAIL, or kink.

    ``f(s)`` evaluates F(w + s v); ``fp``/``fm`` are F(w +/- h v), already computed.
    """
    err = abs(gv - (fp - fm) / (2 * h))
    if err <= tol:
        return _DirectionOutcome(Verdict.OK, err)
    # A disagreement: truncation error, a kink, or a wrong gradient. Three more points decide.
    f0, fp2, fm2 = f(0.0), f(h / 2), f(-h / 2)
    t = lambda *vals: torch.tensor(vals, dtype=torch.float64)  # noqa: E731
    fp_, fm_, f0_, fp2_, fm2_ = t(fp), t(fm), t(f0), t(fp2), t(fm2)
    err_t, kink = _classify(t(gv), (fp_ - fm_) / (2 * h), (fp2_ - fm2_) / h,
                            (4 * (fp2_ - f0_) - (fp_ - f0_)) / h, (4 * (f0_ - fm2_) - (f0_ - fm_)) / h, tol)
    # A kink is a property of a function; a forward that does not repeat itself (an RNG that is
    # not replayed, state kept between calls) fakes slope jumps of |F(w) - F(w)'| / h: noise, not
    # a kink, so the direction is judged on its error instead.
    if bool(kink) and not _noisy(f0, f(0.0), h, tol):
        return _DirectionOutcome(Verdict.KINK, err)
    err = float(err_t)
    return _DirectionOutcome(Verdict.OK if err <= tol else Verdict.FAIL, err)


def _check_directions(unit: _Unit, names: list[str], grads: dict[str, torch.Tensor], settings: _Settings,
                      gen: torch.Generator, label: str, drawn: tuple | None = None) -> TensorCheck:
    """Random-direction check of the tensors ``names`` jointly (one tensor, or all of them end to end).

    ``drawn``: (directions block, their (F(w + h v), F(w - h v)) pairs) already evaluated by the
    caller, for a unit whose tensors were evaluated together (:func:`_check_unit`).
    """
    base = unit.tensors()
    g_norm = math.sqrt(sum(float(grads[n].pow(2).sum()) for n in names))
    tol = settings.tol(g_norm)
    h = settings.eps
    errs: list[float] = []
    failed = False
    kinks = 0
    attempts = 0

    def draw(count: int) -> dict[str, torch.Tensor]:
        # Gaussian directions, `count` per tensor. Drawn in float32 (3-5x faster than float64
        # draws, most of the default mode's time at 1M parameters) and widened: still N(0, I)
        # directions, which is all the detection bound assumes.
        return {n: _gaussian((count, *base[n].shape), gen, base[n]) for n in names}

    # The first `directions` directions are drawn up front and their 2k evaluations F(w +- h v)
    # run as one vectorised call; directions drawn to replace kinks are evaluated one by one.
    block, pairs = drawn if drawn is not None else (None, None)
    if block is None:
        block = draw(settings.directions)
        pairs = _plus_minus(unit, names, base, block, h)
    first = [{n: block[n][i] for n in names} for i in range(settings.directions)]
    pending = list(zip(first, pairs))
    while len(errs) < settings.directions and attempts < settings.directions + KINK_RETRIES:
        attempts += 1
        v, (fp, fm) = pending.pop(0) if pending else ({n: t[0] for n, t in draw(1).items()}, (None, None))
        gv = sum(float(torch.dot(grads[n].reshape(-1), v[n].reshape(-1))) for n in names)  # no temporary

        def f(s, v=v):
            return unit.at({n: s * v[n] for n in names})

        if fp is None:
            fp, fm = f(h), f(-h)
        outcome = _judge(gv, f, fp, fm, h, tol)
        if outcome.verdict is Verdict.KINK:
            kinks += 1
            continue
        errs.append(outcome.err)
        failed |= outcome.verdict is Verdict.FAIL
    numel = sum(base[n].numel() for n in names)
    if failed:
        verdict = Verdict.FAIL
    elif len(errs) < settings.directions:
        verdict = Verdict.KINK
    else:
        verdict = Verdict.OK
    worst = max(errs) if errs else None
    return TensorCheck(name=label, numel=numel, verdict=verdict,
                       max_rel_error=(worst / g_norm if worst is not None and g_norm > settings.atol else None),
                       max_abs_error=worst, grad_norm=g_norm, checked=len(errs), kinks=kinks)


def _gaussian(shape: tuple, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    draw_dtype = torch.float32 if like.dtype == torch.float64 else like.dtype
    return torch.randn(shape, generator=gen, dtype=draw_dtype, device=like.device).to(like.dtype)


def _plus_minus(unit: _Unit, names: list[str], base: dict, block: dict, h: float) -> list[tuple]:
    """(F(w + h v_i), F(w - h v_i)) for the directions ``v_i = block[n][i]``, in one vectorised call.

    One forward over 2k perturbed copies instead of 2k forwards (their Python overhead was most
    of the time below ~100k parameters); (None, None) pairs, for one-by-one evaluation, when the
    copies would not fit in EXHAUSTIVE_CHUNK_BYTES or the unit draws random numbers.
    """
    k = next(iter(block.values())).shape[0]
    if (2 * k * sum(base[n].numel() * base[n].element_size() for n in names) > EXHAUSTIVE_CHUNK_BYTES
            or unit.draws_random()):
        # (None, None): evaluated one by one, in order, as each direction is judged. A unit that
        # draws random numbers gets them replayed per evaluation, not shared across a batch.
        return [(None, None)] * k
    values = {}
    for n in names:
        signs = torch.tensor([h, -h], dtype=base[n].dtype, device=base[n].device)
        signs = signs.view(1, 2, *([1] * base[n].dim()))
        # row 2i is w + h v_i, row 2i + 1 is w - h v_i: one fused broadcast, no temporaries
        values[n] = torch.addcmul(base[n], signs, block[n].unsqueeze(1)).reshape(2 * k, *base[n].shape)
    out = unit.batch_many(values).tolist()
    return [(out[2 * i], out[2 * i + 1]) for i in range(k)]


def _check_exhaustive(unit: _Unit, name: str, grad: torch.Tensor, settings: _Settings,
                      act_elements: int) -> TensorCheck:
    """Every coordinate of one tensor, perturbations batched (vmap over one-hot steps)."""
    base = unit.tensors()[name]
    n = base.numel()
    h = settings.eps
    g = grad.reshape(-1)
    g_norm = float(g.norm())
    tol = settings.tol(g_norm)
    # One perturbed copy of the tensor per coordinate of a chunk, plus one evaluation's
    # activations, within EXHAUSTIVE_CHUNK_BYTES.
    chunk = max(1, min(n, EXHAUSTIVE_CHUNK_BYTES // (8 * (n + 4 * max(act_elements, 1)))))
    flat = base.reshape(-1)
    # (chunk, n) copies of the tensor, allocated once: a chunk writes its m perturbed entries,
    # evaluates, and writes the originals back. O(m) writes per chunk instead of building
    # m one-hot deltas and m sums (O(m n) memory traffic, which dominated).
    copies = flat.unsqueeze(0).expand(chunk, n).clone()

    def values(idx: torch.Tensor, step: float) -> torch.Tensor:
        # F(w + step e_j) for every j in idx: one vectorised call.
        m = idx.numel()
        rows = torch.arange(m, device=base.device)
        batch = copies[:m]
        batch[rows, idx] = flat[idx] + step
        try:
            return unit.batch_values(name, batch.view(m, *base.shape))
        finally:
            batch[rows, idx] = flat[idx]

    d1 = torch.empty(n, dtype=torch.float64, device=base.device)
    fp_all = torch.empty_like(d1)
    fm_all = torch.empty_like(d1)
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(n, start + chunk), device=base.device)
        fp, fm = values(idx, h), values(idx, -h)
        fp_all[idx], fm_all[idx] = fp, fm
        d1[idx] = (fp - fm) / (2 * h)
    err = (g - d1).abs()
    # Coordinates that could matter for |g - D| > tol get the kink/truncation test of _judge.
    suspects = (err > tol / math.sqrt(n)).nonzero().flatten()
    kink = torch.zeros(n, dtype=torch.bool, device=base.device)
    if suspects.numel():
        with torch.no_grad():
            f0 = float(unit.value({}))
            noisy = _noisy(f0, float(unit.value({})), h, tol / math.sqrt(n))  # see _judge
        for start in range(0, suspects.numel(), chunk):
            idx = suspects[start:start + chunk]
            fp2, fm2 = values(idx, h / 2), values(idx, -h / 2)
            fp, fm = fp_all[idx], fm_all[idx]
            e_c, is_kink = _classify(g[idx], d1[idx], (fp2 - fm2) / h, (4 * (fp2 - f0) - (fp - f0)) / h,
                                     (4 * (f0 - fm2) - (f0 - fm)) / h, tol / math.sqrt(n))
            err[idx] = e_c
            kink[idx] = is_kink & (not noisy)
    conclusive = err[~kink]
    total = float(conclusive.norm()) if conclusive.numel() else 0.0
    kinks = int(kink.sum())
    if total > tol:
        verdict = Verdict.FAIL
    elif kinks:
        verdict = Verdict.KINK
    else:
        verdict = Verdict.OK
    return TensorCheck(name=name, numel=n, verdict=verdict,
                       max_rel_error=(total / g_norm if g_norm > settings.atol else None), max_abs_error=total,
                       grad_norm=g_norm, checked=n - kinks, kinks=kinks, note=unit.vmap_note)


def _check_unit(unit: _Unit, settings: _Settings, gen: torch.Generator, act_elements: int,
                joint: bool = False) -> list[TensorCheck]:
    """All tensors of a unit: per tensor, or (end to end, default mode) all jointly."""
    grads = unit.gradients()
    names = list(unit.tensors())
    if settings.exhaustive:
        return [_check_exhaustive(unit, n, grads[n], settings, act_elements) for n in names]
    if joint:
        label = "input + parameters" if INPUT in names else "parameters"
        return [_check_directions(unit, names, grads, settings, gen, label)]
    # Each tensor on its own, but the 2k evaluations of every tensor in one vectorised call.
    base = unit.tensors()
    blocks = {n: _gaussian((settings.directions, *base[n].shape), gen, base[n]) for n in names}
    pairs = _plus_minus_each(unit, names, base, blocks, settings.eps)
    return [_check_directions(unit, [n], grads, settings, gen, n, drawn=({n: blocks[n]}, pairs[n]))
            for n in names]


def _plus_minus_each(unit: _Unit, names: list[str], base: dict, blocks: dict, h: float) -> dict[str, list]:
    """:func:`_plus_minus` for each tensor on its own (the others at their base values), one call."""
    k = next(iter(blocks.values())).shape[0]
    rows = 2 * k * len(names)
    if (len(names) < 2 or unit.draws_random()
            or rows * sum(base[n].numel() * base[n].element_size() for n in names) > EXHAUSTIVE_CHUNK_BYTES):
        return {n: _plus_minus(unit, [n], base, {n: blocks[n]}, h) for n in names}
    values = {}
    for j, n in enumerate(names):
        rows_n = base[n].unsqueeze(0).expand(rows, *base[n].shape).clone()
        signs = torch.tensor([h, -h], dtype=base[n].dtype, device=base[n].device).view(1, 2, *([1] * base[n].dim()))
        rows_n[2 * k * j:2 * k * (j + 1)] += (signs * blocks[n].unsqueeze(1)).reshape(2 * k, *base[n].shape)
        values[n] = rows_n
    out = unit.batch_many(values).tolist()
    return {n: [(out[2 * k * j + 2 * i], out[2 * k * j + 2 * i + 1]) for i in range(k)]
            for j, n in enumerate(names)}
