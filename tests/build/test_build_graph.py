"""The graph blocks, tensor operations, token inputs and sequence layers, each built from a spec
and compared with the same computation written by hand in torch (weights copied across by name
or order): same output, to float64 rounding. Plus causality, `returns: last` against ``h_n``,
vars/expressions resolved to the sizes worked out by hand, `nncli.load` and the new lint.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TESTS
from torch import nn

import nncli
from nncli.build import build_model, infer, random_input
from nncli.lint import check_spec
from nncli.spec import parse_spec


def build(text: str, seed: int = 0):
    return build_model(parse_spec(text), seed=seed, dtype=torch.float64)


def copy_by_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers in registration order (what the zoo does between names)."""
    s = list(src.parameters()) + list(src.buffers())
    d = list(dst.parameters()) + list(dst.buffers())
    assert [t.shape for t in s] == [t.shape for t in d]
    with torch.no_grad():
        for a, b in zip(s, d):
            b.copy_(a)


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert (a - b).abs().max().item() < 1e-10


# -- Parallel, Block, parameter names ----------------------------------------------------------
DENSE_LAYER = """
input: [6, 5, 5]
layers:
  - Parallel:
      branches:
        - []
        - [BatchNorm2d, ReLU, {Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}]
"""


def test_parallel_concat_is_densenets_layer():
    built = build(DENSE_LAYER)
    assert built.output_shape == (10, 5, 5)  # 6 + growth 4, no channel count written
    bn, conv = nn.BatchNorm2d(6).double(), nn.Conv2d(6, 4, 3, padding=1).double()
    hand = nn.ModuleList([bn, conv])
    copy_by_order(built.model, hand)
    x = torch.randn(3, 6, 5, 5, dtype=torch.float64)
    built.model.eval(), hand.eval()
    close(built.model(x), torch.cat([x, conv(F.relu(bn(x)))], dim=1))


def test_parameter_names_follow_the_spec_order():
    built = build("""
input: [4, 6, 6]
layers:
  - Parallel:
      branches:
        - [{Conv2d: {out_channels: 2, kernel_size: 1}}]
        - [ReLU, {Conv2d: {out_channels: 3, kernel_size: 1, bias: false}}]
  - Residual:
      body: [{Conv2d: {out_channels: 8, kernel_size: 1}}]
      shortcut: [{Conv2d: {out_channels: 8, kernel_size: 1}}]
  - Block: {name: head, layers: [Flatten, {Linear: {out_features: 2}}]}
""")
    assert [n for n, _ in built.model.named_parameters()] == [
        "0.branches.0.0.weight",
        "0.branches.0.0.bias",
        "0.branches.1.1.weight",
        "1.body.0.weight",
        "1.body.0.bias",
        "1.shortcut.0.weight",
        "1.shortcut.0.bias",
        "2.1.weight",
        "2.1.bias",
    ]
    info = built.layers[0]
    assert info.type == "Parallel" and info.args == {"merge": "concat", "dim": 1, "branches": 2}
    assert [(c.role, c.type, c.fqn) for c in info.children] == [
        ("branch 0", "Conv2d", "0.branches.0.0"),
        ("branch 1", "ReLU", "0.branches.1.0"),
        ("branch 1", "Conv2d", "0.branches.1.1"),
    ]
    assert built.layers[2].type == "Block" and built.layers[2].name == "head"
    assert [c.fqn for c in built.layers[2].children] == ["2.0", "2.1"]
    assert built.output_shape == (2,)
    modules = dict(built.model.named_modules())
    assert all(c.module is modules[c.fqn] for c in built.walk() if c.fqn in modules)


def test_squeeze_excitation_gate_broadcasts():
    built = build("""
input: [8, 4, 4]
layers:
  - Parallel:
      merge: mul
      branches:
        - []
        - [{AdaptiveAvgPool2d: {output_size: 1}}, {Conv2d: {out_channels: "in_channels // 4", kernel_size: 1}},
           ReLU, {Conv2d: {out_channels: 8, kernel_size: 1}}, Sigmoid]
""")
    c1, c2 = nn.Conv2d(8, 2, 1).double(), nn.Conv2d(2, 8, 1).double()
    copy_by_order(built.model, nn.ModuleList([c1, c2]))
    x = torch.randn(2, 8, 4, 4, dtype=torch.float64)
    gate = torch.sigmoid(c2(F.relu(c1(x.mean(dim=(2, 3), keepdim=True)))))
    close(built.model(x), x * gate)


