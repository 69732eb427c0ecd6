"""What logging a run to MLflow costs: the digits CNN trained with and without `--tracking`.

Run: .venv/bin/python tests/benchmarks/bench_tracking.py [--spec specs/digits-cnn.yaml] [--pairs 3]
     [--threads 1] [--epochs N]

The same run (spec, seed, data, threads pinned) is trained with and without tracking to a local
SQLite store, alternating A B B A so drift in the machine's load hits both alike, in two ways:

- **command line**: `nncli train SPEC --threads T` against the same with `--tracking`, each a fresh
  process timed from start to exit: what a user waits for, mlflow's import and the store's
  opening included;
- **in process**: `run_training` with and without the `MLflowTracking` callback, mlflow already
  imported and the store open: what logging itself costs (params, every step's loss and
  learning rate, every epoch's metrics, the final metrics, the files, the diagram and the model).

The store is created by one untimed run first (creating a new SQLite store's tables is a one-off,
reported as a note). Reported: the median wall time of each side, the overhead of tracking in
seconds and in percent of the untracked run, and every pair's times. Beside the wall time, the
CPU time of each side, every process counted (the training process, the tracking process beside
it, graphviz and git): the store is written by a process of its own, so its CPU time lengthens
the run only where no core is free for it, and the CPU overhead is what tracking costs a machine
whose every core is busy.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import Record  # this folder: the script's own
from timing import installed_env

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
NNCLI = Path(sys.executable).parent / "nncli"


def cli_run(spec: Path, out: Path, threads: int, epochs: int | None, tracked: bool) -> tuple[float, float]:
    """Wall and CPU seconds of one `nncli train` process (new run folder each time); the CPU time
    counts the processes it started (the tracking process, graphviz, git)."""
    args = [str(NNCLI), "train", str(spec), "--out", str(out), "--threads", str(threads), "--device", "cpu"]
    if epochs:
        args += ["--epochs", str(epochs)]
    if tracked:
        args += ["--tracking", "--experiment", "bench"]
    before, t0 = children_cpu(), time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=installed_env(), cwd=out.parent)
    return time.perf_counter() - t0, children_cpu() - before


def children_cpu() -> float:
    """CPU seconds of this process's finished children and theirs (those that were waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tracking_process_cpu() -> float:
    """CPU seconds so far of this process's tracking process (0 before it starts; Linux's /proc)."""
    from nncli.tracking import store

    child = store._CHILD
    if child is None or not child[0].is_alive():
        return 0.0
    fields = Path(f"/proc/{child[0].pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def library_run(spec: Path, out: Path, epochs: int | None, uri: str | None) -> tuple[float, float]:
    """Wall and CPU seconds of one `run_training` call in this process (the CPU time of the
    tracking process, and of graphviz, included)."""
    from nncli.tracking import MLflowTracking, TrackingOptions
    from nncli.train import run_training

    callbacks = [MLflowTracking(TrackingOptions(uri, "bench"))] if uri else []
    overrides = {"epochs": epochs} if epochs else None
    cpu, t0 = time.process_time() + children_cpu() + tracking_process_cpu(), time.perf_counter()
    result = run_training(spec, overrides, out, device="cpu", callbacks=callbacks, threads=1)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() + children_cpu() + tracking_process_cpu() - cpu
    if uri and result.tracking["status"] != "logged":
        raise SystemExit(f"tracking failed: {result.tracking['error']}")
    return seconds, cpu


def pairs(n: int, run) -> list[tuple[tuple, tuple]]:
    """``n`` (plain, tracked) pairs of (wall, CPU) seconds in A B B A order."""
    out = []
    for i in range(n):
        order = (False, True) if i % 2 == 0 else (True, False)
        times = {tracked: run(tracked, f"{i}-{'t' if tracked else 'p'}") for tracked in order}
        out.append((times[False], times[True]))
    return out


def summarise(rec: Record, way: str, measured: list[tuple[tuple, tuple]]) -> None:
    plain, tracked = (statistics.median(p[0] for p, _ in measured), statistics.median(t[0] for _, t in measured))
    cpu_plain, cpu_tracked = (
        statistics.median(p[1] for p, _ in measured),
        statistics.median(t[1] for _, t in measured),
    )
    over = tracked - plain
    print(
        f"{way}: untracked {plain:.2f} s, tracked {tracked:.2f} s, overhead {over:+.2f} s ({100 * over / plain:+.1f} %); "
        f"CPU {cpu_plain:.2f} s -> {cpu_tracked:.2f} s ({cpu_tracked - cpu_plain:+.2f} s)"
    )
    rec.row(
        "Tracking overhead (local SQLite store)",
        way=way,
        untracked_s=plain,
        tracked_s=tracked,
        overhead_s=over,
        overhead_pct=100 * over / plain,
        cpu_untracked_s=cpu_plain,
        cpu_tracked_s=cpu_tracked,
        cpu_overhead_s=cpu_tracked - cpu_plain,
        pairs=len(measured),
    )
    for i, (p, t) in enumerate(measured):
        rec.row(
            "Every pair",
            way=way,
            pair=i + 1,
            untracked_s=p[0],
            tracked_s=t[0],
            cpu_untracked_s=p[1],
            cpu_tracked_s=t[1],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "digits-cnn.yaml"))
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="default: the spec's")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    spec = Path(args.spec).resolve()
    with Record("tracking", __doc__) as rec, tempfile.TemporaryDirectory(prefix="nncli-bench-tracking-") as tmp:
        root = Path(tmp)
        rec.table(
            "Tracking overhead (local SQLite store)",
            "the same digits CNN run without and with tracking; overhead in % of the untracked run",
        )
        t0 = time.perf_counter()
        cli_run(spec, root / "warm", args.threads, 1, True)  # creates runs' store: a one-off
        rec.note(f"a first run into a new store (its tables created), 1 epoch: {time.perf_counter() - t0:.1f} s")
        measured = pairs(
            args.pairs, lambda tracked, name: cli_run(spec, root / name, args.threads, args.epochs, tracked)
        )
        summarise(rec, "command line", measured)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        library_run(spec, root / "lib-warm", 1, uri)  # mlflow imported, the store open
        measured = pairs(
            args.pairs,
            lambda tracked, name: library_run(spec, root / f"lib-{name}", args.epochs, uri if tracked else None),
        )
        summarise(rec, "in process", measured)
        rec.note(f"spec {spec.name}, {args.threads} torch thread(s), device cpu, {args.pairs} pairs A B B A")


if __name__ == "__main__":
    main()
