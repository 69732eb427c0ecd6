"""Benchmark where users wait: whole-process start-up, params of a deep MLP, cost per layer by depth.

Run: OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_startup.py [--pairs 5] [--skip-depth]

1. Whole processes, paired: each nncli command and the script a user would run instead are
   started alternately (A B B A ...), ``--pairs`` times each; the median wall times and their
   ratio (nncli / alternative: below 1, nncli is faster):
   - ``nncli check specs/lenet5.yaml`` vs ``python -c 'import torch'``;
   - ``nncli check specs/lenet5.yaml`` vs LeNet-5 built by hand + ``torchinfo.summary``;
   - ``nncli params specs/resnet50.yaml --json`` vs ResNet-50 built by hand + ``torchinfo.summary``;
   - ``nncli diagram specs/resnet50.yaml -o x.svg`` vs ResNet-50 by hand + torchview + SVG render
     (skipped where torchview, of the bench extra, is not installed).
   Whether ``torch._dynamo`` got loaded by each nncli command is reported too.
2. In-process, best of N: ``params`` of a 1,000-layer MLP (Repeat 500 x [Linear 64, ReLU] +
   Linear 10: spec text -> count) vs ``torchinfo.summary`` including building the model.
3. Depth: ``check`` (``check_spec``: build on meta + lint) and ``params`` of Repeat n/2 x [Linear 64, ReLU]
   for n = 10 ... 10,000 layers, in-process: ``--rounds`` passes over the depths in turn, each
   timing as many calls as fit in ``--budget`` seconds (at least one); per depth the best call
   and the median over rounds of the mean call: the cost per layer should stay flat.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from record import Record  # this folder: the script's own
from timing import best_of, installed_env

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
PY = sys.executable

HAND_LENET = """
import sys; sys.path.insert(0, 'tests')
import torch, torchinfo, reference_models as ref
torchinfo.summary(ref.lenet5(), input_size=(1, 1, 32, 32), verbose=0)
"""
HAND_RESNET = """
import sys; sys.path.insert(0, 'tests')
import torch, torchinfo, reference_models as ref
torchinfo.summary(ref.resnet50(), input_size=(1, 3, 224, 224), verbose=0)
"""
HAND_VIEW = """
import sys; sys.path.insert(0, 'tests')
import torch, torchview, reference_models as ref
g = torchview.draw_graph(ref.resnet50(), input_size=(1, 3, 224, 224), depth=3)
g.visual_graph.pipe(format='svg')
"""
DYNAMO = (
    "import sys\n"
    "from nncli.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('@@dynamo', 'torch._dynamo' in sys.modules, file=sys.stderr)\n"
)


def mlp_spec(layers: int) -> str:
    return textwrap.dedent(f"""\
        name: mlp-{layers}
        input: [64]
        layers:
          - Repeat:
              times: {layers // 2}
              layers: [{{Linear: {{out_features: 64}}}}, ReLU]
          - Linear: {{out_features: 10}}
        """)


# Both sides run as an installed package does, with bytecode caches (timing.installed_env); one
# warm-up run of each side writes them.
ENV = installed_env()


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - t0


def paired(a: list[str], b: list[str], pairs: int) -> tuple[float, float]:
    wall(a), wall(b)  # warm-up: bytecode caches, the page cache
    ta, tb = [], []
    for i in range(pairs):
        order = (a, b) if i % 2 == 0 else (b, a)
        for cmd in order:
            (ta if cmd is a else tb).append(wall(cmd))
    return statistics.median(ta), statistics.median(tb)


def loads_dynamo(args: list[str]) -> bool:
    proc = subprocess.run([PY, "-c", DYNAMO, *args], cwd=ROOT, capture_output=True, text=True, env=ENV)
    return "@@dynamo True" in proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-depth", action="store_true")
    parser.add_argument("--budget", type=float, default=0.3, help="seconds of calls per depth cell and round")
    parser.add_argument("--rounds", type=int, default=9, help="round-robin passes over the depths")
    parser.add_argument("--skip-processes", action="store_true")
    args = parser.parse_args()
    with Record("startup", __doc__) as rec:
        measure(args, rec)


def measure(args, rec: Record) -> None:
    nncli = [PY, "-m", "nncli"]
    with tempfile.TemporaryDirectory() as tmp:
        svg = str(Path(tmp) / "x.svg")
        cases = [
            ("check lenet5 vs import torch", [*nncli, "check", "specs/lenet5.yaml"], [PY, "-c", "import torch"]),
            ("check lenet5 vs hand + torchinfo", [*nncli, "check", "specs/lenet5.yaml"], [PY, "-c", HAND_LENET]),
            (
                "params resnet50 --json vs hand + torchinfo",
                [*nncli, "params", "specs/resnet50.yaml", "--json"],
                [PY, "-c", HAND_RESNET],
            ),
            (
                "diagram resnet50 -o x.svg vs torchview + render",
                [*nncli, "diagram", "specs/resnet50.yaml", "-o", svg],
                [PY, "-c", HAND_VIEW],
            ),
        ]
        if importlib.util.find_spec("torchview") is None:  # the bench extra; skipped, as bench_diagram does
            cases = [case for case in cases if "torchview" not in case[0]]
            rec.note("torchview is not installed: the diagram case was not run")
        if not args.skip_processes:
            procs = f"Whole processes, median of {args.pairs} paired runs"
            rec.table(
                procs,
                "an nncli command vs the script a user would run instead; "
                "ratio = nncli / alternative (< 1: nncli faster)",
            )
            print(f"whole processes, median of {args.pairs} paired runs (ratio nncli / alternative):")
            for label, a, b in cases:
                ta, tb = paired(a, b, args.pairs)
                dynamo = loads_dynamo(a[3:])
                rec.row(procs, case=label, nncli_s=ta, alternative_s=tb, ratio=ta / tb, loads_torch_dynamo=dynamo)
                print(f"  {label:50s} {ta:6.2f} s  {tb:6.2f} s  ratio {ta / tb:.2f}  torch._dynamo loaded: {dynamo}")

    import reference_models as ref
    import torchinfo
    from torch import nn

    from nncli.lint import check_spec
    from nncli.params import count
    from nncli.spec import parse_spec

    text = mlp_spec(1000)
    t_nncli = best_of(lambda: count(parse_spec(text)), args.repeats)
    t_info = best_of(
        lambda: torchinfo.summary(ref.deep_mlp(nn.ReLU, depth=500), input_size=(1, 64), verbose=0), args.repeats
    )
    deep = f"params of a 1,000-layer MLP, in-process, best of {args.repeats}"
    rec.table(
        deep,
        "nncli (spec text -> count) vs torchinfo.summary including building the model; "
        "ratio = nncli / torchinfo (< 1: nncli faster)",
    )
    rec.row(deep, nncli_ms=t_nncli * 1e3, torchinfo_ms=t_info * 1e3, ratio=t_nncli / t_info)
    print(
        f"\nparams, 1,000-layer MLP, in-process, best of {args.repeats}: nncli {t_nncli * 1e3:.0f} ms, "
        f"torchinfo incl. build {t_info * 1e3:.0f} ms, ratio nncli / torchinfo {t_nncli / t_info:.2f}"
    )
    assert (
        count(parse_spec(text)).total
        == torchinfo.summary(ref.deep_mlp(nn.ReLU, depth=500), input_size=(1, 64), verbose=0).total_params
    )

    if args.skip_depth:
        return
    depths = (10, 100, 1000, 10000)
    print(
        f"\ncost per layer by depth (in-process; spec text -> result; {args.rounds} rounds, each "
        f"timing every depth in turn for ~{args.budget:g} s of calls (at least one)):"
    )
    calls = {"check": lambda text: check_spec(parse_spec(text)), "params": lambda text: count(parse_spec(text))}
    texts = {d: mlp_spec(d) for d in depths}
    for d in depths:  # warm-up: imports, first-use caches
        for fn in calls.values():
            fn(texts[d])
    # Round robin rather than one depth after the other: this VM's speed drifts by tens of
    # percent over minutes, which a depth timed alone reads as a cost of that depth. Two
    # figures per cell: the best single call (a deep spec gets one call a round, a shallow one
    # hundreds, so its best is the luckier draw) and the median over rounds of each round's mean
    # call (every depth exposed to the same ~budget of noise per round).
    times: dict = {(d, tool): [] for d in depths for tool in calls}
    for _ in range(args.rounds):
        for d in depths:
            for tool, fn in calls.items():
                spent, each = 0.0, []
                while not each or spent < args.budget:
                    t0 = time.perf_counter()
                    fn(texts[d])
                    each.append(time.perf_counter() - t0)
                    spent += each[-1]
                times[d, tool].append((min(each), sum(each) / len(each)))
    print(
        f"  {'layers':>7s} | {'check: best':>11s} {'us/layer':>8s} {'median':>8s} {'us/layer':>8s} | "
        f"{'params: best':>12s} {'us/layer':>8s} {'median':>8s} {'us/layer':>8s}"
    )
    per_layer = f"Cost per layer by depth, {args.rounds} rounds"
    rec.table(
        per_layer,
        "check and params of Repeat n/2 x [Linear 64, ReLU], in-process: the best call and "
        "the median over rounds of the mean call; flat microseconds per layer = linear cost",
    )
    for d in depths:
        n, row = d + 1, []
        cells = {}
        for tool in calls:
            best = min(b for b, _ in times[d, tool])
            median = statistics.median(m for _, m in times[d, tool])
            cells.update(
                {
                    f"{tool}_best_ms": best * 1e3,
                    f"{tool}_best_us_per_layer": best / n * 1e6,
                    f"{tool}_median_ms": median * 1e3,
                    f"{tool}_median_us_per_layer": median / n * 1e6,
                }
            )
            row.append(f"{best * 1e3:9.1f}ms {best / n * 1e6:8.1f} {median * 1e3:6.1f}ms {median / n * 1e6:8.1f}")
        rec.row(per_layer, layers=n, **cells)
        print(f"  {n:7,d} | {row[0]:>29s} | {row[1]:>30s}")


if __name__ == "__main__":
    main()
