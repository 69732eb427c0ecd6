"""Benchmark `nncli probe` on the five 20-layer nets against a hand-written hook loop.

Run: .venv/bin/python tests/benchmarks/bench_probe.py [--repeats 3] [--seeds 0,1,2]

For each spec, in fresh processes (torch import included, as a user types it), best of N:
  - nncli:  `python -m nncli probe specs/<spec>.yaml --seeds 0,1,2 --device cpu --json`
  - hand:   a plain PyTorch script a user would otherwise write: import torch, define the same
            network by hand (same init), then per seed one forward with output.retain_grad() on
            every layer and one backward, printing ||dL/dh|| per layer and R. No statistics
            beyond that, no verdict, no table.
  - import: `python -c "import torch"`, the floor both pay.
Then, in one fresh process per spec, where the CPU time goes: importing torch, importing
nncli's own imports, the probe, and whether torch._dynamo got loaded.
The ratio nncli / hand is the cost of the spec build, the statistics and the report. Wall time
and the child's CPU time (user + sys) are both printed: on a shared machine the wall time swings
with other people's load, CPU time much less.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from record import Record  # this folder: the script's own
from timing import installed_env

ROOT = Path(__file__).resolve().parents[2]


SPECS = ["deep-sigmoid", "deep-relu-normal", "deep-relu-he", "deep-tanh-xavier", "deep-residual-bn"]

HAND = r"""
import sys, torch
from torch import nn
kind, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]

class Residual(nn.Module):
    def __init__(self, body):
        super().__init__(); self.body = body
    def forward(self, x):
        return x + self.body(x)

def net():
    layers = []
    for _ in range(20):
        if kind == "deep-residual-bn":
            layers += [Residual(nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(),
                                              nn.Linear(64, 64), nn.BatchNorm1d(64))), nn.ReLU()]
            continue
        lin = nn.Linear(64, 64)
        if kind == "deep-relu-normal":
            nn.init.normal_(lin.weight, std=0.3); nn.init.zeros_(lin.bias)
        elif kind == "deep-relu-he":
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu"); nn.init.zeros_(lin.bias)
        elif kind == "deep-tanh-xavier":
            nn.init.xavier_normal_(lin.weight); nn.init.zeros_(lin.bias)
        act = {"deep-sigmoid": nn.Sigmoid, "deep-tanh-xavier": nn.Tanh}.get(kind, nn.ReLU)()
        layers += [lin, act]
    return nn.Sequential(*layers, nn.Linear(64, 10))

for seed in seeds:
    torch.manual_seed(seed)
    model = net()
    outs = []

    def keep(module, inputs, output):
        output.retain_grad()
        outs.append(output)

    hooks = [m.register_forward_hook(keep) for m in model]
    x = torch.randn(128, 64)
    y = model(x)
    (y * torch.randn_like(y)).sum().div(len(x)).backward()
    norms = [o.grad.norm().item() for o in outs]
    for h in hooks:
        h.remove()
    print(seed, " ".join(f"{n:.3e}" for n in norms), "R", norms[0] / norms[-1])
"""


BREAKDOWN = r"""
import sys, time, resource
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0 = cpu()
import torch
c1 = cpu()
import nncli.cli
from nncli.spec import load_spec
from nncli.probe import probe
c3 = cpu()
report = probe(load_spec(f"specs/{sys.argv[1]}.yaml"), seeds=[int(s) for s in sys.argv[2].split(",")], device="cpu")
report.to_json()
c4 = cpu()
# torch._dynamo costs ~1.4 s CPU to import; nothing in a probe should pull it in (1 = it did).
print(f"{c1 - c0:.2f} {c3 - c1:.2f} {c4 - c3:.2f} {int('torch._dynamo' in sys.modules)}")
"""


def breakdown(name: str, seeds: str) -> list[float]:
    """One fresh process: CPU seconds of import torch, nncli's imports, the probe; dynamo loaded (0/1)."""
    env = installed_env(PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", BREAKDOWN, name, seeds], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return [float(v) for v in proc.stdout.split()]


def best_of(cmd: list[str], repeats: int, ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run: user + sys of the child) over ``repeats`` runs.

    A run exiting with a code outside ``ok`` stops the benchmark: a crashed script is not a time.
    """
    best = (math.inf, math.inf)
    env = installed_env(PYTHONPATH=str(ROOT))
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if proc.returncode not in ok:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
        best = min(best, (wall, cpu))
    return best


def main(rec: Record) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    py = sys.executable
    print(f"load average at start: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    floor = best_of([py, "-c", "import torch"], args.repeats)
    print(f"python -c 'import torch': {floor[0]:.2f} s wall, {floor[1]:.2f} s CPU (best of {args.repeats})")
    print(
        f"{'spec':<20} {'nncli wall':>10} {'hand wall':>10} {'ratio':>6} {'nncli CPU':>10} {'hand CPU':>9} {'ratio':>6}"
    )
    title = f"probe of the 20-layer nets, fresh processes, best of {args.repeats}, seeds {args.seeds}"
    rec.table(
        title,
        "nncli probe vs a hand-written hook script; ratio = nncli / hand (the cost of the spec "
        "build, the statistics and the report)",
    )
    rec.row(title, spec="python -c 'import torch' (the floor)", nncli_wall_s=floor[0], nncli_cpu_s=floor[1])
    worst = 0.0
    for name in SPECS:
        ours = best_of(
            [py, "-m", "nncli", "probe", f"specs/{name}.yaml", "--seeds", args.seeds, "--device", "cpu", "--json"],
            args.repeats,
            ok=(0, 1),
        )  # 1: unhealthy verdict
        hand = best_of([py, "-c", HAND, name, args.seeds], args.repeats)
        worst = max(worst, ours[0])
        rec.row(
            title,
            spec=name,
            nncli_wall_s=ours[0],
            hand_wall_s=hand[0],
            wall_ratio=ours[0] / hand[0],
            nncli_cpu_s=ours[1],
            hand_cpu_s=hand[1],
            cpu_ratio=ours[1] / hand[1],
        )
        print(
            f"{name:<20} {ours[0]:>10.2f} {hand[0]:>10.2f} {ours[0] / hand[0]:>6.2f} "
            f"{ours[1]:>10.2f} {hand[1]:>9.2f} {ours[1] / hand[1]:>6.2f}"
        )
    print(f"slowest nncli probe: {worst:.2f} s wall (torch import included)")
    inside = "CPU seconds inside one nncli probe process"
    rec.table(inside, "where the time goes: importing torch, nncli's own imports, the probe")
    print("\nCPU seconds inside one `nncli probe` process (best of the repeats by total):")
    print(f"{'spec':<20} {'torch':>6} {'nncli imports':>14} {'probe':>6} {'total':>6} {'dynamo loaded':>14}")
    for name in SPECS:
        parts = min((breakdown(name, args.seeds) for _ in range(args.repeats)), key=lambda p: sum(p[:3]))
        rec.row(
            inside,
            spec=name,
            torch_import_s=parts[0],
            nncli_imports_s=parts[1],
            probe_s=parts[2],
            total_s=sum(parts[:3]),
            loads_torch_dynamo=bool(parts[3]),
        )
        print(
            f"{name:<20} {parts[0]:>6.2f} {parts[1]:>14.2f} {parts[2]:>6.2f} {sum(parts[:3]):>6.2f} "
            f"{'yes' if parts[3] else 'no':>14}"
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f} (1 min)")


if __name__ == "__main__":
    with Record("probe", __doc__) as record:
        main(record)
