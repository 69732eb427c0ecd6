"""Speed where users wait, checked without timing anything (timings flake on a shared machine).

- ``nncli check``, ``params`` and ``diagram`` on the ready specs never import ``torch._dynamo``,
  nor sympy (which torch's Python meta references pull in, a start-up cost every command would pay):
  shape inference runs shape rules or real CPU zeros, not meta kernels (and their imports), and
  ``params`` counts by formula (every ready spec without a Custom layer). Run in a fresh
  interpreter, since this one may have loaded it.
- The FLOP and memory formulas (``nncli.flops``) agree exactly with torch's own accounting
  (``FlopCounterMode`` and ``saved_tensors_hooks`` on meta tensors, the dispatch path) on every
  ready spec at batch 1 and 3, per module, for the whole model and the bytes saved for
  backward; so do small specs that reach every rule (merges, views that force copies,
  attention's and recurrent layers' options) and specs whose layers without a rule are
  dispatched one by one.
- The shape rules (Linear, ConvNd, shape-keeping layers, Flatten) agree with a real torch forward.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import textwrap

import pytest
import torch
from conftest import PYTHON, ROOT, SPECS, subprocess_env
from torch import nn

READY = sorted(SPECS.glob("*.yaml")) + sorted((SPECS / "zoo").glob("*.yaml"))
# The ready specs with a layer params counts by dispatch (which imports torch._dynamo), and why.
# Every other ready spec must be covered by the formulas alone: a failure to cover one would make
# the dynamo test below silently skip `params` for it.
FALLS_BACK = {"custom-swish": "a Custom layer"}
MUST_COVER = {p.stem for p in READY} - set(FALLS_BACK)

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
        loaded = [m for m in ("torch._dynamo", "sympy") if m in sys.modules]
        if first is None and loaded:
            first = f"{what} ({loaded[0]})"
    for path in sys.argv[1:]:
        name = Path(path).stem
        run(["check", path, "--json"], f"check {name}")
        run(["diagram", path, "-o", str(out / (name + ".dot"))], f"diagram {name}")
    for path in sys.argv[1:]:
        built = infer(load_spec(path))
        if formula_forward(built, 1, 4, integer_input=built.input_dtype.startswith("int"),
                           dispatch=False) is not None:
            covered.append(Path(path).stem)
            run(["params", path, "--json"], f"params {Path(path).stem}")
    print("@@" + json.dumps({"first": first, "codes": codes, "covered": covered}))
""")


