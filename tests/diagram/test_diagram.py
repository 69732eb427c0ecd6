"""Tests for ``nncli diagram``.

Most tests read the DOT *source* (no ``dot`` binary needed) and compare what it says with an
independent reference: node and edge counts worked out by hand from the architecture, tensor
shapes and parameter counts measured on the hand-written models of ``tests/reference_models.py``
(forward hooks on a real input, ``sum(p.numel())``), published parameter totals. Rendering tests
(svg/png/pdf) need graphviz's ``dot`` and skip, saying so, only where it is absent.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import stat
import xml.etree.ElementTree as ET

import pytest
import reference_models as ref
import torch
from conftest import SPECS
from torch import nn

from nncli.diagram import DOT_SIGNATURE, build_diagram, draw
from nncli.errors import InputError
from nncli.spec import load_spec

HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(
    not HAVE_DOT,
    reason="graphviz's `dot` program is not on PATH (apt-get install graphviz / brew install graphviz); CI installs it",
)


# -- a small DOT reader: what the file says, not what the Python objects say -------------------------
_ID = r'(?:"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_]+))'
_EDGE = re.compile(rf"^\s*{_ID} -> {_ID}(?: \[(.*)\])?$")
_NODE = re.compile(rf"^\s*{_ID} \[(.*)\]$")


def _attr(attrs: str, name: str) -> str | None:
    m = re.search(rf'(?:^|\s){name}=(?:"((?:[^"\\]|\\.)*)"|([^\s\]<]+))', attrs)
    return None if m is None else (m.group(1) if m.group(1) is not None else m.group(2))


def parse_dot(source: str):
    """(nodes: id -> attribute text, edges: [(src, dst, attribute text)]), the legend left out."""
    nodes, edges = {}, []
    for line in source.splitlines():
        m = _EDGE.match(line)
        if m:
            src, dst = m.group(1) or m.group(2), m.group(3) or m.group(4)
            edges.append((src, dst, m.group(5) or ""))
            continue
        m = _NODE.match(line)
        if m:
            nid = m.group(1) or m.group(2)
            if nid in ("graph", "node", "edge"):
                continue
            if _attr(m.group(3), "class") == "legend":
                continue
            nodes[nid] = m.group(3)
    return nodes, edges


def dot_of(name: str, **kwargs) -> str:
    return build_diagram(load_spec(SPECS / f"{name}.yaml"), **kwargs).source


def fmt(shape) -> str:
    return "[" + ", ".join(["N", *map(str, shape)]) + "]"


def label_params(attrs: str) -> int:
    m = re.search(r"([\d,]+) params?\b", attrs)
    return int(m.group(1).replace(",", "")) if m else 0


# -- counts (worked out by hand from the architectures) -----------------------------------------------
def test_lecture_mlp_layer_view_counts():
    nodes, edges = parse_dot(dot_of("lecture-mlp"))
    # input, Linear, ReLU, Linear, ReLU, Linear, output: 7 nodes in a chain of 6 edges
    assert len(nodes) == 7
    assert len(edges) == 6
    assert [e[:2] for e in edges][0] == ("input", "n0") and edges[-1][1] == "output"


def test_lecture_mlp_neuron_view_counts():
    nodes, edges = parse_dot(dot_of("lecture-mlp", view="neurons"))
    assert len(nodes) == 2 + 3 + 4 + 2  # a node per unit
    assert len(edges) == 2 * 3 + 3 * 4 + 4 * 2  # an edge per weight: 26
    src = dot_of("lecture-mlp", view="neurons")
    # every layer is marked with its activation
    assert "hidden layer 1: Linear 2 → 3 · ReLU" in src
    assert "hidden layer 2: Linear 3 → 4 · ReLU" in src
    assert "output: Linear 4 → 2 · no activation" in src


def test_lenet5_counts_and_labels():
    src = dot_of("lenet5")
    nodes, edges = parse_dot(src)
    assert len(nodes) == 12 + 2 and len(edges) == 13  # 12 layers + input/output, one chain
    assert "C1: Conv2d" in src and "S2: AvgPool2d" in src and "F6: Linear" in src  # spec names
    assert "1 → 6, kernel_size=5" in src  # the defining args, in_channels inferred
    assert "61,706 parameters" in src  # the published figure in the title
    assert "output [N, 10]" in src


# ResNet-18 layer view: top level = stem (4) + 8 x [Residual, ReLU] + avgpool, Flatten, fc = 23
# items. Nodes: input, output, 15 plain top-level layers, per Residual a fork, an add and its 5
# body layers (8 x 7 = 56), plus the 1x1 conv + BN of the 3 projection shortcuts (6): 79.
# Edges: a chain of 24 through the 23 items; per identity block fork->body (1), inside the body
# (4), body->add (1), fork->add skip (1) = 7 (x5); per projection block 6 + fork->conv->bn->add
# (3) = 9 (x3): 24 + 35 + 27 = 86.
def test_resnet18_counts():
    nodes, edges = parse_dot(dot_of("resnet18"))
    assert len(nodes) == 79
    assert len(edges) == 86
    assert sum(1 for a in nodes.values() if _attr(a, "class") == "add add") == 8
    assert sum(1 for a in nodes.values() if _attr(a, "class") == "fork fork") == 8


def _residuals(model: nn.Module):
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ref.Residual)]


@pytest.mark.parametrize(
    "spec,model,kwargs",
    [
        ("resnet18", ref.resnet18, {}),
        ("resnet-tiny", ref.resnet_tiny, {}),
        ("resnet50", ref.resnet50, {"expand": True}),
        ("deep-residual-bn", ref.deep_residual_bn, {"expand": True}),
    ],
)
def test_every_residual_has_its_skip_edge_and_add_node(spec, model, kwargs):
    with torch.device("meta"):
        reference = model()
    nodes, edges = parse_dot(dot_of(spec, **kwargs))
    into: dict[str, list] = {}
    for src, dst, attrs in edges:
        into.setdefault(dst, []).append((src, attrs))
    blocks = _residuals(reference)
    assert blocks
    for name, block in blocks:
        key = name.replace(".", "_")
        fork, add = f"fork_{key}", f"add_{key}"
        assert fork in nodes and add in nodes, name
        assert len(into[add]) == 2, name  # body(x) + shortcut(x)
        if isinstance(block.shortcut, nn.Identity):
            skip = [a for s, a in into[add] if s == fork]
            assert len(skip) == 1 and _attr(skip[0], "class") == "skip", name
        else:  # the projection path: fork -> shortcut.0 -> ... -> add, drawn in the skip colour
            path = [f"n{key}_shortcut_{i}" for i in range(len(block.shortcut))]
            chain = [fork, *path, add]
            for a, b in zip(chain, chain[1:]):
                hits = [attrs for s, attrs in into[b] if s == a]
                assert hits and _attr(hits[0], "color") == "#cc0000", (name, a, b)


# -- shapes on edges, against a real forward pass of the hand-written model --------------------------
def _hooked_shapes(model: nn.Module, x: torch.Tensor):
    """module name -> (input shape, output shape), per example, from a real forward pass."""
    seen, handles = {}, []
    for name, m in model.named_modules():
        if name:

            def hook(mod, args, out, name=name):
                seen[name] = (tuple(args[0].shape[1:]), tuple(out.shape[1:]))

            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            y = model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return seen, tuple(y.shape[1:])


_MODELS = {
    "lecture-mlp": (ref.lecture_mlp, (2,)),
    "lenet5": (ref.lenet5, (1, 32, 32)),
    "resnet18": (ref.resnet18, (3, 224, 224)),
    "resnet50": (ref.resnet50, (3, 224, 224)),
    "deep-relu-he": (lambda: ref.deep_mlp(nn.ReLU), (64,)),
}


@functools.cache
def _reference_run(spec: str):
    # One real forward pass per model, shared by the tests (ResNet-50 takes seconds on 2 cores).
    model, in_shape = _MODELS[spec]
    torch.manual_seed(0)
    return _hooked_shapes(model(), torch.randn(1, *in_shape)), in_shape


@pytest.mark.parametrize(
    "spec,kwargs",
    [
        ("lecture-mlp", {}),
        ("lenet5", {}),
        ("resnet18", {}),
        ("resnet50", {}),
        ("resnet50", {"expand": True}),
        ("deep-relu-he", {"expand": True}),
    ],
)
def test_edge_shapes_match_a_real_forward_pass(spec, kwargs):
    (shapes, out_shape), in_shape = _reference_run(spec)
    nodes, edges = parse_dot(dot_of(spec, **kwargs))
    assert len(edges) == len([e for e in edges if _attr(e[2], "label")])  # every edge is labelled
    for src, dst, attrs in edges:
        if src == "input":
            want = in_shape
        elif src.startswith("fork_"):
            want = shapes[src[5:].replace("_", ".")][0]  # the Residual's input, to both branches
        elif src.startswith("add_"):
            want = shapes[src[4:].replace("_", ".")][1]
        else:  # a layer or a collapsed block: its output
            want = shapes[src[1:].replace("_", ".")][1]
        assert _attr(attrs, "label") == fmt(want), (src, dst)
    assert [_attr(a, "label") for s, d, a in edges if d == "output"] == [fmt(out_shape)]


@pytest.mark.parametrize("spec,model", [("lenet5", ref.lenet5), ("resnet18", ref.resnet18)])
def test_node_param_counts_match_the_reference(spec, model):
    with torch.device("meta"):
        reference = model()
    modules = dict(reference.named_modules())
    nodes, _ = parse_dot(dot_of(spec))
    checked = 0
    for nid, attrs in nodes.items():
        if _attr(attrs, "class").split()[0] in ("layer", "block"):
            want = sum(p.numel() for p in modules[nid[1:].replace("_", ".")].parameters())
            assert label_params(attrs) == want, nid
            checked += 1
    assert checked >= 12


# -- Repeat, --expand, --depth, rankdir, Custom, legend -------------------------------------------
def test_repeat_collapsed_by_default_and_expanded():
    src = dot_of("deep-relu-he")
    nodes, edges = parse_dot(src)
    assert len(nodes) == 4 and len(edges) == 3  # input, Repeat box, Linear, output
    assert "Repeat ×20" in src and "64 → 64" in src and "83,200 params" in src  # 20 x 4,160
    nodes, edges = parse_dot(dot_of("deep-relu-he", expand=True))
    assert len(nodes) == 2 + 20 * 2 + 1 and len(edges) == 42


def test_expanded_repeat_is_framed_unless_huge(write_spec):
    src = dot_of("deep-relu-he", expand=True)
    assert "subgraph cluster_repeat_0 " in src and "copy 20/20" in src
    # 150 copies x 2 layers: past REPEAT_CLUSTER_MAX the frame is dropped (dot slows down a lot
    # on large clusters) and every node still says which copy it belongs to.
    spec = write_spec("input: [8]\nlayers:\n  - Repeat: {times: 150, layers: [{Linear: {out_features: 8}}, ReLU]}\n")
    src = build_diagram(load_spec(spec), expand=True).source
    nodes, edges = parse_dot(src)
    assert len(nodes) == 302 and len(edges) == 301 and "cluster" not in src
    assert "copy 150/150" in src


def test_depth_limits_how_deep_blocks_open():
    nodes, edges = parse_dot(dot_of("resnet-tiny", depth=0))
    assert len(nodes) == 12 + 2 and len(edges) == 13  # every Residual is one box
    assert not [a for a in nodes.values() if _attr(a, "class").startswith(("fork", "add"))]
    # ResNet-50 expanded to depth 1: the Repeats open, the Residuals inside them stay boxes; only
    # the first Bottleneck of each stage (top level) opens. Blocks per stage: 3, 4, 6, 3.
    nodes, _ = parse_dot(dot_of("resnet50", expand=True, depth=1))
    classes = [_attr(a, "class") for a in nodes.values()]
    assert classes.count("add add") == 4
    assert classes.count("block block") == (3 - 1) + (4 - 1) + (6 - 1) + (3 - 1)


def test_rankdir_and_custom_target():
    assert "rankdir=LR" in dot_of("lenet5", rankdir="LR")
    assert "rankdir=TB" in dot_of("lenet5")
    src = dot_of("custom-swish")
    assert "Custom swish_layers.py:Swish" in src and "beta=1.0" in src
    nodes, _ = parse_dot(src)
    assert sum(_attr(a, "class") == "layer custom" for a in nodes.values()) == 2


def test_styles_are_distinct_and_in_the_legend():
    src = build_diagram(load_spec(SPECS / "resnet-tiny.yaml")).source
    legend = next(line for line in src.splitlines() if line.lstrip().startswith("legend "))
    for text in (
        "layer with weights",
        "activation",
        "normalisation",
        "pooling / reshape",
        "skip connection",
        "N = batch",
    ):
        assert text in legend
    nodes, _ = parse_dot(src)
    style = {}
    for attrs in nodes.values():
        cat = _attr(attrs, "class").split()[1]
        style.setdefault(cat, set()).add((_attr(attrs, "shape"), _attr(attrs, "fillcolor")))
    looks = [next(iter(s)) for c, s in style.items() if c in ("weight", "activation", "norm", "pool")]
    assert len(looks) == 4 and len(set(looks)) == 4  # four kinds, four looks


def test_neuron_view_weights_are_the_seeded_initial_weights():
    # Independent: torch's own construction of the same layers after the same seed.
    torch.manual_seed(3)
    reference = ref.lecture_mlp()
    d = build_diagram(load_spec(SPECS / "lecture-mlp.yaml"), view="neurons", weights=True, seed=3)
    edges = [e for e in d.to_json()["edges"]]
    linears = [m for m in reference if isinstance(m, nn.Linear)]
    want = [
        float(m.weight.detach()[j, i]) for m in linears for j in range(m.out_features) for i in range(m.in_features)
    ]
    assert [e["weight"] for e in edges] == pytest.approx(want, abs=1e-7)
    _, dot_edges = parse_dot(d.source)
    for (_, _, attrs), w in zip(dot_edges, want):
        assert _attr(attrs, "color") == ("#1f5fbf" if w >= 0 else "#d62728")
    widths = [float(_attr(a, "penwidth")) for _, _, a in dot_edges]
    assert max(widths) == pytest.approx(3.0) and min(widths) >= 0.3


def test_neuron_view_refuses_large_networks_with_counts(run_cli, tmp_path):
    with pytest.raises(InputError) as err:
        build_diagram(load_spec(SPECS / "deep-relu-he.yaml"), view="neurons")
    # 64 inputs + 20 hidden layers of 64 + 10 outputs; 20 x 64 x 64 + 64 x 10 weights
    assert "1,354 nodes" in str(err.value) and "82,560 edges" in str(err.value)
    res = run_cli(["diagram", SPECS / "deep-relu-he.yaml", "-o", tmp_path / "x.svg", "--view", "neurons"])
    assert res.code == 2 and "1,354 nodes" in res.err and "Traceback" not in res.text
    assert not (tmp_path / "x.svg").exists()


def test_neuron_view_refuses_non_mlps(run_cli, tmp_path):
    res = run_cli(["diagram", SPECS / "lenet5.yaml", "-o", tmp_path / "x.svg", "--view", "neurons"])
    assert res.code == 2 and "neuron view draws MLPs" in res.err
    res = run_cli(["diagram", SPECS / "resnet-tiny.yaml", "-o", tmp_path / "x.dot", "--view", "neurons"])
    assert res.code == 2


# -- CLI, JSON, files -----------------------------------------------------------------------------
def test_cli_json_is_the_graph(run_cli, tmp_path):
    out = tmp_path / "lenet.dot"
    res = run_cli(["diagram", SPECS / "lenet5.yaml", "-o", out, "--json"])
    assert res.code == 0
    doc = json.loads(res.out)
    assert doc["nodes"] == 14 and doc["edges"] == 13 and doc["format"] == "dot"
    graph = doc["graph"]
    assert graph["total_params"] == ref.PUBLISHED["lenet5"]
    c1 = next(n for n in graph["nodes"] if n["name"] == "C1")
    assert c1["type"] == "Conv2d" and c1["args"]["kernel_size"] == 5 and c1["params"] == 156
    assert c1["out_shape"] == [6, 28, 28]
    assert [e["shape"] for e in graph["edges"]][:2] == [[1, 32, 32], [6, 28, 28]]
    assert out.read_text().startswith(DOT_SIGNATURE)


def test_cli_human_summary(run_cli, tmp_path):
    res = run_cli(["diagram", SPECS / "lecture-mlp.yaml", "-o", tmp_path / "m.dot", "--view", "neurons"])
    assert res.code == 0
    assert "wrote" in res.out and "m.dot" in res.out and "11 nodes, 26 edges" in res.out


def test_format_from_extension_or_flag(run_cli, tmp_path):
    res = run_cli(["diagram", SPECS / "lecture-mlp.yaml", "-o", tmp_path / "net.out", "--format", "dot"])
    assert res.code == 0 and (tmp_path / "net.out").read_text().startswith(DOT_SIGNATURE)
    res = run_cli(["diagram", SPECS / "lecture-mlp.yaml", "-o", tmp_path / "net.jpg"])
    assert res.code == 2 and ".svg, .png, .pdf or .dot" in res.err
    res = run_cli(["diagram", SPECS / "lecture-mlp.yaml", "-o", tmp_path / "net.svg", "--format", "png"])
    assert res.code == 2 and not (tmp_path / "net.svg").exists()
    res = run_cli(["diagram", SPECS / "lecture-mlp.yaml", "-o", tmp_path / "net.svg", "--format", "gif"])
    assert res.code == 2


def test_never_overwrites_the_spec_and_replaces_its_own_output(run_cli, tmp_path):
    spec = tmp_path / "net.dot"  # a spec whose name looks like an output
    spec.write_text((SPECS / "lecture-mlp.yaml").read_text())
    before = spec.read_bytes()
    res = run_cli(["diagram", spec, "-o", spec])
    assert res.code == 2 and "refusing to overwrite the spec file" in res.err
    assert spec.read_bytes() == before
    out = tmp_path / "out.dot"
    out.write_text("old contents")
    res = run_cli(["diagram", spec, "-o", out])
    assert res.code == 0 and out.read_text().startswith(DOT_SIGNATURE)  # the output path: replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.dot", "out.dot"]  # no temp files left
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode & 0o044  # readable by others like any file the user writes, not mkstemp's 0600


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "net.dot"
    out.write_text("previous diagram")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        draw(load_spec(SPECS / "lecture-mlp.yaml"), out)
    assert out.read_text() == "previous diagram"
    assert [p.name for p in tmp_path.iterdir()] == ["net.dot"]


def test_bad_output_paths(run_cli, tmp_path):
    res = run_cli(["diagram", SPECS / "lecture-mlp.yaml", "-o", tmp_path / "missing" / "x.svg"])
    assert res.code == 2 and "does not exist" in res.err
    res = run_cli(["diagram", SPECS / "lecture-mlp.yaml", "-o", tmp_path])
    assert res.code == 2 and "is a folder" in res.err


def test_missing_dot_writes_the_source_and_says_how_to_install(run_cli, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no `dot` anywhere
    out = tmp_path / "net.svg"
    res = run_cli(["diagram", SPECS / "lenet5.yaml", "-o", out])
    assert res.code == 2 and "Traceback" not in res.text
    for how in ("apt-get install graphviz", "brew install graphviz", "conda install -c conda-forge graphviz"):
        assert how in res.err
    assert not out.exists()
    dot = tmp_path / "net.dot"
    assert dot.read_text().startswith(DOT_SIGNATURE) and str(dot) in res.err
    nodes, edges = parse_dot(dot.read_text())
    assert len(nodes) == 14 and len(edges) == 13
    # a second run replaces nncli's own .dot ...
    dot.write_text(DOT_SIGNATURE + ": stale\n")
    assert run_cli(["diagram", SPECS / "lenet5.yaml", "-o", out]).code == 2
    assert "C1: Conv2d" in dot.read_text()
    # ... but never a user's file of that name
    dot.write_text("digraph mine { a -> b }\n")
    res = run_cli(["diagram", SPECS / "lenet5.yaml", "-o", out])
    assert res.code == 2 and "was not written by nncli" in res.err
    assert dot.read_text() == "digraph mine { a -> b }\n"
    # DOT itself needs no binary
    assert run_cli(["diagram", SPECS / "lenet5.yaml", "-o", tmp_path / "ok.dot"]).code == 0


def test_help_lists_the_options(run_cli):
    res = run_cli(["diagram", "--help"])
    assert res.code == 0
    for opt in ("--view", "--expand", "--depth", "--rankdir", "--format", "--weights", "--json"):
        assert opt in res.out


# -- rendering (needs `dot`) ------------------------------------------------------------------------
@needs_dot
@pytest.mark.parametrize(
    "spec,kwargs,n_nodes",
    [
        ("lecture-mlp", {}, 7),
        ("lecture-mlp", {"view": "neurons", "weights": True}, 11),
        ("lenet5", {}, 14),
        ("resnet50", {}, None),
    ],
)
def test_svg_parses_as_xml(tmp_path, spec, kwargs, n_nodes):
    out = tmp_path / "d.svg"
    result = draw(load_spec(SPECS / f"{spec}.yaml"), out, **kwargs)
    root = ET.fromstring(out.read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    groups = [g.get("class", "") for g in root.iter("{http://www.w3.org/2000/svg}g")]
    drawn = [c for c in groups if c.split()[:1] in (["node"],) and "legend" not in c]
    assert len(drawn) == (n_nodes or result.node_count)
    assert len([c for c in groups if c.startswith("edge")]) == result.edge_count


@needs_dot
def test_png_and_pdf_signatures(run_cli, tmp_path):
    assert run_cli(["diagram", SPECS / "lenet5.yaml", "-o", tmp_path / "d.png"]).code == 0
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_cli(["diagram", SPECS / "resnet-tiny.yaml", "-o", tmp_path / "d.pdf"]).code == 0
    assert (tmp_path / "d.pdf").read_bytes()[:4] == b"%PDF"
    assert run_cli(["diagram", SPECS / "lenet5.yaml", "-o", tmp_path / "d.x", "-f", "png"]).code == 0
    assert (tmp_path / "d.x").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_odd_names_are_escaped(write_spec, tmp_path):
    spec = write_spec(
        'name: "<x> & \\\\l"\ninput: [4]\nlayers:\n'
        '  - Residual: {name: "<b> \\\\n", body: [{Linear: {out_features: 4, name: "a<b>&c"}}]}\n'
    )
    src = build_diagram(load_spec(spec)).source
    assert "a&lt;b&gt;&amp;c: Linear" in src  # HTML label text escaped
    assert 'label="<b> \\\\n: Residual' in src  # a backslash stays a backslash, not a DOT newline
    if HAVE_DOT:
        out = tmp_path / "odd.svg"
        draw(load_spec(spec), out)
        ET.fromstring(out.read_bytes())


def test_rendering_refuses_more_nodes_than_dot_can_lay_out(tmp_path, monkeypatch, run_cli):
    """Past the node bound, svg/png/pdf exit 2 before `dot` runs (it ran for minutes and crashed
    on a 40,002-node expanded Repeat); the DOT source is still written on request."""
    import nncli.diagram.output as output

    spec = tmp_path / "chain.yaml"
    spec.write_text(
        "name: chain\ninput: [4]\nlayers:\n  - Repeat:\n      times: 6\n"
        "      layers: [{Linear: {out_features: 4}}, ReLU]\n"
    )
    monkeypatch.setattr(output, "RENDER_NODE_LIMIT", 10)
    svg = tmp_path / "chain.svg"
    result = run_cli(["diagram", str(spec), "--expand", "-o", str(svg)])
    assert result.code == 2, result.text
    assert "14 nodes" in result.text and "above 10" in result.text
    assert not svg.exists()
    if shutil.which("dot"):  # without --expand the Repeat is one box: 3 nodes, under the bound
        assert run_cli(["diagram", str(spec), "-o", str(svg)]).code == 0
    dot = tmp_path / "chain.dot"
    result = run_cli(["diagram", str(spec), "--expand", "-o", str(dot)])
    assert result.code == 0, result.text
    assert dot.read_text().count("->") == 13


# -- a Repeat's vars, and one copy opened (--expand-one) -------------------------------------------
VARS_SPEC = """
input: [8]
layers:
  - Repeat: {times: 4, index: i, layers: [{Linear: {out_features: "8 + i"}}, ReLU]}
  - Repeat:
      each: [{c: 3}, {c: 5}, {c: 7}]
      layers: [{Repeat: {times: 2, index: j, layers: [{Linear: {out_features: "c + j"}}]}}]
