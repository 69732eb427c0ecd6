"""The spec layer (nncli.spec): YAML -> frozen, validated objects, positions kept, no torch."""

from __future__ import annotations

import dataclasses
import subprocess
import textwrap

import pytest
from conftest import PYTHON, ROOT, SPECS, subprocess_env

from nncli.errors import SpecError
from nncli.spec import CustomSpec, RepeatSpec, ResidualSpec, Spec, load_spec, parse_spec


def parse(text: str, **kw) -> Spec:
    return parse_spec(textwrap.dedent(text), file="t.yaml", **kw)


def test_all_ready_specs_load():
    for path in sorted(SPECS.glob("*.yaml")):
        spec = load_spec(path)
        assert spec.layers and spec.input and spec.path == path


def test_forms_of_a_layer():
    spec = parse("""
        name: forms
        input: [3, 8, 8]
        layers:
          - BatchNorm2d                                   # bare name
          - Conv2d: {out_channels: 4, kernel_size: 3}     # flow mapping
          - Conv2d:                                       # block mapping
              out_channels: 2
              kernel_size: 1
              name: head
          - ReLU:                                         # a name with an empty mapping
    """)
    assert spec.name == "forms" and spec.input == (3, 8, 8)
    bn, conv, head, relu = spec.layers
    assert (bn.type, dict(bn.args)) == ("BatchNorm2d", {})
    assert (conv.type, dict(conv.args)) == ("Conv2d", {"out_channels": 4, "kernel_size": 3})
    assert head.name == "head" and "name" not in head.args  # reserved keys are not torch args
    assert (relu.type, dict(relu.args)) == ("ReLU", {})


def test_input_shorthand_and_default_name():
    spec = parse("input: 784\nlayers: [ReLU]\n")
    assert spec.input == (784,)
    assert spec.name == "t"  # the file's stem when the spec has no name


def test_composites_and_init():
    spec = parse(
        """
        input: [4]
        init: {weight: {normal_: {std: 0.02}}, bias: zeros}
        layers:
          - Residual:
              name: block
              body: [{Linear: {out_features: 4, init: {weight: lecun_normal}}}, ReLU]
          - Residual:
              body: [{Linear: {out_features: 8}}]
              shortcut: [{Linear: {out_features: 8}}]
          - Repeat: {times: 3, layers: [{Linear: {out_features: 8}}, Tanh]}
          - Custom: {target: "swish_layers.py:Swish", args: {beta: 2.0}}
    """,
        base_dir=SPECS,
    )
    # torch's in-place spelling normal_ is accepted as normal
    assert spec.init["weight"].scheme == "normal" and dict(spec.init["weight"].kwargs) == {"std": 0.02}
    assert spec.init["bias"].scheme == "zeros"
    res, proj, rep, custom = spec.layers
    assert isinstance(res, ResidualSpec) and res.name == "block" and res.shortcut == ()
    assert [l.type for l in res.body] == ["Linear", "ReLU"]
    assert res.body[0].init["weight"].scheme == "lecun_normal"
    assert isinstance(proj, ResidualSpec) and [l.type for l in proj.shortcut] == ["Linear"]
    assert isinstance(rep, RepeatSpec) and rep.times == 3 and len(rep.layers) == 2
    assert isinstance(custom, CustomSpec) and custom.target == "swish_layers.py:Swish"
    assert dict(custom.args) == {"beta": 2.0} and custom.base_dir == SPECS
    # walk() visits composites before their contents, depth first
    assert [l.type for l in spec.walk()] == [
        "Residual",
        "Linear",
        "ReLU",
        "Residual",
        "Linear",
        "Linear",
        "Repeat",
        "Linear",
        "Tanh",
        "Custom",
    ]


