"""The spec language's graph part, torch-free: the expression parser, and how Parallel, Block,
vars, token inputs and expression-valued Repeat.times are parsed (and overridden).

Expressions are checked against Python's own arithmetic on the same text (an independent
reference: the grammar is a subset of Python's), never against nncli's output captured once.
"""

from __future__ import annotations

import builtins
import math

import pytest

from nncli.errors import SpecError
from nncli.spec import BlockSpec, ParallelSpec, RepeatSpec, parse_spec
from nncli.spec.expr import ExprError, evaluate, looks_like_expression, names_in
from nncli.spec.overrides import apply_override
from nncli.spec.source import parse_yaml

SCOPE = {"in_channels": 64, "in_features": 10, "width": 32, "expansion": 6, "zero": 0}

PYTHON_AGREES = [
    "2 + 3 * 4",
    "(2 + 3) * 4",
    "10 - 4 - 3",
    "7 // 2 * 2",
    "2 * 7 // 2",
    "-2 * 3",
    "--4",
    "2 * 3 % 4",
    "17 % 5 * 2",
    "in_channels * expansion",
    "in_channels // 2 + 1",
    "width * expansion // (in_features - 2)",
    "-(width - 40) // 3",
    "1.5 * 4",
    "7 / 2",
    "min(width, 16) + max(1, 2, 3)",
    "max(in_channels // 3, width) * 2",
    "3 - -2",
    "+5",
    "100 // 7 % 3",
    "2.5e1 * 2",
    "2 ** 10",
    "-2 ** 2",
    "2 ** -1",
    "2 ** 3 ** 2",
    "(-2) ** 3",
    "32 * 2 ** expansion",
    "abs(-width)",
    "round(7 / 2)",
    "round(5 / 2)",
    "floor(7 / 2)",
    "ceil(7 / 2)",
    "floor(-7 / 2)",
    "ceil(in_channels * 0.75) + abs(2 - width)",
    "2 ** 63",
    "-(2 ** 63)",
]

# The reference for the functions: Python's own (round halves to even there too).
PYTHON_FUNCTIONS = {
    "__builtins__": {},
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
}


@pytest.mark.parametrize("text", PYTHON_AGREES)
def test_expression_agrees_with_python(text):
    expected = eval(text, dict(PYTHON_FUNCTIONS), dict(SCOPE))  # the reference
    got = evaluate(text, SCOPE)
    assert got == expected
    # A whole-number result is an int (26.0 -> 26); a fraction stays a float.
    assert isinstance(got, int) == (float(expected) == int(expected))


def test_whole_number_results_are_integers():
    assert evaluate("26.0", {}) == 26 and isinstance(evaluate("26.0", {}), int)
    assert evaluate("in_channels / 2", {"in_channels": 64}) == 32
    assert isinstance(evaluate("in_channels / 2", {"in_channels": 64}), int)
    assert evaluate("7 / 2", {}) == 3.5


@pytest.mark.parametrize(
    "text, message",
    [
        ("widht * 2", "unknown name 'widht' (did you mean 'width'?)"),
        ("in_features // zero", "division by zero"),
        ("width % zero", "division by zero"),
        ("width / (in_channels - 64)", "division by zero"),
        ("2 *** 3", "unexpected '*'"),
        ("width *", "ends too early"),
        ("(width + 1", "expected ')'"),
        ("width 2", "unexpected '2'"),
        ("min(width)", "needs at least two values"),
        ("sqrt(width)", "unknown function 'sqrt'"),
        ("abs(width, 2)", "abs() takes 1 value, found 2"),
        ("make_divisible(width)", "make_divisible() takes 2 values"),
        ("make_divisible(width, 0)", "needs a whole number d > 0"),
        ("", "empty expression"),
    ],
)
def test_expression_errors(text, message):
    with pytest.raises(ExprError) as err:
        evaluate(text, SCOPE)
    assert message in err.value.message


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "().__class__",
        "width.real",
        "[1, 2]",
        "lambda: 1",
        "open('x')",
        "width if 1 else 2",
        "__import__",
    ],
)
def test_expressions_never_reach_eval(text, monkeypatch):
    # Anything beyond the arithmetic grammar is refused before any name is looked up as Python.
    calls = []
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda *a, **k: calls.append(a) or real_import(*a, **k))
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: pytest.fail("eval called"))
    with pytest.raises(ExprError):
        evaluate(text, SCOPE)
    assert not [c for c in calls if c and c[0] == "os"]


def test_what_counts_as_an_expression():
    names = {"width", "in_channels", "in_features"}
    assert looks_like_expression("in_channels * 2", names)
    assert looks_like_expression("width", names)  # exactly a known name
    assert looks_like_expression("(3)", names)
    assert not looks_like_expression("same", names)  # padding: same stays a string
    assert not looks_like_expression("gelu", names)
    assert not looks_like_expression("widht", names)  # unknown bare word: a string, not an expression
    assert names_in("min(width, in_channels) * max(a, 2)") == ["width", "in_channels", "a"]


