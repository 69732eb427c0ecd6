"""Property: a spec that ``check`` passes works in every other command, or is refused cleanly.

Hypothesis writes small valid-looking specs (MLPs, 1-d and 2-d convolutions with pooling, token
ids through an Embedding with parameter-free layers before it and attention or a recurrent layer
after it, Parallel, Residual and Repeat blocks with every merge kind, a graph whose named inputs
a ``Merge`` joins with every mode) with any batch size, and a matching ``.npz`` of data, then runs ``check``, ``params``, ``diagram --format dot``, ``gradcheck``, ``probe``,
``train`` for one epoch and ``export`` in-process. No command may exit 3 (a crash), whatever the
spec. When ``check`` exits 0, every other command exits 0, or 1 where it is a check that found
something (probe's vanishing/exploding verdict), or refuses with exit 2 and a message; under
``--json`` stdout is one JSON document each time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nncli import cli

MERGES = ("concat", "add", "mul", "mean", "max")
CLASSES = 3
ACTIVATIONS = (
    "ReLU",
    "Tanh",
    "GELU",
    "Sigmoid",
    "SiLU",
    "Identity",
    {"LeakyReLU": {"negative_slope": 0.1}},
    {"Dropout": {"p": 0.2}},
    {"Dropout": {"p": 0.0}},
    {"Dropout": {"p": 1.0}},
)
BEFORE_EMBEDDING = (  # parameter-free layers that pass token ids through (or should be refused)
    "Identity",
    "ReLU",
    "Tanh",
    {"Dropout": {"p": 0.3}},
    {"Narrow": {"dim": 1, "start": 0, "length": 3}},
    {"Parallel": {"branches": [["Identity"], ["Identity"]], "merge": "add"}},
    {"Parallel": {"branches": [["Identity"], ["Identity"]], "merge": "max"}},
)


@st.composite
def parallel(draw, widen, width: int, features: int) -> tuple[dict, int]:
    """A Parallel of 2-3 branches, each ending in ``widen(out)``: equal outputs unless concat,
    which joins them along ``features`` (the features' dim) and gives the sum of their widths."""
    merge = draw(st.sampled_from(MERGES))
    branches, outs = [], []
    for _ in range(draw(st.integers(2, 3))):
        outs.append(draw(st.integers(1, 6)) if merge == "concat" else width)
        branch = [widen(outs[-1])]
        if draw(st.booleans()):
            branch.append(draw(st.sampled_from(ACTIVATIONS)))
        branches.append(branch)
    block = {"branches": branches, "merge": merge}
    if merge != "concat":
        return {"Parallel": block}, width
    if features != 1 or draw(st.booleans()):
        block["dim"] = features
    return {"Parallel": block}, sum(outs)


@st.composite
def body(draw, widen, norm: str, width: int, features: int = 1) -> list:
    """0-3 layers over a tensor whose features (at dim ``features``) ``widen`` sets."""
    layers = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["widen", "act", "norm", "parallel", "residual", "repeat"]))
        if kind == "widen":
            width = draw(st.integers(1, 6))
            layers.append(widen(width))
        elif kind == "act":
            layers.append(draw(st.sampled_from(ACTIVATIONS)))
        elif kind == "norm":
            layers.append(norm)
        elif kind == "parallel":
            block, width = draw(parallel(widen, width, features))
            layers.append(block)
        elif kind == "residual":
            inner = draw(
                st.sampled_from([widen(width), {"Parallel": {"branches": [[widen(width)], []], "merge": "mean"}}])
            )
            layers.append({"Residual": {"body": [inner, draw(st.sampled_from(ACTIVATIONS))]}})
        else:
            times = draw(st.integers(1, 3))
            layers.append({"Repeat": {"times": times, "layers": [widen(width), draw(st.sampled_from(ACTIVATIONS))]}})
    return layers


@st.composite
def sequence_layers(draw, dim: int) -> list:
    """After the Embedding: attention over the embedding width, or a recurrent layer."""
    kind = draw(st.sampled_from(["none", "attention", "rnn"]))
    if kind == "attention":
        attention = {"SelfAttention": {"num_heads": 1, "causal": draw(st.booleans())}}
        return [linear(dim), {"Residual": {"body": ["LayerNorm", attention]}}]
    if kind == "rnn":
        cell = draw(st.sampled_from(["RNN", "GRU", "LSTM"]))
        args = {"hidden_size": draw(st.integers(1, 4)), "bidirectional": draw(st.booleans())}
        if draw(st.booleans()):
            args["returns"] = "last"
        return [{cell: args}]
    return []


def linear(out: int) -> dict:
    return {"Linear": {"out_features": out}}


def conv(dims: int):
    return lambda out: {f"Conv{dims}d": {"out_channels": out, "kernel_size": 3, "padding": 1}}


