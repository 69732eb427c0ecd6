"""``nncli gradcheck``: finite-difference gradient checks that find and name the broken layer.

How it works (the docs and ``nncli gradcheck --help`` say the same):

- **Setup.** The network is built in float64 with a fixed batch (random inputs of the spec's
  ``input`` shape, or the first rows of ``--data``). The objective is a fixed random projection
  ``<R, f(x)>`` of the output, or cross-entropy with random targets; never a plain ``sum()``,
  whose gradient through BatchNorm or Softmax is identically zero.
- **Per-layer isolation** (as Caffe's checker does): one forward pass records the real input that
  reaches every layer; each leaf layer (nested ones inside Residual/Repeat included) is then
  checked on its own, on that input, with the objective ``<G, layer(x)>`` for a random upstream
  gradient ``G``. A bug in one backward corrupts every gradient upstream of it; isolation makes
  the report name the guilty layer. One more check runs on the whole model (end to end).
- **Random directions (default).** For each parameter tensor and each layer input, ``k`` Gaussian
  directions ``v`` restricted to that tensor: the central difference
  ``D = (F(w + h v) - F(w - h v)) / 2h`` against ``<g, v>``; the tensor fails when
  ``|<g, v> - D| > atol + rtol * |g|``; the reported relative error is ``|<g, v> - D| / |g|``.
- **Detection bound.** A gradient error ``e`` shows as ``<e, v>``, which for ``v ~ N(0, I)`` is
  ``N(0, |e|^2)``. One direction misses it when ``|<e, v>| < rtol |g|``, with probability
  ``erf(t / sqrt 2)`` where ``t = rtol |g| / |e|``; ``k`` independent directions all miss with
  probability ``erf(t / sqrt 2) ** k <= (0.8 t) ** k``. With the defaults (rtol 1e-5, k 3) an error
  of 0.1% of the gradient's norm escapes with probability 5.1e-7, one of 0.01% with 5.1e-4
  (:func:`miss_probability`).
- **Exhaustive.** ``exhaustive=True`` perturbs every coordinate, the perturbations batched through
  ``torch.func.vmap`` over ``functional_call`` (one vectorised forward per chunk of coordinates),
  and compares ``|g - D|`` with the same tolerance.
- **Kinks.** When a direction disagrees, the difference quotient is recomputed at ``h/2`` and as
  one-sided Richardson estimates from each side. Smooth functions agree with themselves (then the
  Richardson value decides); a kink (ReLU at 0, max-pool ties, Step, abs) makes the left and right
  slopes or the two step sizes disagree: the direction is marked "kink" and a new one is drawn.
  If kinks persist (the real input sits on ties or exact zeros), the layer is checked again at a
  slightly jittered input. Kinks are never reported as FAIL.
- **State.** Dropout and any other RNG use replay the same seed for every evaluation
  (``fork_rng`` + ``manual_seed``); weights, buffers (BatchNorm running statistics), the RNG
  state and each module's train/eval mode are restored afterwards.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from torch.func import functional_call, vmap

from nncli.build import Built, LayerInfo, build_model, count_params, infer
from nncli.errors import InputError
from nncli.spec import Spec

DEFAULT_RTOL = 1e-5  # float64 central differences are good to ~1e-9 relative: wide margin, still tight
DEFAULT_ATOL = 1e-8  # only matters where |g| is ~0 (Step, saturated units)
DEFAULT_EPS = 1e-6  # the step h, absolute, as torch.autograd.gradcheck's
DEFAULT_DIRECTIONS = 3
DEFAULT_BATCH = 4
KINK_RETRIES = 6  # new directions drawn, per tensor, to replace directions that hit a kink
INPUT = "input"  # the name of a layer's input among its checked tensors
# Working memory for one vectorised chunk of exhaustive perturbations.
EXHAUSTIVE_CHUNK_BYTES = 64 * 2**20  # smaller chunks: vmap call overhead; larger: no faster (measured)
# Structural checks of custom backwards are exact up to float64 round-off.
STRUCTURAL_RTOL = 1e-9


class Verdict(str, Enum):
    """A tensor's, a layer's or the model's outcome."""

    OK = "ok"
    FAIL = "FAIL"
    KINK = "kink"  # inconclusive: the function is not differentiable where it was checked


class Objective(str, Enum):
    projection = "projection"  # <R, f(x)> with a fixed Gaussian R
    loss = "loss"  # cross-entropy against random class targets


