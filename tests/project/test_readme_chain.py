"""The examples of README.md and of every docs/ page, run top to bottom in a fresh copy of the
repository, as a new user would.

THE CONVENTION for README.md and docs/**/*.md (everyone who adds a section, read this):

- A fenced block marked ```sh is run, in page order, by this test: every line of it, in one
  temp folder holding a fresh copy of the repository (tracked and new files, no runs/ or venv),
  with the venv's bin/ first on PATH (so ``nncli`` is the console script), by ``bash`` from that
  folder. Each page is one chain in its own fresh copy: later blocks of a page may use what its
  earlier blocks wrote (``runs/moons`` ...), never what another page wrote.
- A fenced block with a title, ```yaml title="iris.yaml"`` (MkDocs Material shows the title), is
  a file of the example: the chain writes its text to that path, relative to the repository's
  folder, at that point of the page. This is how a page shows a spec or a script and then runs it.
- Each line (a ``\\``-continued command counts as one) must exit 0; or 1 where its comment says
  so (``nncli probe specs/deep-sigmoid.yaml   # exit 1: the gradients vanish``): 1 is nncli's
  documented "a check found a problem", and an example that finds one says it. Any other code
  (1 unannounced, 2 bad input, 3 a bug, 127 command not found) fails the test, naming the page
  and line.
- Blocks that are NOT meant to run here (set-up with ``make``, a GPU, placeholders like
  ``my-net.yaml``, shell output) are marked ```text or ```console instead.
- Keep sh examples quick (small epochs via flags or ``--set``): the chains are slow tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, subprocess_env

BIN = Path(sys.executable).parent
README = ROOT / "README.md"
PAGES = [README] + sorted((ROOT / "docs").rglob("*.md"))
TITLE = re.compile(r'\btitle="([^"]+)"')


def fence_steps(text: str) -> list[tuple[int, str, str]]:
    """The page's runnable steps in order: ``(line, "sh", command)`` for each command of a ```sh
    block (continued lines joined) and ``(line, "file", path)`` for each titled block, whose text
    follows as ``(line, "text", content)``."""
    steps: list = []
    inside, title, start, body = None, None, 0, []  # inside: the open fence's language, None outside
    pending, pending_line = "", 0
    for n, line in enumerate(text.splitlines(), 1):
        stripped_fence = line.strip()
        if stripped_fence.startswith("```"):
            if inside is None:
                info = stripped_fence[3:].strip()
                inside, start, body = (info.split() or [""])[0], n, []
                match = TITLE.search(info)
                title = match.group(1) if match else None
            else:
                if title is not None:
                    steps += [(start, "file", title), (start, "text", "\n".join(body) + "\n")]
                inside, title = None, None
            continue
        if inside is None:
            continue
        body.append(line)
        if inside != "sh" or title is not None:
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
            steps.append((pending_line, "sh", command))
    return steps


def sh_commands(text: str) -> list[tuple[int, str]]:
    return [(line, value) for line, kind, value in fence_steps(text) if kind == "sh"]


def allowed_codes(command: str) -> tuple[int, ...]:
    """0, and 1 too where the command's comment announces it (``# ... exit 1 ...``)."""
    return (0, 1) if re.search(r"#.*\bexit 1\b", command) else (0,)


def fresh_copy(dest: Path) -> None:
    """The repository's files (tracked and not ignored), as a fresh clone would have them."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def test_fences_are_found():
    """The parser sees every ```sh block, joins continued lines and reads titled files (so the
    chain test is not vacuous), on README and on the docs pages alike."""
    text = (
        "a\n```sh\nnncli check x.yaml   # c\n# only a comment\nnncli a \\\n  --b\n```\n```text\nno\n```\n"
        '```yaml title="n.yaml"\ninput: [2]\n```\n'
    )
    assert fence_steps(text) == [
        (3, "sh", "nncli check x.yaml   # c"),
        (5, "sh", "nncli a    --b"),
        (11, "file", "n.yaml"),
        (11, "text", "input: [2]\n"),
    ]
    assert len(sh_commands(README.read_text(encoding="utf-8"))) >= 5
    assert allowed_codes("nncli probe x.yaml   # exit 1: vanishing") == (0, 1)
    assert allowed_codes("nncli check x.yaml   # the layer table") == (0,)
    docs = [p for p in PAGES if p != README]
    assert len(docs) >= 15
    with_commands = [p for p in docs if sh_commands(p.read_text(encoding="utf-8"))]
    assert len(with_commands) >= 10, with_commands


def test_readme_stays_a_newcomers_page():
    """README.md is read in ten minutes: at most 15 KB (everything else belongs in docs/), with no
    dated measurement lines or issue numbers, and links to docs pages that exist."""
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 15 * 1024, len(text.encode("utf-8"))
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b|load average|\bissue \d+", text, re.IGNORECASE)
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert len(links) >= 10 and all((ROOT / link).is_file() for link in links), links


def test_docs_sh_blocks_name_no_missing_spec():
    """Every ``specs/...``, ``sweeps/...`` or ``examples/...`` file a runnable example names exists,
    or the page writes it first (a titled block): a fast guard; the chains run them."""
    missing = []
    for page in PAGES:
        written = set()
        for line, kind, value in fence_steps(page.read_text(encoding="utf-8")):
            if kind == "file":
                written.add(value)
            if kind != "sh":
                continue
            for ref in re.findall(r"\b((?:specs|sweeps|examples)/[\w./-]+\.(?:yaml|sh|py))", value):
                if ref not in written and not (ROOT / ref).is_file():
                    missing.append(f"{page.relative_to(ROOT)}:{line}: {ref}")
    assert not missing, missing


def run_page(page: Path, repo: Path) -> tuple[list[str], list[str]]:
    env = subprocess_env()
    env.pop("OMP_NUM_THREADS", None)  # as a user runs it: nncli's own thread rule
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(repo)  # the copy's code, not the checkout's (edited while this runs)
    env["NO_COLOR"] = "1"
    name = page.relative_to(ROOT)
    failures, log, target = [], [], None
    for line, kind, value in fence_steps(page.read_text(encoding="utf-8")):
        if kind == "file":
            target = repo / value
            continue
        if kind == "text":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(value, encoding="utf-8")
            continue
        t0 = time.perf_counter()
        proc = subprocess.run(["bash", "-c", value], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        log.append(f"{name}:{line}: exit {proc.returncode} in {time.perf_counter() - t0:.1f} s: {value}")
        if proc.returncode not in allowed_codes(value):
            failures.append(f"{name}:{line}: `{value}` exited {proc.returncode}\n{proc.stderr[-1500:]}")
    return failures, log


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("git") is None, reason="needs bash and git")
@pytest.mark.parametrize(
    "page", [p for p in PAGES if sh_commands(p.read_text(encoding="utf-8"))], ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_sh_blocks_run_in_order(tmp_path, page):
    repo = tmp_path / "nncli"
    fresh_copy(repo)
    failures, log = run_page(page, repo)
    print("\n".join(log))
    assert not failures, "\n\n".join(failures)
