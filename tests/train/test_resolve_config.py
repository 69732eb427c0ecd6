"""``nncli config`` and the data check of ``nncli check``: the configuration a run would use, and
its data loaded and checked against the network before any training.

References: the row count and columns of a CSV written here, the values given with --set.
"""

from __future__ import annotations

import json

import numpy as np

SPEC = """
name: cfg
input: [3]
layers:
  - Linear: {out_features: 4}
  - ReLU
  - Linear: {out_features: 2}
data: {path: d.csv, target: label, val: 0.25, test: 0.25}
train: {optimizer: adam, lr: 0.01, epochs: 2}
"""


def _files(tmp_path, n=80, spec=SPEC):
    gen = np.random.default_rng(0)
    lines = ["a,label,b,c"] + [f"{x:.3f},{int(x > 0)},{y:.3f},{z:.3f}" for x, y, z in gen.normal(size=(n, 3))]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "spec.yaml").write_text(spec)
    return tmp_path / "spec.yaml"


def test_config_shows_every_resolved_setting_and_the_loaded_data(tmp_path, run_cli):
    spec = _files(tmp_path)
    res = run_cli(["config", spec, "--set", "train.lr=0.5", "--json"])
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["spec"]["train"]["lr"] == 0.5 and doc["train"]["lr"] == 0.5
    assert doc["train"]["batch_size"] and doc["train"]["schedule"] == "none"  # defaults filled in
    assert doc["data"]["target"] == "label" and doc["data"]["normalize"] is True
    loaded = doc["loaded"]
    assert sum(loaded["sizes"].values()) == 80 and loaded["sizes"]["test"] == 20
    assert loaded["input_shape"] == [3] and loaded["output_shape"] == [2]  # label column dropped
    assert loaded["normalization"]["by"] == "feature"
    res = run_cli(["config", spec, "--no-load"])
    assert res.code == 0 and "# train (every default filled in)" in res.out and "loaded" not in res.out


def test_a_new_data_path_keeps_the_target_in_config(tmp_path, run_cli):
    spec = _files(tmp_path)
    (tmp_path / "other.csv").write_text((tmp_path / "d.csv").read_text())
    res = run_cli(["config", spec, "--set", f"data.path={tmp_path / 'other.csv'}", "--json"])
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["data"]["target"] == "label" and doc["data"]["path"].endswith("other.csv")


def test_check_loads_small_local_data_and_refuses_a_wrong_target(tmp_path, run_cli):
    spec = _files(tmp_path)
    res = run_cli(["check", spec, "--json"])
    assert res.code == 0, res.err
    data = json.loads(res.out)["data"]
    assert data["checked"] and sum(data["sizes"].values()) == 80
    spec.write_text(SPEC.replace("target: label", "target: lable"))
    res = run_cli(["check", spec])
    assert res.code == 2 and "no column named 'lable'" in res.err and "label" in res.err
    # three features but a spec that takes four: the shapes do not fit
    spec.write_text(SPEC.replace("input: [3]", "input: [4]"))
    res = run_cli(["check", spec])
    assert res.code == 2 and "input shape does not match" in res.err


def test_check_says_when_it_did_not_look_at_the_data(tmp_path, run_cli):
    spec = tmp_path / "s.yaml"
    spec.write_text("input: [2]\nlayers:\n  - Linear: {out_features: 2}\n")
    res = run_cli(["check", spec])
    assert res.code == 0 and "data: not checked (the spec has no data section)" in res.out
