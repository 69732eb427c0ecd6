"""Benchmark `nncli diagram` against torchview and a hand-written graphviz.Digraph.

Run: .venv/bin/python tests/benchmarks/bench_diagram.py [--repeats 3]

Networks: ResNet-50 (specs/resnet50.yaml; its Repeats collapsed, then --expand) and a
1,000-layer MLP (Repeat 500 x [Linear 64, ReLU] + Linear 10; collapsed, then --expand).

Measured, best of N, all in this process:
- nncli "to DOT": spec file -> load -> meta build -> graph -> DOT source text;
  "to SVG": that DOT through graphviz's `dot -Tsvg`.
- torchview (what a user might pip install): ``draw_graph`` on the hand-written reference model
  (tests/reference_models.py) with a real input, "to DOT" = draw_graph + ``visual_graph.source``;
  SVG likewise. Constructing the model is not counted. Skipped if torchview is not installed.
- hand-written: a graphviz.Digraph with a node per leaf module of the reference model, chained in
  order (what one writes in a few lines; it shows no shapes, no skips). Model construction not
  counted.
Then the time a user waits for the collapsed 1,000-layer MLP, spec file to SVG, in this process
and as fresh `nncli diagram` processes (torch import included, collapsed and --expand), next to
`python -c 'import torch'` alone for scale.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import Record  # this folder: the script's own
from timing import installed_env

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


MLP_1000 = """\
name: mlp-1000
input: [64]
layers:
  - Repeat:
      times: 500
      layers: [{Linear: {out_features: 64}}, ReLU]
  - Linear: {out_features: 10}