@pytest.mark.parametrize(
    "merge, reference",
    [
        ("add", lambda a, b, c: a + b + c),
        ("mul", lambda a, b, c: a * b * c),
        ("mean", lambda a, b, c: (a + b + c) / 3),
        ("max", lambda a, b, c: torch.maximum(torch.maximum(a, b), c)),
        ("concat", lambda a, b, c: torch.cat([a, b, c], dim=-1)),
    ],
)
def test_every_merge(merge, reference):
    built = build(f"""
input: [3, 5]
layers:
  - Parallel:
      merge: {merge}
      dim: -1
      branches: [[], [Tanh], [{{Linear: {{out_features: 5}}}}]]
""")
    lin = nn.Linear(5, 5).double()
    copy_by_order(built.model, lin)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    close(built.model(x), reference(x, torch.tanh(x), lin(x)))


# -- tensor operations ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layer, reference",
    [
        ("Permute: {dims: [0, 3, 1, 2]}", lambda x: x.permute(0, 3, 1, 2)),
        ("Transpose: {dim0: 1, dim1: -1}", lambda x: x.transpose(1, 3)),
        ("Reshape: {shape: [6, -1]}", lambda x: x.reshape(x.shape[0], 6, -1)),
        ("Chunk: {chunks: 3, dim: 2, index: 1}", lambda x: torch.chunk(x, 3, 2)[1]),
        ("Chunk: {chunks: 2}", lambda x: torch.chunk(x, 2, 1)[0]),
        ("Select: {dim: 1, index: 0}", lambda x: x[:, 0]),
        ("Narrow: {dim: -1, start: 1, length: 2}", lambda x: x[..., 1:3]),
        ("Mean: {dim: [2, 3]}", lambda x: x.mean(dim=(2, 3))),
        ("Mean: {dim: 1, keepdim: true}", lambda x: x.mean(dim=1, keepdim=True)),
        ("Flatten", lambda x: x.reshape(x.shape[0], -1)),
        ("Unflatten: {dim: 1, unflattened_size: [2, 1]}", lambda x: x.reshape(x.shape[0], 2, 1, 3, 4)),
        ("ChannelShuffle: {groups: 2}", lambda x: x.reshape(x.shape[0], 2, 1, 3, 4).transpose(1, 2).reshape(x.shape)),
        ("Identity", lambda x: x),
    ],
)
def test_tensor_operations_match_torch(layer, reference):
    built = build(f"input: [2, 3, 4]\nlayers:\n  - {layer}\n")
    x = torch.randn(5, 2, 3, 4, dtype=torch.float64)
    y = built.model(x)
    close(y, reference(x))
    assert built.output_shape == tuple(y.shape[1:])


def test_pixel_shuffle_shape():
    built = build("input: [8, 3, 3]\nlayers:\n  - PixelShuffle: {upscale_factor: 2}\n")
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64)
    close(built.model(x), F.pixel_shuffle(x, 2))
    assert built.output_shape == (2, 6, 6)


def test_stochastic_depth_as_torchvision():
    built = build("input: [1000]\nlayers:\n  - StochasticDepth: {p: 0.25, mode: row}\n")
    x = torch.ones(400, 1000, dtype=torch.float64)
    built.model.eval()
    close(built.model(x), x)  # the identity at eval time
    built.model.train()
    torch.manual_seed(1)
    y = built.model(x)
    kept = y[:, 0] != 0
    assert set(torch.unique(y).tolist()) <= {0.0, 1 / 0.75}
    assert torch.all(y == y[:, :1])  # a whole row is kept or dropped
    assert 0.18 < 1 - kept.double().mean().item() < 0.32  # ~p of the rows dropped
    batch = build("input: [3]\nlayers:\n  - StochasticDepth: {p: 0.5, mode: batch}\n").model.train()
    outs = {tuple(batch(torch.ones(64, 3, dtype=torch.float64)).unique().tolist()) for _ in range(40)}
    assert outs == {(0.0,), (2.0,)}  # the whole batch at once


# -- learned tensors, tokens, Embedding -----------------------------------------------------------
def test_class_token_and_position_embedding():
    built = build("input: [4, 6]\nlayers:\n  - ClassToken\n  - PositionEmbedding\n")
    token, pos = built.model[0].weight, built.model[1].weight
    assert token.shape == (1, 1, 6) and torch.all(token == 0)  # torchvision's class_token
    assert pos.shape == (1, 5, 6)  # the incoming example's shape, after the token
    with torch.no_grad():
        token.normal_()
    x = torch.randn(3, 4, 6, dtype=torch.float64)
    close(built.model(x), torch.cat([token.expand(3, -1, -1), x], dim=1) + pos)
    big = build_model(parse_spec("input: [100, 100]\nlayers: [PositionEmbedding]\n"), seed=0)
    assert abs(big.model[0].weight.std().item() - 0.02) < 0.001
    # A spec-wide default init leaves the learned tensors alone (they are not affine layers) ...
    kept = build("input: [4, 6]\ninit: {weight: ones}\nlayers: [ClassToken]\n")
    assert torch.all(kept.model[0].weight == 0)
    # ... and a layer's own init reaches them.
    own = build("input: [4, 6]\nlayers:\n  - ClassToken: {init: {weight: ones}}\n")
    assert torch.all(own.model[0].weight == 1)


