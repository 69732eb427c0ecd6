"""One probe measurement: which layers are probed, the probe batch, and one forward and backward
pass with hooks on them, reduced to per-layer statistics.

The probed points are the network's main path (Repeats and Blocks expanded, each Residual and
each Parallel one point with its own layers, every branch's, as ``inner`` points). :func:`measure` runs the model in training mode on a batch and a
fixed projection ``r`` of the output, catches every point's output with forward hooks, takes the
gradients with ``torch.autograd.grad`` and leaves the model exactly as it found it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nncli.build import Built, LayerInfo
from nncli.data.multi import Inputs
from nncli.errors import InputError
from nncli.layer_kinds import RELU_FAMILY, WEIGHT_LAYERS
from nncli.modules import Block, GraphBlock, GraphRepeat, Parallel, Repeat, Residual


# -- which layers are probed -------------------------------------------------------------------
@dataclass
class Point:
    """A probed layer: a main-path row, or (``inner``) a layer inside a Residual or Parallel.

    ``name``/``path``/``shared``: where a module is applied again (``share``), the rows of that
    use: their own names, and the element whose module they apply.
    """

    info: LayerInfo
    index: int | None
    inner: list[Point] = field(default_factory=list)
    name: str | None = None
    path: str | None = None
    shared: str | None = None
    output: bool = False  # the row giving the spec's first output (``outputs:``), where R ends


def probe_points(built: Built) -> list[Point]:
    """The main path of a built network: Repeats and Blocks expanded, Residuals and Parallels one
    row each (their output, after the add or merge, is the point on the path). On a graph spec
    (named tensors), every element in the order the graph runs them, branches one after another;
    a shared module once per use, the later uses' rows named after the element that applies it;
    the row giving the first of several outputs is marked (``output``).

    Returns:
        list of :class:`Point`, in forward order; a Residual's or Parallel's point holds its own
        layers in ``inner`` (body then shortcut, branch 0 then branch 1, ...; Repeats and Blocks
        inside them expanded the same way).

    Example:
        >>> [p.info.type for p in probe_points(build_model(load_spec("specs/deep-sigmoid.yaml")))][:3]
        ['Linear', 'Sigmoid', 'Linear']
    """
    points: list[Point] = []
    owners = {id(i.module): i for i in built.walk() if not i.shared}  # a shared module's first element

    def expand(infos: Sequence[LayerInfo], out: list[Point], main: bool, use: LayerInfo | None) -> None:
        for info in infos:
            if info.shared and id(info.module) in owners:  # the first element's layers, once more
                expand([owners[id(info.module)]], out, main, info)
                continue
            if isinstance(info.module, (Repeat, Block, GraphRepeat, GraphBlock)):
                expand(info.children, out, main, use)
                continue
            if str(info.out_dtype).startswith("int"):  # token ids moved before an Embedding: no gradient
                continue
            point = Point(info, len(out) if main else None, **_use(info, use, owners))
            if isinstance(info.module, (Residual, Parallel)):
                expand(info.children, point.inner, False, use)
            out.append(point)

    first_output = built.spec.outputs[0] if built.spec.outputs else None
    for info in built.layers:
        expand([info], points, True, None)
        if info.name == first_output and points:
            points[-1].output = True
    return points


def _use(info: LayerInfo, use: LayerInfo | None, owners: dict) -> dict:
    """A row's name, path and ``shared`` within a later use of a shared module (empty: the first)."""
    if use is None:
        return {}
    owner = owners[id(use.module)]
    prefix = owner.name + "."
    name = use.name if info is owner else use.name + "." + info.name.removeprefix(prefix)
    path = use.path if info is owner else f"{use.path} ({info.path})"
    return {"name": name, "path": path, "shared": owner.name}


def all_points(points: Sequence[Point]) -> Iterator[Point]:
    """Every point, depth first: each main-path point, then the points inside it."""
    for p in points:
        yield p
        yield from all_points(p.inner)


# -- one measurement ---------------------------------------------------------------------------
@dataclass
class Measurement:
    """One seed's per-point numbers, keyed like the points (depth-first order)."""

    stats: list[dict]
    loss: float
    finite: bool
    nonfinite_at: str | None


