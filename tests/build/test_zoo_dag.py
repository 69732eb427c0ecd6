"""The graph specs (``specs/graphs/``) against hand-written torch models (tests/zoo_models_dag.py):
the exact parameter count, and the same function in float64 after copying the weights."""

from __future__ import annotations

import pytest
import torch
import yaml
import zoo_models_dag as dag
from conftest import SPECS
from torch import nn

from nncli.build import build_model, infer
from nncli.spec import load_spec, parse_spec

torch.set_num_threads(1)
GRAPHS = SPECS / "graphs"
TRANSFORMER_CORE = 44_140_544  # torch.nn.Transformer() at its defaults


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _copy_into(ours: nn.Module, theirs: list) -> None:
    mine = list(ours.parameters())
    assert [tuple(p.shape) for p in mine] == [tuple(p.shape) for p in theirs]
    with torch.no_grad():
        for a, b in zip(mine, theirs):
            a.copy_(b)


def _small(name: str, **vars_) -> object:
    data = yaml.safe_load((GRAPHS / name).read_text())
    data["vars"].update(vars_)
    return parse_spec(yaml.safe_dump(data, sort_keys=False), file=str(GRAPHS / name))


def test_siamese_has_one_tower_and_computes_the_reference():
    built = build_model(load_spec(GRAPHS / "siamese.yaml"), dtype=torch.float64)
    ref = dag.Siamese().double()
    assert _count(built.model) == _count(ref) == 320 + 18_496 + 204_928 + 16_448 + 130
    _copy_into(built.model, ref.flow_params())
    left, right = (torch.randn(2, 1, 28, 28, dtype=torch.float64) for _ in range(2))
    assert torch.allclose(built.model(left, right), ref(left, right), rtol=0, atol=1e-12)
    assert built.model.tower is built.layers[1].module  # the right image goes through the same tower


def test_gpt_char_tied_counts_the_embedding_once_and_computes_the_reference():
    built = build_model(load_spec(GRAPHS / "gpt-char-tied.yaml"), dtype=torch.float64)
    ref = dag.TiedGPT(73).double()
    assert _count(built.model) == _count(ref) == 820_297 - 73 * 128
    assert built.model.head.weight is built.model.tokens.weight
    _copy_into(built.model, ref.flow_params())
    tokens = torch.randint(0, 73, (2, 64))
    assert torch.allclose(built.model(tokens), ref(tokens), rtol=0, atol=1e-10)


def test_transformer_full_size_count_is_the_torch_core_plus_embeddings():
    built = infer(load_spec(GRAPHS / "transformer.yaml"))
    with torch.device("meta"):
        ref = dag.Seq2SeqTransformer()
        core = nn.Transformer()
    assert _count(core) == TRANSFORMER_CORE
    assert _count(built.model) == _count(ref) == TRANSFORMER_CORE + 1000 * 512 + 2 * 32 * 512


def test_transformer_small_computes_the_reference():
    spec = _small("transformer.yaml", d=32, heads=4, layers=2, ff=64)
    built = build_model(spec, dtype=torch.float64)
    ref = dag.Seq2SeqTransformer(d=32, heads=4, layers=2, ff=64).double()
    assert _count(built.model) == _count(ref)
    _copy_into(built.model, ref.flow_params())
    built.model.eval(), ref.eval()
    source, target = torch.randint(0, 1000, (2, 32)), torch.randint(0, 1000, (2, 32))
    assert torch.allclose(built.model(source, target), ref(source, target), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "name", ["siamese.yaml", "gpt-char-tied.yaml", "transformer.yaml", "bert-base.yaml", "wavenet.yaml"]
)
def test_graph_specs_check_and_count(run_cli, name):
    import json

    res = run_cli(["params", GRAPHS / name, "--json"])
    assert res.code == 0, res.err
    assert json.loads(res.out)["total"] == _count(infer(load_spec(GRAPHS / name)).model)


def test_bert_base_count_with_the_pooler():
    built = infer(load_spec(GRAPHS / "bert-base.yaml"))
    with torch.device("meta"):
        ref = dag.Bert()
    assert _count(built.model) == _count(ref) == 109_482_240
    assert [o[0] for o in built.outputs] == ["sequence", "pooled"]


def test_bert_small_computes_the_reference_with_token_types():
    spec = _small("bert-base.yaml", d=32, heads=4, layers=2, ff=64)
    built = build_model(spec, dtype=torch.float64)
    ref = dag.Bert(d=32, heads=4, layers=2, ff=64).double()
    _copy_into(built.model, ref.flow_params())
    built.model.eval(), ref.eval()
    tokens, types = torch.randint(0, 30522, (2, 128)), torch.randint(0, 2, (2, 128))
    for ours, theirs in zip(built.model(tokens, types), ref(tokens, types)):
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-10)
    assert not torch.allclose(built.model(tokens, types)[1], built.model(tokens, 1 - types)[1])


def test_wavenet_sums_the_skips_of_every_layer():
    built = build_model(load_spec(GRAPHS / "wavenet.yaml"), dtype=torch.float64)
    ref = dag.WaveNet().double()
    assert _count(built.model) == _count(ref) == 8_224 + 10 * 13_664 + 2 * 65_792
    _copy_into(built.model, ref.flow_params())
    x = torch.randn(2, 256, 1024, dtype=torch.float64)
    assert torch.allclose(built.model(x), ref(x), rtol=0, atol=1e-10)