def test_embedding_takes_its_vocabulary_from_high():
    spec = parse_spec(
        "input: {shape: [7], dtype: int64, high: 50}\nlayers:\n"
        "  - Embedding: {embedding_dim: 8}\n  - Linear: {out_features: 3}\n"
    )
    built = build_model(spec, seed=0, dtype=torch.float64)
    emb, lin = built.model
    assert emb.num_embeddings == 50 and built.output_shape == (7, 3)
    assert built.input_dtype == "int64" and built.input_high == 50
    assert [i.in_dtype for i in built.layers] == ["int64", "float32"]
    x = random_input(spec, 9)
    assert x.dtype == torch.int64 and x.shape == (9, 7) and 0 <= x.min() and x.max() < 50
    close(built.model(x), lin(emb.weight[x]))


# -- recurrent layers ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_returns(kind, bidirectional):
    flag = str(bidirectional).lower()
    seq = build(f"input: [6, 3]\nlayers:\n  - {kind}: {{hidden_size: 5, num_layers: 2, bidirectional: {flag}}}\n")
    last = build(
        f"input: [6, 3]\nlayers:\n  - {kind}: {{hidden_size: 5, num_layers: 2, bidirectional: {flag}, returns: last}}\n"
    )
    ref = getattr(nn, kind)(3, 5, num_layers=2, bidirectional=bidirectional, batch_first=True).double()
    # torch's own parameter names: the state dict loads as is
    ref.load_state_dict(seq.model[0].state_dict())
    last.model[0].load_state_dict(ref.state_dict())
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    output, h_n = ref(x)
    if kind == "LSTM":
        h_n = h_n[0]
    d = 2 if bidirectional else 1
    close(seq.model(x), output)
    assert seq.output_shape == (6, 5 * d)
    want = torch.cat([h_n[-2], h_n[-1]], dim=-1) if bidirectional else h_n[-1]
    close(last.model(x), want)
    assert last.output_shape == (5 * d,)
    if not bidirectional:  # the last step of the sequence output is the final state too
        close(last.model(x), output[:, -1])


# -- attention -------------------------------------------------------------------------------------
def attention_by_hand(x, w_in, b_in, w_out, b_out, heads, causal):
    n, length, d = x.shape
    q, k, v = (x @ w_in.T + b_in).split(d, dim=-1)
    split = lambda t: t.reshape(n, length, heads, d // heads).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads)
    if causal:
        scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, d)
    return out @ w_out.T + b_out


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_against_hand_and_torch(causal):
    built = build(f"input: [5, 8]\nlayers:\n  - SelfAttention: {{num_heads: 2, causal: {str(causal).lower()}}}\n")
    att = built.model[0]
    assert [n for n, _ in att.named_parameters()] == [
        "in_proj_weight",
        "in_proj_bias",
        "out_proj.weight",
        "out_proj.bias",
    ]
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    with torch.no_grad():
        y = built.model(x)
        close(
            y,
            attention_by_hand(
                x, att.in_proj_weight, att.in_proj_bias, att.out_proj.weight, att.out_proj.bias, 2, causal
            ),
        )
        mha = nn.MultiheadAttention(8, 2, batch_first=True).double()
        mha.load_state_dict(att.state_dict())
        mask = torch.ones(5, 5, dtype=torch.bool).triu(1) if causal else None
        close(y, mha(x, x, x, attn_mask=mask)[0])


def test_causal_encoder_layer_matches_torch_with_a_mask():
    built = build(
        "input: [6, 8]\nlayers:\n  - TransformerEncoderLayer: {nhead: 2, dim_feedforward: 16, "
        "dropout: 0.0, causal: true}\n"
    )
    ref = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True).double()
    ref.load_state_dict(built.model[0].state_dict())  # d_model inferred, torch's names
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    mask = nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    close(built.model(x), ref(x, src_mask=mask))


