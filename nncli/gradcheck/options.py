"""The choices and defaults of ``nncli gradcheck``'s options, in one place.

No torch: the command line builds its ``--objective`` / ``--mode`` choices and its defaults from
this at start-up, and the checker validates against the same lists.
"""

from __future__ import annotations

from enum import Enum

DEFAULT_RTOL = 1e-5  # float64 central differences are good to ~1e-9 relative: wide margin, still tight
DEFAULT_ATOL = 1e-8  # only matters where |g| is ~0 (Step, saturated units)
DEFAULT_EPS = 1e-6  # the step h, absolute, as torch.autograd.gradcheck's
DEFAULT_DIRECTIONS = 3
DEFAULT_BATCH = 4

# What the end-to-end check differentiates. projection: <R, f(x)> with a fixed Gaussian R;
# loss: cross-entropy against random class targets.
OBJECTIVES = ("projection", "loss")
# The mode the model is checked in (its own modes are restored afterwards).
MODES = ("train", "eval")

Objective = Enum("Objective", {v: v for v in OBJECTIVES}, type=str)
Mode = Enum("Mode", {v: v for v in MODES}, type=str)
