"""nncli sweep: the sweep file, overrides, expansion, ranking, failures and resume.

References are independent of the code under test: parameter and FLOP counts written out by
hand; a model that provably cannot learn (all weights zero with ReLU: every weight gradient is
zero, so it predicts one class and its validation accuracy is that class's share of the split);
means and spreads recomputed from the run folders; a resumed run compared with one never
interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import PYTHON, ROOT, SPECS, subprocess_env

from nncli.errors import InputError, SpecError
from nncli.sweep import apply_override, expand, load_sweep, parse_path, run_sweep, trial_spec_data

PNG = b"\x89PNG\r\n\x1a\n"

# A small MLP on two moons whose depth is a Repeat: trials take about a second each here.
TINY = """\
name: {name}
spec:
  name: tiny
  input: [2]
  init: {{weight: kaiming_normal, bias: zeros}}
  layers:
    - Repeat:
        times: 1
        layers:
          - Linear: {{out_features: 16}}
          - ReLU
    - Linear: {{out_features: 2}}
  data: {{name: moons, n: 300, noise: 0.1}}
  train: {{epochs: {epochs}, lr: 0.05, batch_size: 32}}
"""


# Trials here are tiny MLPs: one intra-op thread (conftest), what a sweep worker gets.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_sweep(tmp_path: Path, body: str, *, name: str = "s", epochs: int = 3, header: str = TINY) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(header.format(name=name, epochs=epochs) + textwrap.dedent(body))
    return path


def mlp_params(depth: int, width: int = 16) -> int:
    """2 -> width (x depth) -> 2, counted by hand: weights plus biases."""
    return (2 * width + width) + (depth - 1) * (width * width + width) + (width * 2 + 2)


def mlp_flops(depth: int, width: int = 16) -> int:
    """Forward FLOPs per example of the same MLP: 2 per multiply-add of each weight matrix."""
    return 2 * (2 * width + (depth - 1) * width * width + width * 2)


# -- paths and overrides (pure Python) -----------------------------------------------------------
def test_parse_path_reads_keys_and_indices():
    assert parse_path("layers[2].Repeat.times") == ("layers", 2, "Repeat", "times")
    assert parse_path("train.lr") == ("train", "lr")
    assert parse_path("layers[-1].Linear.out_features") == ("layers", -1, "Linear", "out_features")
    for bad in ("[0].x", "layers[0]..x", "layers.[0]", "", "layers[a]"):
        with pytest.raises(SpecError):
            parse_path(bad)


def spec_data():
    return {
        "input": [2],
        "layers": [
            {"Linear": {"out_features": 8}},
            "ReLU",
            {"Residual": {"body": [{"Linear": {"out_features": 8}}, "ReLU"]}},
            {"Repeat": {"times": 2, "layers": [{"Linear": {"out_features": 8}}, {"ReLU": {"name": "act"}}]}},
            {"Linear": {"out_features": 2}},
        ],
        "train": {"lr": 0.01},
    }


def test_overrides_set_nested_fields_and_add_optional_keys():
    d = spec_data()
    apply_override(d, "layers[3].Repeat.times", 4)
    apply_override(d, "layers[3].Repeat.layers[0].Linear.out_features", 32)
    apply_override(d, "layers[-1].Linear.bias", False)  # a new torch argument: the builder checks it
    apply_override(d, "layers[1].ReLU.inplace", True)  # a bare layer becomes {ReLU: {...}}
    apply_override(d, "train.weight_decay", 1e-4)  # train: may gain keys
    apply_override(d, "data.noise", 0.3)  # a missing data: section is started
    assert d["layers"][3]["Repeat"]["times"] == 4
    assert d["layers"][3]["Repeat"]["layers"][0] == {"Linear": {"out_features": 32}}
    assert d["layers"][4] == {"Linear": {"out_features": 2, "bias": False}}
    assert d["layers"][1] == {"ReLU": {"inplace": True}}
    assert d["train"] == {"lr": 0.01, "weight_decay": 1e-4} and d["data"] == {"noise": 0.3}


def test_replace_swaps_every_layer_of_a_type_inside_blocks_too():
    d = apply_override(spec_data(), "replace:ReLU", "Tanh")
    assert d["layers"][1] == "Tanh"
    assert d["layers"][2]["Residual"]["body"][1] == "Tanh"
    assert d["layers"][3]["Repeat"]["layers"][1] == {"Tanh": {"name": "act"}}  # its label is kept
    d = apply_override(spec_data(), "replace:ReLU", {"LeakyReLU": {"negative_slope": 0.1}})
    assert d["layers"][1] == {"LeakyReLU": {"negative_slope": 0.1}}


@pytest.mark.parametrize(
    "path, message, hint",
    [
        ("layers[9].Linear.out_features", "has 5 item(s) (indices 0..4), found index 9", None),
        ("layers[0].Conv2d.out_channels", "layers[0] of the spec is a Linear layer", "layers[0].Linear.<argument>"),
        ("trian.lr", "no 'trian' at the top level", "did you mean 'train'?"),
        ("layers[3].Repeat.tims", "no 'tims' at layers[3].Repeat", "did you mean 'times'?"),
        ("layers[0].Linear.out_features.x", "is an integer (8), not a mapping", None),
        ("replace:Relu", "no Relu layer in the spec to replace", "did you mean 'ReLU'?"),
    ],
)
def test_a_path_that_does_not_exist_says_what_is_there(path, message, hint):
    with pytest.raises(SpecError) as info:
        apply_override(spec_data(), path, 1)
    assert message in info.value.message
    if hint:
        assert hint in (info.value.hint or "")


# -- the sweep file ------------------------------------------------------------------------------
def test_sweep_file_errors_point_at_the_line(tmp_path):
    cases = {
        "grid:\n  layers[0].Repeat.tims: [1, 2]\n": (16, "no 'tims'", "did you mean 'times'?"),
        "grid:\n  replace:Relu: [ReLU, Tanh]\n": (16, "no Relu layer", "did you mean 'ReLU'?"),
        "grdi:\n  train.lr: [0.1]\n": (15, "unknown key 'grdi'", "did you mean 'grid'?"),
        "grid:\n  train.lr: 0.1\n": (16, "expected a non-empty list of values", None),
        "random:\n  train.lr: {loguniform: [0, 1]}\ntrials: 2\n": (16, "loguniform bounds > 0", None),
        "grid:\n  a: {path: train.lr, values: [1]}\n  train.lr: [2]\n": (17, "also writes", None),
        "metric: acuracy\ngrid:\n  train.lr: [0.1]\n": (15, "unknown metric 'acuracy'", "did you mean 'accuracy'?"),
    }
    for body, (line, message, hint) in cases.items():
        path = write_sweep(tmp_path, body)
        with pytest.raises(SpecError) as info:
            load_sweep(path)
        err = info.value
        assert (err.file, err.line) == (str(path), line), (body, str(err))
        assert message in err.message, (body, str(err))
        if hint:
            assert hint in err.hint, (body, str(err))


def test_an_inline_spec_is_checked_at_its_line_in_the_sweep_file(tmp_path):
    bad = TINY.replace("times: 1", "times: 0")
    path = write_sweep(tmp_path, "grid:\n  train.lr: [0.1]\n", header=bad)
    with pytest.raises(SpecError) as info:
        load_sweep(path)
    err = info.value
    assert (err.file, err.line, err.spec_path) == (str(path), 8, "spec.layers[0].Repeat.times")
    assert "integer >= 1" in err.message


def test_unquoted_paths_in_a_flow_list_get_a_hint(tmp_path):
    path = write_sweep(tmp_path, "grid:\n  w: {path: [layers[0].Repeat.times], values: [1]}\n")
    with pytest.raises(SpecError) as info:
        load_sweep(path)
    assert info.value.line == 16 and "quote spec paths" in info.value.hint


def test_a_missing_base_spec_is_an_input_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("base: nowhere.yaml\ngrid:\n  train.lr: [0.1]\n")
    with pytest.raises(InputError, match="no such spec file"):
        load_sweep(path)


def test_grid_is_the_full_product_in_file_order(tmp_path):
    path = write_sweep(
        tmp_path,
        """\
        grid:
          depth: {path: "layers[0].Repeat.times", values: [1, 2]}
          replace:ReLU: [ReLU, Tanh, Sigmoid]
        """,
    )
    configs = expand(load_sweep(path))
    assert [(c.values["depth"], c.values["replace:ReLU"]) for c in configs] == [
        (d, a) for d in (1, 2) for a in ("ReLU", "Tanh", "Sigmoid")
    ]
    assert len({c.id for c in configs}) == 6
    deep_tanh = configs[4].spec_data["layers"][0]["Repeat"]
    assert deep_tanh == {"times": 2, "layers": [{"Linear": {"out_features": 16}}, "Tanh"]}


def test_random_search_is_seeded_and_draws_distinct_grid_points(tmp_path):
    path = write_sweep(
        tmp_path,
        """\
        grid:
          layers[0].Repeat.layers[0].Linear.out_features: [4, 8, 16, 32]
          train.batch_size: [16, 32, 64]
        """,
    )
    a = [c.values for c in expand(load_sweep(path, trials=5, search_seed=1))]
    b = [c.values for c in expand(load_sweep(path, trials=5, search_seed=1))]
    c = [c.values for c in expand(load_sweep(path, trials=5, search_seed=2))]
    assert a == b and a != c
    assert len({json.dumps(v, sort_keys=True) for v in a}) == 5  # without replacement
    assert len(expand(load_sweep(path, trials=50))) == 12  # never more than the grid holds
    in_file = write_sweep(tmp_path, "trials: 4\ngrid:\n  train.batch_size: [16, 32, 64, 128, 256]\n", name="f")
    assert len(expand(load_sweep(in_file))) == 4  # `trials:` in the file samples the grid too

    path = write_sweep(
        tmp_path,
        """\
        trials: 40
        random:
          train.lr: {loguniform: [0.0001, 0.1]}
          layers[0].Repeat.times: {int: [1, 3]}
        """,
        name="r",
    )
    values = [c.values for c in expand(load_sweep(path))]
    lrs = [v["train.lr"] for v in values]
    assert len(values) == 40 and all(1e-4 <= x <= 0.1 for x in lrs)
    assert min(lrs) < 1e-3 and max(lrs) > 1e-2  # log-uniform: every decade gets draws
    assert {v["layers[0].Repeat.times"] for v in values} == {1, 2, 3}


def test_trial_specs_make_the_data_path_absolute_and_keep_custom_targets(tmp_path):
    """A relative data path is made absolute (the trial's file lives in the sweep folder); a
    Custom file target stays as written, since the trust rule refuses absolute targets."""
    path = tmp_path / "s.yaml"
    path.write_text(
        f"base: {SPECS / 'custom-swish.yaml'}\ngrid:\n  train.lr: [0.1]\nset: {{data: {{path: rows.csv}}}}\n"
    )
    (config,) = expand(load_sweep(path))
    data = trial_spec_data(config, seed=3)
    targets = [item["Custom"]["target"] for item in data["layers"] if isinstance(item, dict) and "Custom" in item]
    assert targets == ["swish_layers.py:Swish", "swish_layers.py:Swish"]
    assert data["data"]["path"] == str(SPECS.resolve() / "rows.csv")
    assert data["train"]["seed"] == 3


def test_a_sweep_over_a_spec_with_custom_file_layers_trains_every_trial(tmp_path, run_cli):
    """The repo's custom-swish spec: every trial trains (each failed before: its Custom targets were
    made absolute, which the trust rule refuses), and a trial's run opens again for evaluate."""
    path = tmp_path / "s.yaml"
    path.write_text(
        f"base: {SPECS / 'custom-swish.yaml'}\ngrid:\n  train.lr: [0.01, 0.1]\nset: {{train.epochs: 1, data.n: 200}}\n"
    )
    out = tmp_path / "out"
    res = run_cli(["sweep", path, "--out", out, "--json"])
    assert res.code == 0, res.text
    runs = [r for t in json.loads(res.out)["trials"] for r in t["runs"]]
    assert len(runs) == 2 and {r["status"] for r in runs} == {"ok"}, runs
    meta = yaml.safe_load((Path(runs[0]["run_dir"]) / "run.yaml").read_text())
    assert meta["spec"]["custom_dir"] == str(SPECS.resolve())
    evaluated = run_cli(["evaluate", runs[0]["run_dir"], "--json"])
    assert evaluated.code == 0, evaluated.text
    assert "Custom layer files are relative to the base spec's folder" in (out / "best.yaml").read_text()


