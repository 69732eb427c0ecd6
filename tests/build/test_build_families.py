"""Families of blocks and modern layers, built: templates and ``Repeat`` ``index``/``each`` give
the layers their vars say; vars reach Custom arguments and ``init`` values; ``LayerNorm2d``,
``LayerScale`` and ``PositionEmbedding: {max_length}`` against torch written out by hand; every
command on a spec that uses them.

References are independent: widths and counts from the formulas, outputs from torch's own
functional ops applied by hand, never nncli's output captured once.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nncli.build import build_model, count_params, infer
from nncli.errors import SpecError
from nncli.spec import parse_spec

torch.set_num_threads(1)


def build(text: str, **kw):
    return build_model(parse_spec(textwrap.dedent(text), file="t.yaml"), **kw)


def leaves(built, kind: str) -> list:
    return [i for i in built.walk() if i.type == kind and not i.children]


def conv_params(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_out * c_in * k * k + (c_out if bias else 0)


def test_templates_index_and_each_give_the_widths_their_vars_say():
    built = build(
        """\
        input: [3, 8, 8]
        vars: {w: 4}
        define:
          ConvBN:
            params: {c: null, k: 3}
            layers:
              - Conv2d: {out_channels: c, kernel_size: k, padding: "k // 2", bias: false}
              - BatchNorm2d
        layers:
          - Repeat: {times: 3, index: i, layers: [{ConvBN: {c: "w * 2 ** i"}}]}
          - Repeat:
              each: [{c: 6, n: 2}, {c: 10, n: 1}]
              layers: [{Repeat: {times: n, layers: [{ConvBN: {c: c, k: 1}}]}}]
        """
    )
    convs = leaves(built, "Conv2d")
    assert [(c.in_shape[0], c.out_shape[0], c.args["kernel_size"]) for c in convs] == [
        (3, 4, 3),
        (4, 8, 3),
        (8, 16, 3),
        (16, 6, 1),
        (6, 6, 1),
        (6, 10, 1),
    ]
    want = sum(conv_params(a, b, k, bias=False) + 2 * b for a, b, k in [(3, 4, 3), (4, 8, 3), (8, 16, 3)])
    want += sum(conv_params(a, b, 1, bias=False) + 2 * b for a, b in [(16, 6), (6, 6), (6, 10)])
    assert count_params(built.model)[0] == want


def test_a_template_use_is_named_after_the_template():
    built = build("input: [4]\ndefine:\n  Head: {layers: [{Linear: {out_features: 2}}]}\nlayers: [Head]\n")
    assert built.layers[0].name == "head_0" and built.layers[0].type == "Block"


def test_arguments_given_to_a_template_are_evaluated_where_it_is_used():
    # `k: c` passes the caller's c (3), not the template's param c (16); the default `m: "c * 2"`
    # reads the template's own c.
    built = build(
        """\
        input: [2, 8, 8]
        vars: {c: 3}
        define:
          T:
            params: {c: null, k: 1, m: "c * 2"}
            layers:
              - Conv2d: {out_channels: c, kernel_size: k}
              - Conv2d: {out_channels: m, kernel_size: 1}
        layers:
          - T: {c: 16, k: c}
        """
    )
    first, second = leaves(built, "Conv2d")
    assert first.args["kernel_size"] == 3 and first.out_shape == (16, 6, 6)
    assert second.out_shape[0] == 32


def test_each_entries_are_evaluated_against_the_copys_input():
    built = build(
        """\
        input: [4]
        layers:
          - Repeat:
              each: [{f: "in_features * 2"}, {f: "in_features + 1"}]
              layers: [{Linear: {out_features: f}}]
        """
    )
    assert [i.out_shape for i in leaves(built, "Linear")] == [(8,), (9,)]


def test_an_expression_times_inside_each_copies_is_bounded_by_the_layer_limit(monkeypatch):
    monkeypatch.setenv("NNCLI_MAX_LAYERS", "50")
    with pytest.raises(SpecError) as info:
        build(
            "input: [4]\nlayers:\n  - Repeat: {each: [{n: 10}, {n: 30}], layers: [{Repeat: {times: n, layers: [ReLU, ReLU]}}]}\n"
        )
    assert "the limit is 50" in str(info.value)


CUSTOM = """
from torch import nn


class Heads(nn.Module):
    def __init__(self, num_heads, dim, mode, sizes, extra=None):
        super().__init__()
        self.seen = dict(num_heads=num_heads, dim=dim, mode=mode, sizes=sizes, extra=extra)

    def forward(self, x):
        return x
