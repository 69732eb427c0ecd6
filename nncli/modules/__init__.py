"""nncli's own modules: the pieces a spec names that torch.nn does not have, one file per family.

``blocks`` (Residual, Repeat, Parallel, Block), ``tensor_ops`` (Permute, Reshape, ...),
``sequence`` (recurrent layers with ``returns``, SelfAttention, causal encoder layers), ``tokens``
(ClassToken, PositionEmbedding), ``norms`` (LayerNorm2d, LayerScale), ``step`` (the Heaviside unit). They depend on torch only, so a
saved model needs nothing but nncli importable to load.
"""

from nncli.modules.blocks import Block, Parallel, Repeat, Residual
from nncli.modules.norms import LayerNorm2d, LayerScale
from nncli.modules.sequence import GRU, LSTM, RNN, SelfAttention, TransformerEncoderLayer
from nncli.modules.step import Step
from nncli.modules.tensor_ops import Chunk, Mean, Narrow, Permute, Reshape, Select, StochasticDepth, Transpose
from nncli.modules.tokens import ClassToken, PositionEmbedding

__all__ = [
    "Block",
    "Chunk",
    "ClassToken",
    "GRU",
    "LSTM",
    "LayerNorm2d",
    "LayerScale",
    "Mean",
    "Narrow",
    "Parallel",
    "Permute",
    "PositionEmbedding",
    "RNN",
    "Repeat",
    "Reshape",
    "Residual",
    "Select",
    "SelfAttention",
    "Step",
    "StochasticDepth",
    "TransformerEncoderLayer",
    "Transpose",
]
