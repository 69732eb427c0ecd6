"""``nncli params``: counts against published figures and hand-written models, FLOPs and memory
against hand formulas, shared weights, budget gates, and a 100-billion-parameter spec.
"""

from __future__ import annotations

import json
import math
import subprocess
import textwrap

import pytest
import torch
from conftest import PYTHON, ROOT, SPECS, subprocess_env
from reference_models import INPUT_SHAPES, OUTPUT_SHAPES, PUBLISHED, REFERENCE_MODELS, SPEC_FILES
from torch import nn


def params_json(run_cli, spec, *flags) -> dict:
    result = run_cli(["params", spec, "--json", *flags])
    assert result.code == 0, result.text
    return json.loads(result.out)


def hand_flops(model: nn.Module, input_shape: tuple, batch: int = 1) -> int:
    """Forward FLOPs of the Conv2d and Linear layers, by the textbook formulas (2 per MAC).

    Conv2d: 2 * C_in * C_out * kh * kw * H_out * W_out / groups; Linear: 2 * in * out per row.
    Biases, pooling, activations and norms are not counted (torch's FlopCounterMode does not
    count them either).
    """
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            h, w = output.shape[-2:]
            total += (2 * module.in_channels * module.out_channels * kh * kw * h * w // module.groups) * output.shape[0]
        elif isinstance(module, nn.Linear):
            rows = math.prod(output.shape[:-1])
            total += 2 * module.in_features * module.out_features * rows

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        model(torch.empty(batch, *input_shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total


def reference(name: str) -> nn.Module:
    with torch.device("meta"):
        return REFERENCE_MODELS[name]()


# -- counts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_counts_and_per_layer_reference(name, run_cli):
    doc = params_json(run_cli, SPECS / SPEC_FILES[name], "--depth", "0")
    assert doc["total"] == PUBLISHED[name]
    assert doc["trainable"] == PUBLISHED[name] and doc["non_trainable"] == 0
    assert tuple(doc["output_shape"]) == OUTPUT_SHAPES[name]
    ref = reference(name)
    assert doc["buffers"] == sum(b.numel() for b in ref.buffers())
    rows = doc["layers"]
    assert [r["index"] for r in rows] == list(range(len(ref)))
    for row, child in zip(rows, ref):
        assert row["params"] == sum(p.numel() for p in child.parameters()), row


@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_flops_match_hand_formula(name, run_cli):
    ref = reference(name)
    shape = INPUT_SHAPES[name]
    doc = params_json(run_cli, SPECS / SPEC_FILES[name])
    assert tuple(doc["input_shape"]) == shape
    expected = hand_flops(ref, shape)
    assert doc["flops"] == expected
    assert doc["flops_per_example"] == expected
    # per top-level layer too
    for row, child in zip((r for r in doc["layers"] if r["depth"] == 0), ref):
        assert row["flops"] == hand_flops(nn.Sequential(child), tuple(_in_shape(ref, row["index"], shape)))
    # FLOPs for a batch scale with it; per example stays
    doc4 = params_json(run_cli, SPECS / SPEC_FILES[name], "--batch-size", "4")
    assert doc4["flops"] == 4 * expected and doc4["flops_per_example"] == expected


def _in_shape(model: nn.Sequential, index: int, shape: tuple) -> tuple:
    x = torch.empty(1, *shape, device="meta")
    for child in list(model)[:index]:
        x = child(x)
    return tuple(x.shape[1:])


def test_lenet5_flops_by_hand_arithmetic(run_cli):
    # C1 2*1*6*25*28*28 + C3 2*6*16*25*10*10 + 2*(400*120 + 120*84 + 84*10) = 833,040
    doc = params_json(run_cli, SPECS / "lenet5.yaml")
    assert doc["flops"] == 235_200 + 480_000 + 2 * (48_000 + 10_080 + 840) == 833_040


def test_nested_rows_sum_to_their_block(run_cli):
    doc = params_json(run_cli, SPECS / "resnet50.yaml", "--depth", "1")
    top = [r for r in doc["layers"] if r["depth"] == 0]
    assert sum(r["params"] for r in top) == PUBLISHED["resnet50"]
    for block in top:
        kids = [r for r in doc["layers"] if r["depth"] == 1 and r["index"] == block["index"]]
        if kids:
            assert sum(k["params"] for k in kids) == block["params"]
            assert sum(k["flops"] for k in kids) == block["flops"]
    assert sum(r["flops"] for r in top) == doc["flops"]


# -- memory ---------------------------------------------------------------------------------------
def test_activation_memory_of_a_tiny_mlp(run_cli, write_spec):
    spec = write_spec("input: [4]\nlayers:\n  - Linear: {out_features: 8}\n  - ReLU\n  - Linear: {out_features: 3}\n")
    # Saved for backward, batch 5: the input x of the first Linear (5x4, for dW1) and ReLU's
    # output (5x8; ReLU's backward needs it, and the second Linear needs the same tensor for
    # dW2). The network output is not saved. 60 floats.
    params = 4 * 8 + 8 + 8 * 3 + 3  # 67
    for dtype, size in (("float32", 4), ("float64", 8)):
        doc = params_json(run_cli, spec, "-b", "5", "--dtype", dtype, "--optimizer", "adam")
        m = doc["memory"]
        assert m["activations"] == (5 * 4 + 5 * 8) * size
        assert m["weights"] == m["gradients"] == params * size
        assert m["optimizer_state"] == 2 * params * size  # Adam: two moments
        assert m["total"] == m["weights"] + m["buffers"] + m["activations"] + m["gradients"] + m["optimizer_state"]
    sgd = params_json(run_cli, spec, "--optimizer", "sgd")["memory"]
    assert sgd["optimizer_state"] == params * 4  # one momentum buffer


def test_buffers_memory_counts_batchnorm_stats(run_cli, write_spec):
    spec = write_spec("input: [3, 4, 4]\nlayers:\n  - BatchNorm2d\n")
    doc = params_json(run_cli, spec)
    # running_mean + running_var (3 + 3 floats) and num_batches_tracked (one int64)
    assert doc["buffers"] == 7
    assert doc["memory"]["buffers"] == 6 * 4 + 8
    assert doc["total"] == 6


def test_batch_one_with_batchnorm1d(run_cli):
    # BatchNorm1d refuses a training batch of one in torch; counting must still work.
    doc = params_json(run_cli, SPECS / "deep-residual-bn.yaml")
    two = params_json(run_cli, SPECS / "deep-residual-bn.yaml", "-b", "2")
    # 40 Linear(64, 64) + Linear(64, 10) per example
    assert doc["flops"] == 2 * (40 * 64 * 64 + 64 * 10) and two["flops"] == 2 * doc["flops"]
    # Per-example tensors double with the batch; BatchNorm's per-channel mean and 1/std do not.
    a1, a2 = doc["memory"]["activations"], two["memory"]["activations"]
    assert 0 < a1 < a2 < 2 * a1


# -- shared parameters ------------------------------------------------------------------------------
SHARED_LAYERS = '''
from torch import nn

_SHARED = {}


class Tied(nn.Module):
    """Every Tied layer with the same key uses one nn.Linear: weights shared across layers."""

    def __init__(self, in_features, key="w"):
        super().__init__()
        if key not in _SHARED:
            _SHARED[key] = nn.Linear(in_features, in_features)
        self.linear = _SHARED[key]

    def forward(self, x):
        return self.linear(x)


class AutoEncoder(nn.Module):
    """Decoder weight tied to the encoder's transpose (one tensor, two uses)."""

    def __init__(self, in_features):
        super().__init__()
        self.enc = nn.Linear(in_features, 3, bias=False)
        self.dec = nn.Linear(3, in_features, bias=False)

    def forward(self, x):
        return (x @ self.enc.weight.T) @ self.enc.weight
'''


def test_shared_parameters_count_once(run_cli, write_spec):
    write_spec(SHARED_LAYERS, name="shared_layers.py")
    spec = write_spec(
        textwrap.dedent("""
        input: [16]
        layers:
          - Custom: {target: "shared_layers.py:Tied"}
          - ReLU
          - Custom: {target: "shared_layers.py:Tied"}
          - Linear: {out_features: 4}
    """)
    )
    doc = params_json(run_cli, spec)
    shared, head = 16 * 16 + 16, 16 * 4 + 4
    assert doc["total"] == shared + head  # 340, not 2 * 272 + 68
    assert doc["memory"]["weights"] == (shared + head) * 4
    assert [r["params"] for r in doc["layers"]] == [shared, 0, shared, head]  # each layer owns it


def test_tied_weights_inside_one_layer(run_cli, write_spec):
    write_spec(SHARED_LAYERS, name="shared_layers.py")
    spec = write_spec('input: [10]\nlayers:\n  - Custom: {target: "shared_layers.py:AutoEncoder"}\n')
    doc = params_json(run_cli, spec)
    assert doc["total"] == 10 * 3 + 3 * 10  # enc and dec are separate here
    # FLOPs of functional matmuls inside a Custom layer are counted too: 2*10*3 + 2*3*10
    assert doc["flops"] == 120


# -- budget gates -----------------------------------------------------------------------------------
def test_gates_exit_1_with_by_how_much(run_cli):
    lenet = SPECS / "lenet5.yaml"  # 61,706 params, 833,040 FLOPs, 1,023,728 B training memory
    r = run_cli(["params", lenet, "--max-params", "60000"])
    assert r.code == 1
    assert "exceeds the limit 60,000 by 1,706" in r.text and "2.8% over" in r.text
    r = run_cli(["params", lenet, "--max-flops", "800k"])
    assert r.code == 1 and "by 33.04 k" in r.text
    r = run_cli(["params", lenet, "--max-memory", "1MB"])  # 1e6 < 1,023,728
    assert r.code == 1 and "max-memory" in r.text and "exceeds" in r.text


def test_gates_pass_within(run_cli):
    lenet = SPECS / "lenet5.yaml"
    r = run_cli(["params", lenet, "--max-params", "61706", "--max-flops", "1M", "--max-memory", "1MiB"])
    assert r.code == 0, r.text  # equal to the limit is within; 1 MiB = 1,048,576 B
    doc = params_json(run_cli, lenet, "--max-params", "61_706", "--max-flops", "8.4e5")
    assert [(g["name"], g["ok"]) for g in doc["gates"]] == [("max-params", True), ("max-flops", True)]
    failed = run_cli(["params", lenet, "--json", "--max-params", "1000"])
    assert failed.code == 1
    gates = json.loads(failed.out)["gates"]  # the report is still one JSON document on stdout
    assert gates[0]["ok"] is False and gates[0]["value"] == 61706 and gates[0]["limit"] == 1000


def test_zero_limits_fail_without_dividing_by_zero(run_cli):
    for flag, text in (("--max-params", "35 exceeds the limit 0 by 35"), ("--max-memory", "exceeds the limit 0 B")):
        r = run_cli(["params", SPECS / "lecture-mlp.yaml", flag, "0"])  # the lecture MLP: 35 params
        assert r.code == 1 and text in r.err, r.text
        assert "internal error" not in r.err


@pytest.mark.parametrize(
    "flags",
    [
        ["--max-params", "abc"],
        ["--max-flops", "12 parsecs"],
        ["--max-memory", "2GiBs"],
        ["--max-memory", "-5MB"],
        ["--batch-size", "0"],
        ["--dtype", "float8"],
        ["--optimizer", "lion"],
        ["--depth", "-1"],
        ["--batch-size", "100000000000000000000"],
        ["--batch-size", "4611686018427387000"],  # fits int64, but batch x 2 features overflows
    ],
)
def test_bad_flag_values_exit_2(run_cli, flags):
    r = run_cli(["params", SPECS / "lecture-mlp.yaml", *flags])
    assert r.code == 2, r.text
    assert "Traceback" not in r.text
    assert flags[0] in r.text or flags[0].lstrip("-") in r.text


# -- scale ----------------------------------------------------------------------------------------
def test_hundred_billion_parameters_in_seconds(write_spec):
    spec = write_spec(
        textwrap.dedent("""
        input: [100000]
        layers:
          - Repeat:
              times: 10
              layers: [{Linear: {out_features: 100000}}]
    """)
    )
    code = textwrap.dedent(f"""
        import io, json, resource, sys, time, contextlib
        t = time.perf_counter()
        from nncli.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(["params", {str(spec)!r}, "--json"])
        dt = time.perf_counter() - t
        doc = json.loads(out.getvalue())
        print(json.dumps({{"rc": rc, "total": doc["total"], "seconds": dt,
                          "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
    """)
    proc = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, cwd=ROOT, env=subprocess_env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0
    assert res["total"] == 10 * (100_000 * 100_000 + 100_000)  # 100,001,000,000
    assert res["seconds"] < 20, res  # torch's import included
    assert res["maxrss_kb"] * 1024 < 1.5e9, res  # 400 GB of float32 weights were never allocated


# -- formulas keep the promise ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "zoo/gpt-char",
        "zoo/lstm-classifier",
        "zoo/shufflenet-v2-x1-0",
        "zoo/efficientnet-b0",
        "custom-swish",
        "digits-5-9-transfer",
    ],
)
def test_json_report_is_the_dispatch_paths(name, monkeypatch):
    # `params --json` is a promise: counting by formula (and by dispatch one layer at a time for a
    # Custom one) must give the very report the whole model's dispatch gives
    import nncli.params
    from nncli.params import count
    from nncli.spec import load_spec

    spec = load_spec(SPECS / f"{name}.yaml")
    settings = [{}, {"batch_size": 5, "dtype": "bfloat16", "optimizer": "sgd", "depth": 3}]
    by_formula = [count(spec, **kw).to_json() for kw in settings]
    fast = "formula+layer_dispatch" if name == "custom-swish" else "formula"
    assert [doc.pop("flops_method") for doc in by_formula] == [fast, fast]
    monkeypatch.setattr(nncli.params, "formula_forward", lambda *args, **kwargs: None)
    by_dispatch = [count(spec, **kw).to_json() for kw in settings]
    assert [doc.pop("flops_method") for doc in by_dispatch] == ["model_dispatch"] * 2
    assert by_formula == by_dispatch


# -- each counting path says it ran, gives way only on its documented failure -----------------------
def _without_method(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "flops_method"}


def test_a_layer_torch_cannot_run_alone_falls_back_to_the_whole_model_and_says_so(monkeypatch):
    # dispatch_layer's documented failure is torch's RuntimeError (NotImplementedError for a
    # missing meta kernel): planted into the run of the one layer counted alone, the whole model
    # counts instead; the reference is that same spec counted by formula and layer dispatch.
    import nncli.flops.dispatch
    from nncli.params import count
    from nncli.spec import load_spec

    spec = load_spec(SPECS / "custom-swish.yaml")
    fast = count(spec, batch_size=3).to_json()
    assert fast["flops_method"] == "formula+layer_dispatch"

    def no_meta_kernel():
        raise NotImplementedError("Could not run 'aten::planted' with arguments from the 'Meta' backend")

    monkeypatch.setattr(nncli.flops.dispatch, "attention_flop_mapping", no_meta_kernel)
    fallen = count(spec, batch_size=3).to_json()
    assert fallen["flops_method"] == "model_dispatch"
    assert _without_method(fallen) == _without_method(fast)


def test_an_undocumented_error_in_a_counting_path_is_not_swallowed(monkeypatch, run_cli):
    import nncli.flops
    import nncli.flops.dispatch
    import nncli.params
    from nncli.params import count
    from nncli.spec import load_spec

    def planted(*a, **k):
        raise IndexError("planted")

    def no_fallback(*a, **k):
        raise AssertionError("the whole model's count ran: the IndexError was swallowed")

    monkeypatch.setattr(nncli.params, "measure_forward", no_fallback)
    # inside dispatch_layer's guarded block (the layer run alone)
    with monkeypatch.context() as patched:
        patched.setattr(nncli.flops.dispatch, "attention_flop_mapping", planted)
        with pytest.raises(IndexError, match="planted"):
            count(load_spec(SPECS / "custom-swish.yaml"))
    # in the formulas themselves
    monkeypatch.setattr(nncli.params, "formula_forward", planted)
    with pytest.raises(IndexError, match="planted"):
        count(load_spec(SPECS / "lenet5.yaml"))
    assert run_cli(["params", SPECS / "lenet5.yaml", "--json"]).code == 3


def test_batch_one_batchnorm_extrapolated_by_the_whole_models_count_says_so(monkeypatch, run_cli):
    # formulas declined (planted): the whole model at batch 1 meets BatchNorm's refusal and is
    # extrapolated from batches 2 and 3; the reference is the formula count
    import nncli.params

    by_formula = params_json(run_cli, SPECS / "deep-residual-bn.yaml")
    assert by_formula["flops_method"] == "formula"
    monkeypatch.setattr(nncli.params, "formula_forward", lambda *args, **kwargs: None)
    extrapolated = params_json(run_cli, SPECS / "deep-residual-bn.yaml")
    assert extrapolated["flops_method"] == "model_dispatch_extrapolated"
    assert _without_method(extrapolated) == _without_method(by_formula)


def test_verbose_names_the_flops_method(run_cli):
    r = run_cli(["params", SPECS / "lenet5.yaml", "-v"])
    assert r.code == 0 and "flops_method: formula" in r.out
    r = run_cli(["params", SPECS / "custom-swish.yaml", "--verbose"])
    assert r.code == 0 and "flops_method: formula+layer_dispatch" in r.out