GPT = """
input: {shape: [12], dtype: int64, high: 20}
vars: {d: 16}
layers:
  - Embedding: {embedding_dim: d}
  - PositionEmbedding
  - Repeat:
      times: 2
      layers:
        - Residual: {body: [LayerNorm, {SelfAttention: {num_heads: 4, causal: true}}]}
        - Residual: {body: [LayerNorm, {Linear: {out_features: "4 * d"}}, GELU, {Linear: {out_features: d}}]}
  - TransformerEncoderLayer: {nhead: 2, dim_feedforward: 32, dropout: 0.0, causal: true}
  - LayerNorm
  - Linear: {out_features: 20}
"""


def test_causal_stack_never_looks_ahead():
    built = build(GPT)
    model = built.model.eval()
    tokens = torch.randint(0, 20, (4, 12))
    with torch.no_grad():
        base = model(tokens)
        for t in (0, 5, 10):
            changed = tokens.clone()
            changed[:, t + 1 :] = torch.randint(0, 20, changed[:, t + 1 :].shape)
            out = model(changed)
            assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-12, rtol=0)
            assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :])  # later positions did change
    # Without `causal` the same stack looks ahead: the test can fail.
    both = build(GPT.replace("causal: true", "causal: false")).model.eval()
    with torch.no_grad():
        changed = tokens.clone()
        changed[:, 6:] = (changed[:, 6:] + 1) % 20
        assert not torch.allclose(both(changed)[:, :6], both(tokens)[:, :6])


# -- vars and expressions ---------------------------------------------------------------------------
def test_vars_scopes_and_expressions_resolve_to_hand_worked_sizes():
    built = build("""
input: [16, 8, 8]
vars: {expansion: 6, k: 3}
layers:
  - Residual:
      vars: {c_in: in_channels}
      body:
        - Conv2d: {out_channels: "in_channels * expansion", kernel_size: 1}
        - Conv2d: {out_channels: in_channels, groups: in_channels, kernel_size: [k, k], padding: "k // 2"}
        - Parallel:
            merge: mul
            vars: {c: in_channels}
            branches:
              - []
              - [{AdaptiveAvgPool2d: {output_size: 1}}, {Conv2d: {out_channels: "max(1, c_in // 4)", kernel_size: 1}}, ReLU,
                 {Conv2d: {out_channels: c, kernel_size: 1}}, Sigmoid]
        - Conv2d: {out_channels: c_in, kernel_size: 1}
  - Repeat:
      vars: {expansion: 2}
      times: "expansion + 1"
      layers: [{Conv2d: {out_channels: "in_channels * expansion // 2 + 1", kernel_size: 1}}]
""")
    body = [c for c in built.layers[0].children if c.role == "body"]
    assert body[0].args["out_channels"] == 96 and body[1].args["groups"] == 96
    assert body[1].args["kernel_size"] == (3, 3) and body[1].args["padding"] == 1
    squeeze = [c for c in body[2].children if c.type == "Conv2d"]
    assert squeeze[0].args["out_channels"] == 4  # c_in = 16, the block's input, not the 96 inside
    assert squeeze[1].args["out_channels"] == 96  # c = the Parallel's input
    assert body[3].args["out_channels"] == 16
    # Repeat: inner expansion 2 shadows the global 6; times 3; each copy adds one channel.
    assert built.layers[1].args["times"] == 3
    assert [c.args["out_channels"] for c in built.layers[1].children] == [17, 18, 19]
    assert built.output_shape == (19, 8, 8)


def test_words_stay_words():
    built = build(
        "input: [2, 4, 4]\nvars: {same: 3}\nlayers:\n"
        "  - Upsample: {scale_factor: 2, mode: nearest-exact}\n"
        "  - Conv2d: {out_channels: 2, kernel_size: 3, padding: same}\n"
    )
    assert built.layers[0].args["mode"] == "nearest-exact"  # a word, though it holds a '-'
    assert built.layers[1].args["padding"] == "same"  # padding's words win over a var's name
    assert built.output_shape == (2, 8, 8)


def test_var_override_changes_the_network():
    from nncli.spec.overrides import apply_override
    from nncli.spec.source import parse_yaml

    text = "input: [4]\nvars: {width: 8}\nlayers:\n  - Linear: {out_features: width}\n"
    data = parse_yaml(text).data
    apply_override(data, "vars.width", 32)
    import yaml

    assert infer(parse_spec(yaml.safe_dump(data))).output_shape == (32,)


