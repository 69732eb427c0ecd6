"""Benchmark `nncli probe` on the five 20-layer nets against a hand-written hook loop.

Run: .venv/bin/python tests/benchmarks/bench_probe.py [--repeats 3] [--seeds 0,1,2]

For each spec, in fresh processes (torch import included, as a user types it), best of N:
  - nncli:  `python -m nncli probe specs/<spec>.yaml --seeds 0,1,2 --device cpu --json`
  - hand:   a plain PyTorch script a user would otherwise write: import torch, define the same
            network by hand (same init), then per seed one forward with output.retain_grad() on
            every layer and one backward, printing ||dL/dh|| per layer and R. No statistics
            beyond that, no verdict, no table.
  - import: `python -c "import torch"`, the floor both pay.
The ratio nncli / hand is the cost of the spec build, the statistics and the report.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPECS = ["deep-sigmoid", "deep-relu-normal", "deep-relu-he", "deep-tanh-xavier", "deep-residual-bn"]

HAND = r'''
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
    hooks = [m.register_forward_hook(lambda m, i, o: (o.retain_grad(), outs.append(o))) for m in model]
    x = torch.randn(128, 64)
    y = model(x)
    (y * torch.randn_like(y)).sum().div(len(x)).backward()
    norms = [o.grad.norm().item() for o in outs]
    for h in hooks:
        h.remove()
    print(seed, " ".join(f"{n:.3e}" for n in norms), "R", norms[0] / norms[-1])
'''


def best_of(cmd: list[str], repeats: int) -> float:
    times = []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode not in (0, 1):  # probe exits 1 on an unhealthy verdict: that is a result
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    py = sys.executable
    floor = best_of([py, "-c", "import torch"], args.repeats)
    print(f"python -c 'import torch': {floor:.2f} s (best of {args.repeats})")
    print(f"{'spec':<20} {'nncli probe (s)':>16} {'hand loop (s)':>14} {'ratio':>7}")
    worst = 0.0
    for name in SPECS:
        ours = best_of([py, "-m", "nncli", "probe", f"specs/{name}.yaml", "--seeds", args.seeds,
                        "--device", "cpu", "--json"], args.repeats)
        hand = best_of([py, "-c", HAND, name, args.seeds], args.repeats)
        worst = max(worst, ours)
        print(f"{name:<20} {ours:>16.2f} {hand:>14.2f} {ours / hand:>7.2f}")
    print(f"slowest nncli probe: {worst:.2f} s (target < 5 s, torch import included)")


if __name__ == "__main__":
    main()
