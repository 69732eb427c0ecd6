"""Property: a spec that ``check`` passes works in every other command.

Hypothesis writes small valid-looking specs (MLPs, 1-d and 2-d convolutions with pooling, token
ids through an Embedding with parameter-free layers before it and attention or a recurrent layer
after it, Parallel, Residual and Repeat blocks with every merge kind, a graph whose two named
inputs, float features or token ids, a ``Merge`` joins with every mode) with any batch size, and
a matching ``.npz`` of data, then runs ``check``, ``params``, ``diagram --format dot``,
``gradcheck``, ``probe``, ``train`` for one epoch, then ``export``, ``evaluate``, ``predict`` and
``attack`` of the run, in-process. No command may exit 3 (a crash), whatever the spec, and under
``--json`` stdout is one JSON document each time, with a message on every exit 2. When ``check``
exits 0, every other command exits 0 (probe 1 too: a verdict on the network's health), save
``attack`` of a run with a token input, which it refuses (exit 2, naming the tokens).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
def graph_spec(draw, tokens: bool) -> tuple[dict, dict]:
    """Two named inputs, one Linear each, joined by a Merge of any mode (``sub`` included); the
    second is float features, or with ``tokens`` token ids (an Embedding, then Flatten or the mean
    over positions)."""
    mode = draw(st.sampled_from(MERGES + ("sub",)))
    width = draw(st.integers(1, 5))
    widths = [draw(st.integers(1, 5)) if mode == "concat" else width for _ in "ab"]
    features = draw(st.integers(1, 4))
    inputs, data = {"a": [features]}, {"a": {"shape": [features]}}
    if tokens:
        length, high = draw(st.integers(2, 5)), draw(st.integers(2, 9))
        inputs["b"] = {"shape": [length], "dtype": "int64", "high": high}
        data["b"] = {"shape": [length], "high": high}
        pool = draw(st.sampled_from(["Flatten", {"Mean": {"dim": 1}}]))
        b_side = [{"Embedding": {"from": "b", "embedding_dim": draw(st.integers(1, 4))}}, pool]
        b_side.append({"Linear": {"name": "hb", "out_features": widths[1]}})
    else:
        inputs["b"] = [draw(st.integers(1, 4))]
        data["b"] = {"shape": inputs["b"]}
        b_side = [{"Linear": {"name": "hb", "from": "b", "out_features": widths[1]}}]
    layers = [
        {"Linear": {"name": "ha", "from": "a", "out_features": widths[0]}},
        *b_side,
        {"Merge": {"from": ["ha", "hb"], "mode": mode}},
        draw(st.sampled_from(ACTIVATIONS)),
    ]
    return {"inputs": inputs, "layers": layers}, {"inputs": data}


FAMILIES = ("mlp", "conv1d", "conv2d", "tokens", "graph", "graph-tokens")


@st.composite
def specs(draw, family: str | None = None) -> tuple[dict, dict, str]:
    """A spec (of ``family``, else any), its data's shapes, and the export format to try."""
    family = family or draw(st.sampled_from(FAMILIES))
    if family.startswith("graph"):
        spec, data = draw(graph_spec(tokens=family == "graph-tokens"))
    else:
        spec, data = draw(sequential_spec(family))
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
    for name, each in data.get("inputs", {"x": data}).items():
        if "high" in each:
            arrays[name] = rng.integers(0, each["high"], size=(n, *each["shape"])).astype("int64")
        else:
            arrays[name] = rng.normal(size=(n, *each["shape"])).astype("float32")
    np.savez(path, **arrays)


def has_tokens(data: dict) -> bool:
    return any("high" in each for each in data.get("inputs", {"x": data}).values())