class Mode(str, Enum):
    train = "train"
    eval = "eval"


def miss_probability(rel_error: float, rtol: float = DEFAULT_RTOL, directions: int = DEFAULT_DIRECTIONS) -> float:
    """Probability that ``directions`` random directions all miss a gradient error.

    An error ``e`` with ``|e| = rel_error * |g|`` is missed by one Gaussian direction ``v`` when
    ``|<e, v>| <= rtol |g|``; ``<e, v> ~ N(0, |e|^2)``, so that happens with probability
    ``erf(rtol / (rel_error sqrt 2))``, independently per direction (atol ignored).

    Example:
        >>> round(miss_probability(1e-3), 9)   # 0.1% error, defaults rtol 1e-5, 3 directions
        5.08e-07
    """
    if rel_error <= 0:
        return 1.0
    return math.erf(rtol / (rel_error * math.sqrt(2.0))) ** directions


# -- result objects ----------------------------------------------------------------------------
@dataclass
class TensorCheck:
    """One checked tensor (a parameter or a layer's input) of one layer."""

    name: str  # "weight", "bias", "input"; end to end: "input + parameters" or "0.weight"
    numel: int
    verdict: Verdict
    # max |<g,v> - D| / |g| over conclusive directions; None when |g| <= atol (a gradient that is
    # zero but for round-off, e.g. a bias before BatchNorm: judged on the absolute error) or none
    max_rel_error: float | None
    max_abs_error: float | None
    grad_norm: float
    checked: int  # conclusive directions (or coordinates, exhaustive)
    kinks: int = 0  # directions (coordinates) that hit a kink
    note: str | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "numel": self.numel, "max_rel_error": self.max_rel_error,
                "max_abs_error": self.max_abs_error, "grad_norm": self.grad_norm,
                "verdict": self.verdict.value, "checked": self.checked, "kinks": self.kinks, "note": self.note}


@dataclass
class StructuralCheck:
    """A cheap property every correct backward has (run on Custom layers)."""

    name: str  # "backward twice", "zero upstream", "linear in upstream"
    ok: bool
    detail: str

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class LayerCheck:
    """One layer's outcome; a Residual/Repeat aggregates its children."""

    index: int | None  # top-level position (None for the end-to-end check)
    id: str  # the module's name in the model: "3", "3.body.0"; "model" end to end
    path: str  # "layers[3].Residual.body[0]"
    name: str
    type: str
    depth: int
    verdict: Verdict
    tensors: list[TensorCheck] = field(default_factory=list)
    structural: list[StructuralCheck] = field(default_factory=list)
    children: list["LayerCheck"] = field(default_factory=list)
    note: str | None = None

    def walk(self) -> Iterator["LayerCheck"]:
        yield self
        for child in self.children:
            yield from child.walk()

    def to_json(self) -> dict:
        return {"index": self.index, "id": self.id, "path": self.path, "name": self.name, "type": self.type,
                "depth": self.depth, "verdict": self.verdict.value,
                "tensors": [t.to_json() for t in self.tensors],
                "structural": [s.to_json() for s in self.structural],
                "children": [c.to_json() for c in self.children], "note": self.note}


@dataclass
class GradcheckReport:
    """Everything ``nncli gradcheck`` found; feeds the table and ``--json`` alike."""

    name: str
    ok: bool  # no FAIL anywhere
    suspect: int | None  # top-level index of the first failing layer
    suspect_id: str | None  # its module name, nested ones included ("3.body.0")
    suspect_name: str | None
    diagnosis: str  # one sentence
    layers: list[LayerCheck]
    end_to_end: LayerCheck
    batch: int
    mode: str
    objective: str
    exhaustive: bool
    directions: int
    rtol: float
    atol: float
    eps: float
    seed: int
    device: str
    data: str | None
    memory_estimate: int  # bytes, the figure the memory guard compared
    seconds: float

    def leaves(self) -> list[LayerCheck]:
        """Checked layers (no composites), in forward order."""
        return [c for layer in self.layers for c in layer.walk() if not c.children]

    def counts(self) -> dict[str, int]:
        out = {v.value: 0 for v in Verdict}
        for layer in [*self.leaves(), self.end_to_end]:
            out[layer.verdict.value] += 1
        return out

    def detection(self) -> list[tuple[float, float]]:
        """(relative error, probability it escapes) for this run's rtol and directions."""
        return [(r, miss_probability(r, self.rtol, self.directions)) for r in (1e-4, 1e-3, 1e-2)]

    def to_json(self) -> dict:
        return {
            "name": self.name, "ok": self.ok, "suspect": self.suspect, "suspect_id": self.suspect_id,
            "suspect_name": self.suspect_name, "diagnosis": self.diagnosis, "counts": self.counts(),
            "settings": {"batch": self.batch, "mode": self.mode, "objective": self.objective,
                         "exhaustive": self.exhaustive, "directions": self.directions, "rtol": self.rtol,
                         "atol": self.atol, "eps": self.eps, "seed": self.seed, "device": self.device,
                         "data": self.data},
            "detection": None if self.exhaustive else
            [{"rel_error": r, "miss_probability": p} for r, p in self.detection()],
            "layers": [layer.to_json() for layer in self.layers],
            "end_to_end": self.end_to_end.to_json(),
            "memory_estimate_bytes": self.memory_estimate, "seconds": round(self.seconds, 3),
        }


