"""nncli compare: runs side by side. The runs are trained here with known differences (learning
rate and one layer's width), so the expected difference table is known before reading anything;
metrics are checked against each run's own report.json and metrics.jsonl."""

from __future__ import annotations

import json
import shutil

import pytest

from nncli.compare import compare_runs
from nncli.errors import InputError

PNG = b"\x89PNG\r\n\x1a\n"

SPEC = """\
name: {name}
input: [2]
layers:
  - Linear: {{out_features: {width}}}
  - ReLU
  - Linear: {{out_features: 2}}
data: {{name: moons, n: 200, noise: 0.1}}
train: {{epochs: 3, lr: {lr}, batch_size: 32, seed: 0}}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three finished runs: a (lr 0.05, width 8), b (lr 0.01, width 8), c (lr 0.05, width 16)."""
    import torch

    from nncli.train import run_training

    root = tmp_path_factory.mktemp("compare")
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MLPs: one thread is faster, and much faster on a busy machine
    try:
        for label, lr, width in (("a", 0.05, 8), ("b", 0.01, 8), ("c", 0.05, 16)):
            spec = root / f"{label}.yaml"
            spec.write_text(SPEC.format(name="mlp", width=width, lr=lr))  # same name: only real knobs differ
            run_training(spec, None, root / "runs" / label, device="cpu")
            out[label] = root / "runs" / label
    finally:
        torch.set_num_threads(threads)
    return out


def test_only_the_settings_that_differ_are_listed(runs):
    result = compare_runs([runs["a"], runs["b"], runs["c"]])
    assert [r.label for r in result.runs] == ["a", "b", "c"]
    assert result.differences == {"train.lr": [0.05, 0.01, 0.05], "layers[0].Linear.out_features": [8, 8, 16]}
    assert result.same > 10  # data, the rest of train, the other layers


def test_metrics_and_curves_are_the_runs_own(runs):
    result = compare_runs([runs["a"], runs["b"]])
    for summary, folder in zip(result.runs, (runs["a"], runs["b"]), strict=True):
        report = json.loads((folder / "report.json").read_text())
        for split in ("train", "val", "test"):
            assert summary.metrics[split] == {k: report[split][k] for k in ("loss", "accuracy")}
        assert summary.status == "completed" and summary.epochs == 3 == len(summary.history)
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [r["val_loss"] for r in summary.history] == [r["val_loss"] for r in rows]
    val = {r.label: r.metrics["val"]["loss"] for r in result.runs}
    assert result.best["val_loss"] == min(val, key=val.get)


def test_cli_table_json_and_plot(runs, run_cli, tmp_path):
    plot = tmp_path / "curves.png"
    res = run_cli(["compare", runs["a"], runs["b"], "--plot", plot])
    assert res.code == 0, res.err
    assert "settings that differ" in res.out and "train.lr" in res.out and "0.01" in res.out
    assert plot.read_bytes()[:8] == PNG
    doc = json.loads(run_cli(["compare", runs["a"], runs["b"], "--json"]).out)
    assert doc["differences"] == {"train.lr": [0.05, 0.01]}
    assert doc["runs"][0]["curves"]["epoch"] == [1, 2, 3]


def test_a_killed_run_shows_its_last_epoch(runs, tmp_path):
    copy = tmp_path / "killed"
    shutil.copytree(runs["a"], copy)
    (copy / "report.json").unlink()  # what a run killed before its end leaves behind
    result = compare_runs([runs["a"], copy])
    killed = result.runs[1]
    last = json.loads((copy / "metrics.jsonl").read_text().splitlines()[-1])
    assert killed.status == "unfinished" and killed.metrics["val"]["loss"] == last["val_loss"]
    assert result.differences == {}  # the same settings


def test_a_sweep_folder_expands_to_its_runs(runs, tmp_path):
    sweep = tmp_path / "sweep"
    for label in ("a", "b"):
        shutil.copytree(runs[label], sweep / label)
    result = compare_runs([sweep])
    assert sorted(r.label for r in result.runs) == ["a", "b"]


def test_bad_folders_are_input_errors(tmp_path, run_cli):
    with pytest.raises(InputError, match="no such run folder"):
        compare_runs([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not an nncli run folder"):
        compare_runs([tmp_path / "empty"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.yaml").write_text("train: [unclosed\n")
    res = run_cli(["compare", broken])
    assert res.code == 2 and "cannot read" in res.err and "Traceback" not in res.err
