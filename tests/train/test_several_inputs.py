"""Training, evaluating, predicting and exporting a network with two float inputs and an
auxiliary output: the data file holds one array per input name, each float input is standardised
with its own training statistics, and ``train.outputs`` adds the auxiliary head's weighted loss.

References are written here by hand: one SGD step of the weighted two-head loss in plain torch,
the statistics by numpy, and the trained model applied to hand-standardised inputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spec_texts import TWO_FLOAT_DAG

from nncli.build import build_model
from nncli.spec import parse_spec

SPEC = TWO_FLOAT_DAG


def _arrays(n: int, seed: int = 1) -> dict:
    """Two inputs on very different scales (a's first feature near 500, spread 100)."""
    g = np.random.default_rng(seed)
    a = (g.normal(size=(n, 2)) * [100, 0.01] + [500, -3]).astype(np.float32)
    b = (g.normal(size=(n, 3)) * 50).astype(np.float32)
    y = ((a[:, 0] - 500) / 100 + b[:, 0] / 50 > 0).astype(np.int64)
    return {"a": a, "b": b, "y": y}


def _write(tmp_path, data: str, train: str, arrays: dict | None = None):
    np.savez(tmp_path / "two.npz", **(arrays if arrays is not None else _arrays(600)))
    spec = tmp_path / "two.yaml"
    spec.write_text(SPEC + f"data: {data}\ntrain: {train}\n")
    return spec


def test_one_step_of_main_and_weighted_auxiliary_loss_matches_torch(tmp_path, run_cli, one_torch_thread):
    arrays = _arrays(256)
    spec = _write(
        tmp_path,
        "{path: two.npz, val: 0, test: 0, normalize: false}",
        "{optimizer: sgd, lr: 0.05, batch_size: 256, epochs: 1, outputs: {aux: 0.3}}",
        arrays,
    )
    assert run_cli(["train", spec, "--out", tmp_path / "run", "--json"]).code == 0
    trained = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]

    model = build_model(parse_spec(SPEC), seed=0).model  # the run's initial weights (train.seed 0)
    a, b, y = (torch.from_numpy(arrays[k]) for k in ("a", "b", "y"))
    main, aux = model(a, b)
    loss = F.cross_entropy(main, y) + 0.3 * F.cross_entropy(aux, y)
    loss.backward()
    with torch.no_grad():
        expected = {k: p - 0.05 * p.grad for k, p in model.named_parameters()}
    assert set(expected) == set(trained)
    for name, value in expected.items():
        torch.testing.assert_close(trained[name], value, rtol=1e-5, atol=1e-6, msg=name)
    # the auxiliary head moved: its loss was part of the step
    assert not torch.equal(
        trained["aux.weight"], dict(build_model(parse_spec(SPEC), seed=0).model.named_parameters())["aux.weight"]
    )


def test_each_float_input_is_standardised_with_its_own_statistics(tmp_path, run_cli, one_torch_thread):
    arrays = _arrays(600)
    spec = _write(tmp_path, "{path: two.npz, val: 0, test: 0}", "{lr: 0.01, epochs: 2}", arrays)
    run = tmp_path / "run"
    assert run_cli(["train", spec, "--out", run, "--json"]).code == 0
    stats = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["normalization"]
    for name in ("a", "b"):  # all rows are training rows here: numpy's statistics of the file
        np.testing.assert_allclose(stats["mean"][name].numpy(), arrays[name].mean(0), rtol=1e-5)
        np.testing.assert_allclose(stats["std"][name].numpy(), arrays[name].std(0), rtol=1e-4)

    # raw rows in: predict, nncli.load (positional and by keyword) and a hand-standardised forward agree
    import nncli

    rows = {k: arrays[k][:50] for k in ("a", "b")}
    np.savez(tmp_path / "rows.npz", **rows)
    result = run_cli(["predict", run, tmp_path / "rows.npz", "--json"])
    assert result.code == 0, result.text
    predicted = json.loads(result.out)["predictions"]
    model = nncli.load(run)
    a, b = torch.from_numpy(rows["a"]), torch.from_numpy(rows["b"])
    with torch.no_grad():
        loaded = model(a, b)[0]
        by_name = model(b=b, a=a)[0]
        network = model.network  # the spec's network alone, fed by hand
        hand = network((a - stats["mean"]["a"]) / stats["std"]["a"], (b - stats["mean"]["b"]) / stats["std"]["b"])[0]
    assert torch.equal(loaded, by_name)
    torch.testing.assert_close(loaded, hand)
    assert predicted == hand.argmax(1).tolist()


