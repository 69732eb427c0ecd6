"""One checked unit: a function F(input, parameters) -> scalar, a layer under ``<G, layer(x)>`` or
the whole model under the objective; its values with tensors replaced (one at a time, or batched
through ``torch.func.vmap``) and its analytic gradient, every evaluation under the same RNG.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, vmap

from nncli.gradcheck import replay as rng
from nncli.gradcheck.replay import _vmap_ready

INPUT = "input"  # the name of a layer's input among its checked tensors


def is_input(name: str) -> bool:
    """Whether a checked tensor's name is an input's: ``input``, or ``input NAME`` for one of
    several (parameter names never hold a space)."""
    return name == INPUT or name.startswith(INPUT + " ")


# torch.nn layers whose forward draws no random numbers (Dropout, RReLU and Custom layers are not here).
_DETERMINISTIC = {
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.Identity,
    nn.Flatten,
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.Softplus,
    nn.Softmax,
    nn.LogSoftmax,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Sequential,
}


class _Unit:
    """A function F(input, parameters) -> scalar that is checked: a layer, or the whole model."""

    def __init__(
        self,
        module: nn.Module,
        x: torch.Tensor | tuple,
        objective: Callable,
        seed: int,
        prefix: str | None = None,
        input_names: tuple[str, ...] | None = None,
    ) -> None:
        self.module = module
        # a layer or model taking several tensors (a Merge, a decoder's memory, a Graph's inputs)
        # gets them as a tuple, each checked under its own name ("input left")
        self.xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        self.x = self.xs[0]
        self.input_names = input_names or (
            (INPUT,) if len(self.xs) == 1 else tuple(f"{INPUT} {i}" for i in range(len(self.xs)))
        )
        self.objective = objective
        self.seed = seed
        # how the run names this unit's parameters ("3." for layer 3, "" for the whole model),
        # under which their random directions are shared; None: not shared
        self.prefix = prefix
        self.device = self.x.device
        self.params = {n: p.detach() for n, p in module.named_parameters() if p.is_floating_point()}
        # functional_call's untying of shared weights costs more than a small layer's forward: only
        # asked for where a parameter is registered under two names
        self._tied = len(list(module.named_parameters(remove_duplicate=False))) != len(list(module.named_parameters()))
        self.vmap_note: str | None = None
        self._vmap_ok = True
        self._draws_random: bool | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """Name -> base value of every checked tensor: the input (when floating), then parameters."""
        out = {n: x for n, x in zip(self.input_names, self.xs) if x.is_floating_point()}
        out.update(self.params)
        return out

    def split(self, overrides: dict[str, torch.Tensor]) -> tuple[dict, tuple]:
        """``overrides`` as (parameters, the module's positional inputs with replacements)."""
        args = tuple(overrides.get(n, x) for n, x in zip(self.input_names, self.xs))
        return {n: t for n, t in overrides.items() if not is_input(n)}, args

    def output(self, overrides: dict[str, torch.Tensor], replay: bool = True):
        """The module's output with some tensors replaced (full values, not deltas)."""
        params, args = self.split(overrides)
        if replay:
            with rng._replay(self.seed, self.device):
                return self._call(params, args)
        return self._call(params, args)

    def _call(self, params: dict, args: tuple):
        return functional_call(self.module, params, args, tie_weights=self._tied) if params else self.module(*args)

    def value(self, overrides: dict[str, torch.Tensor], replay: bool = True) -> torch.Tensor:
        """F with some tensors replaced (full values, not deltas)."""
        return self.objective(self.output(overrides, replay))

    def at(self, deltas: dict[str, torch.Tensor]) -> float:
        """F(w + delta) for one perturbation (a dict of deltas, tensors absent = unperturbed)."""
        base = self.tensors()
        with torch.no_grad():
            return float(self.value({n: base[n] + d for n, d in deltas.items()}))

    def gradients(self) -> dict[str, torch.Tensor]:
        """Analytic gradient of F (autograd through the module's own backward)."""
        base = self.tensors()
        # fresh leaves over the same memory: no copy (a copy of every weight cost page faults at 1M)
        leaves = {n: t.detach().requires_grad_(True) for n, t in base.items()}
        with torch.enable_grad():
            out = self.value(leaves)
            grads = torch.autograd.grad(out, list(leaves.values()), allow_unused=True)
        return {n: (g.detach() if g is not None else torch.zeros_like(base[n])) for n, g in zip(leaves, grads)}

    def draws_random(self) -> bool:
        """Whether a forward of the unit consumes the RNG (Dropout, RReLU, a Custom layer's noise).

        Found once, by comparing the generator states around one forward; the states are put
        back afterwards, so the evaluations that follow draw what they would have drawn.
        """
        if self._draws_random is None and all(type(m) in _DETERMINISTIC for m in self.module.modules()):
            self._draws_random = False  # torch.nn layers known to draw nothing: no forward needed
        if self._draws_random is None:
            cuda = self.device.type == "cuda"
            with torch.no_grad(), torch.random.fork_rng(devices=rng._rng_devices(self.device)):
                cpu, gpu = torch.get_rng_state(), (torch.cuda.get_rng_state(self.device) if cuda else None)
                self.value({}, replay=False)
                self._draws_random = not torch.equal(cpu, torch.get_rng_state()) or (
                    cuda and not torch.equal(gpu, torch.cuda.get_rng_state(self.device))
                )
        return self._draws_random

    def batch_values(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """F with tensor ``name`` set to ``values[i]``, for every i; vectorised with vmap when the module allows.

        Shape: values (P, *tensor.shape) -> (P,).
        """
        return self.batch_many({name: values})

    def batch_many(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """F with every tensor ``n`` of ``values`` set to ``values[n][i]``, for every i: one vmap call.

        Shapes: each values[n] (P, *tensor.shape) -> (P,).
        """
        names = list(values)
        if self._vmap_ok:

            def one(*ws):
                return self.value(dict(zip(names, ws)), replay=False)

            try:
                # randomness="same": one Dropout mask for the whole batch of perturbations,
                # drawn exactly as the unvectorised forward draws it after the same seed.
                with torch.no_grad(), _vmap_ready(self.module), rng._replay(self.seed, self.device):
                    return vmap(one, randomness="same")(*values.values()).detach()
            except Exception as exc:  # an autograd.Function without a vmap rule, ...
                self._vmap_ok = False
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                self.vmap_note = f"not vectorisable ({first[:90]}); one forward per coordinate"
        count = next(iter(values.values())).shape[0]
        with torch.no_grad():
            return torch.stack([self.value({n: values[n][i] for n in names}) for i in range(count)]).detach()
