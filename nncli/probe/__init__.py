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
so they do not enter the ratio R. A 20-layer ``[Linear, Sigmoid]`` Repeat plus a Linear head
gives L = 41 rows.

**The loss** is a fixed random projection of the output: ``L = (1/N) sum_n <r_n, f(x_n)>`` with
``r_n ~ N(0, I)`` drawn per seed. Its gradient at the output is exactly ``r / N``, whatever the
network computes, so the activation gradients ``dL/dh = J_h^T r / N`` measure the network's own
backward Jacobians, the quantity the exploding/vanishing law is about, and not how a softmax
happens to saturate on random labels. It needs no labels and works for any output shape.

**Several inputs and outputs**: one random batch per input (from the same generator, in
forward order, then one projection ``r_k`` per output), the loss summed over the outputs; with
``--data`` (one array per input name) the same ``randperm`` rows of every input, each input read
and standardised as one input is. The probed points are every element in the order the graph
runs them, a shared module once per use (:func:`~nncli.probe.measure.probe_points`); R ends at
the row giving the first output. ``--sweep-depth`` is refused there.

**The verdict** (healthy, vanishing, exploding or non-finite) comes from R, the first probed
layer's activation gradient over the output's, its per-layer factor gamma and the forward growth
G, per seed and on their geometric means over seeds: see :mod:`nncli.probe.verdict`.

``--steps N`` trains each seed's network N optimizer steps (:mod:`nncli.probe.steps`), then probes
again with the *same* batch and projection as at init, so the two probes differ only by the
weights. ``--sweep-depth`` probes the spec rebuilt at several depths and fits the exponential law
(:mod:`nncli.probe.depth`).

Every measurement runs in the model's training mode (the regime training sees: BatchNorm uses
batch statistics) and leaves the model as it found it: weights, buffers (BatchNorm running
statistics), train/eval flags, ``.grad`` fields and the global RNG state.

The parts: :mod:`~nncli.probe.measure` (probed points, the batch, one measurement),
:mod:`~nncli.probe.verdict`, :mod:`~nncli.probe.steps`, :mod:`~nncli.probe.depth` and the result
objects in :mod:`~nncli.probe.report`; :func:`probe` here runs them in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from nncli.build import build_model
from nncli.errors import InputError
from nncli.probe.depth import depth_sweep, fit_sweep, with_repeat_times
from nncli.probe.measure import all_points, measure, probe_batch, probe_points, read_data, weight_gain
from nncli.probe.report import LayerStats, ProbeReport, ProbeResult, SeedProbe, Sweep, SweepPoint, Training
from nncli.probe.steps import STEP_LOSS_TEXT, loss_kind, train_config, train_steps
from nncli.probe.verdict import Thresholds, Verdict, aggregate, classify, explain, mean
from nncli.seeds import MAX_SEEDS, check_seed
from nncli.spec import Spec
from nncli.spec.limits import check_spec

__all__ = [
    "probe",
    "DEFAULT_SEEDS",
    "DEFAULT_BATCH",
    "LOSS_TEXT",
    "Thresholds",
    "Verdict",
    "classify",
    "explain",
    "measure",
    "probe_points",
    "read_data",
    "with_repeat_times",
    "fit_sweep",
    "ProbeReport",
    "ProbeResult",
    "LayerStats",
    "SeedProbe",
    "Training",
    "Sweep",
    "SweepPoint",
]

DEFAULT_SEEDS = (0, 1, 2)
# Optimizer steps per seed for --steps, and depths in one sweep: each is work done per seed.
MAX_STEPS = 100_000
MAX_SWEEP_DEPTHS = 64
DEFAULT_BATCH = 128

LOSS_TEXT = (
    "random projection L = mean_n <r_n, f(x_n)>, r_n ~ N(0, I): dL/d(output) = r/N whatever "
    "the network outputs, so activation gradients measure the backward Jacobians alone"
)


def probe(
    spec: Spec,
    *,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    batch_size: int = DEFAULT_BATCH,
    data: str | Path | None = None,
    steps: int = 0,
    sweep_depths: Sequence[int] | None = None,
    thresholds: Thresholds = Thresholds(),
    device: str = "auto",
    optimizer: str | None = None,
    lr: float | None = None,
) -> ProbeReport:
    """Probe a spec for vanishing and exploding gradients at init, over seeds.

    Args:
        spec: a validated spec.
        seeds: one build and one random batch per seed (``build_model(spec, seed=s)``).
        batch_size: examples per probe batch (and per training step).
        data: a file of inputs (``.npz``/``.npy``/``.csv``/``.pt``; with several inputs an
            ``.npz``/``.pt`` with one array per input name) instead of N(0, 1) inputs.
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
    _check_graph(spec, sweep_depths)
    seeds = _checked(spec, seeds, batch_size, steps, sweep_depths)
    dev = resolve_device(device)
    x_data = read_data(data, tuple(spec.input), spec) if data is not None else None
    cfg = train_config(spec, optimizer, lr) if steps else None

    # build_model seeds the global RNG; the caller's stream is given back untouched.
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        points, types, gain, init_runs, after_runs, losses, kind = _measure_seeds(
            spec, seeds, dev, batch_size, x_data, steps, cfg
        )
        init = aggregate(points, init_runs, seeds, thresholds, types, gain)
        after, training = (
            _after_steps(points, after_runs, seeds, thresholds, types, steps, cfg, kind, losses)
            if steps
            else (None, None)
        )
        sweep = depth_sweep(spec, sweep_depths, seeds, batch_size, x_data, thresholds, dev) if sweep_depths else None

    return ProbeReport(
        name=spec.name,
        file=str(spec.path) if spec.path else None,
        seeds=seeds,
        batch_size=batch_size,
        inputs=_inputs_text(spec, data, x_data, batch_size),
        loss=_loss_text(spec),
        device=str(dev),
        thresholds=thresholds,
        init=init,
        training=training,
        after=after,
        sweep=sweep,
    )


def _measure_seeds(spec: Spec, seeds: list[int], dev, batch_size: int, x_data, steps: int, cfg) -> tuple:
    """Each seed's build measured at init (and after ``steps``): points, types, gain, runs, losses, loss kind."""
    init_runs, after_runs, losses = [], [], []
    points = types = gain = kind = None
    for seed in seeds:
        built = build_model(spec, device=dev, seed=seed)
        points = probe_points(built)
        types = {p.info.type for p in all_points(points)}
        if gain is None:
            gain = weight_gain(built.model)
        x, r = probe_batch(built, seed, batch_size, x_data)
        init_runs.append(measure(built.model, points, x, r))
        if steps:
            kind = _train_seed(spec, built, cfg, steps, seed, batch_size, x_data, losses)
            after_runs.append(measure(built.model, points, x, r))
    return points, types, gain, init_runs, after_runs, losses, kind


