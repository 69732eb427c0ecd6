"""What a float64 gradcheck of a spec needs in memory, from shapes alone; :func:`gradcheck`
compares it with what the device has free (:func:`nncli.memory.available_memory`) and refuses a
spec too big before anything is allocated.
"""

from __future__ import annotations

import math

from nncli.build import count_params, infer
from nncli.gradcheck.numeric import EXHAUSTIVE_CHUNK_BYTES
from nncli.spec import Spec


def estimate_memory(spec: Spec, batch: int, exhaustive: bool = False, directions: int = 3) -> int:
    """Bytes a float64 gradcheck of ``spec`` needs, from shapes alone (nothing is allocated).

    The parameters 6.5 + ``directions`` / 2 times over (8 with the default 3: the weights; the
    layers' and the model's gradients, kept together; the saved copy restored at the end; the
    float32 directions per tensor, half a float64 copy each, kept for the run because the layers'
    and the end-to-end checks share them; the perturbed copies ``w + h v`` and ``w - h v``; the
    widened direction), buffers twice (themselves and the
    saved copy), the activations of the batch four times (the forward graph, what autograd saves,
    the recorded per-layer inputs, one isolated layer's graph), one temporary of the largest
    tensor, and the vectorised chunk in exhaustive mode.
    """
    built = infer(spec)
    n_params, _, n_buffers = count_params(built.model)
    # every input of a spec with several (a chain's one input otherwise)
    inputs = [math.prod(row[1]) for row in built.inputs] or [math.prod(built.input_shape)]
    activations = batch * (sum(inputs) + sum(math.prod(info.out_shape) for info in built.walk() if not info.children))
    largest = max([p.numel() for p in built.model.parameters()] + [batch * max(inputs)])
    elements = math.ceil((6.5 + directions / 2) * n_params) + 2 * n_buffers + 4 * activations + largest
    return 8 * elements + (EXHAUSTIVE_CHUNK_BYTES if exhaustive else 0)