@dataclass
class _Settings:
    rtol: float
    atol: float
    eps: float
    directions: int
    exhaustive: bool

    def tol(self, grad_norm: float) -> float:
        return self.atol + self.rtol * grad_norm


# -- entry points ------------------------------------------------------------------------------
def gradcheck(spec: Spec, *, batch: int = DEFAULT_BATCH, data: str | Path | None = None,
              objective: str = "projection", mode: str = "train", exhaustive: bool = False,
              directions: int = DEFAULT_DIRECTIONS, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
              eps: float = DEFAULT_EPS, seed: int = 0, device: str | torch.device = "cpu",
              memory_limit: int | None = None) -> GradcheckReport:
    """Build ``spec`` in float64 and check every layer's gradients against finite differences.

    Args:
        spec: a validated spec.
        batch: examples per evaluation (random inputs, or the first rows of ``data``).
        data: an .npz/.npy/.pt/.csv file of inputs (``x`` array) instead of random inputs.
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
    estimate = estimate_memory(spec, batch, exhaustive)
    available = memory_limit if memory_limit is not None else available_memory(device)
    if available is not None and estimate > available:
        from nncli.formatting import fmt_bytes

        raise InputError(
            f"{spec.name or 'this spec'} is too big to gradcheck in float64 here: it needs about "
            f"{fmt_bytes(estimate)} (weights, gradients, a saved copy, directions and activations for "
            f"batch {batch}), "
            f"and {fmt_bytes(available)} is available",
            hint="check a smaller variant of the network, a smaller --batch, or a machine with more memory")
    # build_model seeds the global RNG: fork it so the caller's RNG stream is left as found.
    with torch.random.fork_rng(devices=_rng_devices(device)):
        built = build_model(spec, device=device, seed=seed, dtype=torch.float64)
        x = _inputs(built, batch, data, seed, device)
    return check_built(built, x, objective=objective, mode=mode, exhaustive=exhaustive,
                       directions=directions, rtol=rtol, atol=atol, eps=eps, seed=seed,
                       data=str(data) if data is not None else None, memory_estimate=estimate)


def check_built(built: Built, x: torch.Tensor, *, objective: str = "projection", mode: str = "train",
                exhaustive: bool = False, directions: int = DEFAULT_DIRECTIONS, rtol: float = DEFAULT_RTOL,
                atol: float = DEFAULT_ATOL, eps: float = DEFAULT_EPS, seed: int = 0, data: str | None = None,
                memory_estimate: int = 0) -> GradcheckReport:
    """Check an already built float64 model on the batch ``x``; leaves the model and RNG as found.

    Args:
        built: from :func:`nncli.build.build_model` (``dtype=torch.float64``).
        x: the batch, ``(N, *built.input_shape)``.
        the rest: as :func:`gradcheck`.

    Returns:
        a :class:`GradcheckReport`.
    """
    _validate(batch=max(1, x.shape[0]), directions=directions, rtol=rtol, atol=atol, eps=eps)
    mode = Mode(mode).value
    objective = Objective(objective).value
    settings = _Settings(rtol, atol, eps, directions, exhaustive)
    model = built.model
    device = x.device
    start = time.perf_counter()
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    with _preserved(model, device):
        model.train(mode == "train")
        objective_fn = _objective(objective, built, x, gen)
        inputs = _record_inputs(built, x, _seed(seed, "model"))
        layers = [_check_layer(info, inputs, settings, gen, seed, depth=0, top=info.index)
                  for info in built.layers]
        e2e = _check_model(built, x, objective_fn, settings, gen, seed)
    report = _report(built, layers, e2e, settings, batch=x.shape[0], mode=mode, objective=objective,
                     seed=seed, device=str(device), data=data, memory_estimate=memory_estimate,
                     seconds=time.perf_counter() - start)
    return report


# -- memory guard ------------------------------------------------------------------------------
def estimate_memory(spec: Spec, batch: int, exhaustive: bool = False) -> int:
    """Bytes a float64 gradcheck of ``spec`` needs, from shapes alone (nothing is allocated).

    The parameters five times over (the weights, their gradients, the saved copy restored at the
    end, the end-to-end direction ``v`` and the perturbed weights ``w + h v``), buffers twice
    (themselves and the saved copy), the activations of the batch four times (the forward graph,
    what autograd saves, the recorded per-layer inputs, one isolated layer's graph), one
    temporary of the largest tensor, and the vectorised chunk in exhaustive mode.
    """
    built = infer(spec)
    n_params, _, n_buffers = count_params(built.model)
    activations = batch * (math.prod(built.input_shape)
                           + sum(math.prod(info.out_shape) for info in built.walk() if not info.children))
    largest = max([p.numel() for p in built.model.parameters()] + [batch * math.prod(built.input_shape)])
    elements = 5 * n_params + 2 * n_buffers + 4 * activations + largest
    return 8 * elements + (EXHAUSTIVE_CHUNK_BYTES if exhaustive else 0)


def available_memory(device: torch.device) -> int | None:
    """Free memory on ``device`` in bytes (CPU: MemAvailable), or None when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# -- setup -------------------------------------------------------------------------------------
def _validate(*, batch: int, directions: int, rtol: float, atol: float, eps: float) -> None:
    if batch < 1:
        raise InputError(f"--batch: expected a positive integer, found {batch}")
    if directions < 1:
        raise InputError(f"--directions: expected a positive integer, found {directions}")
    for flag, value in (("--rtol", rtol), ("--atol", atol)):
        if not (value >= 0 and math.isfinite(value)):
            raise InputError(f"{flag}: expected a number >= 0, found {value}")
    if not (eps > 0 and math.isfinite(eps)):
        raise InputError(f"--eps: expected a positive step, found {eps}")


def _seed(seed: int, what: str) -> int:
    """A seed per evaluation site, stable across runs (Python's str hash is salted: not used)."""
    h = seed * 1_000_003
    for ch in what:
        h = (h * 31 + ord(ch)) % (2**61 - 1)
    return h


def _rng_devices(device: torch.device) -> list:
    return [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []


def _inputs(built: Built, batch: int, data, seed: int, device: torch.device) -> torch.Tensor:
    """The batch: the first ``batch`` rows of ``data``, or seeded N(0, 1) inputs."""
    shape = tuple(built.input_shape)
    if data is not None:
        from nncli.data import fit_input_shape, read_inputs

        x = fit_input_shape(read_inputs(Path(data)), shape, what=str(data))
        if x.shape[0] == 0:
            raise InputError(f"{data}: the file has no examples")
        return x[:batch].to(device=device, dtype=torch.float64)
    gen = torch.Generator(device="cpu").manual_seed(_seed(seed, "inputs"))
    return torch.randn((batch, *shape), generator=gen, dtype=torch.float64).to(device)


def _objective(kind: str, built: Built, x: torch.Tensor, gen: torch.Generator) -> Callable:
    """The scalar the end-to-end check differentiates: never a plain sum (BatchNorm's is 0)."""
    out_shape = (x.shape[0], *built.output_shape)
    if kind == "projection":
        r = torch.randn(out_shape, generator=gen, dtype=torch.float64, device=x.device)
        return lambda y: (r * y).sum()
    if len(out_shape) < 2 or out_shape[1] < 2:
        raise InputError(f"--objective loss: cross-entropy needs an output of [N, classes, ...] with at least "
                         f"2 classes; this network gives {list(('N',) + tuple(built.output_shape))}",
                         hint="use --objective projection")
    classes = out_shape[1]
    target = torch.randint(0, classes, (out_shape[0], *out_shape[2:]), generator=gen, device=x.device)
    return lambda y: nn.functional.cross_entropy(y, target)


@functools.lru_cache(maxsize=512)
def _seeded_states(seed: int, device: str) -> tuple:
    """The generator states ``torch.manual_seed(seed)`` would leave (CPU, and CUDA if used)."""
    cpu = torch.Generator().manual_seed(seed).get_state()
    cuda = torch.Generator(device=device).manual_seed(seed).get_state() if device.startswith("cuda") else None
    return cpu, cuda


@contextmanager
def _replay(seed: int, device: torch.device):
    """Every evaluation draws the same random numbers (Dropout masks), as after ``manual_seed(seed)``.

    The seeded states are computed once and set directly: ``torch.manual_seed`` itself costs
    milliseconds (it records a traceback for lazily initialised backends), thousands of times.
    The caller's RNG state is put back on exit, as ``fork_rng`` does.
    """
    cuda = device.type == "cuda"
    if cuda and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    cpu_state, cuda_state = _seeded_states(seed, str(device))
    saved_cpu = torch.get_rng_state()
    saved_cuda = torch.cuda.get_rng_state(device) if cuda else None
    torch.set_rng_state(cpu_state)
    if cuda:
        torch.cuda.set_rng_state(cuda_state, device)
    try:
        yield
    finally:
        torch.set_rng_state(saved_cpu)
        if cuda:
            torch.cuda.set_rng_state(saved_cuda, device)


@contextmanager
def _preserved(model: nn.Module, device: torch.device):
    """Restore weights, buffers, each module's train/eval flag and the RNG state on exit."""
    modes = [(m, m.training) for m in model.modules()]
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    saved = {k: v.detach().clone() for k, v in tensors.items()}
    try:
        with torch.random.fork_rng(devices=_rng_devices(device)):
            yield
    finally:
        with torch.no_grad():
            for key, value in saved.items():
                tensors[key].copy_(value)  # in place: Parameter objects keep their identity
        for module, training in modes:
            module.training = training


@contextmanager
def _vmap_ready(module: nn.Module):
    """BatchNorm in train mode updates its running stats in place, which vmap refuses.

    Its output does not depend on them in train mode, so tracking is switched off for the
    vectorised evaluations (the state is restored by :func:`_preserved` anyway).
    """
    changed = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
            m.track_running_stats = False
            changed.append(m)
    try:
        yield
    finally:
        for m in changed:
            m.track_running_stats = True


def _record_inputs(built: Built, x: torch.Tensor, seed: int) -> dict[int, torch.Tensor]:
    """The real input reaching every layer (nested ones too), from one forward pass.

    Raises:
        InputError: a layer's output is not finite: finite differences of inf/NaN say nothing
            about the backward, so the first such layer (in execution order) is named instead.
    """
    seen: dict[int, torch.Tensor] = {}
    nonfinite: list = []
    hooks = []
    for info in built.walk():
        def hook(module, args, key=id(info)):
            seen[key] = args[0].detach().clone()
        hooks.append(info.module.register_forward_pre_hook(hook))
        if not info.children:
            def out_hook(module, args, output, info=info):
                if not nonfinite and isinstance(output, torch.Tensor) and not torch.isfinite(output).all():
                    nonfinite.append(info)
            hooks.append(info.module.register_forward_hook(out_hook))
    try:
        with torch.no_grad(), _replay(seed, x.device):
            built.model(x)
    finally:
        for h in hooks:
            h.remove()
    if nonfinite:
        info = nonfinite[0]
        came = "its input is already not finite" if not torch.isfinite(seen[id(info)]).all() else \
            "its input is finite"
        raise info.spec.where.error(
            f"the forward pass is not finite: {info.type} ({info.name}) gives inf or NaN in float64 "
            f"on the gradcheck batch ({came}), so no gradient can be checked",
            hint="look at that layer's init scale (spec `init`) or at the --data values", kind=InputError)
    return seen


# -- one unit: a module, its input, an objective -----------------------------------------------
class _Unit:
    """A function F(input, parameters) -> scalar that is checked: a layer, or the whole model."""

    def __init__(self, module: nn.Module, x: torch.Tensor, objective: Callable, seed: int) -> None:
        self.module = module
        self.x = x
        self.objective = objective
        self.seed = seed
        self.device = x.device
        self.params = {n: p.detach() for n, p in module.named_parameters() if p.is_floating_point()}
        self.vmap_note: str | None = None
        self._vmap_ok = True

    def tensors(self) -> dict[str, torch.Tensor]:
        """Name -> base value of every checked tensor: the input (when floating), then parameters."""
        out = {INPUT: self.x} if self.x.is_floating_point() else {}
        out.update(self.params)
        return out

    def value(self, overrides: dict[str, torch.Tensor], replay: bool = True) -> torch.Tensor:
        """F with some tensors replaced (full values, not deltas)."""
        x = overrides.get(INPUT, self.x)
        params = {n: t for n, t in overrides.items() if n != INPUT}
        if replay:
            with _replay(self.seed, self.device):
                y = functional_call(self.module, params, (x,)) if params else self.module(x)
        else:
            y = functional_call(self.module, params, (x,)) if params else self.module(x)
        return self.objective(y)

    def at(self, deltas: dict[str, torch.Tensor]) -> float:
        """F(w + delta) for one perturbation (a dict of deltas, tensors absent = unperturbed)."""
        base = self.tensors()
        with torch.no_grad():
            return float(self.value({n: base[n] + d for n, d in deltas.items()}))

    def gradients(self) -> dict[str, torch.Tensor]:
        """Analytic gradient of F (autograd through the module's own backward)."""
        base = self.tensors()
        leaves = {n: t.detach().clone().requires_grad_(True) for n, t in base.items()}
        with torch.enable_grad():
            out = self.value(leaves)
            grads = torch.autograd.grad(out, list(leaves.values()), allow_unused=True)
        return {n: (g.detach() if g is not None else torch.zeros_like(base[n]))
                for n, g in zip(leaves, grads)}

    def batch_values(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """F with tensor ``name`` set to ``values[i]``, for every i; vectorised with vmap when the module allows.

        Shape: values (P, *tensor.shape) -> (P,).
        """
        if self._vmap_ok:
            def one(w):
                return self.value({name: w}, replay=False)

            try:
                # randomness="same": one Dropout mask for the whole batch of perturbations,
                # drawn exactly as the unvectorised forward draws it after the same seed.
                with torch.no_grad(), _vmap_ready(self.module), _replay(self.seed, self.device):
                    return vmap(one, randomness="same")(values).detach()
            except Exception as exc:  # an autograd.Function without a vmap rule, ...
                self._vmap_ok = False
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                self.vmap_note = f"not vectorisable ({first[:90]}); one forward per coordinate"
        with torch.no_grad():
            return torch.stack([self.value({name: w}) for w in values]).detach()


# -- the checks --------------------------------------------------------------------------------
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
    if bool(kink):
        return _DirectionOutcome(Verdict.KINK, err)
    err = float(err_t)
    return _DirectionOutcome(Verdict.OK if err <= tol else Verdict.FAIL, err)


def _check_directions(unit: _Unit, names: list[str], grads: dict[str, torch.Tensor], settings: _Settings,
                      gen: torch.Generator, label: str) -> TensorCheck:
    """Random-direction check of the tensors ``names`` jointly (one tensor, or all of them end to end)."""
    base = unit.tensors()
    g_norm = math.sqrt(sum(float(grads[n].pow(2).sum()) for n in names))
    tol = settings.tol(g_norm)
    h = settings.eps
    errs: list[float] = []
    failed = False
    kinks = 0
    attempts = 0
    while len(errs) < settings.directions and attempts < settings.directions + KINK_RETRIES:
        attempts += 1
        v = {n: torch.randn(base[n].shape, generator=gen, dtype=base[n].dtype, device=base[n].device)
             for n in names}
        gv = sum(float((grads[n] * v[n]).sum()) for n in names)

        def f(s, v=v):
            return unit.at({n: s * v[n] for n in names})

        outcome = _judge(gv, f, f(h), f(-h), h, tol)
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
        for start in range(0, suspects.numel(), chunk):
            idx = suspects[start:start + chunk]
            fp2, fm2 = values(idx, h / 2), values(idx, -h / 2)
            fp, fm = fp_all[idx], fm_all[idx]
            e_c, is_kink = _classify(g[idx], d1[idx], (fp2 - fm2) / h, (4 * (fp2 - f0) - (fp - f0)) / h,
                                     (4 * (f0 - fm2) - (f0 - fm)) / h, tol / math.sqrt(n))
            err[idx] = e_c
            kink[idx] = is_kink
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
    return [_check_directions(unit, [n], grads, settings, gen, n) for n in names]


def _structural(unit: _Unit, gen: torch.Generator) -> list[StructuralCheck]:
    """Properties of any correct backward: repeatable, zero in -> zero out, linear in the upstream gradient."""
    base = unit.tensors()
    leaves = {n: t.detach().clone().requires_grad_(True) for n, t in base.items()}
    params = {n: t for n, t in leaves.items() if n != INPUT}
    with torch.enable_grad(), _replay(unit.seed, unit.device):
        x = leaves.get(INPUT, unit.x)
        y = functional_call(unit.module, params, (x,))
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
        StructuralCheck("backward twice", twice <= STRUCTURAL_RTOL * scale,
                        f"two backward passes of one forward differ by {twice:.3g} (|grad| {scale:.3g})"),
        StructuralCheck("zero upstream", zero <= STRUCTURAL_RTOL * scale,
                        f"a zero upstream gradient gives a gradient of norm {zero:.3g}"),
        StructuralCheck("linear in upstream", linear <= STRUCTURAL_RTOL * scale,
                        f"backward({a} G1 {b:+} G2) differs from {a} backward(G1) {b:+} backward(G2) "
                        f"by {linear:.3g} (|grad| {scale:.3g})"),
    ]


def _worst(verdicts) -> Verdict:
    verdicts = list(verdicts)
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.KINK in verdicts:
        return Verdict.KINK
    return Verdict.OK


def _check_layer(info: LayerInfo, inputs: dict, settings: _Settings, gen: torch.Generator, seed: int,
                 depth: int, top: int) -> LayerCheck:
    """Check one layer in isolation; a composite recurses so the guilty leaf is named."""
    row = LayerCheck(index=top, id=info.fqn, path=info.path, name=info.name, type=info.type, depth=depth,
                     verdict=Verdict.OK)
    if info.children:
        row.children = [_check_layer(c, inputs, settings, gen, seed, depth + 1, top) for c in info.children]
        row.verdict = _worst(c.verdict for c in row.children)
        return row
    x = inputs.get(id(info))
    if x is None:  # never reached in the forward pass (cannot happen for a Sequential spec)
        row.note = "not reached by the forward pass: not checked"
        return row
    act = x.numel() + x.shape[0] * math.prod(info.out_shape)
    layer_seed = _seed(seed, "layer " + info.fqn)
    try:
        with torch.no_grad(), _replay(layer_seed, x.device):
            y = info.module(x)
        upstream = torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)
        unit = _Unit(info.module, x, lambda out, upstream=upstream: (upstream * out).sum(), layer_seed)
        if info.target is not None:  # a Custom layer: its backward is hand-written, so probe it
            row.structural = _structural(unit, gen)
        row.tensors = _check_unit(unit, settings, gen, act)
        if any(t.verdict is Verdict.KINK for t in row.tensors) and x.is_floating_point():
            # Kinks in every direction: the real input sits on ties or exact zeros (a max-pool
            # window of ReLU zeros). Move off them and check again there. Jittered ties are
            # still close pairs (a birthday problem over all pairs), so the jitter is 1% of the
            # input's spread and the step shrinks tenfold: a pair then needs to be within ~h/10
            # to be crossed, while float64 round-off, ~1e-16 |F| / h, stays far below rtol.
            scale = max(1e-2 * float(x.std()) if x.numel() > 1 else 0.0, 1e4 * settings.eps)
            jitter = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device) * scale
            unit = _Unit(info.module, x + jitter, unit.objective, layer_seed)
            row.tensors = _check_unit(unit, dataclasses.replace(settings, eps=settings.eps / 10), gen, act)
            row.note = (f"the real input sits on a kink (ties or exact zeros) in every direction tried; "
                        f"checked at the input jittered by N(0, {scale:.1g}^2), step h/10")
    except Exception as exc:  # a custom forward/backward that raises is a failure of that layer
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        row.structural.append(StructuralCheck("runs", False, f"{type(exc).__name__}: {first}"))
    row.verdict = _worst([t.verdict for t in row.tensors]
                         + [Verdict.FAIL for s in row.structural if not s.ok])
    return row