# -- parsing the graph blocks -------------------------------------------------------------------
DENSE = """
input: [3, 8, 8]
vars: {growth: 4, width: "growth * 2"}
layers:
  - Parallel:
      name: dense
      vars: {c: in_channels}
      branches:
        - []
        - [BatchNorm2d, ReLU, {Conv2d: {out_channels: growth, kernel_size: 3, padding: 1}}]
  - Block:
      name: head
      layers: [{Conv2d: {out_channels: "in_channels // 2", kernel_size: 1}}]
  - Repeat: {times: "growth // 2", layers: [ReLU]}
  - Parallel: {branches: [[ReLU], [Sigmoid], [Tanh]], merge: mul, dim: -1}
"""


def test_parallel_block_and_vars_parse():
    spec = parse_spec(DENSE)
    par, block, rep, gate = spec.layers
    assert isinstance(par, ParallelSpec) and par.merge == "concat" and par.dim == 1
    assert par.branches[0] == () and [layer.type for layer in par.branches[1]] == ["BatchNorm2d", "ReLU", "Conv2d"]
    assert par.name == "dense" and dict(par.vars) == {"c": "in_channels"}
    assert par.branches[1][2].args["out_channels"] == "growth"  # kept as text for the builder
    assert isinstance(block, BlockSpec) and block.layers[0].args["out_channels"] == "in_channels // 2"
    assert isinstance(rep, RepeatSpec) and rep.times == "growth // 2"
    assert gate.merge == "mul" and gate.dim == -1 and len(gate.branches) == 3
    assert dict(spec.vars) == {"growth": 4, "width": "growth * 2"}
    assert spec.var_where["width"].spec_path == "vars.width" and spec.var_where["width"].line == 3
    assert [layer.type for layer in spec.walk()] == [
        "Parallel",
        "BatchNorm2d",
        "ReLU",
        "Conv2d",
        "Block",
        "Conv2d",
        "Repeat",
        "ReLU",
        "Parallel",
        "ReLU",
        "Sigmoid",
        "Tanh",
    ]


def test_spec_objects_stay_frozen():
    spec = parse_spec(DENSE)
    with pytest.raises(TypeError):
        spec.vars["growth"] = 8  # a read-only view
    with pytest.raises(TypeError):
        spec.layers[0].vars["c"] = 1
    with pytest.raises(AttributeError):
        spec.layers[0].merge = "add"


def test_token_input_parses():
    spec = parse_spec("input: {shape: [64], dtype: int64, high: 5000}\nlayers: [Embedding]\n")
    assert spec.input == (64,) and spec.input_dtype == "int64" and spec.input_high == 5000
    assert spec.integer_input
    plain = parse_spec("input: {shape: [3, 4]}\nlayers: [ReLU]\n")
    assert plain.input == (3, 4) and plain.input_dtype == "float32" and not plain.integer_input
    assert parse_spec("input: [4]\nlayers: [ReLU]\n").input_high is None


@pytest.mark.parametrize(
    "text, path, message",
    [
        ("input: {shape: [4], dtype: int64}\nlayers: [ReLU]\n", "input", "needs `high`"),
        ("input: {shape: [4], dtype: int8, high: 3}\nlayers: [ReLU]\n", "input.dtype", "expected `dtype`"),
        ("input: {shape: [4], high: 3}\nlayers: [ReLU]\n", "input.high", "applies to integer inputs"),
        ("input: {shape: [4], dtype: int64, high: 0}\nlayers: [ReLU]\n", "input.high", "positive integer"),
        ("input: {dtype: int64, high: 3}\nlayers: [ReLU]\n", "input", "needs `shape`"),
        ("input: [4]\nvars: [1, 2]\nlayers: [ReLU]\n", "vars", "mapping of name"),
        ("input: [4]\nvars: {w: [1]}\nlayers: [ReLU]\n", "vars.w", "a number or an expression"),
        ("input: [4]\nvars: {max: 3}\nlayers: [ReLU]\n", "vars.max", "function name"),
        ("input: [4]\nlayers:\n  - Block: {body: [ReLU]}\n", "layers[0].Block.body", "unknown key 'body'"),
        ("input: [4]\nlayers:\n  - Block: {name: b}\n", "layers[0].Block", "Block needs `layers`"),
        ("input: [4]\nlayers:\n  - Parallel: {merge: add}\n", "layers[0].Parallel", "needs `branches`"),
        (
            "input: [4]\nlayers:\n  - Parallel: {branches: [[], ReLU]}\n",
            "layers[0].Parallel.branches[1]",
            "expected branch 1 to be a list",
        ),
        (
            "input: [4]\nlayers:\n  - Parallel: {branches: [[], []], dim: two}\n",
            "layers[0].Parallel.dim",
            "expected `dim` to be an integer",
        ),
        (
            "input: [4]\nlayers:\n  - Repeat: {times: three, layers: [ReLU]}\n",
            "layers[0].Repeat.times",
            "found a string ('three')",
        ),
    ],
)
def test_parse_errors_are_located(text, path, message):
    with pytest.raises(SpecError) as err:
        parse_spec(text, file="s.yaml")
    assert err.value.spec_path == path and message in str(err.value)
    assert err.value.file == "s.yaml" and err.value.line is not None


