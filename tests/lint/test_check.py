"""``nncli check``: each lint rule fires on a minimal spec and stays quiet once it is fixed.

Parameter counts in the linear-collapse findings are worked out by hand below.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import SPECS

from nncli.lint import check_spec
from nncli.spec import parse_spec


def findings(text: str):
    return check_spec(parse_spec(textwrap.dedent(text), file="t.yaml")).findings


def codes(text: str) -> list[str]:
    return [f.code for f in findings(text)]


# -- linear collapse ----------------------------------------------------------------------------
def test_linear_linear_collapses():
    (f,) = findings("""
        input: [4]
        layers:
          - Linear: {out_features: 8}
          - Linear: {out_features: 3}
    """)
    assert (f.code, f.severity, f.spec_path, f.line) == ("linear-collapse", "warning", "layers[0]", 4)
    assert "layers[0] Linear -> layers[1] Linear" in f.message
    assert "just a linear predictor" in f.message
    # one Linear 4->3: 4*3 + 3 = 15 parameters, versus (4*8 + 8) + (8*3 + 3) = 67
    assert "one Linear 4->3 with 15 parameters" in f.message and "these 67" in f.message


def test_linear_batchnorm_linear_collapses():
    (f,) = [
        f
        for f in findings("""
        input: [4]
        layers:
          - Linear: {out_features: 8}
          - BatchNorm1d
          - Linear: {out_features: 3}
    """)
        if f.code == "linear-collapse"
    ]
    assert "layers[0] Linear -> layers[1] BatchNorm1d -> layers[2] Linear" in f.message
    # 15 for the one equivalent Linear; own: 40 + BatchNorm's 2*8 + 27 = 83
    assert "with 15 parameters" in f.message and "these 83" in f.message


def test_conv_conv_collapses_to_one_bigger_kernel():
    (f,) = findings("""
        input: [3, 16, 16]
        layers:
          - Conv2d: {out_channels: 8, kernel_size: 3}
          - Conv2d: {out_channels: 4, kernel_size: 3}
    """)
    assert f.code == "linear-collapse" and "layers[0] Conv2d -> layers[1] Conv2d" in f.message
    # two 3x3 convolutions = one 5x5: 3*4*5*5 + 4 = 304; own: (3*8*9 + 8) + (8*4*9 + 4) = 516
    assert "one Conv2d 3->4 with a 5x5 kernel" in f.message
    assert "304 parameters" in f.message and "these 516" in f.message


def test_conv_flatten_linear_collapses_to_a_dense_layer():
    (f,) = findings("""
        input: [3, 8, 8]
        layers:
          - Conv2d: {out_channels: 8, kernel_size: 3}
          - Flatten
          - Linear: {out_features: 5}
    """)
    # 3*8*8 = 192 inputs -> 5 outputs: 192*5 + 5 = 965
    assert "one Linear 192->5 with 965 parameters" in f.message


@pytest.mark.parametrize(
    "text",
    [
        "input: [4]\nlayers:\n  - Linear: {out_features: 8}\n  - ReLU\n  - Linear: {out_features: 3}\n",
        "input: [4]\nlayers:\n  - Linear: {out_features: 8, bias: false}\n  - BatchNorm1d\n  - ReLU\n"
        "  - Linear: {out_features: 3}\n",
        "input: [3, 16, 16]\nlayers:\n  - Conv2d: {out_channels: 8, kernel_size: 3}\n  - Tanh\n"
        "  - Conv2d: {out_channels: 4, kernel_size: 3}\n",
        "input: [3, 16, 16]\nlayers:\n  - Conv2d: {out_channels: 8, kernel_size: 3}\n"
        "  - MaxPool2d: {kernel_size: 2}\n  - Conv2d: {out_channels: 4, kernel_size: 3}\n",
    ],
)
def test_fixed_networks_are_clean(text):
    assert findings(text) == []


def test_collapse_through_repeat_copies():
    (f,) = findings("""
        input: [4]
        layers:
          - Repeat: {times: 3, layers: [{Linear: {out_features: 4}}]}
    """)
    assert f.code == "linear-collapse" and "3 weight layers" in f.message
    assert "(copy 1)" in f.message and "(copy 3)" in f.message
    assert "one Linear 4->4 with 20 parameters" in f.message and "these 60" in f.message


# -- softmax before a loss that takes logits -------------------------------------------------------
SOFTMAX = "input: [4]\nlayers:\n  - Linear: {out_features: 3}\n  - Softmax: {dim: 1}\n"


def test_softmax_last_with_cross_entropy_is_an_error():
    (f,) = findings(SOFTMAX + "train: {loss: cross_entropy}\n")
    assert (f.code, f.severity, f.spec_path) == ("softmax-before-loss", "error", "layers[1]")
    assert "takes logits" in f.message


def test_softmax_last_without_train_section_is_a_warning():
    (f,) = findings(SOFTMAX)  # cross_entropy is only the default loss: warn, do not fail
    assert f.severity == "warning"


def test_softmax_with_other_loss_or_not_last_is_quiet():
    assert findings(SOFTMAX + "train: {loss: mse}\n") == []
    assert findings("input: [4]\nlayers:\n  - Softmax: {dim: 1}\n  - Linear: {out_features: 3}\n") == []


def test_logsoftmax_is_info():
    (f,) = findings(
        "input: [4]\nlayers:\n  - Linear: {out_features: 3}\n  - LogSoftmax: {dim: 1}\ntrain: {loss: cross_entropy}\n"
    )
    assert (f.code, f.severity) == ("softmax-before-loss", "info")


# -- deep saturating stacks -------------------------------------------------------------------------
def _deep(times: int, act: str = "Sigmoid", extra: str = "") -> str:
    return (
        f"input: [16]\nlayers:\n  - Repeat:\n      times: {times}\n      layers: "
        f"[{{Linear: {{out_features: 16, bias: false}}}}, {extra}{act}]\n"
    )


def test_deep_sigmoid_warns_at_eight():
    (f,) = findings(_deep(8))
    assert (f.code, f.severity) == ("vanishing-risk", "warning") and "8 Sigmoid layers" in f.message
    assert codes(_deep(7)) == []
    assert codes(_deep(10, "Tanh")) == ["vanishing-risk"]


def test_deep_sigmoid_with_norm_or_skips_is_quiet():
    assert codes(_deep(12, extra="BatchNorm1d, ")) == []
    skip = (
        "input: [16]\nlayers:\n  - Repeat:\n      times: 10\n      layers:\n"
        "        - Residual: {body: [{Linear: {out_features: 16}}, Sigmoid]}\n"
    )
    assert codes(skip) == []


# -- bias / dropout right before BatchNorm -------------------------------------------------------
def test_bias_before_batchnorm():
    (f,) = findings("""
        input: [3, 8, 8]
        layers:
          - Conv2d: {out_channels: 8, kernel_size: 3}
          - BatchNorm2d
          - ReLU
    """)
    assert (f.code, f.severity, f.spec_path) == ("bias-before-norm", "warning", "layers[0]")
    assert "(8 parameters)" in f.message and "bias: false" in f.hint


def test_dropout_before_batchnorm():
    (f,) = findings("""
        input: [4]
        layers:
          - Linear: {out_features: 8, bias: false}
          - ReLU
          - Dropout: {p: 0.3}
          - BatchNorm1d
    """)
    assert (f.code, f.spec_path) == ("dropout-before-norm", "layers[2]")
    fixed = findings("""
        input: [4]
        layers:
          - Linear: {out_features: 8, bias: false}
          - BatchNorm1d
          - ReLU
          - Dropout: {p: 0.3}
    """)
    assert fixed == []


def test_repeat_copies_report_once():
    fs = findings("""
        input: [4]
        layers:
          - Repeat: {times: 5, layers: [{Linear: {out_features: 4}}, BatchNorm1d, ReLU]}
    """)
    assert [f.code for f in fs] == ["bias-before-norm"]


def test_step_in_a_trained_network_warns():
    assert codes("input: [4]\nlayers:\n  - Linear: {out_features: 3}\n  - Step\ntrain: {epochs: 1}\n") == [
        "step-no-gradient"
    ]
    assert codes("input: [4]\nlayers:\n  - Linear: {out_features: 3}\n  - Step\n") == []


# -- exit codes through the CLI ----------------------------------------------------------------
def test_exit_codes_and_strict(run_cli, write_spec):
    warn = write_spec(
        "input: [4]\nlayers:\n  - Linear: {out_features: 8}\n  - Linear: {out_features: 3}\n", "warn.yaml"
    )
    err = write_spec(SOFTMAX + "train: {loss: cross_entropy}\n", "err.yaml")
    info = write_spec("input: [4]\nlayers:\n  - Linear: {out_features: 3}\n  - LogSoftmax: {dim: 1}\n", "info.yaml")
    assert run_cli(["check", warn]).code == 0
    strict = run_cli(["check", "--strict", warn])
    assert strict.code == 1 and "--strict" in strict.err
    assert run_cli(["check", err]).code == 1
    assert run_cli(["check", "--strict", info]).code == 0  # a note is not a warning


def test_human_output_lists_layers_and_findings(run_cli):
    r = run_cli(["check", SPECS / "lenet5.yaml"])
    assert r.code == 0
    for text in (
        "C1",
        "Conv2d",
        "[N, 6, 28, 28]",
        "156",
        "output",
        "[N, 10]",
        "850",
        "61,706",
        "0 error(s), 0 warning(s)",
    ):
        assert text in r.out, text
    r = run_cli(["check", SPECS / "deep-sigmoid.yaml"])
    assert "warning" in r.out and "vanishing-risk" in r.out and "deep-sigmoid.yaml:9" in r.out


# -- the ready specs ---------------------------------------------------------------------------
EXPECTED_FINDINGS = {  # spec -> the only finding codes it may have
    "deep-sigmoid.yaml": ["vanishing-risk"],
    "deep-tanh-xavier.yaml": ["vanishing-risk"],
    # mirrors its reference model, which keeps Linear biases before BatchNorm1d
    "deep-residual-bn.yaml": ["bias-before-norm", "bias-before-norm"],
}


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.name)
def test_ready_specs_have_no_errors(path, run_cli):
    r = run_cli(["check", path, "--json"])
    assert r.code == 0, r.text
    doc = json.loads(r.out)
    assert doc["counts"]["error"] == 0
    assert sorted(f["code"] for f in doc["findings"]) == EXPECTED_FINDINGS.get(path.name, [])


def test_a_cheaper_factorisation_is_info_not_a_warning():
    # Depthwise 3x3 then pointwise 1x1 (MobileNet's separable convolution): one Conv2d 8->16 with
    # a 3x3 kernel has 8*16*9 + 16 = 1,168 parameters; the factored pair (8*9 + 8) + (8*16 + 16) = 224.
    (f,) = findings("""
        input: [8, 16, 16]
        layers:
          - Conv2d: {out_channels: 8, kernel_size: 3, padding: 1, groups: 8}
          - Conv2d: {out_channels: 16, kernel_size: 1}
    """)
    assert (f.code, f.severity) == ("linear-factorisation", "info")
    assert "one Conv2d 8->16 with a 3x3 kernel, 1,168 parameters" in f.message and "into 224" in f.message


# -- softmax over the batch ---------------------------------------------------------------------
@pytest.mark.parametrize("kind, dim", [("Softmax", 0), ("LogSoftmax", 0), ("Softmin", -3), ("Softmax", -2)])
def test_softmax_over_the_batch_is_an_error(kind, dim):
    text = f"""
        input: [{"4, 5" if dim == -3 else "4"}]
        layers:
          - Linear: {{out_features: 3}}
          - {kind}: {{dim: {dim}}}
          - Linear: {{out_features: 2}}
    """
    (f,) = [f for f in findings(text) if f.code == "softmax-over-batch"]
    assert (f.severity, f.spec_path, f.line) == ("error", "layers[1]", 5)
    assert "batch dimension" in f.message and "dim: -1" in f.hint
    assert "softmax-over-batch" not in codes(text.replace(f"dim: {dim}}}", "dim: -1}"))


def test_why_softmax_over_the_batch_is_wrong():
    """The finding's claim, checked with torch itself: over dim 0 one example's output moves when
    another example changes; over dim -1 it does not."""
    import torch

    x = torch.randn(2, 3)
    y = x.clone()
    y[1] += 1.0
    assert not torch.allclose(torch.softmax(x, 0)[0], torch.softmax(y, 0)[0])
    assert torch.equal(torch.softmax(x, -1)[0], torch.softmax(y, -1)[0])
