"""The finite-difference checks along random directions (default mode), and what they share.

For each tensor, ``k`` Gaussian directions ``v``, the central difference
``D = (F(w + h v) - F(w - h v)) / 2h`` against ``<g, v>``; a direction that disagrees is looked at
again from 5 points (step h/2, one-sided Richardson slopes, :func:`_judge`) to tell a wrong
gradient from truncation error and from a kink, which is retried along a new direction. The 2k
evaluations of the first k directions run as one ``vmap``ped call for small tensors, one at a time
in reused buffers for large ones (:func:`_evaluate`); units that draw random numbers are
evaluated one at a time, replayed. A run's directions and buffers live in :class:`_Draws`.
Every coordinate instead (``--exhaustive``): :mod:`nncli.gradcheck.exhaustive`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nncli.gradcheck.report import TensorCheck, Verdict
from nncli.gradcheck.unit import _Unit, is_input

KINK_RETRIES = 6  # new directions drawn, per tensor, to replace directions that hit a kink
# A unit's 2k perturbed copies up to this size are evaluated in one vectorised call; above it, one
# evaluation at a time in reused buffers (fresh large copies pay page faults on every allocation).
BATCHED_BYTES = 4 * 2**20
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
    - Truncation also needs the one-sided slopes to agree (to O(h^3) on a smooth function, far
      below the O(h^2) truncation error): across many kinks the Richardson value of two wild
      central differences can land near ``<g, v>`` by chance (seen end to end on a ResNet whose
      batch norm runs over 2 values), which must not pass for truncation.
    """
    e1 = (gv - d1).abs()
    richardson = (4 * d2 - d1) / 3
    e_r = (gv - richardson).abs()
    spread = (d1 - d2).abs()
    truncation = (e_r <= e1 / 10) & (spread <= 2 * e1) & ((right - left).abs() <= e1)
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
    err_t, kink = _classify(
        t(gv),
        (fp_ - fm_) / (2 * h),
        (fp2_ - fm2_) / h,
        (4 * (fp2_ - f0_) - (fp_ - f0_)) / h,
        (4 * (f0_ - fm2_) - (f0_ - fm_)) / h,
        tol,
    )
    # A kink is a property of a function; a forward that does not repeat itself (an RNG that is
    # not replayed, state kept between calls) fakes slope jumps of |F(w) - F(w)'| / h: noise, not
    # a kink, so the direction is judged on its error instead.
    if bool(kink) and not _noisy(f0, f(0.0), h, tol):
        return _DirectionOutcome(Verdict.KINK, err)
    err = float(err_t)
    return _DirectionOutcome(Verdict.OK if err <= tol else Verdict.FAIL, err)


