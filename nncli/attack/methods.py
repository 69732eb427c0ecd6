"""The attacks themselves: FGSM and PGD under an L-infinity budget, on a batch, in input units.

Both work on inputs in the data's own units (pixels in [0, 1] for the image sets) and keep every
adversarial input inside the eps-ball around its input and inside the valid range ``[lo, hi]``
where one is known (a perturbation that leaves it would not be an image any more). The model is
called on those inputs directly: a run's input normalisation is part of it. ``eps`` is a number,
or a tensor shaped like one example (a budget per feature, e.g. in training standard deviations).

The update order follows Madry et al. (2018) step by step (random start, signed gradient step,
projection onto the eps-ball, clamp to the range), so that the same random start gives the same
adversarial examples as the reference implementations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def within(adv: torch.Tensor, x: torch.Tensor, eps, lo: float | None, hi: float | None) -> torch.Tensor:
    """``adv`` clamped to the valid range ``[lo, hi]`` (None: unbounded), then to the eps-ball
    around ``x``: the ball wins where the two disagree (an input that already lay outside the
    range), so a perturbation never exceeds its budget."""
    if lo is not None:
        adv = torch.clamp(adv, lo, hi)
    if isinstance(eps, torch.Tensor):
        return torch.maximum(torch.minimum(adv, x + eps), x - eps)
    return torch.clamp(adv, x - eps, x + eps)


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d loss / d x of the summed cross-entropy: each example's gradient, whatever the batch size
    (a mean would scale it by 1/N, which cannot change a sign but can underflow to zero)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps, lo: float | None, hi: float | None) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015): ``clamp(x + eps * sign(grad), lo, hi)``.

    Args:
        model: in eval mode, taking inputs in data units.
        x: a batch of inputs; y: their class indices.
        eps: the L-infinity budget, in data units (a number, or a tensor per element of an example).
        lo, hi: the data's valid range (None: unbounded).

    Returns:
        The adversarial batch (detached), same shape as ``x``.
    """
    if _zero(eps):
        return x.detach().clone()
    grad = _input_gradient(model, x, y)
    return within(x.detach() + eps * grad.sign(), x.detach(), eps, lo, hi)


def _zero(eps) -> bool:
    return bool((eps == 0).all()) if isinstance(eps, torch.Tensor) else eps == 0


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps,
    *,
    steps: int,
    step_size,
    lo: float | None,
    hi: float | None,
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
    if _zero(eps):
        return x.clone()
    adv = x.clone()
    if random_start:
        noise = torch.empty(
            x.shape, dtype=x.dtype, device="cpu" if generator is None or generator.device.type == "cpu" else x.device
        )
        if isinstance(eps, torch.Tensor):
            noise = noise.uniform_(-1.0, 1.0, generator=generator).to(x.device) * eps
        else:
            noise.uniform_(-eps, eps, generator=generator)
        adv = within(adv + noise.to(x.device), x, eps, lo, hi)
    for _ in range(steps):
        grad = _input_gradient(model, adv, y)
        adv = within(adv + step_size * grad.sign(), x, eps, lo, hi)
    return adv.detach()
