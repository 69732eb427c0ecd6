"""``nncli export``: ONNX, TorchScript and safetensors files of the bundled specs and of a run.

References are outside the code under test: onnxruntime runs the ONNX file here, torch.jit.load
reads the TorchScript file, safetensors.torch.load_file reads the weights; each is compared with
the torch model that nncli.load builds from the same spec and seed, on a batch the exporter never
saw (another size than the one traced).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SPECS

import nncli
from nncli.errors import InputError
from nncli.export import load_safetensors
from nncli.train import run_training


def _ready_specs() -> list[str]:
    """Every bundled spec but those that transfer weights from a run that must be trained first."""
    from nncli.spec import load_spec

    return sorted(p.stem for p in SPECS.glob("*.yaml") if getattr(load_spec(p), "transfer", None) is None)


# The large ImageNet-sized ones are slow to export (marked slow); the rest are quick.
LARGE = ["alexnet", "resnet18", "resnet50", "vgg16"]
FAST = [name for name in _ready_specs() if name not in LARGE]


@pytest.fixture(autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _inputs(spec: Path, batch: int = 5):
    model = nncli.load(spec, seed=0).eval()
    from nncli.spec import load_spec

    loaded = load_spec(spec)
    gen = torch.Generator().manual_seed(123)
    if getattr(loaded, "integer_input", False):  # token ids
        x = torch.randint(0, loaded.input_high or 2, (batch, *loaded.input), generator=gen)
    else:
        x = torch.randn((batch, *loaded.input), generator=gen)
    with torch.no_grad():
        return model, x, model(x).numpy()


def _close(found, expected) -> None:
    """float32 outputs within 1e-5, relative to the largest output magnitude (at least 1)."""
    scale = max(1.0, float(np.abs(expected).max()))
    assert found.shape == expected.shape
    assert float(np.abs(found - expected).max()) <= 1e-5 * scale


def _export_all(name: str, tmp_path: Path, run_cli) -> None:
    import onnxruntime
    from safetensors.torch import load_file

    spec = SPECS / f"{name}.yaml"
    model, x, expected = _inputs(spec)
    # ONNX: onnxruntime on a batch of 5 (traced with 2): the batch dimension is dynamic
    res = run_cli(["export", spec, "--format", "onnx", "-o", tmp_path / "m.onnx", "--json"])
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["passed"] and doc["check"]["max_abs_diff"] <= 1e-5 * doc["check"]["scale"]
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    _close(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0], expected)
    # TorchScript: loaded back with torch.jit.load
    res = run_cli(["export", spec, "--format", "torchscript", "-o", tmp_path / "m.pt"])
    assert res.code == 0, res.err
    assert "max |difference|" in res.out and "ok" in res.out
    with torch.no_grad():
        _close(torch.jit.load(str(tmp_path / "m.pt")).eval()(x).numpy(), expected)
    # safetensors: every tensor bit for bit, and the network rebuilt from the file alone
    res = run_cli(["export", spec, "--format", "safetensors", "-o", tmp_path / "m.safetensors"])
    assert res.code == 0, res.err
    state = load_file(str(tmp_path / "m.safetensors"))
    # the file holds the exported model's tensors: the network's under `network.` (a spec has no
    # input normalisation in front)
    reference = {f"network.{k}": v for k, v in model.state_dict().items()}
    assert set(state) == set(reference)
    assert all(state[k].dtype == v.dtype and torch.equal(state[k], v) for k, v in reference.items())
    if "Custom" in spec.read_text():  # code in a weights file runs only when asked for
        with pytest.raises(InputError, match="Custom layers"):
            nncli.load(tmp_path / "m.safetensors")
        rebuilt = load_safetensors(tmp_path / "m.safetensors", allow_custom=True, spec_dir=SPECS)
    else:
        rebuilt = nncli.load(tmp_path / "m.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), reference.values(), strict=True))
    with torch.no_grad():
        assert np.array_equal(rebuilt(x).numpy(), expected)


@pytest.mark.parametrize("name", FAST)
def test_small_specs_export_to_every_format(name, tmp_path, run_cli):
    _export_all(name, tmp_path, run_cli)


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_large_specs_export_to_every_format(name, tmp_path, run_cli):
    _export_all(name, tmp_path, run_cli)


LGAMMA = '''
import torch

class LogGamma(torch.nn.Module):
    def forward(self, x):
        return torch.lgamma(x.abs() + 1)

class Frozen(torch.nn.Module):
    """Adds its input's mean as a Python number: tracing bakes the number in."""
    def forward(self, x):
        return x + float(x.mean())

class Unscriptable(torch.nn.Module):
    def forward(self, x, *rest):
        return x * len(rest) + x
