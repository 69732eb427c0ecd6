"""Hand-written torch references for the graph specs in ``specs/graphs/`` (several inputs, shared
modules, tied weights). Each gives its parameters in the order the spec's model holds them
(``flow_params``), so weights copy across one for one."""

from __future__ import annotations

import torch
from torch import nn
from zoo_models_seq import GPT


class Siamese(nn.Module):
    """One convolutional tower applied to both images; a head on the two codes."""

    def __init__(self):
        super().__init__()
        self.tower = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(1600, 128),
        )
        self.hidden = nn.Linear(256, 64)
        self.head = nn.Linear(64, 2)

    def forward(self, left, right):
        codes = torch.cat([self.tower(left), self.tower(right)], dim=1)
        return self.head(torch.relu(self.hidden(codes)))

    def flow_params(self) -> list:
        return list(self.parameters())


class TiedGPT(GPT):
    """zoo_models_seq.GPT with the output layer's weight the token embedding."""

    def __init__(self, vocab: int, **sizes):
        super().__init__(vocab, **sizes)
        self.head.weight = self.embedding.weight

    def flow_params(self) -> list:
        params = dict(self.named_parameters())  # the tied weight once, under embedding.weight
        first = ["embedding.weight", "pos_embedding"]
        return [params[k] for k in first] + [p for k, p in params.items() if k not in first]


class Seq2SeqTransformer(nn.Module):
    """torch.nn.Transformer with one shared token embedding, learned positions for source and
    target, a causal decoder and an output layer tied to the embedding."""

    def __init__(self, vocab=1000, length=32, d=512, heads=8, layers=6, ff=2048, dropout=0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.source_positions = nn.Parameter(torch.empty(1, length, d).normal_(std=0.02))
        self.target_positions = nn.Parameter(torch.empty(1, length, d).normal_(std=0.02))
        self.core = nn.Transformer(d, heads, layers, layers, ff, dropout, batch_first=True)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, source, target):
        length = target.shape[1]
        mask = torch.ones(length, length, dtype=torch.bool, device=target.device).triu(1)
        memory = self.core.encoder(self.embed(source) + self.source_positions)
        out = self.core.decoder(self.embed(target) + self.target_positions, memory, tgt_mask=mask, tgt_is_causal=True)
        return self.head(out)

    def flow_params(self) -> list:
        return [
            self.embed.weight,
            self.source_positions,
            *self.core.encoder.parameters(),
            self.target_positions,
            *self.core.decoder.parameters(),
        ]


class Bert(nn.Module):
    """BERT: word + token-type + position embeddings, LayerNorm, post-norm GELU encoder layers,
    and the pooler on the first token; returns (sequence, pooled)."""

    def __init__(self, vocab=30522, d=768, heads=12, layers=12, ff=3072, max_length=512):
        super().__init__()
        self.words = nn.Embedding(vocab, d)
        self.types = nn.Embedding(2, d)
        self.positions = nn.Parameter(torch.empty(max_length, d).normal_(std=0.02))
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.dropout = nn.Dropout(0.1)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, heads, ff, 0.1, activation="gelu", layer_norm_eps=1e-12, batch_first=True)
            for _ in range(layers)
        )
        self.pooler = nn.Linear(d, d)

    def forward(self, tokens, token_types):
        x = self.words(tokens) + self.types(token_types) + self.positions[: tokens.shape[1]]
        x = self.dropout(self.norm(x))
        for layer in self.layers:
            x = layer(x)
        return x, torch.tanh(self.pooler(x[:, 0]))

    def flow_params(self) -> list:
        # the position table is the module's own parameter: parameters() would list it first
        rest = [*self.norm.parameters(), *self.layers.parameters(), *self.pooler.parameters()]
        return [self.words.weight, self.types.weight, self.positions, *rest]


class WaveNet(nn.Module):
    """One stack of dilated causal gated layers; the skips of every layer summed."""

    def __init__(self, levels=256, residual=32, skip=256, layers=10):
        super().__init__()
        self.inp = nn.Conv1d(levels, residual, 1)
        conv = lambda i: nn.Conv1d(residual, residual, 2, dilation=2**i)  # noqa: E731
        self.filters = nn.ModuleList(conv(i) for i in range(layers))
        self.gates = nn.ModuleList(conv(i) for i in range(layers))
        self.skips = nn.ModuleList(nn.Conv1d(residual, skip, 1) for _ in range(layers))
        self.residuals = nn.ModuleList(nn.Conv1d(residual, residual, 1) for _ in range(layers))
        self.out1, self.out2 = nn.Conv1d(skip, skip, 1), nn.Conv1d(skip, levels, 1)

    def forward(self, x):
        h, total = self.inp(x), 0
        for i, (f, g, s, r) in enumerate(zip(self.filters, self.gates, self.skips, self.residuals)):
            past = nn.functional.pad(h, (2**i, 0))  # causal: output t sees inputs up to t
            z = torch.tanh(f(past)) * torch.sigmoid(g(past))
            total, h = total + s(z), h + r(z)
        return self.out2(torch.relu(self.out1(torch.relu(total))))

    def flow_params(self) -> list:
        per_layer = zip(self.filters, self.gates, self.skips, self.residuals)
        return [
            *self.inp.parameters(),
            *(p for layer in per_layer for m in layer for p in m.parameters()),
            *self.out1.parameters(),
            *self.out2.parameters(),
        ]
