"""Benchmark `nncli sweep` against what a user would otherwise do: a shell loop of `nncli train`.

Run: .venv/bin/python tests/benchmarks/bench_sweep.py [--trials 6] [--epochs 10] [--n 1000]

The same trials (a two-moons MLP at several hidden widths; the same trial specs, seeds and data)
are trained three ways, each as a fresh process timed from the outside, wall clock:

  loop       for each trial: `nncli train trial.yaml --out DIR` (one process per trial, as a
             shell loop or a Makefile would run them)
  sweep -w1  `nncli sweep SWEEP --workers 1` (one process, every trial in it)
  sweep -w2  `nncli sweep SWEEP --workers 2` (two spawned worker processes)

The loop pays Python start-up and the torch import once per trial; the sweep pays them once (per
worker) and adds its own work (counting parameters and FLOPs, ranking, the winner's spec). The
validation metrics of the loop's runs and the sweep's runs are compared: they must be identical,
since both train the same spec files. Ratios < 1 mean the sweep is faster.
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
from timing import installed_env

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


SWEEP = """\
name: bench
spec:
  name: bench-mlp
  input: [2]
  layers:
    - Linear: {{out_features: 16}}
    - ReLU
    - Linear: {{out_features: 16}}
    - ReLU
    - Linear: {{out_features: 2}}
  data: {{name: moons, n: {n}, noise: 0.15}}
  train: {{epochs: {epochs}, lr: 0.01, batch_size: 64}}
grid:
  width:
    path: ["layers[0].Linear.out_features", "layers[2].Linear.out_features"]
    values: {widths}
"""


def timed(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start, proc


def main(rec: Record) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()

    from nncli.sweep import expand, load_sweep, spec_text, trial_spec_data

    python = sys.executable
    env = installed_env(PYTHONPATH=str(ROOT), NO_COLOR="1")
    widths = [8 * (i + 1) for i in range(args.trials)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sweep_file = tmp / "bench.yaml"
        sweep_file.write_text(SWEEP.format(n=args.n, epochs=args.epochs, widths=widths))
        configs = expand(load_sweep(sweep_file))
        specs = []
        for c in configs:  # the very spec files the sweep trains, for the loop to train too
            path = tmp / "loop-specs" / f"{c.id}.yaml"
            path.parent.mkdir(exist_ok=True)
            path.write_text(spec_text(trial_spec_data(c, None)))
            specs.append((c.id, path))

        rows = {}
        start = time.perf_counter()
        loop_val = {}
        for trial_id, path in specs:
            _, proc = timed(
                [
                    python,
                    "-m",
                    "nncli",
                    "train",
                    str(path),
                    "--out",
                    str(tmp / "loop" / trial_id),
                    "--device",
                    "cpu",
                    "--json",
                ],
                env,
            )
            loop_val[trial_id] = json.loads(proc.stdout)["val"]
        rows["loop of nncli train"] = time.perf_counter() - start
        sweep_val = {}
        for workers in (1, 2):
            seconds, proc = timed(
                [
                    python,
                    "-m",
                    "nncli",
                    "sweep",
                    str(sweep_file),
                    "--out",
                    str(tmp / f"sweep-w{workers}"),
                    "--workers",
                    str(workers),
                    "--device",
                    "cpu",
                    "--json",
                ],
                env,
            )
            rows[f"nncli sweep --workers {workers}"] = seconds
            sweep_val[workers] = {t["id"]: t["val"] for t in json.loads(proc.stdout)["trials"]}

    base = rows["loop of nncli train"]
    print(
        f"{args.trials} trials (two-moons MLP, n={args.n}, {args.epochs} epochs), wall clock per way, "
        f"{os.cpu_count()} CPU cores"
    )
    print(f"{'way':<28} {'seconds':>8} {'per trial':>10} {'ratio to loop':>14}")
    title = f"{args.trials} trials, two-moons MLP, n={args.n}, {args.epochs} epochs, wall clock per way"
    rec.table(
        title,
        "a shell loop of nncli train (one process per trial) vs nncli sweep with 1 and 2 workers; "
        "ratio = time / loop time (< 1: faster than the loop)",
    )
    for name, seconds in rows.items():
        rec.row(title, way=name, seconds=seconds, per_trial_s=seconds / args.trials, ratio_to_loop=seconds / base)
        print(f"{name:<28} {seconds:8.1f} {seconds / args.trials:10.2f} {seconds / base:14.2f}")
    same = all(
        sweep_val[1][k]["accuracy"] == loop_val[k]["accuracy"]
        and abs(sweep_val[1][k]["loss"] - loop_val[k]["loss"]) < 1e-12
        for k in loop_val
    )
    print(f"validation metrics of sweep --workers 1 identical to the loop's: {same}")
    close = all(abs(sweep_val[2][k]["loss"] - loop_val[k]["loss"]) < 1e-5 for k in loop_val)
    print(f"sweep --workers 2 within 1e-5 of the loop's validation loss (1 torch thread per worker): {close}")
    rec.note(f"validation metrics of sweep --workers 1 identical to the loop's: {same}")
    rec.note(f"sweep --workers 2 within 1e-5 of the loop's validation loss: {close}")


if __name__ == "__main__":
    with Record("sweep", __doc__) as record:
        main(record)