def measure(
    model: nn.Module, points: Sequence[Point], x: torch.Tensor | tuple, direction: torch.Tensor | tuple
) -> Measurement:
    """One forward and backward pass with hooks on every point; leaves ``model`` as it found it.

    Args:
        model: the built network (``built.model``).
        points: from :func:`probe_points` on the same build.
        x: a batch ``(N, *input_shape)`` on the model's device; a tuple of one per input for a
            spec with several inputs.
        direction: ``r``, ``(N, *output_shape)``: the loss is ``(r * f(x)).sum() / N``; with
            several outputs a tuple of one ``r_k`` per output, and the loss sums ``(r_k * f_k(x)).sum() / N``.

    Returns:
        per point (in :func:`all_points` order) a dict of act_mean, act_std, act_rms, dead_frac,
        saturated_frac, grad_norm, weight_norm, weight_grad_norm, weight_grad_ratio.

    The model is run in training mode; afterwards its parameters, buffers, train/eval flags and
    the global RNG state (Dropout draws from it) are restored exactly, and ``.grad`` is never
    touched (the gradients come from ``torch.autograd.grad``).
    """
    flat = list(all_points(points))
    xs = x if isinstance(x, tuple) else (x,)
    modes = [(m, m.training) for m in model.modules()]
    state = [(t, t.detach().clone()) for t in _tensors(model)]
    caught: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    devices = [xs[0].device.index or 0] if xs[0].device.type == "cuda" else []
    handles = []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            model.train()
            handles = _catch_outputs(model, flat, caught)
            # x needs a gradient so activations have one even when every weight is frozen
            # (token ids cannot have one: their Embedding's output is the first with a gradient).
            xs = tuple(t.detach().clone().requires_grad_(t.is_floating_point()) for t in xs)
            outs = model(*xs)
            outs = outs if isinstance(outs, tuple) else (outs,)
            directions = direction if isinstance(direction, tuple) else (direction,)
            loss = sum((out * r).sum() for out, r in zip(outs, directions)) / xs[0].shape[0]
            stats = _stats(flat, caught, loss)
            return Measurement(stats, float(loss.item()), *_first_nonfinite(flat, stats, loss.item()))
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for t, saved in state:
                t.copy_(saved)
        for m, mode in modes:
            m.training = mode


def _catch_outputs(model: nn.Module, flat: list[Point], caught: dict) -> list:
    """Forward hooks that catch each point's input and output into ``caught`` (by point number).

    A module applied more than once (``share``) has one point per use: its n-th call is caught
    for its n-th point, the order the graph runs them in."""
    # A later in-place layer (ReLU(inplace=True)) would overwrite a caught output and rebase its
    # autograd history; handing the network a copy keeps the caught tensor intact.
    inplace = any(getattr(m, "inplace", False) for m in model.modules())
    uses: dict[int, tuple[nn.Module, list[int]]] = {}
    for k, p in enumerate(flat):
        uses.setdefault(id(p.info.module), (p.info.module, []))[1].append(k)

    def hook_for(ks: list[int]):
        calls = [0]

        def hook(module, args, output):
            if not isinstance(output, torch.Tensor):
                return None
            if calls[0] < len(ks):
                caught[ks[calls[0]]] = (args[0] if args and isinstance(args[0], torch.Tensor) else None, output)
            calls[0] += 1
            return output.clone() if inplace else None

        return hook

    return [module.register_forward_hook(hook_for(ks)) for module, ks in uses.values()]


