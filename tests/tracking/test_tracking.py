"""Experiment tracking on MLflow, read back through MLflow's own client (never nncli's reader).

The references are the run folder's own files, which training writes whatever is tracked:
``metrics.jsonl`` for the metric histories, ``report.json`` for the final metrics, the spec's
text (hashed here with hashlib) for the digest, the run's best checkpoint (``nncli.load`` of the
folder) for the logged model, and the sweep's own ranking for the parent run.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, subprocess_env

pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402

from nncli.tracking import MLflowTracking, TrackingOptions, tracking_options  # noqa: E402

SPEC = """\
name: {name}
input: [2]
layers:
  - Linear: {{out_features: {width}}}
  - ReLU
  - Linear: {{out_features: 2}}
data: {{name: moons, n: 200, noise: 0.1}}
train: {{optimizer: sgd, lr: {lr}, batch_size: 50, epochs: {epochs}, seed: 3}}
"""
STEPS_PER_EPOCH = math.ceil(140 / 50)  # 200 examples: 140 train, 20 val, 40 test

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models, one thread


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def train(tmp: Path, name: str, uri: str, *, lr=0.1, width=8, epochs=3, resume=None, spec_text=None, **kw):
    from nncli.train import run_training

    spec = tmp / f"{name}.yaml"
    spec.write_text(spec_text or SPEC.format(name="mlp", width=width, lr=lr, epochs=epochs))
    callbacks = [MLflowTracking(TrackingOptions(uri, "tests"), **kw)]
    if resume is not None:
        return run_training(None, {"epochs": epochs}, None, resume=resume, device="cpu", callbacks=callbacks)
    return run_training(spec, None, tmp / "runs" / name, device="cpu", callbacks=callbacks)


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """Two runs logged to one local store: a (lr 0.1, width 8) and b (lr 0.05, width 16)."""
    import torch

    tmp = tmp_path_factory.mktemp("tracked")
    uri = sqlite_uri(tmp)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {"a": train(tmp, "a", uri), "b": train(tmp, "b", uri, lr=0.05, width=16)}
    finally:
        torch.set_num_threads(threads)
    return tmp, uri, results


def test_a_run_logs_its_settings_metrics_and_tags(tracked):
    tmp, uri, results = tracked
    folder = tmp / "runs" / "a"
    report = json.loads((folder / "report.json").read_text())
    assert report["tracking"]["status"] == "logged" and report["tracking"]["uri"] == uri
    client = MlflowClient(uri)
    run = client.get_run(report["tracking"]["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "a"
    assert client.get_experiment(run.info.experiment_id).name == "tests"
    params = run.data.params
    assert params["train.lr"] == "0.1" and params["train.batch_size"] == "50" and params["data.noise"] == "0.1"
    assert params["layers/0.Linear.out_features"] == "8" and params["layers/1"] == "ReLU"
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_loss", "val_accuracy", "lr"):
        assert history(client, run.info.run_id, key) == [(r["epoch"], pytest.approx(r[key])) for r in rows]
    steps = history(client, run.info.run_id, "step_loss")
    assert [s for s, _ in steps] == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    metrics = run.data.metrics
    assert metrics["test_accuracy"] == pytest.approx(report["test"]["accuracy"])
    assert metrics["best_val_loss"] == pytest.approx(report["val"]["loss"])
    tags = run.data.tags
    text = (tmp / "a.yaml").read_text()
    assert tags["nncli.spec_digest"] == hashlib.sha256(text.encode()).hexdigest()
    assert tags["nncli.threads"] == "1" and tags["nncli.device"] == "cpu" and tags["nncli.status"] == "completed"
    assert tags["nncli.version"] and tags["nncli.run_dir"] == str(folder.resolve())


def test_the_logged_files_and_model_load(tracked, tmp_path):
    import torch

    import nncli

    tmp, uri, results = tracked
    folder = tmp / "runs" / "a"
    run_id = json.loads((folder / "report.json").read_text())["tracking"]["run_id"]
    client = MlflowClient(uri)
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"spec.yaml", "run.yaml", "report.json", "model"} <= names
    local = Path(client.download_artifacts(run_id, "", str(tmp_path)))
    assert (local / "spec.yaml").read_bytes() == (folder / "spec.yaml").read_bytes()
    assert json.loads((local / "report.json").read_text())["tracking"]["run_id"] == run_id
    if "diagram.svg" in names:  # graphviz's dot is installed
        assert "<svg" in (local / "diagram.svg").read_text()
    logged = nncli.load(str(local / "model" / "model.safetensors"))
    trained = nncli.load(str(folder))  # the run folder's best checkpoint
    x = torch.randn(16, 2)
    torch.testing.assert_close(logged(x), trained(x))


def test_tracking_leaves_training_as_it_was(tmp_path):
    """The diagram is drawn and the store written beside training: the same run untracked gives
    the same numbers, bit for bit (with Dropout, which draws from torch's random state)."""
    from nncli.train import run_training

    spec = tmp_path / "drop.yaml"
    spec.write_text(
        SPEC.format(name="drop", width=16, lr=0.1, epochs=2).replace("  - ReLU\n", "  - ReLU\n  - Dropout\n")
    )
    tracked = train(tmp_path, "drop", sqlite_uri(tmp_path), epochs=2, spec_text=spec.read_text())
    plain = run_training(spec, None, tmp_path / "runs" / "plain", device="cpu")
    rows = [(tmp_path / "runs" / name / "metrics.jsonl").read_text().splitlines() for name in ("drop", "plain")]
    keys = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
    tracked_rows, plain_rows = ([{k: json.loads(r)[k] for k in keys} for r in run] for run in rows)
    assert tracked.tracking["status"] == "logged"
    assert tracked_rows == plain_rows and plain.test == tracked.test


def test_compare_lists_store_runs_as_it_lists_folders(tracked, run_cli):
    from nncli.compare import compare_runs
    from nncli.tracking import tracked_runs

    tmp, uri, results = tracked
    folders = compare_runs([tmp / "runs" / "a", tmp / "runs" / "b"])
    store = compare_runs([], tracked=tracked_runs(uri, "tests"))
    assert [r.label for r in store.runs] == ["a", "b"]
    assert (
        store.differences == folders.differences == {"train.lr": [0.1, 0.05], "layers[0].Linear.out_features": [8, 16]}
    )
    for a, b in zip(folders.runs, store.runs):
        assert (b.status, b.epochs, b.best_epoch) == (a.status, a.epochs, a.best_epoch)
        for split in ("train", "val", "test"):
            assert b.metrics[split] == pytest.approx(a.metrics[split])
        for key, values in a.to_json()["curves"].items():
            assert b.to_json()["curves"][key] == pytest.approx(values)
    cli = run_cli(["compare", "--tracking-uri", uri, "--experiment", "tests", "--json"])
    assert cli.code == 0, cli.err
    doc = json.loads(cli.out)
    assert set(doc) == set(folders.to_json()) and [r["label"] for r in doc["runs"]] == ["a", "b"]
    missing = run_cli(["compare", "--tracking-uri", uri, "--experiment", "nope"])
    assert missing.code == 2 and "nope" in missing.err and "Traceback" not in missing.err


def test_resume_continues_the_same_mlflow_run(tmp_path):
    uri = sqlite_uri(tmp_path)
    first = train(tmp_path, "r", uri, epochs=2)
    again = train(tmp_path, "r", uri, epochs=4, resume=tmp_path / "runs" / "r")
    assert again.tracking["run_id"] == first.tracking["run_id"] and again.tracking["status"] == "logged"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tests")
    assert len(client.search_runs([experiment.experiment_id])) == 1  # no duplicate
    run_id = first.tracking["run_id"]
    assert [s for s, _ in history(client, run_id, "val_loss")] == [1, 2, 3, 4]
    assert [s for s, _ in history(client, run_id, "step_loss")] == list(range(1, 4 * STEPS_PER_EPOCH + 1))
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_tracked_run_resumed_on_the_command_line_keeps_logging_to_its_run(tmp_path, run_cli):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(name="mlp", width=8, lr=0.1, epochs=1))
    out = tmp_path / "runs" / "r"
    uri = sqlite_uri(tmp_path / "runs")
    first = run_cli(["train", spec, "--out", out, "--tracking-uri", uri, "--threads", "1", "--json"])
    assert first.code == 0, first.err
    again = run_cli(["train", "--resume", out, "--epochs", "2", "--threads", "1", "--json"])  # no tracking flag
    assert again.code == 0, again.err
    run_id = json.loads(first.out)["tracking"]["run_id"]
    assert json.loads(again.out)["tracking"]["run_id"] == run_id
    client = MlflowClient(uri)
    assert [s for s, _ in history(client, run_id, "val_loss")] == [1, 2]
    off = run_cli(["train", "--resume", out, "--epochs", "3", "--threads", "1", "--no-tracking", "--json"])
    assert off.code == 0 and json.loads(off.out)["tracking"] is None
    assert [s for s, _ in history(client, run_id, "val_loss")] == [1, 2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_store_leaves_training_intact(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(name="mlp", width=8, lr=0.1, epochs=2))
    out = tmp_path / "run"
    result = run_cli(["train", spec, "--out", out, "--tracking-uri", uri, "--threads", "1", "--json"])
    assert result.code == 0, result.err
    assert uri in result.err and "tracking" in result.err
    assert json.loads(result.out)["status"] == "completed"
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "completed" and report["epochs"] == 2
    assert report["tracking"]["status"] == "failed" and report["tracking"]["uri"] == uri
    assert report["tracking"]["error"]
    assert (out / "checkpoints" / "best.pt").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_nothing_is_tracked_unless_asked(tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_options(environ={}) is None
    assert tracking_options(enabled=False, environ={"MLFLOW_TRACKING_URI": "http://x"}) is None
    assert tracking_options(environ={"MLFLOW_TRACKING_URI": "http://x"}).uri == "http://x"
    local = tracking_options(enabled=True, beside=tmp_path, environ={})
    assert local.uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}" and local.experiment is None
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(name="mlp", width=8, lr=0.1, epochs=1))
    result = run_cli(["train", spec, "--out", tmp_path / "runs" / "plain", "--threads", "1"])
    assert result.code == 0, result.err
    assert not list(tmp_path.rglob("mlflow.db")) and not (tmp_path / "runs" / "plain" / "tracking.json").exists()
    assert json.loads((tmp_path / "runs" / "plain" / "report.json").read_text())["tracking"] is None


