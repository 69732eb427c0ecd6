"""``nncli probe``: checked against hand-written backprop, closed-form init theory and hand-computed stats.

References, none of them the probe's own output:
- deep sigmoid: the activation-gradient norms of all 41 layers and the weight-gradient norms of
  all 21 Linear layers, recomputed in float64 as an explicit product of per-example layer
  Jacobians (W_21 D_20 W_20 ... D_1) applied to the loss gradient r/N;
- ReLU with N(0, s^2) weights: the second moment of the signal is multiplied by
  fan * s^2 / 2 per layer (He et al., 2015), forward and backward, so over 20 layers R and the
  forward growth are about (64 * 0.09 / 2)^10 = 3.9e4; with He init, 1;
- dead / saturated fractions and activation statistics: computed by hand from crafted inputs.
"""

from __future__ import annotations

import json
import math
import struct
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from conftest import ROOT
from torch import nn

from nncli.build import build_model
from nncli.errors import InputError
from nncli.probe import Thresholds, Verdict, measure, probe, probe_points, with_repeat_times
from nncli.render.plots import probe_figure, probe_plot
from nncli.spec import load_spec, parse_spec

SPECS = ROOT / "specs"
SEEDS = [0, 1, 2]
BATCH = 128


# One intra-op thread (conftest) for these 64-wide nets: they gain nothing from more, and on a
# shared 2-core machine oversubscribed OpenMP threads only slow this file down.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def spec_of(name: str):
    return load_spec(SPECS / f"{name}.yaml")


def recipe_batch(input_shape, output_shape, seed: int, n: int = BATCH):
    """The probe's documented batch: x then r from one generator seeded with the seed."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *input_shape), generator=gen)
    r = torch.randn((n, *output_shape), generator=gen)
    return x, r


def sigmoid_mlp_reference(model: nn.Module, x: torch.Tensor, r: torch.Tensor):
    """Manual float64 backprop through Linear/Sigmoid pairs + a Linear head, as Jacobian products.

    Returns:
        (grad norms of the rows [z_1, h_1, ..., z_T, h_T, y], weight-grad norms of the Linears).
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    ws = [m.weight.detach().double() for m in linears]
    bs = [m.bias.detach().double() for m in linears]
    n = x.shape[0]
    h = x.double()
    hs, zs = [h], []
    for w, b in zip(ws[:-1], bs[:-1]):
        z = h @ w.T + b
        h = torch.sigmoid(z)
        zs.append(z)
        hs.append(h)
    r = r.double()
    jac = ws[-1].expand(n, -1, -1)  # dy/dh_T, (N, out, 64)
    grads = {}  # row index -> dL/d(row output), (N, 64)

    def pull(j):  # dL/dv = J^T r / N, per example
        return torch.einsum("noi,no->ni", j, r) / n

    t = len(zs)
    grads[2 * t] = r / n  # the output y
    grads[2 * t - 1] = pull(jac)  # h_T
    for layer in reversed(range(t)):
        s = torch.sigmoid(zs[layer])
        jac = jac * (s * (1 - s))[:, None, :]  # dy/dz_{layer+1}: times diag(sigmoid')
        grads[2 * layer] = pull(jac)
        if layer > 0:
            jac = jac @ ws[layer]  # dy/dh_layer
            grads[2 * layer - 1] = pull(jac)
    act = [grads[k].norm().item() for k in range(2 * t + 1)]
    # dL/dW_l = sum_n dL/dz_l (n) h_{l-1}(n)^T
    wgrad = [(grads[2 * layer].T @ hs[layer]).norm().item() for layer in range(t)]
    wgrad.append((grads[2 * t].T @ hs[t]).norm().item())
    return act, wgrad


@pytest.fixture(scope="module")
def acceptance():
    """The five 20-layer nets of the issue, probed over three seeds."""
    names = ["deep-sigmoid", "deep-relu-normal", "deep-relu-he", "deep-tanh-xavier", "deep-residual-bn"]
    return {name: probe(spec_of(name), seeds=SEEDS, batch_size=BATCH, device="cpu") for name in names}