def _check_model(built: Built, x: torch.Tensor, objective: Callable, settings: _Settings,
                 gen: torch.Generator, seed: int) -> LayerCheck:
    """The end-to-end check: the whole model under the objective."""
    unit = _Unit(built.model, x, objective, _seed(seed, "model"))
    act = x.numel() + x.shape[0] * sum(math.prod(i.out_shape) for i in built.walk() if not i.children)
    row = LayerCheck(index=None, id="model", path="layers", name="end-to-end", type="model", depth=0,
                     verdict=Verdict.OK)
    try:
        row.tensors = _check_unit(unit, settings, gen, act, joint=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        row.structural.append(StructuralCheck("runs", False, f"{type(exc).__name__}: {first}"))
    row.verdict = _worst([t.verdict for t in row.tensors] + [Verdict.FAIL for s in row.structural if not s.ok])
    return row


# -- the report --------------------------------------------------------------------------------
def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}"


def _diagnose_layer(layer: LayerCheck) -> str:
    who = f"layer {layer.id} `{layer.name}` ({layer.type})"
    broken = [s for s in layer.structural if not s.ok]
    if broken and broken[0].name == "runs":
        return f"{who} raises while being checked: {broken[0].detail}."
    failed = [t for t in layer.tensors if t.verdict is Verdict.FAIL]
    if failed:
        worst = max(failed, key=lambda t: t.max_rel_error or 0.0)
        names = ", ".join(f"`{t.name}`" for t in failed)
        others = [t for t in layer.tensors if t.verdict is not Verdict.FAIL]
        size = (f"relative error up to {_fmt(worst.max_rel_error)}" if worst.max_rel_error is not None
                else f"error {_fmt(worst.max_abs_error)} where the gradient should be ~0")
        rest = (f"; its {', '.join(f'`{t.name}`' for t in others)} gradient{'s' if len(others) > 1 else ''} "
                f"agree{'' if len(others) > 1 else 's'}" if others else "")
        text = f"{who} computes a wrong gradient for {names} ({size}{rest}): its backward is the suspect"
    else:
        text = f"{who} has a backward that is not a proper vector-Jacobian product"
    if broken:
        text += "; structural: " + "; ".join(f"{s.name} fails ({s.detail})" for s in broken)
    return text + "."


