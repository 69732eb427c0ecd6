""":func:`gradcheck` and :func:`check_built`: the entry points; the settings checked, the model
built in float64, the fixed batch and the objective set up, every layer and the model checked.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from nncli.build import Built, build_model
from nncli.build.inputs import random_inputs
from nncli.errors import InputError
from nncli.gradcheck.footprint import estimate_memory
from nncli.gradcheck.isolation import PER_LAYER, _check_exhaustive_plain, _check_layer, _check_model, _record_inputs
from nncli.gradcheck.numeric import _Draws, _Settings
from nncli.gradcheck.options import (
    DEFAULT_ATOL,
    DEFAULT_BATCH,
    DEFAULT_DIRECTIONS,
    DEFAULT_EPS,
    DEFAULT_RTOL,
    Mode,
    Objective,
)
from nncli.gradcheck.replay import _preserved, _rng_devices, _seed
from nncli.gradcheck.report import GradcheckReport, _add_inputs, _report
from nncli.gradcheck.suffix import _plain
from nncli.memory import available_memory
from nncli.spec import Spec


def gradcheck(
    spec: Spec,
    *,
    batch: int = DEFAULT_BATCH,
    data: str | Path | None = None,
    objective: str = "projection",
    mode: str = "train",
    exhaustive: bool = False,
    directions: int = DEFAULT_DIRECTIONS,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    eps: float = DEFAULT_EPS,
    seed: int = 0,
    device: str | torch.device = "cpu",
    memory_limit: int | None = None,
) -> GradcheckReport:
    """Build ``spec`` in float64 and check every layer's gradients against finite differences.

    Args:
        spec: a validated spec.
        batch: examples per evaluation (random inputs, or the first rows of ``data``).
        data: an .npz/.npy/.pt/.csv file of inputs (``x`` array) instead of random inputs; for a
            spec with several inputs an .npz/.pt with one array per input name.
        objective: "projection" (a fixed random projection of the output) or "loss"
            (cross-entropy with random targets).
        mode: "train" or "eval": the mode the model is checked in (restored afterwards).
        exhaustive: check every coordinate (vectorised) instead of random directions.
        directions: random directions per tensor (default mode).
        rtol, atol: a check fails when ``|<g, v> - D| > atol + rtol * |g|``.
        eps: the finite-difference step ``h``.
        seed: weights, inputs, directions and the RNG replayed in every evaluation.
        device: where to run.
        memory_limit: bytes available (default: what this machine has free).

    Returns:
        a :class:`GradcheckReport`.

    Raises:
        InputError: bad settings, an unreadable ``data`` file, or a spec too big to check in
            float64 in the available memory (checked before anything is allocated).

    Example:
        >>> report = gradcheck(load_spec("specs/custom-swish.yaml"))
        >>> report.ok, report.suspect
        (True, None)
    """
    _validate(batch=batch, directions=directions, rtol=rtol, atol=atol, eps=eps)
    device = torch.device(device)
    estimate = _memory_estimate(spec, batch, exhaustive, directions, device, memory_limit)
    # build_model seeds the global RNG: fork it so the caller's RNG stream is left as found.
    with torch.random.fork_rng(devices=_rng_devices(device)):
        built = build_model(spec, device=device, seed=seed, dtype=torch.float64)
        x = _inputs(built, batch, data, seed, device)
    # The model was built here and is dropped afterwards: no saved copy of its weights to restore.
    return check_built(
        built,
        x,
        objective=objective,
        mode=mode,
        exhaustive=exhaustive,
        directions=directions,
        rtol=rtol,
        atol=atol,
        eps=eps,
        seed=seed,
        data=str(data) if data is not None else None,
        memory_estimate=estimate,
        _restore=False,
    )


def check_built(
    built: Built,
    x: torch.Tensor | tuple,
    *,
    objective: str = "projection",
    mode: str = "train",
    exhaustive: bool = False,
    directions: int = DEFAULT_DIRECTIONS,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    eps: float = DEFAULT_EPS,
    seed: int = 0,
    data: str | None = None,
    memory_estimate: int = 0,
    _restore: bool = True,
) -> GradcheckReport:
    """Check an already built float64 model on the batch ``x``; leaves the model and RNG as found.

    Args:
        built: from :func:`nncli.build.build_model` (``dtype=torch.float64``).
        x: the batch, ``(N, *built.input_shape)``; for a spec with several inputs, a tuple of
            one batch per input, in the order ``forward`` takes them.
        the rest: as :func:`gradcheck`.

    Returns:
        a :class:`GradcheckReport`.
    """
    xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    x = xs if len(xs) > 1 else xs[0]
    _validate(batch=max(1, xs[0].shape[0]), directions=directions, rtol=rtol, atol=atol, eps=eps)
    mode = Mode(mode).value
    objective = Objective(objective).value
    settings = _Settings(rtol, atol, eps, directions, exhaustive)
    model = built.model
    device = xs[0].device
    start = time.perf_counter()
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    with _preserved(model, device, tensors=_restore), warnings.catch_warnings():
        # vmap has no batching rule for the fused CPU attention kernel and says so once per
        # process; it falls back to a loop, which gives the same numbers.
        warnings.filterwarnings(
            "ignore", message="There is a performance drop because we have not yet implemented the batching rule"
        )
        model.train(mode == "train")
        objective_fn = _objective(objective, built, xs[0].shape[0], device, gen)
        inputs = _layer_inputs(built, x, seed)
        if exhaustive and len(xs) == 1 and _plain(built, inputs):
            layers, e2e, path = _check_exhaustive_plain(built, x, inputs, objective_fn, settings, gen, seed)
        else:
            draws = _Draws()  # directions drawn by the layers' checks, reused end to end
            layers = [
                _check_layer(info, inputs, settings, gen, seed, depth=0, top=info.index, draws=draws)
                for info in built.layers
            ]
            e2e = _check_model(built, x, objective_fn, settings, gen, seed, draws)
            path = PER_LAYER
    report = _report(
        built,
        layers,
        e2e,
        settings,
        batch=xs[0].shape[0],
        mode=mode,
        objective=objective,
        seed=seed,
        device=str(device),
        data=data,
        memory_estimate=memory_estimate,
        seconds=time.perf_counter() - start,
        path=path,
    )
    _add_inputs(report, built)
    return report


def _memory_estimate(
    spec: Spec, batch: int, exhaustive: bool, directions: int, device: torch.device, memory_limit: int | None
) -> int:
    """The bytes the check needs; InputError before anything is allocated when more than is available."""
    estimate = estimate_memory(spec, batch, exhaustive, directions)
    available = memory_limit if memory_limit is not None else available_memory(device)
    if available is not None and estimate > available:
        from nncli.formatting import fmt_bytes

        raise InputError(
            f"{spec.name or 'this spec'} is too big to gradcheck in float64 here: it needs about "
            f"{fmt_bytes(estimate)} (weights, gradients, a saved copy, directions and activations for "
            f"batch {batch}), "
            f"and {fmt_bytes(available)} is available",
            hint="check a smaller variant of the network, a smaller batch, or a machine with more memory",
        )
    return estimate


def _layer_inputs(built: Built, x: torch.Tensor | tuple, seed: int) -> dict:
    """Each layer's recorded input on the batch ``x``; InputError where BatchNorm gets one value per channel."""
    try:
        return _record_inputs(built, x, _seed(seed, "model"))
    except ValueError as exc:  # BatchNorm in train mode on one value per channel
        if "more than 1 value per channel" not in str(exc):
            raise
        raise InputError(
            f"a batch of {(x if isinstance(x, torch.Tensor) else x[0]).shape[0]}: BatchNorm in train mode needs more than one value per "
            f"channel to normalise ({str(exc).strip()})",
            hint="use a batch of 2 or more, or eval mode",
            param="batch",
        ) from None


