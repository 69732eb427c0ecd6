"""Benchmark `nncli params` on two zoo specs against torchinfo.summary on the hand-written models.

Run: OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_zoo_params.py [--repeats 3]

DenseNet-121 (a deep graph of concatenations: 58 Parallels) and ViT-B/16 (attention): nncli's
count (the library call `nncli params` makes: YAML -> meta build -> parameters, FLOPs, memory)
against torchinfo.summary on the hand-written models of tests/zoo_models*.py, both in this
process, best of N, batch 1. torchinfo needs a real model, so its time is given with and without
constructing it. Both must agree on the parameter count, and it must be the published one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from timing import best_of  # this folder: the script's own

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: run with OMP_NUM_THREADS=1 for figures comparable to tests/benchmarks/README.md")

    import torch
    import torchinfo

    import zoo_models
    import zoo_models_seq
    from nncli.params import count
    from nncli.spec import load_spec

    torch.set_num_threads(1)
    cases = [
        ("DenseNet-121", "densenet121.yaml", zoo_models.densenet121, zoo_models.PUBLISHED["densenet121"]),
        ("ViT-B/16", "vit-b-16.yaml", zoo_models_seq.vit_b_16, zoo_models.PUBLISHED["vit_b_16"]),
    ]
    print(f"best of {args.repeats}, batch 1; ratio = torchinfo time / nncli time (> 1: nncli faster)")
    for label, file, make, published in cases:
        path = ROOT / "specs" / "zoo" / file
        report = count(load_spec(path))
        model = make()
        info = torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0)
        assert report.total == info.total_params == published, (report.total, info.total_params)
        t_nncli = best_of(lambda: count(load_spec(path)), args.repeats)
        t_info = best_of(lambda: torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0),
                         args.repeats)
        t_info_build = best_of(
            lambda: torchinfo.summary(make(), input_size=(1, 3, 224, 224), verbose=0), args.repeats)
        print(f"{label}: {published:,} parameters (both agree); nncli FLOPs {report.flops:,}, "
              f"torchinfo mult-adds {info.total_mult_adds:,}")
        print(f"  nncli params (spec -> meta build -> count)   {t_nncli * 1e3:8.1f} ms")
        print(f"  torchinfo.summary (model already built)       {t_info * 1e3:8.1f} ms   "
              f"ratio {t_info / t_nncli:.2f}")
        print(f"  torchinfo.summary incl. building the model    {t_info_build * 1e3:8.1f} ms   "
              f"ratio {t_info_build / t_nncli:.2f}")


if __name__ == "__main__":
    main()
