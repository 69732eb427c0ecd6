"""The builder (nncli.build): spec -> nn.Sequential, shapes, inferred sizes, init, seeds.

References: hand-written torch models (tests/reference_models.py), closed-form init statistics
(He: std = sqrt(2 / fan_in); LeCun: 1 / sqrt(fan_in); Glorot: U(-a, a), a = sqrt(6 / (fan_in +
fan_out))), and forward passes computed by hand from the built weights.
"""

from __future__ import annotations

import math
import textwrap

import pytest
import torch
from conftest import SPECS
from reference_models import INPUT_SHAPES, OUTPUT_SHAPES, PUBLISHED, REFERENCE_MODELS, SPEC_FILES
from torch import nn

from nncli.build import build_model, infer
from nncli.spec import load_spec, parse_spec


def spec_of(text: str, base_dir=None):
    return parse_spec(textwrap.dedent(text), file="t.yaml", base_dir=base_dir)


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- structure against the hand-written reference models ------------------------------------------
# The published big five are compared layer by layer through `nncli params` in test_params.py.
@pytest.mark.parametrize("name", sorted(set(SPEC_FILES) - set(PUBLISHED)))
def test_layers_match_reference_model(name):
    built = infer(load_spec(SPECS / SPEC_FILES[name]))
    with torch.device("meta"):
        ref = REFERENCE_MODELS[name]()
    assert built.input_shape == INPUT_SHAPES[name]
    assert built.output_shape == OUTPUT_SHAPES[name]
    assert len(built.layers) == len(ref), "top-level layers must mirror the reference one to one"
    for info, child in zip(built.layers, ref):
        assert info.params == _numel(child), f"{info.path} {info.type}"
        assert info.buffers == sum(b.numel() for b in child.buffers()), f"{info.path} {info.type}"
    assert _numel(built.model) == _numel(ref)


def test_infer_allocates_nothing():
    built = infer(load_spec(SPECS / "alexnet.yaml"))  # 61 M parameters
    assert all(p.device.type == "meta" for p in built.model.parameters())
    assert all(b.device.type == "meta" for b in built.model.buffers())


@pytest.mark.parametrize("name", ["lecture_mlp", "lenet5", "digits_cnn", "resnet_tiny", "swish_mlp"])
def test_real_forward_shape(name):
    built = build_model(load_spec(SPECS / SPEC_FILES[name]), seed=0)
    y = built.model(torch.zeros(3, *INPUT_SHAPES[name]))
    assert tuple(y.shape) == (3, *OUTPUT_SHAPES[name])
    assert all(p.device.type == "cpu" for p in built.model.parameters())


def test_inferred_sizes():
    built = infer(
        spec_of("""
        input: [3, 16, 16]
        layers:
          - Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
          - BatchNorm2d
          - GroupNorm: {num_groups: 2}
          - Conv2d: {in_channels: 8, out_channels: 4, kernel_size: 1}
          - Flatten
          - LayerNorm
          - Linear: {out_features: 5}
    """)
    )
    conv, bn, gn, conv2, _, ln, lin = built.layers
    assert conv.args["in_channels"] == 3 and conv.inferred == ("in_channels",)
    assert bn.args["num_features"] == 8 and gn.args["num_channels"] == 8
    assert conv2.inferred == ()  # given explicitly (and right): checked, not inferred
    assert ln.args["normalized_shape"] == 4 * 16 * 16 and ln.out_shape == (1024,)
    assert lin.args["in_features"] == 1024 and lin.params == 1024 * 5 + 5
    assert [tuple(i.out_shape) for i in built.layers] == [
        (8, 16, 16),
        (8, 16, 16),
        (8, 16, 16),
        (4, 16, 16),
        (1024,),
        (1024,),
        (5,),
    ]


