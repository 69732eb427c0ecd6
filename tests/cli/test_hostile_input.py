"""The command line under faults and hostile input: locks, limits, Custom trust, exit codes.

Each test plants the fault the way it happens to a user (a live or dead lock holder, a
billion-copy Repeat, a Custom target outside the spec's folder, an allocator failure, a read-only
or full disk, a NaN step under lazy loss syncing followed by Ctrl-C) and checks the documented
outcome: exit 2 with a located message, never exit 3, never a checkpoint full of NaN. References
are independent of nncli: the figures are computed by hand in the test, files are inspected
directly, PIDs are those of real processes.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SPECS, subprocess_env, write
from spec_texts import TINY_MLP_RUN as MLP

pytestmark = pytest.mark.usefixtures("default_limits")


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- 1. one writer per run folder -----------------------------------------------------------------
def test_second_writer_of_a_run_folder_exits_2_naming_the_holder(tmp_path, run_cli):
    spec = write(tmp_path / "spec.yaml", MLP)
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".nncli.lock").write_text(
            json.dumps({"pid": holder.pid, "host": os.uname().nodename, "command": "nncli train other.yaml --out run"})
        )
        result = run_cli(["train", spec, "--out", out, "--device", "cpu"])
        assert result.code == 2, result.text
        assert f"PID {holder.pid}" in result.err and "nncli train other.yaml --out run" in result.err
        assert sorted(p.name for p in out.iterdir()) == [".nncli.lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    from nncli.train import run_training

    out = tmp_path / "run"
    out.mkdir()
    (out / ".nncli.lock").write_text(
        json.dumps({"pid": dead_pid(), "host": os.uname().nodename, "command": "nncli train (killed)"})
    )
    result = run_training(write(tmp_path / "spec.yaml", MLP), None, out, device="cpu")
    assert result.status == "completed"
    assert not (out / ".nncli.lock").exists()  # released at the end
    assert (out / "checkpoints" / "best.pt").is_file()


def test_lock_is_exclusive_between_two_processes(tmp_path):
    # The primitive itself, across real processes: the child takes the lock, the parent cannot.
    from nncli.errors import InputError
    from nncli.train.lock import FolderLock

    code = (
        "import sys, time; from nncli.train.lock import FolderLock; "
        f"l = FolderLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=subprocess_env(), cwd=ROOT
    )
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"PID {child.pid}"):
            FolderLock(tmp_path).acquire()
    finally:
        child.kill()
        child.wait()
    with FolderLock(tmp_path):  # its process is gone: stale, taken over
        assert json.loads((tmp_path / ".nncli.lock").read_text())["pid"] == os.getpid()


def test_a_folder_filled_while_waiting_is_not_overwritten(tmp_path):
    # prepare() saw an empty folder; another writer finished a run there before this one locked.
    from nncli.errors import InputError
    from nncli.train.prepare import prepare
    from nncli.train.runs import claim_run_folder

    out = tmp_path / "run"
    setup = prepare(write(tmp_path / "spec.yaml", MLP), None, out)
    write(out / "run.yaml", "other: run\n")
    with pytest.raises(InputError, match="already holds a run"):
        claim_run_folder(setup)


def test_second_sweep_into_one_folder_exits_2(tmp_path):
    from nncli.errors import InputError
    from nncli.sweep import load_sweep, run_sweep

    write(tmp_path / "base.yaml", MLP)
    sweep = write(tmp_path / "sweep.yaml", "base: base.yaml\ngrid:\n  train.lr: [0.1, 0.2]\n")
    out = tmp_path / "sweep-out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".nncli.lock").write_text(
            json.dumps({"pid": holder.pid, "host": os.uname().nodename, "command": "nncli sweep sweep.yaml"})
        )
        with pytest.raises(InputError, match=f"PID {holder.pid}"):
            run_sweep(load_sweep(sweep), out, device="cpu")
        assert sorted(p.name for p in out.iterdir()) == [".nncli.lock"]
    finally:
        holder.kill()
        holder.wait()


# -- 2. limits checked before work -----------------------------------------------------------------
def test_billion_copy_repeat_is_refused_arithmetically(tmp_path, run_cli):
    spec = write(tmp_path / "big.yaml", "input: [4]\nlayers:\n  - Repeat: {times: 1000000000, layers: [ReLU]}\n")
    started = time.perf_counter()
    for command in ("check", "params", "diagram"):
        result = run_cli([command, spec] + (["-o", tmp_path / "d.svg"] if command == "diagram" else []))
        assert result.code == 2, result.text
        assert "1,000,000,001 layers" in result.err and "limit is 100,000" in result.err
        assert "big.yaml:3:" in result.err and "NNCLI_MAX_LAYERS" in result.err
    assert time.perf_counter() - started < 30


def test_nested_repeats_multiply(tmp_path, run_cli):
    text, indent = "input: [4]\nlayers:\n", "  "
    for _ in range(10):
        text += f"{indent}- Repeat:\n{indent}    times: 1000\n{indent}    layers:\n"
        indent += "      "
    text += f"{indent}- ReLU\n"
    result = run_cli(["check", write(tmp_path / "nest.yaml", text)])
    assert result.code == 2
    # 1000 + 1000**2 + ... + 1000**10 Repeat copies and ReLUs: sum of 1000**k, k = 0..10
    assert f"{sum(1000**k for k in range(11)):,} layers" in result.err


def test_nested_expression_repeats_multiply(tmp_path, run_cli):
    """`times: k` with `vars: {k: 100}` three deep is 10**6 copies: refused before they are built,
    although the spec-level count sees an expression `times` as 1."""
    text = (
        "input: [4]\nvars: {k: 100}\nlayers:\n  - Repeat:\n      times: k\n      layers:\n"
        "        - Repeat:\n            times: k\n            layers:\n"
        "              - Repeat: {times: k, layers: [ReLU]}\n"
    )
    spec = write(tmp_path / "nest.yaml", text)
    started = time.perf_counter()
    for command in ("check", "params"):
        result = run_cli([command, spec])
        assert result.code == 2, result.text
        assert f"{100**3:,} layers" in result.err and "limit is 100,000" in result.err
        assert "nest.yaml:10:" in result.err and "Repeats making 10,000 copies" in result.err
    assert time.perf_counter() - started < 60


@pytest.mark.parametrize(
    "text, where, words",
    [
        ("input: [4]\nvars: {a: .inf}\nlayers:\n  - Linear: {out_features: a}\n", "x.yaml:2:", "finite number"),
        ("input: [4]\nvars: {a: .NaN}\nlayers:\n  - Linear: {out_features: a}\n", "x.yaml:2:", "finite number"),
        (
            "input: [4]\nvars: {a: 1.0e+18}\nlayers:\n  - Linear: {out_features: 'a * 10'}\n",
            "x.yaml:4:",
            "beyond 2**63",
        ),
        ("input: [4]\nlayers:\n  - Linear: {out_features: " + "9" * 5000 + "}\n", "x.yaml:3:", "4300 digits"),
        (
            "input: [4]\nvars: {a: " + "9" * 30 + "}\nlayers:\n  - Linear: {out_features: a}\n",
            "x.yaml:2:",
            "within 2**63",
        ),
        (
            "input: [4]\nvars: {v0: 2, v1: v0*v0, v2: v1*v1, v3: v2*v2, v4: v3*v3, v5: v4*v4, v6: v5*v5, "
            "v7: v6*v6}\nlayers:\n  - ReLU\n",
            "x.yaml:2:",
            "beyond 2**63",
        ),
        (
            "input: [4]\nlayers:\n  - Linear: {out_features: '" + "(" * 400 + "4" + ")" * 400 + "'}\n",
            "x.yaml:3:",
            "nests more than 100",
        ),
    ],
)
def test_numbers_beyond_the_bounds_are_located_errors(tmp_path, run_cli, text, where, words):
    result = run_cli(["check", write(tmp_path / "x.yaml", text)])
    assert result.code == 2, result.text
    assert where in result.err and words in result.err, result.err
    assert "Traceback" not in result.text and "bug in nncli" not in result.text


def test_the_limit_is_raised_by_its_environment_variable(tmp_path, monkeypatch):
    from nncli.errors import SpecError
    from nncli.spec import parse_spec

    text = "input: [4]\nlayers:\n  - Repeat: {times: 200000, layers: [ReLU]}\n"
    with pytest.raises(SpecError, match="200,001 layers"):
        parse_spec(text)
    monkeypatch.setenv("NNCLI_MAX_LAYERS", "300000")
    assert parse_spec(text).layers[0].times == 200000


def test_ten_thousand_layer_spec_is_within_the_limits():
    from nncli.spec import parse_spec

    text = "input: [4]\nlayers:\n" + "  - Linear: {out_features: 4}\n  - ReLU\n" * 5000
    assert len(parse_spec(text).layers) == 10_000


def test_nesting_depth_limit(tmp_path, run_cli):
    text, indent = "input: [4]\nlayers:\n", "  "
    for _ in range(70):
        text += f"{indent}- Residual:\n{indent}    body:\n"
        indent += "      "
    text += f"{indent}- ReLU\n"
    result = run_cli(["check", write(tmp_path / "deep.yaml", text)])
    assert result.code == 2
    assert "nest more than 64 levels" in result.err and "NNCLI_MAX_DEPTH" in result.err


def test_spec_size_limit_applies_before_yaml_parses(tmp_path, run_cli, monkeypatch):
    import yaml

    spec = write(tmp_path / "huge.yaml", "input: [4]\nlayers:\n" + "  - ReLU\n" * 2000)
    monkeypatch.setenv("NNCLI_MAX_SPEC_BYTES", "4096")

    def no_parse(*a, **k):  # PyYAML must never see the text
        raise AssertionError("PyYAML was called")

    monkeypatch.setattr(yaml, "SafeLoader", no_parse)
    result = run_cli(["check", spec])
    assert result.code == 2
    assert f"{spec.stat().st_size:,} bytes" in result.err and "limit is 4,096 bytes" in result.err
    assert "NNCLI_MAX_SPEC_BYTES" in result.err


# -- 3. Custom code as a trust decision ------------------------------------------------------------
EVIL = """
from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("module-level code ran")
import torch
class Evil(torch.nn.Module):
    def forward(self, x):
        return x
