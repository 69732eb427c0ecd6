"""Default mode, the isolated checks of torch's own layers prepared together.

A plain layer is a torch layer that draws no random numbers (Linear, Conv, norms, activations,
pools; not Dropout, not Custom layers, which keep their own path with structural checks). Each
is still checked in isolation, on its recorded input, under ``<G_k, layer_k(x_k)>`` with its own
random ``G_k`` and its own directions per tensor; what is shared is the machinery:

- one backward pass gives every plain layer's gradients (and, when every layer is plain, the
  model's, from separate leaves): the objective is the sum of the isolated objectives, whose
  gradient with respect to layer k's tensors is layer k's alone (the layers run on separate
  recorded inputs, not chained);
- the finite differences of all small tensors run as one ``vmap``ped call, each argument one
  tensor of one layer with its 2k perturbed copies and each layer's ``<G, y>`` read on its own
  (the input copies of a layer that maps examples one by one run as a larger batch, no vmap);
  the model's joint evaluations join that call when it is small. One call instead of one per
  layer: their Python overhead was most of the time below ~100k parameters;
- large tensors are evaluated one direction at a time in the run's reused buffers, each
  perturbed weight written once for its layer's check and the model's (the same draws).

The numbers are those of the per-layer path, to round-off; only the order of the random draws
differs. What the fused path cannot run (vmap refuses a layer) falls back to that path.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import vmap

from nncli.build import Built, LayerInfo
from nncli.gradcheck.numeric import BATCHED_BYTES, _Draws, _evaluate, _evaluate_each, _key
from nncli.gradcheck.state import _seed, _vmap_ready
from nncli.gradcheck.unit import _DETERMINISTIC, INPUT, _Unit

# Perturbed copies and outputs of one vectorised call of small tensors; more members: more calls.
GROUP_BYTES = 16 * 2**20


@dataclass
class _Pre:
    """What the caller drew and evaluated for one layer's check."""

    upstream: torch.Tensor  # G of <G, layer(x)>
    unit: _Unit | None = None  # the unit those were made with (reused by the check)
    grads: dict | None = None  # tensor name -> analytic gradient
    blocks: dict | None = None  # tensor name -> its k directions
    triples: dict | None = None  # tensor name -> [(<g, v_i>, F(w + h v_i), F(w - h v_i))]
    sweeps: dict | None = None  # exhaustive: tensor name -> (F(w + h e_j), F(w - h e_j)) for all j


def _plain_leaf(info: LayerInfo, inputs: dict) -> bool:
    module = info.module
    return (not info.children and info.target is None and type(module) in _DETERMINISTIC
            and type(module) is not nn.Sequential and id(info) in inputs)


def _projection(upstream: torch.Tensor):
    return lambda out: (upstream * out).sum()


def _prepare(built: Built, inputs: dict, k: int, h: float, gen: torch.Generator, seed: int, draws: _Draws,
             x: torch.Tensor, objective) -> tuple[dict[int, _Pre], _Pre | None]:
    """Upstream gradients, gradients, directions and evaluations of every plain leaf, by ``id(info)``;
    and the end-to-end check's too (its gradient from the same backward pass, its evaluations in the
    same vectorised call) when every layer is plain and the model small, else None."""
    infos = [info for info in built.walk() if _plain_leaf(info, inputs)]
    if not infos:
        return {}, None
    model = _Unit(built.model, x, objective, _seed(seed, "model"), prefix="")
    # every layer plain (and no container draws random numbers): the model joins the shared work
    whole = len(infos) == sum(1 for info in built.walk() if not info.children) and not model.draws_random()
    units, leaves, total = [], [], 0.0
    with torch.enable_grad():
        for info in infos:
            unit = _Unit(info.module, inputs[id(info)], None, _seed(seed, "layer " + info.fqn),
                         prefix=info.fqn + ".")
            leaf = {n: t.detach().requires_grad_(True) for n, t in unit.tensors().items()}
            y = unit.output(leaf)
            upstream = torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)
            unit.objective = _projection(upstream)
            total = total + unit.objective(y)
            units.append((info, unit, upstream))
            leaves.append(leaf)
        if whole:  # separate leaves over the same weights: the model's gradient kept apart from the layers'
            leaves.append({n: t.detach().requires_grad_(True) for n, t in model.tensors().items()})
            total = total + model.value(leaves[-1])
        flat = [t for leaf in leaves for t in leaf.values()]
        found = iter(torch.autograd.grad(total, flat, allow_unused=True))
    grads = [{n: (g.detach() if (g := next(found)) is not None else torch.zeros_like(t)) for n, t in leaf.items()}
             for leaf in leaves]
    pre = {}
    for (info, unit, upstream), unit_grads in zip(units, grads):
        base = unit.tensors()
        blocks = {n: draws.block(_key(unit, n), k, gen, base[n]) for n in base}
        pre[id(info)] = _Pre(upstream, unit, unit_grads, blocks, {})
    end_to_end = None
    if whole and model.tensors():
        base = model.tensors()
        blocks = {n: draws.block(_key(model, n), k, gen, base[n]) for n in base}
        end_to_end = _Pre(None, model, grads[-1], blocks)
    _evaluate_all([(unit, pre[id(info)]) for info, unit, _ in units], k, h, draws, model, end_to_end)
    return pre, end_to_end


