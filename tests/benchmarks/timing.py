"""Timing shared by the benchmarks: the best wall time of repeated calls, and the environment
fresh processes are timed in."""

from __future__ import annotations

import os
import time


def installed_env(**extra: str) -> dict:
    """This environment for a timed child process, as an installed package runs: with Python's
    bytecode caches.

    An environment that sets PYTHONDONTWRITEBYTECODE (some CI images and containers, this
    development VM) has every nncli module compiled from source in every process, while torch,
    torchinfo and torchview, installed by pip, come with theirs: 0.1-0.2 s against nncli alone.
    The first run of a command writes the caches; time it as a warm-up or take a best of several.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def best_of(fn, repeats: int) -> float:
    """The shortest wall time, in seconds, of ``repeats`` calls of ``fn()`` (the least disturbed run)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def best_within(fn, budget_s: float = 1.0, min_repeats: int = 3, max_repeats: int = 500, warm: bool = True) -> float:
    """The shortest wall time of repeated ``fn()`` calls, repeated until ``budget_s`` is spent.

    A call of a few milliseconds is disturbed by any other process more often than not, so a
    fixed best of 3 reads noise as cost (a ten-layer ``check`` measured 4.6 ms best of 3 and
    1.2 ms best of 200 on the same idle machine). Calling until a time budget is spent gives
    small and large cases the same chance of one undisturbed run. One untimed call first warms
    caches (imports, the shape cache's first use), unless ``warm`` is False.
    """
    if warm:
        fn()
    best, spent, n = float("inf"), 0.0, 0
    while n < min_repeats or (spent < budget_s and n < max_repeats):
        t0 = time.perf_counter()
        fn()
        took = time.perf_counter() - t0
        best, spent, n = min(best, took), spent + took, n + 1
    return best
