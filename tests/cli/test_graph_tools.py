"""Every tool on the graph and sequence blocks: diagram, params, gradcheck, probe and sweep axes over
``vars`` (the ``text`` data set and token training: tests/data/test_text_tokens.py).

References, never the code's own output: node and edge counts worked out by hand for small specs,
FLOP formulas written out per layer (2 per multiply-add; attention's Q K^T and weighted sum
2 * 2 * L * L * D per example), parameter counts from the layer formulas, saved-tensor bytes
worked out by hand, and torch.autograd.gradcheck on the same modules.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from spec_texts import tiny_gpt
from torch import nn
from torch.func import functional_call

from nncli import gradcheck as gc
from nncli.build import build_model
from nncli.diagram import build_diagram
from nncli.params import count, measure_forward
from nncli.probe import probe
from nncli.spec import load_spec, parse_spec


def write(tmp_path, text: str, name: str = "spec.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# A dense block (identity + a conv branch, concat), a squeeze-excitation gate (mul, broadcast)
# and a framed head.
PARALLEL = """
name: graph
input: [8, 16, 16]
layers:
  - Parallel:
      name: dense
      branches:
        - []
        - [BatchNorm2d, ReLU, {Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}]
  - Parallel:
      branches:
        - [{Conv2d: {out_channels: 12, kernel_size: 1}}]
        - [{AdaptiveAvgPool2d: {output_size: 1}}]
      merge: mul
  - Block:
      name: head
      layers: [{AdaptiveAvgPool2d: {output_size: 1}}, Flatten, {Linear: {out_features: 10}}]
"""


# -- diagram -----------------------------------------------------------------------------------
def test_parallel_drawn_as_fork_branches_and_merge():
    d = build_diagram(parse_spec(PARALLEL))
    # By hand: input; dense: fork, BN, ReLU, Conv, merge (5); gate: fork, Conv, Pool, merge (4);
    # head: Pool, Flatten, Linear (3); output. Edges: 1 in + 4 + 1 identity (dense), 1 into the
    # gate's fork + 2 branch edges + 2 into its merge, 1 into the head + 2 inside + 1 out.
    assert (len(d.nodes), len(d.edges)) == (14, 15)
    merges = [n for n in d.nodes if n.kind == "merge"]
    assert [n.text for n in merges] == ["concat (dim 1)", "×"]
    assert [n.out_shape for n in merges] == [(12, 16, 16), (12, 16, 16)]
    forks = {n.id for n in d.nodes if n.kind == "fork"}
    # the identity branch is one skip edge from the fork straight to the merge
    skip = [e for e in d.edges if e.kind == "skip"]
    assert len(skip) == 1 and skip[0].src in forks and skip[0].dst == merges[0].id
    # the gate's two branches meet at the merge with their own shapes, side by side
    into_gate = sorted(e.shape for e in d.edges if e.dst == merges[1].id)
    assert into_gate == [(12, 1, 1), (12, 16, 16)]
    assert {g.kind for g in d.groups} == {"parallel", "block"}
    head = next(g for g in d.groups if g.kind == "block")
    assert head.label.startswith("head: Block") and "130 params" in head.label  # 12*10 + 10
    src = d.source
    assert 'label="×"' in src and "concat (dim 1)" in src


@pytest.mark.parametrize("merge, symbol", [("add", "+"), ("mul", "×"), ("mean", "mean"), ("max", "max")])
def test_merge_node_names_its_operation(merge, symbol):
    spec = parse_spec(f"""
input: [6]
layers:
  - Parallel: {{merge: {merge}, branches: [[{{Linear: {{out_features: 6}}}}], [], [Tanh]]}}