def spec_commands(folder) -> list[tuple[str, list, tuple]]:
    """(name, argv, the exit codes allowed once check passed): each must work (probe's 1 is a
    finding about the network's health, not a refusal)."""
    spec = folder / "spec.yaml"
    return [
        ("params", ["params", spec, "--json"], (0,)),
        ("diagram", ["diagram", spec, "-o", folder / "d.dot", "--json"], (0,)),
        ("gradcheck", ["gradcheck", spec, "-b", "2", "-k", "2", "--json"], (0,)),
        ("probe", ["probe", spec, "--seeds", "0", "-b", "8", "--json"], (0, 1)),
        ("train", ["train", spec, "--out", folder / "run", "--device", "cpu", "--json"], (0,)),
    ]


def run_commands(folder, export: str, tokens: bool) -> list[tuple[str, list, tuple]]:
    """The same for the trained run. ``attack`` perturbs float inputs: token ids are refused."""
    run = folder / "run"
    attack = ["attack", run, "--eps", "0,0.1", "--steps", "2", "--limit", "8", "-b", "8", "--device", "cpu"]
    return [
        ("export", ["export", run, "-o", folder / f"m.{export}", "--json"], (0,)),
        ("evaluate", ["evaluate", run, "--device", "cpu", "--json"], (0,)),
        ("predict", ["predict", run, folder / "data.npz", "--device", "cpu", "--json"], (0,)),
        ("attack", attack + ["--json"], (2,) if tokens else (0,)),
    ]


def run_each(run_cli, commands, checked: bool, text: str) -> dict[str, tuple[int, dict]]:
    """Run each command: never a crash, one JSON document, a reason with every exit 2; once check
    passed, only the allowed codes."""
    results = {}
    for name, argv, allowed in commands:
        result = run_cli(argv)
        assert result.code != 3 and "Traceback" not in result.err, f"{name} crashed:\n{result.err}\n---\n{text}"
        document = json.loads(result.out)
        if result.code == 2:
            assert document.get("message"), f"{name}: exit 2 without a reason\n{text}"
        assert not checked or result.code in allowed, f"{name} exit {result.code} after check:\n{result.err}\n{text}"
        results[name] = result.code, document
    return results


def check_every_command(run_cli, folder, spec: dict, data: dict, export: str) -> None:
    text = yaml.safe_dump(spec, sort_keys=False)
    (folder / "spec.yaml").write_text(text)
    write_data(folder / "data.npz", data)
    result = run_cli(["check", folder / "spec.yaml", "--json"])
    assert result.code in (0, 1, 2), (result.code, result.err, text)
    json.loads(result.out)
    checked = result.code == 0
    trained = run_each(run_cli, spec_commands(folder), checked, text)["train"][0] == 0
    if not trained:
        return  # check refused the spec and train with it: no run to go on with
    assert (folder / "run" / "report.json").is_file(), f"train exit 0 without a run\n{text}"
    done = run_each(run_cli, run_commands(folder, export, has_tokens(data)), checked, text)
    if checked and has_tokens(data):
        assert "token" in done["attack"][1]["message"], done["attack"][1]


# The fixtures hold for the whole test, every example of it: one torch thread, a wide COLUMNS
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}


# The default suite: the same few examples of each family every time (CI stays deterministic)
@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=3, derandomize=True, **SETTINGS)
@given(data=st.data())
def test_specs_check_passes_work_in_every_command(family, data, tmp_path_factory, run_cli, one_torch_thread):
    check_every_command(run_cli, tmp_path_factory.mktemp("prop"), *data.draw(specs(family)))


# The slow suite: new random examples each time, NNCLI_PROPERTY_EXAMPLES in all, shared evenly by
# the families (drawn from all at once, some families came up far less often than others)
LONG_EXAMPLES = max(1, int(os.environ.get("NNCLI_PROPERTY_EXAMPLES", "300")) // len(FAMILIES))


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=LONG_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_specs_check_passes_work_in_every_command_long(family, data, tmp_path_factory, run_cli, one_torch_thread):
    check_every_command(run_cli, tmp_path_factory.mktemp("prop"), *data.draw(specs(family)))