def test_train_tracking_flag_writes_the_local_store_beside_the_runs(tmp_path, run_cli):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(name="mlp", width=8, lr=0.1, epochs=1))
    result = run_cli(["train", spec, "--out", tmp_path / "runs" / "t", "--tracking", "--threads", "1"])
    assert result.code == 0, result.err
    db = tmp_path / "runs" / "mlflow.db"
    assert db.is_file()
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("mlp")  # the spec's name
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "t" and run.data.params["train.epochs"] == "1"


def test_metrics_sent_before_the_training_process_died_reach_the_store(tmp_path):
    """The tracking process writes metrics a few seconds late, in one insert: when the training
    process is gone (killed), what it had sent is written before the tracking process ends."""
    import gc
    import queue

    from nncli.tracking import store
    from nncli.train import run_training

    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(name="mlp", width=8, lr=0.1, epochs=1))
    run_dir = Path(run_training(spec, None, tmp_path / "run", device="cpu").run_dir)  # its settings are the params
    uri = sqlite_uri(tmp_path)
    opening = {"name": "killed", "tags": {}, "run_dir": str(run_dir), "record": str(run_dir / "tracking.json")}
    inbox, outbox = queue.Queue(), queue.Queue()
    inbox.put(("begin", "t", (uri,)))
    inbox.put(("open", "t", ("tests", uri, None, opening)))
    for epoch in (1, 2, 3):
        inbox.put(("log", "t", ([("val_loss", 1.0 / epoch, epoch)],)))
    try:
        store.serve(inbox, outbox, parent=-1)  # no process has that id: the parent is "gone" once idle
    finally:
        gc.enable()
        gc.unfreeze()
    assert outbox.get_nowait()["error"] is None  # the run opened (the one message: its id)
    run_id = json.loads((run_dir / "tracking.json").read_text())["run_id"]
    assert history(MlflowClient(uri), run_id, "val_loss") == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]


