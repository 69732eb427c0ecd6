"""Hand-written PyTorch models for the sequence networks of the model zoo (``specs/zoo/``).

ViT-B/16 (Dosovitskiy et al. 2021, as torchvision's ``vit_b_16``), an LSTM text classifier and a
GPT-style character model, in plain ``torch.nn``. Self-attention is written out here (project to
queries, keys and values, split heads, softmax of scaled dot products, optional causal mask, merge
heads, output projection) rather than taken from ``nn.MultiheadAttention``, so that the zoo tests
compare nncli's attention with an independent computation; its parameters are laid out and named as
``nn.MultiheadAttention``'s (``in_proj_weight`` [3D, D], ``in_proj_bias``, ``out_proj``).

:func:`flow_order` gives a model's state-dict keys in the order the data meets them, which is the
order of the matching spec (see ``zoo_models.py``).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention on ``[N, L, D]``, written out; ``causal`` hides later positions."""

    def __init__(self, dim: int, heads: int, causal: bool = False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x):
        n, length, d = x.shape
        hd = d // self.heads
        q, k, v = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(n, length, self.heads, hd).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(hd)  # [N, H, L, L]
        if self.causal:
            future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        out = scores.softmax(-1) @ v  # [N, H, L, hd]
        return self.out_proj(out.transpose(1, 2).reshape(n, length, d))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int, mlp: int, eps: float, causal: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.self_attention = Attention(dim, heads, causal)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, dim))

    def forward(self, x):
        x = x + self.self_attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ViT(nn.Module):
    """Vision Transformer as torchvision's ``VisionTransformer``: patchify by a strided conv, prepend a
    learned class token, add learned positions, encoder blocks, final LayerNorm, head on the class
    token. ViT-B/16 at the defaults: 86,567,656 parameters."""

    def __init__(
        self,
        image: int = 224,
        patch: int = 16,
        layers: int = 12,
        heads: int = 12,
        dim: int = 768,
        mlp: int = 3072,
        num_classes: int = 1000,
    ):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, dim, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, (image // patch) ** 2 + 1, dim).normal_(std=0.02))
        self.layers = nn.Sequential(*(EncoderBlock(dim, heads, mlp, 1e-6) for _ in range(layers)))
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # [N, P, D]
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], 1)
        x = self.layers(x + self.pos_embedding)
        return self.head(self.ln(x)[:, 0])

    def flow_order(self) -> list[str]:
        # nn.Module lists a module's own parameters before its children's; the data meets the
        # patch projection first, then the class token and positions.
        keys = list(self.state_dict())
        first = ["conv_proj.weight", "conv_proj.bias", "class_token", "pos_embedding"]
        return first + [k for k in keys if k not in first]


def vit_b_16(**sizes) -> ViT:
    """ViT-B/16; ``sizes`` (ViT's arguments) shrink it for fast tests."""
    return ViT(**sizes)


class LSTMClassifier(nn.Module):
    """Embed tokens, a two-layer bidirectional LSTM, classify from the last layer's final hidden
    states (forward then backward direction, concatenated)."""

    def __init__(self, vocab: int = 5000, embed: int = 64, hidden: int = 128, classes: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, tokens):
        _, (h_n, _) = self.lstm(self.embedding(tokens))
        return self.fc(torch.cat([h_n[-2], h_n[-1]], dim=1))


def lstm_classifier_count(vocab=5000, embed=64, hidden=128, classes=2) -> int:
    """The LSTM classifier's parameter count worked out from the formulas, not from a model:
    an LSTM layer-direction has 4 gates of ``hidden x (input + hidden)`` weights and two biases."""
    gates = lambda inp: 4 * hidden * (inp + hidden) + 2 * 4 * hidden  # noqa: E731
    return vocab * embed + 2 * gates(embed) + 2 * gates(2 * hidden) + (2 * hidden + 1) * classes


class GPT(nn.Module):
    """A GPT-style character model: token embedding plus learned positions, causal pre-norm
    blocks, final LayerNorm, per-position logits over the vocabulary."""

    def __init__(self, vocab: int, context: int = 64, dim: int = 128, heads: int = 4, layers: int = 4):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.pos_embedding = nn.Parameter(torch.empty(1, context, dim).normal_(std=0.02))
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, 4 * dim, 1e-5, causal=True) for _ in range(layers)))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens):
        return self.head(self.ln(self.blocks(self.embedding(tokens) + self.pos_embedding)))

    def flow_order(self) -> list[str]:
        keys = list(self.state_dict())
        first = ["embedding.weight", "pos_embedding"]
        return first + [k for k in keys if k not in first]


def gpt_count(vocab: int, context: int = 64, dim: int = 128, layers: int = 4) -> int:
    """The GPT model's parameter count from the formulas: per block two LayerNorms (2D each),
    attention 4D^2 + 4D, MLP 8D^2 + 5D."""
    block = 2 * 2 * dim + (4 * dim * dim + 4 * dim) + (8 * dim * dim + 5 * dim)
    return vocab * dim + context * dim + layers * block + 2 * dim + (dim + 1) * vocab


def flow_order(model: nn.Module) -> list[str]:
    """``model``'s state-dict keys in the order the data meets them."""
    order = getattr(model, "flow_order", None)
    return order() if order is not None else list(model.state_dict())