def _small(tensors: list[torch.Tensor], k: int) -> bool:
    return 2 * k * sum(t.numel() * t.element_size() for t in tensors) <= BATCHED_BYTES


def _evaluate_all(units: list[tuple[_Unit, _Pre]], k: int, h: float, draws: _Draws, model: _Unit,
                  end_to_end: _Pre | None) -> None:
    """Fill every ``_Pre.triples``: the small tensors' (and a small model's, joint) in one vectorised
    call; the large ones' one evaluation at a time, each perturbed copy shared with the model's."""
    small, large = [], []
    for unit, pre in units:
        for n, t in unit.tensors().items():
            (small if _small([t], k) else large).append((unit, pre, n))
    batched_model = end_to_end is not None and _small(list(model.tensors().values()), k)
    if end_to_end is not None and not batched_model:
        large = _evaluate_together(large, k, model, end_to_end, h, draws)
    for unit, pre, n in large:
        pre.triples[n] = _evaluate(unit, [n], unit.tensors(), pre.grads, {n: pre.blocks[n]}, h, draws)
    # one call per group of members whose copies and outputs fit in GROUP_BYTES (the model's joint
    # evaluations, small by then, join the first)
    groups, size = [[]], 0
    for unit, pre, n in small:
        need = 2 * k * 8 * (unit.tensors()[n].numel() + pre.upstream.numel())
        if groups[-1] and size + need > GROUP_BYTES:
            groups.append([])
            size = 0
        groups[-1].append((unit, pre, n))
        size += need
    for j, group in enumerate(groups):
        if not group and not (batched_model and j == 0):
            continue
        try:
            _evaluate_batched(group, h, model, end_to_end if batched_model and j == 0 else None)
        except Exception:  # a layer vmap cannot batch: the per-layer path, one call per layer
            for unit, pre, n in group:
                pre.triples.update(_evaluate_each(unit, [n], unit.tensors(), pre.grads, {n: pre.blocks[n]}, h,
                                                  draws))


def _evaluate_together(large: list[tuple], k: int, model: _Unit, end_to_end: _Pre, h: float,
                       draws: _Draws) -> list:
    """The model's evaluations, direction by direction, with every large parameter's perturbed copy
    written once and also used by that parameter's layer check (their directions are the same
    draws). Returns the large tensors left to evaluate on their own (layer inputs)."""
    base = model.tensors()
    owners = {_key(unit, n): (unit, pre, n) for unit, pre, n in large if _key(unit, n) is not None}
    owners = {key: o for key, o in owners.items() if key in base and o[1].blocks[o[2]] is end_to_end.blocks[key]}
    triples = []
    with torch.no_grad():
        for i in range(k):
            gv_model, plus, minus = 0.0, {}, {}
            for name, w in base.items():
                v = draws.buffer("v", w).copy_(end_to_end.blocks[name][i])  # widened in place
                gv_model += float(torch.dot(end_to_end.grads[name].reshape(-1), v.reshape(-1)))
                plus[name] = torch.add(w, v, alpha=h, out=draws.buffer("+" + name, w))
                minus[name] = torch.add(w, v, alpha=-h, out=draws.buffer("-" + name, w))
                if name in owners:
                    unit, pre, n = owners[name]
                    gv = float(torch.dot(pre.grads[n].reshape(-1), v.reshape(-1)))
                    pre.triples.setdefault(n, []).append(
                        (gv, float(unit.value({n: plus[name]})), float(unit.value({n: minus[name]}))))
            triples.append((gv_model, float(model.value(plus)), float(model.value(minus))))
    end_to_end.triples = triples
    return [(unit, pre, n) for unit, pre, n in large if _key(unit, n) not in owners]