@st.composite
def sequential_spec(draw, family: str) -> tuple[dict, dict]:
    """A one-input spec (MLP, conv or tokens) and the shape/dtype of its data."""
    if family == "mlp":
        features = draw(st.integers(1, 5))
        spec = {"input": [features], "layers": draw(body(linear, "LayerNorm", features))}
        return spec, {"shape": [features]}
    if family.startswith("conv"):
        dims = int(family[4])
        channels, side = draw(st.integers(1, 3)), draw(st.integers(2, 6))
        layers = draw(body(conv(dims), f"BatchNorm{dims}d", channels))
        pool = draw(st.sampled_from(["", "MaxPool", "AvgPool", "AdaptiveAvgPool"]))
        if pool:
            size = {"output_size": 1} if pool.startswith("Adaptive") else {"kernel_size": 2}
            layers.append({f"{pool}{dims}d": size})
        spec = {"input": [channels] + [side] * dims, "layers": layers + ["Flatten"]}
        return spec, {"shape": [channels] + [side] * dims}
    length, high, dim = draw(st.integers(3, 6)), draw(st.integers(2, 12)), draw(st.integers(2, 6))
    before = draw(st.lists(st.sampled_from(BEFORE_EMBEDDING), max_size=2))
    layers = before + [{"Embedding": {"embedding_dim": dim}}] + draw(body(linear, "LayerNorm", dim, features=-1))
    layers += draw(sequence_layers(dim))
    spec = {"input": {"shape": [length], "dtype": "int64", "high": high}, "layers": layers + ["Flatten"]}
    return spec, {"shape": [length], "high": high}


@st.composite
def graph_spec(draw) -> tuple[dict, dict]:
    """Two named inputs, one Linear each, joined by a Merge of any mode (``sub`` included)."""
    mode = draw(st.sampled_from(MERGES + ("sub",)))
    width = draw(st.integers(1, 5))
    widths = [draw(st.integers(1, 5)) if mode == "concat" else width for _ in "ab"]
    layers = [
        {"Linear": {"name": "ha", "from": "a", "out_features": widths[0]}},
        {"Linear": {"name": "hb", "from": "b", "out_features": widths[1]}},
        {"Merge": {"from": ["ha", "hb"], "mode": mode}},
        draw(st.sampled_from(ACTIVATIONS)),
    ]
    features = [draw(st.integers(1, 4)), draw(st.integers(1, 4))]
    return {"inputs": {"a": [features[0]], "b": [features[1]]}, "layers": layers}, {"inputs": features}


@st.composite
def specs(draw) -> tuple[dict, dict, str]:
    """A spec, its data's shapes, and the export format to try."""
    family = draw(st.sampled_from(["mlp", "conv1d", "conv2d", "tokens", "graph"]))
    spec, data = draw(graph_spec() if family == "graph" else sequential_spec(family))
    spec = {"name": "prop", **spec}
    spec["layers"] = spec["layers"] + [linear(CLASSES)]
    spec["data"] = {"path": "data.npz"}
    # 40 examples split three ways: some batch sizes leave a last batch of one (BatchNorm's trouble)
    spec["train"] = {"batch_size": draw(st.integers(1, 30)), "epochs": 1, "seed": 0, "lr": 0.01}
    return spec, data, draw(st.sampled_from(["onnx", "pt", "safetensors"]))


def write_data(path, data: dict, n: int = 40) -> None:
    """``n`` random examples of the spec's inputs and labels in ``[0, CLASSES)``."""
    rng = np.random.default_rng(0)
    arrays = {"y": rng.integers(0, CLASSES, size=n).astype("int64")}
    if "inputs" in data:
        for name, features in zip("ab", data["inputs"]):
            arrays[name] = rng.normal(size=(n, features)).astype("float32")
    elif "high" in data:
        arrays["x"] = rng.integers(0, data["high"], size=(n, *data["shape"])).astype("int64")
    else:
        arrays["x"] = rng.normal(size=(n, *data["shape"])).astype("float32")
    np.savez(path, **arrays)


def run(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def commands(folder, export: str) -> list[tuple[str, list, tuple]]:
    """(name, argv after the spec, the exit codes that mean "worked or refused cleanly")."""
    spec = folder / "spec.yaml"
    return [
        ("params", ["params", spec, "--json"], (0, 2)),
        ("diagram", ["diagram", spec, "-o", folder / "d.dot", "--json"], (0, 2)),
        ("gradcheck", ["gradcheck", spec, "-b", "2", "-k", "2", "--json"], (0, 2)),
        ("probe", ["probe", spec, "--seeds", "0", "-b", "8", "--json"], (0, 1, 2)),
        ("train", ["train", spec, "--out", folder / "run", "--device", "cpu", "--json"], (0, 2)),
        ("export", ["export", folder / "run", "-o", folder / f"m.{export}", "--json"], (0, 2)),
    ]


def check_every_command(folder, spec: dict, data: dict, export: str) -> None:
    text = yaml.safe_dump(spec, sort_keys=False)
    (folder / "spec.yaml").write_text(text)
    write_data(folder / "data.npz", data)
    code, out, err = run(["check", folder / "spec.yaml", "--json"])
    assert code in (0, 1, 2), (code, err, text)
    json.loads(out)
    checked = code == 0
    for name, argv, allowed in commands(folder, export):
        if name == "export" and not (folder / "run" / "report.json").exists():
            continue  # nothing trained to export
        code, out, err = run(argv)
        assert code != 3 and "Traceback" not in err, f"{name} crashed:\n{err}\n---\n{text}"
        document = json.loads(out)
        if code == 2:
            assert document.get("message"), f"{name}: exit 2 without a reason\n{text}"
        assert not checked or code in allowed, f"{name} exit {code} after check passed:\n{err}\n---\n{text}"


def _case(case, tmp_path_factory) -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("COLUMNS", "400")
    check_every_command(tmp_path_factory.mktemp("prop"), *case)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=specs())
def test_specs_check_passes_work_in_every_command(case, tmp_path_factory):
    _case(case, tmp_path_factory)


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("NNCLI_PROPERTY_EXAMPLES", "300")), deadline=None)
@given(case=specs())
def test_specs_check_passes_work_in_every_command_long(case, tmp_path_factory):
    _case(case, tmp_path_factory)
