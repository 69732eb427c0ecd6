"""Per-layer isolation, as Caffe's checker does: one forward pass records the real input reaching
every layer (nested ones inside Residual/Repeat too); each leaf layer is then checked on its own,
on that input, under ``<G, layer(x)>`` for a random upstream gradient ``G``, so a wrong backward
is pinned to its layer. Then the whole model once, end to end. What exhaustive mode's shared
sweeps evaluated beforehand (:mod:`~nncli.gradcheck.suffix`) comes in as a :class:`_Pre` per
layer; the checks, verdicts and notes are the same.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nncli.build import Built, LayerInfo
from nncli.errors import InputError
from nncli.gradcheck import replay as rng
from nncli.gradcheck.custom import _deterministic, _structural
from nncli.gradcheck.exhaustive import _check_exhaustive
from nncli.gradcheck.numeric import _check_directions, _Draws, _evaluate_each, _key, _Settings
from nncli.gradcheck.replay import _seed
from nncli.gradcheck.report import LayerCheck, StructuralCheck, TensorCheck, Verdict, _worst
from nncli.gradcheck.suffix import NotBatchable, _sweeps
from nncli.gradcheck.unit import INPUT, _Unit, is_input

# Which implementation checked a report's numbers (GradcheckReport.path): every mode can run
# per layer; exhaustive mode on a plain Sequential shares each layer's perturbed outputs.
PER_LAYER = "per_layer"
EXHAUSTIVE_SUFFIX = "exhaustive_suffix"


@dataclass
class _Pre:
    """What exhaustive mode's shared sweeps made for one check before it runs."""

    upstream: torch.Tensor | None  # G of <G, layer(x)> (None for the end-to-end check)
    unit: _Unit | None = None  # the unit the sweeps were made with (reused by the check)
    sweeps: dict | None = None  # tensor name -> (F(w + h e_j), F(w - h e_j)) for all j


def _projection(upstream: torch.Tensor):
    return lambda out: (upstream * out).sum()


def _record_inputs(built: Built, x: torch.Tensor | tuple, seed: int) -> dict[int, torch.Tensor | tuple]:
    """The real input reaching every layer (nested ones too), from one forward pass: a tensor, or
    a tuple of them for a layer that takes several (a Merge, a decoder's memory). A module applied
    more than once (``share``) keeps the input of its first use, where it is checked.

    Raises:
        InputError: a layer's output is not finite: finite differences of inf/NaN say nothing
            about the backward, so the first such layer (in execution order) is named instead.
    """
    seen: dict[int, torch.Tensor | tuple] = {}
    nonfinite: list = []
    hooks = []
    for info in built.walk():
        if info.shared:  # the module of an earlier element: its own info records it
            continue

        def hook(module, args, key=id(info)):
            if key not in seen:
                tensors = tuple(a.detach().clone() for a in args if isinstance(a, torch.Tensor))
                seen[key] = tensors[0] if len(tensors) == 1 else tensors

        hooks.append(info.module.register_forward_pre_hook(hook))
        if not info.children:

            def out_hook(module, args, output, info=info):
                if not nonfinite and isinstance(output, torch.Tensor) and not torch.isfinite(output).all():
                    nonfinite.append(info)

            hooks.append(info.module.register_forward_hook(out_hook))
    xs = x if isinstance(x, tuple) else (x,)
    try:
        with torch.no_grad(), rng._replay(seed, xs[0].device):
            built.model(*xs)
    finally:
        for h in hooks:
            h.remove()
    if nonfinite:
        info = nonfinite[0]
        came = (
            "its input is already not finite"
            if not all(torch.isfinite(t).all() for t in _tuple(seen[id(info)]))
            else "its input is finite"
        )
        raise info.spec.where.error(
            f"the forward pass is not finite: {info.type} ({info.name}) gives inf or NaN in float64 "
            f"on the gradcheck batch ({came}), so no gradient can be checked",
            hint="look at that layer's init scale (spec `init`) or at the input data's values",
            kind=InputError,
        )
    return seen


def _tuple(x: torch.Tensor | tuple) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def _input_names(info: LayerInfo, count: int) -> tuple[str, ...]:
    """How a layer's inputs are named among its checked tensors: ``input`` alone; with several,
    ``input NAME`` by the tensors a Merge joins, and ``input memory`` for a decoder's memory."""
    if count == 1:
        return (INPUT,)
    sources = tuple(getattr(info.spec, "sources", ()) or ())
    if len(sources) == count and len(set(sources)) == count:
        return tuple(f"{INPUT} {n}" for n in sources)
    if count == 2 and getattr(info.spec, "memory", None):
        return (INPUT, f"{INPUT} memory")
    return (INPUT,) + tuple(f"{INPUT} {k}" for k in range(1, count))


