"""Benchmark the sweep backends: overhead per trial of `--backend ray` against the local pool.

Run: .venv/bin/python tests/benchmarks/bench_sweep_backends.py [--trials 4] [--cpus 2]

The same sweep (a two-moons MLP at several learning rates; the same trial specs and seeds) runs
as a fresh `nncli sweep` process, timed from the outside (wall clock), on each backend with the
same parallelism: `--workers CPUS` for local, a Ray instance of CPUS CPUs started by the sweep and
`--cpus-per-trial 1` for ray. Two sizes, in one run:

  tiny     1 epoch of 200 examples: the trial itself takes milliseconds, overhead dominates
  seconds  enough epochs that each trial trains for a few seconds

Overhead per trial = (wall time - total train time of the trials / CPUS) / trials, where train
time is each run's own `duration_s`. The ratio ray / local is the figure; the validation metrics
of both backends are compared and must be identical (the same spec files, one thread each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import Record  # this folder: the script's own

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")

SWEEP = """\
name: bench-backends
spec:
  input: [2]
  layers:
    - Linear: {{out_features: 64}}
    - ReLU
    - Linear: {{out_features: 64}}
    - ReLU
    - Linear: {{out_features: 2}}
  data: {{name: moons, n: {n}, noise: 0.1}}
  train: {{epochs: {epochs}, lr: 0.05, batch_size: 32, seed: 0}}
grid:
  train.lr: {lrs}
"""


def run(sweep: Path, out: Path, args: list[str]) -> tuple[float, dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [PYTHON, "-m", "nncli", "sweep", str(sweep), "--out", str(out), "--json", "--device", "cpu", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(args)}):\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout)


def main(rec: Record) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--seconds-epochs", type=int, default=40, help="epochs of the `seconds` trials")
    a = ap.parse_args()
    lrs = [round(0.01 * (i + 1), 3) for i in range(a.trials)]
    sizes = {"tiny": (200, 1), "seconds": (2000, a.seconds_epochs)}
    print(f"{a.trials} trials per sweep, {a.cpus} at a time; OMP_NUM_THREADS=1")
    print(f"{'size':8} {'backend':8} {'wall s':>8} {'train s':>8} {'overhead/trial s':>17} {'ratio':>7}")
    title = f"{a.trials} trials per sweep, {a.cpus} at a time, one torch thread each"
    rec.table(title, "nncli sweep --backend ray vs the local pool; ratio = ray overhead per trial / local's")
    with tempfile.TemporaryDirectory() as tmp:
        for size, (n, epochs) in sizes.items():
            sweep = Path(tmp) / f"{size}.yaml"
            sweep.write_text(SWEEP.format(n=n, epochs=epochs, lrs=lrs))
            results = {}
            for backend, args in (
                ("local", ["--workers", str(a.cpus)]),
                ("ray", ["--backend", "ray", "--cpus-per-trial", "1"]),
            ):
                wall, doc = run(sweep, Path(tmp) / f"{size}-{backend}", args)
                train = sum(r["seconds"] for t in doc["trials"] for r in t["runs"])
                overhead = (wall - train / a.cpus) / a.trials
                results[backend] = (overhead, {t["id"]: t["val"] for t in doc["trials"]})
                ratio = "" if backend == "local" else f"{overhead / results['local'][0]:7.1f}"
                rec.row(
                    title,
                    size=f"{size} ({n} examples, {epochs} epochs)",
                    backend=backend,
                    wall_s=wall,
                    train_s=train,
                    overhead_per_trial_s=overhead,
                    ratio=None if backend == "local" else overhead / results["local"][0],
                )
                print(f"{size:8} {backend:8} {wall:8.1f} {train:8.1f} {overhead:17.2f} {ratio:>7}")
            same = results["local"][1] == results["ray"][1]
            print(f"{size:8} validation metrics identical on both backends: {same}")
            rec.note(f"{size}: validation metrics identical on both backends: {same}")
            if not same:
                sys.exit("the backends disagree")


if __name__ == "__main__":
    with Record("sweep_backends", __doc__) as record:
        main(record)