EPS_RANGE = (1e-12, 1e-2)  # the finite-difference steps that mean something in float64


def _validate(*, batch: int, directions: int, rtol: float, atol: float, eps: float) -> None:
    if batch < 1:
        raise InputError(f"expected a positive integer, found {batch}", param="batch")
    if directions < 1:
        raise InputError(f"expected a positive integer, found {directions}", param="directions")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (value >= 0 and math.isfinite(value)):
            raise InputError(f"expected a number >= 0, found {value}", param=name)
    if not (EPS_RANGE[0] <= eps <= EPS_RANGE[1]):
        # Outside this range float64 central differences measure round-off (too small) or the
        # curvature (too large), and a correct backward would be blamed.
        raise InputError(
            f"expected a step between {EPS_RANGE[0]:g} and {EPS_RANGE[1]:g}, found {eps:g}",
            hint=f"the default {DEFAULT_EPS:g} suits float64",
            param="eps",
        )


def _inputs(built: Built, batch: int, data, seed: int, device: torch.device) -> torch.Tensor | tuple:
    """The batch: the first ``batch`` rows of ``data``, or seeded N(0, 1) inputs; for a spec with
    integer inputs, int64 token ids (uniform in ``[0, high)``), which are never perturbed: only the
    parameters are checked then. A spec with several inputs gets a tuple, one batch per input in
    forward order (float inputs in float64, token ids as they are)."""
    if data is not None:
        return _data_inputs(built, batch, data, device)
    shape = tuple(built.input_shape)
    spec = built.spec
    gen = torch.Generator(device="cpu").manual_seed(_seed(seed, "inputs"))
    if len(built.inputs) > 1:
        return random_inputs(built.inputs, batch, device, dtype=torch.float64, generator=gen)
    if getattr(spec, "integer_input", False):
        return torch.randint(spec.input_high, (batch, *shape), generator=gen).to(device)
    return torch.randn((batch, *shape), generator=gen, dtype=torch.float64).to(device)


