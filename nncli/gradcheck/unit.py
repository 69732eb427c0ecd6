"""One checked unit: a function F(input, parameters) -> scalar, a layer under ``<G, layer(x)>`` or
the whole model under the objective; its values with tensors replaced (one at a time, or batched
through ``torch.func.vmap``) and its analytic gradient, every evaluation under the same RNG.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, vmap

from nncli.gradcheck import state
from nncli.gradcheck.state import _vmap_ready

INPUT = "input"  # the name of a layer's input among its checked tensors


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
            with state._replay(self.seed, self.device):
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
                with torch.no_grad(), _vmap_ready(self.module), state._replay(self.seed, self.device):
                    return vmap(one, randomness="same")(values).detach()
            except Exception as exc:  # an autograd.Function without a vmap rule, ...
                self._vmap_ok = False
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                self.vmap_note = f"not vectorisable ({first[:90]}); one forward per coordinate"
        with torch.no_grad():
            return torch.stack([self.value({name: w}) for w in values]).detach()
