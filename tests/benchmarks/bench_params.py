"""Benchmark `nncli params` against torchinfo.summary, and counting a 100-billion-parameter spec.

Run: .venv/bin/python tests/benchmarks/bench_params.py [--repeats 5]

1. ResNet-50: nncli's count (spec -> meta build -> params, FLOPs, memory) vs torchinfo.summary on
   the hand-written reference model (tests/reference_models.py), both in this process, best of N.
   torchinfo needs a real model, so its time is shown with and without constructing it.
2. A 100-billion-parameter spec (10 x Linear 100000 -> 100000): wall time and peak RSS of
   `nncli params --json` in a fresh process (torch import included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from record import Record  # this folder: the script's own
from timing import best_of, installed_env

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

HUGE_SPEC = """\
name: huge-100b
input: [100000]
layers:
  - Repeat:
      times: 10
      layers: [{Linear: {out_features: 100000}}]
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with Record("params", __doc__) as rec:
        measure(args, rec)


def measure(args, rec: Record) -> None:
    import reference_models as ref
    import torchinfo

    from nncli.params import count
    from nncli.spec import load_spec

    spec_path = ROOT / "specs" / "resnet50.yaml"
    report = count(load_spec(spec_path))
    model = ref.resnet50()
    info = torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0)
    assert report.total == info.total_params == 25_557_032, (report.total, info.total_params)

    resnet = f"ResNet-50, best of {args.repeats}"
    rec.table(
        resnet,
        "nncli params (spec -> count) vs torchinfo.summary on the hand-written model; "
        "ratio = torchinfo time / nncli time (> 1: nncli faster)",
    )
    rec.note(f"ResNet-50: {report.total:,} parameters, the same in nncli and torchinfo")
    print(
        f"ResNet-50 (best of {args.repeats}), params {report.total:,} both; "
        "ratio = torchinfo time / nncli time (> 1: nncli faster)"
    )
    for batch in (1, 32):
        shape = (batch, 3, 224, 224)
        t_nncli = best_of(lambda batch=batch: count(load_spec(spec_path), batch_size=batch), args.repeats)
        t_torchinfo = best_of(lambda shape=shape: torchinfo.summary(model, input_size=shape, verbose=0), args.repeats)
        t_torchinfo_build = best_of(
            lambda shape=shape: torchinfo.summary(ref.resnet50(), input_size=shape, verbose=0), args.repeats
        )
        rec.row(
            resnet,
            batch=batch,
            nncli_ms=t_nncli * 1e3,
            torchinfo_built_ms=t_torchinfo * 1e3,
            ratio_built=t_torchinfo / t_nncli,
            torchinfo_with_build_ms=t_torchinfo_build * 1e3,
            ratio_with_build=t_torchinfo_build / t_nncli,
        )
        print(f" batch {batch}:")
        print(f"  nncli params (spec -> meta build -> count)   {t_nncli * 1e3:8.1f} ms")
        print(
            f"  torchinfo.summary (model already built)       {t_torchinfo * 1e3:8.1f} ms   "
            f"ratio {t_torchinfo / t_nncli:.2f}"
        )
        print(
            f"  torchinfo.summary incl. building the model    {t_torchinfo_build * 1e3:8.1f} ms   "
            f"ratio {t_torchinfo_build / t_nncli:.2f}"
        )

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "huge.yaml"
        spec.write_text(HUGE_SPEC)
        code = (
            "import sys, time, json\n"
            "t0 = time.perf_counter()\n"
            "from nncli.cli import main\n"
            f"rc = main(['params', {str(spec)!r}, '--json'])\n"
            # VmHWM, not ru_maxrss: the latter is inherited from the (large) parent across fork+exec.
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "sys.stderr.write(json.dumps({'rc': rc, 'seconds': time.perf_counter() - t0,\n"
            "  'maxrss_mb': int(hwm) / 1024}) + '\\n')\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=installed_env()
        )
        stats = json.loads(proc.stderr.strip().splitlines()[-1])
        total = json.loads(proc.stdout)["total"]
    huge = "100-billion-parameter spec (10 x Linear 100000 -> 100000)"
    rec.table(
        huge,
        "nncli params --json in a fresh process, torch import included (torchinfo would need "
        "the model's 400 GB of weights)",
    )
    rec.row(huge, parameters=total, seconds=stats["seconds"], peak_rss_mb=stats["maxrss_mb"])
    print(
        f"100-billion-parameter spec: {total:,} parameters counted in {stats['seconds']:.2f} s "
        f"(torch import included), peak RSS {stats['maxrss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