def test_only_rank_0_opens_the_store():
    class Rank1:
        is_writer = False

    callback = MLflowTracking(TrackingOptions("sqlite:///never.db"))
    callback.on_fit_start(Rank1(), {"resumed": False})
    assert callback.store is None
    callback.close()
    assert not Path("never.db").exists()


def test_help_does_not_import_mlflow():
    code = "import sys\nfrom nncli.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('mlflow' in sys.modules)\n"
    proc = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stderr


# -- sweeps: one parent run, a child per trial ---------------------------------------------------
SWEEP = """\
name: lrs
spec:
  input: [2]
  layers:
    - Linear: {{out_features: 8}}
    - ReLU
    - Linear: {{out_features: 2}}
  data: {{name: moons, n: 200, noise: 0.1}}
  train: {{epochs: {epochs}, lr: 0.05, batch_size: 50, seed: 0}}
grid:
  train.lr: {lrs}
"""


def children_of(client, uri: str, name: str):
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("nncli.role") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 1 + len(children)
    return parent, children


def test_a_sweep_of_4_trials_is_1_parent_and_4_children(tmp_path):
    from nncli.sweep import load_sweep, run_sweep

    path = tmp_path / "lrs.yaml"
    path.write_text(SWEEP.format(epochs=1, lrs="[0.01, 0.05, 0.1, 0.3]"))
    uri = sqlite_uri(tmp_path)
    result = run_sweep(load_sweep(path), tmp_path / "sweep", device="cpu", tracking=TrackingOptions(uri))
    client = MlflowClient(uri)
    parent, children = children_of(client, uri, "lrs")  # the sweep's name
    assert len(children) == 4 and parent.info.status == "FINISHED"
    assert {c.data.tags["nncli.trial"] for c in children} == {t.id for t in result.trials}
    assert parent.data.tags["nncli.sweep.winner"] == result.best["id"]
    winner = json.loads((Path(result.best["run_dir"]) / "report.json").read_text())["tracking"]["run_id"]
    assert parent.data.tags["nncli.sweep.winner_run_id"] == winner
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(result.best["val"]["accuracy"])
    local = Path(client.download_artifacts(parent.info.run_id, "ranking.json", str(tmp_path)))
    ranking = json.loads(local.read_text())
    assert [r["id"] for r in ranking] == [t.id for t in result.trials if t.rank is not None]
    # rerunning the finished sweep into its folder trains nothing and logs no new run
    again = run_sweep(load_sweep(path), tmp_path / "sweep", device="cpu", tracking=TrackingOptions(uri))
    assert again.ran == 0
    assert children_of(client, uri, "lrs")[0].info.run_id == parent.info.run_id


