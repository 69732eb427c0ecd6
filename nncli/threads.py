"""How many CPU threads torch uses for a command: ``--threads N``, or a rule from the work and the load.

torch's default is one thread per core. On a 2-core laptop that also runs other work this is the
worst choice for the small models nncli is used for: each operation is split into pieces too
small to pay for waking a second thread, and when the other core is busy every parallel region
waits for a thread that is not scheduled: training then runs many times slower than on one
thread (tests/benchmarks/bench_threads.py measures it).

The rule (:func:`decide`), in this order:

1. ``--threads N`` (or ``NNCLI_THREADS=N``, or ``OMP_NUM_THREADS=N`` set by the user): N, at most
   the usable cores (more threads than cores only wait for each other, and a count in the
   thousands exhausts the machine's process ids as OpenMP starts them).
2. A step smaller than :data:`PARALLEL_MIN_MACS` multiply-adds (per-example work of the model
   times the batch, x3 for the backward pass): one thread. Below it a second thread costs more
   than it saves (tests/benchmarks/bench_threads.py measures the default against fixed counts).
3. Otherwise the cores nobody else is using: the cores this process may run on, less the busy
   ones, sampled from ``/proc/stat`` over 0.1 s (elsewhere: the 1-minute load average), at
   least one; never more than ``cap`` (a sweep worker's share, ``cores // workers``).

The per-example work is estimated from the shapes the builder already knows, without running
anything: each layer's weights times the positions they are applied at (a Linear's once, a
Conv2d's at every output pixel), plus one per output element for the parameter-free layers.
``--threads`` and the cap are parameters (the CLI passes them down); nothing here remembers a
command's choice. Pure Python until :func:`apply` (torch is imported there, lazily).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

# Work per training step (multiply-adds, batch included) below which one thread is used.
# Small steps lose more to waking OpenMP threads than they gain from them, most of all on a loaded
# machine; 1e8 (LeNet-5 at batch 64 stays below, the digits CNN just above) estimates where
# threads start to pay on an idle machine: tests/benchmarks/bench_threads.py re-measures it.
PARALLEL_MIN_MACS = 1e8

ENV_THREADS = "NNCLI_THREADS"


@dataclass
class ThreadChoice:
    """The threads chosen and why (for ``--json`` and tests)."""

    threads: int
    reason: str  # "requested", "small", "free cores"
    macs_per_step: float | None = None
    busy: float | None = None  # cores busy with other work when sampled
    asked: int | None = None  # a requested count above the usable cores, before the cap

    @property
    def note(self) -> str | None:
        """What the user should know about the choice: a request capped at the cores."""
        if self.asked is None:
            return None
        return f"{self.asked:,} threads asked for, {self.threads} used: this process may run on {cores()} cores"


def cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def asked_threads(threads: int | None = None) -> int | None:
    """``threads`` (``--threads``), else ``NNCLI_THREADS``, else a user's ``OMP_NUM_THREADS``, as
    given; None: use the rule."""
    if threads is not None:
        return max(1, int(threads))
    for var in (ENV_THREADS, "OMP_NUM_THREADS"):
        text = os.environ.get(var, "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    return None


def requested_threads(threads: int | None = None) -> int | None:
    """The count asked for (:func:`asked_threads`), at most the usable cores; None: use the rule."""
    asked = asked_threads(threads)
    return None if asked is None else min(asked, cores())


def _requested(threads: int | None, macs_per_step: float | None = None) -> ThreadChoice | None:
    asked = asked_threads(threads)
    if asked is None:
        return None
    used = min(asked, cores())
    return ThreadChoice(used, "requested", macs_per_step, asked=asked if asked > used else None)


def busy_cores(sample_s: float = 0.1) -> float:
    """Cores busy with other work now: the non-idle share of ``/proc/stat`` over ``sample_s``.

    Falls back to the 1-minute load average where ``/proc/stat`` is missing (macOS), and to 0.
    """

    def read():
        with open("/proc/stat", encoding="ascii") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        return sum(vals), vals[3] + (vals[4] if len(vals) > 4 else 0)  # total, idle + iowait

    try:
        total0, idle0 = read()
        time.sleep(sample_s)
        total1, idle1 = read()
        n_cpu = os.cpu_count() or 1
        dt = total1 - total0
        return 0.0 if dt <= 0 else n_cpu * (1.0 - (idle1 - idle0) / dt)
    except (OSError, ValueError, IndexError):
        try:
            return float(os.getloadavg()[0])
        except (OSError, AttributeError):
            return 0.0


def _usable_cores(cap: int | None) -> int:
    return cores() if cap is None else min(cores(), max(1, int(cap)))


def decide(macs_per_step: float | None, threads: int | None = None, *, cap: int | None = None) -> ThreadChoice:
    """The thread count for work of ``macs_per_step`` multiply-adds per step (None: unknown, big).

    ``threads``: a count asked for (wins); ``cap``: at most this many (a sweep worker's share).

    Example:
        >>> decide(5e5).threads   # a moons MLP step: one thread
        1
        >>> decide(1e12, threads=3).threads
        3
    """
    wanted = _requested(threads, macs_per_step)
    if wanted is not None:
        return wanted
    n = _usable_cores(cap)
    if n == 1 or (macs_per_step is not None and macs_per_step < PARALLEL_MIN_MACS):
        return ThreadChoice(1, "small" if n > 1 else "one core", macs_per_step)
    busy = busy_cores()
    free = max(1, min(n, int(cores() - busy + 0.5)))
    return ThreadChoice(free, "free cores", macs_per_step, busy)


def apply(choice: ThreadChoice) -> ThreadChoice:
    """Set torch's intra-op threads to ``choice.threads``; returns ``choice``."""
    import torch

    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice


def macs_per_example(built) -> float:
    """Multiply-adds of one example's forward pass, from a built spec's shapes (see module doc)."""
    total = 0.0
    for top in built.layers:
        for info in top.walk():
            if info.children:
                continue
            out = 1
            for d in info.out_shape:
                out *= int(d)
            positions = out // int(info.out_shape[0]) if len(info.out_shape) > 1 else 1
            total += info.params * positions + out
    return total


def for_spec(
    spec,
    batch_size: int,
    *,
    threads: int | None = None,
    cap: int | None = None,
    device=None,
    backward: bool = True,
    built=None,
) -> ThreadChoice:
    """Decide and apply the threads for ``spec`` at ``batch_size`` (training: x3 for backward).

    On a CUDA device only a requested count is applied (the CPU just feeds the GPU). ``built``
    is ``infer(spec)`` when the caller has it already (training does).
    """
    wanted = _requested(threads)
    if wanted is not None:
        return apply(wanted)
    if device is not None and getattr(device, "type", str(device)) != "cpu":
        return ThreadChoice(0, "accelerator")  # torch's default stays
    n = _usable_cores(cap)
    if n == 1:
        return apply(ThreadChoice(1, "one core"))
    from nncli.build import infer

    try:
        work = macs_per_example(built or infer(spec)) * batch_size * (3 if backward else 1)
    except Exception:  # a spec the builder refuses: the command reports that itself, later
        work = None
    return apply(decide(work, cap=cap))
