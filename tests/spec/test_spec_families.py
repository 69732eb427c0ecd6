"""Families of blocks, torch-free: ``define:`` templates, ``Repeat`` ``index`` and ``each``, and
LayerScale's ``init`` argument, as parsed (what each becomes, and the located errors).
"""

from __future__ import annotations

import textwrap

import pytest

from nncli.errors import SpecError
from nncli.spec import BlockSpec, RepeatSpec, parse_spec
from nncli.spec.limits import expanded_count

TEMPLATES = """\
input: [3, 8, 8]
define:
  ConvBN:
    params: {c: null, k: 3, s: 1}
    layers:
      - Conv2d: {out_channels: c, kernel_size: k, stride: s, padding: "k // 2"}
      - BatchNorm2d
  ConvBNReLU:
    params: {c: null}
    layers: [{ConvBN: {c: c}}, ReLU]
layers:
  - ConvBN: {c: 16, s: 2, name: stem}
  - ConvBNReLU: {c: 32}
"""


def parse(text: str, **kw):
    return parse_spec(textwrap.dedent(text), file="t.yaml", **kw)


def error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(text)
    return info.value


def test_a_template_use_is_a_block_with_its_params_as_vars():
    spec = parse(TEMPLATES)
    stem, second = spec.layers
    assert isinstance(stem, BlockSpec) and stem.template == "ConvBN" and stem.name == "stem"
    assert dict(stem.vars) == {"c": 16, "k": 3, "s": 2}  # given, then the default of k
    assert stem.caller == frozenset({"c", "s"})
    assert [layer.type for layer in stem.layers] == ["Conv2d", "BatchNorm2d"]
    # the template's layers keep the template's spec paths: errors point at its lines
    assert stem.layers[0].path == "define.ConvBN.layers[0]"
    assert stem.layers[0].where.line == 6
    inner = second.layers[0]
    assert (
        isinstance(inner, BlockSpec) and inner.template == "ConvBN" and dict(inner.vars) == {"c": "c", "k": 3, "s": 1}
    )


@pytest.mark.parametrize(
    ("use", "line", "words"),
    [
        ("ConvBN: {c: 16, width: 3}", 12, "template ConvBN (defined at line 3) has no param 'width'"),
        ("ConvBN: {k: 5}", 12, "template ConvBN (defined at line 3) needs `c`"),
        ("ConvBN: {c: 16, kk: 3}", 12, "did you mean 'k'"),
    ],
)
def test_unknown_or_missing_params_are_located_errors(use, line, words):
    err = error(TEMPLATES.replace("ConvBN: {c: 16, s: 2, name: stem}", use))
    assert err.line == line
    assert words in str(err) + (err.hint or "")


def test_templates_using_each_other_in_a_cycle_are_refused():
    err = error(
        """\
        input: [4]
        define:
          A: {layers: [B]}
          B: {layers: [{Linear: {out_features: 4}}, A]}
        layers: [A]
        """
    )
    assert "cycle" in str(err) and ("A -> B -> A" in str(err) or "B -> A -> B" in str(err))


def test_a_template_that_uses_itself_is_a_cycle():
    err = error("input: [4]\ndefine:\n  A: {layers: [ReLU, A]}\nlayers: [A]\n")
    assert "cycle (A -> A)" in str(err) and err.line == 3


@pytest.mark.parametrize(
    ("define", "words"),
    [
        ("Repeat: {layers: [ReLU]}", "may not be called 'Repeat'"),
        ("X: {layers: [ReLU], param: {a: 1}}", "unknown key 'param' in template X"),
        ("X: {params: {a: 1}}", "template X needs `layers`"),
        ("X: {params: {in_channels: 1}, layers: [ReLU]}", "a param may not be called 'in_channels'"),
        ("X: {params: {a: [1]}, layers: [ReLU]}", "a param's default"),
    ],
)
def test_bad_templates_are_located_errors(define, words):
    err = error(f"input: [4]\ndefine:\n  {define}\nlayers: [ReLU]\n")
    assert words in str(err)
    assert err.line == 3