def test_repeat_times_names_a_var_of_an_enclosing_block():
    spec = parse_spec(
        "input: [4]\nlayers:\n  - Block:\n      vars: {n: 3}\n      layers:\n"
        "        - Repeat: {times: n, layers: [ReLU]}\n"
    )
    assert spec.layers[0].layers[0].times == "n"


# -- overrides (what a sweep axis `vars.width` and `--set` write) --------------------------------
def test_override_of_a_var_is_an_ordinary_spec_path():
    data = parse_yaml(DENSE).data
    apply_override(data, "vars.growth", 12)
    assert parse_spec_data(data).vars["growth"] == 12
    with pytest.raises(SpecError) as err:
        apply_override(parse_yaml(DENSE).data, "vars.grwth", 12)
    assert "did you mean 'growth'" in str(err.value)


def test_override_reaches_inside_branches():
    data = parse_yaml(DENSE).data
    apply_override(data, "layers[0].Parallel.branches[1][2].Conv2d.kernel_size", 5)
    apply_override(data, "replace:ReLU", "GELU")
    spec = parse_spec_data(data)
    assert spec.layers[0].branches[1][2].args["kernel_size"] == 5
    assert [layer.type for layer in spec.layers[0].branches[1]] == ["BatchNorm2d", "GELU", "Conv2d"]
    assert [layer.type for layer in spec.layers[3].branches[0]] == ["GELU"]


def parse_spec_data(data):
    import yaml

    return parse_spec(yaml.safe_dump(data, sort_keys=False))


# -- bounds: hostile expressions are located errors, never a RecursionError or a huge integer ----
@pytest.mark.parametrize(
    "text, message",
    [
        ("2 ** 65", "exponent must be a whole number from -64 to 64"),
        ("2 ** 0.5", "exponent must be a whole number"),
        ("3 ** 64", "beyond 2**63"),
        ("2 ** 64", "beyond 2**63"),
        ("width ** 13", "beyond 2**63"),
        ("0 ** -1", "division by zero"),
        ("9" * 20, "beyond 2**63"),
        ("9" * 5000, "beyond 2**63"),
        ("1e400", "not a finite number"),
        ("1e300 * 1e300", "beyond 2**63"),
        ("(" * 500 + "1" + ")" * 500, "nests more than 100 levels"),
        ("-" * 1000 + "1", "nests more than 100 levels"),
        ("abs(" * 300 + "1" + ")" * 300, "nests more than 100 levels"),
        ("2 ** " * 300 + "1", "nests more than 100 levels"),
        ("big * big", "beyond 2**63"),
        ("big * big - big * big", "beyond 2**63"),
    ],
)
def test_expression_bounds(text, message):
    with pytest.raises(ExprError) as err:
        evaluate(text, {**SCOPE, "big": 2**40})
    assert message in err.value.message
    assert err.value.position is not None


def test_vars_chain_stops_at_the_bound():
    """`v1: v0 * v0`, ... squares a number 33 times: refused at the first value past 2**63."""
    scope = {"v0": 2}
    with pytest.raises(ExprError, match="beyond 2"):
        for i in range(1, 34):
            scope[f"v{i}"] = evaluate(f"v{i - 1} * v{i - 1}", scope)
    assert max(scope.values()) <= 2**63


def _torchvision_make_divisible(v, divisor, min_value=None):
    """torchvision.models._utils._make_divisible, written out (the reference for the contract)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@pytest.mark.parametrize("value", [16 * 0.75, 240 * 0.25, 36, 7, 1, 3.3, 1280 * 1.0, 960 * 0.35, 672 * 1.4])
@pytest.mark.parametrize("divisor", [8, 4, 16])
def test_make_divisible_matches_torchvision(value, divisor):
    assert evaluate(f"make_divisible(v, {divisor})", {"v": value}) == _torchvision_make_divisible(value, divisor)


# -- random expressions against Python's arithmetic ----------------------------------------------
def _expressions():
    from hypothesis import strategies as st

    leaves = st.one_of(
        st.integers(0, 50).map(str), st.sampled_from(sorted(SCOPE)), st.sampled_from(["0.5", "2.25", "1e1"])
    )

    def grow(children):
        binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "//", "%"]), children).map(
            lambda t: f"{t[0]} {t[1]} {t[2]}"
        )
        return st.one_of(
            binary,
            children.map(lambda c: f"({c})"),
            children.map(lambda c: f"-{c}"),
            st.tuples(st.sampled_from(["min", "max"]), st.lists(children, min_size=2, max_size=3)).map(
                lambda t: f"{t[0]}({', '.join(t[1])})"
            ),
        )

    return st.recursive(leaves, grow, max_leaves=8)


def test_random_expressions_agree_with_python():
    from hypothesis import given, settings

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(_expressions())
    def check(text):
        try:
            expected = eval(text, {"__builtins__": {}, "min": min, "max": max}, dict(SCOPE))
        except ZeroDivisionError:
            with pytest.raises(ExprError, match="division by zero"):
                evaluate(text, SCOPE)
            return
        except OverflowError:
            return
        got = evaluate(text, SCOPE)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)

    check()
