"""The attacks themselves: FGSM and PGD under an L-infinity budget, on a batch, in input units.

Both work on inputs in the data's own units (pixels in [0, 1] for the image sets) and keep every
adversarial input inside the valid range ``[lo, hi]``: a perturbation that leaves it would not be
an image any more. The model is called on those inputs directly, so a run's input normalisation
must be part of it (:class:`Normalized`).

The update order follows Madry et al. (2018) step by step (random start, signed gradient step,
projection onto the eps-ball, clamp to the range), so that the same random start gives the same
adversarial examples as the reference implementations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Normalized(nn.Module):
    """``model((x - mean) / std)``: the attacked function, taking inputs in data units."""

    def __init__(self, model: nn.Module, mean: torch.Tensor | None, std: torch.Tensor | None) -> None:
        super().__init__()
        self.model = model
        # buffers, not attributes: they follow the model to its device; not saved with it
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.model(x)


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d loss / d x of the summed cross-entropy: each example's gradient, whatever the batch size
    (a mean would scale it by 1/N, which cannot change a sign but can underflow to zero)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, lo: float, hi: float) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015): ``clamp(x + eps * sign(grad), lo, hi)``.

    Args:
        model: in eval mode, taking inputs in data units.
        x: a batch of inputs; y: their class indices.
        eps: the L-infinity budget, in data units.
        lo, hi: the data's valid range.

    Returns:
        The adversarial batch (detached), same shape as ``x``.
    """
    if eps == 0:
        return x.detach().clone()
    grad = _input_gradient(model, x, y)
    return torch.clamp(x.detach() + eps * grad.sign(), lo, hi)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int,
    step_size: float,
    lo: float,
    hi: float,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent on the loss, L-infinity ball (Madry et al., 2018).

    Start at ``x`` (or a uniform random point of the eps-ball, clamped to the range), then
    ``steps`` times: step ``step_size * sign(grad)``, project back onto the eps-ball around ``x``,
    clamp to ``[lo, hi]``.

    Args:
        generator: the random start's stream (None: torch's global one).

    Returns:
        The adversarial batch (detached).
    """
    x = x.detach()
    if eps == 0:
        return x.clone()
    adv = x.clone()
    if random_start:
        noise = torch.empty(
            x.shape, dtype=x.dtype, device="cpu" if generator is None or generator.device.type == "cpu" else x.device
        )
        noise.uniform_(-eps, eps, generator=generator)
        adv = torch.clamp(adv + noise.to(x.device), lo, hi)
    for _ in range(steps):
        grad = _input_gradient(model, adv, y)
        adv = adv + step_size * grad.sign()
        delta = torch.clamp(adv - x, -eps, eps)
        adv = torch.clamp(x + delta, lo, hi)
    return adv.detach()