'''


def _custom_spec(tmp_path: Path, layer: str) -> Path:
    (tmp_path / "odd_layers.py").write_text(LGAMMA)
    spec = tmp_path / "odd.yaml"
    spec.write_text(f"""
name: odd
input: [4]
layers:
  - Linear: {{out_features: 3}}
  - Custom: {{target: "odd_layers.py:{layer}"}}
""")
    return spec


def test_an_unsupported_layer_is_refused_exit_2_naming_it(tmp_path, run_cli):
    res = run_cli(["export", _custom_spec(tmp_path, "LogGamma"), "--format", "onnx", "-o", tmp_path / "m.onnx"])
    assert res.code == 2, res.err
    assert "layers[1] (LogGamma)" in res.err and "lgamma" in res.err and "Traceback" not in res.err
    assert not (tmp_path / "m.onnx").exists()
    res = run_cli(
        [
            "export",
            _custom_spec(tmp_path, "Unscriptable"),
            "--format",
            "torchscript",
            "--method",
            "script",
            "-o",
            tmp_path / "m.pt",
        ]
    )
    assert res.code == 2 and "layers[1] (Unscriptable)" in res.err, res.err


def test_an_export_that_differs_from_torch_exits_1(tmp_path, run_cli):
    spec = _custom_spec(tmp_path, "Frozen")
    res = run_cli(["export", spec, "--format", "onnx", "-o", tmp_path / "m.onnx", "--json"])
    assert res.code == 1
    doc = json.loads(res.out)
    assert doc["passed"] is False and doc["check"]["max_abs_diff"] > 1e-3
    res = run_cli(["export", spec, "--format", "torchscript", "-o", tmp_path / "m.pt"])
    assert res.code == 1 and "FAIL" in res.out


def test_a_run_exports_its_best_checkpoint_with_its_statistics(tmp_path, run_cli):
    from nncli.runs import load_checkpoint

    spec = tmp_path / "moons.yaml"
    spec.write_text(
        (SPECS / "moons-mlp.yaml").read_text().replace("epochs: 30", "epochs: 2").replace("epochs: 40", "epochs: 2")
    )
    run = tmp_path / "run"
    run_training(spec, {"epochs": 2}, run, device="cpu")
    res = run_cli(["export", run, "--format", "safetensors", "-o", tmp_path / "w.safetensors", "--json"])
    assert res.code == 0, res.err
    assert json.loads(res.out)["checkpoint"].endswith("best.pt")
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    model = nncli.load(str(tmp_path / "w.safetensors"))
    assert all(torch.equal(model.network.state_dict()[k], v) for k, v in ckpt["model"].items())
    assert model.nncli_meta["normalization"]["mean"] == ckpt["normalization"]["mean"].flatten().tolist()
    res = run_cli(["export", run, "--format", "onnx", "-o", tmp_path / "w.onnx"])
    assert res.code == 0 and "best.pt" in res.out
    # an existing file is kept unless --force
    res = run_cli(["export", run, "--format", "onnx", "-o", tmp_path / "w.onnx"])
    assert res.code == 2 and "--force" in res.err


def test_missing_packages_name_the_extra(monkeypatch, tmp_path, run_cli):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    res = run_cli(["export", SPECS / "moons-mlp.yaml", "--format", "onnx", "-o", tmp_path / "m.onnx"])
    assert res.code == 2 and "onnxruntime" in res.err and "pip install 'nncli[export]'" in res.err


def test_load_refuses_a_foreign_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(InputError, match="not written by `nncli export"):
        nncli.load(tmp_path / "x.safetensors")


ZOO = sorted(p.stem for p in (SPECS / "zoo").glob("*.yaml")) if (SPECS / "zoo").is_dir() else []


@pytest.mark.slow  # the search for the failing layer exports each of the network's layers
@pytest.mark.skipif("shufflenet-v2-x1-0" not in ZOO, reason="specs/zoo/shufflenet-v2-x1-0.yaml is not in this checkout")
def test_a_zoo_spec_onnx_cannot_express_is_refused_naming_the_layer(tmp_path, run_cli):
    spec = SPECS / "zoo" / "shufflenet-v2-x1-0.yaml"
    res = run_cli(["export", spec, "--format", "onnx", "-o", tmp_path / "s.onnx", "--json"])
    assert res.code == 2
    doc = json.loads(res.out)  # --json: the error as one JSON document, nothing else on stdout
    assert "(ChannelShuffle)" in doc["message"] and "aten::channel_shuffle" in doc["message"]
    assert not (tmp_path / "s.onnx").exists()
    res = run_cli(["export", spec, "--format", "torchscript", "-o", tmp_path / "s.pt", "--json"])
    assert res.code == 0 and json.loads(res.out)["passed"], res.err


@pytest.mark.slow
@pytest.mark.skipif("gpt-char" not in ZOO, reason="specs/zoo/gpt-char.yaml is not in this checkout")
def test_attention_exports_to_onnx_on_the_unfused_path(tmp_path, run_cli):
    """The fused attention kernel torch takes in eval mode has no ONNX operator; export turns it
    off, and onnxruntime agrees with torch (the export's own check, on another batch size)."""
    res = run_cli(["export", SPECS / "zoo" / "gpt-char.yaml", "--format", "onnx", "-o", tmp_path / "g.onnx", "--json"])
    assert res.code == 0 and json.loads(res.out)["passed"], res.err
    import torch

    assert torch.backends.mha.get_fastpath_enabled()  # switched back on after the export


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_specs_export_or_are_refused_naming_the_layer(name, tmp_path, run_cli):
    spec = SPECS / "zoo" / f"{name}.yaml"
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt"), ("safetensors", ".safetensors")):
        res = run_cli(["export", spec, "--format", fmt, "-o", tmp_path / f"m{suffix}", "--json"])
        assert res.code in (0, 2), (fmt, res.err)
        doc = json.loads(res.out)
        if res.code == 2:
            assert fmt == "onnx" and doc["message"].startswith("ONNX export cannot express layers["), doc["message"]
        else:
            assert doc["passed"], (fmt, doc["check"])
