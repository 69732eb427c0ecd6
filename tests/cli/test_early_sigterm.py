"""SIGTERM before the entry point's own handler: the nncli command still ends as an interrupted
command (exit 130, the error document under --json) from the moment nncli.cli is imported, and
only the nncli command gets that handler (a program importing nncli, a spawned worker do not)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from conftest import PYTHON, ROOT, subprocess_env

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# the state right after nncli.cli's first line in `nncli train spec.yaml --json`: a SIGTERM there,
# with every import still to come
EARLY = """
import os, signal, sys, time
sys.orig_argv = [sys.executable, {script!r}, "train", "spec.yaml"] + {extra!r}
sys.argv = [{script!r}, "train", "spec.yaml"] + {extra!r}
from nncli.cli import early
early.install()
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(30)
print("not interrupted")
"""


def run_early(script: str, extra: list[str]) -> subprocess.CompletedProcess:
    code = EARLY.format(script=script, extra=extra)
    return subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=60
    )


def test_sigterm_before_the_imports_prints_the_json_document_and_exits_130():
    done = run_early("/venv/bin/nncli", ["--json"])
    assert done.returncode == 130, (done.returncode, done.stderr)
    doc = json.loads(done.stdout)
    assert doc["error"] == "Interrupted" and doc["exit_code"] == 130
    assert done.stderr.strip() == "interrupted"


def test_without_json_stdout_stays_empty():
    done = run_early("/venv/bin/nncli", [])
    assert done.returncode == 130 and done.stdout == "" and done.stderr.strip() == "interrupted"


def test_a_program_that_is_not_the_nncli_command_keeps_the_default():
    done = run_early("/home/me/my_script.py", ["--json"])
    assert done.returncode == -signal.SIGTERM and done.stdout == ""


def test_which_command_lines_are_the_nncli_command():
    from nncli.cli.early import started_as_nncli

    assert started_as_nncli(["/usr/bin/python3", "/venv/bin/nncli", "train"])
    assert started_as_nncli(["python", "-X", "importtime", "-m", "nncli", "check", "s.yaml"])
    assert not started_as_nncli(["python", "-m", "pytest", "tests"])
    assert not started_as_nncli(["python", "-c", "import nncli"])
    assert not started_as_nncli(["python", "-m"])
    spawned = ["python", "-c", "from multiprocessing.spawn import spawn_main; spawn_main()", "--multiprocessing-fork"]
    assert not started_as_nncli(spawned)


def test_the_entry_point_replaces_the_early_handler_and_restores_the_default(tmp_path):
    # In a process started as the command, main() installs its own handler over the early one
    # (SIGTERM in a command is then a KeyboardInterrupt), and leaves SIGTERM at the default after.
    code = (
        "import signal, sys\n"
        "sys.orig_argv = [sys.executable, '/venv/bin/nncli', '--version']\n"
        "from nncli.cli import early, main\n"
        "early.install()\n"
        "assert signal.getsignal(signal.SIGTERM) is early.on_terminate\n"
        "from nncli.cli import app\n"
        "seen = []\n"
        "@app.command('probe-signal', hidden=True)\n"
        "def _probe():\n"
        "    seen.append(signal.getsignal(signal.SIGTERM))\n"
        "main(['probe-signal'])\n"
        "assert seen and seen[0] not in (signal.SIG_DFL, early.on_terminate), seen\n"
        "assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
