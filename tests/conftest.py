"""Shared fixtures for the foundation's tests: run the CLI in-process or as a real process.

``run_cli(args)`` calls :func:`nncli.cli.main` in this process and captures what it writes with
pytest's ``capsys``: fast (torch is loaded once for the whole session), and what a user sees.
``run_cli_subprocess(args)`` starts a real ``python -m nncli`` for the few tests that need one
(timing ``--help``, checking that torch is not imported, peak memory).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SPECS = ROOT / "specs"
# The venv's interpreter, so subprocesses see the same torch and nncli as the tests.
PYTHON = sys.executable

if str(TESTS) not in sys.path:  # `import reference_models` from any test file
    sys.path.insert(0, str(TESTS))


@dataclass
class CliResult:
    """What one CLI run produced."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run ``nncli <args>`` in-process; returns a :class:`CliResult`.

    Rich wraps non-TTY output at 80 columns unless told the width; a wide COLUMNS keeps each
    located error on one line, so assertions on file, line and spec path do not depend on where
    a wrap falls.
    """
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("NNCLI_TRACEBACK", raising=False)

    def run(args) -> CliResult:
        from nncli.cli import main

        capsys.readouterr()  # drop anything printed before
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def subprocess_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.pop("NNCLI_TRACEBACK", None)
    env.update({"COLUMNS": "400", "NO_COLOR": "1", "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


@pytest.fixture
def run_cli_subprocess():
    """Run ``python -m nncli <args>`` as a real process; returns a :class:`CliResult`."""

    def run(args, timeout: float = 120, **env) -> CliResult:
        proc = subprocess.run(
            [PYTHON, "-m", "nncli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=subprocess_env(**env),
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec (text or bytes) into a temporary folder and return its path."""

    def write(text: str | bytes, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return write


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test, restored afterwards: tiny models on a shared 2-core
    machine, where OpenMP's thread wake-ups cost more than the work (as a sweep worker gets)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The variables that raise nncli's limits or refuse Custom code: unset in tests that rely on the
# defaults, whatever the developer's shell exports.
LIMIT_AND_TRUST_ENV = ("NNCLI_NO_CUSTOM", "NNCLI_MAX_LAYERS", "NNCLI_MAX_DEPTH", "NNCLI_MAX_SPEC_BYTES")


@pytest.fixture
def default_limits(monkeypatch, one_torch_thread):
    """One torch thread, and none of the limits' or trust's environment variables set."""
    for name in LIMIT_AND_TRUST_ENV:
        monkeypatch.delenv(name, raising=False)


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (its folders made) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
