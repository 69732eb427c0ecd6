"""Every status and verdict nncli writes, one enum per thing that has one; no torch.

Each member is a ``str`` whose value is the string the JSON documents and report files have
always carried, so ``json.dumps``, comparisons with plain strings (a report read back from disk)
and f-strings all see ``"completed"``, ``"ok"``, never ``RunStatus.COMPLETED``.
"""

from __future__ import annotations

from enum import Enum


class _Status(str, Enum):
    """A str Enum that prints, formats and hashes as its value on every supported Python (Enum
    hashes a member by its name, so ``{"ok": ...}[Status.OK]`` would miss without this)."""

    def __hash__(self) -> int:
        return str.__hash__(self)

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)


class RunStatus(_Status):
    """A training run's ``status`` (``report.json``, ``TrainResult``)."""

    RUNNING = "running"
    COMPLETED = "completed"
    EARLY_STOPPED = "early_stopped"
    INTERRUPTED = "interrupted"
    NONFINITE = "nonfinite"
    PRUNED = "pruned"  # stopped early by a sweep's pruner


# Runs that reached their end: their metrics count.
FINISHED = (RunStatus.COMPLETED, RunStatus.EARLY_STOPPED)


class TrialStatus(_Status):
    """A sweep's run (one seed) or trial (all its seeds) in ``sweep.json``."""

    OK = "ok"
    FAILED = "failed"
    PRUNED = "pruned"
    PARTIAL = "partial"  # a trial some of whose seeds failed
    PENDING = "pending"  # a trial none of whose runs has finished yet


class GradcheckVerdict(_Status):
    """A tensor's, a layer's or the model's outcome in ``nncli gradcheck``."""

    OK = "ok"
    FAIL = "FAIL"
    KINK = "kink"  # inconclusive: the function is not differentiable where it was checked
    # a Custom layer's forward gives different outputs for one input under one seed (Python's or
    # numpy's RNG, state kept between calls): finite differences of it mean nothing
    NONDETERMINISTIC = "nondeterministic"


class ProbeVerdict(_Status):
    """``nncli probe``'s diagnosis; only ``healthy`` exits 0."""

    healthy = "healthy"
    vanishing = "vanishing"
    exploding = "exploding"
    non_finite = "non-finite"