"""


def test_custom_arguments_take_vars_and_expressions_and_dim_is_not_a_tensor_dimension(tmp_path):
    (tmp_path / "heads.py").write_text(CUSTOM)
    spec = tmp_path / "net.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            input: [4]
            vars: {h: 2}
            layers:
              - Custom:
                  target: heads.py:Heads
                  args: {num_heads: h, dim: "h * 8", mode: relu-like, sizes: [h, "h + 1"], extra: {k: "h // 2", w: word}}
            """
        )
    )
    from nncli.spec import load_spec

    built = build_model(load_spec(spec))
    assert built.model[0].seen == {
        "num_heads": 2,
        "dim": 16,  # beyond the [N, 4] input's dims: a Custom layer's own meaning
        "mode": "relu-like",
        "sizes": (2, 3),  # a list argument arrives as a tuple, as for every layer
        "extra": {"k": 1, "w": "word"},
    }


def test_a_custom_expression_over_known_names_that_fails_is_located(tmp_path):
    (tmp_path / "heads.py").write_text(CUSTOM)
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "input: [4]\nvars: {h: 0}\nlayers:\n  - Custom: {target: heads.py:Heads, args: {num_heads: 'h', dim: '4 // h', mode: a, sizes: 1}}\n"
    )
    from nncli.spec import load_spec

    with pytest.raises(SpecError) as info:
        build_model(load_spec(spec))
    assert "division by zero" in str(info.value) and info.value.line == 4


def test_init_values_take_vars():
    built = build(
        """\
        input: [4]
        vars: {v: 0.25}
        layers:
          - Linear: {out_features: 3, init: {weight: {constant: {val: "v * 2"}}, bias: {normal: {std: "v / 100"}}}}
        """
    )
    assert torch.equal(built.model[0].weight, torch.full((3, 4), 0.5))


def test_layer_norm_2d_normalises_the_channels_as_torchvisions():
    built = build("input: [6, 5, 4]\nlayers:\n  - LayerNorm2d: {eps: 1.0e-6}\n", dtype=torch.float64)
    module = built.model[0]
    assert [tuple(p.shape) for p in module.parameters()] == [(6,), (6,)]
    with torch.no_grad():
        module.weight.normal_()
        module.bias.normal_()
    x = torch.randn(3, 6, 5, 4, dtype=torch.float64)
    # torchvision's ConvNeXt LayerNorm2d: permute to channels-last, layer_norm, permute back
    want = F.layer_norm(x.permute(0, 2, 3, 1), (6,), module.weight, module.bias, 1e-6).permute(0, 3, 1, 2)
    assert (module(x) - want).abs().max() < 1e-12
    # and by hand: every position's channel vector has mean 0 and variance 1 before the affine
    mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    by_hand = (x - mean) / torch.sqrt(var + 1e-6) * module.weight.view(6, 1, 1) + module.bias.view(6, 1, 1)
    assert (module(x) - by_hand).abs().max() < 1e-12


@pytest.mark.parametrize(
    ("shape", "dim", "weight"),
    [([8, 5, 5], 1, (8, 1, 1)), ([7, 16], -1, (16,)), ([7, 16], 2, (16,)), ([7, 16], 1, (7, 1))],
)
def test_layer_scale_is_shaped_to_broadcast(shape, dim, weight):
    built = build(
        f"input: {shape}\nvars: {{s: 0.5}}\ninit: {{weight: kaiming_normal}}\nlayers:\n  - LayerScale: {{init: 's / 5', dim: {dim}}}\n"
    )
    module = built.model[0]
    assert tuple(module.weight.shape) == weight
    assert torch.equal(module.weight, torch.full(weight, 0.1))  # its own init, not the spec-wide default
    x = torch.randn(2, *shape)
    assert torch.equal(module(x), x * 0.1)


def test_layer_scale_refuses_the_batch_dim():
    with pytest.raises(SpecError) as info:
        build("input: [8, 5, 5]\nlayers:\n  - LayerScale: {dim: 0}\n")
    assert "dim 0 is the batch" in str(info.value) and info.value.line == 3


def test_position_embedding_with_max_length_adds_the_first_rows():
    built = build("input: [5, 8]\nlayers:\n  - PositionEmbedding: {max_length: 12}\n")
    module = built.model[0]
    assert tuple(module.weight.shape) == (12, 8)
    for length in (5, 3, 12):  # any length up to max_length
        x = torch.randn(2, length, 8)
        assert torch.equal(module(x), x + module.weight[:length].unsqueeze(0))
    with pytest.raises(ValueError, match="more than max_length=12"):
        module(torch.randn(2, 13, 8))
    # without max_length: part 2's tensor of the example's shape
    plain = build("input: [5, 8]\nlayers: [PositionEmbedding]\n").model[0]
    assert tuple(plain.weight.shape) == (1, 5, 8)


