"""The ``text`` data set and token models: windows and next-character targets, the shipped public-
domain text, cross-entropy over the last dimension with per-token accuracy, training a small causal
GPT below the unigram entropy, evaluate/predict and integer inputs from ``.npz``.

References, never the code's own output: windows cut by hand from a known string, a cross-entropy
written as a loop over positions, and the unigram entropy of the text counted with
``collections.Counter``.
"""

from __future__ import annotations

import collections
import json
import math
import textwrap

import numpy as np
import pytest
import torch
from spec_texts import tiny_gpt


def write(tmp_path, text: str, name: str = "spec.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# -- the text data set and token training --------------------------------------------------------
def test_text_windows_are_next_character_targets(tmp_path):
    from nncli.data import load_dataset, resolve_data_config

    text = "abcabcabd" * 5  # 45 characters
    (tmp_path / "t.txt").write_text(text)
    cfg = resolve_data_config({"name": "text", "path": "t.txt", "context": 4, "val": 0, "test": 0}, base_dir=tmp_path)
    ds = load_dataset(cfg)
    assert ds.classes == ["a", "b", "c", "d"] and ds.x_train.dtype == torch.int64
    assert len(ds.x_train) == (45 - 1) // 4 and ds.mean is None  # ids are never normalised
    decode = lambda ids: "".join(ds.classes[i] for i in ids)  # noqa: E731
    windows = sorted((decode(x), decode(y)) for x, y in zip(ds.x_train.tolist(), ds.y_train.tolist()))
    expected = sorted((text[i * 4 : i * 4 + 4], text[i * 4 + 1 : i * 4 + 5]) for i in range(11))
    assert windows == expected


def test_shipped_text_is_ascii_and_its_unigram_entropy():
    from nncli.data import shipped_corpus

    text = shipped_corpus().read_text()
    assert text.isascii() and 40_000 < len(text) < 300_000
    counts = collections.Counter(text)
    entropy = -sum(c / len(text) * math.log(c / len(text)) for c in counts.values())
    assert len(counts) == 73 and 3.0 < entropy < 3.1  # nats per character


def test_token_cross_entropy_and_accuracy_against_a_loop():
    from nncli.train.task import _correct, _loss_sum, loss_mean

    gen = torch.Generator().manual_seed(0)
    out = torch.randn(3, 5, 7, generator=gen)
    y = torch.randint(7, (3, 5), generator=gen)
    by_hand = [[-torch.log_softmax(out[n, t], 0)[y[n, t]].item() for t in range(5)] for n in range(3)]
    assert _loss_sum("cross_entropy", out, y).item() == pytest.approx(sum(sum(r) / 5 for r in by_hand))
    assert loss_mean("cross_entropy", out, y).item() == pytest.approx(sum(map(sum, by_hand)) / 15)
    hits = sum(int(out[n, t].argmax() == y[n, t]) for n in range(3) for t in range(5))
    assert _correct("cross_entropy", out, y).item() == pytest.approx(hits / 5)  # per-token, summed per example


def unigram_entropy(path) -> float:
    text = path.read_text()
    counts = collections.Counter(text)
    return -sum(c / len(text) * math.log(c / len(text)) for c in counts.values())


def test_char_model_beats_the_unigram_entropy_and_predicts(tmp_path, run_cli):
    from nncli.data import shipped_corpus

    spec = write(
        tmp_path,
        tiny_gpt(
            context=32,
            high=73,
            dim=32,
            heads=2,
            depth=1,
            extra="""
data: {name: text, context: 32}
train: {loss: cross_entropy, optimizer: adamw, lr: 0.01, batch_size: 64, epochs: 2, seed: 0}
""",
        ),
    )
    res = run_cli(["train", str(spec), "--out", str(tmp_path / "run"), "--json"])
    assert res.code == 0, res.text
    doc = json.loads(res.out)
    unigram = unigram_entropy(shipped_corpus())
    assert doc["val"]["loss"] < unigram - 0.4, (doc["val"], unigram)
    res = run_cli(["evaluate", str(tmp_path / "run"), "--split", "test", "--json"])
    assert res.code == 0, res.text
    test = json.loads(res.out)["splits"]["test"]
    assert test["loss"] < unigram - 0.4 and 0.2 < test["accuracy"] < 1
    ids = np.array([[ord(c) % 73 for c in "We the People of the United St"[:32].ljust(32)]], dtype=np.int64)
    np.savez(tmp_path / "x.npz", x=ids)
    res = run_cli(["predict", str(tmp_path / "run"), str(tmp_path / "x.npz"), "--json"])
    assert res.code == 0, res.text
    pred = json.loads(res.out)
    assert pred["task"] == "sequence" and len(pred["predictions"][0]) == 32 and len(pred["labels"][0]) == 32


def test_text_errors_exit_2(tmp_path, run_cli):
    small = write(tmp_path, tiny_gpt(context=32, high=20, dim=8, extra="data: {name: text, context: 32}\n"))
    res = run_cli(["train", str(small), "--out", str(tmp_path / "r1")])
    assert res.code == 2 and "[0, 20)" in res.text and "73 distinct tokens" in res.text, res.text
    floaty = write(
        tmp_path,
        """
        input: [16]
        layers: [{Linear: {out_features: 73}}]
        data: {name: text, context: 16}
        """,
        "float.yaml",
    )
    res = run_cli(["train", str(floaty), "--out", str(tmp_path / "r2")])
    assert res.code == 2 and "dtype: int64" in res.text and "Embedding" in res.text, res.text
    long = write(tmp_path, tiny_gpt(context=16, high=73, extra="data: {name: text, context: 100000}\n"), "long.yaml")
    res = run_cli(["train", str(long), "--out", str(tmp_path / "r3")])
    assert res.code == 2 and "too few for one window" in res.text, res.text
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    bad = write(
        tmp_path, tiny_gpt(context=2, high=73, extra="data: {name: text, path: bad.txt, context: 2}\n"), "bad.yaml"
    )
    res = run_cli(["train", str(bad), "--out", str(tmp_path / "r4")])
    assert res.code == 2 and "UTF-8" in res.text and "Traceback" not in res.text, res.text


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_integer_inputs_from_a_file_train(tmp_path, run_cli, suffix):
    # token ids in an .npz / .pt: kept as int64, never normalised; one label per example
    gen = np.random.default_rng(0)
    x = gen.integers(0, 10, (200, 6))
    y = (x[:, 0] > 4).astype(np.int64)  # the first token decides the class
    if suffix == ".npz":
        np.savez(tmp_path / "tokens.npz", x=x, y=y)
    else:
        torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, tmp_path / "tokens.pt")
    spec = write(
        tmp_path,
        f"""
        input: {{shape: [6], dtype: int64, high: 10}}
        layers:
          - Embedding: {{embedding_dim: 4}}
          - Flatten
          - Linear: {{out_features: 2}}
        data: {{path: tokens{suffix}}}
        train: {{epochs: 10, batch_size: 16, lr: 0.05, optimizer: adam}}
        """,
    )
    res = run_cli(["train", str(spec), "--out", str(tmp_path / "run"), "--json"])
    assert res.code == 0, res.text
    assert json.loads(res.out)["test"]["accuracy"] > 0.9
    # an id outside [0, high) is refused before training, not an IndexError mid-run
    x[3, 2] = 10
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    res = run_cli(["train", str(spec), "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "r2")])
    assert res.code == 2 and "[0, 10)" in res.text and "Traceback" not in res.text, res.text
