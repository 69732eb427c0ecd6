"""Sweeps past one machine: the backends (local pool, Ray Tune), Optuna's samplers and pruners,
and the optional extras' install messages.

References are independent of the code under test: a synthetic objective with a known minimum
(TPE against random search), the plain grid sweep on the local backend (ASHA must choose its
winner; Ray must reproduce it trial by trial), and the install command a user would type.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, subprocess_env

from nncli.sweep import load_sweep, run_sweep

TINY = """\
name: {name}
spec:
  input: [2]
  layers:
    - Linear: {{out_features: 16}}
    - ReLU
    - Linear: {{out_features: 2}}
  data: {{name: moons, n: 300, noise: 0.1}}
  train: {{epochs: {epochs}, lr: 0.05, batch_size: 32, seed: 0}}
"""


def write_sweep(tmp_path: Path, body: str, *, name: str = "s", epochs: int = 3) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY.format(name=name, epochs=epochs) + textwrap.dedent(body))
    return path


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models, one thread


# -- the extras: a missing one is exit 2 naming the extra and the command to install it ----------
@pytest.mark.parametrize(
    "extra, module, flags", [("ray", "ray", ["--backend", "ray"]), ("optuna", "optuna", ["--sampler", "tpe"])]
)
def test_missing_extra_is_exit_2_with_the_install_command(tmp_path, extra, module, flags):
    path = write_sweep(tmp_path, "grid:\n  train.lr: [0.01, 0.1]\n")
    # a module set to None in sys.modules cannot be imported: what a user without the extra sees
    code = (
        f"import sys; sys.modules[{module!r}] = None; sys.modules[{module + '.tune'!r}] = None\n"
        "from nncli.cli import main\n"
        f"sys.argv = ['nncli', 'sweep', {str(path)!r}, '--out', {str(tmp_path / 'out')!r}] + {flags!r}\n"
        "raise SystemExit(main())\n"
    )
    proc = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert f"nncli[{extra}]" in proc.stderr and f"pip install 'nncli[{extra}]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_local_backend_needs_no_extra_and_address_needs_ray(tmp_path):
    path = write_sweep(tmp_path, "grid:\n  train.lr: [0.01, 0.1]\n")
    proc = subprocess.run(
        [PYTHON, "-m", "nncli", "sweep", str(path), "--address", "auto", "--dry-run"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "add --backend ray" in proc.stderr and "Traceback" not in proc.stderr


def test_search_section_is_validated_with_its_place(tmp_path):
    from nncli.errors import SpecError

    path = write_sweep(tmp_path, "grid:\n  train.lr: [0.01, 0.1]\nsearch: {sampler: annealing}\n")
    with pytest.raises(SpecError) as err:
        load_sweep(path)
    assert err.value.line == 12 and "tpe, random, grid" in err.value.message
    path = write_sweep(
        tmp_path, "random:\n  train.lr: {loguniform: [1.0e-4, 1.0]}\ntrials: 3\nsearch: {sampler: grid}\n"
    )
    with pytest.raises(SpecError, match="grid sampler needs every axis"):
        load_sweep(path)


# -- Optuna's samplers: TPE against random search on an objective with a known answer ------------
VALLEY = """\
random:
  train.lr: {loguniform: [1.0e-6, 1.0]}
  train.momentum: {uniform: [0.0, 0.99]}
