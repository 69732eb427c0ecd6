"""``nncli gradcheck``: finite-difference gradient checks that find and name the broken layer.

How it works (the docs and ``nncli gradcheck --help`` say the same):

- **Setup.** The network is built in float64 with a fixed batch (random inputs of the spec's
  ``input`` shape, or the first rows of ``--data``). The objective is a fixed random projection
  ``<R, f(x)>`` of the output, or cross-entropy with random targets; never a plain ``sum()``,
  whose gradient through BatchNorm or Softmax is identically zero. A spec with several inputs
  gets one seeded batch per input (or the first rows of each of ``--data``'s arrays, one per input
  name, each read as one input is); each float input is perturbed on its own end to end
  (``input NAME``), token ids never; with several outputs the objective sums one term per output.
- **Per-layer isolation** (as Caffe's checker does): one forward pass records the real input that
  reaches every layer; each leaf layer (nested ones inside Residual/Repeat included) is then
  checked on its own, on that input, with the objective ``<G, layer(x)>`` for a random upstream
  gradient ``G``. A bug in one backward corrupts every gradient upstream of it; isolation makes
  the report name the guilty layer. One more check runs on the whole model (end to end).
- **Random directions (default).** For each parameter tensor and each layer input, ``k`` Gaussian
  directions ``v`` restricted to that tensor: the central difference
  ``D = (F(w + h v) - F(w - h v)) / 2h`` against ``<g, v>``; the tensor fails when
  ``|<g, v> - D| > atol + rtol * |g|``; the reported relative error is ``|<g, v> - D| / |g|``.
- **Detection bound.** A gradient error ``e`` shows as ``<e, v>``, which for ``v ~ N(0, I)`` is
  ``N(0, |e|^2)``. One direction misses it when ``|<e, v>| < rtol |g|``, with probability
  ``erf(t / sqrt 2)`` where ``t = rtol |g| / |e|``; ``k`` independent directions all miss with
  probability ``erf(t / sqrt 2) ** k <= (0.8 t) ** k``. With the defaults (rtol 1e-5, k 3) an error
  of 0.1% of the gradient's norm escapes with probability 5.1e-7, one of 0.01% with 5.1e-4
  (:func:`miss_probability`).
- **Shared directions.** A parameter's ``k`` directions are drawn once, by its layer's isolated
  check; the end-to-end check's joint directions are made of them (and fresh ones for the input).
  Each check still sees ``N(0, I)`` directions, independent across its ``k``, which is all its
  bound above assumes; only the two checks' directions are no longer independent of each other.
- **Exhaustive.** ``exhaustive=True`` perturbs every coordinate, the perturbations batched through
  ``torch.func.vmap`` over ``functional_call`` (one vectorised forward per chunk of coordinates),
  and compares ``|g - D|`` with the same tolerance. On a Sequential of torch layers, layer k's
  perturbed outputs serve its own check and the end-to-end one, which runs only layers k+1..
  on them: every coordinate end to end, as torch's slow mode, without re-running the prefix.
- **Speed.** A small unit's ``2k`` evaluations of every tensor run as one vectorised call; large
  tensors are evaluated one direction at a time in reused buffers. The report's ``path`` says
  which implementation ran: ``per_layer`` (every check on its own) or ``exhaustive_suffix``
  (exhaustive mode on a plain Sequential, above), which gives way to ``per_layer`` only when
  vmap cannot batch a layer.
- **Kinks.** When a direction disagrees, the difference quotient is recomputed at ``h/2`` and as
  one-sided Richardson estimates from each side. Smooth functions agree with themselves (then the
  Richardson value decides); a kink (ReLU at 0, max-pool ties, Step, abs) makes the left and right
  slopes or the two step sizes disagree: the direction is marked "kink" and a new one is drawn.
  If kinks persist (the real input sits on ties or exact zeros), the layer is checked again at a
  slightly jittered input. End to end, a FAIL among directions that hit kinks (many kinks crossed
  at once can pass the kink test) is checked again along new directions with step h/10. Kinks
  are never reported as FAIL.
- **State.** Dropout and any other RNG use replay the same seed for every evaluation
  (``fork_rng`` + ``manual_seed``); weights, buffers (BatchNorm running statistics), the RNG
  state and each module's train/eval mode are restored afterwards.

The package, one module per concern: ``options`` (the choices and defaults of the command's
options, no torch), ``check`` (:func:`gradcheck`, :func:`check_built`), ``footprint`` (the memory a check needs),
``isolation`` (recorded inputs, per-layer and end-to-end checks), ``unit`` (the function that is
checked), ``numeric`` (random directions, step halving, kinks), ``exhaustive`` (every
coordinate), ``suffix`` (exhaustive mode's
shared layer outputs), ``custom`` (structural checks), ``replay`` (RNG replay, state restored) and
``report`` (results, verdicts, diagnosis).
The names below are imported on first use, so that ``import nncli.gradcheck.options`` (the command
line, at start-up) does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nncli.lazy import lazy_exports

# exported name -> the module that defines it
_EXPORTS = {
    "DEFAULT_ATOL": "nncli.gradcheck.options",
    "DEFAULT_BATCH": "nncli.gradcheck.options",
    "DEFAULT_DIRECTIONS": "nncli.gradcheck.options",
    "DEFAULT_EPS": "nncli.gradcheck.options",
    "DEFAULT_RTOL": "nncli.gradcheck.options",
    "MODES": "nncli.gradcheck.options",
    "Mode": "nncli.gradcheck.options",
    "OBJECTIVES": "nncli.gradcheck.options",
    "Objective": "nncli.gradcheck.options",
    "GradcheckReport": "nncli.gradcheck.report",
    "LayerCheck": "nncli.gradcheck.report",
    "StructuralCheck": "nncli.gradcheck.report",
    "TensorCheck": "nncli.gradcheck.report",
    "Verdict": "nncli.gradcheck.report",
    "miss_probability": "nncli.gradcheck.report",
    "check_built": "nncli.gradcheck.check",
    "gradcheck": "nncli.gradcheck.check",
    "available_memory": "nncli.memory",
    "estimate_memory": "nncli.gradcheck.footprint",
    "EXHAUSTIVE_CHUNK_BYTES": "nncli.gradcheck.numeric",
    "KINK_RETRIES": "nncli.gradcheck.numeric",
    "INPUT": "nncli.gradcheck.unit",
    "STRUCTURAL_RTOL": "nncli.gradcheck.custom",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from nncli.gradcheck.check import check_built, gradcheck
    from nncli.gradcheck.custom import STRUCTURAL_RTOL
    from nncli.gradcheck.footprint import estimate_memory
    from nncli.gradcheck.numeric import EXHAUSTIVE_CHUNK_BYTES, KINK_RETRIES
    from nncli.gradcheck.options import (
        DEFAULT_ATOL,
        DEFAULT_BATCH,
        DEFAULT_DIRECTIONS,
        DEFAULT_EPS,
        DEFAULT_RTOL,
        MODES,
        OBJECTIVES,
        Mode,
        Objective,
    )
    from nncli.gradcheck.report import (
        GradcheckReport,
        LayerCheck,
        StructuralCheck,
        TensorCheck,
        Verdict,
        miss_probability,
    )
    from nncli.gradcheck.unit import INPUT
    from nncli.memory import available_memory

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