def _check_unit(
    unit: _Unit,
    settings: _Settings,
    gen: torch.Generator,
    act_elements: int,
    joint: bool = False,
    draws: _Draws | None = None,
    pre: _Pre | None = None,
) -> list[TensorCheck]:
    """All tensors of a unit: per tensor, or (end to end, default mode) all jointly.

    ``pre``: exhaustive mode's evaluations made beforehand (:mod:`~nncli.gradcheck.suffix`);
    whatever it lacks is made here.
    """
    grads = unit.gradients()
    names = list(unit.tensors())
    if settings.exhaustive:
        sweeps = (pre.sweeps if pre is not None else None) or {}
        return [_check_exhaustive(unit, n, grads[n], settings, act_elements, sweeps.get(n)) for n in names]
    draws = draws if draws is not None else _Draws()
    if joint and len(unit.input_names) > 1:
        # several inputs: each on its own, then the parameters jointly, so a wrong gradient is
        # attributed to the input whose path carries it
        inputs = [n for n in names if is_input(n)]
        params = [n for n in names if not is_input(n)]
        checks = [_check_directions(unit, [n], grads, settings, gen, n, draws=draws) for n in inputs]
        if params:
            checks.append(_check_directions(unit, params, grads, settings, gen, "parameters", draws=draws))
        return checks
    if joint:
        label = "input + parameters" if INPUT in names else "parameters"
        return [_check_directions(unit, names, grads, settings, gen, label, draws=draws)]
    # Each tensor on its own; a small unit's 2k evaluations of every tensor in one vectorised call.
    base = unit.tensors()
    blocks = {n: draws.block(_key(unit, n), settings.directions, gen, base[n]) for n in names}
    triples = _evaluate_each(unit, names, base, grads, blocks, settings.eps, draws)
    return [
        _check_directions(unit, [n], grads, settings, gen, n, drawn=({n: blocks[n]}, triples[n]), draws=draws)
        for n in names
    ]


def _check_layer(
    info: LayerInfo,
    inputs: dict,
    settings: _Settings,
    gen: torch.Generator,
    seed: int,
    depth: int,
    top: int,
    draws: _Draws | None = None,
    pres: dict | None = None,
) -> LayerCheck:
    """Check one layer in isolation; a composite recurses so the guilty leaf is named.

    ``pres``: ``id(info)`` -> what the caller drew and evaluated for that layer (a :class:`_Pre`).
    """
    row = LayerCheck(
        index=top, id=info.fqn, path=info.path, name=info.name, type=info.type, depth=depth, verdict=Verdict.OK
    )
    if info.children:
        row.children = [
            _check_layer(c, inputs, settings, gen, seed, depth + 1, top, draws, pres) for c in info.children
        ]
        row.verdict = _worst(c.verdict for c in row.children)
        return row
    x = inputs.get(id(info))
    row.note = _unchecked(info, x)
    if row.note is not None:
        return row
    act = sum(t.numel() for t in _tuple(x)) + _tuple(x)[0].shape[0] * math.prod(info.out_shape)
    layer_seed = _seed(seed, "layer " + info.fqn)
    try:
        if info.target is not None:  # a Custom forward must repeat itself before it is differenced
            repeat = _deterministic(info.module, x, layer_seed)
            if not repeat.ok:
                row.structural.append(repeat)
                row.verdict = Verdict.NONDETERMINISTIC
                return row
        pre = (pres or {}).get(id(info))
        if pre is not None and pre.unit is not None:
            unit = pre.unit
        else:
            upstream = pre.upstream if pre is not None else _upstream(info, x, layer_seed, gen)
            names = _input_names(info, len(_tuple(x)))
            unit = _Unit(info.module, x, _projection(upstream), layer_seed, prefix=info.fqn + ".", input_names=names)
        if info.target is not None:  # a Custom layer: its backward is hand-written, so probe it
            row.structural = _structural(unit, gen)
        row.tensors = _check_unit(unit, settings, gen, act, draws=draws, pre=pre)
        _recheck_off_kinks(row, info, x, unit, settings, gen, act, draws, layer_seed)
        for t in row.tensors:
            if t.name in info.tied:
                t.note = f"tied: the {t.name} of `{info.tied[t.name]}`; here this layer's part of its gradient"
    except Exception as exc:
        if not _raised_by_custom(exc, [info]):  # a built-in layer that raises is nncli's own bug
            raise
        row.structural.append(_runs_failed(exc))
    row.verdict = _worst([t.verdict for t in row.tensors] + [Verdict.FAIL for s in row.structural if not s.ok])
    return row