def test_pruned_trials_are_tagged_and_never_ranked(tmp_path):
    pytest.importorskip("optuna")
    from nncli.sweep import load_sweep, run_sweep

    path = tmp_path / "lrs.yaml"
    path.write_text(SWEEP.format(epochs=4, lrs="[0.1, 0.05, 0.00001, 0.00002, 0.00005]"))
    uri = sqlite_uri(tmp_path)
    result = run_sweep(
        load_sweep(path, pruner="asha"), tmp_path / "sweep", device="cpu", tracking=TrackingOptions(uri, "p")
    )
    pruned = {t.id for t in result.trials if t.status == "pruned"}
    assert pruned  # the tiny learning rates
    client = MlflowClient(uri)
    parent, children = children_of(client, uri, "p")
    assert len(children) == 5
    tagged = {c.data.tags["nncli.trial"] for c in children if c.data.tags.get("nncli.pruned") == "true"}
    assert tagged == pruned
    local = Path(client.download_artifacts(parent.info.run_id, "ranking.json", str(tmp_path)))
    assert not pruned & {r["id"] for r in json.loads(local.read_text())}


def test_a_sweep_names_the_trials_that_failed_to_log(tmp_path, run_cli, monkeypatch):
    from nncli.tracking import store

    # the runs' store written on a thread of this process, where a refused write can be arranged:
    # the second trial's run is refused when it opens (the sweep's parent run is not a trial's)
    monkeypatch.setattr(store, "_child", lambda: None)
    opened = []

    def refuse_second(client, state, *args):
        opened.append(args[-1]["run_dir"])
        if len(opened) == 2:
            raise RuntimeError("the store refused the write")
        return OPEN(client, state, *args)

    OPEN = store.OPS["open"]
    monkeypatch.setitem(store.OPS, "open", refuse_second)
    path = tmp_path / "lrs.yaml"
    path.write_text(SWEEP.format(epochs=1, lrs="[0.01, 0.05, 0.1]"))
    uri = sqlite_uri(tmp_path)
    result = run_cli(["sweep", path, "--out", tmp_path / "sweep", "--tracking-uri", uri, "--threads", "1"])
    assert result.code == 0, result.err
    reports = {p.parent: json.loads(p.read_text()) for p in (tmp_path / "sweep").rglob("report.json")}
    failed = [folder for folder, r in reports.items() if r["tracking"]["status"] == "failed"]
    assert len(reports) == 3 and failed == [Path(opened[1])]
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    (trial,) = [t["id"] for t in sweep["trials"] if Path(t["runs"][0]["run_dir"]).resolve() == failed[0].resolve()]
    lines = [line for line in result.err.splitlines() if "not logged" in line]
    assert len(lines) == 1 and trial in lines[0] and uri in lines[0] and "refused" in lines[0]
    assert all(t["id"] not in lines[0] for t in sweep["trials"] if t["id"] != trial)
    parent, children = children_of(MlflowClient(uri), uri, "lrs")
    assert parent.data.tags["nncli.sweep.untracked"] == trial and len(children) == 2
    assert json.loads((tmp_path / "sweep" / "tracking.json").read_text())["untracked"].keys() == {trial}