""")
    d = build_diagram(spec)
    (node,) = [n for n in d.nodes if n.kind == "merge"]
    assert node.text == symbol
    # input, fork, Linear, Tanh, merge, output; edges: in, 2 branch starts, 3 into merge, out
    assert (len(d.nodes), len(d.edges)) == (6, 7)


def test_collapsed_parallel_is_one_box_listing_its_branches():
    d = build_diagram(parse_spec(PARALLEL), depth=0)
    assert (len(d.nodes), len(d.edges)) == (5, 4)  # input, three boxes, output
    box = d.nodes[1]
    assert box.kind == "block" and box.type == "Parallel"
    assert box.lines[0][1] == "dense: Parallel (2 branches, concat)"
    texts = [t for _, t in box.lines]
    assert "branch 0: identity" in texts
    assert texts[2].startswith("branch 1: BatchNorm2d") and "merge: concat (dim 1)" in texts


def test_nested_parallel_opens_level_by_level():
    spec = parse_spec("""
input: [4]
layers:
  - Parallel:
      branches:
        - [{Parallel: {merge: add, branches: [[{Linear: {out_features: 4}}], []]}}]
        - []
""")
    assert len(build_diagram(spec, depth=1).nodes) == 5  # in, fork, inner box, merge, out
    assert len(build_diagram(spec).nodes) == 7  # in, fork, fork, Linear, merge, merge, out


def test_neuron_view_refuses_a_parallel(tmp_path, run_cli):
    path = write(
        tmp_path,
        """
        input: [3]
        layers:
          - Linear: {out_features: 4}
          - Parallel: {merge: add, branches: [[], [Tanh]]}
          - Linear: {out_features: 2}
        """,
    )
    res = run_cli(["diagram", str(path), "-o", str(tmp_path / "n.dot"), "--view", "neurons"])
    assert res.code == 2, res.text
    assert "spec.yaml:5" in res.text and "layers[1]" in res.text and "Parallel" in res.text
    assert "Traceback" not in res.text and not (tmp_path / "n.dot").exists()


def test_diagram_cli_renders_a_parallel(tmp_path, run_cli):
    path = write(tmp_path, PARALLEL)
    res = run_cli(["diagram", str(path), "-o", str(tmp_path / "g.dot"), "--json"])
    assert res.code == 0, res.text
    doc = json.loads(res.out)
    assert (doc["nodes"], doc["edges"]) == (14, 15)
    assert (tmp_path / "g.dot").read_text().startswith("// nncli diagram")


# -- params ------------------------------------------------------------------------------------
def gpt_flops_per_example(context, dim, high, depth):
    """By hand, 2 FLOPs per multiply-add: per block the QKV and output projections, the two
    attention products (Q K^T: L x D x L; weights x V: L x L x D) and the 4x MLP; then the head."""
    L, D = context, dim
    attention = 2 * L * D * 3 * D + 2 * L * D * D + 2 * 2 * L * L * D
    mlp = 2 * L * D * 4 * D + 2 * L * 4 * D * D
    return depth * (attention + mlp) + 2 * L * D * high


def gpt_params(context, dim, high, depth):
    per_block = (
        2 * 2 * dim + (3 * dim * dim + 3 * dim + dim * dim + dim) + (dim * 4 * dim + 4 * dim + 4 * dim * dim + dim)
    )
    return high * dim + context * dim + depth * per_block + 2 * dim + dim * high + high


@pytest.mark.parametrize("causal", ["true", "false"])
def test_params_counts_attention_exactly(causal):
    spec = parse_spec(tiny_gpt(context=16, high=11, dim=16, heads=2, depth=2, causal=causal))
    report = count(spec, batch_size=3)
    assert report.total == gpt_params(16, 16, 11, 2)
    assert report.flops_per_example == gpt_flops_per_example(16, 16, 11, 2)
    assert report.flops == 3 * gpt_flops_per_example(16, 16, 11, 2)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_self_attention_flops_on_real_and_meta_tensors(device):
    # On real CPU tensors attention runs a fused kernel FlopCounterMode does not know by itself.
    from nncli.modules import SelfAttention

    n, L, D, H = 2, 7, 12, 3
    model = nn.Sequential(SelfAttention(D, H, causal=True).to(device))
    flops, _ = measure_forward(model, (L, D), n, 4)
    assert flops[""] == n * (2 * L * D * 3 * D + 2 * L * D * D + 2 * 2 * L * L * D)
    assert flops["0"] == flops[""]


@pytest.mark.parametrize("kind, gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrent_flops_by_hand(kind, gates):
    # per step and direction: the input and hidden matrix products, 2 * gates*H * (I + H); the
    # second layer of a bidirectional stack reads 2H features
    spec = parse_spec(f"""