# -- acceptance: the five nets -------------------------------------------------------------------
def test_sigmoid_vanishes_and_matches_manual_jacobian_products(acceptance):
    spec = spec_of("deep-sigmoid")
    report = acceptance["deep-sigmoid"]
    res = report.init
    assert res.verdict is Verdict.vanishing and not report.ok
    assert res.depth == 41  # 20 x (Linear, Sigmoid) + the head
    for seed, per_seed in zip(SEEDS, res.seeds):
        built = build_model(spec, seed=seed)
        x, r = recipe_batch(built.input_shape, built.output_shape, seed)
        act, _ = sigmoid_mlp_reference(built.model, x, r)
        ratio = act[0] / act[-1]
        # The literature's order of magnitude: sigmoid' <= 1/4 and torch's U(+-1/sqrt(64)) init
        # give about (0.24 * sqrt(1/3))^20 ~ 1e-17 from the output back to the first layer.
        assert 1e-19 < ratio < 1e-15
        assert per_seed.ratio == pytest.approx(ratio, rel=1e-3)
        assert per_seed.verdict is Verdict.vanishing
    assert res.gamma == pytest.approx(res.ratio ** (1 / 40), rel=1e-9)


def test_sigmoid_every_layer_gradient_matches_manual_backprop():
    spec = spec_of("deep-sigmoid")
    built = build_model(spec, seed=7)
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(32, 64, generator=gen)
    r = torch.randn(32, 10, generator=gen)
    points = probe_points(built)
    raw = measure(built.model, points, x, r)
    act, wgrad = sigmoid_mlp_reference(built.model, x, r)
    got = [s["grad_norm"] for s in raw.stats]
    assert got == pytest.approx(act, rel=1e-4)
    got_w = [s["weight_grad_norm"] for p, s in zip(points, raw.stats) if p.info.type == "Linear"]
    assert got_w == pytest.approx(wgrad, rel=1e-4)
    linears = [m for m in built.model.modules() if isinstance(m, nn.Linear)]
    got_ratio = [s["weight_grad_ratio"] for p, s in zip(points, raw.stats) if p.info.type == "Linear"]
    want_ratio = [g / m.weight.detach().double().norm().item() for g, m in zip(wgrad, linears)]
    assert got_ratio == pytest.approx(want_ratio, rel=1e-4)


def test_relu_normal_explodes_by_the_he_factor(acceptance):
    res = acceptance["deep-relu-normal"].init
    assert res.verdict is Verdict.exploding
    theory = (64 * 0.3**2 / 2) ** 10  # sqrt of 2.88^20: ~3.9e4, backward and forward alike
    for s in res.seeds:
        assert theory / 10 < s.ratio < theory * 10
        assert theory / 10 < s.growth < theory * 10
        assert s.verdict is Verdict.exploding
    assert "kaiming_normal" in res.hint and "2.4" in res.hint  # std*sqrt(fan_in) = 0.3*8


@pytest.mark.parametrize("name", ["deep-relu-he", "deep-tanh-xavier", "deep-residual-bn"])
def test_well_initialised_nets_are_healthy(acceptance, name):
    report = acceptance[name]
    assert report.init.verdict is Verdict.healthy and report.ok
    assert report.init.hint is None
    for s in report.init.seeds:
        assert s.verdict is Verdict.healthy
        assert 1e-2 < s.ratio < 1e2  # He: (64 * (2/64) / 2)^10 = 1 in expectation
    if name == "deep-relu-he":
        assert all(0.1 < s.ratio < 10 and 0.1 < s.growth < 10 for s in report.init.seeds)


def test_residual_blocks_are_rows_with_their_layers_inside(acceptance):
    res = acceptance["deep-residual-bn"].init
    assert res.depth == 41  # 20 x (Residual, ReLU) + the head
    blocks = [r for r in res.layers if r.type == "Residual"]
    assert len(blocks) == 20
    assert [c.type for c in blocks[0].inner] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert all(c.index is None for c in blocks[0].inner)
    # A block's weights are those of its Linears and BatchNorms: ||dL/dW|| covers all four.
    inner_w = [c.weight_grad_norm for c in blocks[0].inner if c.weight_grad_norm is not None]
    assert blocks[0].weight_grad_norm == pytest.approx(math.sqrt(sum(g * g for g in inner_w)), rel=0.05)
    assert [r.index for r in res.layers] == list(range(41))


