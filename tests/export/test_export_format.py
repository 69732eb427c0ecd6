"""``nncli export`` picks the format from the output's suffix when --format is not given, and a
--format the suffix contradicts is exit 2 before anything is written."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SPECS

from nncli.errors import InputError
from nncli.export import export_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPEC = SPECS / "moons-mlp.yaml"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("m.onnx", "onnx"), ("m.pt", "torchscript"), ("M.TS", "torchscript"), ("m.safetensors", "safetensors")],
)
def test_the_suffix_names_the_format(tmp_path, run_cli, name, fmt):
    if fmt != "torchscript":
        pytest.importorskip("onnxruntime" if fmt == "onnx" else "safetensors")
    res = run_cli(["export", SPEC, "-o", tmp_path / name, "--json"])
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["format"] == fmt and doc["passed"]
    if fmt == "torchscript":  # really a TorchScript file, whatever it is called
        model = torch.jit.load(str(tmp_path / name))
        assert model(torch.zeros(3, 2)).shape == (3, 2)
    # the same format named explicitly agrees with the suffix
    res = run_cli(["export", SPEC, "-o", tmp_path / name, "--format", fmt, "--force", "--json"])
    assert res.code == 0 and json.loads(res.out)["format"] == fmt, res.err


def test_a_format_the_suffix_contradicts_is_refused_before_writing(tmp_path, run_cli):
    res = run_cli(["export", SPEC, "--format", "onnx", "-o", tmp_path / "m.pt"])
    assert res.code == 2 and "--format: onnx but the output" in res.err and "torchscript" in res.err, res.err
    assert "m.onnx" in res.err  # the hint names the file that would agree
    assert not (tmp_path / "m.pt").exists()
    with pytest.raises(InputError) as lib:
        export_model(SPEC, "safetensors", tmp_path / "m.onnx")
    assert lib.value.param == "format" and not (tmp_path / "m.onnx").exists()


def test_an_unknown_suffix_needs_the_format(tmp_path, run_cli):
    res = run_cli(["export", SPEC, "-o", tmp_path / "model.bin"])
    assert res.code == 2 and "cannot tell the format" in res.err and "--format" in res.err, res.err
    assert not (tmp_path / "model.bin").exists()
    res = run_cli(["export", SPEC, "-o", tmp_path / "model.bin", "--format", "torchscript", "--json"])
    assert res.code == 0 and json.loads(res.out)["format"] == "torchscript", res.err
    assert export_model(SPEC, None, tmp_path / "lib.pt").format == "torchscript"