# -- dry run: counts against hand-written figures ------------------------------------------------
def test_dry_run_counts_params_and_flops_per_trial(tmp_path):
    path = write_sweep(
        tmp_path,
        """\
        grid:
          layers[0].Repeat.times: [1, 2, 4]
        """,
    )
    result = run_sweep(load_sweep(path), tmp_path / "out", dry_run=True)
    assert [t.params for t in result.trials] == [mlp_params(d) for d in (1, 2, 4)]
    assert [t.flops for t in result.trials] == [mlp_flops(d) for d in (1, 2, 4)]
    assert all(t.status == "pending" and t.rank is None for t in result.trials)
    assert not (tmp_path / "out" / "sweep.json").exists()


def test_a_list_of_spec_files_is_an_axis(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"specs: [{SPECS / 'lecture-mlp.yaml'}, {SPECS / 'moons-mlp.yaml'}]\ngrid:\n  train.lr: [0.01]\n")
    result = run_sweep(load_sweep(path), tmp_path / "out", dry_run=True)
    assert [t.overrides["spec"] for t in result.trials] == ["lecture-mlp", "moons-mlp"]
    assert [t.params for t in result.trials] == [35, 4482]  # both counted by hand in the spec files


# -- training: ranking, JSON, resume -------------------------------------------------------------
def test_ranks_a_model_that_can_learn_above_one_that_cannot(tmp_path, run_cli):
    # All weights zero with ReLU: hidden units output 0 and relu'(0) = 0, so every weight gradient
    # is zero; only the output bias learns and the net predicts the training split's majority class.
    path = write_sweep(
        tmp_path,
        """\
        grid:
          init.weight: [zeros, kaiming_normal]
        """,
        epochs=6,
    )
    out = tmp_path / "out"
    res = run_cli(["sweep", path, "--out", out, "--json", "--plot", tmp_path / "plot.png"])
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["metric"] == "accuracy" and doc["goal"] == "max"
    ranked = [t["overrides"]["init.weight"] for t in doc["trials"]]
    assert ranked == ["kaiming_normal", "zeros"]
    assert [t["rank"] for t in doc["trials"]] == [1, 2] and all(t["status"] == "ok" for t in doc["trials"])

    from nncli.data import load_dataset, resolve_data_config

    ds = load_dataset(resolve_data_config({"name": "moons", "n": 300, "noise": 0.1}))
    majority = int(ds.y_train.bincount().argmax())
    share = float((ds.y_val == majority).float().mean())
    assert doc["trials"][1]["val"]["accuracy"] == pytest.approx(share)
    assert doc["trials"][0]["val"]["accuracy"] > 0.85

    best = doc["best"]
    assert best["id"] == doc["trials"][0]["id"] and set(best["test"]) >= {"accuracy", "loss"}
    assert all("test" not in t for t in doc["trials"])  # the test set is reported for the winner only
    from nncli.spec import load_spec

    winner = load_spec(best["spec_path"])
    assert winner.init["weight"].scheme == "kaiming_normal"
    report = json.loads((Path(best["run_dir"]) / "report.json").read_text())
    assert best["test"]["accuracy"] == pytest.approx(report["test"]["accuracy"])
    assert (tmp_path / "plot.png").read_bytes()[:8] == PNG
    assert json.loads((out / "sweep.json").read_text())["best"]["id"] == best["id"]

    # rerunning the same command resumes: nothing is trained again
    again = run_cli(["sweep", path, "--out", out, "--json"])
    doc2 = json.loads(again.out)
    assert (doc2["ran"], doc2["cached"]) == (0, 2)
    assert [t["val"] for t in doc2["trials"]] == [t["val"] for t in doc["trials"]]
    # a changed setting changes every trial's spec: none counts as finished any more
    changed = json.loads(run_cli(["sweep", path, "--out", out, "--json", "--dry-run", "--set", "train.epochs=2"]).out)
    assert changed["cached"] == 0 and all(t["status"] == "pending" for t in changed["trials"])
    assert (Path(best["run_dir"]) / "report.json").is_file()  # a dry run removes nothing