def _unchecked(info: LayerInfo, x) -> str | None:
    """Why a leaf layer is not checked (None: it is)."""
    if info.shared:
        return f"applies `{info.shared}` again: one module, checked once, at its first use"
    if x is None:  # never reached in the forward pass (cannot happen for a Sequential spec)
        return "not reached by the forward pass: not checked"
    if not any(t.is_floating_point() for t in _tuple(x)) and not any(p.requires_grad for p in info.module.parameters()):
        return "moves token ids and has no weights: nothing to differentiate"
    return None


def _raised_by_custom(exc: BaseException, infos: list[LayerInfo]) -> bool:
    """Whether ``exc`` was raised in the code of one of ``infos``' Custom layers.

    A Custom layer's forward or backward that raises is a finding about that layer (a FAIL
    verdict); anything else raised while checking is a bug in nncli and must surface as one. The
    traceback tells them apart: it passes through a frame of the Custom class's own file (its
    forward, an autograd Function's backward beside it) or a method of the Custom module itself
    (a ``package.module:Class`` target whose file is a library's).
    """
    modules = [info.module for info in infos if info.target is not None and not info.children]
    if not modules:
        return False
    files = set()
    for module in modules:
        try:
            files.add(os.path.realpath(inspect.getfile(type(module))))
        except (TypeError, OSError):  # a class without a source file: only its frames can tell
            pass
    ids = {id(m) for m in modules}
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if os.path.realpath(frame.f_code.co_filename) in files or id(frame.f_locals.get("self")) in ids:
            return True
        tb = tb.tb_next
    return False


def _runs_failed(exc: BaseException) -> StructuralCheck:
    """The failed "runs" check of a layer whose code raised: the exception and its first line."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return StructuralCheck("runs", False, f"{type(exc).__name__}: {first}")


def _recheck_off_kinks(
    row: LayerCheck,
    info: LayerInfo,
    x: torch.Tensor,
    unit: _Unit,
    settings: _Settings,
    gen: torch.Generator,
    act: int,
    draws: _Draws | None,
    layer_seed: int,
) -> None:
    """Check a layer again at a jittered input when its directions hit kinks; ``row`` updated."""
    kinked = [t for t in row.tensors if t.verdict is Verdict.KINK]
    # A FAIL among directions that hit kinks is not conclusive either: many kinks crossed at
    # once add slope jumps of random signs that can cancel below the kink test's threshold.
    near_kinks = [t for t in row.tensors if t.verdict is Verdict.FAIL and t.kinks]
    floats = [t for t in _tuple(x) if t.is_floating_point()]
    if not (kinked or near_kinks) or not floats:
        return
    # Kinks in every direction: the real input sits on ties or exact zeros (a max-pool window of
    # ReLU zeros). Move off them and check again there; a wrong backward still fails there.
    # Jittered ties are still close pairs (a birthday problem over all pairs), so the jitter is
    # 1% of the input's spread and the step shrinks tenfold: a pair then needs to be within
    # ~h/10 to be crossed, while float64 round-off, ~1e-16 |F| / h, stays far below rtol.
    scale = max(max(1e-2 * float(t.std()) if t.numel() > 1 else 0.0 for t in floats), 1e4 * settings.eps)
    moved = tuple(
        t + torch.randn(t.shape, generator=gen, dtype=t.dtype, device=t.device) * scale if t.is_floating_point() else t
        for t in _tuple(x)
    )
    unit = _Unit(info.module, moved, unit.objective, layer_seed, input_names=unit.input_names)
    row.tensors = _check_unit(unit, dataclasses.replace(settings, eps=settings.eps / 10), gen, act, draws=draws)
    where = (
        "in every direction tried"
        if kinked
        else f"in {sum(t.kinks for t in near_kinks)} direction(s), where a difference then failed"
    )
    row.note = (
        f"the real input sits on a kink (ties or exact zeros) {where}; "
        f"checked at the input jittered by N(0, {scale:.1g}^2), step h/10"
    )


def _upstream(info: LayerInfo, x: torch.Tensor, layer_seed: int, gen: torch.Generator) -> torch.Tensor:
    """The random upstream gradient ``G`` of a layer's isolated objective ``<G, layer(x)>``."""
    xs = _tuple(x)
    with torch.no_grad(), rng._replay(layer_seed, xs[0].device):
        y = info.module(*xs)
    return torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)