# -- slow: the Ray backend, and a real `mlflow server` -------------------------------------------
@pytest.mark.slow
def test_a_ray_sweep_logs_its_trials_as_children(tmp_path):
    pytest.importorskip("ray.tune")
    from nncli.sweep import load_sweep, run_sweep
    from nncli.sweep.backends import BackendOptions

    path = tmp_path / "lrs.yaml"
    path.write_text(SWEEP.format(epochs=1, lrs="[0.01, 0.1, 0.3]"))
    uri = sqlite_uri(tmp_path)
    backend = BackendOptions("ray", cpus_per_trial=1)
    result = run_sweep(
        load_sweep(path), tmp_path / "sweep", device="cpu", backend=backend, tracking=TrackingOptions(uri)
    )
    parent, children = children_of(MlflowClient(uri), uri, "lrs")
    assert len(children) == 3 and parent.data.tags["nncli.sweep.winner"] == result.best["id"]
    assert all(c.info.status == "FINISHED" and "step_loss" in c.data.metrics for c in children)


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on a free localhost port, its store and artifacts under tmp_path."""
    import time
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen(
        [
            str(Path(PYTHON).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=subprocess_env(),
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("mlflow server did not start")
                time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_a_real_mlflow_server_gets_the_run(tmp_path, run_cli_subprocess, mlflow_server):
    import torch

    import nncli

    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(name="mlp", width=8, lr=0.1, epochs=2))
    out = tmp_path / "run"
    cli = run_cli_subprocess(
        ["train", spec, "--out", out, "--tracking-uri", mlflow_server, "--experiment", "served", "--threads", "1"],
        timeout=300,
    )
    assert cli.code == 0, cli.err
    report = json.loads((out / "report.json").read_text())
    assert report["tracking"]["status"] == "logged", report["tracking"]
    client = MlflowClient(mlflow_server)
    run = client.get_run(report["tracking"]["run_id"])
    assert run.data.params["train.lr"] == "0.1"
    assert [s for s, _ in history(client, run.info.run_id, "val_accuracy")] == [1, 2]
    assert len(history(client, run.info.run_id, "step_loss")) == 2 * STEPS_PER_EPOCH
    local = Path(client.download_artifacts(run.info.run_id, "model", str(tmp_path / "down")))
    x = torch.randn(8, 2)
    torch.testing.assert_close(nncli.load(str(local / "model.safetensors"))(x), nncli.load(str(out))(x))
    listed = run_cli_subprocess(["compare", "--tracking-uri", mlflow_server, "--json"], timeout=120)
    assert listed.code == 0 and [r["label"] for r in json.loads(listed.out)["runs"]] == ["run"]


def test_sweep_and_compare_flags_in_help(run_cli):
    for command in ("train", "sweep"):
        text = run_cli([command, "--help"]).out
        assert "--tracking-uri" in text and "--experiment" in text and "--tracking" in text
    assert "--tracking-uri" in run_cli(["compare", "--help"]).out