input: [7, 5]
layers: [{{{kind}: {{hidden_size: 6, num_layers: 2, bidirectional: true, returns: last}}}}]
""")
    L, I, H = 7, 5, 6
    by_hand = 2 * L * (2 * gates * H * (I + H) + 2 * gates * H * (2 * H + H))
    assert count(spec).flops == by_hand


def test_memory_counts_what_autograd_saves_once():
    # Both branches' Linear layers save the same input x (one storage: counted once); the concat
    # saves nothing; the ReLU after it saves its output. Batch 1, float32: 4 * 16 + 4 * 16 bytes.
    spec = parse_spec("""
input: [16]
layers:
  - Parallel: {branches: [[{Linear: {out_features: 8}}], [{Linear: {out_features: 8}}]]}
  - ReLU
""")
    report = count(spec, batch_size=1)
    assert report.memory.activations == 4 * 16 + 4 * 16
    assert report.total == 2 * (16 * 8 + 8)
    assert report.flops == 2 * (2 * 16 * 8)


def test_params_on_token_inputs_counts_the_ids_at_their_own_size():
    # An Embedding saves its int64 ids (8 bytes each, whatever --dtype): 8 * L per example.
    spec = parse_spec("""
input: {shape: [5], dtype: int64, high: 30}
layers: [{Embedding: {embedding_dim: 4}}]
""")
    for dtype in ("float32", "float64"):
        report = count(spec, batch_size=2, dtype=dtype)
        assert report.total == 30 * 4 and report.flops == 0
        assert report.memory.activations == 2 * 5 * 8


def test_params_cli_on_a_parallel(tmp_path, run_cli):
    res = run_cli(["params", str(write(tmp_path, PARALLEL)), "--depth", "1", "--json"])
    assert res.code == 0, res.text
    doc = json.loads(res.out)
    # BN 16 + conv 8*4*9+4 = 308; gate conv 12*12+12 = 156; head 130
    assert doc["total"] == 308 + 156 + 130
    rows = {r["id"]: r for r in doc["layers"]}
    assert rows["0"]["params"] == 308 and rows["0.branches.1.2"]["params"] == 292
    # conv 3x3 8->4 on 16x16 and the 1x1 gate conv 12->12, multiply-adds x 2
    assert rows["0"]["flops"] == 2 * 8 * 4 * 9 * 256
    assert rows["1"]["flops"] == 2 * 12 * 12 * 256


# -- gradcheck ---------------------------------------------------------------------------------
def leaves(report):
    return {leaf.id: leaf for leaf in report.leaves()}


def test_isolation_reaches_every_branch(tmp_path):
    path = write(
        tmp_path,
        """
        input: [5]
        layers:
          - Linear: {out_features: 6}
          - Parallel:
              branches:
                - [{Linear: {out_features: 3}}, Tanh]
                - []
                - [{Linear: {out_features: 4}}, GELU, {Block: {layers: [{Linear: {out_features: 2}}]}}]
          - Linear: {out_features: 2}
        """,
    )
    report = gc.gradcheck(load_spec(path))
    assert report.ok, report.diagnosis
    found = leaves(report)
    for fqn in ("1.branches.0.0", "1.branches.0.1", "1.branches.2.0", "1.branches.2.1", "1.branches.2.2.0"):
        assert fqn in found, sorted(found)
    # each branch layer checked on its own: its input and its parameters
    assert {t.name for t in found["1.branches.2.2.0"].tensors} == {"input", "weight", "bias"}


def test_bug_inside_a_branch_is_pinned_to_its_layer(tmp_path):
    (tmp_path / "layers.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn

        class _Half(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return 2 * x

            @staticmethod
            def backward(ctx, g):
                return g  # should be 2 * g

        class Double(nn.Module):
            def forward(self, x):
                return _Half.apply(x)
        """)
    )
    path = write(
        tmp_path,
        """
        input: [4]
        layers:
          - Parallel:
              merge: add
              branches:
                - [{Linear: {out_features: 4}}]
                - [{Linear: {out_features: 4}}, {Custom: {target: "layers.py:Double"}}]
        """,
    )
    report = gc.gradcheck(load_spec(path))
    assert not report.ok and report.suspect_id == "0.branches.1.1"


