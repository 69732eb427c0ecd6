"""One layer counted by torch's own dispatch, inside an otherwise formula-counted walk.

A layer no rule covers (a Custom layer, a torch layer without a formula) runs alone on meta
tensors under ``FlopCounterMode`` and ``saved_tensors_hooks``, as the whole model would in
:func:`nncli.params.measure_forward`, and what it saves is mapped onto the walk's storages: its
input's storage, its output's, or tensors of its own. The rest of the model keeps its formulas,
so a ResNet with one Custom activation pays the per-op dispatch for that activation only. It
still imports ``torch._dynamo`` (every ``TorchDispatchMode`` does on exit), so only specs without
such a layer are counted without it.
"""

from __future__ import annotations

import torch

from .storage import Saved, Tensor


def attention_flop_mapping() -> dict:
    """FLOP formulas for attention kernels torch's ``FlopCounterMode`` leaves at 0.

    ``_scaled_dot_product_flash_attention_for_cpu`` (what ``scaled_dot_product_attention`` and
    ``nn.MultiheadAttention`` run on real CPU tensors) is counted with torch's own
    ``sdpa_flop_count``, as the CUDA kernels are.
    """
    from torch.utils.flop_counter import sdpa_flop_count

    def cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    return {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}


def _input(t: Tensor, saved: Saved, integer: bool) -> torch.Tensor:
    """A meta tensor laid out as ``t`` in a storage as large as ``t``'s, not a leaf when it needs a
    gradient (the layer may write into it in place, as it may into the previous layer's output)."""
    dtype = torch.int64 if integer else torch.float32
    elements = saved.sizes[t.storage] // (8 if integer else saved.itemsize)
    base = torch.empty(elements, dtype=dtype, device="meta")
    if t.grad:
        base = base.requires_grad_().clone()
    return base.as_strided(t.shape, t.strides)


def dispatch_layer(module: torch.nn.Module, t: Tensor, saved: Saved) -> tuple[Tensor, int] | None:
    """Run ``module`` alone on a meta copy of ``t``: its output tensor and FLOPs, what it saves
    recorded in ``saved``; None if it does not run (the whole model's dispatch then decides).

    A layer that does not run alone on meta tensors makes torch raise RuntimeError (a missing
    meta kernel's NotImplementedError, "Cannot copy out of meta tensor" for an ``.item()``):
    that, and only that, is left to the whole model's pass, which raises it again, worded by torch.
    """
    from torch.utils.flop_counter import FlopCounterMode

    x = _input(t, saved, t.storage in saved.integer)
    x_key = x.untyped_storage()._cdata
    params = {p.untyped_storage()._cdata for p in module.parameters()}
    kept: dict[int, int] = {}  # storage -> bytes at the target dtype, as measure_forward counts

    def pack(s: torch.Tensor):
        storage = s.untyped_storage()
        size = saved.itemsize if s.is_floating_point() else s.element_size()
        kept.setdefault(storage._cdata, storage.nbytes() // s.element_size() * size)
        return s

    try:
        with (
            FlopCounterMode(display=False, custom_mapping=attention_flop_mapping()) as counter,
            torch.autograd.graph.saved_tensors_hooks(pack, lambda s: s),
        ):
            y = module(x)
    except RuntimeError:  # NotImplementedError included
        return None
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        return None
    y_key = y.untyped_storage()._cdata
    if y_key in params:
        return None  # a parameter itself as the output: left to the whole model's count
    if y_key == x_key:
        out = Tensor(t.storage, y.requires_grad, tuple(y.shape), tuple(y.stride()))
    else:
        out = saved.new(tuple(y.shape), y.requires_grad)
        saved.sizes[out.storage] = y.untyped_storage().nbytes() // y.element_size() * saved.itemsize
        out = out._replace(strides=tuple(y.stride()))
    for key, size in kept.items():
        if key == x_key:
            saved.keep(t)
        elif key == y_key:
            saved.keep(out)
        elif key not in params:
            saved.keep_bytes(size)
    return out, int(counter.get_total_flops())