def test_layer_info_names_types_children_and_fqn():
    built = infer(
        spec_of(
            """
        input: [4]
        layers:
          - Linear: {out_features: 4, name: first}
          - Residual:
              body: [{Linear: {out_features: 4}}, ReLU]
              shortcut: [{Linear: {out_features: 4}}]
          - Repeat: {times: 2, layers: [{Linear: {out_features: 4}}, Tanh]}
          - Custom: {target: "swish_layers.py:Swish"}
    """,
            base_dir=SPECS,
        )
    )
    first, res, rep, swish = built.layers
    assert (first.name, first.type, first.path) == ("first", "Linear", "layers[0]")
    assert (res.name, res.type) == ("residual_1", "Residual")
    assert [(c.role, c.type) for c in res.children] == [("body", "Linear"), ("body", "ReLU"), ("shortcut", "Linear")]
    assert [c.role for c in rep.children] == ["copy 1", "copy 1", "copy 2", "copy 2"]
    assert (swish.type, swish.name, swish.target) == ("Swish", "swish_3", "swish_layers.py:Swish")
    # fqn is the module's own name in the model, for every nested layer
    modules = dict(built.model.named_modules())
    for info in built.walk():
        assert modules[info.fqn] is info.module


# -- composites ----------------------------------------------------------------------------------
def test_residual_is_body_plus_shortcut():
    built = build_model(
        spec_of("""
        input: [4]
        layers:
          - Residual:
              body: [{Linear: {out_features: 3}}, ReLU, {Linear: {out_features: 3}}]
              shortcut: [{Linear: {out_features: 3, bias: false}}]
          - Residual:
              body: [Tanh]
    """),
        seed=1,
        dtype=torch.float64,
    )
    proj, skip = built.model
    l1, _, l2 = proj.body
    (ls,) = proj.shortcut
    x = torch.randn(5, 4, dtype=torch.float64)
    hidden = torch.clamp(x @ l1.weight.T + l1.bias, min=0)
    h = hidden @ l2.weight.T + l2.bias + x @ ls.weight.T  # body(x) + shortcut(x), by hand
    expected = torch.tanh(h) + h  # identity shortcut
    torch.testing.assert_close(built.model(x), expected)


def test_repeat_gives_fresh_weights_per_copy():
    built = build_model(
        spec_of("""
        input: [6]
        layers:
          - Repeat: {times: 3, layers: [{Linear: {out_features: 6}}, ReLU]}
    """),
        seed=0,
    )
    linears = [m for m in built.model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    assert len({id(l.weight) for l in linears}) == 3  # no shared tensors
    for a in range(3):
        for b in range(a + 1, 3):
            assert not torch.equal(linears[a].weight, linears[b].weight)
    assert built.layers[0].params == 3 * (36 + 6)


def test_sequence_layers_read_dim_0_as_the_batch():
    # torch's default batch_first=False would make attention mix the examples of a batch while
    # every shape stays right; an example's output must not depend on its batch-mates.
    built = build_model(
        spec_of("""
        input: [10, 16]
        layers:
          - TransformerEncoderLayer: {d_model: 16, nhead: 2, dropout: 0.0}
    """),
        seed=0,
    )
    assert built.layers[0].args["batch_first"] is True and "batch_first" in built.layers[0].inferred
    model = built.model.eval()
    x = torch.randn(3, 10, 16)
    torch.testing.assert_close(model(x)[1:2], model(x[1:2]), atol=1e-5, rtol=1e-5)


# -- Step ----------------------------------------------------------------------------------------
def test_step_forward_and_zero_gradient():
    built = build_model(
        spec_of("""
        input: [3]
        layers:
          - Linear: {out_features: 4}
          - Step
    """),
        seed=0,
    )
    lin = built.model[0]
    x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]], requires_grad=True)
    y = built.model(x)
    z = (x @ lin.weight.T + lin.bias).detach()
    assert torch.equal(y, (z >= 0).float())
    y.sum().backward()
    assert torch.count_nonzero(x.grad) == 0 and torch.count_nonzero(lin.weight.grad) == 0
    # 1[z >= 0]: exactly 0 maps to 1
    step = built.model[1]
    assert torch.equal(step(torch.tensor([-1e-9, 0.0, 2.0])), torch.tensor([0.0, 1.0, 1.0]))


# -- init ----------------------------------------------------------------------------------------
def _std_close(tensor: torch.Tensor, expected: float, rel: float = 0.03) -> None:
    # The sample std of n normal draws has relative standard error ~ 1/sqrt(2n): for n >= 2e5
    # that is < 0.16%, so 3% is ~20 standard errors wide and still catches a wrong fan or gain.
    assert abs(tensor.std().item() - expected) < rel * expected, (tensor.std().item(), expected)
    assert abs(tensor.mean().item()) < 0.05 * expected


