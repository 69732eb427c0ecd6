"""Where a non-finite loss came from: the first layer whose output is not finite, and the
message that names it with the step and the last good checkpoint."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from nncli.data.multi import Inputs, feed


def first_nonfinite_layer(model, layers, x, autocast=None) -> dict | None:
    """Run ``model`` on ``x`` with forward hooks and name the first layer whose output is not finite.

    Hooks see layers in call order, so a nested layer (inside Residual or Repeat) is found before
    its container finishes. The model's mode and the RNG are restored afterwards. ``autocast``
    (a context-manager factory) is the training's own: an fp16 overflow happens only under it, so
    a float32 re-run would find every output finite and blame the loss.

    Returns:
        ``{"path", "name", "type"}`` of the layer, ``{"path": "input", ...}`` when the batch itself
        is not finite, or None when every output is finite (the loss alone overflowed).
    """
    if not all(torch.isfinite(t).all() for t in (x if isinstance(x, Inputs) else (x,)) if t.is_floating_point()):
        return {"path": "input", "name": "input batch", "type": "data"}
    found: list = []
    hooks = []

    def make_hook(info):
        def hook(module, args, output):
            if (
                not found
                and isinstance(output, torch.Tensor)
                and output.is_floating_point()
                and not torch.isfinite(output).all()
            ):
                found.append({"path": info.path, "name": info.name, "type": info.type})

        return hook

    def walk(infos):
        for info in infos:
            yield info
            yield from walk(getattr(info, "children", []) or [])

    rng = torch.get_rng_state()
    try:
        for info in walk(layers):
            hooks.append(info.module.register_forward_hook(make_hook(info)))
        with torch.no_grad(), autocast() if autocast is not None else contextlib.nullcontext():
            feed(model, x)
    finally:
        for h in hooks:
            h.remove()
        torch.set_rng_state(rng)
    return found[0] if found else None


def nonfinite_report(
    model,
    layers,
    xb,
    loss,
    *,
    first_step: int,
    epoch: int,
    steps_per_epoch: int,
    lazy: bool,
    last_checkpoint: Path,
    autocast=None,
) -> dict:
    """The ``nonfinite`` entry of a run's report: the step, the layer and a message saying both.

    Args:
        model, layers: the raw network and its layer infos (``BuiltModel.layers``).
        xb, loss: the batch that was being trained on and its (non-finite) mean loss.
        first_step: the 0-based global step whose loss was first non-finite; ``epoch`` 0-based.
        lazy: the loss was found at a sync point, some steps after ``first_step``: the weights
            are those of that moment and the batch number is unknown.
        last_checkpoint: ``last.pt``, named in the message when it exists.
        autocast: the training's autocast context factory (None without ``--amp``).
    """
    batch = first_step - epoch * steps_per_epoch + 1 if not lazy else None
    layer = first_nonfinite_layer(model, layers, xb, autocast)
    value = loss.item()
    info = {
        "step": first_step + 1,
        "epoch": epoch + 1,
        "batch": batch,
        "value": str(value),
        "layer": layer,
        "weights_at_detection": lazy,
    }
    where = (
        f"{layer['path']} ({layer['name']}, {layer['type']})"
        if layer and layer["path"] != "input"
        else "the input batch"
        if layer
        else "the loss itself (every layer's output is finite)"
    )
    info["message"] = (
        f"non-finite loss ({value}) at step {first_step + 1} (epoch {epoch + 1}"
        + (f", batch {batch}" if batch else "")
        + f"): first non-finite output in {where}"
        + ("; found at a sync point, so the layer is located with the weights of that moment" if lazy else "")
        + (f"; last good checkpoint: {last_checkpoint}" if last_checkpoint.is_file() else "; no checkpoint was written")
    )
    return info