def _checked(
    spec: Spec, seeds: Sequence[int], batch_size: int, steps: int, sweep_depths: Sequence[int] | None
) -> list[int]:
    """The distinct seeds; every setting checked before any work (a bad sweep too)."""
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise InputError("expected at least one seed", param="seeds")
    if len(seeds) > MAX_SEEDS:
        raise InputError(f"expected at most {MAX_SEEDS:,} seeds, found {len(seeds):,}", param="seeds")
    for seed in seeds:
        check_seed(seed, "seeds")
    if batch_size < 2:
        raise InputError(f"expected at least 2 (BatchNorm needs a batch), found {batch_size}", param="batch_size")
    if not 0 <= steps <= MAX_STEPS:
        raise InputError(f"expected an integer from 0 to {MAX_STEPS:,}, found {steps:,}", param="steps")
    if sweep_depths:
        if any(t < 1 for t in sweep_depths) or len(sweep_depths) > MAX_SWEEP_DEPTHS:
            shown = list(sweep_depths)[:MAX_SWEEP_DEPTHS]
            raise InputError(
                f"expected at most {MAX_SWEEP_DEPTHS} Repeat counts, each >= 1, found {shown}", param="sweep_depths"
            )
        # the deepest copy count is the one that could build past the layer limit
        check_spec(with_repeat_times(spec, max(sweep_depths))[0])
    return seeds


def _check_graph(spec: Spec, sweep_depths) -> None:
    """What a spec with several inputs or outputs cannot take: ``--sweep-depth`` (the exponential
    law in depth is a chain's), refused before any work."""
    several = ", ".join(i.name for i in spec.input_specs)
    if sweep_depths and (len(spec.input_specs) > 1 or len(spec.outputs) > 1):
        raise InputError(
            f"fits the depth law of one chain of layers, and {spec.name or 'this spec'} has "
            f"several inputs or outputs (inputs: {several}"
            f"{'; outputs: ' + ', '.join(spec.outputs) if spec.outputs else ''})",
            hint="probe it without --sweep-depth: every branch's layers are reported",
            param="sweep_depths",
        )


def _loss_text(spec: Spec) -> str:
    """The loss in words; with several outputs, the projection of each output summed."""
    if len(spec.outputs) <= 1:
        return LOSS_TEXT
    return f"{LOSS_TEXT}; summed over the outputs {', '.join(spec.outputs)}, each with its own r"


def _train_seed(spec: Spec, built, cfg, steps: int, seed: int, batch_size: int, x_data, losses: list) -> str:
    """Train one seed's network ``steps`` optimizer steps (its (first, last) loss appended to
    ``losses``); returns the loss kind."""
    torch.manual_seed(seed)  # Dropout during the steps
    kind = loss_kind(spec, cfg, built.output_shape)
    losses.append(
        train_steps(
            built.model, cfg, kind, built.output_shape, steps, seed, batch_size, built.input_shape, x_data, spec
        )
    )
    return kind


def _after_steps(
    points, runs: list, seeds: list[int], thresholds: Thresholds, types, steps: int, cfg, kind: str, losses: list
) -> tuple:
    """The verdict after ``--steps`` and what the training did (mean first and last loss)."""
    after = aggregate(points, runs, seeds, thresholds, types, None)
    training = Training(
        steps,
        cfg.optimizer,
        cfg.lr,
        STEP_LOSS_TEXT[kind],
        mean([first for first, _ in losses]),
        mean([last for _, last in losses]),
    )
    return after, training


def _inputs_text(spec: Spec, data, x_data, batch_size: int) -> str:
    """What the probe fed the network, in words."""
    if x_data is not None:
        return f"{Path(data).name} ({len(x_data)} examples, {min(batch_size, len(x_data))} per seed)"
    if len(spec.input_specs) > 1:
        each = "; ".join(
            f"{i.name} token ids in [0, {i.high})" if i.dtype.startswith("int") else f"{i.name} N(0, 1)"
            for i in spec.input_specs
        )
        return f"random {each}: {batch_size} per seed"
    if getattr(spec, "integer_input", False):
        return f"random token ids in [0, {spec.input_high}), {batch_size} per seed"
    return f"random N(0, 1), {batch_size} per seed"
