"""Benchmark `nncli params` on two zoo specs against torchinfo.summary on the hand-written models.

Run: OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_zoo_params.py [--repeats 7]

DenseNet-121 (a deep graph of concatenations: 58 Parallels, 121 BatchNorms) and ViT-B/16
(attention): nncli's count (the library call `nncli params` makes: YAML -> meta build ->
parameters, FLOPs and saved-activation memory by formula) against torchinfo.summary on the
hand-written models of tests/zoo_models*.py, both in this process, batch 1. torchinfo needs a
real model, so its time is given with and without constructing it. The three are timed in
alternating rounds (A B C, then C B A, ...) and the best of each is kept, so a change of load
during the run hits all of them; the load average is printed before and after. Both must agree
on the parameter count, and it must be the published one. A user without nncli builds the model
and summarises it: the "incl. building the model" ratio is that comparison (> 1: nncli faster).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from record import Record  # this folder: the script's own

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))


def _alternating(fns: list, repeats: int) -> list[float]:
    """Best wall time of each of ``fns``, run in rounds whose order reverses every round."""
    best = [float("inf")] * len(fns)
    for r in range(repeats):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            t0 = time.perf_counter()
            fns[i]()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def main(rec: Record) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: run with OMP_NUM_THREADS=1 for figures comparable to docs/benchmarks.md")

    import torch
    import zoo_models
    import zoo_models_seq

    from nncli.params import count
    from nncli.spec import load_spec

    torch.set_num_threads(1)
    cases = [
        ("DenseNet-121", "densenet121.yaml", zoo_models.densenet121, zoo_models.PUBLISHED["densenet121"]),
        ("ViT-B/16", "vit-b-16.yaml", zoo_models_seq.vit_b_16, zoo_models.PUBLISHED["vit_b_16"]),
    ]
    reports = {label: count(load_spec(ROOT / "specs" / "zoo" / file)) for label, file, _, _ in cases}
    # before torchinfo runs (its real forward may import it): did nncli's count load torch._dynamo?
    dynamo = "torch._dynamo" in sys.modules
    import torchinfo

    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(
        f"best of {args.repeats}, alternating, batch 1; ratio = torchinfo time / nncli time "
        f"(> 1: nncli faster); torch._dynamo loaded by nncli's count: {'yes' if dynamo else 'no'}"
    )
    title = f"zoo specs at batch 1, best of {args.repeats}, alternating"
    rec.table(
        title,
        "nncli params (spec -> count) vs torchinfo.summary on the hand-written model; "
        "ratio = torchinfo time / nncli time (> 1: nncli faster)",
    )
    rec.note(f"torch._dynamo loaded by nncli's count: {dynamo}")
    for label, file, make, published in cases:
        path = ROOT / "specs" / "zoo" / file
        report = reports[label]
        model = make()
        info = torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0)
        assert report.total == info.total_params == published, (report.total, info.total_params)
        t_nncli, t_info, t_info_build = _alternating(
            [
                lambda path=path: count(load_spec(path)),
                lambda model=model: torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0),
                lambda make=make: torchinfo.summary(make(), input_size=(1, 3, 224, 224), verbose=0),
            ],
            args.repeats,
        )
        print(
            f"{label}: {published:,} parameters (both agree); nncli FLOPs {report.flops:,}, "
            f"torchinfo mult-adds {info.total_mult_adds:,}"
        )
        rec.row(
            title,
            network=label,
            parameters=published,
            nncli_flops=report.flops,
            torchinfo_mult_adds=info.total_mult_adds,
            nncli_ms=t_nncli * 1e3,
            torchinfo_built_ms=t_info * 1e3,
            ratio_built=t_info / t_nncli,
            torchinfo_with_build_ms=t_info_build * 1e3,
            ratio_with_build=t_info_build / t_nncli,
        )
        print(f"  nncli params (spec -> meta build -> count)   {t_nncli * 1e3:8.1f} ms")
        print(f"  torchinfo.summary (model already built)       {t_info * 1e3:8.1f} ms   ratio {t_info / t_nncli:.2f}")
        print(
            f"  torchinfo.summary incl. building the model    {t_info_build * 1e3:8.1f} ms   "
            f"ratio {t_info_build / t_nncli:.2f}"
        )
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    with Record("zoo_params", __doc__) as record:
        main(record)