def test_onnx_file_names_both_inputs_and_outputs_and_takes_raw_rows(tmp_path, run_cli, one_torch_thread):
    ort = pytest.importorskip("onnxruntime")
    arrays = _arrays(400)
    spec = _write(tmp_path, "{path: two.npz}", "{lr: 0.01, epochs: 2, outputs: {aux: 0.5}}", arrays)
    run = tmp_path / "run"
    assert run_cli(["train", spec, "--out", run, "--json"]).code == 0
    exported = run_cli(["export", run, "--out", tmp_path / "two.onnx", "--json"])
    assert exported.code == 0, exported.text
    doc = json.loads(exported.out)
    assert [i["name"] for i in doc["inputs"]] == ["a", "b"] and [o["name"] for o in doc["outputs"]] == ["main", "aux"]
    session = ort.InferenceSession(str(tmp_path / "two.onnx"))
    assert [i.name for i in session.get_inputs()] == ["a", "b"]
    main, aux = session.run(None, {"a": arrays["a"][:20], "b": arrays["b"][:20]})
    import nncli

    with torch.no_grad():
        expected = nncli.load(run)(torch.from_numpy(arrays["a"][:20]), torch.from_numpy(arrays["b"][:20]))
    np.testing.assert_allclose(main, expected[0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(aux, expected[1].numpy(), rtol=1e-4, atol=1e-4)


def test_safetensors_file_keeps_each_inputs_statistics(tmp_path, run_cli, one_torch_thread):
    pytest.importorskip("safetensors")
    import nncli

    spec = _write(tmp_path, "{path: two.npz}", "{lr: 0.01, epochs: 1}")
    run = tmp_path / "run"
    assert run_cli(["train", spec, "--out", run, "--json"]).code == 0
    exported = run_cli(["export", run, "--out", tmp_path / "two.safetensors", "--json"])
    assert exported.code == 0 and json.loads(exported.out)["passed"], exported.text
    a, b = torch.randn(7, 2) * 100 + 500, torch.randn(7, 3) * 50  # raw inputs
    with torch.no_grad():
        expected = nncli.load(run)(a, b)
        found = nncli.load(tmp_path / "two.safetensors")(a, b)
    assert all(torch.equal(e, f) for e, f in zip(expected, found))
    stats = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["normalization"]
    assert not torch.equal(stats["mean"]["a"], torch.zeros(2))  # a standardised input, not a pass-through


def test_evaluate_scores_the_first_output_and_refuses_changed_data(tmp_path, run_cli, one_torch_thread):
    import nncli

    arrays = _arrays(600)
    held = _arrays(200, seed=2)  # the file's own test split: its rows are known here
    arrays.update({f"{k}_test": v for k, v in held.items()})
    spec = _write(tmp_path, "{path: two.npz}", "{lr: 0.01, epochs: 2, outputs: {aux: 0.3}}", arrays)
    run = tmp_path / "run"
    assert run_cli(["train", spec, "--out", run, "--json"]).code == 0
    result = run_cli(["evaluate", run, "--json"])
    assert result.code == 0, result.text
    with torch.no_grad():
        main, _ = nncli.load(run)(torch.from_numpy(held["a"]), torch.from_numpy(held["b"]))
    y = torch.from_numpy(held["y"])
    test = json.loads(result.out)["splits"]["test"]
    assert test["n"] == 200
    assert test["loss"] == pytest.approx(F.cross_entropy(main, y).item(), rel=1e-5)
    assert test["accuracy"] == pytest.approx((main.argmax(1) == y).float().mean().item())
    arrays["b"] = arrays["b"] * 2  # the file changed under the run
    np.savez(tmp_path / "two.npz", **arrays)
    changed = run_cli(["evaluate", run])
    assert changed.code == 2 and "changed since training" in changed.err


@pytest.mark.parametrize(
    "data, train, arrays, expected",
    [
        ("{name: moons}", "{epochs: 1}", None, "must be an .npz or .pt file with one array per input name"),
        ("{path: two.npz}", "{epochs: 1}", {"a": np.zeros((9, 2)), "y": np.zeros(9, int)}, "no array 'b' in two.npz"),
        (
            "{path: two.npz}",
            "{epochs: 1}",
            {"a": np.zeros((9, 2)), "b": np.zeros((8, 3)), "y": np.zeros(9, int)},
            "8 examples in b but 9 in y",
        ),
        ("{path: two.npz}", "{epochs: 1, outputs: {main: 1.0}}", None, "found 'main'"),
        ("{path: two.npz}", "{epochs: 1, outputs: {nope: 1.0}}", None, "found 'nope'"),
        ("{path: two.npz}", "{epochs: 1, outputs: {aux: .nan}}", None, "expected a finite loss weight >= 0"),
        ("{path: two.npz, augment: {flip: true}}", "{epochs: 1}", None, "several inputs"),
        ("{path: two.npz, x_key: a}", "{epochs: 1}", None, "data.x_key ('a') names the one input array"),
        (
            "{path: two.npz}",
            "{epochs: 1}",
            {**_arrays(30), "a_test": np.zeros((5, 2)), "b_test": np.zeros((5, 3))},
            "a_test, b_test has no partner labels array (y_test)",
        ),
        (
            "{path: two.npz}",
            "{epochs: 1}",
            {"a": np.float32(3), "b": np.zeros((9, 3)), "y": np.zeros(9, int)},
            "array 'a': expected one row per example, found a single number",
        ),
        (
            "{path: two.npz}",
            "{epochs: 1}",
            {**_arrays(30), "b": np.full((30, 3), np.nan)},
            "array 'b': 30 example(s) contain NaN or infinite values, the first is row 0",
        ),
    ],
)
def test_bad_data_or_outputs_are_located_errors(tmp_path, run_cli, data, train, arrays, expected):
    spec = _write(tmp_path, data, train, arrays)
    result = run_cli(["train", spec, "--out", tmp_path / "run"])
    assert result.code == 2, result.text
    assert expected in result.err
    assert "Traceback" not in result.text
    assert not (tmp_path / "run").exists()


def test_an_input_named_like_the_labels_is_never_read_as_the_labels(tmp_path, run_cli, one_torch_thread):
    """Inputs x and y (fractional floats), labels under ``target``: were input ``y`` read as the
    labels too, cross_entropy would refuse them as not integers."""
    g = np.random.default_rng(0)
    x, y_input = g.normal(size=(80, 1)).astype(np.float32), g.normal(size=(80, 1)).astype(np.float32)
    np.savez(tmp_path / "xy.npz", x=x, y=y_input, target=(x[:, 0] * y_input[:, 0] > 0).astype(np.int64))
    spec = "name: xy\ninputs: {x: [1], y: [1]}\nlayers:\n  - Merge: {from: [x, y], mode: concat}\n  - Linear: {out_features: 2}\n"
    (tmp_path / "xy.yaml").write_text(spec + "data: {path: xy.npz}\ntrain: {epochs: 1}\n")
    result = run_cli(["train", tmp_path / "xy.yaml", "--out", tmp_path / "run", "--json"])
    assert result.code == 0, result.text
    assert json.loads(result.out)["test"]["n"] > 0
    np.savez(tmp_path / "no_labels.npz", x=x, y=y_input)  # only the inputs: no labels array at all
    (tmp_path / "xy.yaml").write_text(spec + "data: {path: no_labels.npz}\ntrain: {epochs: 1}\n")
    result = run_cli(["train", tmp_path / "xy.yaml", "--out", tmp_path / "run2"])
    assert result.code == 2 and "no labels array in no_labels.npz" in result.err


def test_predict_names_a_missing_input_array(tmp_path, run_cli, one_torch_thread):
    spec = _write(tmp_path, "{path: two.npz}", "{epochs: 1}")
    assert run_cli(["train", spec, "--out", tmp_path / "run", "--json"]).code == 0
    np.savez(tmp_path / "rows.npz", a=np.zeros((3, 2), np.float32))
    result = run_cli(["predict", tmp_path / "run", tmp_path / "rows.npz"])
    assert result.code == 2 and "no array 'b'" in result.err
    (tmp_path / "rows.csv").write_text("1,2,3\n")
    result = run_cli(["predict", tmp_path / "run", tmp_path / "rows.csv"])
    assert result.code == 2 and "one array per input name" in result.err


def _peer_data(name: str, n: int) -> dict:
    """Arrays by input name for the peer-suite shapes: two 12x12 images (same or not), or two
    token strings whose labels are the target string shifted."""
    g = np.random.default_rng(0)
    if name == "siamese":
        left = g.normal(size=(n, 1, 12, 12)).astype(np.float32)
        same = g.integers(0, 2, n)
        right = np.where(same[:, None, None, None] == 1, left, g.normal(size=left.shape)).astype(np.float32)
        return {"left": left, "right": right, "y": same}
    tgt = g.integers(0, 12, (n, 5))
    return {"src": g.integers(0, 10, (n, 6)), "tgt": tgt, "y": (tgt + 1) % 12}


@pytest.mark.parametrize("name", ["siamese", "encdec"])
def test_peer_suite_shapes_train_evaluate_predict_and_attack(tmp_path, run_cli, one_torch_thread, name):
    """The multi-input shapes of the peer suite (a siamese net with one shared tower, an
    encoder-decoder with a tied head and two outputs) through train, evaluate, predict and
    attack (the float pair attacked, the token pair refused); evaluate agrees with the loaded model's own loss on the file's test split."""
    from spec_texts import ENC_DEC_DAG, SIAMESE_DAG

    import nncli

    arrays = _peer_data(name, 300)
    held = _peer_data(name, 60)
    np.savez(tmp_path / "d.npz", **arrays, **{f"{k}_test": v[:60] for k, v in held.items()})
    text = SIAMESE_DAG if name == "siamese" else ENC_DEC_DAG
    (tmp_path / "s.yaml").write_text(f"name: {name}\n{text}data: {{path: d.npz}}\ntrain: {{epochs: 2, lr: 0.01}}\n")
    run = tmp_path / "run"
    assert run_cli(["train", tmp_path / "s.yaml", "--out", run, "--json"]).code == 0
    result = run_cli(["evaluate", run, "--json"])
    assert result.code == 0, result.text
    inputs = [torch.from_numpy(v[:60]) for k, v in held.items() if k != "y"]
    y = torch.from_numpy(held["y"][:60])
    with torch.no_grad():
        out = nncli.load(run)(*inputs)
    first = out[0] if isinstance(out, tuple) else out
    expected = F.cross_entropy(first.reshape(-1, first.shape[-1]), y.reshape(-1)).item()
    assert json.loads(result.out)["splits"]["test"]["loss"] == pytest.approx(expected, rel=1e-5)
    np.savez(tmp_path / "rows.npz", **{k: v[:60] for k, v in held.items() if k != "y"})
    predicted = run_cli(["predict", run, tmp_path / "rows.npz", "--json"])
    assert predicted.code == 0, predicted.text
    assert json.loads(predicted.out)["predictions"] == first.argmax(-1).tolist()
    attacked = run_cli(["attack", run, "--eps", "0,0.1", "--json"])
    if name == "siamese":  # both float inputs perturbed under one budget
        assert attacked.code == 0, attacked.text
        assert json.loads(attacked.out)["rows"][0]["accuracy"] == pytest.approx(
            (first.argmax(-1) == y).float().mean().item()
        )
    else:  # token ids have no value eps away
        assert attacked.code == 2 and "token ids" in attacked.err and "Traceback" not in attacked.text


def test_the_loaded_model_refuses_wrong_arguments(tmp_path, run_cli, one_torch_thread):
    import nncli

    spec = _write(tmp_path, "{path: two.npz}", "{epochs: 1}")
    assert run_cli(["train", spec, "--out", tmp_path / "run", "--json"]).code == 0
    model = nncli.load(tmp_path / "run")
    a, b = torch.randn(3, 2), torch.randn(3, 3)
    for args, kwargs, message in [
        ((a, b, b), {}, "expected 2 inputs (a, b), got 3"),
        ((a,), {}, "expected 2 inputs (a, b), got 1"),
        ((), {"a": a}, "missing input(s) b"),
        ((a, b), {"a": a}, "given both in order and by name"),
        ((), {"a": a, "c": b}, "unknown input(s) c"),
    ]:
        with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            model(*args, **kwargs)


@pytest.mark.slow
def test_ddp_with_an_output_no_loss_reads_equals_one_process(tmp_path, run_cli_subprocess):
    """An auxiliary head left out of train.outputs gets no gradient; DDP is told to expect that, and
    two processes give the one-process run."""
    spec = _write(tmp_path, "{path: two.npz}", "{epochs: 2, lr: 0.01}")
    one = run_cli_subprocess(
        ["train", spec, "--out", tmp_path / "one", "--json", "--device", "cpu"], OMP_NUM_THREADS="1"
    )
    two = run_cli_subprocess(
        ["train", spec, "--out", tmp_path / "two", "--json", "--device", "cpu", "--nproc-per-node", "2"],
        timeout=300,
        OMP_NUM_THREADS="1",
    )
    assert one.code == 0 and two.code == 0, two.text[-2000:]
    assert json.loads(two.out)["val"]["loss"] == pytest.approx(json.loads(one.out)["val"]["loss"], rel=1e-6)
