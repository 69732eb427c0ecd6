"""Benchmark `nncli gradcheck` against torch.autograd.gradcheck on tanh MLPs.

Run: OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_gradcheck.py --threads 1
         [--sizes 600,2800,14000,1000000] [--no-slow] [--repeats 3] [--slow-repeats 1]

Four tanh MLPs (about 600, 2,800, 14,000 and 1,000,000 parameters), float64, batch 4, all in
this one process, one after the other:
  - nncli default:     nncli.gradcheck.gradcheck(spec): build in float64, 3 random directions per
                       tensor of every layer in isolation, plus the end-to-end check.
  - torch fast:        build the same network by hand in float64, then
                       torch.autograd.gradcheck(f, (x, *params), fast_mode=True) on
                       f(x, params) = model output (what a user would otherwise run).
  - nncli exhaustive:  gradcheck(spec, exhaustive=True): every coordinate, per layer and end to end,
                       perturbations vectorised with torch.func.vmap.
  - torch slow:        torch.autograd.gradcheck(..., fast_mode=False): the full Jacobian, one
                       forward pair per input coordinate.
Exhaustive checks and torch's slow mode are O(params^2) work: they are skipped at 1,000,000
parameters (hours). The table gives default mode as nncli / torch fast and exhaustive mode as
torch slow / nncli, and the load average before and after, which the ratios must be quoted with.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from record import Record  # this folder: the script's own
from torch import nn

from nncli.gradcheck import gradcheck
from nncli.spec import parse_spec

# (input, hidden widths, output): parameters = sum of (fan_in + 1) * fan_out
NETS = {
    600: (16, [24], 8),  # 608
    2800: (32, [64], 10),  # 2,762
    14000: (64, [128, 40], 10),  # 13,890
    1000000: (512, [1024, 512], 10),  # 1,055,242
}


def spec_text(inp: int, hidden: list[int], out: int) -> str:
    layers = "".join(f"  - Linear: {{out_features: {h}}}\n  - Tanh\n" for h in hidden)
    return f"name: tanh-mlp\ninput: [{inp}]\nlayers:\n{layers}  - Linear: {{out_features: {out}}}\n"


def hand_model(inp: int, hidden: list[int], out: int) -> nn.Sequential:
    layers, width = [], inp
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers).double()


def torch_check(inp, hidden, out, fast: bool) -> tuple[float, bool]:
    start = time.perf_counter()
    torch.manual_seed(0)
    model = hand_model(inp, hidden, out)
    names = [n for n, _ in model.named_parameters()]
    x = torch.randn(4, inp, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]

    def f(x, *ps):
        return torch.func.functional_call(model, dict(zip(names, ps, strict=True)), (x,))

    ok = torch.autograd.gradcheck(f, (x, *params), fast_mode=fast, raise_exception=False)
    return time.perf_counter() - start, ok


def nncli_check(spec, exhaustive: bool) -> tuple[float, bool]:
    start = time.perf_counter()
    report = gradcheck(spec, exhaustive=exhaustive)
    return time.perf_counter() - start, report.ok


def best_pair(a, b, repeats: int) -> tuple[float, bool, float, bool]:
    """Best of ``repeats`` for two (seconds, ok) callables, run alternately (A B B A ...)."""
    ta, tb, oka, okb = [], [], True, True
    for i in range(repeats):
        for fn in (a, b) if i % 2 == 0 else (b, a):
            t, ok = fn()
            (ta if fn is a else tb).append(t)
            if fn is a:
                oka &= ok
            else:
                okb &= ok
    return min(ta), oka, min(tb), okb


def main(rec: Record) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="600,2800,14000,1000000")
    parser.add_argument("--no-slow", action="store_true", help="skip exhaustive and torch slow mode")
    parser.add_argument("--repeats", type=int, default=3, help="best of N, the two sides alternating")
    parser.add_argument(
        "--slow-repeats",
        type=int,
        default=1,
        help="best of N for exhaustive vs torch's slow mode from ~14k parameters on "
        "(torch's side takes seconds there; below that --repeats applies)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads for both sides (default: torch's own choice). On a "
        "shared machine 1 avoids OpenMP wake-up stalls that dwarf these small ops.",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, batch 4, load average {_load()}")
    # Warm-up of both sides: first calls pay one-off imports and allocator growth.
    nncli_check(parse_spec(spec_text(*NETS[600])), False)
    torch_check(*NETS[600], fast=True)
    header = (
        f"{'params':>10} | {'nncli default':>13} {'torch fast':>10} {'nncli/torch':>11} | "
        f"{'nncli exhaustive':>16} {'torch slow':>10} {'torch/nncli':>11} | verdicts"
    )
    print(header)
    print("-" * len(header))
    title = f"tanh MLPs, float64, batch 4, {torch.get_num_threads()} torch thread(s), best of the runs"
    rec.table(
        title,
        "nncli gradcheck (default: 3 directions per tensor of every layer and end to end) vs "
        "torch.autograd.gradcheck fast mode; nncli --exhaustive vs torch slow mode. "
        "default_ratio = nncli / torch fast (< 1: nncli faster); exhaustive_ratio = torch slow / nncli "
        "(> 1: nncli faster)",
    )
    for size in sizes:
        inp, hidden, out = NETS[size]
        spec = parse_spec(spec_text(inp, hidden, out))
        n = sum(p.numel() for p in hand_model(inp, hidden, out).parameters())
        t_def, ok_def, t_fast, ok_fast = best_pair(
            lambda spec=spec: nncli_check(spec, False),
            lambda net=NETS[size]: torch_check(*net, fast=True),
            args.repeats,
        )
        row = f"{n:>10,} | {t_def:>12.3f}s {t_fast:>9.3f}s {t_def / t_fast:>11.2f} | "
        verdicts = [ok_def, ok_fast]
        if args.no_slow or size >= 1000000:
            row += f"{'not run':>16} {'not run':>10} {'-':>11} | "
        else:
            t_ex, ok_ex, t_slow, ok_slow = best_pair(
                lambda spec=spec: nncli_check(spec, True),
                lambda net=NETS[size]: torch_check(*net, fast=False),
                args.repeats if size < 10000 else args.slow_repeats,
            )
            row += f"{t_ex:>15.3f}s {t_slow:>9.3f}s {t_slow / t_ex:>11.2f} | "
            verdicts += [ok_ex, ok_slow]
        print(row + " ".join("pass" if v else "FAIL" for v in verdicts), flush=True)
        cells = dict(parameters=n, nncli_default_s=t_def, torch_fast_s=t_fast, default_ratio=t_def / t_fast)
        if len(verdicts) > 2:
            cells.update(nncli_exhaustive_s=t_ex, torch_slow_s=t_slow, exhaustive_ratio=t_slow / t_ex)
        rec.row(title, **cells, all_checks_passed=all(verdicts))
    print(f"load average {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    with Record("gradcheck", __doc__) as record:
        main(record)