"""


def best_of(fn, repeats: int):
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), value


def svg(source: str) -> bytes:
    import graphviz

    return graphviz.pipe("dot", "svg", source.encode("utf-8"))


def handwritten_digraph(model) -> str:
    """What a user writes by hand: a node per leaf module, chained in definition order."""
    import graphviz

    g = graphviz.Digraph(node_attr={"shape": "box"})
    prev = None
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        g.node(name, f"{name}: {module.__class__.__name__}")
        if prev is not None:
            g.edge(prev, name)
        prev = name
    return g.source


def main(rec: Record) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import reference_models as ref
    import torch
    from torch import nn

    from nncli.diagram import build_diagram
    from nncli.spec import load_spec

    try:
        import torchview
    except ImportError:
        torchview = None

    # Warm-up: the first build and the first draw_graph pay for lazy imports inside torch.
    _ = build_diagram(load_spec(ROOT / "specs" / "lecture-mlp.yaml")).source
    if torchview is not None:
        _ = torchview.draw_graph(ref.lecture_mlp(), input_size=(1, 2)).visual_graph.source

    tmp = Path(tempfile.mkdtemp(prefix="bench-diagram-"))
    mlp_path = tmp / "mlp-1000.yaml"
    mlp_path.write_text(MLP_1000)
    cases = [
        ("ResNet-50", ROOT / "specs" / "resnet50.yaml", False, ref.resnet50, (1, 3, 224, 224)),
        ("ResNet-50 --expand", ROOT / "specs" / "resnet50.yaml", True, ref.resnet50, (1, 3, 224, 224)),
        ("MLP 1,000 layers", mlp_path, False, lambda: ref.deep_mlp(nn.ReLU, depth=500), (1, 64)),
        ("MLP 1,000 layers --expand", mlp_path, True, lambda: ref.deep_mlp(nn.ReLU, depth=500), (1, 64)),
    ]
    rows = []
    for label, path, expand, make, in_size in cases:
        t_dot, source = best_of(
            lambda path=path, expand=expand: build_diagram(load_spec(path), expand=expand).source, args.repeats
        )
        d = build_diagram(load_spec(path), expand=expand)
        t_svg, _ = best_of(lambda source=source: svg(source), args.repeats)
        torch.manual_seed(0)
        model = make().eval()
        h_dot, h_source = best_of(lambda model=model: handwritten_digraph(model), args.repeats)
        h_svg, _ = best_of(lambda h_source=h_source: svg(h_source), args.repeats)
        tv = None
        if torchview is not None:
            # torchview's default depth (3) hides nested blocks; for the expanded rows it opens all.
            depth = 100 if expand else 3

            def tv_dot(model=model, in_size=in_size, depth=depth):
                with torch.no_grad():
                    return torchview.draw_graph(
                        model, input_size=in_size, depth=depth, expand_nested=False
                    ).visual_graph.source

            tv_t_dot, tv_source = best_of(tv_dot, args.repeats)
            tv_t_svg, _ = best_of(lambda tv_source=tv_source: svg(tv_source), args.repeats)
            tv_nodes = sum(
                1 for line in tv_source.splitlines() if line.strip().split(" ")[0].isdigit() and "->" not in line
            )
            tv = (tv_t_dot, tv_t_svg, tv_nodes)
        rows.append((label, len(d.nodes), len(d.edges), t_dot, t_svg, h_dot, h_svg, tv))

    print(f"best of {args.repeats}; times in seconds; ratio = nncli / other (below 1: nncli faster)")
    head = (
        f"{'network':<27} {'nodes':>5} {'edges':>5} | {'nncli DOT':>9} {'nncli SVG':>9} | "
        f"{'hand DOT':>8} {'hand SVG':>8} | {'tview DOT':>9} {'tview SVG':>9} {'tv nodes':>8} | "
        f"{'DOT+SVG / hand':>14} {'DOT+SVG / tview':>15}"
    )
    print(head)
    print("-" * len(head))
    title = f"spec or model to DOT and SVG, best of {args.repeats}"
    rec.table(
        title,
        "nncli diagram vs a hand-written graphviz.Digraph and torchview on the reference models "
        "(model construction not counted for them); ratios = nncli (DOT + SVG) / other (< 1: nncli faster)",
    )
    for label, n, m, t_dot, t_svg, h_dot, h_svg, tv in rows:
        rec.row(
            title,
            network=label,
            nodes=n,
            edges=m,
            nncli_dot_s=t_dot,
            nncli_svg_s=t_svg,
            hand_dot_s=h_dot,
            hand_svg_s=h_svg,
            torchview_dot_s=tv[0] if tv else None,
            torchview_svg_s=tv[1] if tv else None,
            torchview_nodes=tv[2] if tv else None,
            ratio_to_hand=(t_dot + t_svg) / (h_dot + h_svg),
            ratio_to_torchview=(t_dot + t_svg) / (tv[0] + tv[1]) if tv else None,
        )
        tv_cols = f"{tv[0]:9.3f} {tv[1]:9.3f} {tv[2]:8d}" if tv else f"{'-':>9} {'-':>9} {'-':>8}"
        ratio_tv = f"{(t_dot + t_svg) / (tv[0] + tv[1]):15.2f}" if tv else f"{'-':>15}"
        print(
            f"{label:<27} {n:5d} {m:5d} | {t_dot:9.3f} {t_svg:9.3f} | {h_dot:8.3f} {h_svg:8.3f} | "
            f"{tv_cols} | {(t_dot + t_svg) / (h_dot + h_svg):14.2f} {ratio_tv}"
        )

    # As a user runs it: a fresh process, torch import included; best of N fresh runs, as the
    # machine is shared.
    def fresh(*extra: str) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "nncli", "diagram", str(mlp_path), "-o", str(tmp / "mlp-1000.svg"), *extra],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=installed_env(),
        )
        if proc.returncode != 0:
            raise SystemExit(f"nncli diagram failed: {proc.stderr}")
        return time.perf_counter() - t0

    import os

    collapsed = next(r for r in rows if r[0] == "MLP 1,000 layers")
    render_s = collapsed[3] + collapsed[4]
    print(
        f"\ncollapsed 1,000-layer MLP, spec file -> SVG bytes (load, meta build, graph, DOT, "
        f"dot -Tsvg): {render_s:.2f} s"
    )
    gate = [fresh() for _ in range(args.repeats)]
    print(
        f"`nncli diagram mlp-1000.yaml -o mlp-1000.svg` as a fresh process (Python start-up and "
        f"torch import included): best {min(gate):.2f} s, worst {max(gate):.2f} s of {len(gate)}"
    )
    expanded = [fresh("--expand") for _ in range(args.repeats)]
    print(f"`... --expand` (1,003 nodes), fresh process: best {min(expanded):.2f} s, worst {max(expanded):.2f} s")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, env=installed_env())
    torch_import = time.perf_counter() - t0
    print(
        f"for scale, `python -c 'import torch'` alone: {torch_import:.2f} s; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    wait = "collapsed 1,000-layer MLP, spec file to SVG"
    rec.table(wait, "in this process, and as fresh processes (best and worst of the runs)")
    rec.row(wait, case="in-process (load, build, graph, DOT, dot -Tsvg)", best_s=render_s, worst_s=None)
    rec.row(wait, case="fresh `nncli diagram mlp-1000.yaml -o mlp-1000.svg`", best_s=min(gate), worst_s=max(gate))
    rec.row(wait, case="fresh `... --expand` (1,003 nodes)", best_s=min(expanded), worst_s=max(expanded))
    rec.row(wait, case="fresh `python -c 'import torch'`, for scale", best_s=torch_import, worst_s=None)


if __name__ == "__main__":
    with Record("diagram", __doc__) as record:
        main(record)
