"""How each kind of node and edge looks: shapes and colours per layer category, the legend's words.

Shapes differ as well as colours, so the kinds stay apart in greyscale print.
"""

from __future__ import annotations

# Node style per category: (legend text, graphviz node attributes).
STYLES: dict[str, tuple[str, dict[str, str]]] = {
    "weight": (
        "layer with weights (Linear, Conv, ...)",
        {"shape": "box", "style": "filled", "fillcolor": "#cfe2f3", "color": "#1f4e79"},
    ),
    "activation": (
        "activation (ellipse)",
        {"shape": "ellipse", "style": "filled", "fillcolor": "#fde9c9", "color": "#b45f06"},
    ),
    "norm": (
        "normalisation",
        {"shape": "box", "style": "filled,diagonals", "fillcolor": "#d9ead3", "color": "#38761d"},
    ),
    "pool": (
        "pooling / reshape",
        {"shape": "box", "style": "filled,rounded", "fillcolor": "#e8e8e8", "color": "#555555"},
    ),
    "dropout": ("dropout (dashed)", {"shape": "box", "style": "dashed", "color": "#555555"}),
    "custom": (
        "Custom layer (double border)",
        {"shape": "box", "style": "filled", "fillcolor": "#ead1dc", "color": "#741b47", "peripheries": "2"},
    ),
    "block": (
        "collapsed block (Repeat, Residual, Parallel, Block)",
        {"shape": "box3d", "style": "filled", "fillcolor": "#fff2cc", "color": "#7f6000", "margin": "0.12,0.08"},
    ),
    "other": ("other layer", {"shape": "box", "style": "solid", "color": "#000000"}),
    "io": ("input / output", {"shape": "parallelogram", "style": "bold", "color": "#000000"}),
}
# A Residual's fork (a dot) and add (a circled +) nodes.
FORK = {"shape": "point", "width": "0.09", "color": "#cc0000"}
ADD = {
    "shape": "circle",
    "label": "+",
    "width": "0.3",
    "fixedsize": "true",
    "style": "filled",
    "fillcolor": "#f4cccc",
    "color": "#cc0000",
    "fontsize": "14",
}
# A Parallel's merge node: a circle for a one-symbol operation (+, ×), a small rounded box for
# the words (concat, mean, max).
MERGE_SYMBOL = {
    "shape": "circle",
    "width": "0.3",
    "fixedsize": "true",
    "style": "filled",
    "fillcolor": "#cfe2f3",
    "color": "#1f4e79",
    "fontsize": "14",
}
MERGE_WORD = {
    "shape": "box",
    "style": "filled,rounded",
    "fillcolor": "#cfe2f3",
    "color": "#1f4e79",
    "fontsize": "10",
    "height": "0.25",
    "margin": "0.06,0.02",
}
# Cluster frames: (style, colour) per group kind.
GROUP_STYLES = {
    "residual": ("rounded,dashed", "#cc0000"),
    "repeat": ("rounded", "#7f6000"),
    "parallel": ("rounded,dashed", "#1f4e79"),
    "block": ("rounded,bold", "#444444"),
    "layer": ("rounded", "#999999"),
}
SKIP_COLOR = "#cc0000"
POSITIVE, NEGATIVE = "#1f5fbf", "#d62728"  # neuron view: sign of an initial weight
