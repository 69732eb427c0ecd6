"""Benchmark nncli's default CPU thread count against every fixed count, idle and under load.

Run: .venv/bin/python tests/benchmarks/bench_threads.py [--epochs 3] [--repeats 2]
     .venv/bin/python tests/benchmarks/bench_threads.py --crossover   # where 2 threads start to pay

For each model (specs/digits-cnn.yaml, specs/moons-mlp.yaml) and each condition (the machine as
it is; then with one busy-looping Python process per core, started here, as "other work"), it
trains with ``nncli train --json`` in a fresh process: once with no thread setting (nncli's rule,
described under Threads in docs/cli.md) and once with each fixed ``--threads 1..cores``, interleaved, ``--repeats``
rounds, and reads the training-step throughput (``samples_per_s``) and the threads used from the
JSON. OMP_NUM_THREADS and NNCLI_THREADS are removed from the children's environment, so
"default" is what a user gets. Reported: the median samples/s of each setting and the ratio
default / best fixed (1.0: the default found the best count), and torch's own default
(``torch.get_num_threads()`` of a fresh process) for reference.

``--crossover`` measures the rule's threshold instead: hand-written Adam steps of MLPs 64-w-w-10
(w = 64 ... 2048, batch 64 and 256) with 1 thread and with every core, in this process; the
multiply-adds per step at which more threads start to pay is where PARALLEL_MIN_MACS belongs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import Record  # this folder: the script's own

ROOT = Path(__file__).resolve().parents[2]
NNCLI = [sys.executable, "-m", "nncli"]
MODELS = ("specs/digits-cnn.yaml", "specs/moons-mlp.yaml")


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "NNCLI_THREADS", "MKL_NUM_THREADS")}
    e["NO_COLOR"] = "1"
    return e


SETS: list[str] = []  # --set PATH=VALUE passed to every run (e.g. data.limit=600 on a loaded machine)


def train_once(spec: str, threads: int | None, epochs: int, tmp: Path) -> tuple[float, int]:
    """(training samples/s, threads used) of one ``nncli train`` run in a fresh process."""
    out = tmp / f"run-{time.monotonic_ns()}"
    cmd = NNCLI + ["train", spec, "--epochs", str(epochs), "--out", str(out), "--json"]
    for item in SETS:
        cmd += ["--set", item]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env(), timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    doc = json.loads(proc.stdout)
    return float(doc["samples_per_s"]), int(doc.get("threads") or 0)


def busy_loops(n: int) -> list[subprocess.Popen]:
    """``n`` processes spinning on the CPU: the competing load of a busy laptop."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def measure(spec: str, settings: list, epochs: int, repeats: int, tmp: Path) -> dict:
    rates: dict = {s: [] for s in settings}
    used: dict = {s: set() for s in settings}
    for _ in range(repeats):
        for s in settings:  # interleaved: drift in the machine's load hits every setting alike
            rate, n = train_once(spec, s, epochs, tmp)
            rates[s].append(rate)
            used[s].add(n)
    return {s: (statistics.median(v), sorted(used[s])) for s, v in rates.items()}


def crossover(n_cores: int, rec: Record) -> None:
    """Samples/s of plain training steps with 1 thread and with ``n_cores``, by work per step."""
    import torch
    from torch import nn

    def rate(model, x, y, threads, secs=0.6):
        torch.set_num_threads(threads)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        loss_fn = nn.CrossEntropyLoss()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < secs:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            n += 1
        return n * x.shape[0] / (time.perf_counter() - t0)

    print(
        "| width | batch | multiply-adds per step (x3 for backward) | 1 thread | "
        f"{n_cores} threads | {n_cores} / 1 |\n|---|---|---|---|---|---|"
    )
    title = "hand-written Adam steps of MLPs 64-w-w-10, in-process, training examples per second"
    rec.table(title, f"1 thread vs {n_cores} threads; ratio = {n_cores} threads / 1 (> 1: more threads pay)")
    for w in (64, 256, 512, 1024, 2048):
        model = nn.Sequential(nn.Linear(64, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 10))
        for b in (64, 256):
            x, y = torch.randn(b, 64), torch.randint(0, 10, (b,))
            macs = 3 * (64 * w + w * w + w * 10) * b
            one = max(rate(model, x, y, 1), rate(model, x, y, 1))  # A B A: drift hits both
            many = rate(model, x, y, n_cores)
            rec.row(
                title,
                width=w,
                batch=b,
                multiply_adds_per_step=float(macs),
                one_thread=one,
                all_threads=many,
                ratio=many / one,
            )
            print(f"| {w} | {b} | {macs:.1e} | {one:,.0f} | {many:,.0f} | {many / one:.2f} |", flush=True)


def main(rec: Record) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--crossover", action="store_true", help="measure the threshold instead (see above)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="spec files to train (default: both)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="passed to every nncli train run, e.g. data.limit=600 (fewer examples per epoch)",
    )
    args = ap.parse_args()
    SETS.extend(args.set)
    sys.path.insert(0, str(ROOT))
    from nncli.threads import cores

    if args.crossover:
        print(f"load {os.getloadavg()}")
        crossover(cores(), rec)
        print(f"load after {os.getloadavg()}")
        return

    n_cores = cores()
    torch_default = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        env=env(),
    ).stdout.strip()
    print(f"cores {n_cores}; torch's own default threads {torch_default}; load {os.getloadavg()}")
    settings = [None] + list(range(1, n_cores + 1))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for condition in ("as is", f"{n_cores} busy loops"):
            loops = busy_loops(n_cores) if condition != "as is" else []
            try:
                time.sleep(1.0 if loops else 0)
                for spec in args.models:
                    res = measure(spec, settings, args.epochs, args.repeats, Path(tmp))
                    best_n = max(settings[1:], key=lambda s: res[s][0])
                    default_rate, default_used = res[None]
                    ratio = default_rate / res[best_n][0]
                    fixed = ", ".join(f"{s}: {res[s][0]:,.0f}" for s in settings[1:])
                    rows.append((Path(spec).stem, condition, default_used, default_rate, fixed, best_n, ratio))
                    print(
                        f"{Path(spec).stem:11s} {condition:14s} default ({default_used} thr) "
                        f"{default_rate:,.0f}/s | fixed {fixed} | best {best_n} | ratio {ratio:.2f}",
                        flush=True,
                    )
            finally:
                for p in loops:
                    p.kill()
                    p.wait()
    print(
        "\n| model | condition | default: threads | default samples/s | fixed threads: samples/s | best | default / best |"
    )
    print("|---|---|---|---|---|---|---|")
    title = f"nncli train, {args.epochs} epochs, median of {args.repeats}, training-step samples/s"
    rec.table(
        title,
        f"nncli's default thread count vs every fixed --threads 1..{n_cores}, on the machine as it "
        f"is and under {n_cores} busy loops; ratio = default / best fixed (1.0: the default found the best)",
    )
    rec.note(f"torch's own default in a fresh process: {torch_default} threads on {n_cores} cores")
    for name, cond, used, rate, fixed, best, ratio in rows:
        rec.row(
            title,
            model=name,
            condition=cond,
            default_threads=", ".join(map(str, used)),
            default_samples_per_s=rate,
            fixed_samples_per_s=fixed,
            best_fixed=best,
            ratio=ratio,
        )
        print(f"| {name} | {cond} | {', '.join(map(str, used))} | {rate:,.0f} | {fixed} | {best} | {ratio:.2f} |")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    with Record("threads_crossover" if "--crossover" in sys.argv else "threads", __doc__) as record:
        main(record)
