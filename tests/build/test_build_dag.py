"""Specs with named tensors built as a Graph, checked against hand-written torch modules: exact
parameter names and counts, and float64 forwards equal after copying the weights by order."""

from __future__ import annotations

import pytest
import torch
from spec_texts import SIAMESE_DAG
from torch import nn

from nncli.build import build_model
from nncli.errors import SpecError
from nncli.spec import parse_spec

torch.set_num_threads(1)

SIAMESE = SIAMESE_DAG


class Siamese(nn.Module):
    def __init__(self):
        super().__init__()
        self.tower = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(100, 8))
        self.head = nn.Linear(16, 2)

    def forward(self, left, right):
        return self.head(torch.cat([self.tower(left), self.tower(right)], dim=1))


def _copy(ours: nn.Module, ref: nn.Module) -> None:
    """Reference weights into ours, by order (the shapes must agree one for one)."""
    mine, theirs = list(ours.parameters()), list(ref.parameters())
    assert [tuple(p.shape) for p in mine] == [tuple(p.shape) for p in theirs]
    with torch.no_grad():
        for a, b in zip(mine, theirs):
            a.copy_(b)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_siamese_shares_one_tower_with_readable_names():
    built = build_model(parse_spec(SIAMESE), dtype=torch.float64)
    ref = Siamese().double()
    names = [n for n, _ in built.model.named_parameters()]
    assert names == [n for n, _ in ref.named_parameters()]
    assert _count(built.model) == _count(ref) == 40 + 808 + 34
    _copy(built.model, ref)
    left, right = torch.randn(3, 1, 12, 12, dtype=torch.float64), torch.randn(3, 1, 12, 12, dtype=torch.float64)
    assert torch.equal(built.model(left, right), ref(left, right))
    assert torch.equal(built.model(right=right, left=left), ref(left, right))  # by keyword
    # The shared use adds no parameters anywhere a tool sums layers.
    assert sum(info.params for info in built.layers) == _count(ref)
    assert [info.shared for info in built.layers] == [None, "tower", None, None]
    assert built.inputs == (("left", (1, 12, 12), "float32", None), ("right", (1, 12, 12), "float32", None))
    assert built.outputs == (("output", (2,), "float32"),)


def test_spec_without_new_keys_is_still_a_sequential():
    spec = parse_spec("input: [4]\nlayers:\n  - Linear: {name: hidden, out_features: 3}\n  - ReLU\n")
    assert not spec.graph
    model = build_model(spec).model
    assert type(model) is nn.Sequential
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]


def test_outputs_are_a_tuple_in_order():
    spec = parse_spec(
        "input: [6]\noutputs: [logits, features]\nlayers:\n"
        "  - Linear: {name: features, out_features: 5}\n  - ReLU\n  - Linear: {name: logits, out_features: 2}\n"
    )
    built = build_model(spec, dtype=torch.float64)
    ref = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    _copy(built.model, ref)
    x = torch.randn(4, 6, dtype=torch.float64)
    logits, features = built.model(x)
    assert torch.equal(logits, ref(x)) and torch.equal(features, ref[0](x))
    assert [o[0] for o in built.outputs] == ["logits", "features"]
    assert [n for n, _ in built.model.named_parameters()] == [
        "features.weight",
        "features.bias",
        "logits.weight",
        "logits.bias",
    ]


GPT_TIED = """
input: {shape: [8], dtype: int64, high: 20}
layers:
  - Embedding: {name: tok, embedding_dim: 16}
  - TransformerEncoderLayer: {nhead: 2, causal: true, dim_feedforward: 32, dropout: 0.0}
  - Linear: {name: lm_head, out_features: 20, bias: false, tie: {weight: tok}}
"""


def test_tied_embedding_counted_once_and_forward_equal():
    built = build_model(parse_spec(GPT_TIED), dtype=torch.float64)
    assert built.model.lm_head.weight is built.model.tok.weight
    emb = nn.Embedding(20, 16)
    layer = nn.TransformerEncoderLayer(16, 2, 32, 0.0, batch_first=True)
    head = nn.Linear(16, 20, bias=False)
    head.weight = emb.weight
    ref = nn.ModuleList([emb, layer, head]).double()
    assert _count(built.model) == _count(ref) == 20 * 16 + sum(p.numel() for p in layer.parameters())
    assert sum(info.params for info in built.layers) == _count(ref)
    assert built.layers[2].tied == {"weight": "tok"}
    _copy(built.model, ref)
    tokens = torch.randint(0, 20, (3, 8))
    mask = torch.ones(8, 8, dtype=torch.bool).triu(1)
    want = head(layer(emb(tokens), src_mask=mask, is_causal=True))
    assert torch.allclose(built.model(tokens), want, atol=1e-12)


def test_cross_attention_is_multihead_attention_with_inferred_kdim():
    spec = parse_spec(
        "inputs:\n  q: [5, 8]\n  kv: [7, 6]\nlayers:\n  - CrossAttention: {from: q, num_heads: 2, memory: kv}\n"
    )
    built = build_model(spec, dtype=torch.float64)
    ref = nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True).double()
    assert [n for n, _ in built.model.named_parameters()] == ["0." + n for n, _ in ref.named_parameters()]
    _copy(built.model, ref)
    q, kv = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 7, 6, dtype=torch.float64)
    assert torch.equal(built.model(q, kv), ref(q, kv, kv, need_weights=False)[0])
    assert built.layers[0].args["kdim"] == 6 and "kdim" in built.layers[0].inferred


