"""Property: whatever a user does to a valid spec, nncli answers cleanly.

Hypothesis mutates the ready specs at random (deletes keys and list items, swaps values for
negatives, huge numbers, strings, None, lists, mappings, misspells layer and argument names,
inserts junk keys and items, truncates or garbles the text) and runs ``nncli check`` or
``nncli params`` on the result. Either the spec still builds (exit 0, or 1 for a lint error or a
gate) or the command exits 2 with a message located in the file (``FILE:LINE``); never another
exit code, never a traceback, never an "internal error".
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shutil

import yaml
from conftest import SPECS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nncli import cli

BASES = {
    name: (SPECS / name).read_text()
    for name in (
        "lecture-mlp.yaml",
        "lenet5.yaml",
        "resnet-tiny.yaml",
        "custom-swish.yaml",
        "deep-sigmoid.yaml",
        "deep-relu-he.yaml",
        "digits-cnn.yaml",
    )
}

JUNK = st.one_of(
    st.integers(-5, 5),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
    st.lists(st.integers(-3, 10), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(-3, 10), max_size=2),
    st.sampled_from(
        [
            "ReLU",
            "Linear",
            "Conv2d",
            "Residual",
            "Repeat",
            "Custom",
            "Step",
            "zeros",
            "kaiming_normal",
            "out_features",
            "same",
            "weight",
        ]
    ),
)


def _paths(node, path=()):
    """Every (path, value) in a YAML tree, containers included."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, path + (i,))


def _misspell(draw, word: str) -> str:
    if not word:
        return draw(st.text(min_size=1, max_size=3))
    i = draw(st.integers(0, len(word) - 1))
    op = draw(st.sampled_from(["drop", "swap", "insert", "case"]))
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "swap" and len(word) > 1:
        j = min(i + 1, len(word) - 1)
        chars = list(word)
        chars[i], chars[j] = chars[j], chars[i]
        return "".join(chars)
    if op == "insert":
        return word[:i] + draw(st.sampled_from("aeiosx_1")) + word[i:]
    return word.swapcase()


def _mutate_tree(draw, data):
    data = copy.deepcopy(data)
    paths = list(_paths(data))
    path, value = draw(st.sampled_from(paths))
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    op = draw(st.sampled_from(["delete", "replace", "negate", "stringify", "misspell", "insert", "duplicate"]))
    if not path:  # the root itself
        return draw(JUNK) if op == "replace" else data
    key = path[-1]
    if op == "delete":
        del parent[key]
    elif op == "replace":
        parent[key] = draw(JUNK)
    elif op == "negate" and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = -value
    elif op == "stringify":
        parent[key] = str(value)
    elif op == "misspell":
        if isinstance(value, str):
            parent[key] = _misspell(draw, value)
        elif isinstance(key, str):  # rename a mapping key: a misspelt layer or argument name
            new = _misspell(draw, key)
            parent[new] = parent.pop(key)
    elif op == "insert":
        if isinstance(value, dict):
            value[draw(st.text(min_size=1, max_size=6))] = draw(JUNK)
        elif isinstance(value, list):
            value.insert(draw(st.integers(0, len(value))), draw(JUNK))
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(value))
    return data


def _mutate_text(draw, text: str) -> str:
    op = draw(st.sampled_from(["truncate", "insert", "delete_line", "duplicate_line", "garble"]))
    pos = draw(st.integers(0, len(text)))
    if op == "truncate":
        return text[:pos]
    if op == "insert":
        return text[:pos] + draw(st.text(min_size=1, max_size=6)) + text[pos:]
    lines = text.splitlines(keepends=True)
    i = draw(st.integers(0, len(lines) - 1))
    if op == "delete_line":
        return "".join(lines[:i] + lines[i + 1 :])
    if op == "duplicate_line":
        return "".join(lines[: i + 1] + lines[i:])
    pos = min(pos, len(text) - 1)
    return text[:pos] + draw(st.sampled_from(list("\t:[]{}-&*!#%@`|>\"',\x00") + ["\x07"])) + text[pos + 1 :]


@st.composite
def mutated_specs(draw):
    name = draw(st.sampled_from(sorted(BASES)))
    text = BASES[name]
    if draw(st.integers(0, 2)):  # two in three: mutate the parsed tree, then dump it as YAML
        data = yaml.safe_load(text)
        for _ in range(draw(st.integers(1, 3))):
            data = _mutate_tree(draw, data)
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    else:
        text = _mutate_text(draw, text)
    # Mostly --json: the same code paths minus rich's table rendering, which is most of the time.
    command = draw(st.sampled_from(["check", "params"]))
    return [command] + (["--json"] if draw(st.integers(0, 3)) else []), text


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


# NNCLI_HYPOTHESIS_EXAMPLES=2000 for a longer hunt; the default run stays at ~100.
@settings(
    max_examples=int(os.environ.get("NNCLI_HYPOTHESIS_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=mutated_specs())
def test_mutated_specs_fail_cleanly(case, tmp_path_factory):
    argv, text = case
    folder = tmp_path_factory.getbasetemp() / "mutants"
    if not folder.exists():
        folder.mkdir()
        shutil.copy(SPECS / "swish_layers.py", folder)  # Custom targets resolve beside the spec
    spec = folder / "mutant.yaml"
    spec.write_text(text, encoding="utf-8", errors="surrogatepass")
    os.environ.setdefault("COLUMNS", "400")
    code, out, err = _run([argv[0], str(spec), *argv[1:]])
    assert code in (0, 1, 2), (code, out, err)
    assert "Traceback" not in out + err
    assert "internal error" not in err, err
    if "--json" in argv:
        json.loads(out)  # one JSON document on stdout, whatever happened
    if code == 2:
        assert re.search(rf"{re.escape(str(spec))}:\d+", err), f"unlocated error:\n{err}\n---\n{text}"