def test_check_params_diagram_never_import_dynamo():
    proc = subprocess.run(
        [PYTHON, "-c", _PROBE, *map(str, READY)],
        capture_output=True,
        text=True,
        env=subprocess_env(OMP_NUM_THREADS="1"),
        cwd=ROOT,
        timeout=600,
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(line[-1][2:])
    assert result["first"] is None, f"{result['first']} imported torch._dynamo or sympy"
    assert MUST_COVER <= set(result["covered"]), MUST_COVER - set(result["covered"])
    # every command ran (0) or found a lint problem (1), never bad input or a bug
    assert all(code in (0, 1) for code in result["codes"].values()), result["codes"]


def _formula_and_dispatch(path, batch):
    from nncli.build import infer
    from nncli.flops import formula_forward
    from nncli.params import measure_forward
    from nncli.spec import load_spec

    built = infer(load_spec(path))
    formula = formula_forward(built, batch, 4, dispatch=False)
    if formula is None:
        return built, None, None
    return built, formula, measure_forward(built.model, built.input_shape, batch, 4)


def _dispatch_at(built, batch):
    """torch's count at ``batch``; at 1, where train-mode BatchNorm refuses one value per channel,
    what ``nncli params`` does then: f(1) = 2 f(2) - f(3) (FLOPs and bytes are affine in the batch)."""
    from nncli.params import measure_forward

    integer = torch.int64 if built.input_dtype.startswith("int") else torch.float32
    try:
        return measure_forward(built.model, built.input_shape, batch, 4, integer)
    except ValueError:
        (f2, a2), (f3, a3) = (measure_forward(built.model, built.input_shape, b, 4, integer) for b in (2, 3))
        return {k: 2 * f2[k] - f3.get(k, 0) for k in f2}, 2 * a2 - a3


def _assert_agree(built, batch, dispatch=True):
    """Formulas (with the layers they lack dispatched one by one, unless ``dispatch`` is False)
    against the whole model's dispatch: per module, in total and in bytes saved."""
    from nncli.flops import formula_forward

    formula = formula_forward(built, batch, 4, integer_input=built.input_dtype.startswith("int"), dispatch=dispatch)
    assert formula is not None
    (flops, saved), (ref_flops, ref_saved) = formula, _dispatch_at(built, batch)
    assert saved == ref_saved
    assert flops[""] == ref_flops[""]
    for info in built.walk():
        assert flops.get(info.fqn, 0) == ref_flops.get(info.fqn, 0), (info.fqn, info.type)


# batch 1: params' default (some views are contiguous only then); 3: odd, and views are not
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("path", READY, ids=lambda p: p.stem)
def test_formulas_agree_with_torch_dispatch(path, batch):
    from nncli.build import infer
    from nncli.flops import formula_forward
    from nncli.spec import load_spec

    built = infer(load_spec(path))
    pure = formula_forward(built, batch, 4, integer_input=built.input_dtype.startswith("int"), dispatch=False)
    # formulas alone cover every ready spec but those listed; those count the layers without a
    # formula by dispatch, one layer at a time, and must agree just the same
    assert (pure is None) == (path.stem in FALLS_BACK)
    _assert_agree(built, batch, dispatch=path.stem in FALLS_BACK)


def test_formulas_fall_back_where_they_do_not_apply(write_spec):
    custom = SPECS / "custom-swish.yaml"
    assert _formula_and_dispatch(custom, 2)[1] is None  # a Custom layer: dispatch decides
    inplace = write_spec(
        textwrap.dedent("""
        input: [8]
        layers:
          - Linear: {out_features: 4}
          - ReLU: {inplace: true}
    """)
    )
    assert _formula_and_dispatch(inplace, 2)[1] is None  # in place: saves its input's storage


def test_layers_without_a_formula_are_dispatched_one_by_one(write_spec):
    # a Custom layer, an in-place activation, torch layers with no rule (or none for these
    # arguments), inside composites and on views: each runs alone by dispatch, the rest by
    # formula, and the sum is torch's own
    from nncli.build import infer
    from nncli.flops import formula_forward
    from nncli.spec import load_spec

    shutil.copy(SPECS / "swish_layers.py", write_spec("", "spec.yaml").parent / "swish_layers.py")
    mixed = write_spec(
        textwrap.dedent("""
        input: [3, 8, 8]
        layers:
          - Conv2d: {out_channels: 6, kernel_size: 3, padding: 1}
          - Conv2d: {out_channels: 6, kernel_size: 2, padding: same}  # padded into a copy first
          - Conv2d: {out_channels: 6, kernel_size: 3, padding: 1, padding_mode: reflect}  # also
          - Custom: {target: "swish_layers.py:Swish"}
          - Residual: {body: [BatchNorm2d, ReLU: {inplace: true}, Conv2d: {out_channels: 6, kernel_size: 1}]}
          - Parallel: {branches: [[Chunk: {chunks: 2, dim: 1, index: 0}, Custom: {target: "swish_layers.py:Swish"}],
                                  [PixelUnshuffle: {downscale_factor: 2}, PixelShuffle: {upscale_factor: 2},
                                   Conv2d: {out_channels: 3, kernel_size: 1}]]}
          - Flatten
          - Linear: {out_features: 4}
    """),
        "mixed.yaml",
    )
    tokens = write_spec(
        textwrap.dedent("""
        input: {shape: [6], dtype: int64, high: 9}
        layers:
          - Embedding: {embedding_dim: 8, max_norm: 1.0}  # renormalises its weight: no rule
          - TransformerEncoderLayer: {nhead: 2, dim_feedforward: 16, causal: true}
          - TransformerEncoderLayer: {nhead: 2, dim_feedforward: 16, norm_first: true, dropout: 0.0}
          - Linear: {out_features: 3}
    """),
        "tokens.yaml",
    )
    for path in (mixed, tokens):
        built = infer(load_spec(path))
        integer = built.input_dtype.startswith("int")
        assert formula_forward(built, 1, 4, integer_input=integer, dispatch=False) is None  # not alone
        for batch in (1, 3):
            _assert_agree(built, batch)


def _conv_cases():
    for n, (k, s, p, d, size) in itertools.product(
        (1, 2), itertools.product((1, 3, 4), (1, 2, 3), (0, 1, 2, "same", "valid"), (1, 2), (1, 3, 7))
    ):
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


# Small specs for the rules the ready specs do not reach: every merge, views that make a later op
# copy (a non-contiguous input to Linear), attention's options, recurrent layers' options.
_VARIANTS = {
    "merges": """
        input: [4, 6, 6]
        layers:
          - Parallel: {merge: mul, branches: [[], [AdaptiveAvgPool2d: {output_size: 1}, Sigmoid]]}
          - Conv2d: {out_channels: 4, kernel_size: 1}
          - Parallel: {merge: max, branches: [[], [Conv2d: {out_channels: 4, kernel_size: 1}], [Tanh]]}
          - Parallel: {merge: mean, branches: [[ReLU], [GELU]]}
          - Parallel: {merge: add, branches: [[Conv2d: {out_channels: 4, kernel_size: 1}], [], [Sigmoid]]}
          - Parallel: {merge: concat, branches: [[], [AvgPool2d: {kernel_size: 3, stride: 1, padding: 1}]]}
          - StochasticDepth: {p: 0.2, mode: batch}
          - Step
          - Mean: {dim: [2, 3]}
    """,
    "views": """
        input: [6, 4, 5]
        layers:
          - Linear: {out_features: 5}
          - Permute: {dims: [0, 2, 1, 3]}
          - Linear: {out_features: 3}
          - Transpose: {dim0: 1, dim1: 2}
          - GELU
          - Dropout: {p: 0.5}
          - Narrow: {dim: 2, start: 1, length: 2}
          - Linear: {out_features: 4}
          - Chunk: {chunks: 2, dim: 1, index: 1}
          - Reshape: {shape: [6, 4]}
          - Softmax: {dim: 1}
          - StochasticDepth: {p: 0.5, mode: row}
          - Select: {dim: 1, index: 3}
          - Linear: {out_features: 2}
    """,
    "activations": """
        input: [4, 5, 5]
        layers:
          - GroupNorm: {num_groups: 2}
          - LeakyReLU
          - Conv2d: {out_channels: 4, kernel_size: 1}
          - ELU
          - Softplus
          - Hardtanh
          - Mish
          - Hardswish
          - ReLU6
          - Tanh
          - LogSoftmax: {dim: 1}
          - ConvTranspose2d: {out_channels: 2, kernel_size: 2, stride: 2}
          - AdaptiveAvgPool2d: {output_size: 3}
          - Flatten
          - BatchNorm1d
          - SiLU
    """,
    "modern": """
        input: [4, 6, 6]
        layers:
          - LayerNorm2d                                  # on the input: no gradient to it
          - Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}   # on LayerNorm2d's permuted output
          - LayerNorm2d
          - LayerScale: {init: 0.5}                      # on a channels-last layout
          - Hardsigmoid
          - Permute: {dims: [0, 2, 3, 1]}
          - LayerScale: {init: 0.5, dim: -1}
          - Linear: {out_features: 4}
          - Permute: {dims: [0, 3, 1, 2]}
          - AdaptiveAvgPool2d: {output_size: 1}          # on a permuted layout
          - Flatten
          - LayerScale: {init: 0.5}
          - Hardsigmoid
    """,
    "attention": """
        input: [7, 12]
        layers:
          - SelfAttention: {num_heads: 3, causal: true, dropout: 0.1}
          - Residual: {body: [LayerNorm, SelfAttention: {num_heads: 2, bias: false}]}
          - ClassToken
          - PositionEmbedding
          - SelfAttention: {num_heads: 4}
          - TransformerEncoderLayer: {nhead: 2, dim_feedforward: 16, causal: true}
          - TransformerEncoderLayer: {nhead: 4, dim_feedforward: 8, norm_first: true, activation: gelu}
          - Linear: {out_features: 5}
    """,
    "tokens": """
        input: {shape: [1], dtype: int64, high: 9}
        layers:
          - Embedding: {embedding_dim: 8}
          - SelfAttention: {num_heads: 2, causal: true}
          - GRU: {hidden_size: 6, num_layers: 2, dropout: 0.2}
          - RNN: {hidden_size: 5, nonlinearity: relu, bidirectional: true}
          - LSTM: {hidden_size: 4, num_layers: 3, returns: last}
          - Linear: {out_features: 3}
    """,
}


@pytest.mark.parametrize("name", sorted(_VARIANTS))
def test_formulas_agree_on_every_rule(name, write_spec):
    from nncli.build import infer
    from nncli.spec import load_spec

    built = infer(load_spec(write_spec(textwrap.dedent(_VARIANTS[name]), f"{name}.yaml")))
    for batch in (1, 2):
        _assert_agree(built, batch, dispatch=False)


def test_modern_rules_match_what_a_real_cpu_forward_saves(write_spec):
    # LayerNorm2d, LayerScale, Hardsigmoid and a convolution on a channels-last layout: the bytes
    # autograd keeps on real CPU tensors (train mode, real kernels), not only on meta ones
    from nncli.build import build_model, infer
    from nncli.flops import formula_forward
    from nncli.params import measure_forward
    from nncli.spec import load_spec

    spec = load_spec(write_spec(textwrap.dedent(_VARIANTS["modern"]), "modern.yaml"))
    built = infer(spec)
    model = build_model(spec, seed=0).model.train()
    for batch in (1, 3):
        flops, saved = formula_forward(built, batch, 4, dispatch=False)
        real_flops, real_saved = measure_forward(model, built.input_shape, batch, 4)
        assert saved == real_saved and flops[""] == real_flops[""]


def test_shape_keeping_rules_match_a_real_forward():
    """Activations, Identity, Dropout, norms and Flatten by rule: wherever a rule answers, a real
    forward (eval mode, as shape inference runs) gives that shape; where torch refuses the input,
    the rule declines and the layer is run for torch's own error."""
    from nncli.build.inference import rule_shape

    modules = [
        nn.ReLU(),
        nn.GELU(),
        nn.Hardtanh(),
        nn.LeakyReLU(0.1),
        nn.SiLU(inplace=True),
        nn.Identity(),
        nn.Dropout(0.5),
        nn.AlphaDropout(0.2),
        nn.BatchNorm1d(3),
        nn.BatchNorm2d(3),
        nn.BatchNorm3d(3),
        nn.LayerNorm(4),
        nn.LayerNorm([3, 4]),
        nn.GroupNorm(1, 3),
        nn.Flatten(),
        nn.Flatten(2),
        nn.Softmax(dim=3),
        nn.PReLU(4),
        # arguments the constructor takes but forward refuses: the rule must decline them
        nn.GELU(approximate="foo"),
        nn.ELU(alpha="abc"),
        nn.CELU(alpha=0.0),
        nn.RReLU(0.5, 0.1),
        nn.Softshrink(-1.0),
        nn.BatchNorm1d(3, eps="abc"),
        nn.LayerNorm(4, eps="abc"),
        nn.GroupNorm(1, 3, eps="abc"),
    ]
    shapes = [(3,), (4,), (3, 4), (4, 3), (3, 4, 4), (3, 3, 4), (3, 2, 2, 4), (2, 3, 4, 4)]
    checked = declined = 0
    for module, shape in itertools.product(modules, shapes):
        module.eval()
        try:
            real = tuple(module(torch.zeros(2, *shape)).shape[1:])
        except (RuntimeError, ValueError, IndexError, TypeError):
            real = None
        ruled = rule_shape(module, shape)
        if ruled is None:
            declined += 1
            continue
        assert ruled == real, (module, shape)
        checked += 1
    assert checked > 60 and declined > 20, (checked, declined)
    # the ones that must stay with torch: dim-dependent or channel-dependent layers
    assert rule_shape(nn.Softmax(dim=1), (3, 4)) is None and rule_shape(nn.PReLU(3), (3, 4)) is None
    assert rule_shape(nn.BatchNorm2d(3), (4, 4, 4)) is None  # wrong channels: torch words it