"""


def _labels(nodes: dict) -> list[str]:
    """Each node's label as text, a line per <BR/> of its HTML label."""
    import html

    found = [re.search(r"label=<(.*)>", a) for a in nodes.values()]
    return [html.unescape(re.sub(r"<[^>]*>", "", m.group(1).replace("<BR/>", "\n"))) for m in found if m]


def test_a_collapsed_repeat_lists_its_vars(write_spec):
    src = build_diagram(load_spec(write_spec(VARS_SPEC))).source
    nodes, edges = parse_dot(src)
    assert len(nodes) == 4 and len(edges) == 3  # input, two Repeat boxes, output
    assert "i = 0..3" in src  # index: every value it takes
    for c in (3, 5, 7):  # each: one line per entry
        assert f"copy {(c - 1) // 2}: c = {c}" in src


def test_expand_one_opens_the_first_copy_with_its_vars(write_spec):
    src = build_diagram(load_spec(write_spec(VARS_SPEC)), expand_one=True).source
    nodes, edges = parse_dot(src)
    # input; Linear, ReLU, "x3 more"; the each-Repeat's first copy: its inner Repeat's first copy
    # (Linear) and "x1 more", then "x2 more"; output
    assert len(nodes) == 1 + 3 + 3 + 1 and len(edges) == len(nodes) - 1
    assert "Repeat ×4 · copy 1 of 4: i = 0" in src
    assert "Repeat ×3 · copy 1 of 3: c = 3" in src and "Repeat ×2 · copy 1 of 2: j = 0" in src
    more = {label.split("\n")[0]: label for label in _labels(nodes) if "more" in label.split("\n")[0]}
    assert set(more) == {"×3 more", "×2 more", "×1 more"}
    assert "i = 1..3" in more["×3 more"] and "j = 1" in more["×1 more"]
    assert "copy 2: c = 5" in more["×2 more"] and "copy 3: c = 7" in more["×2 more"]
    # copies 2..4 are Linear 8->9, 9->10, 10->11 (weights and biases)
    assert label_params(more["×3 more"]) == sum((7 + i) * (8 + i) + 8 + i for i in (1, 2, 3))
    shapes = {_attr(a, "label") for _, _, a in edges}
    assert {fmt([8]), fmt([11])} <= shapes  # into the rest: copy 1's output; out of it: copy 4's


