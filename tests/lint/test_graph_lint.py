"""The lint rules on specs that name tensors (several inputs, `from`, `memory`).

- ``attends-both-ways`` asks about the attention on the way to an output through the data: an
  encoder read by a decoder only as its ``memory`` is meant to see the whole source and is not
  noted; a decoder-only stack without ``causal`` still is, and so is a decoder side that attends
  both ways while its encoder is exempt.
- ``linear-factorisation`` follows the data: an element that reads a named tensor (``from``) does
  not continue the layer written before it.
"""

from __future__ import annotations

import textwrap

from conftest import SPECS
from spec_texts import reverse_digits

from nncli.lint import check_spec
from nncli.spec import load_spec, parse_spec

ENCODER_DECODER = reverse_digits(dim=16, heads=2, feedforward=32, name="enc-dec")

# The same shapes, the decoder side built from self-attention and cross-attention.
CROSS = """
name: cross
inputs:
  source: {shape: [6], dtype: int64, high: 10}
  target: {shape: [6], dtype: int64, high: 11}
layers:
  - Embedding: {from: source, embedding_dim: 16}
  - Repeat: {name: encoded, times: 2, layers: [{SelfAttention: {num_heads: 2}}]}
  - Embedding: {from: target, embedding_dim: 16}
  - SelfAttention: {num_heads: 2, causal: true}
  - CrossAttention: {num_heads: 2, memory: encoded}
  - Linear: {out_features: 10}
"""


def notes(text: str) -> list:
    return [f for f in check_spec(parse_spec(textwrap.dedent(text))).findings if f.code == "attends-both-ways"]


def test_an_encoder_read_as_memory_is_not_noted():
    assert notes(ENCODER_DECODER) == []
    assert notes(CROSS) == []
    findings = check_spec(load_spec(SPECS / "graphs" / "transformer.yaml")).findings
    assert "attends-both-ways" not in [f.code for f in findings]


def test_a_decoder_side_that_attends_both_ways_is_noted_at_its_own_layer():
    (note,) = notes(CROSS.replace("{num_heads: 2, causal: true}", "{num_heads: 2}"))
    assert note.spec_path == "layers[3]"  # the target's self-attention, not the encoder's
    assert "1 attention layer(s)" in note.message


def test_an_encoder_whose_output_is_also_read_as_data_is_asked_about():
    # the encoder's output goes on through a Merge into the logits, not only into the memory
    text = CROSS.replace("{num_heads: 2, causal: true}", "{num_heads: 2, causal: false}").replace(
        "  - Linear: {out_features: 10}\n",
        "  - Merge: {from: [encoded, cross], mode: add}\n  - Linear: {out_features: 10}\n",
    )
    text = text.replace(
        "CrossAttention: {num_heads: 2, memory: encoded}",
        "CrossAttention: {name: cross, num_heads: 2, memory: encoded}",
    )
    (note,) = notes(text)
    assert note.spec_path == "layers[1].Repeat.layers[0]"  # the encoder's, first on the way


def test_a_decoder_only_stack_without_causal_masking_is_still_noted():
    gpt = (SPECS / "graphs" / "gpt-char-tied.yaml").read_text()
    assert notes(gpt) == []
    (note,) = notes(gpt.replace("causal: true", "causal: false"))
    assert note.spec_path == "layers[2].Repeat.layers[0].Residual.body[1]"
    assert "4 attention layer(s)" in note.message


def test_a_head_reading_an_earlier_tensor_does_not_continue_the_layer_before_it():
    text = """
    input: [8]
    outputs: [a, b]
    layers:
      - Linear: {name: h, out_features: 8}
      - ReLU
      - Linear: {name: a, out_features: 4}
      - Linear: {name: b, from: h, out_features: 4}    # reads h, not a
    """
    codes = [f.code for f in check_spec(parse_spec(textwrap.dedent(text))).findings]
    assert "linear-collapse" not in codes and "linear-factorisation" not in codes
    chained = text.replace("from: h, ", "")  # now it does follow `a`: two Linears in a row
    codes = [f.code for f in check_spec(parse_spec(textwrap.dedent(chained))).findings]
    assert "linear-collapse" in codes or "linear-factorisation" in codes
    inception = check_spec(load_spec(SPECS / "graphs" / "inception-v3.yaml")).findings
    assert [f.code for f in inception] == []  # its auxiliary head reads Mixed_6e
