"""formatting.jsonable / render.print_json: every --json document is strict JSON, NaN/inf included."""

import io
import json
import math
from pathlib import Path

from nncli.formatting import jsonable
from nncli.render import print_json


def _strict_loads(text: str):
    # json.loads accepts NaN/Infinity by default; parse_constant makes them an error, as a
    # strict reader (jq, JavaScript's JSON.parse) would.
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_print_json_writes_nulls_for_nan_and_inf():
    buffer = io.StringIO()
    print_json({"x": float("nan"), "y": (1, float("inf"))}, file=buffer)
    assert _strict_loads(buffer.getvalue()) == {"x": None, "y": [1, None]}


def test_print_json_nested_result_objects_and_paths():
    class Result:
        def to_json(self):
            return {"loss": -math.inf, "where": Path("runs") / "a"}

    buffer = io.StringIO()
    print_json({"results": [Result()], 3: "int key"}, file=buffer)
    assert _strict_loads(buffer.getvalue()) == {"results": [{"loss": None, "where": "runs/a"}], "3": "int key"}


def test_jsonable_keeps_plain_values_and_does_not_change_its_input():
    doc = {"ok": True, "n": 3, "lr": 0.01, "name": "moons", "none": None, "shape": (2, 3)}
    assert jsonable(doc) == {"ok": True, "n": 3, "lr": 0.01, "name": "moons", "none": None, "shape": [2, 3]}
    assert doc["shape"] == (2, 3)
    # bool stays bool (it is an int subclass; JSON must keep `true`, not `1`).
    assert jsonable(True) is True


def test_probe_strings_for_nonfinite_pass_through():
    # probe spells non-finite numbers as "nan"/"inf" strings on purpose: the cleaner keeps them.
    assert jsonable({"gamma": "inf", "ratio": "nan"}) == {"gamma": "inf", "ratio": "nan"}
