"""Benchmark `nncli train` against a plain hand-written PyTorch loop: same model, data, epochs.

Run: .venv/bin/python tests/benchmarks/bench_train.py [--spec specs/digits-cnn.yaml] [--repeats 3]
     [--threads N] [--device cpu|cuda] [--amp bf16] [--compile]

Both sides train the same network (the plain loop takes the nn.Sequential nncli builds from the
spec, with the same seed, and drives it with its own code), on the same normalised split, with
the same optimizer, batch size and epochs, in this process, alternating A B B A so drift in the
machine's load hits both alike. The plain loop is what a user writes: load the data, shuffle,
forward, cross-entropy, backward, step; then one test evaluation. nncli does more per run
(validation every epoch, checkpoints, metrics files, the final report on three splits), all of it
inside its wall time.

Reported (medians): wall time per run and training examples per wall second; training-step
throughput (examples per second spent in the training steps: nncli's own samples_per_s, timed the
same way around the plain loop's steps) and its ratio nncli / plain; the
wall-time ratio; test accuracy of both. With --device cuda, nncli may use --amp/--compile while the
plain loop stays fp32 eager: that is the comparison a user gets by adding two flags.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from record import Record  # this folder: the script's own

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def plain_loop(spec, cfg, device):
    """The loop a user would write by hand for this spec: load the data, shuffle, step, test.

    Returns ``(test accuracy, seconds spent in the training steps)``.
    """
    import torch
    from torch import nn

    from nncli.build import build_model
    from nncli.data import fit_input_shape, load_dataset, resolve_data_config

    ds = load_dataset(resolve_data_config(spec.data))  # the same split and normalisation as nncli's
    for split in ("train", "test"):
        setattr(ds, f"x_{split}", fit_input_shape(getattr(ds, f"x_{split}"), spec.input))

    # the same layers and initial weights as nncli's model: built from the spec with the same
    # seed, then used as a plain nn.Sequential (no nncli code runs inside the loop)
    model = build_model(spec, device=device, seed=cfg.seed).model
    opt = (
        torch.optim.Adam(model.parameters(), lr=cfg.lr)
        if cfg.optimizer == "adam"
        else torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    )
    x, y = ds.x_train.to(device), ds.y_train.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(y), generator=gen).to(device)
        for lo in range(0, len(y), cfg.batch_size):
            idx = perm[lo : lo + cfg.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    step_time = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        pred = model(ds.x_test.to(device)).argmax(1)
    return (pred == ds.y_test.to(device)).float().mean().item(), step_time


def main(rec: Record) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", default=str(ROOT / "specs" / "digits-cnn.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default=None, choices=["bf16", "fp16"])
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()

    import torch

    from nncli.data import load_dataset, resolve_data_config
    from nncli.device import resolve_device
    from nncli.spec import load_spec
    from nncli.train import run_training
    from nncli.train.config import resolve_train_config

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    spec = load_spec(args.spec)
    overrides = {
        "train": {
            k: v for k, v in {"epochs": args.epochs, "amp": args.amp, "compile": args.compile or None}.items() if v
        }
    }
    cfg = resolve_train_config(spec.train, overrides["train"])
    n_train = load_dataset(resolve_data_config(spec.data)).sizes()["train"]

    nncli_times, plain_times, nncli_acc, plain_acc, inner, plain_inner = [], [], [], [], [], []
    nncli_cpu, plain_cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for side in ("plain", "nncli") if rep % 2 == 0 else ("nncli", "plain"):  # A B B A ...
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0, c0 = time.perf_counter(), time.process_time()
                if side == "nncli":
                    result = run_training(spec, overrides, Path(tmp) / f"run{rep}", device=str(device))
                    nncli_times.append(time.perf_counter() - t0)
                    nncli_cpu.append(time.process_time() - c0)
                    nncli_acc.append(result.test["accuracy"])
                    inner.append(result.samples_per_s)
                else:
                    acc, step_time = plain_loop(spec, cfg, device)
                    plain_times.append(time.perf_counter() - t0)
                    plain_cpu.append(time.process_time() - c0)
                    plain_acc.append(acc)
                    plain_inner.append(n_train * cfg.epochs / step_time)

    nn_t, pl_t = statistics.median(nncli_times), statistics.median(plain_times)
    work = n_train * cfg.epochs
    print(
        f"nncli train vs plain PyTorch loop: {spec.name}, {cfg.epochs} epochs x {n_train} examples, "
        f"batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr}, device {device}, "
        f"torch threads {torch.get_num_threads()}, amp {args.amp or 'none'}, compile {args.compile}, "
        f"median of {args.repeats}"
    )
    pl_s, nn_s = statistics.median(plain_inner), statistics.median(inner)
    print(f"{'':<14}{'wall s':>9}{'wall ex/s':>12}{'step ex/s':>12}{'test acc':>10}")
    print(f"{'plain loop':<14}{pl_t:>9.2f}{work / pl_t:>12,.0f}{pl_s:>12,.0f}{statistics.mean(plain_acc):>10.4f}")
    print(f"{'nncli train':<14}{nn_t:>9.2f}{work / nn_t:>12,.0f}{nn_s:>12,.0f}{statistics.mean(nncli_acc):>10.4f}")
    print(f"training-step throughput ratio nncli/plain: {nn_s / pl_s:.3f}")
    print(
        f"wall-time ratio (nncli also validates every epoch, checkpoints, writes metrics and evaluates "
        f"three splits at the end): {pl_t / nn_t:.3f}"
    )
    pl_c, nn_c = statistics.median(plain_cpu), statistics.median(nncli_cpu)
    print(
        f"CPU-time ratio (process CPU seconds, all threads; steadier than wall time on a shared "
        f"machine): {pl_c / nn_c:.3f}  (plain {pl_c:.2f} s, nncli {nn_c:.2f} s)"
    )
    title = (
        f"{spec.name}: {cfg.epochs} epochs x {n_train:,} examples, batch {cfg.batch_size}, {cfg.optimizer}, "
        f"{device}, {torch.get_num_threads()} torch thread(s), amp {args.amp or 'none'}, "
        f"compile {bool(args.compile)}, median of {args.repeats}"
    )
    rec.table(title, "nncli train vs a plain hand-written PyTorch loop on the same model, data and settings")
    rec.row(
        title,
        side="plain loop",
        wall_s=pl_t,
        wall_examples_per_s=work / pl_t,
        step_examples_per_s=pl_s,
        cpu_s=pl_c,
        test_accuracy=statistics.mean(plain_acc),
    )
    rec.row(
        title,
        side="nncli train",
        wall_s=nn_t,
        wall_examples_per_s=work / nn_t,
        step_examples_per_s=nn_s,
        cpu_s=nn_c,
        test_accuracy=statistics.mean(nncli_acc),
    )
    rec.table("ratios, nncli / plain", "> 1: nncli faster (for throughput) or cheaper (for times)")
    rec.row(
        "ratios, nncli / plain",
        step_throughput=nn_s / pl_s,
        wall_time_plain_over_nncli=pl_t / nn_t,
        cpu_time_plain_over_nncli=pl_c / nn_c,
    )
    print(
        "runs (s): plain "
        + " ".join(f"{t:.2f}" for t in plain_times)
        + " | nncli "
        + " ".join(f"{t:.2f}" for t in nncli_times)
    )


if __name__ == "__main__":
    with Record("train", __doc__) as record:
        main(record)
