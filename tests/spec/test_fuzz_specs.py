"""Fuzz: hostile specs built for size. Every outcome is exit 0, 1 or 2, never 3, and
never over a time bound.

Hypothesis writes specs whose danger is their size rather than their syntax: ``Repeat`` counts
from 0 to 2**64 (and non-integers), Repeats nested in Repeats, containers nested past the depth
limit, long flat lists, Custom targets that point out of the spec's folder, text past the size
limit. ``check``, ``params`` and ``diagram`` run on each in-process. The layer limit is lowered
to 2,000 for the run (the mechanism is the same at any figure), so every spec that passes the
limits is small and the whole test stays within a few seconds per example.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nncli import cli

TIMES = st.sampled_from([1, 2, 3, 7, 40, 1000, 10**5, 10**9, 10**18, 2**64, 0, -1, 1.5, "3", True, None])
LEAVES = st.sampled_from(
    [
        "ReLU",
        "Tanh",
        "Identity",
        {"Linear": {"out_features": 4}},
        {"Dropout": {"p": 0.1}},
        {"LayerNorm": {"normalized_shape": 4}},
        {"Custom": {"target": "../outside/evil.py:Evil"}},
        {"Custom": {"target": "/tmp/evil.py:Evil"}},
    ]
)


def _wrap(kind: str, body: list, times) -> dict:
    if kind == "Repeat":
        return {"Repeat": {"times": times, "layers": body}}
    if kind == "Residual":
        return {"Residual": {"body": body}}
    return {"Repeat": {"times": 1, "layers": body}}


@st.composite
def layer_lists(draw, level: int = 0) -> list:
    items = []
    for _ in range(draw(st.integers(1, 3))):
        if level < 4 and draw(st.integers(0, 2)) == 0:
            kind = draw(st.sampled_from(["Repeat", "Residual", "Repeat1"]))
            items.append(_wrap(kind, draw(layer_lists(level + 1)), draw(TIMES)))
        else:
            items.append(draw(LEAVES))
    return items


@st.composite
def hostile_specs(draw) -> str:
    shape = draw(st.sampled_from(["tree", "deep", "flat", "big"]))
    if shape == "deep":  # a chain of containers, sometimes past the depth limit (64)
        layers = ["ReLU"]
        for _ in range(draw(st.integers(1, 80))):
            layers = [_wrap(draw(st.sampled_from(["Residual", "Repeat1"])), layers, 1)]
    elif shape == "flat":
        layers = ["ReLU"] * draw(st.integers(1, 3000))
    else:
        layers = draw(layer_lists())
    text = yaml.safe_dump({"input": [4], "layers": layers}, sort_keys=False)
    if shape == "big":  # padding past the size limit: must be refused before PyYAML runs
        text += "#" + "x" * draw(st.sampled_from([10, 70_000])) + "\n"
    return text


def _run(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


# Per example, on a loaded 2-core machine; a refused spec takes milliseconds, an accepted one
# (at most 2,000 layers here) a few seconds.
TIME_BOUND_S = 60


@pytest.fixture(scope="module")
def fuzz_env():
    saved = {k: os.environ.get(k) for k in ("NNCLI_MAX_LAYERS", "NNCLI_MAX_SPEC_BYTES", "COLUMNS")}
    os.environ.update({"NNCLI_MAX_LAYERS": "2000", "NNCLI_MAX_SPEC_BYTES": "65536", "COLUMNS": "400"})
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# NNCLI_FUZZ_EXAMPLES=500 for a longer hunt; the default run stays small.
@settings(
    max_examples=int(os.environ.get("NNCLI_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=hostile_specs(), command=st.sampled_from(["check", "params", "diagram"]))
def test_hostile_specs_exit_0_1_or_2_within_the_bound(text, command, tmp_path_factory, fuzz_env):
    folder = tmp_path_factory.getbasetemp() / "fuzz" / "specs"
    folder.mkdir(parents=True, exist_ok=True)
    outside = folder.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "evil.py").write_text("raise SystemExit('evil code ran')\n")
    spec = folder / "hostile.yaml"
    spec.write_text(text, encoding="utf-8")
    extra = ["-o", str(folder / "hostile.dot")] if command == "diagram" else ["--json"]
    started = time.perf_counter()
    code, out, err = _run([command, str(spec), *extra])
    elapsed = time.perf_counter() - started
    assert code in (0, 1, 2), (code, err[-2000:])
    assert "internal error" not in err and "Traceback" not in out + err, err[-2000:]
    assert "evil code ran" not in out + err  # a Custom file outside the spec's folder never imports
    assert elapsed < TIME_BOUND_S, f"{command} took {elapsed:.1f} s"
    if "--json" in extra:
        json.loads(out)  # one JSON document, error or result
