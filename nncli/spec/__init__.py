"""The spec layer: YAML -> validated, frozen spec objects. Pure Python; never imports torch."""

from nncli.spec.model import (
    BLOCKS,
    INIT_SCHEMES,
    INT_DTYPES,
    MERGES,
    NNCLI_LAYERS,
    BlockSpec,
    CustomSpec,
    InitScheme,
    InputSpec,
    LayerSpec,
    MergeSpec,
    ParallelSpec,
    RepeatSpec,
    ResidualSpec,
    Spec,
    children,
)
from nncli.spec.parse import load_spec, parse_spec
from nncli.spec.source import Where, format_path

__all__ = [
    "BLOCKS",
    "INIT_SCHEMES",
    "INT_DTYPES",
    "MERGES",
    "NNCLI_LAYERS",
    "BlockSpec",
    "CustomSpec",
    "InitScheme",
    "InputSpec",
    "LayerSpec",
    "MergeSpec",
    "ParallelSpec",
    "RepeatSpec",
    "ResidualSpec",
    "Spec",
    "Where",
    "children",
    "format_path",
    "load_spec",
    "parse_spec",
]
