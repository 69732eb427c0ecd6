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
