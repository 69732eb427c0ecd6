"""Timing shared by the in-process benchmarks: the best wall time of repeated calls."""

from __future__ import annotations

import time


def best_of(fn, repeats: int) -> float:
    """The shortest wall time, in seconds, of ``repeats`` calls of ``fn()`` (the least disturbed run)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