"""


def _custom_spec(folder: Path, target: str) -> Path:
    return write(folder / "spec.yaml", f'input: [4]\nlayers:\n  - Custom: {{target: "{target}"}}\n')


@pytest.mark.parametrize("where", ["dotdot", "absolute"])
def test_custom_file_outside_the_spec_folder_is_refused_unimported(tmp_path, run_cli, where):
    evil = write(tmp_path / "outside" / "evil.py", EVIL)
    target = "../outside/evil.py:Evil" if where == "dotdot" else f"{evil}:Evil"
    spec = _custom_spec(tmp_path / "specs", target)
    for command in ("check", "params"):
        result = run_cli([command, spec])
        assert result.code == 2, result.text
        assert "spec.yaml:3:" in result.err
        assert ("outside the spec's folder" if where == "dotdot" else "absolute path") in result.err
    assert not (tmp_path / "outside" / "IMPORTED").exists()


def test_no_custom_refuses_before_importing(tmp_path, run_cli, monkeypatch):
    write(tmp_path / "evil.py", EVIL)
    spec = _custom_spec(tmp_path, "evil.py:Evil")
    result = run_cli(["--no-custom", "check", spec])
    assert result.code == 2 and "--no-custom" in result.err and "spec.yaml:3:" in result.err
    monkeypatch.setenv("NNCLI_NO_CUSTOM", "1")
    result = run_cli(["params", spec, "--json"])
    assert result.code == 2 and json.loads(result.out)["error"] == "SpecError"
    assert not (tmp_path / "IMPORTED").exists()
    monkeypatch.delenv("NNCLI_NO_CUSTOM")
    assert run_cli(["check", spec]).code == 0  # trusted on purpose: it runs
    assert (tmp_path / "IMPORTED").exists()


def test_help_says_custom_runs_code():
    proc = subprocess.run(
        [sys.executable, "-m", "nncli", "--help"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=ROOT,
        timeout=60,
    )
    assert "--no-custom" in proc.stdout and "runs Python code" in " ".join(proc.stdout.split())


# -- 4. exit codes that mean what the README says ------------------------------------------------
def test_allocator_failure_mid_training_is_exit_2(tmp_path, run_cli, monkeypatch):
    import torch

    def oom(self, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch.optim.SGD, "step", oom)
    result = run_cli(
        ["train", write(tmp_path / "spec.yaml", MLP), "--out", tmp_path / "run", "--device", "cpu", "--json"]
    )
    assert result.code == 2, result.text
    doc = json.loads(result.out)
    assert doc["exit_code"] == 2 and "out of memory" in doc["message"] and "--batch-size" in doc["hint"]


@pytest.mark.parametrize(
    "code, words", [(errno.EROFS, "read-only"), (errno.ENOSPC, "disk is full"), (errno.EACCES, "permission denied")]
)
def test_unwritable_or_full_disk_is_exit_2_with_the_path(tmp_path, run_cli, monkeypatch, code, words):
    import nncli.files

    target = tmp_path / "run" / "run.yaml"

    def fail(path, data, durable=False):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(nncli.files, "write_atomic", fail)
    monkeypatch.setattr("nncli.train.runs.write_atomic", fail)
    result = run_cli(["train", write(tmp_path / "spec.yaml", MLP), "--out", tmp_path / "run", "--device", "cpu"])
    assert result.code == 2, result.text
    assert words in result.err and str(target.parent) in result.err


def test_read_only_folder_for_diagram_is_exit_2(tmp_path, run_cli, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:  # root writes into 0o500 folders: the file system says EROFS instead

        def fail(path, data, durable=False):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

        monkeypatch.setattr("nncli.diagram.output.write_atomic", fail)
    folder.chmod(0o500)
    try:
        result = run_cli(["diagram", SPECS / "lenet5.yaml", "-o", folder / "x.dot", "--json"])
        assert result.code == 2, result.text
        assert str(folder) in result.err and json.loads(result.out)["exit_code"] == 2
    finally:
        folder.chmod(0o700)


def test_usage_error_under_json_prints_the_error_document(run_cli):
    result = run_cli(["params", SPECS / "lenet5.yaml", "--json", "--no-such-flag"])
    assert result.code == 2
    doc = json.loads(result.out)
    assert doc["exit_code"] == 2 and doc["error"] == "UsageError" and "--no-such-flag" in doc["message"]


def test_traceback_never_changes_the_exit_code(tmp_path):
    spec = write(tmp_path / "bad.yaml", "input: [4]\nlayers:\n  - NoSuchLayer\n")
    proc = subprocess.run(
        [sys.executable, "-m", "nncli", "--traceback", "check", str(spec)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_force_does_not_replace_a_folder_another_process_is_writing(tmp_path, run_cli):
    spec = write(tmp_path / "spec.yaml", MLP)
    out = tmp_path / "run"
    write(out / "run.yaml", "a: run\n")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".nncli.lock").write_text(
            json.dumps({"pid": holder.pid, "host": os.uname().nodename, "command": "nncli train spec.yaml --out run"})
        )
        result = run_cli(["train", spec, "--out", out, "--force", "--device", "cpu"])
        assert result.code == 2 and f"PID {holder.pid}" in result.err
        assert (out / "run.yaml").read_text() == "a: run\n"
    finally:
        holder.kill()
        holder.wait()


# -- 6. one way to open a run folder ----------------------------------------------------------------
def test_open_run_says_what_is_wrong_with_a_folder(tmp_path):
    import hashlib

    from nncli.errors import InputError
    from nncli.runs import read_report, spec_digest
    from nncli.train.trained import open_run

    with pytest.raises(InputError, match="no such run folder"):
        open_run(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not an nncli run folder: no run.yaml"):
        open_run(tmp_path / "empty")
    assert read_report(tmp_path / "empty") is None  # a killed run has no report: not an error
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.yaml").write_text("data: [\n")
    with pytest.raises(InputError, match="cannot read the run folder"):
        open_run(bad)
    (bad / "run.yaml").write_text("- a list\n")
    with pytest.raises(InputError, match="expected the mapping nncli writes"):
        open_run(bad)
    (bad / "report.json").write_text('{"status": "compl')
    with pytest.raises(InputError, match="report.json: cannot read it"):
        read_report(bad)
    text = "input: [2]\nlayers:\n  - Linear: {out_features: 2}\n"
    assert spec_digest(text) == hashlib.sha256(text.encode()).hexdigest()
