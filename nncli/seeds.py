"""The range of a seed: one rule for every flag and every spec key that takes one.

nncli mixes a seed with an epoch, a rank or a layer index (a multiply by about a million) before
it reaches ``torch.manual_seed`` or NumPy's generators; seeds below 2**32 keep every mix inside
the 64 bits torch accepts, so a seed that passes here never fails later.
"""

from __future__ import annotations

from nncli.errors import InputError

SEED_MAX = 2**32 - 1
# Seeds in one list (probe --seeds, a sweep's seeds): each one is a build and a run.
MAX_SEEDS = 1000


def check_seed(value: int, param: str = "seed") -> int:
    """``value`` when it is a seed from 0 to :data:`SEED_MAX`; else an exit-2 error naming ``param``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        shown = str(value) if len(str(value)) <= 40 else f"a {len(str(value))}-character value"
        raise InputError(
            f"expected a seed from 0 to {SEED_MAX:,}, found {shown}", param=param, hint="use a smaller seed"
        )
    return value