def _report(built: Built, layers: list[LayerCheck], e2e: LayerCheck, settings: _Settings, **kw) -> GradcheckReport:
    leaves = [c for layer in layers for c in layer.walk() if not c.children]
    failing = [c for c in leaves if c.verdict is Verdict.FAIL]
    kinked = [c for c in leaves + [e2e] if c.verdict is Verdict.KINK]
    ok = not failing and e2e.verdict is not Verdict.FAIL
    suspect = failing[0] if failing else None
    if suspect is not None:
        diagnosis = _diagnose_layer(suspect)
        if len(failing) > 1:
            diagnosis = diagnosis[:-1] + (f"; {len(failing) - 1} more layer(s) fail too: "
                                          + ", ".join(c.id for c in failing[1:]) + ".")
    elif e2e.verdict is Verdict.FAIL:
        worst = max((t.max_rel_error or 0.0) for t in e2e.tensors) if e2e.tensors else None
        diagnosis = ("every layer passes on its own but the whole model's gradient does not (relative error "
                     f"{_fmt(worst)}): look for state shared between layers or a forward that changes "
                     "from one call to the next.")
        if any(not s.ok for s in e2e.structural):
            diagnosis = f"the whole model raises while being checked: {e2e.structural[0].detail}."
    elif kinked:
        diagnosis = (f"no gradient error found; {len(kinked)} check(s) sit on kinks (ReLU at 0, max-pool ties, "
                     "Step, abs), inconclusive there: " + ", ".join(c.id for c in kinked) + ".")
    else:
        errors = [t.max_rel_error for c in leaves + [e2e] for t in c.tensors if t.max_rel_error is not None]
        diagnosis = (f"all {len(leaves)} layers and the end-to-end check agree with central differences "
                     f"(largest relative error {_fmt(max(errors) if errors else None)}).")
    return GradcheckReport(
        name=built.spec.name or (built.spec.path.stem if built.spec.path else "model"), ok=ok,
        suspect=suspect.index if suspect else None, suspect_id=suspect.id if suspect else None,
        suspect_name=suspect.name if suspect else None, diagnosis=diagnosis, layers=layers, end_to_end=e2e,
        exhaustive=settings.exhaustive, directions=settings.directions, rtol=settings.rtol, atol=settings.atol,
        eps=settings.eps, **kw)
