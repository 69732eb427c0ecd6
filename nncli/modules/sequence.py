"""Sequence layers that return one tensor: ``RNN``/``LSTM``/``GRU`` with ``returns``, and
``SelfAttention`` / ``TransformerEncoderLayer`` with ``causal``.

Each subclasses torch's own class, so the parameters keep torch's names (``weight_ih_l0``,
``in_proj_weight``, ``out_proj.weight``, ``self_attn.*``) and weights copy from a hand-written
torch model by name. All take ``[N, L, D]`` (batch first).
"""

from __future__ import annotations

import torch
from torch import nn

RETURNS = ("sequence", "last")


def causal_mask(length: int, device: torch.device) -> torch.Tensor:
    """``[L, L]`` boolean mask, True above the diagonal: position t may not attend to t' > t."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


def pick(output: torch.Tensor, h_n: torch.Tensor, returns: str, bidirectional: bool) -> torch.Tensor:
    """The one tensor a recurrent layer gives: the sequence, or the last layer's final state(s)."""
    if returns == "sequence":
        return output
    if bidirectional:  # forward then backward direction of the last layer
        return torch.cat([h_n[-2], h_n[-1]], dim=-1)
    return h_n[-1]


class _Returns:
    """Mixin for torch's recurrent layers: ``returns`` picks the output (see :func:`pick`)."""

    returns: str

    def __init__(self, *args, returns: str = "sequence", **kwargs) -> None:
        kwargs.setdefault("batch_first", True)
        super().__init__(*args, **kwargs)
        self._set_returns(returns)

    def _set_returns(self, returns: str) -> None:
        if returns not in RETURNS:
            raise ValueError(f"returns must be one of {', '.join(RETURNS)}, found {returns!r}")
        self.returns = returns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, state = super().forward(x)
        # an LSTM's state is (h_n, cell): the cell state is dropped
        h_n = state[0] if isinstance(state, tuple) else state
        return pick(output, h_n, self.returns, self.bidirectional)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", returns={self.returns!r}"  # type: ignore[misc]


class RNN(_Returns, nn.RNN):
    """torch's RNN, batch first, returning ``output`` or ``h_n[-1]`` (``returns: last``)."""


class GRU(_Returns, nn.GRU):
    """torch's GRU, batch first, returning ``output`` or ``h_n[-1]`` (``returns: last``)."""


class LSTM(_Returns, nn.LSTM):
    """torch's LSTM, batch first, returning ``output`` or ``h_n[-1]``; the cell state is dropped."""


class SelfAttention(nn.MultiheadAttention):
    """Multi-head self-attention on ``[N, L, D]``, returning the attended sequence only.

    Parameters are ``torch.nn.MultiheadAttention``'s (``in_proj_weight``, ``in_proj_bias``,
    ``out_proj.weight``, ``out_proj.bias``). ``causal=True`` masks future positions: output ``t``
    never depends on inputs after ``t``.
    """

    def __init__(
        self, embed_dim: int, num_heads: int, causal: bool = False, dropout: float = 0.0, bias: bool = True
    ) -> None:
        # torch checks this only when attention runs, as a dropout of the attention weights
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a probability from 0 to below 1, found {dropout}")
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias, batch_first=True)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        mask = causal_mask(x.shape[1], x.device) if self.causal else None
        out, _ = super().forward(x, x, x, attn_mask=mask, need_weights=False, is_causal=self.causal)
        return out

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, causal={self.causal}"


class TransformerEncoderLayer(nn.TransformerEncoderLayer):
    """torch's encoder layer, batch first, with ``causal=True`` masking future positions."""

    def __init__(self, *args, causal: bool = False, **kwargs) -> None:
        kwargs.setdefault("batch_first", True)
        super().__init__(*args, **kwargs)
        self.causal = causal

    def forward(
        self,
        src: torch.Tensor,
        src_mask=None,
        src_key_padding_mask=None,  # type: ignore[override]
        is_causal: bool = False,
    ) -> torch.Tensor:
        if self.causal:
            src_mask, is_causal = causal_mask(src.shape[1], src.device), True
        return super().forward(src, src_mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal)
