"""Speed where users wait, checked without timing anything (timings flake on a shared machine).

- ``nncli check``, ``params`` and ``diagram`` on the ready specs never import ``torch._dynamo``:
  shape inference runs shape rules or real CPU zeros, not meta kernels (1-2 s of imports), and
  ``params`` counts by formula. Run in a fresh interpreter, since this one may have loaded it.
- The FLOP and memory formulas (``nncli.flops``) agree exactly with torch's own accounting
  (``FlopCounterMode`` and ``saved_tensors_hooks`` on meta tensors, the dispatch path) on every
  ready spec they cover, per module, for the whole model and the bytes saved for backward.
- The shape rules for Linear/ConvNd agree with a real torch forward.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import textwrap

import pytest
import torch
from torch import nn

from conftest import PYTHON, ROOT, SPECS, subprocess_env

READY = sorted(SPECS.glob("*.yaml")) + sorted((SPECS / "zoo").glob("*.yaml"))
# Specs the formulas must cover (every layer has one): a failure to cover them would make the
# dynamo test below silently skip `params` for them.
MUST_COVER = {"lenet5", "alexnet", "vgg16", "resnet18", "resnet50", "resnet-tiny", "lecture-mlp",
              "moons-mlp", "digits-cnn", "deep-relu-he", "deep-residual-bn", "deep-sigmoid"}

_PROBE = textwrap.dedent("""
    import json, sys, tempfile
    from pathlib import Path
    from nncli.cli import main
    from nncli.build import infer
    from nncli.flops import formula_forward
    from nncli.spec import load_spec

    out, first, codes, covered = Path(tempfile.mkdtemp()), None, {}, []
    def run(args, what):
        global first
        codes[what] = main(args)
        if first is None and "torch._dynamo" in sys.modules:
            first = what
    for path in sys.argv[1:]:
        name = Path(path).stem
        run(["check", path, "--json"], f"check {name}")
        run(["diagram", path, "-o", str(out / (name + ".dot"))], f"diagram {name}")
    for path in sys.argv[1:]:
        if formula_forward(infer(load_spec(path)), 1, 4) is not None:
            covered.append(Path(path).stem)
            run(["params", path, "--json"], f"params {Path(path).stem}")
    print("@@" + json.dumps({"first": first, "codes": codes, "covered": covered}))
""")


def test_check_params_diagram_never_import_dynamo():
    proc = subprocess.run([PYTHON, "-c", _PROBE, *map(str, READY)], capture_output=True, text=True,
                          env=subprocess_env(OMP_NUM_THREADS="1"), cwd=ROOT, timeout=600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(line[-1][2:])
    assert result["first"] is None, f"{result['first']} imported torch._dynamo"
    assert MUST_COVER <= set(result["covered"]), MUST_COVER - set(result["covered"])
    # every command ran (0) or found a lint problem (1), never bad input or a bug
    assert all(code in (0, 1) for code in result["codes"].values()), result["codes"]


def _formula_and_dispatch(path, batch):
    from nncli.build import infer
    from nncli.flops import formula_forward
    from nncli.params import measure_forward
    from nncli.spec import load_spec

    built = infer(load_spec(path))
    formula = formula_forward(built, batch, 4)
    if formula is None:
        return built, None, None
    return built, formula, measure_forward(built.model, built.input_shape, batch, 4)


@pytest.mark.parametrize("path", READY, ids=lambda p: p.stem)
def test_formulas_agree_with_torch_dispatch(path):
    # batch 3: odd, and BatchNorm in train mode refuses a batch of 1 without spatial dims
    built, formula, dispatch = _formula_and_dispatch(path, 3)
    if formula is None:
        assert path.stem not in MUST_COVER
        pytest.skip("a layer without an exact formula: params counts it by dispatch")
    flops, saved = formula
    ref_flops, ref_saved = dispatch
    assert saved == ref_saved
    assert flops[""] == ref_flops[""]
    for info in built.walk():
        assert flops.get(info.fqn, 0) == ref_flops.get(info.fqn, 0), (info.fqn, info.type)


def test_formulas_fall_back_where_they_do_not_apply(write_spec):
    custom = SPECS / "custom-swish.yaml"
    assert _formula_and_dispatch(custom, 2)[1] is None  # a Custom layer: dispatch decides
    inplace = write_spec(textwrap.dedent("""
        input: [8]
        layers:
          - Linear: {out_features: 4}
          - ReLU: {inplace: true}
    """))
    assert _formula_and_dispatch(inplace, 2)[1] is None  # in place: saves its input's storage


def _conv_cases():
    for n, (k, s, p, d, size) in itertools.product((1, 2), itertools.product(
            (1, 3, 4), (1, 2, 3), (0, 1, 2, "same", "valid"), (1, 2), (1, 3, 7))):
        if p == "same" and s != 1:
            continue  # torch refuses it in the constructor
        yield n, k, s, p, d, size


def test_shape_rules_match_a_real_forward():
    from nncli.build.inference import rule_shape

    checked = 0
    for n, k, s, p, d, size in _conv_cases():
        conv = (nn.Conv1d, nn.Conv2d)[n - 1](3, 5, k, stride=s, padding=p, dilation=d)
        shape = (3,) + (size,) * n
        try:
            real = tuple(conv(torch.zeros(2, *shape)).shape[1:])
        except RuntimeError:
            real = None
        ruled = rule_shape(conv, shape)
        if ruled is not None:  # the rule may decline (then the layer is run), never be wrong
            assert ruled == real, (n, k, s, p, d, size)
            checked += 1
        else:
            assert real is None or 0 in real, (n, k, s, p, d, size)
    assert checked > 200
    lin = nn.Linear(6, 4)
    assert rule_shape(lin, (5, 6)) == tuple(lin(torch.zeros(2, 5, 6)).shape[1:])
    assert rule_shape(lin, (5, 7)) is None  # a mismatch is left to torch's own error