def test_position_embedding_longer_than_max_length_is_located():
    with pytest.raises(SpecError) as info:
        build("input: [20, 8]\nlayers:\n  - PositionEmbedding: {max_length: 16}\n")
    assert "20 positions, more than max_length=16" in str(info.value) and info.value.line == 3


MODERN = """\
input: [3, 16, 16]
vars: {c: 8}
define:
  CNBlock:
    params: {p: 0.0}
    layers:
      - Residual:
          body:
            - Conv2d: {out_channels: in_channels, kernel_size: 7, padding: 3, groups: in_channels}
            - Permute: {dims: [0, 2, 3, 1]}
            - LayerNorm: {eps: 1.0e-6}
            - Linear: {out_features: "4 * in_features"}
            - GELU
            - Linear: {out_features: "in_features // 4"}
            - Permute: {dims: [0, 3, 1, 2]}
            - LayerScale: {init: 0.5}
            - StochasticDepth: {p: p, mode: row}
layers:
  - Conv2d: {out_channels: c, kernel_size: 4, stride: 4}
  - LayerNorm2d: {eps: 1.0e-6}
  - Repeat: {times: 2, index: i, layers: [{CNBlock: {p: "0.1 * i"}}]}
  - AdaptiveAvgPool2d: {output_size: 1}
  - LayerNorm2d
  - Flatten
  - Linear: {out_features: 10}
"""


def modern_count(c: int = 8) -> int:
    block = (c * 49 + c) + 2 * c + (c * 4 * c + 4 * c) + (4 * c * c + c) + c
    return conv_params(3, c, 4) + 2 * c + 2 * block + 2 * c + (c * 10 + 10)


def test_every_command_runs_on_a_spec_with_the_new_layers(run_cli, tmp_path):
    path = tmp_path / "modern.yaml"
    path.write_text(MODERN)
    assert infer(parse_spec(MODERN)).output_shape == (10,)
    result = run_cli(["check", path, "--json"])
    assert result.code == 0, result.text
    assert not [f for f in json.loads(result.out)["findings"] if f["code"] == "layernorm-over-width"]
    result = run_cli(["params", path, "--json"])
    assert result.code == 0, result.text
    report = json.loads(result.out)
    assert report["total"] == modern_count()
    assert report["flops"] > 0
    result = run_cli(["diagram", path, "--expand", "-o", tmp_path / "net.dot"])
    assert result.code == 0, result.text
    assert "LayerScale" in (tmp_path / "net.dot").read_text()
    result = run_cli(["gradcheck", path, "-b", "2"])
    assert result.code == 0, result.text
    pytest.importorskip("onnx")
    result = run_cli(["export", path, "-o", tmp_path / "net.onnx"])
    assert result.code == 0, result.text
    assert (tmp_path / "net.onnx").stat().st_size > 0


def test_the_block_template_computes_convnexts_block():
    built = build(MODERN, dtype=torch.float64)
    model = built.model.eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    stem_conv, stem_norm, repeat = model[0], model[1], model[2]
    h = stem_norm(stem_conv(x))
    for copy in repeat:
        residual = copy[0][0]  # the copy, the template's Block, its Residual
        dw, _, norm, fc1, _, fc2, _, scale, _ = residual.body
        y = dw(h).permute(0, 2, 3, 1)
        y = fc2(F.gelu(fc1(F.layer_norm(y, (8,), norm.weight, norm.bias, 1e-6)))).permute(0, 3, 1, 2)
        h = h + scale.weight * y
    assert (model[:3](x) - h).abs().max() < 1e-12
    assert isinstance(model[1], nn.LayerNorm)  # LayerNorm2d's parameters are LayerNorm's


def test_each_entries_may_read_the_index():
    built = build(
        """\
        input: [4]
        layers:
          - Repeat: {index: i, each: [{f: "3 + i"}, {f: "3 + i"}, {f: "10 * i"}], layers: [{Linear: {out_features: f}}]}
        """
    )
    assert [i.out_shape for i in leaves(built, "Linear")] == [(3,), (4,), (20,)]


def test_a_build_error_inside_a_template_points_at_the_templates_line():
    with pytest.raises(SpecError) as info:
        build(
            """\
            input: [4]
            define:
              Head:
                params: {k: 0}
                layers:
                  - Linear: {out_features: "8 // k"}
            layers:
              - ReLU
              - Head
            """
        )
    assert info.value.line == 6 and info.value.spec_path == "define.Head.layers[0].Linear.out_features"
    assert "division by zero" in str(info.value)
