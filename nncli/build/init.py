"""Initialisation: the spec's ``init`` schemes (torch.nn.init's, plus lecun_normal) applied per layer.

The spec-wide default, or a block's, applies to affine layers (weights of 2+ dims) and their
biases; normalisation layers and the learned tokens keep their own init; a layer's own ``init``
wins. On meta tensors a scheme is checked on a CPU stand-in (meta's normal_ imports torch._dynamo).
"""

from __future__ import annotations

import torch
from torch import nn

from nncli import modules as nm
from nncli.build.checks import first_line
from nncli.build.inference import init_stand_in
from nncli.errors import did_you_mean
from nncli.spec import InitScheme, LayerSpec

# The learned tensors keep their own init (zeros, normal std 0.02, LayerScale's constant) under a
# spec-wide default.
_OWN_INIT = (nm.ClassToken, nm.PositionEmbedding, nm.LayerScale)


class InitMixin:
    """The builder's part that initialises each layer it constructs."""

    def apply_init(self, spec: LayerSpec, module: nn.Module, shape: tuple = ()) -> None:
        schemes: dict[str, InitScheme] = {}
        own = dict(spec.init or {})
        default = self._default_init[-1]
        if default:
            # The default (spec-wide, or a Residual's/Repeat's) is for affine layers (weights of
            # 2+ dims: Linear, Conv), and their biases; normalisation layers keep torch's init
            # (gamma = 1, beta = 0).
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.dim() >= 2 and not isinstance(module, _OWN_INIT):
                for pname, scheme in default.items():
                    if isinstance(getattr(module, pname, None), torch.Tensor):
                        schemes[pname] = scheme
        schemes.update(own)
        named = dict(module.named_parameters())
        for pname, scheme in schemes.items():
            if pname not in named:
                if pname in own:
                    raise scheme.where.error(
                        f"{type(module).__name__} has no parameter {pname!r} to initialise",
                        hint=did_you_mean(pname, named)
                        or ("its parameters: " + ", ".join(named) if named else "it has no parameters"),
                    )
                continue
            # on meta, checked on a CPU stand-in: meta's normal_ imports torch._dynamo
            init_tensor(named[pname] if self.real else init_stand_in(named[pname]), self.evaluated(scheme, shape))

    def evaluated(self, scheme: InitScheme, shape: tuple) -> InitScheme:
        """``scheme`` with vars and expressions in its keywords evaluated where the layer is
        (``std: "1 / width"``); words (``mode: fan_out``) stay words."""
        if not any(isinstance(v, (str, list, dict)) for v in scheme.kwargs.values()):
            return scheme
        kwargs = {
            key: self.scope.loose_argument(key, value, scheme.where, shape, f"init {scheme.scheme}")
            for key, value in scheme.kwargs.items()
        }
        return InitScheme(scheme.scheme, kwargs, scheme.where)


def init_tensor(tensor: torch.Tensor, scheme: InitScheme) -> None:
    """Apply one init scheme in place; errors are located at the scheme in the spec."""
    import torch.nn.init as tinit

    try:
        with torch.no_grad():
            if scheme.scheme == "lecun_normal":
                if tensor.dim() < 2:
                    raise ValueError("fan_in cannot be computed for a tensor with fewer than 2 dimensions")
                fan_in = tensor[0].numel()  # (out, in, *kernel): in * prod(kernel)
                tensor.normal_(0.0, fan_in**-0.5, **scheme.kwargs)
            else:
                getattr(tinit, scheme.scheme + "_")(tensor, **scheme.kwargs)
    except NotImplementedError:
        if tensor.device.type != "meta":  # some schemes (orthogonal's QR) have no meta kernel
            raise
    except (TypeError, ValueError, RuntimeError) as exc:
        raise scheme.where.error(
            f"init {scheme.scheme} on a tensor of shape {list(tensor.shape)} failed: {first_line(exc)}"
        ) from None