def _rows(base: torch.Tensor, block: torch.Tensor, h: float) -> torch.Tensor:
    """The 2k perturbed copies of a tensor: row 2i is w + h v_i, row 2i + 1 is w - h v_i."""
    k = block.shape[0]
    signs = torch.tensor([h, -h], dtype=base.dtype, device=base.device).view(1, 2, *([1] * base.dim()))
    return torch.addcmul(base, signs, block.to(base.dtype).unsqueeze(1)).reshape(2 * k, *base.shape)


def _gvs(block: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return block.to(grad.dtype).reshape(block.shape[0], -1) @ grad.reshape(-1)


# Layers that treat every example on its own in any mode: perturbed copies of their input can run
# as one larger batch in a plain call, without vmap (Softmax, Flatten and BatchNorm: see _rowwise).
_ROWWISE = {
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.LayerNorm, nn.GroupNorm, nn.Identity, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.LeakyReLU,
    nn.ELU, nn.Softplus, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
}


def _rowwise(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module`` maps each example of a batch on its own (so copies can share one batch)."""
    kind = type(module)
    if kind in (nn.Softmax, nn.LogSoftmax):  # over a dimension other than the batch's
        return module.dim is not None and (module.dim >= 1 or -x.dim() < module.dim < 0)
    if kind is nn.Flatten:
        return module.start_dim >= 1 or -x.dim() < module.start_dim < 0
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):  # running statistics, not the batch's
        return not module.training and module.track_running_stats and module.running_mean is not None
    return kind in _ROWWISE


def _evaluate_batched(members: list[tuple], h: float, model: _Unit, end_to_end: _Pre | None) -> None:
    """One tensor of a layer per member, each with its 2k perturbed copies, and the model with all
    of its tensors perturbed together: one vmap call (a row-wise layer's input copies: one plain
    call as a larger batch), each layer's objective ``<G, y>`` read on its own outside."""
    rows = {}  # run-wide key -> rows, so the model reuses the layers' perturbed weights
    plain, batched = [], []
    for unit, pre, n in members:
        key = _key(unit, n) or f"{id(unit)}.{n}"
        rows[key] = values_n = _rows(unit.tensors()[n], pre.blocks[n], h)
        (plain if n == INPUT and _rowwise(unit.module, unit.x) else batched).append((unit, pre, n, values_n))
    names, model_values = [], []
    if end_to_end is not None:
        base = model.tensors()
        names = list(base)
        model_values = [rows[_key(model, n)] if _key(model, n) in rows else _rows(base[n], end_to_end.blocks[n], h)
                        for n in names]

    def each(*ws):
        out = [unit.output({n: w}, replay=False) for (unit, _, n, _), w in zip(batched, ws)]
        if names:
            out.append(model.value(dict(zip(names, ws[len(batched):])), replay=False))
        return tuple(out)

    with torch.no_grad(), ExitStack() as stack:
        outputs = [(pre, unit.module(v.flatten(0, 1)).unflatten(0, v.shape[:2])) for unit, pre, _, v in plain]
        for module in {id(m): m for m in [u.module for u, *_ in batched] + [model.module]}.values():
            stack.enter_context(_vmap_ready(module))
        found = vmap(each)(*[v for *_, v in batched], *model_values) if batched or names else ()
        outputs += [(pre, y) for (_, pre, _, _), y in zip(batched, found)]
        # <G, y> per copy, for every layer: the objective of its isolated check
        values = torch.stack([(y * pre.upstream).flatten(1).sum(1) for pre, y in outputs]
                             + ([found[-1]] if names else [])).tolist()
    for (unit, pre, n, _), row in zip(plain + batched, values):
        gv = _gvs(pre.blocks[n], pre.grads[n]).tolist()
        pre.triples[n] = [(gv[i], row[2 * i], row[2 * i + 1]) for i in range(len(gv))]
    if end_to_end is not None:
        gv = sum(_gvs(end_to_end.blocks[n], end_to_end.grads[n]) for n in names).tolist()
        row = values[-1]
        end_to_end.triples = [(gv[i], row[2 * i], row[2 * i + 1]) for i in range(len(gv))]