def test_kaiming_normal_std_linear_and_conv():
    built = build_model(
        spec_of("""
        input: [64, 12, 12]
        init: {weight: kaiming_normal, bias: zeros}
        layers:
          - Conv2d: {out_channels: 512, kernel_size: 3}
          - Flatten
          - Linear: {out_features: 8}
    """),
        seed=0,
    )
    conv, _, lin = built.model
    _std_close(conv.weight, math.sqrt(2 / (64 * 3 * 3)))  # fan_in = C_in * k * k = 576
    _std_close(lin.weight, math.sqrt(2 / (512 * 10 * 10)), rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0 and torch.count_nonzero(lin.bias) == 0


def test_lecun_normal_std():
    built = build_model(
        spec_of("""
        input: [400]
        layers:
          - Linear: {out_features: 1000, init: {weight: lecun_normal}}
    """),
        seed=0,
    )
    _std_close(built.model[0].weight, 1 / math.sqrt(400))


def test_lecun_normal_conv_fan_in():
    built = build_model(
        spec_of("""
        input: [32, 8, 8]
        layers:
          - Conv2d: {out_channels: 256, kernel_size: 5, init: {weight: lecun_normal}}
    """),
        seed=0,
    )
    _std_close(built.model[0].weight, 1 / math.sqrt(32 * 5 * 5))


def test_scheme_arguments_and_uniform_bounds():
    built = build_model(
        spec_of("""
        input: [300]
        layers:
          - Linear: {out_features: 700, init: {weight: {normal: {std: 0.02}}, bias: {constant: {val: 0.5}}}}
          - Linear: {out_features: 500, init: {weight: xavier_uniform}}
          - Linear: {out_features: 200, init: {weight: orthogonal}}
    """),
        seed=0,
    )
    a, b, c = built.model
    _std_close(a.weight, 0.02)
    assert torch.all(a.bias == 0.5)
    bound = math.sqrt(6 / (700 + 500))
    assert b.weight.abs().max() <= bound and b.weight.abs().max() > 0.99 * bound
    _std_close(b.weight, bound / math.sqrt(3))
    # orthogonal rows (200 x 500): W W^T = I
    torch.testing.assert_close(c.weight @ c.weight.T, torch.eye(200), atol=1e-4, rtol=0)


def test_layer_init_overrides_top_level_and_norms_keep_their_init():
    built = build_model(
        spec_of("""
        input: [8]
        init: {weight: {normal: {std: 5.0}}, bias: {constant: {val: 3.0}}}
        layers:
          - Linear: {out_features: 8}
          - BatchNorm1d
          - Linear: {out_features: 8, init: {weight: zeros}}
          - LayerNorm
    """),
        seed=0,
    )
    lin, bn, lin0, ln = built.model
    assert lin.weight.std() > 2.0 and torch.all(lin.bias == 3.0)  # top-level default applied
    assert torch.count_nonzero(lin0.weight) == 0  # its own init wins over the default ...
    assert torch.all(lin0.bias == 3.0)  # ... for the parameter it names only
    # BatchNorm / LayerNorm keep gamma = 1, beta = 0 under a top-level weight init
    for norm in (bn, ln):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


def test_composite_init_is_the_default_inside_it():
    # Precedence: a layer's own init > the innermost Residual/Repeat's > the spec's top level.
    built = build_model(
        spec_of("""
        input: [4]
        init: {weight: ones}
        layers:
          - Repeat:
              times: 2
              init: {weight: zeros}
              layers:
                - Linear: {out_features: 4}
                - ReLU
                - Linear: {out_features: 4, init: {weight: {constant: {val: 2.0}}}}
          - Residual: {init: {bias: ones}, body: [{Linear: {out_features: 4}}, BatchNorm1d]}
          - Linear: {out_features: 2}
    """),
        seed=0,
    )
    rep, res, last = built.model
    for copy in rep:
        assert torch.all(copy[0].weight == 0) and torch.all(copy[2].weight == 2)
    lin, bn = res.body
    assert torch.all(lin.bias == 1) and torch.all(lin.weight == 1)  # its bias from the Residual
    assert torch.all(bn.bias == 0)  # a norm layer keeps beta = 0 under a default init
    assert torch.all(last.weight == 1)  # outside the composites only the top level applies


def test_init_applies_under_infer_without_allocating():
    built = infer(
        spec_of("""
        input: [8]
        init: {weight: orthogonal}
        layers: [{Linear: {out_features: 8, init: {weight: kaiming_uniform}}}]
    """)
    )
    assert built.model[0].weight.device.type == "meta"


# -- seeds ---------------------------------------------------------------------------------------
def test_seeded_build_is_reproducible():
    spec = load_spec(SPECS / "resnet-tiny.yaml")
    a = build_model(spec, seed=7).model.state_dict()
    b = build_model(spec, seed=7).model.state_dict()
    c = build_model(spec, seed=8).model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_seed_ignores_global_rng_state():
    spec = load_spec(SPECS / "lecture-mlp.yaml")
    a = build_model(spec, seed=3).model.state_dict()
    torch.rand(100)  # move the global generator on
    b = build_model(spec, seed=3).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dtype_and_custom_layer_forward():
    built = build_model(load_spec(SPECS / "custom-swish.yaml"), seed=0, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in built.model.parameters())
    swish = built.model[1]
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch.testing.assert_close(swish(x), x * torch.sigmoid(x))  # Swish with beta = 1


# -- shape inference: rule, CPU zeros, meta; each says it ran, each gives way only as documented ----
SHAPES = """
name: shapes
input: [3, 12, 12]
layers:
  - Conv2d: {out_channels: 4, kernel_size: 3}
  - ReLU
  - AvgPool2d: {kernel_size: 2}
  - Flatten
  - Linear: {out_features: 7}
"""
# the shapes torch itself gives (the reference): [4, 10, 10] -> pool [4, 5, 5] -> 100 -> 7
SHAPES_EXPECTED = [(4, 10, 10), (4, 10, 10), (4, 5, 5), (100,), (7,)]


def _shapes(built) -> list:
    return [info.out_shape for info in built.layers]


def _methods(built) -> list:
    return [info.shape_method for info in built.layers]


def test_each_layer_records_how_its_shape_was_learnt():
    built = infer(spec_of(SHAPES))
    assert _shapes(built) == SHAPES_EXPECTED
    assert _methods(built) == ["rule", "rule", "cpu_zeros", "rule", "rule"]
    assert set(_methods(build_model(spec_of(SHAPES)))) == {"device"}


def test_without_a_rule_the_cpu_run_answers_the_same(monkeypatch):
    from nncli.build import inference

    monkeypatch.setattr(inference, "rule_shape", lambda *a: None)  # every rule declines
    built = infer(spec_of(SHAPES))
    assert _shapes(built) == SHAPES_EXPECTED and set(_methods(built)) == {"cpu_zeros"}


def test_a_cpu_run_that_raises_a_spec_error_falls_back_to_meta(monkeypatch):
    # the documented failure of the CPU path: the layer refuses its input (SpecError); meta decides
    from nncli.build import inference
    from nncli.build.inference import ShapeRunner

    monkeypatch.setattr(inference, "rule_shape", lambda *a: None)
    real = ShapeRunner._forward_batch

    def refuse_on_cpu(self, spec, *a, **k):
        if self._run_device.type == "cpu":
            raise spec.where.error("planted refusal on CPU zeros")
        return real(self, spec, *a, **k)

    monkeypatch.setattr(ShapeRunner, "_forward_batch", refuse_on_cpu)
    built = infer(spec_of(SHAPES))
    assert _shapes(built) == SHAPES_EXPECTED and set(_methods(built)) == {"meta"}


@pytest.mark.parametrize("where", ["rule_shape", "on_cpu"])
def test_an_undocumented_error_in_a_shape_path_is_not_swallowed(monkeypatch, where):
    from nncli.build import inference

    def planted(*a, **k):
        raise IndexError("planted")

    monkeypatch.setattr(inference, where, planted)
    with pytest.raises(IndexError, match="planted"):
        infer(spec_of(SHAPES.replace("shapes", f"shapes-{where}")))


def test_check_json_carries_each_layers_shape_method(monkeypatch):
    from nncli.build import inference
    from nncli.lint import check_spec

    rows = check_spec(spec_of(SHAPES)).to_json()["layers"]
    assert [r["shape_method"] for r in rows] == ["rule", "rule", "cpu_zeros", "rule", "rule"]
    monkeypatch.setattr(inference, "rule_shape", lambda *a: None)
    rows = check_spec(spec_of(SHAPES.replace("shapes", "shapes-norule"))).to_json()["layers"]
    assert [r["shape_method"] for r in rows] == ["cpu_zeros"] * 5
    assert [tuple(r["output_shape"]) for r in rows] == SHAPES_EXPECTED