def test_templates_doubling_at_each_level_are_refused_before_they_expand():
    # T0 has 2 layers and each Tk uses T(k-1) twice: T40 would be 2**41 layers. The sizes are
    # worked out from the text, so this is refused at once instead of expanding for ever.
    lines = ["input: [4]", "define:", "  T0: {layers: [ReLU, ReLU]}"]
    lines += [f"  T{k}: {{layers: [T{k - 1}, T{k - 1}]}}" for k in range(1, 41)]
    lines.append("layers: [T40]")
    err = error("\n".join(lines) + "\n")
    assert "the templates expand to more than 100,000 layers" in str(err)
    assert err.line == 44


def test_repeat_index_and_each_are_parsed():
    spec = parse(
        """\
        input: [4]
        layers:
          - Repeat: {times: 3, index: i, layers: [{Linear: {out_features: "4 + i"}}]}
          - Repeat:
              each: [{c: 8, n: 2}, {c: 16, n: 3}]
              layers: [{Repeat: {times: n, layers: [{Linear: {out_features: c}}]}}]
        """
    )
    first, second = spec.layers
    assert isinstance(first, RepeatSpec) and first.index == "i" and first.times == 3 and first.each is None
    assert second.times == 2  # times left out: one copy per entry
    assert [dict(e) for e in second.each] == [{"c": 8, "n": 2}, {"c": 16, "n": 3}]
    assert second.each_where[1]["c"].line == 5


@pytest.mark.parametrize(
    ("repeat", "words"),
    [
        ("{times: 3, each: [{c: 1}, {c: 2}], layers: [ReLU]}", "`times` is 3 but `each` has 2 entries"),
        ("{each: [], layers: [ReLU]}", "non-empty list of mappings"),
        ("{each: [{c: 1}, {d: 2}], layers: [ReLU]}", "every copy binds the same names"),
        ("{each: [{c: 1}, 5], layers: [ReLU]}", "entry 1 of `each`"),
        ("{times: 2, index: 3, layers: [ReLU]}", "expected `index` to be a var name"),
        ("{times: 2, index: in_channels, layers: [ReLU]}", "expected `index` to be a var name"),
        ("{each: [{i: 1}], index: i, layers: [ReLU]}", "also a key of `each`"),
        ("{layers: [ReLU]}", "Repeat needs `times` (or `each`"),
        ("{times: 2}", "Repeat needs `layers`"),
        ("{each: [{in_channels: 1}], layers: [ReLU]}", "a var may not be called 'in_channels'"),
    ],
)
def test_bad_index_or_each_are_located_errors(repeat, words):
    err = error(f"input: [4]\nlayers:\n  - Repeat: {repeat}\n")
    assert words in str(err)
    assert err.line == 3


def test_layer_limits_hold_for_each_and_templates():
    # each's length is the Repeat's times for the limit: 1 + 3 copies x (Block + Repeat + 40,000).
    text = """\
    input: [4]
    define:
      Big: {layers: [{Repeat: {times: 40000, layers: [ReLU]}}]}
    layers:
      - Repeat: {each: [{c: 1}, {c: 2}, {c: 3}], layers: [Big]}
    """
    err = error(text)
    assert "the spec expands to 120,007 layers" in str(err)
    small = parse(text.replace("40000", "4"))
    assert expanded_count(small.layers) == 1 + 3 * (1 + 1 + 4)


def test_layer_scale_init_is_its_argument_and_an_init_mapping_stays_the_scheme():
    spec = parse(
        """\
        input: [4, 8]
        vars: {s: 0.5}
        layers:
          - LayerScale: {init: "s / 10", dim: -1}
          - LayerScale: {init: {weight: ones}}
        """
    )
    first, second = spec.layers
    assert dict(first.args) == {"init": "s / 10", "dim": -1} and first.init is None
    assert dict(second.args) == {} and second.init["weight"].scheme == "ones"