class _Draws:
    """One run's random directions and scratch buffers, shared by the checks of that run.

    A parameter's ``k`` directions are drawn once, by its layer's isolated check, and the
    end-to-end check reuses them as the parameter's part of its joint directions: each check's
    directions are still ``N(0, I)`` and independent across directions, which is all its detection
    bound assumes, and drawing them (in float32, widened) was the largest cost at 1M parameters.
    Large perturbed copies are written into buffers kept for the run: fresh multi-megabyte
    allocations pay page faults every time, which outweighs the arithmetic.
    """

    def __init__(self) -> None:
        self.blocks: dict[str, torch.Tensor] = {}
        self._buffers: dict[str, torch.Tensor] = {}

    def block(self, key: str | None, k: int, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
        """``k`` directions for a tensor like ``like`` (in the draw dtype): the stored ones for ``key``."""
        found = self.blocks.get(key) if key is not None else None
        if found is not None and found.shape == (k, *like.shape):
            return found
        block = _gaussian((k, *like.shape), gen, like)
        if key is not None:
            self.blocks.setdefault(key, block)
        return block

    def buffer(self, key: str, like: torch.Tensor) -> torch.Tensor:
        """A scratch tensor of ``like``'s shape and dtype, the same memory on every call with ``key``."""
        flat = self._buffers.get(key)
        if flat is None or flat.numel() < like.numel() or flat.dtype != like.dtype or flat.device != like.device:
            flat = torch.empty(like.numel(), dtype=like.dtype, device=like.device)
            self._buffers[key] = flat
        return flat[: like.numel()].view(like.shape)


def _gaussian(shape: tuple, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) draws for directions, in float32 for a float64 tensor (torch's float32 sampler is
    the faster one; widened on use)."""
    draw_dtype = torch.float32 if like.dtype == torch.float64 else like.dtype
    return torch.randn(shape, generator=gen, dtype=draw_dtype, device=like.device)


def _key(unit: _Unit, name: str) -> str | None:
    """The run-wide name of a unit's tensor ("3.weight"), under which its directions are shared."""
    return None if is_input(name) or unit.prefix is None else unit.prefix + name


def _evaluate(
    unit: _Unit, names: list[str], base: dict, grads: dict, block: dict, h: float, draws: _Draws
) -> list[tuple]:
    """``(<g, v_i>, F(w + h v_i), F(w - h v_i))`` for the directions ``v_i = block[n][i]``.

    Small units: the 2k evaluations as one vectorised call (one call per evaluation would be
    mostly Python overhead for them). Large ones: one evaluation at a time, perturbed copies written
    into the run's buffers (fresh copies cost more in page faults than the forward passes). A unit
    that draws random numbers gets ``None`` values: evaluated one by one, replayed, as judged.
    """
    k = block[names[0]].shape[0]
    if unit.draws_random():
        return [(None, None, None)] * k
    if 2 * k * sum(base[n].numel() * base[n].element_size() for n in names) <= BATCHED_BYTES:
        wide = {n: block[n].to(base[n].dtype) for n in names}
        gvs = sum(wide[n].reshape(k, -1) @ grads[n].reshape(-1) for n in names).tolist()
        values = {}
        for n in names:
            signs = torch.tensor([h, -h], dtype=base[n].dtype, device=base[n].device).view(1, 2, *([1] * base[n].dim()))
            # row 2i is w + h v_i, row 2i + 1 is w - h v_i: one fused broadcast
            values[n] = torch.addcmul(base[n], signs, wide[n].unsqueeze(1)).reshape(2 * k, *base[n].shape)
        out = unit.batch_many(values).tolist()
        return [(gvs[i], out[2 * i], out[2 * i + 1]) for i in range(k)]
    results = []
    with torch.no_grad():
        for i in range(k):
            gv, plus, minus = 0.0, {}, {}
            for n in names:
                v = draws.buffer("v", base[n]).copy_(block[n][i])  # widened, in place
                gv += float(torch.dot(grads[n].reshape(-1), v.reshape(-1)))
                key = _key(unit, n) or n  # one unit is evaluated at a time: its buffers may be reused
                plus[n] = torch.add(base[n], v, alpha=h, out=draws.buffer("+" + key, base[n]))
                minus[n] = torch.add(base[n], v, alpha=-h, out=draws.buffer("-" + key, base[n]))
            results.append((gv, float(unit.value(plus)), float(unit.value(minus))))
    return results


def _evaluate_each(
    unit: _Unit, names: list[str], base: dict, grads: dict, blocks: dict, h: float, draws: _Draws
) -> dict[str, list]:
    """:func:`_evaluate` for each tensor on its own (the others at their base values); for a small
    unit, every tensor's 2k evaluations in one vectorised call."""
    k = next(iter(blocks.values())).shape[0]
    rows = 2 * k * len(names)
    if (
        len(names) < 2
        or unit.draws_random()
        or rows * sum(base[n].numel() * base[n].element_size() for n in names) > BATCHED_BYTES
    ):
        return {n: _evaluate(unit, [n], base, grads, {n: blocks[n]}, h, draws) for n in names}
    values, gvs = {}, {}
    for j, n in enumerate(names):
        wide = blocks[n].to(base[n].dtype)
        gvs[n] = (wide.reshape(k, -1) @ grads[n].reshape(-1)).tolist()
        rows_n = base[n].unsqueeze(0).expand(rows, *base[n].shape).clone()
        signs = torch.tensor([h, -h], dtype=base[n].dtype, device=base[n].device).view(1, 2, *([1] * base[n].dim()))
        rows_n[2 * k * j : 2 * k * (j + 1)] += (signs * wide.unsqueeze(1)).reshape(2 * k, *base[n].shape)
        values[n] = rows_n
    out = unit.batch_many(values).tolist()
    return {
        n: [(gvs[n][i], out[2 * k * j + 2 * i], out[2 * k * j + 2 * i + 1]) for i in range(k)]
        for j, n in enumerate(names)
    }


def _check_directions(
    unit: _Unit,
    names: list[str],
    grads: dict[str, torch.Tensor],
    settings: _Settings,
    gen: torch.Generator,
    label: str,
    drawn: tuple | None = None,
    draws: _Draws | None = None,
) -> TensorCheck:
    """Random-direction check of the tensors ``names`` jointly (one tensor, or all of them end to end).

    ``drawn``: (directions block, their ``(<g, v>, F(w + h v), F(w - h v))`` triples, or None)
    already drawn (and evaluated) by the caller; otherwise drawn here, or taken from ``draws``.
    """
    draws = draws if draws is not None else _Draws()
    base = unit.tensors()
    g_norm = math.sqrt(sum(float(torch.linalg.vector_norm(grads[n])) ** 2 for n in names))
    tol = settings.tol(g_norm)
    h = settings.eps
    k = settings.directions
    errs: list[float] = []
    failed = False
    kinks = 0
    attempts = 0
    block, triples = drawn if drawn is not None else (None, None)
    if block is None:
        block = {n: draws.block(_key(unit, n), k, gen, base[n]) for n in names}
    if triples is None:
        triples = _evaluate(unit, names, base, grads, block, h, draws)
    pending = [((lambda i=i: {n: block[n][i].to(base[n].dtype) for n in names}), *t) for i, t in enumerate(triples)]
    while len(errs) < k and attempts < k + KINK_RETRIES:
        attempts += 1
        if pending:
            direction, gv, fp, fm = pending.pop(0)
        else:  # a new direction, to replace one that hit a kink
            v = {n: _gaussian((1, *base[n].shape), gen, base[n])[0].to(base[n].dtype) for n in names}
            direction, gv, fp, fm = (lambda v=v: v), None, None, None
        if gv is not None and fp is not None and abs(gv - (fp - fm) / (2 * h)) <= tol:
            errs.append(abs(gv - (fp - fm) / (2 * h)))  # agrees: no direction materialised
            continue
        outcome = _judge_direction(unit, names, grads, direction(), gv, fp, fm, h, tol)
        if outcome.verdict is Verdict.KINK:
            kinks += 1
            continue
        errs.append(outcome.err)
        failed |= outcome.verdict is Verdict.FAIL
    numel = sum(base[n].numel() for n in names)
    if failed:
        verdict = Verdict.FAIL
    elif len(errs) < k:
        verdict = Verdict.KINK
    else:
        verdict = Verdict.OK
    worst = max(errs) if errs else None
    return TensorCheck(
        name=label,
        numel=numel,
        verdict=verdict,
        max_rel_error=(worst / g_norm if worst is not None and g_norm > settings.atol else None),
        max_abs_error=worst,
        grad_norm=g_norm,
        checked=len(errs),
        kinks=kinks,
    )


def _judge_direction(
    unit: _Unit, names: list[str], grads: dict[str, torch.Tensor], v: dict, gv, fp, fm, h: float, tol: float
) -> _DirectionOutcome:
    """:func:`_judge` on direction ``v``, computing ``<g, v>`` and ``F(w +- h v)`` where not given."""
    if gv is None:
        gv = sum(float(torch.dot(grads[n].reshape(-1), v[n].reshape(-1))) for n in names)

    def f(s, v=v):
        return unit.at({n: s * v[n] for n in names})

    if fp is None:
        fp, fm = f(h), f(-h)
    return _judge(gv, f, fp, fm, h, tol)
