"""Exhaustive mode on a plain Sequential: the prefix runs once, each layer's perturbed outputs twice used.

Perturbing a coordinate of top-level layer k changes nothing before it: the input reaching layer k
is the one recorded by the forward pass. So for every coordinate of layer k's tensors (its input,
for the first layer, which is the model's input), the layer's perturbed outputs are computed once,
batched (vmap over the perturbed copies), and serve both checks:

- the layer in isolation: ``<G_k, y>`` for its upstream gradient ``G_k``;
- end to end: the objective of layers ``k+1 ..`` run on those outputs, vectorised over them
  (``vmap``: one batched product per layer, not one small product per perturbed copy).

That is the whole numerical work of torch's slow mode, every coordinate end to end, without
re-running the prefix or the perturbed layer. It applies when the model is a ``Sequential`` of
torch layers that draw no random numbers and share no parameters (anything else: the general
path, one unit at a time); what it computes are the same values, to round-off. The one failure
it gives way on is :class:`NotBatchable` (vmap cannot batch a layer's op); then every check runs
on its own and the report's ``path`` says so.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from nncli.build import Built
from nncli.gradcheck.exhaustive import _chunk, _Coordinates
from nncli.gradcheck.replay import _vmap_ready
from nncli.gradcheck.unit import _DETERMINISTIC, INPUT, _Unit


class NotBatchable(RuntimeError):
    """``torch.func.vmap`` refused an op of the model (no batching rule that can run, an ``.item()``,
    an in-place write into an unbatched tensor): the shared sweeps cannot run."""


def _is_vmap_refusal(exc: RuntimeError) -> bool:
    """Whether a RuntimeError is vmap saying it cannot batch something (its messages name it)."""
    text = str(exc).lower()
    return "vmap" in text or "batching rule" in text or "batched tensor" in text


def _plain(built: Built, inputs: dict) -> bool:
    """A Sequential of deterministic torch leaves, each reached by the forward pass, no shared parameters."""
    model = built.model
    if not isinstance(model, nn.Sequential) or len(built.layers) != len(model):
        return False
    for info, module in zip(built.layers, model):
        if (
            info.children
            or info.target is not None
            or info.module is not module
            or type(module) not in _DETERMINISTIC
            or type(module) is nn.Sequential
            or id(info) not in inputs
        ):
            return False
    params = [p for m in model for p in m.parameters()]
    return len({id(p) for p in params}) == len(params)


def _sweeps(
    built: Built, units: list[_Unit], model_unit: _Unit, upstreams: list[torch.Tensor], h: float, act_elements: int
) -> tuple[list[dict], dict]:
    """``(F(w + h e_j), F(w - h e_j))`` for every coordinate j of every tensor: per layer (its
    isolated objective) and end to end (the model's objective), from one evaluation of each layer.

    Returns: one ``{tensor name: (plus, minus)}`` per layer, and the same keyed by the model's names
    ("input", "3.weight").

    Raises:
        NotBatchable: vmap cannot batch one of the layers; any other error propagates.
    """
    try:
        return _sweep_all(built, units, model_unit, upstreams, h, act_elements)
    except RuntimeError as exc:
        if _is_vmap_refusal(exc):
            raise NotBatchable(str(exc)) from exc
        raise


def _sweep_all(
    built: Built, units: list[_Unit], model_unit: _Unit, upstreams: list[torch.Tensor], h: float, act_elements: int
) -> tuple[list[dict], dict]:
    model = built.model
    per_layer: list[dict] = []
    end_to_end: dict = {}
    model_names = set(model_unit.tensors())
    with torch.no_grad(), _vmap_ready(model):
        for k, (unit, upstream) in enumerate(zip(units, upstreams)):
            suffix = list(model)[k + 1 :]

            def tail(y, suffix=suffix):
                for module in suffix:
                    y = module(y)
                return model_unit.objective(y)

            per_layer.append({})
            for name, base in unit.tensors().items():
                e2e_name = INPUT if name == INPUT and k == 0 else unit.prefix + name
                both = e2e_name in model_names and (name != INPUT or k == 0)
                n = base.numel()
                chunk = _chunk(n, act_elements)
                coords = _Coordinates(base, chunk)
                outputs = vmap(_layer_fn(unit, name))
                ends = vmap(tail)
                sums = torch.empty(2, n, dtype=torch.float64, device=base.device)
                e2e = torch.empty(2, n, dtype=torch.float64, device=base.device) if both else None
                for start in range(0, n, chunk):
                    idx = torch.arange(start, min(n, start + chunk), device=base.device)
                    for row, step in enumerate((h, -h)):
                        # both objectives read before the copies are restored: an output may be a
                        # view of them (Flatten, Identity)
                        def evaluate(batch, row=row, idx=idx):
                            y = outputs(batch)
                            sums[row, idx] = (y * upstream).reshape(idx.numel(), -1).sum(1)
                            if e2e is not None:
                                e2e[row, idx] = ends(y)

                        coords.values(idx, step, evaluate)
                per_layer[-1][name] = (sums[0], sums[1])
                if e2e is not None:
                    end_to_end[e2e_name] = (e2e[0], e2e[1])
    return per_layer, end_to_end


def _layer_fn(unit: _Unit, name: str):
    """One layer's output with tensor ``name`` replaced (the vmapped function)."""
    if name == INPUT:
        return lambda x: unit.module(x)
    return lambda w: functional_call(unit.module, {name: w}, (unit.x,))