def test_a_failing_trial_is_recorded_and_the_rest_go_on(tmp_path, run_cli):
    path = write_sweep(
        tmp_path,
        """\
        grid:
          train.lr: [0.05, 1.0e+30]
          layers[1].Linear.out_features: [2, 1]
        """,
        epochs=2,
    )
    res = run_cli(["sweep", path, "--out", tmp_path / "out", "--json", "--plot", tmp_path / "p.svg"])
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    svg = (tmp_path / "p.svg").read_text()
    assert svg.count('<g id="axes_') == 2  # one panel per swept axis
    by_id = {(t["overrides"]["train.lr"], t["overrides"]["layers[1].Linear.out_features"]): t for t in doc["trials"]}
    assert by_id[(0.05, 2)]["status"] == "ok" and by_id[(0.05, 2)]["rank"] == 1
    assert "non-finite loss" in by_id[(1e30, 2)]["error"]
    assert "2 classes" in by_id[(0.05, 1)]["error"]
    assert doc["failed"] == 3 and doc["best"]["id"] == by_id[(0.05, 2)]["id"]

    only_bad = write_sweep(tmp_path, "grid:\n  train.lr: [1.0e+30]\n", name="bad", epochs=2)
    res = run_cli(["sweep", only_bad, "--out", tmp_path / "bad"])
    assert res.code == 1 and "no trial of the sweep finished" in res.err