trials: 30
"""


def _valley(values: dict) -> float:
    """A learning-rate valley with its floor at lr = 0.01, momentum = 0.9 (value 0 there)."""
    return (math.log10(values["train.lr"]) + 2.0) ** 2 + 4 * (values["train.momentum"] - 0.9) ** 2


def _best_found(path: Path, sampler: str, seed: int) -> tuple[float, dict]:
    from nncli.sweep import search

    plan = load_sweep(path, sampler=sampler, search_seed=seed)
    study = search.make_study(plan.search, plan.axes, "loss", None)
    best = (math.inf, {})
    for _ in range(plan.trials):
        trial = study.ask()
        values = search.suggest(trial, plan.axes)
        y = _valley(values)
        best = min(best, (y, values), key=lambda b: b[0])
        search.tell(study, trial, [{"status": "completed", "val": {"loss": y}, "history": []}], "loss")
    return best


def test_tpe_finds_a_better_configuration_than_random_with_the_same_budget(tmp_path):
    pytest.importorskip("optuna")
    path = write_sweep(tmp_path, VALLEY)
    tpe = [_best_found(path, "tpe", seed) for seed in range(8)]
    rnd = [_best_found(path, "random", seed) for seed in range(8)]
    tpe_mean, rnd_mean = statistics.fmean(y for y, _ in tpe), statistics.fmean(y for y, _ in rnd)
    assert tpe_mean < rnd_mean / 3, (tpe_mean, rnd_mean)
    # near the known answer: within a factor of 2 of lr = 0.01 on average (log10 distance < 0.3)
    assert statistics.fmean(abs(math.log10(v["train.lr"]) + 2) for _, v in tpe) < 0.3
    # seeded: the same seed draws the same configurations
    assert _best_found(path, "tpe", 3) == tpe[3]


# -- pruning: ASHA stops the clearly bad trials early and chooses the plain grid's winner --------
LR_GRID = "grid:\n  train.lr: [0.1, 0.05, 0.00001, 0.00002, 0.00005]\n"


def test_asha_prunes_the_bad_trials_early_and_keeps_the_winner(tmp_path):
    pytest.importorskip("optuna")
    path = write_sweep(tmp_path, LR_GRID, epochs=6)
    plain = run_sweep(load_sweep(path), tmp_path / "grid", device="cpu")
    asha = run_sweep(load_sweep(path, pruner="asha"), tmp_path / "asha", device="cpu")
    assert asha.search == "optuna-grid" and plain.search == "grid"
    assert asha.best["id"] == plain.best["id"] and asha.best["val"] == pytest.approx(plain.best["val"])
    by_id = {t.id: t for t in asha.trials}
    bad = [t.id for t in plain.trials if t.overrides["train.lr"] < 1e-4]
    for tid in bad:  # the tiny learning rates are near chance after one epoch: stopped there
        trial = by_id[tid]
        assert trial.status == "pruned" and trial.rank is None and trial.runs[0].epochs < 6
        report = json.loads((Path(trial.runs[0].run_dir) / "report.json").read_text())
        assert report["status"] == "pruned"
    assert by_id[plain.best["id"]].rank == 1  # (ASHA may also stop a good-but-not-best one: its rule)
    epochs = lambda result: sum(r.epochs for t in result.trials for r in t.runs)  # noqa: E731
    assert epochs(asha) <= epochs(plain) - 2 * len(bad)  # time saved: epochs not trained
    # a rerun reuses every trial, pruned ones included (their folders say they are done)
    again = run_sweep(load_sweep(path, pruner="asha"), tmp_path / "asha", device="cpu")
    assert again.ran == 0 and again.best["id"] == asha.best["id"]
    assert [t.status for t in again.trials] == [t.status for t in asha.trials]


# -- the Ray backend: a real local Ray instance (loopback, bounded CPUs, torn down after) --------
@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        _node_ip_address="127.0.0.1",
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_backend_equals_the_local_backend_trial_by_trial(tmp_path, local_ray):
    from nncli.sweep.backends import BackendOptions

    path = write_sweep(tmp_path, "grid:\n  train.lr: [0.01, 0.1, 0.3]\n", epochs=2)
    local = run_sweep(load_sweep(path), tmp_path / "local", device="cpu")
    remote = run_sweep(
        load_sweep(path), tmp_path / "ray", device="cpu", backend=BackendOptions("ray", cpus_per_trial=1)
    )
    assert [t.id for t in remote.trials] == [t.id for t in local.trials]  # the same ranking
    assert remote.best["id"] == local.best["id"]
    for a, b in zip(local.trials, remote.trials):
        assert (a.rank, a.status) == (b.rank, b.status) == (a.rank, "ok")
        assert b.val == pytest.approx(a.val, abs=1e-6)  # one torch thread each: the same numbers
        run = Path(b.runs[0].run_dir)
        assert run.parent == tmp_path / "ray" and (run / "report.json").is_file()  # an ordinary run folder
        assert json.loads((run / "trial.json").read_text())["status"] == "ok"
    doc = json.loads((tmp_path / "ray" / "sweep.json").read_text())
    assert doc["best"]["id"] == local.best["id"] and (tmp_path / "ray" / "best.yaml").is_file()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), children first."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out.extend(int(k) for k in kids)
        todo.extend(int(k) for k in kids)
    return out


@pytest.mark.slow
def test_ray_sweep_killed_mid_way_reruns_only_the_rest(tmp_path):
    pytest.importorskip("ray.tune")
    widths = [4, 6, 8, 10, 12]
    path = write_sweep(tmp_path, f"grid:\n  layers[0].Linear.out_features: {widths}\n", epochs=3)
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
        "--device",
        "cpu",
        "--backend",
        "ray",
        "--cpus-per-trial",
        "1",
    ]
    env = subprocess_env(OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 400

    def completed() -> dict:
        done = {}
        for report in out.glob("*/report.json"):
            try:
                if json.loads(report.read_text())["status"] == "completed":
                    done[report.parent.name] = (report.stat().st_mtime_ns, report.read_text())
            except (OSError, ValueError):
                pass  # being written
        return done

    try:
        while len(completed()) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no two trials finished within 400 s"
            time.sleep(0.1)
    finally:  # the sweep, its Ray instance and its trials: every process this test started
        pids = _descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    finished = completed()
    assert 2 <= len(finished) < len(widths) and not (out / "sweep.json").exists()

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    assert doc["cached"] == len(finished) and doc["ran"] == len(widths) - len(finished)
    assert sorted(t["rank"] for t in doc["trials"]) == list(range(1, len(widths) + 1))
    for name, (mtime, text) in finished.items():  # untouched: not trained again
        report = out / name / "report.json"
        assert (report.stat().st_mtime_ns, report.read_text()) == (mtime, text)


@pytest.mark.slow
def test_ray_backend_prunes_as_the_local_backend(tmp_path, local_ray):
    pytest.importorskip("optuna")
    from nncli.sweep.backends import BackendOptions

    path = write_sweep(tmp_path, LR_GRID, epochs=4)
    local = run_sweep(load_sweep(path, pruner="asha"), tmp_path / "local", device="cpu")
    remote = run_sweep(
        load_sweep(path, pruner="asha"),
        tmp_path / "ray",
        device="cpu",
        backend=BackendOptions("ray", workers=1, cpus_per_trial=1),
    )
    assert remote.best["id"] == local.best["id"]
    assert [(t.id, t.rank, t.status) for t in remote.trials] == [(t.id, t.rank, t.status) for t in local.trials]
    assert any(t.status == "pruned" for t in remote.trials)
    for a, b in zip(local.trials, remote.trials):
        assert b.val == pytest.approx(a.val, abs=1e-6) and b.runs[0].epochs == a.runs[0].epochs


def test_progress_line_says_pruned_not_failed():
    import io

    from rich.console import Console

    from nncli.render.sweep import SweepProgress
    from nncli.sweep.results import RunRecord, SweepEvent

    out = io.StringIO()
    progress = SweepProgress(Console(file=out, color_system=None, width=200))
    for status in ("pruned", "failed"):
        run = RunRecord(
            seed=None,
            run_dir="r",
            status=status,
            val={"loss": 0.7, "accuracy": 0.5},
            seconds=1.0,
            error="boom" if status == "failed" else None,
        )
        progress(SweepEvent("done", 1, 2, trial=f"lr=0.1-{status}", run=run))
    pruned, failed = out.getvalue().splitlines()
    assert "pruned val accuracy" in pruned and "failed" not in pruned
    assert "failed boom" in failed
