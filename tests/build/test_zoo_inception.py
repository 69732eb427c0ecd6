"""Inception-v3 with its auxiliary head (``specs/graphs/inception-v3.yaml``) against a hand-written
reference (``tests/zoo_models_inception.py``, after torchvision's ``inception.py``).

- The reference has torchvision's count with the auxiliary head, 27,161,264; the spec builds to it
  and has two outputs, ``logits`` and ``aux``.
- Both outputs compute the reference's: its weights made to matter (He-normal convolutions,
  batch-norm statistics calibrated on the input), copied into nncli's build by position, then one
  float64 forward pass in eval mode at the spec's 299x299 (the auxiliary head needs the 17x17 grid
  that only an input near 299 gives) agrees to 1e-9.
"""

from __future__ import annotations

import json

import torch
import zoo_models_inception as inception
from conftest import SPECS
from zoo_models_weights import copy_weights, make_every_layer_matter

from nncli.build import build_model, count_params, infer
from nncli.spec import load_spec

torch.set_num_threads(1)

SPEC = SPECS / "graphs" / "inception-v3.yaml"
COUNT = inception.PUBLISHED["inception_v3"]


def test_reference_has_torchvisions_count_with_the_aux_head():
    with torch.device("meta"):
        hand = inception.inception_v3()
    assert sum(p.numel() for p in hand.parameters()) == COUNT == 27_161_264
    aux = sum(p.numel() for p in hand.AuxLogits.parameters())
    assert COUNT - aux == 23_834_568  # torchvision's inception_v3 without the head


def test_spec_has_the_count_and_two_outputs():
    built = infer(load_spec(SPEC))
    assert count_params(built.model)[0] == COUNT
    assert [(name, shape) for name, shape, _ in built.outputs] == [("logits", (1000,)), ("aux", (1000,))]


def test_check_params_and_diagram_take_it(run_cli, tmp_path):
    result = run_cli(["params", SPEC, "--json"])
    assert result.code == 0, result.text
    assert json.loads(result.out)["total"] == COUNT
    result = run_cli(["check", SPEC, "--json"])
    assert result.code == 0, result.text
    report = json.loads(result.out)
    assert [o["name"] for o in report["outputs"]] == ["logits", "aux"]
    assert report["findings"] == []  # the aux head reads Mixed_6e: it does not continue the logits
    result = run_cli(["diagram", SPEC, "-o", tmp_path / "net.dot", "--json"])
    assert result.code == 0, result.text
    edges = json.loads(result.out)["graph"]["edges"]
    sinks = {e["to"]: e["shape"] for e in edges if e["to"].startswith("output_")}
    assert sinks == {"output_logits": [1000], "output_aux": [1000]}


def test_spec_computes_both_outputs_of_the_reference():
    gen = torch.Generator().manual_seed(0)
    hand = inception.inception_v3().to(torch.float64)
    x = torch.randn(2, 3, 299, 299, generator=gen, dtype=torch.float64)  # two: the 1x1 batch norms calibrate
    make_every_layer_matter(hand, x, gen)
    built = build_model(load_spec(SPEC), seed=0, dtype=torch.float64).model
    copy_weights(hand, built)
    built.eval()
    with torch.no_grad():
        want, got = hand(x), built(x)
    assert len(got) == 2
    for ours, theirs in zip(got, want):
        assert ours.shape == theirs.shape == (2, 1000)
        assert torch.isfinite(theirs).all() and theirs.abs().max() > 1e-3
        assert (ours - theirs).abs().max() <= 1e-9 * max(1.0, theirs.abs().max().item())
    assert not torch.allclose(got[0], got[1])  # two different heads, not one tensor twice