def _data_inputs(built: Built, batch: int, data, device: torch.device) -> torch.Tensor | tuple:
    """The first ``batch`` rows of ``data`` as training reads them (label column dropped, each
    float input standardised; with several inputs one array per input name, the same rows of
    each): floats in float64, token ids as they are."""
    from nncli.data import read_examples
    from nncli.data.examples import read_multi_examples

    if len(built.inputs) > 1:
        tensors = tuple(read_multi_examples(Path(data), built.spec, "gradcheck")[0])
    else:
        tensors = (read_examples(Path(data), built.spec)[0],)
    if tensors[0].shape[0] == 0:
        raise InputError(f"{data}: the file has no examples")
    out = tuple(
        t[:batch].to(device=device, dtype=torch.float64) if t.is_floating_point() else t[:batch].to(device)
        for t in tensors
    )
    return out if len(out) > 1 else out[0]


def _objective(kind: str, built: Built, batch: int, device: torch.device, gen: torch.Generator) -> Callable:
    """The scalar the end-to-end check differentiates: never a plain sum (BatchNorm's is 0). With
    several outputs, the sum of one such term per output, so every output's path is checked."""
    shapes = [tuple(row[1]) for row in built.outputs] if len(built.outputs) > 1 else [tuple(built.output_shape)]
    terms = [_output_objective(kind, built, (batch, *shape), device, gen) for shape in shapes]
    if len(terms) == 1:
        return terms[0]
    return lambda ys: sum(term(y) for term, y in zip(terms, ys))


def _output_objective(kind: str, built: Built, out_shape: tuple, device: torch.device, gen: torch.Generator):
    """One output's term: ``<R, y>`` for a fixed random ``R``, or cross-entropy with random targets."""
    if kind == "projection":
        r = torch.randn(out_shape, generator=gen, dtype=torch.float64, device=device)
        return lambda y: (r * y).sum()
    if len(out_shape) < 2 or out_shape[1] < 2:
        raise InputError(
            f"loss: cross-entropy needs an output of [N, classes, ...] with at least "
            f"2 classes; this network gives {list(('N',) + tuple(out_shape[1:]))}",
            hint="use the projection objective",
            param="objective",
        )
    tokens = any(str(row[2]).startswith("int") for row in built.inputs) or getattr(built.spec, "integer_input", False)
    if tokens and len(out_shape) >= 3:
        # a token model's [N, L, V] scores: cross-entropy over the last dimension, as training takes it
        target = torch.randint(0, out_shape[-1], out_shape[:-1], generator=gen, device=device)
        return lambda y: nn.functional.cross_entropy(y.flatten(0, -2), target.flatten())
    classes = out_shape[1]
    target = torch.randint(0, classes, (out_shape[0], *out_shape[2:]), generator=gen, device=device)
    return lambda y: nn.functional.cross_entropy(y, target)