ENC_DEC = """
inputs:
  src: {shape: [6], dtype: int64, high: 10}
  tgt: {shape: [5], dtype: int64, high: 12}
layers:
  - Embedding: {name: src_embed, from: src, embedding_dim: 16}
  - Repeat: {name: encoder, times: 2, layers: [{TransformerEncoderLayer: {nhead: 2, dim_feedforward: 32, dropout: 0.0}}]}
  - Embedding: {name: tgt_embed, from: tgt, embedding_dim: 16}
  - Repeat:
      name: decoder
      times: 2
      layers: [{TransformerDecoderLayer: {nhead: 2, memory: encoder, causal: true, dim_feedforward: 32, dropout: 0.0}}]
  - Linear: {name: out, out_features: 12}
"""


class EncDec(nn.Module):
    def __init__(self):
        super().__init__()
        self.src_embed = nn.Embedding(10, 16)
        self.encoder = nn.ModuleList(nn.TransformerEncoderLayer(16, 2, 32, 0.0, batch_first=True) for _ in range(2))
        self.tgt_embed = nn.Embedding(12, 16)
        self.decoder = nn.ModuleList(nn.TransformerDecoderLayer(16, 2, 32, 0.0, batch_first=True) for _ in range(2))
        self.out = nn.Linear(16, 12)

    def forward(self, src, tgt):
        memory = self.src_embed(src)
        for layer in self.encoder:
            memory = layer(memory)
        x = self.tgt_embed(tgt)
        mask = torch.ones(tgt.shape[1], tgt.shape[1], dtype=torch.bool).triu(1)
        for layer in self.decoder:
            x = layer(x, memory, tgt_mask=mask, tgt_is_causal=True)
        return self.out(x)


def test_encoder_decoder_matches_hand_written_torch():
    built = build_model(parse_spec(ENC_DEC), dtype=torch.float64)
    ref = EncDec().double().eval()
    built.model.eval()
    assert _count(built.model) == _count(ref)
    ours = [n.replace(".0.0.", ".0.").replace(".1.0.", ".1.") for n, _ in built.model.named_parameters()]
    assert ours == [n for n, _ in ref.named_parameters()]
    _copy(built.model, ref)
    src, tgt = torch.randint(0, 10, (3, 6)), torch.randint(0, 12, (3, 5))
    assert torch.allclose(built.model(src, tgt), ref(src, tgt), atol=1e-12)
    assert built.layers[2].args["num_embeddings"] == 12  # the high of the input it reads
    # causal: outputs before t do not move when targets from t on change
    changed = tgt.clone()
    changed[:, 3:] = (changed[:, 3:] + 1) % 12
    a, b = built.model(src, tgt), built.model(src, changed)
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-12) and not torch.allclose(a[:, 3:], b[:, 3:])


def test_repeat_accumulate_sums_a_name_over_copies():
    spec = parse_spec(
        "input: [4]\nlayers:\n"
        "  - Repeat: {times: 3, accumulate: [skip], layers: [{Linear: {out_features: 4}},"
        " {Linear: {name: skip, out_features: 2}}, {Identity: {from: skip}}, {Linear: {from: skip, out_features: 4}}]}\n"
        "  - Merge: {from: [skip], mode: add}\n"
    )
    built = build_model(spec, dtype=torch.float64)
    model = built.model
    x = torch.randn(2, 4, dtype=torch.float64)
    want, h = 0, x
    for copy in model.get_submodule("0").children():
        layer = dict(copy.named_children())
        s = layer["1"](layer["0"](h))
        want, h = want + s, layer["3"](s)
    assert torch.equal(model(x), want)
    assert built.output_shape == (2,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "inputs:\n  a: [3]\n  b: [4]\nlayers:\n  - Merge: {from: [a, b], mode: add}\n",
            "operands: a [N, 3], b [N, 4]",
        ),
        (
            "inputs:\n  a: [3]\n  b: [4]\nlayers:\n  - Linear: {name: f, from: a, out_features: 2}\n"
            "  - Linear: {share: f, from: b}\n",
            "f was built for [N, 3] (float32) and does not take [N, 4]",
        ),
        (
            "input: {shape: [4], dtype: int64, high: 9}\nlayers:\n  - Embedding: {name: e, embedding_dim: 3}\n"
            "  - Linear: {out_features: 8, tie: {weight: e}}\n",
            "tied parameters need equal shapes",
        ),
        (
            "inputs:\n  a: [3, 8]\n  b: [2, 5]\nlayers:\n  - TransformerDecoderLayer: {nhead: 2, memory: b}\n",
            "d_model=8, but memory 'b'",
        ),
    ],
)
def test_graph_build_errors_are_located(text, message):
    with pytest.raises(SpecError) as info:
        build_model(parse_spec(text))
    assert message in str(info.value)
    assert info.value.line is not None