def _model_act(built: Built, x: torch.Tensor | tuple) -> int:
    xs = _tuple(x)
    return sum(t.numel() for t in xs) + xs[0].shape[0] * sum(
        math.prod(i.out_shape) for i in built.walk() if not i.children
    )


def model_input_names(built: Built) -> tuple[str, ...]:
    """How the model's inputs are named among the end-to-end check's tensors: ``input`` for one,
    ``input NAME`` for each of several."""
    names = [row[0] for row in built.inputs]
    return (INPUT,) if len(names) <= 1 else tuple(f"{INPUT} {n}" for n in names)


def _check_exhaustive_plain(
    built: Built,
    x: torch.Tensor,
    inputs: dict,
    objective: Callable,
    settings: _Settings,
    gen: torch.Generator,
    seed: int,
) -> tuple[list, LayerCheck, str]:
    """Exhaustive mode on a plain Sequential: every layer's perturbations evaluated once for its own
    check and the end-to-end one (:mod:`nncli.gradcheck.suffix`); the same checks and verdicts.

    Returns the layers' checks, the end-to-end check and the path that ran: :data:`EXHAUSTIVE_SUFFIX`,
    or :data:`PER_LAYER` when vmap cannot batch a layer (:class:`~nncli.gradcheck.suffix.NotBatchable`,
    the one failure the shared sweeps give way on)."""
    units, upstreams = [], []
    for info in built.layers:  # the upstream gradients, drawn in the order the general path draws them
        layer_seed = _seed(seed, "layer " + info.fqn)
        upstreams.append(_upstream(info, inputs[id(info)], layer_seed, gen))
        units.append(
            _Unit(info.module, inputs[id(info)], _projection(upstreams[-1]), layer_seed, prefix=info.fqn + ".")
        )
    model_unit = _Unit(built.model, x, objective, _seed(seed, "model"), prefix="")
    path = EXHAUSTIVE_SUFFIX
    try:
        per_layer, end_to_end = _sweeps(built, units, model_unit, upstreams, settings.eps, _model_act(built, x))
    except NotBatchable:  # each check evaluates its own coordinates, and reports what raises
        per_layer, end_to_end, path = [None] * len(units), None, PER_LAYER
    pres = {
        id(info): _Pre(up, unit, sweeps=sweeps)
        for info, up, unit, sweeps in zip(built.layers, upstreams, units, per_layer)
    }
    layers = [
        _check_layer(info, inputs, settings, gen, seed, depth=0, top=info.index, pres=pres) for info in built.layers
    ]
    e2e = _check_model(built, x, objective, settings, gen, seed, pre=_Pre(None, model_unit, sweeps=end_to_end))
    return layers, e2e, path


def _check_model(
    built: Built,
    x: torch.Tensor,
    objective: Callable,
    settings: _Settings,
    gen: torch.Generator,
    seed: int,
    draws: _Draws | None = None,
    pre: _Pre | None = None,
) -> LayerCheck:
    """The end-to-end check: the whole model under the objective."""
    unit = (
        pre.unit
        if pre is not None and pre.unit is not None
        else _Unit(built.model, x, objective, _seed(seed, "model"), prefix="", input_names=model_input_names(built))
    )
    act = _model_act(built, x)
    row = LayerCheck(
        index=None, id="model", path="layers", name="end-to-end", type="model", depth=0, verdict=Verdict.OK
    )
    try:
        row.tensors = _check_unit(unit, settings, gen, act, joint=True, draws=draws, pre=pre)
        near_kinks = [t for t in row.tensors if t.verdict is Verdict.FAIL and t.kinks]
        if near_kinks and not settings.exhaustive:
            # As for a layer: a FAIL among directions that hit kinks is not conclusive (many kinks
            # crossed at once, jumps of both signs, can pass the kink test; seen on ResNets whose
            # batch norm runs over 2 values). A tenth of the step crosses a tenth of them; a
            # wrong gradient fails there just the same. (Kinks alone stay inconclusive: kink.)
            row.tensors = _check_unit(unit, dataclasses.replace(settings, eps=settings.eps / 10), gen, act, joint=True)
            row.note = (
                f"a difference failed where {near_kinks[0].kinks} direction(s) hit kinks; "
                "checked again along new directions, step h/10"
            )
    except Exception as exc:
        if not _raised_by_custom(exc, list(built.walk())):
            raise
        row.structural.append(_runs_failed(exc))
    row.verdict = _worst([t.verdict for t in row.tensors] + [Verdict.FAIL for s in row.structural if not s.ok])
    return row
