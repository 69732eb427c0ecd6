"""``layernorm-over-width``: a plain LayerNorm on a channels-first map normalises the width.

It fires where the 4-D tensor comes from a convolution, a pooling or a channels-first norm (or
is the image input itself), and stays quiet once the channels are moved last, for LayerNorm2d,
and for a LayerNorm over several trailing dims chosen on purpose.
"""

from __future__ import annotations

import textwrap

import pytest

from nncli.lint import check_spec
from nncli.spec import parse_spec


def width_findings(layers: str, input_shape: str = "[3, 16, 12]"):
    text = f"input: {input_shape}\nlayers:\n" + textwrap.indent(textwrap.dedent(layers), "  ")
    return [f for f in check_spec(parse_spec(text, file="t.yaml")).findings if f.code == "layernorm-over-width"]


@pytest.mark.parametrize(
    "layers",
    [
        "- Conv2d: {out_channels: 8, kernel_size: 3}\n- LayerNorm\n",
        "- Conv2d: {out_channels: 8, kernel_size: 3}\n- ReLU\n- Dropout\n- LayerNorm\n",
        "- MaxPool2d: {kernel_size: 2}\n- LayerNorm\n",
        "- LayerNorm\n",  # the image input itself is channels-first
    ],
)
def test_a_layer_norm_over_a_channels_first_width_warns(layers):
    (finding,) = width_findings(layers)
    assert finding.severity == "warning"
    assert "normalises the last dimension" in finding.message and "the width" in finding.message
    assert "LayerNorm2d" in finding.hint
    assert finding.line == 3 + layers.count("\n") - 1  # the LayerNorm's own line


@pytest.mark.parametrize(
    "layers",
    [
        "- Conv2d: {out_channels: 8, kernel_size: 3}\n- Permute: {dims: [0, 2, 3, 1]}\n- LayerNorm\n",
        "- Conv2d: {out_channels: 8, kernel_size: 3}\n- Permute: {dims: [0, 2, 3, 1]}\n- GELU\n- LayerNorm\n",
        "- Conv2d: {out_channels: 8, kernel_size: 3}\n- LayerNorm2d\n",
        "- Conv2d: {out_channels: 8, kernel_size: 3}\n- LayerNorm: {normalized_shape: [14, 10]}\n",
        "- Flatten: {start_dim: 2}\n- LayerNorm\n",  # a sequence [N, C, L]: not a 4-D map
    ],
)
def test_channels_last_layer_norm_2d_and_deliberate_shapes_are_quiet(layers):
    assert width_findings(layers) == []