def test_expand_one_on_a_long_repeat_and_refused_with_expand(run_cli, tmp_path):
    nodes, edges = parse_dot(dot_of("deep-relu-he", expand_one=True))
    assert len(nodes) == 6 and len(edges) == 5  # input, Linear, ReLU, "x19 more", Linear, output
    (more,) = [label for label in _labels(nodes) if label.startswith("×19 more")]
    assert label_params(more) == 19 * (64 * 64 + 64)
    with pytest.raises(InputError):
        build_diagram(load_spec(SPECS / "deep-relu-he.yaml"), expand=True, expand_one=True)
    spec = SPECS / "deep-relu-he.yaml"
    result = run_cli(["diagram", spec, "--expand", "--expand-one", "-o", tmp_path / "d.dot"])
    assert result.code == 2 and "--expand-one" in result.err
    result = run_cli(["diagram", spec, "--expand-one", "-o", tmp_path / "d.dot", "--json"])
    assert result.code == 0 and json.loads(result.out)["nodes"] == 6


def test_wavenet_one_copy_and_every_copy():
    # the graph view: a copy's elements read names (x, f, g, z), and `skip` is summed over copies
    wavenet = load_spec(SPECS / "graphs" / "wavenet.yaml")
    src = build_diagram(wavenet).source
    assert "Repeat ×10" in src and "i = 0..9" in src
    one = build_diagram(wavenet, expand_one=True).source
    nodes, edges = parse_dot(one)
    per_copy_nodes, per_copy_edges = 11, 12  # its 11 elements; x read 3 times, z twice, Merges 2 each
    # input, Conv1d, copy 1, "x9 more", ReLU, Conv1d, ReLU, Conv1d, output
    assert len(nodes) == 2 + per_copy_nodes + 1 + 4 + 1
    # into copy 1 (2), inside it, its output and its skip into the rest (2), the rest to the output (5)
    assert len(edges) == 2 + per_copy_edges + 2 + 5
    assert "copy 1 of 10: i = 0" in one and "i = 1..9" in one and "sums skip over all copies" in one
    nodes, edges = parse_dot(build_diagram(wavenet, expand=True).source)
    assert len(nodes) == 2 + 10 * per_copy_nodes + 1 + 4 + 1  # + the node summing the 10 skips
    assert len(edges) == 2 + 10 * per_copy_edges + 9 + 10 + 1 + 4
    sums = [n for n, a in nodes.items() if "+ skip" in a]
    assert len(sums) == 1 and sum(dst == sums[0] for _, dst, _ in edges) == 10


def test_a_template_use_is_titled_with_its_name_and_the_numbers_given(write_spec):
    spec = load_spec(
        write_spec(
            "input: [8]\n"
            "define:\n"
            "  Dense: {params: {c: null, p: 0.0}, layers: [{Linear: {out_features: c}}, ReLU, {Dropout: {p: p}}]}\n"
            "layers:\n"
            "  - Dense: {c: 16, p: 0.5}\n"
            '  - Parallel: {branches: [[{Dense: {c: 4}}], [{Dense: {c: "2 * 2"}}]]}\n'
        )
    )
    src = build_diagram(spec).source  # the Block opens: its frame carries the title
    assert "Dense (c = 16, p = 0.5) · 144 params" in src  # Linear 8 -> 16
    src = build_diagram(spec, depth=0).source  # the Parallel stays a box listing its branches
    assert "branch 0: Dense (c = 4) (3 layers)" in src
    assert "branch 1: Dense (3 layers)" in src  # an expression is not a number to show