def test_spec_objects_are_frozen():
    spec = parse("input: [4]\nlayers: [{Linear: {out_features: 2}}]\n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"
    with pytest.raises(TypeError):  # args is a read-only mapping
        spec.layers[0].args["out_features"] = 3


def test_positions_and_spec_paths():
    spec = parse("""\
        input: [4]
        layers:
          - Linear: {out_features: 3}
          - Repeat:
              times: 2
              layers:
                - Linear:
                    out_features: 3
                    bias: false
        train: {loss: cross_entropy, lr: 0.1}
    """)
    lin, rep = spec.layers
    assert (lin.where.line, lin.where.column, lin.path) == (3, 5, "layers[0]")
    assert (rep.where.line, rep.path) == (4, "layers[1]")
    inner = rep.layers[0]
    assert inner.path == "layers[1].Repeat.layers[0]" and inner.where.line == 7
    bias = inner.arg_where["bias"]
    assert (bias.line, bias.spec_path) == (9, "layers[1].Repeat.layers[0].Linear.bias")
    # Spec.error locates a key of the raw train section for the train code
    err = spec.error(("train", "lr"), "expected a positive number, found 0.1")
    assert isinstance(err, SpecError)
    assert (err.file, err.line, err.spec_path) == ("t.yaml", 10, "train.lr")
    assert str(err).startswith("t.yaml:10:")


def test_merge_keys_may_be_overridden():
    # A YAML anchor reused with an override is plain YAML, not a duplicate key.
    spec = parse("""
        input: [3, 16, 16]
        layers:
          - Conv2d: &conv {out_channels: 8, kernel_size: 3, padding: 1}
          - Conv2d: {<<: *conv, stride: 2, padding: 0}
    """)
    assert dict(spec.layers[1].args) == {"out_channels": 8, "kernel_size": 3, "padding": 0, "stride": 2}


def test_an_anchor_holding_a_merge_can_be_aliased_again():
    """flatten_mapping rewrites the shared node: a second alias of it is no "duplicate key".
    The reference is PyYAML's own reading of the same text."""
    import yaml

    text = textwrap.dedent("""
        input: [3, 8, 8]
        layers:
          - Conv2d: &c1 {out_channels: 4, kernel_size: 3}
          - Conv2d: &c2 {<<: *c1, padding: 1}
          - Conv2d: *c2
          - Conv2d: {<<: *c2, out_channels: 8}
    """)
    spec = parse(text)
    expected = [next(iter(layer.values())) for layer in yaml.safe_load(text)["layers"]]
    assert [dict(layer.args) for layer in spec.layers] == expected
    assert expected[2] == {"out_channels": 4, "kernel_size": 3, "padding": 1}


def test_a_long_plain_spec_is_no_alias_bomb():
    """The alias budget counts only values that aliases repeat: 30,000 written-out layers (about
    90,000 YAML values) stay within the layer limit and parse."""
    from nncli.spec import parse_spec

    text = "input: [4]\nlayers:\n" + "  - Linear: {out_features: 4, bias: false}\n" * 30_000
    assert len(parse_spec(text).layers) == 30_000


def test_data_and_train_sections_are_kept_raw():
    spec = parse("""
        input: [2]
        layers: [{Linear: {out_features: 2}}]
        data: {name: moons, n: 100}
        train: {epochs: 3}
    """)
    assert dict(spec.data) == {"name": "moons", "n": 100} and dict(spec.train) == {"epochs": 3}


@pytest.mark.parametrize(
    "text, spec_path, found",
    [
        ("input: [4]\nlayers:\n  - Repeat: {times: 1.5, layers: [ReLU]}\n", "layers[0].Repeat.times", "1.5"),
        ("input: [4]\nlayers:\n  - Repeat: {times: true, layers: [ReLU]}\n", "layers[0].Repeat.times", "True"),
        ("input: [4]\nlayers: [ReLU]\ninit: {weight: [normal]}\n", "init.weight", "a list"),
        ("input: [4]\nlayers: [ReLU]\ninit: {weight: {normal: 0.1}}\n", "init.weight.normal", "0.1"),
        ("input: [4]\nlayers: [ReLU]\ninit: {weight: {normal: {}, zeros: {}}}\n", "init.weight", "normal, zeros"),
        ("input: [4]\nname: ''\nlayers: [ReLU]\n", "name", "''"),
        ("input: []\nlayers: [ReLU]\n", "input", "a list"),
        ("input: [4]\nlayers:\n  - Residual: {body: [ReLU], extra: 1}\n", "layers[0].Residual.extra", "unknown key"),
        ("input: [4]\nlayers:\n  - Custom: {target: 'x.py:A', args: [1]}\n", "layers[0].Custom.args", "a list"),
        ("input: [4]\nlayers:\n  - 'Lin ear'\n", "layers[0]", "'Lin ear'"),
    ],
)
def test_structural_errors(text, spec_path, found):
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="t.yaml")
    err = info.value
    assert err.spec_path == spec_path and err.file == "t.yaml" and err.line is not None
    assert found in err.message


def test_spec_layer_never_imports_torch():
    # the spec/ package is pure Python (torch takes seconds to load).
    code = (
        "import sys; from nncli.spec import load_spec; "
        f"s = load_spec({str(SPECS / 'resnet50.yaml')!r}); "
        "assert s.layers; print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, cwd=ROOT, env=subprocess_env(), timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _python_parser_document(text, monkeypatch):
    """The Document PyYAML's pure-Python parser gives (libyaml's C parser switched off)."""
    import nncli.spec.source as source

    with monkeypatch.context() as m:
        m.setattr(source, "_C_LOADER", None)
        return source.parse_yaml(text, "x.yaml")


def test_c_parser_gives_the_python_parsers_values_and_positions(monkeypatch):
    """Every spec shipped or used by the tests: the fast (libyaml) path and PyYAML's own parser
    agree on the data and on the line/column of every value and key."""
    import yaml

    import nncli.spec.source as source

    if getattr(yaml, "CSafeLoader", None) is None:
        pytest.skip("PyYAML was built without libyaml")
    files = sorted(SPECS.rglob("*.yaml")) + sorted((ROOT / "tests").rglob("*.yaml"))
    compared = 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            slow = _python_parser_document(text, monkeypatch)
        except SpecError as err:
            # a text PyYAML refuses is refused with PyYAML's own wording on the fast path too
            with pytest.raises(SpecError) as fast_err:
                source.parse_yaml(text, "x.yaml")
            assert str(fast_err.value) == str(err), path
            continue
        fast = source.parse_yaml(text, "x.yaml")
        assert (fast.data, fast.values, fast.keys) == (slow.data, slow.values, slow.keys), path
        compared += 1
    assert compared > 100, compared
    # libyaml accepts tabs as separators where PyYAML refuses them: refused on both paths
    for text in ("a: 1\t\n", "a:\t{b: 1}\n", "a: [1,\t2]\n", "- 1\t# c\n"):
        with pytest.raises(SpecError) as slow:
            _python_parser_document(text, monkeypatch)
        with pytest.raises(SpecError) as fast:
            source.parse_yaml(text, "x.yaml")
        assert str(fast.value) == str(slow.value), text
