"""nncli's own modules: the pieces a spec names that torch.nn does not have, one file per family.

``blocks`` (Residual, Repeat, Parallel, Block), ``tensor_ops`` (Permute, Reshape, ...),
``graph`` (Graph, its blocks and Merge: named tensors), ``cross`` (CrossAttention and the
decoder layer, reading a memory), ``sequence`` (recurrent layers with ``returns``, SelfAttention, causal encoder layers), ``tokens``
(ClassToken, PositionEmbedding), ``norms`` (LayerNorm2d, LayerScale), ``step`` (the Heaviside unit), ``preprocess`` (a trained network behind its input
normalisation). They depend on torch only, so a
saved model needs nothing but nncli importable to load.
"""

from nncli.modules.blocks import Block, Parallel, Repeat, Residual
from nncli.modules.cross import CrossAttention, TransformerDecoderLayer
from nncli.modules.graph import Graph, GraphBlock, GraphRepeat, Merge
from nncli.modules.norms import LayerNorm2d, LayerScale
from nncli.modules.preprocess import Standardize, TrainedNetwork
from nncli.modules.sequence import GRU, LSTM, RNN, SelfAttention, TransformerEncoderLayer
from nncli.modules.step import Step
from nncli.modules.tensor_ops import Chunk, Mean, Narrow, Permute, Reshape, Select, StochasticDepth, Transpose
from nncli.modules.tokens import ClassToken, PositionEmbedding

__all__ = [
    "Block",
    "Chunk",
    "ClassToken",
    "CrossAttention",
    "GRU",
    "Graph",
    "GraphBlock",
    "GraphRepeat",
    "LSTM",
    "LayerNorm2d",
    "LayerScale",
    "Mean",
    "Merge",
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
    "Standardize",
    "StochasticDepth",
    "TrainedNetwork",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
    "Transpose",
]