def _stats(flat: list[Point], caught: dict, loss: torch.Tensor) -> list[dict]:
    """Every point's statistics from its caught input and output, the gradients of ``loss`` with
    respect to the outputs and to the layers' trainable weights (one backward pass)."""
    missing = [flat[k].info.name for k in range(len(flat)) if k not in caught]
    if missing:  # e.g. a Custom layer returning a tuple
        raise InputError(
            f"probe could not catch the output of {', '.join(missing[:3])}", hint="probed layers must return one tensor"
        )
    outs = [caught[k][1] for k in range(len(flat))]
    weights = [
        [w for name, w in p.info.module.named_parameters() if name.rsplit(".", 1)[-1] == "weight" and w.requires_grad]
        for p in flat
    ]
    unique_w = list({id(w): w for ws in weights for w in ws}.values())
    grads = torch.autograd.grad(loss, outs + unique_w, allow_unused=True)
    act_grads = grads[: len(outs)]
    w_grads = {id(w): g for w, g in zip(unique_w, grads[len(outs) :])}
    stats = []
    for k, p in enumerate(flat):
        inp, h = caught[k]
        stats.append(_point_stats(p.info.type, inp, h.detach(), act_grads[k], weights[k], w_grads))
    return stats


def _first_nonfinite(flat: list[Point], stats: list[dict], loss: float) -> tuple[bool, str | None]:
    """(all finite?, where NaN/inf first shows): forward in layer order, then the loss, then
    backward from the output towards the input (the order the numbers are computed in)."""

    def bad(s, keys):
        return any(s[k] is not None and not math.isfinite(s[k]) for k in keys)

    def label(p):
        return f"{p.info.name} ({p.info.type})"

    main = [(p, s) for p, s in zip(flat, stats) if p.index is not None]
    for p, s in zip(flat, stats):
        if bad(s, ("act_mean", "act_std", "act_rms")):
            return False, f"the forward pass at {label(p)}"
    if not math.isfinite(loss):
        return False, "the loss"
    for p, s in reversed(main):
        if bad(s, ("grad_norm",)):
            return False, f"the backward pass at {label(p)}"
    for p, s in zip(flat, stats):
        if bad(s, ("grad_norm", "weight_norm", "weight_grad_norm", "weight_grad_ratio")):
            return False, f"the gradients of {label(p)}"
    return True, None


def _tensors(model: nn.Module):
    """Every parameter and buffer, once each (shared ones too)."""
    seen = {}
    for t in list(model.parameters()) + list(model.buffers()):
        seen.setdefault(id(t), t)
    return list(seen.values())


def _point_stats(type_name: str, inp, h: torch.Tensor, grad, weights, w_grads) -> dict:
    """Forward and backward numbers of one layer's output ``h`` (N, *)."""
    h64 = h.double()
    stats: dict[str, Any] = {
        "act_mean": h64.mean().item(),
        "act_std": h64.std(unbiased=False).item() if h.numel() > 1 else 0.0,
        "act_rms": h64.square().mean().sqrt().item(),
        "dead_frac": None,
        "saturated_frac": None,
        # None: the output does not reach the loss (a dead branch); zero gradient then.
        "grad_norm": 0.0 if grad is None else grad.double().norm().item(),
    }
    if type_name in RELU_FAMILY and inp is not None and inp.shape == h.shape:
        stats["dead_frac"] = (inp.detach() <= 0).all(dim=0).double().mean().item()
    elif type_name == "Sigmoid":
        stats["saturated_frac"] = ((h < 0.01) | (h > 0.99)).double().mean().item()
    elif type_name == "Tanh":
        stats["saturated_frac"] = (h.abs() > 0.99).double().mean().item()
    elif type_name == "Hardsigmoid":
        stats["saturated_frac"] = ((h <= 0) | (h >= 1)).double().mean().item()
    elif type_name == "Hardtanh":
        stats["saturated_frac"] = (h.abs() >= h.abs().max()).double().mean().item() if h.numel() else 0.0
    if weights:
        wn = math.sqrt(sum(w.detach().double().square().sum().item() for w in weights))
        gn = math.sqrt(
            sum(0.0 if w_grads[id(w)] is None else w_grads[id(w)].double().square().sum().item() for w in weights)
        )
        stats["weight_norm"] = wn
        stats["weight_grad_norm"] = gn
        stats["weight_grad_ratio"] = gn / wn if wn > 0 else None
    else:
        stats["weight_norm"] = stats["weight_grad_norm"] = stats["weight_grad_ratio"] = None
    return stats