def test_seeds_give_mean_and_spread_over_runs(tmp_path):
    path = write_sweep(
        tmp_path,
        """\
        seeds: [0, 1, 2]
        grid:
          layers[0].Repeat.times: [1]
        """,
        epochs=2,
    )
    result = run_sweep(load_sweep(path), tmp_path / "out")
    (trial,) = result.trials
    assert [r.seed for r in trial.runs] == [0, 1, 2]
    accs = []
    for run in trial.runs:
        meta = yaml.safe_load((Path(run.run_dir) / "run.yaml").read_text())
        assert meta["train"]["seed"] == run.seed
        accs.append(json.loads((Path(run.run_dir) / "report.json").read_text())["val"]["accuracy"])
    assert trial.val["accuracy"] == pytest.approx(statistics.fmean(accs))
    assert trial.val_std["accuracy"] == pytest.approx(statistics.stdev(accs))


def test_bad_sweep_exits_2_with_the_location(tmp_path, run_cli):
    path = write_sweep(tmp_path, "grid:\n  layers[0].Repeat.tims: [1, 2]\n")
    res = run_cli(["sweep", path, "--out", tmp_path / "out"])
    assert res.code == 2
    assert f"{path}:16:3" in res.err and "did you mean 'times'?" in res.err and "Traceback" not in res.err
    res = run_cli(["sweep", path, "--set", "train.epochs"])
    assert res.code == 2 and "expected PATH=VALUE" in res.err