def test_meta_inference_and_real_build_agree():
    spec = parse_spec(GPT)
    meta, real = infer(spec), build_model(spec)
    assert [(i.path, i.type, i.in_shape, i.out_shape, i.params) for i in meta.walk()] == [
        (i.path, i.type, i.in_shape, i.out_shape, i.params) for i in real.walk()
    ]
    d, v, length = 16, 20, 12  # the parameter count worked out by hand
    attention = 4 * d * d + 4 * d
    mlp = d * 4 * d + 4 * d + 4 * d * d + d
    encoder = attention + (d * 32 + 32) + (32 * d + d) + 2 * 2 * d
    hand = v * d + length * d + 2 * (2 * d + attention + 2 * d + mlp) + encoder + 2 * d + d * v + v
    assert sum(p.numel() for p in real.model.parameters()) == hand
    assert meta.output_shape == real.output_shape == (12, 20)


# -- nncli.load and the lint ---------------------------------------------------------------------------
def test_load_from_text_and_path(tmp_path):
    path = tmp_path / "gpt.yaml"
    path.write_text(GPT)
    a, b = nncli.load(path), nncli.load(str(path))
    c = nncli.load(GPT, seed=0)
    d = nncli.load(GPT, seed=1)
    assert isinstance(a, nn.Sequential)
    for (na, pa), (nb, pb), (nc, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert na == nb == nc and torch.equal(pa, pb) and torch.equal(pa, pc)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), d.parameters()))
    assert a(torch.randint(0, 20, (2, 12))).shape == (2, 12, 20)


def test_load_reports_spec_errors():
    from nncli.errors import InputError, SpecError

    with pytest.raises(SpecError) as err:
        nncli.load("input: [4]\nlayers:\n  - Linear: {out_features: widht}\nvars: {width: 3}\n")
    assert err.value.line == 3 and err.value.spec_path == "layers[0].Linear.out_features"
    with pytest.raises(InputError):
        nncli.load("no/such/spec.yaml")


def test_import_nncli_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, nncli; print('torch' in sys.modules, callable(nncli.load))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def lint_codes(text: str) -> list[str]:
    return [f.code for f in check_spec(parse_spec(text)).findings]


def test_lint_notes_attention_that_looks_both_ways():
    found = check_spec(parse_spec(GPT.replace("causal: true", "causal: false"))).findings
    notes = [f for f in found if f.code == "attends-both-ways"]
    assert len(notes) == 1 and notes[0].severity == "info"
    assert notes[0].spec_path == "layers[2].Repeat.layers[0].Residual.body[1]"
    assert "attends-both-ways" not in lint_codes(GPT)  # causal set
    # float inputs (a ViT): attending both ways is the point, no note
    assert "attends-both-ways" not in lint_codes("input: [5, 8]\nlayers:\n  - SelfAttention: {num_heads: 2}\n")


# -- the new broken specs fail the same way whichever build runs ---------------------------------
GRAPH_BROKEN = [
    "parallel_branch_mismatch.yaml",
    "parallel_add_mismatch.yaml",
    "parallel_dim_negative_batch.yaml",
    "expression_fraction.yaml",
    "expression_unknown_var.yaml",
    "conv2d_on_tokens.yaml",
    "linear_on_tokens.yaml",
    "embedding_vocabulary_too_small.yaml",
    "rnn_returns_first.yaml",
    "causal_on_linear.yaml",
    "permute_moves_batch.yaml",
    "select_batch.yaml",
    "self_attention_on_vectors.yaml",
    "repeat_times_expression_zero.yaml",
    "block_vars_shadow.yaml",
]


@pytest.mark.parametrize("name", GRAPH_BROKEN)
def test_real_build_fails_like_meta_inference(name):

    from nncli.errors import SpecError
    from nncli.spec import load_spec

    spec = load_spec(TESTS / "broken_specs" / name)
    with pytest.raises(SpecError) as meta:
        infer(spec)
    with pytest.raises(SpecError) as real:
        build_model(spec, device="cpu")
    assert (real.value.line, real.value.spec_path, real.value.message) == (
        meta.value.line,
        meta.value.spec_path,
        meta.value.message,
    )


def test_lints_see_inside_branches_and_blocks():
    # Two Linears in one branch compose to one affine map; a Linear before the Parallel and one
    # inside a branch do not (the merge is between them), so exactly one collapse is found.
    found = check_spec(
        parse_spec("""
input: [8]
layers:
  - Linear: {out_features: 8}
  - Parallel:
      merge: add
      branches:
        - [{Linear: {out_features: 8}}, {Linear: {out_features: 8}}]
        - [ReLU]
  - Block: {layers: [ReLU, {Linear: {out_features: 4}}, {Linear: {out_features: 2}}]}
""")
    ).findings
    collapses = [f.spec_path for f in found if f.code == "linear-collapse"]
    assert collapses == ["layers[1].Parallel.branches[0][0]", "layers[2].Block.layers[1]"]