def weight_gain(model: nn.Module) -> float | None:
    """Median over Linear/Conv layers of std(W) * sqrt(fan_in): He init gives sqrt(2), Xavier ~1."""
    gains = []
    for m in model.modules():
        w = getattr(m, "weight", None)
        if type(m).__name__ in WEIGHT_LAYERS and isinstance(w, torch.Tensor) and w.dim() >= 2 and w.numel() > 1:
            fan_in = w[0].numel() if not type(m).__name__.startswith("ConvTranspose") else w.shape[0] * w[0, 0].numel()
            gains.append(w.detach().double().std().item() * math.sqrt(fan_in))
    if not gains:
        return None
    gains.sort()
    return gains[len(gains) // 2]


# -- inputs ------------------------------------------------------------------------------------
def read_data(path: str | Path, input_shape: tuple, spec=None) -> torch.Tensor | Inputs:
    """Inputs for ``--data``: an .npz/.npy/.csv/.pt file of examples shaped like the spec's input,
    read as training reads them (the spec's label column dropped, standardised with the statistics
    training uses; token ids in ``[0, high)`` when ``spec`` declares integer inputs). For a spec
    with several inputs, an .npz/.pt with one array per input name, each input read so.

    Raises:
        InputError: missing or unreadable file, or a shape that does not fit (exit 2).
    """
    from nncli.data import read_examples
    from nncli.data.examples import read_multi_examples

    try:
        if spec is not None and len(spec.input_specs) > 1:
            x, _ = read_multi_examples(Path(path), spec, "probe")
        else:
            x, _ = read_examples(Path(path), spec)
    except InputError as err:  # the data helpers name the file; the caller knows it as `data`
        raise InputError(err.message, file=err.file, line=err.line, hint=err.hint, param="data") from None
    if len(x) < 2:
        raise InputError(f"expected at least 2 examples, found {len(x)}", file=path, param="data")
    return x


def data_rows(data: torch.Tensor | Inputs, rows: torch.Tensor) -> torch.Tensor | tuple:
    """The examples ``rows`` of ``--data``: a tensor, or with several inputs a tuple of the same
    rows of every input, in forward order."""
    x = data[rows]
    return tuple(x) if isinstance(x, Inputs) else x


def random_inputs(spec, batch_size: int, input_shape: tuple, gen: torch.Generator) -> torch.Tensor | tuple:
    """A random batch for the spec's input: N(0, 1) floats, or token ids uniform in ``[0, high)``;
    for a spec with several inputs a tuple, one batch per input in forward order."""
    if len(spec.input_specs) > 1:
        from nncli.build.inputs import input_table
        from nncli.build.inputs import random_inputs as graph_inputs

        return graph_inputs(input_table(spec), batch_size, generator=gen)
    if getattr(spec, "integer_input", False):
        return torch.randint(spec.input_high, (batch_size, *input_shape), generator=gen)
    return torch.randn((batch_size, *input_shape), generator=gen)


def output_shapes(built: Built) -> list[tuple]:
    """The per-example shape of every output: the one output, or each of several in order."""
    return [tuple(row[1]) for row in built.outputs] if len(built.outputs) > 1 else [tuple(built.output_shape)]


def probe_batch(built: Built, seed: int, batch_size: int, data: torch.Tensor | Inputs | None):
    """The seed's probe batch ``x`` (N, *input) and projection ``r`` (N, *output), on the CPU first;
    with several inputs (outputs) a tuple of one per input (output), drawn in their order."""
    gen = torch.Generator().manual_seed(seed)
    if data is None:
        x = random_inputs(built.spec, batch_size, built.input_shape, gen)
    else:
        x = data_rows(data, torch.randperm(len(data), generator=gen)[:batch_size])
    n = len(x[0]) if isinstance(x, tuple) else len(x)
    r = tuple(torch.randn((n, *shape), generator=gen).to(built.device) for shape in output_shapes(built))
    x = tuple(t.to(built.device) for t in x) if isinstance(x, tuple) else x.to(built.device)
    return x, (r if len(r) > 1 else r[0])
