"""Evaluations that leave no trace: seeds per evaluation site, the RNG replayed so every
evaluation draws the same Dropout masks, and the model's weights, buffers, train/eval flags and
the RNG state restored afterwards.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

import torch
from torch import nn


def _seed(seed: int, what: str) -> int:
    """A seed per evaluation site, stable across runs (Python's str hash is salted: not used)."""
    h = seed * 1_000_003
    for ch in what:
        h = (h * 31 + ord(ch)) % (2**61 - 1)
    return h


def _rng_devices(device: torch.device) -> list:
    return [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []


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
    The caller's RNG state is put back on exit, as ``fork_rng`` does. Callers look it up as
    ``replay._replay`` at call time: one switch turns the replay off for every evaluation.
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
def _preserved(model: nn.Module, device: torch.device, tensors: bool = True):
    """Restore weights, buffers (unless ``tensors`` is False: a model nobody sees afterwards), each
    module's train/eval flag and the RNG state on exit."""
    modes = [(m, m.training) for m in model.modules()]
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())} if tensors else {}
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
