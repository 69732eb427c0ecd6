"""The spec layer: YAML -> validated, frozen spec objects. Pure Python; never imports torch."""

from nncli.spec.model import (
    INIT_SCHEMES, NNCLI_LAYERS, CustomSpec, InitScheme, LayerSpec, RepeatSpec, ResidualSpec, Spec,
)
from nncli.spec.parse import load_spec, parse_spec
from nncli.spec.source import Where, format_path

__all__ = [
    "INIT_SCHEMES", "NNCLI_LAYERS", "CustomSpec", "InitScheme", "LayerSpec", "RepeatSpec",
    "ResidualSpec", "Spec", "Where", "format_path", "load_spec", "parse_spec",
]
