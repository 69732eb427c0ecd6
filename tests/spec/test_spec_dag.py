"""Named tensors in the spec: inputs, outputs, from, share, tie, memory, Merge; their scopes."""

from __future__ import annotations

import pytest

from nncli.errors import SpecError
from nncli.spec import MergeSpec, parse_spec


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    return info.value


def test_inputs_and_keys_parse():
    spec = parse_spec(
        "inputs:\n  left: [1, 4, 4]\n  ids: {shape: [3], dtype: int64, high: 7}\noutputs: [b, a]\nlayers:\n"
        "  - Flatten: {name: a, from: left}\n  - Embedding: {name: e, from: ids, embedding_dim: 2}\n"
        "  - Linear: {name: b, from: a, out_features: 2}\n  - Merge: {from: [a, b], mode: concat, dim: -1}\n"
    )
    assert spec.graph
    assert [(i.name, i.shape, i.dtype, i.high) for i in spec.inputs] == [
        ("left", (1, 4, 4), "float32", None),
        ("ids", (3,), "int64", 7),
    ]
    assert spec.input == (1, 4, 4) and spec.outputs == ("b", "a")
    assert spec.layers[2].source == "a"
    merge = spec.layers[3]
    assert isinstance(merge, MergeSpec) and merge.sources == ("a", "b") and merge.dim == -1


def test_plain_spec_is_not_a_graph():
    assert not parse_spec("input: [3]\nlayers:\n  - Linear: {name: x, out_features: 2}\n").graph


def test_unknown_name_lists_names_in_scope():
    err = _error(
        "inputs:\n  a: [3]\n  b: [3]\nlayers:\n  - Linear: {name: h, from: a, out_features: 2}\n  - ReLU: {from: c}\n"
    )
    assert err.line == 6 and "'c'" in str(err) and "names in scope: a, b, h" in str(err)


def test_name_defined_later_is_refused():
    err = _error("input: [3]\nlayers:\n  - ReLU: {from: later}\n  - ReLU: {name: later}\n")
    assert "defined later" in str(err) and err.line == 3


def test_names_inside_a_block_stay_inside():
    err = _error(
        "input: [3]\nlayers:\n  - Block: {name: blk, layers: [{Linear: {name: inner, out_features: 3}}]}\n"
        "  - ReLU: {from: inner}\n"
    )
    assert "not in scope" in str(err) and "names in scope: input, blk" in str(err)


def test_a_block_sees_enclosing_names():
    spec = parse_spec(
        "input: [3]\nlayers:\n  - ReLU: {name: outer}\n  - Block: {layers: [{Linear: {from: outer, out_features: 3}}]}\n"
    )
    assert spec.layers[1].layers[0].source == "outer"


def test_duplicate_name_in_scope_is_refused():
    err = _error("input: [3]\nlayers:\n  - ReLU: {name: a}\n  - Tanh: {name: a, from: input}\n")
    assert "already defined (line 3)" in str(err)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input: [3]\nlayers:\n  - ReLU: {name: a}\n  - Linear: {share: a, out_features: 3}\n", "takes no arguments"),
        ("input: [3]\nlayers:\n  - Linear: {out_features: 3, memory: input}\n", "`memory` is the second tensor"),
        ("input: [3, 4]\nlayers:\n  - CrossAttention: {num_heads: 2}\n", "needs `memory`"),
        ("input: [3]\ninputs: {a: [3]}\nlayers: [ReLU]\n", "not both"),
        ("inputs: {a: [3], b: [3]}\nlayers:\n  - Merge: {from: [a], mode: sub}\n", "takes two tensors"),
        ("inputs: {a: [3]}\nlayers:\n  - Linear: {share: a}\n", "is an input, not an element"),
        ("input: [3]\noutputs: [nope]\nlayers: [ReLU]\n", "unknown name 'nope'"),
        ("input: [3]\nlayers:\n  - Residual: {body: [{ReLU: {from: input}}]}\n", "not inside Residual"),
        ("input: [3]\nlayers:\n  - ReLU: {name: 'two words', from: input}\n", "letters, digits and _"),
    ],
)
def test_bad_graph_keys_are_located_errors(text, message):
    err = _error(text)
    assert message in str(err), str(err)
    assert err.line is not None
