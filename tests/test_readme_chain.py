"""README's examples, run top to bottom in a fresh copy of the repository, as a new user would.

THE CONVENTION for README.md (everyone who adds a section, read this):

- A fenced block marked ```sh is run, in README order, by this test: every line of it, in one
  temp folder holding a fresh copy of the repository (tracked and new files, no runs/ or venv),
  with the venv's bin/ first on PATH (so ``nncli`` is the console script), by ``bash`` from that
  folder. Later blocks may use what earlier blocks wrote (``runs/moons`` ...).
- Each line (a ``\\``-continued command counts as one) must exit 0, or 1 where the README says the
  check finds a problem (``probe`` of a vanishing stack, a ``--strict`` lint): 1 is nncli's
  documented "a check found a problem". 2 (bad input), 3 (a bug), 127 (command not found) or
  anything else fails the test, naming the README line.
- Blocks that are NOT meant to run here (set-up with ``make``, a GPU, placeholders like
  ``my-net.yaml``, shell output) are marked ```text or ```console instead.
- Keep sh examples quick (small epochs via flags or ``--set``): the whole chain is one slow test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, subprocess_env

BIN = Path(sys.executable).parent
README = ROOT / "README.md"


def sh_blocks(text: str) -> list[tuple[int, list[tuple[int, str]]]]:
    """``[(line of the fence, [(line, command), ...]), ...]`` for every ```sh block."""
    blocks: list = []
    inside, commands, start = None, [], 0  # inside: the open fence's language, None outside
    pending, pending_line = "", 0
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if inside is None:
                inside, commands, start = line[3:].strip(), [], n
            else:
                if inside == "sh" and commands:
                    blocks.append((start, commands))
                inside = None
            continue
        if inside != "sh":
            continue
        stripped = line.rstrip()
        if not pending:
            pending_line = n
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        command = (pending + stripped).strip()
        pending = ""
        if command and not command.startswith("#"):
            commands.append((pending_line, command))
    return blocks


def fresh_copy(dest: Path) -> None:
    """The repository's files (tracked and not ignored), as a fresh clone would have them."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def test_sh_blocks_are_found():
    """The parser sees every ```sh block and joins continued lines (so the chain test is not vacuous)."""
    text = "a\n```sh\nnncli check x.yaml   # c\n# only a comment\nnncli a \\\n  --b\n```\n```text\nno\n```\n"
    assert sh_blocks(text) == [(2, [(3, "nncli check x.yaml   # c"), (5, "nncli a    --b")])]
    assert len(sh_blocks(README.read_text(encoding="utf-8"))) >= 5


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("git") is None, reason="needs bash and git")
def test_readme_sh_blocks_run_in_order(tmp_path):
    repo = tmp_path / "nncli"
    fresh_copy(repo)
    env = subprocess_env()
    env.pop("OMP_NUM_THREADS", None)  # as a user runs it: nncli's own thread rule
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(repo)  # the copy's code, not the checkout's (edited while this runs)
    env["NO_COLOR"] = "1"
    failures, log = [], []
    for fence, commands in sh_blocks(README.read_text(encoding="utf-8")):
        for line, command in commands:
            t0 = time.perf_counter()
            proc = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True,
                                  timeout=900)
            log.append(f"README.md:{line}: exit {proc.returncode} in {time.perf_counter() - t0:.1f} s: {command}")
            if proc.returncode not in (0, 1):
                failures.append(f"README.md:{line}: `{command}` exited {proc.returncode}\n{proc.stderr[-1500:]}")
    print("\n".join(log))
    assert not failures, "\n\n".join(failures)