SEQUENCE_LAYERS = [
    ("SelfAttention: {num_heads: 2, causal: true}", (5, 6)),
    ("SelfAttention: {num_heads: 3}", (5, 6)),
    ("LSTM: {hidden_size: 4, returns: last}", (5, 3)),
    ("LSTM: {hidden_size: 3, num_layers: 2, bidirectional: true}", (5, 3)),
    ("GRU: {hidden_size: 4, returns: last, bidirectional: true}", (5, 3)),
    ("RNN: {hidden_size: 4}", (5, 3)),
    ("TransformerEncoderLayer: {nhead: 2, dim_feedforward: 8, dropout: 0.0, causal: true}", (4, 6)),
]


@pytest.mark.parametrize(
    "layer, shape", SEQUENCE_LAYERS, ids=[s[0].split(":")[0] + str(i) for i, s in enumerate(SEQUENCE_LAYERS)]
)
def test_sequence_layers_pass_and_agree_with_torch_gradcheck(tmp_path, layer, shape):
    path = write(
        tmp_path,
        f"""
        input: {list(shape)}
        layers:
          - {layer}
        """,
    )
    spec = load_spec(path)
    report = gc.gradcheck(spec, batch=2)
    assert report.ok, report.diagnosis
    # The independent reference: torch.autograd.gradcheck on the same float64 module, input and
    # every parameter at once.
    module = build_model(spec, seed=0, dtype=torch.float64).model[0]
    names = [n for n, _ in module.named_parameters()]
    x = torch.randn(2, *shape, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for _, p in module.named_parameters()]

    def f(x, *ps):
        return functional_call(module, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, fast_mode=True)


def test_integer_inputs_perturb_parameters_only(tmp_path):
    spec = parse_spec(tiny_gpt(context=6, high=7, dim=8, heads=2, depth=1))
    report = gc.gradcheck(spec, batch=2)
    assert report.ok, report.diagnosis
    found = leaves(report)
    embedding = found["0"]
    assert [t.name for t in embedding.tensors] == ["weight"]  # the ids are not perturbed
    assert all("input" != t.name for leaf in found.values() for t in leaf.tensors if leaf.type in ("Embedding",))
    # torch.autograd.gradcheck on the whole float64 model w.r.t. its parameters, ids fixed
    model = build_model(spec, seed=0, dtype=torch.float64).model
    x = torch.randint(7, (2, 6))
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in model.named_parameters()]
    assert torch.autograd.gradcheck(
        lambda *ps: functional_call(model, dict(zip(names, ps)), (x,)),
        tuple(params),
        eps=1e-6,
        atol=1e-6,
        fast_mode=True,
    )


def test_gradcheck_loss_objective_on_token_outputs(tmp_path, run_cli):
    path = write(tmp_path, tiny_gpt(context=5, high=6, dim=8, heads=2))
    res = run_cli(["gradcheck", str(path), "--objective", "loss", "--batch", "2", "--json"])
    assert res.code == 0, res.text
    assert json.loads(res.out)["ok"] is True


