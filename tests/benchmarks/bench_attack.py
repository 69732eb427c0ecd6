"""Benchmark `nncli attack` (PGD-10, L-inf) against a hand-written PGD loop, in one process.

Run: OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_attack.py [--run RUN] [--repeats 5]

Without --run, specs/digits-cnn.yaml is first trained for 5 epochs into a temporary folder.
Then, on the run's test split (359 digits), batches of 256, eps 0.1, step 0.025, 10 steps,
random start, one torch thread, best of N:
  - hand:     the loop a user would write (model and data already loaded): random start, then
              10 x (forward, cross-entropy, autograd.grad, signed step, projection, clamp);
  - core:     nncli.attack.pgd on the same batches (the same loop as a library function);
  - command:  nncli.attack.run_attack(RUN, eps=[0.1], methods=["pgd"]): everything `nncli attack`
              does, i.e. also rebuilding the network, reloading the split, the clean and the
              adversarial predictions and the per-example norms.
Each is reported as examples/s and as a ratio to the hand loop (1.0 = as fast, above 1 = faster),
in wall time and in this process's CPU time (steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from record import Record  # this folder: the script's own

ROOT = Path(__file__).resolve().parents[2]


def hand_pgd(model, x, y, eps, alpha, steps, gen):
    adv = (x + torch.empty_like(x).uniform_(-eps, eps, generator=gen)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        (g,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * g.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def best_of(repeats, fns):
    """Best wall and CPU seconds of each function; the repeats are interleaved (hand, core,
    command, hand, ...) so that a change of the machine's load hits all of them alike."""
    wall = [math.inf] * len(fns)
    cpu = [math.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[i] = min(wall[i], time.perf_counter() - w0)
            cpu[i] = min(cpu[i], time.process_time() - c0)
    return wall, cpu


def main(rec: Record) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import dataclasses

    from nncli import data as data_mod
    from nncli.attack import pgd, run_attack
    from nncli.build import build_model
    from nncli.modules.preprocess import trained_network
    from nncli.runs import load_checkpoint
    from nncli.train import run_training
    from nncli.train.trained import open_run

    run_dir = args.run
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp()) / "digits"
        run_training(ROOT / "specs" / "digits-cnn.yaml", {"train": {"epochs": 5}}, run_dir, device="cpu")
    run = open_run(run_dir)
    ckpt = load_checkpoint(run.run_dir / "checkpoints" / "best.pt")
    net = build_model(run.spec, seed=0).model
    net.load_state_dict(ckpt["model"])
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    model = trained_network(net, ckpt["normalization"]).eval()
    x, y = data_mod.load_dataset(dataclasses.replace(run.data, normalize=False)).split("test")
    batches = [(x[i : i + 256], y[i : i + 256]) for i in range(0, len(x), 256)]
    eps, alpha, steps = 0.1, 0.025, 10

    def hand():
        gen = torch.Generator().manual_seed(0)
        return [hand_pgd(model, xb, yb, eps, alpha, steps, gen) for xb, yb in batches]

    def core():
        gen = torch.Generator().manual_seed(0)
        return [
            pgd(model, xb, yb, eps, steps=steps, step_size=alpha, lo=0.0, hi=1.0, generator=gen) for xb, yb in batches
        ]

    def command():
        return run_attack(run_dir, eps=[eps], methods=["pgd"], steps=steps, step_size=alpha, device="cpu")

    # the same adversarial examples: the comparison is of the same work
    same = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(hand(), core(), strict=True))
    command()  # warm-up: first-call costs (data set import, allocator) out of the timings
    wall, cpu = best_of(args.repeats, [hand, core, command])
    n = len(x)
    print(
        f"test examples {n}, PGD-{steps}, eps {eps}, torch threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, best of {args.repeats}; same examples: {same}"
    )
    print(f"{'':10} {'wall s':>8} {'examples/s':>11} {'ratio to hand':>14} {'CPU s':>8} {'CPU ratio':>10}")
    title = f"PGD-{steps}, eps {eps}, {n} test digits, {torch.get_num_threads()} torch thread, best of {args.repeats}"
    rec.table(
        title,
        "a hand-written PGD loop vs nncli.attack.pgd (core) vs everything nncli attack does "
        "(command); ratio = hand time / time (> 1: faster than the hand loop)",
    )
    rec.note(f"the hand loop and nncli's pgd gave the same adversarial examples: {same}")
    for i, name in enumerate(("hand", "core", "command")):
        rec.row(
            title,
            side=name,
            wall_s=wall[i],
            examples_per_s=n / wall[i],
            wall_ratio=wall[0] / wall[i],
            cpu_s=cpu[i],
            cpu_ratio=cpu[0] / cpu[i],
        )
        print(
            f"{name:10} {wall[i]:8.3f} {n / wall[i]:11.0f} {wall[0] / wall[i]:14.3f} "
            f"{cpu[i]:8.3f} {cpu[0] / cpu[i]:10.3f}"
        )


if __name__ == "__main__":
    with Record("attack", __doc__) as record:
        main(record)