# -- hand-computed forward statistics --------------------------------------------------------------
def test_dead_and_saturated_fractions_match_hand_computation():
    spec = parse_spec("""
input: [4]
layers:
  - Linear: {out_features: 4, init: {weight: eye, bias: zeros}}
  - ReLU
  - Linear: {out_features: 4, init: {weight: eye, bias: {constant: {val: 4.0}}}}
  - Sigmoid
  - Linear: {out_features: 4, init: {weight: {constant: {val: 3.0}}, bias: zeros}}
  - Tanh
  - Linear: {out_features: 2}
""")
    built = build_model(spec, seed=0)
    # column 0 negative in every example: that ReLU unit is dead; the others live.
    x = torch.tensor(
        [
            [-1.0, 2.0, -0.5, 0.3],
            [-0.2, 0.1, 1.5, -2.0],
            [-3.0, 0.7, 0.2, 0.0],
            [-0.1, 1.0, -1.0, 0.9],
            [-2.0, 0.4, 0.8, 0.1],
            [-0.7, 3.0, -0.2, 0.5],
        ]
    )
    r = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    points = probe_points(built)
    raw = measure(built.model, points, x, r)
    by_type = {p.info.type + str(p.index): s for p, s in zip(points, raw.stats)}
    relu = torch.relu(x)
    assert by_type["ReLU1"]["dead_frac"] == pytest.approx(0.25)  # 1 unit of 4 (column 3 is 0 once: alive)
    assert by_type["ReLU1"]["act_mean"] == pytest.approx(relu.mean().item(), rel=1e-6)
    assert by_type["ReLU1"]["act_std"] == pytest.approx(relu.std(unbiased=False).item(), rel=1e-6)
    sig = torch.sigmoid(relu + 4.0)  # sigmoid(4) = 0.982: only inputs above ~0.6 saturate
    want_sat = ((sig < 0.01) | (sig > 0.99)).double().mean().item()
    assert 0 < want_sat < 1
    assert by_type["Sigmoid3"]["saturated_frac"] == pytest.approx(want_sat)
    th = torch.tanh(sig @ torch.full((4, 4), 3.0).T)  # every unit: 3 * sum(sig) > 2.65 -> |tanh| > 0.99
    assert by_type["Tanh5"]["saturated_frac"] == pytest.approx((th.abs() > 0.99).double().mean().item())
    assert by_type["Linear0"]["dead_frac"] is None and by_type["Linear0"]["saturated_frac"] is None


def test_inplace_relu_does_not_corrupt_the_caught_outputs():
    text = """
input: [16]
layers:
  - Linear: {out_features: 16}
  - ReLU{inplace}
  - Linear: {out_features: 16}
  - ReLU{inplace}
  - Linear: {out_features: 3}
"""
    plain = build_model(parse_spec(text.replace("{inplace}", "")), seed=3)
    inplace = build_model(parse_spec(text.replace("{inplace}", ": {inplace: true}")), seed=3)
    x, r = recipe_batch((16,), (3,), seed=1, n=20)
    a = measure(plain.model, probe_points(plain), x, r)
    b = measure(inplace.model, probe_points(inplace), x, r)
    for sa, sb in zip(a.stats, b.stats):
        assert sb["grad_norm"] == pytest.approx(sa["grad_norm"], rel=1e-6)
        assert sb["act_mean"] == pytest.approx(sa["act_mean"], rel=1e-6, abs=1e-9)


