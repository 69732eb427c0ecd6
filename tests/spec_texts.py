"""Small spec texts that tests of several packages train or build."""

from __future__ import annotations

# A two-layer MLP on a small moons set: one epoch trains in well under a second.
TINY_MLP_RUN = """
name: tiny-mlp
input: [2]
layers:
  - Linear: {out_features: 8}
  - ReLU
  - Linear: {out_features: 2}
data: {name: moons, n: 200, noise: 0.1}
train: {optimizer: sgd, lr: 0.1, batch_size: 50, epochs: 1, seed: 3}
"""


def tiny_gpt(context=16, high=11, dim=16, heads=2, depth=1, causal="true", extra=""):
    """A pre-norm GPT over ``context`` token ids below ``high`` (``extra``: more top-level YAML)."""
    return f"""
name: tiny-gpt
input: {{shape: [{context}], dtype: int64, high: {high}}}
layers:
  - Embedding: {{embedding_dim: {dim}}}
  - PositionEmbedding
  - Repeat:
      times: {depth}
      layers:
        - Residual: {{body: [LayerNorm, {{SelfAttention: {{num_heads: {heads}, causal: {causal}}}}}]}}
        - Residual: {{body: [LayerNorm, {{Linear: {{out_features: {4 * dim}}}}}, GELU, {{Linear: {{out_features: {dim}}}}}]}}
  - LayerNorm
  - Linear: {{out_features: {high}}}
{extra}"""


# A siamese network on two 12x12 images: one tower applied to both (shared), the two codes joined.
SIAMESE_DAG = """
inputs:
  left: [1, 12, 12]
  right: [1, 12, 12]
layers:
  - Block: {name: tower, from: left, layers: [{Conv2d: {out_channels: 4, kernel_size: 3}}, ReLU,
            {MaxPool2d: {kernel_size: 2}}, Flatten, {Linear: {out_features: 8}}]}
  - Block: {name: tower_r, share: tower, from: right}
  - Merge: {from: [tower, tower_r], mode: concat}
  - Linear: {name: head, out_features: 2}
"""

# A small encoder-decoder of the peer suite's shapes: two token inputs, a shared embedding, a head
# tied to it, and the encoder's output as a second output.
ENC_DEC_DAG = """
inputs:
  src: {shape: [6], dtype: int64, high: 10}
  tgt: {shape: [5], dtype: int64, high: 12}
outputs: [logits, memory]
layers:
  - Embedding: {name: embed, from: src, embedding_dim: 16, num_embeddings: 12}
  - Linear: {name: memory, out_features: 16}
  - Embedding: {share: embed, from: tgt}
  - CrossAttention: {num_heads: 2, memory: memory}
  - Linear: {name: logits, out_features: 12, bias: false, tie: {weight: embed}}
"""


# Two float inputs on very different scales and an auxiliary head: the training, evaluate,
# predict, export and attack tests of several inputs.
TWO_FLOAT_DAG = """
name: two-float
inputs: {a: [2], b: [3]}
layers:
  - Linear: {from: a, out_features: 8, name: ha}
  - Linear: {from: b, out_features: 8}
  - ReLU: {name: hb}
  - Merge: {from: [ha, hb], mode: concat, dim: 1}
  - ReLU
  - Linear: {out_features: 2, name: main}
  - Linear: {from: ha, out_features: 2, name: aux}
outputs: [main, aux]
"""


def reverse_digits(dim=32, heads=4, feedforward=64, name="reverse-digits"):
    """The digit-reversal encoder-decoder on strings of 6: a Transformer encoder layer whose
    output is the memory of a causal Transformer decoder layer over the target tokens."""
    return f"""
name: {name}
inputs:
  source: {{shape: [6], dtype: int64, high: 10}}
  target: {{shape: [6], dtype: int64, high: 11}}
layers:
  - Embedding: {{from: source, embedding_dim: {dim}}}
  - PositionEmbedding
  - TransformerEncoderLayer: {{name: memory, nhead: {heads}, dim_feedforward: {feedforward}, dropout: 0.0}}
  - Embedding: {{from: target, embedding_dim: {dim}}}
  - PositionEmbedding
  - TransformerDecoderLayer: {{nhead: {heads}, memory: memory, causal: true, dim_feedforward: {feedforward}, dropout: 0.0}}
  - Linear: {{out_features: 10}}
"""