def _children(pid: int) -> list[int]:
    """Child process ids (Linux /proc); empty where the kernel does not list them."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _wait_gone(pids: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_kill_then_rerun_skips_finished_trials(tmp_path, workers):
    """SIGKILL the sweep once two trials finished; the rerun trains only the rest.

    With worker processes, the killed sweep's workers get SIGTERM from the kernel
    (PR_SET_PDEATHSIG): a run in progress saves a checkpoint and stops, the worker exits, and
    the rerun continues or restarts that run.
    """
    widths = [4, 6, 8, 10, 12]
    path = write_sweep(tmp_path, f"grid:\n  layers[0].Repeat.layers[0].Linear.out_features: {widths}\n", epochs=3)
    out = tmp_path / "out"
    cmd = [
        PYTHON,
        "-m",
        "nncli",
        "sweep",
        str(path),
        "--out",
        str(out),
        "--json",
        "--workers",
        str(workers),
        "--device",
        "cpu",
    ]
    env = subprocess_env(OMP_NUM_THREADS="1")  # one torch thread per process, as in the in-process tests
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while len(list(out.glob("*/trial.json"))) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no two trials finished within 180 s"
        time.sleep(0.05)
    children = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    _wait_gone(children)  # orphaned workers stop (a run in progress saves a checkpoint) and exit
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    # finished = a run folder with a final report (a worker may finish a run the dead sweep
    # never heard of: that one counts too, its folder says so)
    finished = {}
    for report in out.glob("*/report.json"):
        if json.loads(report.read_text())["status"] == "completed":
            finished[report.parent.name] = (report.stat().st_mtime_ns, report.read_text())
    assert 2 <= len(finished) < len(widths) and not (out / "sweep.json").exists()

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    assert doc["cached"] == len(finished) and doc["ran"] == len(widths) - len(finished)
    assert len(doc["trials"]) == len(widths) and all(t["status"] == "ok" and t["rank"] for t in doc["trials"])
    assert sorted(t["rank"] for t in doc["trials"]) == list(range(1, len(widths) + 1))
    for name, (mtime, text) in finished.items():  # untouched: not trained again
        report = out / name / "report.json"
        assert (report.stat().st_mtime_ns, report.read_text()) == (mtime, text)
    cached = {Path(r["run_dir"]).name for t in doc["trials"] for r in t["runs"] if r["cached"]}
    assert cached == set(finished)


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_from_its_checkpoint(tmp_path):
    """The sweep dies inside its first run (after that run's first epoch checkpoint); the rerun
    continues that run and ends with exactly the metrics of a sweep never interrupted."""
    path = write_sweep(
        tmp_path, "grid:\n  train.lr: [0.05, 0.02]\nset:\n  train.checkpoint_seconds: 0\n", epochs=3
    )  # checkpoint_seconds 0: train checkpoints at every epoch end
    out = tmp_path / "out"
    cmd = [PYTHON, "-m", "nncli", "sweep", str(path), "--out", str(out), "--json", "--device", "cpu"]
    # 300 moons -> 210 training examples -> 7 steps an epoch: step 10 is inside epoch 2
    from fault_injection import command as fault_command  # this signal after that global step of a run

    killed = subprocess.run(
        fault_command("10:SIGKILL", *cmd[3:]),
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL
    first = next(p for p in out.iterdir() if p.name.startswith("lr-0.05"))
    assert (first / "checkpoints" / "last.pt").is_file() and not (first / "report.json").exists()

    rerun = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    assert "resumed" in yaml.safe_load((first / "run.yaml").read_text())

    reference = run_sweep(load_sweep(path), tmp_path / "reference", device="cpu")
    got = {t["id"]: t["val"] for t in doc["trials"]}
    assert got == {t.id: pytest.approx(t.val, abs=1e-12) for t in reference.trials}


@pytest.mark.slow
def test_parallel_workers_give_the_same_results(tmp_path, run_cli):
    path = write_sweep(tmp_path, "grid:\n  train.lr: [0.05, 0.02]\n", epochs=2)
    res = run_cli(["sweep", path, "--out", tmp_path / "par", "--workers", "2", "--json", "--device", "cpu"])
    assert res.code == 0, res.err
    par = {t["id"]: t["val"] for t in json.loads(res.out)["trials"]}
    seq = {t.id: t.val for t in run_sweep(load_sweep(path), tmp_path / "seq", device="cpu").trials}
    assert par.keys() == seq.keys()
    for key in par:  # workers run 1 torch thread each: float sums may differ in the last bits
        assert par[key] == pytest.approx(seq[key], rel=1e-5)


# -- the ready sweeps (minutes: run with -m slow) ------------------------------------------------
@pytest.mark.slow
def test_ready_moons_depth_activation_sweep(tmp_path, run_cli):
    res = run_cli(
        [
            "sweep",
            ROOT / "sweeps" / "moons-depth-activation.yaml",
            "--out",
            tmp_path / "out",
            "--workers",
            "2",
            "--json",
            "--plot",
            tmp_path / "moons.png",
        ]
    )
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert len(doc["trials"]) == 9 and all(t["status"] == "ok" for t in doc["trials"])
    rank = {(t["overrides"]["depth"], t["overrides"]["activation"]): t["rank"] for t in doc["trials"]}
    # deep sigmoid stacks learn slowest (vanishing gradients): 4 sigmoid layers rank below
    # every ReLU and Tanh network
    assert all(rank[(4, "Sigmoid")] > rank[(d, a)] for d in (1, 2, 4) for a in ("ReLU", "Tanh"))
    assert doc["best"]["overrides"]["activation"] in ("ReLU", "Tanh")
    assert doc["best"]["test"]["accuracy"] >= 0.95


@pytest.mark.slow
def test_ready_digits_width_sweep(tmp_path, run_cli):
    res = run_cli(
        ["sweep", ROOT / "sweeps" / "digits-width.yaml", "--out", tmp_path / "out", "--workers", "2", "--json"]
    )
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    acc = {t["overrides"]["width"]: t["val"]["accuracy"] for t in doc["trials"]}
    assert acc[16] > acc[2]  # 2 channels per conv layer is too narrow for 10 classes
    assert doc["best"]["overrides"]["width"] in (8, 16)
    assert doc["best"]["test"]["accuracy"] >= 0.95


@pytest.mark.parametrize("device, text", [("gpu", "gpu"), ("cuda:7", "cuda")])
def test_bad_device_is_one_input_error_before_any_trial(tmp_path, run_cli, device, text):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    out = tmp_path / "sweep"
    result = run_cli(
        ["sweep", ROOT / "sweeps" / "moons-depth-activation.yaml", "--out", out, "--device", device, "--dry-run"]
    )
    assert result.code == 2, result.text
    assert text in result.err.lower()
    assert not out.exists()  # nothing was started or written
