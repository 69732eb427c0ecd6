"""Every command on a siamese network and a small encoder-decoder (specs with several inputs):
check and params report each input and output, count shared and tied parameters once; diagram
draws several sources and sinks and marks the shared tower; export names every input and output;
gradcheck perturbs each float input, probe feeds every input."""

from __future__ import annotations

import json

import pytest
import torch
from spec_texts import ENC_DEC_DAG, SIAMESE_DAG

torch.set_num_threads(1)

SIAMESE = SIAMESE_DAG
# conv 4*9+4, linear 100*8+8, head 16*2+2: the tower once
SIAMESE_PARAMS = 40 + 808 + 34

ENC_DEC = ENC_DEC_DAG
# embedding 12*16 (tied head adds none), Linear 16*16+16, attention 4*16*16+4*16
ENC_DEC_PARAMS = 192 + 272 + 1088


@pytest.fixture
def specs(tmp_path):
    (tmp_path / "siamese.yaml").write_text(SIAMESE)
    (tmp_path / "encdec.yaml").write_text(ENC_DEC)
    return tmp_path


def test_check_lists_each_input_and_output(run_cli, specs):
    res = run_cli(["check", specs / "encdec.yaml", "--json"])
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["inputs"] == [
        {"name": "src", "shape": [6], "dtype": "int64"},
        {"name": "tgt", "shape": [5], "dtype": "int64"},
    ]
    assert doc["outputs"] == [
        {"name": "logits", "shape": [5, 12], "dtype": "float32"},
        {"name": "memory", "shape": [6, 16], "dtype": "float32"},
    ]
    assert doc["total_params"] == ENC_DEC_PARAMS
    human = run_cli(["check", specs / "encdec.yaml"])
    assert "input tgt" in human.out and "output memory" in human.out


@pytest.mark.parametrize(("name", "count"), [("siamese", SIAMESE_PARAMS), ("encdec", ENC_DEC_PARAMS)])
def test_params_count_shared_and_tied_once(run_cli, specs, name, count):
    res = run_cli(["params", specs / f"{name}.yaml", "--json"])
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["total"] == count
    assert sum(row["params"] for row in doc["layers"] if row["depth"] == 0) == count
    assert doc["flops"] > 0


def test_diagram_has_two_sources_and_marks_the_shared_tower(run_cli, specs, tmp_path):
    res = run_cli(["diagram", specs / "siamese.yaml", "-o", tmp_path / "s.dot", "--json"])
    assert res.code == 0, res.err
    graph = json.loads(res.out)["graph"]
    inputs = [n for n in graph["nodes"] if n["kind"] == "input"]
    assert sorted(n["name"] for n in inputs) == ["left", "right"]
    shared = [n for n in graph["nodes"] if "shared with tower" in n["label"]]
    assert len(shared) == 1
    merge = next(n for n in graph["nodes"] if n["type"] == "Merge")
    assert sum(1 for e in graph["edges"] if e["to"] == merge["id"]) == 2
    assert any(e["from"] == "input_right" and e["to"] == shared[0]["id"] for e in graph["edges"])


def test_diagram_draws_the_memory_edge_and_both_outputs(run_cli, specs, tmp_path):
    res = run_cli(["diagram", specs / "encdec.yaml", "-o", tmp_path / "e.dot", "--json"])
    assert res.code == 0, res.err
    graph = json.loads(res.out)["graph"]
    assert sorted(n["name"] for n in graph["nodes"] if n["kind"] == "output") == ["logits", "memory"]
    attention = next(n for n in graph["nodes"] if n["type"] == "CrossAttention")
    assert sum(1 for e in graph["edges"] if e["to"] == attention["id"]) == 2


def test_onnx_export_names_every_input_and_output(run_cli, specs, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "e.onnx"
    res = run_cli(["export", specs / "encdec.yaml", "-o", out, "--json"])
    assert res.code == 0, res.err
    assert json.loads(res.out)["passed"]
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["src", "tgt"]
    assert [o.name for o in graph.output] == ["logits", "memory"]


def test_torchscript_export_of_a_siamese_net(run_cli, specs, tmp_path):
    res = run_cli(["export", specs / "siamese.yaml", "-o", tmp_path / "s.pt", "--json"])
    assert res.code == 0, res.err
    assert json.loads(res.out)["passed"]


@pytest.mark.parametrize("name", ["siamese", "encdec"])
def test_gradcheck_perturbs_each_float_input(run_cli, specs, name):
    res = run_cli(["gradcheck", specs / f"{name}.yaml", "--json"])
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    perturbed = {"siamese": [True, True], "encdec": [False, False]}[name]  # token ids are not
    assert [i["perturbed"] for i in doc["inputs"]] == perturbed
    names = [t["name"] for t in doc["end_to_end"]["tensors"]]
    assert names == (["input left", "input right", "parameters"] if name == "siamese" else ["parameters"])


@pytest.mark.parametrize("name", ["siamese", "encdec"])
def test_probe_feeds_every_input(run_cli, specs, name):
    res = run_cli(["probe", specs / f"{name}.yaml", "--json", "--seeds", "0", "--batch-size", "4"])
    assert res.code == 0, res.err
    rows = [row["name"] for row in json.loads(res.out)["layers"]]
    assert ("tower_r.4" in rows) if name == "siamese" else ("embed (shared)" in rows)
