"""Layers that read a second tensor, the encoder's ``memory``: ``CrossAttention`` and
``TransformerDecoderLayer``. Both are torch's own classes (parameter names unchanged), batch first.
"""

from __future__ import annotations

import torch
from torch import nn

from nncli.modules.sequence import causal_mask


class CrossAttention(nn.MultiheadAttention):
    """Queries ``[N, L, D]`` from the incoming tensor, keys and values ``[N, S, E]`` from ``memory``.

    Parameters are ``torch.nn.MultiheadAttention``'s with ``kdim = vdim = E`` (packed
    ``in_proj_weight`` when ``E == D``, else ``q_proj_weight``/``k_proj_weight``/``v_proj_weight``).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        kdim: int | None = None,
        vdim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias, kdim=kdim, vdim=vdim, batch_first=True)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out, _ = super().forward(x, memory, memory, need_weights=False)
        return out

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, kdim={self.kdim}, vdim={self.vdim}"


class TransformerDecoderLayer(nn.TransformerDecoderLayer):
    """torch's decoder layer, batch first; ``causal=True`` masks the target's self-attention
    (output ``t`` never depends on targets after ``t``); cross-attention to ``memory`` is unmasked."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = True,
        norm_first: bool = False,
        bias: bool = True,
        causal: bool = False,
    ) -> None:
        super().__init__(
            d_model,
            nhead,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            activation=activation,
            layer_norm_eps=layer_norm_eps,
            batch_first=batch_first,
            norm_first=norm_first,
            bias=bias,
        )
        self.causal = causal

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        mask = causal_mask(tgt.shape[1], tgt.device) if self.causal else None
        return super().forward(tgt, memory, tgt_mask=mask, tgt_is_causal=self.causal)