# -- probe -------------------------------------------------------------------------------------
def test_probe_parallel_is_one_row_with_its_branches_under_it(tmp_path):
    report = probe(parse_spec(PARALLEL), seeds=[0], batch_size=8)
    rows = report.init.layers
    # main path: the two Parallels, then the Block's three layers (a Block is only a frame)
    assert [r.type for r in rows] == ["Parallel", "Parallel", "AdaptiveAvgPool2d", "Flatten", "Linear"]
    assert [r.index for r in rows] == [0, 1, 2, 3, 4]
    assert [i.type for i in rows[0].inner] == ["BatchNorm2d", "ReLU", "Conv2d"]
    assert [i.type for i in rows[1].inner] == ["Conv2d", "AdaptiveAvgPool2d"]
    assert all(i.index is None for i in rows[0].inner)


def test_probe_token_model_gives_a_verdict(tmp_path, run_cli):
    path = write(tmp_path, tiny_gpt(context=8, high=9, dim=8, heads=2, depth=2))
    res = run_cli(["probe", str(path), "--seeds", "0", "--batch-size", "4", "--steps", "2", "--json"])
    assert res.code in (0, 1), res.text
    doc = json.loads(res.out)
    assert doc["verdict"] in ("healthy", "vanishing", "exploding")
    assert "token ids in [0, 9)" in doc["inputs"]


# -- sweep -------------------------------------------------------------------------------------
def test_sweep_axis_writes_a_var(tmp_path):
    from nncli.sweep import expand, load_sweep, trial_spec_data

    write(
        tmp_path,
        """
        input: [6]
        vars: {width: 4}
        layers:
          - Linear: {out_features: width}
          - ReLU
          - {Linear: {out_features: "width // 2"}}
          - Linear: {out_features: 2}
        data: {name: moons}
        """,
    )
    sweep = write(
        tmp_path,
        """
        base: spec.yaml
        grid:
          vars.width: [4, 16]
        """,
        "sweep.yaml",
    )
    configs = expand(load_sweep(sweep))
    totals = [count(parse_spec(json.dumps(trial_spec_data(c, 0)))).total for c in configs]
    # 6 -> w -> w/2 -> 2, by hand
    assert totals == [6 * w + w + w * (w // 2) + w // 2 + (w // 2) * 2 + 2 for w in (4, 16)]


def test_sweep_axis_on_an_unknown_var_is_located(tmp_path):
    from nncli.errors import SpecError
    from nncli.sweep import load_sweep

    write(
        tmp_path,
        """
        input: [6]
        vars: {width: 4}
        layers: [{Linear: {out_features: width}}]
        """,
    )
    sweep = write(
        tmp_path,
        """
        base: spec.yaml
        grid:
          vars.widht: [4, 16]
        """,
        "sweep.yaml",
    )
    with pytest.raises(SpecError) as err:
        load_sweep(sweep)
    assert "width" in str(err.value.hint) and err.value.line == 4  # the axis line (the file starts blank)
    assert str(err.value.file).endswith("sweep.yaml")


def test_readme_parallel_picture_spec():
    from conftest import ROOT

    d = build_diagram(load_spec(ROOT / "docs" / "img" / "parallel-block.yaml"))
    # input; dense layer: fork, BN, ReLU, Conv, concat; squeeze-excite: fork, pool, conv, ReLU,
    # conv, Sigmoid, ×; head: pool, Flatten, Linear; output. One edge into each node but the
    # input, plus one identity edge per Parallel.
    assert (len(d.nodes), len(d.edges)) == (17, 18)
    assert d.total_params == (32 + 16 * 8 * 9) + (24 * 6 + 6 + 6 * 24 + 24) + (24 * 10 + 10)
    assert (ROOT / "docs" / "img" / "parallel-block.svg").is_file()