# -- leaves the model as found --------------------------------------------------------------------
def test_measure_leaves_weights_buffers_modes_grads_and_rng_untouched():
    spec = parse_spec("""
input: [8]
layers:
  - Linear: {out_features: 8}
  - BatchNorm1d
  - ReLU
  - Dropout: {p: 0.5}
  - Residual:
      body: [{Linear: {out_features: 8}}, BatchNorm1d]
  - Linear: {out_features: 3}
""")
    built = build_model(spec, seed=0)
    model = built.model
    model.eval()
    model[1].train()  # a mixed state, to see every flag restored, not just "all train"
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    x, r = recipe_batch((8,), (3,), seed=0, n=16)
    raw = measure(model, probe_points(built), x, r)
    assert raw.finite
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:  # weights and BatchNorm running stats / num_batches_tracked, bit for bit
        assert torch.equal(before[k], after[k]), k
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))


def test_probe_leaves_the_global_rng_alone():
    torch.manual_seed(99)
    state = torch.get_rng_state()
    probe(spec_of("deep-relu-he"), seeds=[0], device="cpu")
    assert torch.equal(torch.get_rng_state(), state)


# -- non-finite, thresholds --------------------------------------------------------------------------
def test_overflowing_init_is_non_finite():
    spec = parse_spec("""
input: [8]
init: {weight: {normal: {std: 1.0e+30}}, bias: zeros}
layers: [{Linear: {out_features: 8}}, ReLU, {Linear: {out_features: 8}}, ReLU, {Linear: {out_features: 3}}]
""")
    res = probe(spec, seeds=[0], device="cpu").init
    assert res.verdict is Verdict.non_finite
    assert "forward pass at linear_2" in res.nonfinite_at  # 3e30 * 3e30 * 8 overflows float32 there
    assert json.dumps(res.to_json(), allow_nan=False)  # NaN/inf written as strings, valid JSON


def test_thresholds_are_overridable(acceptance):
    res = acceptance["deep-sigmoid"].init
    from nncli.probe import classify

    assert classify(res.ratio, res.gamma, res.growth, True, Thresholds()) is Verdict.vanishing
    assert classify(res.ratio, res.gamma, res.growth, True, Thresholds(min_ratio=1e-20)) is Verdict.healthy
    he = acceptance["deep-relu-he"].init
    assert classify(he.ratio, he.gamma, he.growth, True, Thresholds(min_gamma=0.999)) is Verdict.vanishing
    with pytest.raises(InputError):
        Thresholds(min_ratio=10, max_ratio=1).check()


# -- depth sweep --------------------------------------------------------------------------------------
def test_sweep_follows_the_exponential_law_and_matches_manual_backprop():
    spec = spec_of("deep-sigmoid")
    depths = [1, 2, 4, 8]
    report = probe(spec, seeds=[0], batch_size=32, device="cpu", sweep_depths=depths)
    sweep = report.sweep
    assert [p.times for p in sweep.points] == depths
    assert [p.depth for p in sweep.points] == [2 * t + 1 for t in depths]
    assert sweep.repeat == "layers[0]"
    for p in sweep.points:
        deep, _ = with_repeat_times(spec, p.times)
        built = build_model(deep, seed=0)
        x, r = recipe_batch(built.input_shape, built.output_shape, 0, n=32)
        act, _ = sigmoid_mlp_reference(built.model, x, r)
        assert p.ratio == pytest.approx(act[0] / act[-1], rel=1e-3)
    assert sweep.r2 > 0.99
    assert 0.05 < sweep.gamma_per_copy < 0.3  # ~0.14: sqrt(1/3) * sigmoid'(~0) = 0.577 * 0.24
    assert sweep.breaks == []


def test_sweep_reports_where_float32_breaks_the_law():
    # 64 sigmoid copies: R ~ 0.14^64 ~ 1e-55, below float32's smallest subnormal (1.4e-45).
    sweep = probe(spec_of("deep-sigmoid"), seeds=[0], batch_size=32, device="cpu", sweep_depths=[2, 4, 64]).sweep
    assert sweep.points[-1].ratio == 0.0 and sweep.points[-1].residual is None
    assert any("times=64" in b and "underflowed" in b for b in sweep.breaks)
    assert 0.05 < sweep.gamma_per_copy < 0.3  # fitted on the two representable points
    assert sweep.r2 is None  # two points: a line always fits


def test_sweep_needs_a_repeat():
    spec = parse_spec("input: [4]\nlayers: [{Linear: {out_features: 2}}]\n")
    with pytest.raises(InputError, match="Repeat"):
        probe(spec, seeds=[0], device="cpu", sweep_depths=[1, 2])


