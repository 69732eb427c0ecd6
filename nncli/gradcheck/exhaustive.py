"""The exhaustive check (``--exhaustive``): every coordinate of a tensor perturbed, the
perturbations batched through ``vmap`` (:meth:`_Unit.batch_values`), and ``|g - D|`` compared with
the same tolerance as the random directions; suspects get the kink/truncation test of
:func:`nncli.gradcheck.numeric._classify`.
"""

from __future__ import annotations

import math

import torch

from nncli.gradcheck.numeric import EXHAUSTIVE_CHUNK_BYTES, _classify, _noisy, _Settings
from nncli.gradcheck.report import TensorCheck, Verdict
from nncli.gradcheck.unit import _Unit


def _chunk(n: int, act_elements: int) -> int:
    """Coordinates per vectorised call: one perturbed copy of the tensor per coordinate, plus one
    evaluation's activations, within EXHAUSTIVE_CHUNK_BYTES."""
    return max(1, min(n, EXHAUSTIVE_CHUNK_BYTES // (8 * (n + 4 * max(act_elements, 1)))))


class _Coordinates:
    """Copies of a tensor with one coordinate each perturbed, for one chunk of coordinates.

    ``(chunk, n)`` copies allocated once (on first use): a chunk writes its m perturbed entries,
    evaluates, and writes the originals back. O(m) writes per chunk instead of building m one-hot
    deltas and m sums (O(m n) memory traffic, which dominated).
    """

    def __init__(self, base: torch.Tensor, chunk: int) -> None:
        self.base = base
        self.flat = base.reshape(-1)
        self.chunk = chunk
        self._copies: torch.Tensor | None = None

    def values(self, idx: torch.Tensor, step: float, evaluate) -> torch.Tensor:
        """``evaluate(batch)`` where ``batch[i]`` is the tensor with coordinate ``idx[i]`` moved by ``step``."""
        if self._copies is None:
            self._copies = self.flat.unsqueeze(0).expand(self.chunk, self.flat.numel()).clone()
        m = idx.numel()
        rows = torch.arange(m, device=self.base.device)
        batch = self._copies[:m]
        batch[rows, idx] = self.flat[idx] + step
        try:
            return evaluate(batch.view(m, *self.base.shape))
        finally:
            batch[rows, idx] = self.flat[idx]


def _check_exhaustive(
    unit: _Unit, name: str, grad: torch.Tensor, settings: _Settings, act_elements: int, sweep: tuple | None = None
) -> TensorCheck:
    """Every coordinate of one tensor, perturbations batched (vmap over one-hot steps).

    ``sweep``: ``(F(w + h e_j), F(w - h e_j))`` for every j, already evaluated by the caller
    (:mod:`nncli.gradcheck.suffix`); the follow-ups of suspect coordinates still run here.
    """
    base = unit.tensors()[name]
    n = base.numel()
    h = settings.eps
    g = grad.reshape(-1)
    g_norm = float(g.norm())
    tol = settings.tol(g_norm)
    chunk = _chunk(n, act_elements)
    coords = _Coordinates(base, chunk)

    def values(idx: torch.Tensor, step: float) -> torch.Tensor:
        # F(w + step e_j) for every j in idx: one vectorised call.
        return coords.values(idx, step, lambda batch: unit.batch_values(name, batch))

    fp_all, fm_all = sweep if sweep is not None else _full_sweep(values, n, chunk, h, base.device)
    d1 = (fp_all - fm_all) / (2 * h)
    err = (g - d1).abs()
    kink = _recheck_suspects(unit, values, g, d1, err, (fp_all, fm_all), h, tol / math.sqrt(n), chunk)
    conclusive = err[~kink]
    total = float(conclusive.norm()) if conclusive.numel() else 0.0
    kinks = int(kink.sum())
    if total > tol:
        verdict = Verdict.FAIL
    elif kinks:
        verdict = Verdict.KINK
    else:
        verdict = Verdict.OK
    return TensorCheck(
        name=name,
        numel=n,
        verdict=verdict,
        max_rel_error=(total / g_norm if g_norm > settings.atol else None),
        max_abs_error=total,
        grad_norm=g_norm,
        checked=n - kinks,
        kinks=kinks,
        note=unit.vmap_note,
    )


def _full_sweep(values, n: int, chunk: int, h: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(F(w + h e_j), F(w - h e_j))`` for every coordinate j, ``chunk`` coordinates per call."""
    fp_all = torch.empty(n, dtype=torch.float64, device=device)
    fm_all = torch.empty_like(fp_all)
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(n, start + chunk), device=device)
        fp_all[idx], fm_all[idx] = values(idx, h), values(idx, -h)
    return fp_all, fm_all


def _recheck_suspects(
    unit: _Unit,
    values,
    g: torch.Tensor,
    d1: torch.Tensor,
    err: torch.Tensor,
    sweep: tuple,
    h: float,
    tol_c: float,
    chunk: int,
) -> torch.Tensor:
    """The kink/truncation test of _judge on suspect coordinates: updates ``err`` in place, returns the kink mask."""
    fp_all, fm_all = sweep
    n = err.numel()
    # Coordinates that could matter for |g - D| > tol get the kink/truncation test of _judge.
    suspects = (err > tol_c).nonzero().flatten()
    kink = torch.zeros(n, dtype=torch.bool, device=err.device)
    if suspects.numel():
        with torch.no_grad():
            f0 = float(unit.value({}))
            noisy = _noisy(f0, float(unit.value({})), h, tol_c)  # see _judge
        for start in range(0, suspects.numel(), chunk):
            idx = suspects[start : start + chunk]
            fp2, fm2 = values(idx, h / 2), values(idx, -h / 2)
            fp, fm = fp_all[idx], fm_all[idx]
            e_c, is_kink = _classify(
                g[idx],
                d1[idx],
                (fp2 - fm2) / h,
                (4 * (fp2 - f0) - (fp - f0)) / h,
                (4 * (f0 - fm2) - (f0 - fm)) / h,
                tol_c,
            )
            err[idx] = e_c
            kink[idx] = is_kink & (not noisy)
    return kink
