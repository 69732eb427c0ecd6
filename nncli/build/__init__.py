"""Spec -> ``torch.nn.Sequential``: layer registry, shape inference and initialisation.

Shape inference keeps every layer on *meta* tensors, so torch's own semantics decide each shape
and nothing is allocated: a 100-billion-parameter spec is resolved in a fraction of a second.
To learn a shape it runs no meta op where it can avoid one (their first use imports torch's
symbolic-shape machinery): exact rules for Linear/ConvNd, else a run on CPU zeros (:mod:`nncli.build.inference`).
The sizes coming into a layer (``in_features``, ``in_channels``, ``num_features``,
``num_channels``, a missing ``normalized_shape``, ...) are inferred from the shape that reaches
it; when the spec gives them they are checked against it.

Every failure becomes a :class:`~nncli.errors.SpecError` that points at the layer in the file.
"""

from nncli.build.builder import build_model, collector_paused, count_params, infer, random_input
from nncli.build.checks import shape_str
from nncli.build.inference import INFER_BATCH
from nncli.build.init import init_tensor
from nncli.build.registry import layer_classes, load_custom
from nncli.build.results import Built, LayerInfo

__all__ = [
    "Built",
    "INFER_BATCH",
    "LayerInfo",
    "build_model",
    "collector_paused",
    "count_params",
    "infer",
    "init_tensor",
    "layer_classes",
    "load_custom",
    "random_input",
    "shape_str",
]