# -- plot -----------------------------------------------------------------------------------------------
def test_plot_has_one_point_per_layer_and_is_a_real_image(tmp_path, acceptance):
    import matplotlib.image

    report = acceptance["deep-sigmoid"]
    fig = probe_figure(report)
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_label() == "at init"]
    xy = line.get_xydata()
    assert len(xy) == report.init.depth == 41
    assert np.allclose(xy[:, 1], [r.grad_norm for r in report.init.layers])
    assert fig.axes[0].get_yscale() == "log"
    png = probe_plot(report, tmp_path / "grads.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 200 and height > 200
    assert matplotlib.image.imread(png).shape[:2] == (height, width)
    svg = probe_plot(report, tmp_path / "grads.svg")
    assert ET.parse(svg).getroot().tag.endswith("svg")
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_sweep_plot_has_one_point_per_depth(tmp_path):
    report = probe(spec_of("deep-relu-he"), seeds=[0], batch_size=32, device="cpu", sweep_depths=[1, 3, 5])
    fig = probe_figure(report)
    assert len(fig.axes) == 2
    (line,) = [ln for ln in fig.axes[1].lines if ln.get_label() == "R"]
    assert list(line.get_xdata()) == [1, 3, 5]
    assert np.allclose(line.get_ydata(), [p.ratio for p in report.sweep.points])


def test_terminal_bars_are_log_scaled():
    from nncli.render.probe import log_bars

    bars, low, high = log_bars([1e-18, 1e-9, 1.0, 0.0], width=36)
    assert (low, high) == (-18.0, 0.0)
    lengths = [len(b) for b in bars[:3]]
    assert lengths[0] < lengths[1] < lengths[2] == 36
    assert abs(lengths[1] - 18) <= 1  # 1e-9 is half way between 1e-18 and 1 on a log axis
    assert bars[3] == "0"
    # A healthy net's wobble (0.5 .. 2) stays a wobble: the axis spans at least four decades.
    bars, low, high = log_bars([0.5, 1.0, 2.0], width=40)
    assert high - low >= 4 and max(map(len, bars)) - min(map(len, bars)) <= 7


# -- training steps -------------------------------------------------------------------------------------
def test_steps_probe_again_after_training():
    report = probe(spec_of("deep-relu-he"), seeds=[0], batch_size=32, device="cpu", steps=3)
    assert report.training.steps == 3 and report.training.optimizer == "adam" and report.training.lr == 1e-3
    assert report.training.loss == "cross_entropy on random labels"
    assert report.after is not None and report.after.depth == report.init.depth
    assert report.after.ratio != report.init.ratio  # the weights moved
    doc = report.to_json()
    assert doc["after_steps"]["steps"] == 3 and doc["after_steps"]["verdict"] in {v.value for v in Verdict}


# -- the command line -------------------------------------------------------------------------------------
@pytest.fixture
def cli(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")

    def run(*args):
        from nncli import cli as cli_mod

        capsys.readouterr()
        code = cli_mod.main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_cli_json_schema_and_exit_codes(cli, tmp_path):
    code, out, _ = cli("probe", SPECS / "deep-relu-he.yaml", "--seeds", "0,1", "--device", "cpu", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["verdict"] == "healthy" and doc["ok"] is True and doc["seeds"] == [0, 1]
    assert {"verdict", "ratio", "gamma", "layers"} <= doc.keys()
    assert len(doc["layers"]) == 41
    row = doc["layers"][0]
    assert {
        "index",
        "name",
        "type",
        "act_mean",
        "act_std",
        "dead_frac",
        "saturated_frac",
        "grad_norm",
        "weight_grad_norm",
        "weight_grad_ratio",
    } <= row.keys()
    assert doc["layers"][1]["type"] == "ReLU" and 0 <= doc["layers"][1]["dead_frac"] <= 1

    plot = tmp_path / "sig.png"
    code, out, _ = cli(
        "probe", SPECS / "deep-sigmoid.yaml", "--seeds", "0", "--device", "cpu", "--json", "--plot", plot
    )
    assert code == 1
    doc = json.loads(out)
    assert doc["verdict"] == "vanishing" and doc["ok"] is False and doc["hint"]
    assert doc["plot"] == str(plot) and plot.read_bytes()[:4] == b"\x89PNG"


def test_cli_human_output_has_table_bars_and_verdict(cli):
    code, out, err = cli("probe", SPECS / "deep-relu-normal.yaml", "--seeds", "0", "--device", "cpu", "-b", "32")
    assert code == 1
    assert "||dL/dh||" in out and "EXPLODING" in out and "hint:" in out and "█" in out
    assert "check failed" in err
    code, out, _ = cli(
        "probe",
        SPECS / "deep-relu-normal.yaml",
        "--seeds",
        "0",
        "--device",
        "cpu",
        "--max-ratio",
        "1e9",
        "--max-growth",
        "1e9",
        "-b",
        "32",
    )
    assert code == 0 and "HEALTHY" in out


def test_cli_bad_input_exits_2(cli, tmp_path):
    he = SPECS / "deep-relu-he.yaml"
    assert cli("probe", he, "--plot", tmp_path / "x.jpg")[0] == 2
    assert cli("probe", he, "--seeds", "a,b")[0] == 2
    assert cli("probe", he, "--min-ratio", "5", "--max-ratio", "2")[0] == 2
    assert cli("probe", he, "--data", tmp_path / "missing.npz")[0] == 2
    code, _, err = cli("probe", SPECS / "lenet5.yaml", "--sweep-depth", "2,4", "--device", "cpu")
    assert code == 2 and "Repeat" in err


def test_cli_data_file(cli, tmp_path):
    good = tmp_path / "x.npz"
    np.savez(good, x=np.random.default_rng(0).normal(size=(50, 64)).astype(np.float32))
    code, out, _ = cli(
        "probe", SPECS / "deep-relu-he.yaml", "--seeds", "0", "--device", "cpu", "--json", "--data", good
    )
    assert code == 0 and json.loads(out)["inputs"].startswith("x.npz (50 examples")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((10, 7), dtype=np.float32))
    assert cli("probe", SPECS / "deep-relu-he.yaml", "--data", bad, "--device", "cpu")[0] == 2


def test_cli_steps_can_fail_a_healthy_init(cli):
    # SGD with an absurd learning rate wrecks a healthy net within a few steps: exit 1.
    code, out, _ = cli(
        "probe",
        SPECS / "deep-relu-he.yaml",
        "--seeds",
        "0",
        "--device",
        "cpu",
        "--json",
        "--steps",
        "3",
        "--optimizer",
        "sgd",
        "--lr",
        "100",
        "-b",
        "32",
    )
    doc = json.loads(out)
    assert doc["verdict"] == "healthy"
    assert doc["after_steps"]["verdict"] in ("exploding", "non-finite")
    assert code == 1 and doc["ok"] is False


# -- CUDA ---------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)")
def test_cuda_probe_matches_cpu_and_restores_cuda_rng():
    spec = spec_of("deep-sigmoid")
    # Same weights on both devices (built on the GPU, copied to the CPU), same batch: same numbers.
    built = build_model(spec, device="cuda", seed=0)
    x, r = recipe_batch(built.input_shape, built.output_shape, 0)
    gpu_raw = measure(built.model, probe_points(built), x.cuda(), r.cuda())
    built.model.cpu()
    cpu_raw = measure(built.model, probe_points(built), x, r)
    assert [s["grad_norm"] for s in gpu_raw.stats] == pytest.approx([s["grad_norm"] for s in cpu_raw.stats], rel=1e-3)
    state = torch.cuda.get_rng_state()
    report = probe(spec, seeds=[0, 1], device="cuda", steps=2)
    assert report.device.startswith("cuda:")
    assert torch.equal(torch.cuda.get_rng_state(), state)
    assert report.init.verdict is Verdict.vanishing
    assert all(1e-19 < s.ratio < 1e-15 for s in report.init.seeds)
    assert report.after is not None and report.after.depth == 41
