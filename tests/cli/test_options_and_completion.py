"""What a new user meets in the first hour: threads, --set, --force, completion, resume, piped output.

Each test checks one item against something written by hand here: layer sizes counted by hand,
the text a user would grep for, the pixel order graphviz lays out, a plot's tick values.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PYTHON, ROOT, SPECS, subprocess_env

SMALL_TRAIN = ["--set", "data.n=240", "--set", "train.epochs=2", "--set", "train.batch_size=32"]


@pytest.fixture(autouse=True)
def _one_thread_back():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# -- 1. threads ------------------------------------------------------------------------------------
def test_work_estimate_counts_weights_times_positions(write_spec):
    """Linear: weights once; Conv2d: weights at every output pixel; plus one per output element."""
    from nncli.build import infer
    from nncli.spec import load_spec
    from nncli.threads import macs_per_example

    mlp = infer(load_spec(SPECS / "moons-mlp.yaml"))
    # Linear 2->64 (192 params) + ReLU + Linear 64->64 (4,160) + ReLU + Linear 64->2 (130), outputs 64,64,64,64,2
    assert macs_per_example(mlp) == 192 + 4160 + 130 + 64 * 4 + 2
    conv = write_spec(
        "input: [1, 8, 8]\nlayers:\n  - Conv2d: {out_channels: 4, kernel_size: 3, padding: 1, bias: false}\n"
        "  - Flatten\n  - Linear: {out_features: 3}\n"
    )
    # conv: 36 weights x 64 pixels + 256 outputs; flatten 256 outputs; linear 256*3+3 weights + 3 outputs
    assert macs_per_example(infer(load_spec(conv))) == 36 * 64 + 256 + 256 + (256 * 3 + 3) + 3


def test_thread_rule(monkeypatch):
    from nncli import threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("NNCLI_THREADS", raising=False)
    monkeypatch.setattr(threads, "cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_cores", lambda sample_s=0.1: 1.0)
    assert threads.decide(9e5).threads == 1 and threads.decide(9e5).reason == "small"
    assert threads.decide(5e9).threads == 3  # 4 cores, one busy with other work
    monkeypatch.setattr(threads, "busy_cores", lambda sample_s=0.1: 3.9)
    assert threads.decide(5e9).threads == 1  # never fewer than one
    monkeypatch.setattr(threads, "busy_cores", lambda sample_s=0.1: 0.0)
    assert threads.decide(5e9, cap=2).threads == 2  # a sweep worker's share
    assert threads.decide(5e9).threads == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own setting wins
    assert threads.decide(9e5).threads == 3
    monkeypatch.setenv("NNCLI_THREADS", "2")
    assert threads.decide(9e5).threads == 2
    # --threads wins over both
    assert threads.decide(9e5, threads=4, cap=2) == threads.ThreadChoice(4, "requested", 9e5)


@pytest.mark.slow  # trains (seconds each on an idle machine, a minute under load)
def test_train_reports_threads(run_cli, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    r = run_cli(["train", str(SPECS / "moons-mlp.yaml"), *SMALL_TRAIN, "--out", str(tmp_path / "a"), "--json"])
    assert r.code == 0, r.err
    assert json.loads(r.out)["threads"] == 1  # the moons MLP is a small model: one thread
    r = run_cli(
        ["train", str(SPECS / "moons-mlp.yaml"), *SMALL_TRAIN, "--out", str(tmp_path / "b"), "--json", "--threads", "2"]
    )
    assert r.code == 0, r.err
    assert json.loads(r.out)["threads"] == 2


# -- 2. --set and --force --------------------------------------------------------------------------
def test_set_on_params_changes_the_count(run_cli):
    r = run_cli(
        [
            "params",
            str(SPECS / "moons-mlp.yaml"),
            "--json",
            "--set",
            "layers[0].Linear.out_features=10",
            "--set",
            "layers[2].Linear.out_features=5",
        ]
    )
    assert r.code == 0, r.err
    assert json.loads(r.out)["total"] == (2 * 10 + 10) + (10 * 5 + 5) + (5 * 2 + 2)


@pytest.mark.parametrize("command", ["check", "params", "diagram", "gradcheck", "probe", "train"])
def test_set_bad_path_is_located(run_cli, command, tmp_path):
    extra = ["-o", str(tmp_path / "x.dot")] if command == "diagram" else []
    r = run_cli([command, str(SPECS / "moons-mlp.yaml"), "--set", "layers[0].Linear.out_feature=8", *extra])
    assert r.code == 2
    assert "out_feature" in r.err and "did you mean 'out_features'" in r.err and "Traceback" not in r.err
    r = run_cli([command, str(SPECS / "moons-mlp.yaml"), "--set", "lyers[0]=ReLU", *extra])
    assert r.code == 2 and "--set lyers[0]" in r.err and "did you mean 'layers'" in r.err


def test_set_values_are_typed_and_refusals_point_at_the_file(run_cli):
    r = run_cli(["check", str(SPECS / "moons-mlp.yaml"), "--set", "layers[0].Linear.out_features=-3"])
    assert r.code == 2
    # located at layers[0]'s out_features in the user's file (not in the text the override wrote);
    # the --set that wrote the value is named
    lines = (SPECS / "moons-mlp.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "out_features" in text)
    column = lines[line - 1].index("out_features") + 1
    assert f"moons-mlp.yaml:{line}:{column}: layers[0].Linear.out_features" in r.err, r.err
    assert "(set by --set layers[0].Linear.out_features=-3)" in r.err
    # a value the builder refuses (not the parser) is located and named the same way
    r = run_cli(["check", str(SPECS / "lenet5.yaml"), "--set", "layers[0].Conv2d.kernel_size=100"])
    lines = (SPECS / "lenet5.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.strip().startswith("- Conv2d"))
    assert r.code == 2 and f"lenet5.yaml:{line}:" in r.err, r.err
    assert "(set by --set layers[0].Conv2d.kernel_size=100)" in r.err
    r = run_cli(["check", str(SPECS / "lenet5.yaml"), "--set", "replace:Tanh=NoSuchLayer"])
    assert r.code == 2 and "(set by --set replace:Tanh='NoSuchLayer')" in r.err, r.err
    r = run_cli(["check", str(SPECS / "moons-mlp.yaml"), "--set", "layers[0].Linear.out_features=wide"])
    assert r.code == 2 and "'wide'" in r.err  # a string stays a string, and is refused as one
    r = run_cli(["check", str(SPECS / "moons-mlp.yaml"), "--set", "nonsense"])
    assert r.code == 2 and "expected PATH=VALUE" in r.err


@pytest.mark.slow  # trains (seconds each on an idle machine, a minute under load)
def test_train_set_goes_to_run_yaml_and_spec_yaml(run_cli, tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        [
            "train",
            str(SPECS / "moons-mlp.yaml"),
            *SMALL_TRAIN,
            "--set",
            "data.noise=0.3",
            "--set",
            "layers[0].Linear.out_features=16",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert r.code == 0, r.err
    run = yaml.safe_load((out / "run.yaml").read_text())
    assert run["data"]["noise"] == 0.3 and run["data"]["n"] == 240 and run["train"]["epochs"] == 2
    spec = yaml.safe_load((out / "spec.yaml").read_text())
    assert spec["layers"][0] == {"Linear": {"out_features": 16}}


def test_sweep_set_works(run_cli, tmp_path):
    r = run_cli(
        [
            "sweep",
            str(ROOT / "sweeps" / "digits-width.yaml"),
            "--set",
            "train.epochs=3",
            "--dry-run",
            "--out",
            str(tmp_path / "s"),
            "--json",
        ]
    )
    assert r.code == 0, r.err  # sweep's --set once crashed (exit 3) on every value
    assert json.loads(r.out)["trials"]
    r = run_cli(
        [
            "sweep",
            str(ROOT / "sweeps" / "digits-width.yaml"),
            "--set",
            "train.epochs=[3",
            "--dry-run",
            "--out",
            str(tmp_path / "s"),
        ]
    )
    assert r.code == 2 and "not valid YAML" in r.err


@pytest.mark.slow  # trains (seconds each on an idle machine, a minute under load)
def test_train_force_replaces_a_run_and_keeps_it_on_bad_input(run_cli, tmp_path):
    out = tmp_path / "run"
    spec = str(SPECS / "moons-mlp.yaml")
    assert run_cli(["train", spec, *SMALL_TRAIN, "--out", str(out)]).code == 0
    first = (out / "run.yaml").read_text()
    r = run_cli(["train", spec, *SMALL_TRAIN, "--out", str(out)])
    assert r.code == 2 and "--force" in r.err
    r = run_cli(["train", spec, *SMALL_TRAIN, "--set", "train.lr=-1", "--out", str(out), "--force"])
    assert r.code == 2 and (out / "run.yaml").read_text() == first  # refused: the old run stays
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # nothing left aside
    r = run_cli(["train", spec, *SMALL_TRAIN, "--set", "train.seed=5", "--out", str(out), "--force"])
    assert r.code == 0, r.err
    assert yaml.safe_load((out / "run.yaml").read_text())["train"]["seed"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    r = run_cli(["train", spec, *SMALL_TRAIN, "--out", str(other), "--force"])
    assert r.code == 2 and (other / "todo.txt").read_text() == "mine"


# -- 3. completion ---------------------------------------------------------------------------------
def _complete(words: str, cword: int, cwd: Path) -> list[str]:
    env = subprocess_env(_NNCLI_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(cword))
    nncli = Path(sys.executable).parent / "nncli"
    proc = subprocess.run([str(nncli)], capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
    return proc.stdout.split()


def test_completion_of_spec_files_and_choices():
    assert "specs/moons-mlp.yaml" in _complete("nncli check specs/mo", 2, ROOT)
    assert not [c for c in _complete("nncli check specs/", 2, ROOT) if c.endswith(".py")]  # specs only
    assert _complete("nncli diagram x.yaml --view ", 4, ROOT) == ["layers", "neurons"]
    assert "train" in _complete("nncli tr", 1, ROOT)
    env = subprocess_env()
    nncli = Path(sys.executable).parent / "nncli"
    for shell in ("bash", "zsh", "fish"):
        proc = subprocess.run(
            [str(nncli), "--show-completion", shell], capture_output=True, text=True, env=env, timeout=60
        )
        assert proc.returncode == 0 and "_NNCLI_COMPLETE" in proc.stdout


def test_help_stays_torch_free():
    code = (
        "import sys\nfrom nncli.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\nprint('ok')"
    )
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert proc.stdout.strip().endswith("ok"), proc.stderr


# -- 4. resume -------------------------------------------------------------------------------------
@pytest.mark.slow  # trains (seconds each on an idle machine, a minute under load)
def test_resume_redraws_the_plot_totals_time_and_says_nothing_to_do(run_cli, tmp_path):
    out, plot = tmp_path / "run", tmp_path / "curves.png"
    spec = str(SPECS / "moons-mlp.yaml")
    r = run_cli(["train", spec, *SMALL_TRAIN, "--out", str(out), "--plot", str(plot), "--json"])
    assert r.code == 0, r.err
    first = json.loads(r.out)
    drawn = plot.stat().st_mtime_ns
    r = run_cli(["train", "--resume", str(out), "--epochs", "3", "--json"])  # no --plot
    assert r.code == 0, r.err
    second = json.loads(r.out)
    assert len(second["history"]) == 3 and plot.stat().st_mtime_ns > drawn  # redrawn, all 3 epochs
    assert second["total_s"] >= first["duration_s"] + second["duration_s"] - 1e-6
    r = run_cli(["train", "--resume", str(out)])
    assert r.code == 0 and "nothing to do" in r.text
    r = run_cli(["train", "--resume", str(out), "--epochs", "2"])
    assert r.code == 2 and "--epochs: expected 3 or more, found 2" in r.err and "3 epochs" in r.err


# -- 5. piped output -------------------------------------------------------------------------------
def test_piped_output_is_not_wrapped_and_has_no_trailing_spaces():
    env = subprocess_env()
    env.pop("COLUMNS")
    nncli = Path(sys.executable).parent / "nncli"
    proc = subprocess.run(
        [str(nncli), "check", "specs/deep-sigmoid.yaml"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    lines = proc.stdout.splitlines()
    assert not [ln for ln in lines if ln != ln.rstrip()]
    finding = [ln for ln in lines if ln.startswith("warning [vanishing-risk]")]
    assert finding and len(finding[0]) > 200 and finding[0].rstrip().endswith(")")  # one line, whole


def test_accuracy_is_a_percentage_in_every_table():
    from nncli.render.console import metric

    assert metric("accuracy", 0.97312) == "97.31%"
    assert metric("val_accuracy", 0.9, 0.0052) == "90.00% ± 0.52"
    assert metric("loss", 0.123456) == "0.1235"


# -- 7. the small items ----------------------------------------------------------------------------
def test_did_you_mean_once_and_missing_file_named_once(run_cli):
    r = run_cli(["dagram"])
    assert r.code == 2 and r.err.count("diagram") == 1
    r = run_cli(["check", "nowhere.yaml"])
    assert r.code == 2 and r.err.count("nowhere.yaml") == 1


@pytest.mark.slow  # trains (seconds each on an idle machine, a minute under load)
def test_predict_csv_names_its_column_predicted_label(run_cli, tmp_path):
    import numpy as np

    out = tmp_path / "run"
    assert run_cli(["train", str(SPECS / "moons-mlp.yaml"), *SMALL_TRAIN, "--out", str(out)]).code == 0
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 2), dtype=np.float32))
    r = run_cli(["predict", str(out), str(tmp_path / "x.npz"), "--out", str(tmp_path / "p.csv")])
    assert r.code == 0, r.err
    header = next(csv.reader((tmp_path / "p.csv").open()))
    assert "label" not in header and header[:2] == ["index", "prediction"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_diagram_default_output_and_neuron_order(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "input: [3]\nlayers:\n  - Linear: {out_features: 5}\n  - ReLU\n  - Linear: {out_features: 4}\n"
        "  - ReLU\n  - Linear: {out_features: 2}\n"
    )
    r = run_cli(["diagram", str(spec)])
    assert r.code == 0 and (tmp_path / "tiny.svg").is_file()
    assert run_cli(["diagram", str(spec), "--view", "neurons", "-o", "n.dot"]).code == 0
    plain = subprocess.run(["dot", "-Tplain", "n.dot"], capture_output=True, text=True, check=True).stdout
    pos = {p[1]: (float(p[2]), float(p[3])) for p in (ln.split() for ln in plain.splitlines()) if p[0] == "node"}
    for layer, units in ((0, 3), (1, 5), (2, 4), (3, 2)):
        ys = [pos[f"u{layer}_{j}"][1] for j in range(units)]
        assert ys == sorted(ys, reverse=True), (layer, ys)  # unit 1 on top, then 2, 3, ... in order


def test_help_leads_with_options_and_every_argument_has_help():
    import typer.main

    from nncli.cli import app

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            if param.param_type_name == "argument":
                assert param.help, f"{name} {param.name}: no help"
    env = subprocess_env()
    for name in ("gradcheck", "probe"):
        text = subprocess.run(
            [PYTHON, "-m", "nncli", name, "--help"], capture_output=True, text=True, env=env, timeout=60
        ).stdout
        lines = text.splitlines()
        assert lines[0].startswith("Usage:")
        assert lines.index("Options:") < 12, text[:600]  # usage, one paragraph, the argument, options


def _capture_figure(monkeypatch):
    from nncli.render import plots

    figs = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi=120: figs.append(fig) or Path(path))
    return plots, figs


def test_plots_have_integer_ticks_a_style_legend_and_clipped_error_bars(monkeypatch, tmp_path):
    from types import SimpleNamespace

    plots, figs = _capture_figure(monkeypatch)
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_accuracy": 0.5, "val_accuracy": 0.6}
        for e in (1, 2, 3)
    ]
    result = SimpleNamespace(history=history, best_epoch=2, spec="m", status="completed", test={"accuracy": 0.9})
    plots.train_plot(result, tmp_path / "t.png")
    ticks = figs[-1].axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)
    run = SimpleNamespace(label="a", history=history)
    plots.compare_plot(SimpleNamespace(runs=[run]), tmp_path / "c.png")
    labels = figs[-1].axes[0].get_legend_handles_labels()[1]
    assert "validation" in labels and "training" in labels
    trial = SimpleNamespace(index=0, id="t", overrides={"width": 4}, val={"accuracy": 0.99}, val_std={"accuracy": 0.05})
    sweep = SimpleNamespace(
        trials=[trial], axes=["width"], metric="accuracy", search="grid", best=None, name="s", goal="max"
    )
    plots.sweep_plot(sweep, tmp_path / "s.png")
    ax = figs[-1].axes[0]
    tops = [seg[:, 1].max() for coll in ax.collections for seg in coll.get_segments()]
    assert tops and max(tops) <= 1.0 + 1e-9


@pytest.mark.skipif(shutil.which("bash") is None, reason="the examples are bash scripts")
@pytest.mark.parametrize("script", ["ci-gate.sh", "tour.sh"])
def test_examples_say_when_nncli_is_not_on_path(script, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    arg = str(SPECS / "lenet5.yaml") if script == "ci-gate.sh" else str(tmp_path / "tour")  # SPEC / OUT_DIR
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / script), arg],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "activate" in proc.stderr  # not 127 at the first step


def test_threads_option_on_every_computing_command():
    import typer.main

    from nncli.cli import app

    group = typer.main.get_command(app)
    for name in ("train", "evaluate", "predict", "gradcheck", "probe", "sweep"):
        assert "--threads" in [o for p in group.commands[name].params for o in getattr(p, "opts", [])], name
    for name in ("train", "probe", "gradcheck", "params", "diagram", "check"):
        assert "--set" in [o for p in group.commands[name].params for o in getattr(p, "opts", [])], name
