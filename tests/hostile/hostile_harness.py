"""Run hostile cases against the real ``nncli`` executable, each in its own folder, under limits.

A :class:`Case` is one command line with the files it needs; :func:`run_case` writes those files
into a fresh folder, starts ``nncli`` there as a subprocess in a session of its own and records
what a user would see: the exit code, whether stderr holds a Python traceback, and, under
``--json``, whether stdout is exactly one JSON document. The limits are set in the child before it
runs (address space, processes, CPU seconds), so a resource bomb that escapes nncli's own limits
fails the case instead of the machine; a case still running after :data:`HANG_SECONDS` is killed
with its process group and counted as a hang.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
if str(TESTS) not in sys.path:  # spec_texts, shared with the other tests
    sys.path.insert(0, str(TESTS))

# A case still running after this many seconds is a hang, whatever it was doing.
HANG_SECONDS = 60
# Virtual memory of one case: torch's import reserves about a GiB; a model that needs more
# than this was not bounded before work started.
ADDRESS_SPACE_BYTES = 4 << 30
# CPU seconds: above the wall timeout, so that the wall clock decides a hang.
CPU_SECONDS = 120
# Processes and threads started by a case, on top of what the user already runs. Root is not
# held to this limit by the kernel; the thread caps in the environment still apply.
EXTRA_PROCESSES = 512

TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True)
class Case:
    """One hostile command line.

    ``argv`` follows ``nncli``; ``{tmp}`` in a word is replaced by the case's folder. ``files``
    maps a path inside that folder to its text (or bytes). ``setup`` runs after the files are
    written (a trained run copied in, a symlink, a folder where a file belongs). ``expect`` is the
    set of exit codes that are right for this input. ``signal_after`` sends SIGTERM that many
    seconds after the start.
    """

    id: str
    category: str
    argv: tuple[str, ...]
    expect: frozenset[int] = frozenset({1, 2})
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    fast: bool = False
    signal_after: float | None = None

    @property
    def json(self) -> bool:
        return "--json" in self.argv


@dataclass(frozen=True)
class Outcome:
    """What one case did."""

    case: Case
    code: int | None  # None: killed as a hang
    seconds: float
    traceback: bool
    json_valid: bool | None  # None: not a --json case
    stdout: str
    stderr: str

    @property
    def hang(self) -> bool:
        return self.code is None

    @property
    def ok(self) -> bool:
        """Exit code expected, no hang, no traceback, and one JSON document where asked."""
        return not self.hang and self.code in self.case.expect and not self.traceback and self.json_valid is not False

    def describe(self) -> str:
        lines = self.stderr.strip().splitlines() or [""]
        tail = next((line for line in lines if "error" in line.lower()), lines[-1])[:300]
        return (
            f"{self.case.id} [{self.case.category}] nncli {' '.join(w[:80] for w in self.case.argv)}: exit {self.code} "
            f"(expected {sorted(self.case.expect)}), traceback={self.traceback}, json={self.json_valid}; "
            f"{tail}"
        )


def user_processes() -> int:
    """Threads and processes this user runs now (what RLIMIT_NPROC counts)."""
    uid = os.getuid()
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(entry / "task"))
            except OSError:
                continue
    return count


# The limits are set by a small interpreter that then execs nncli: a preexec_fn is not safe in a
# process with threads (run_all's pool), where the forked child may wait on a lock forever.
_LIMITS_SHIM = (
    "import os, resource, sys\n"
    "a, c, n = (int(v) for v in sys.argv[1:4])\n"
    "resource.setrlimit(resource.RLIMIT_AS, (a, a))\n"
    "resource.setrlimit(resource.RLIMIT_CPU, (c, c))\n"
    "resource.setrlimit(resource.RLIMIT_NPROC, (n, n))\n"
    "os.execvp(sys.argv[4], sys.argv[4:])\n"
)


def limited(argv: list[str], nproc: int) -> list[str]:
    """``argv`` run under the memory, CPU-time and process limits."""
    return [sys.executable, "-c", _LIMITS_SHIM, str(ADDRESS_SPACE_BYTES), str(CPU_SECONDS), str(nproc), *argv]


def case_env(extra: dict[str, str]) -> dict[str, str]:
    """The user's environment, one thread everywhere, none of nncli's limit or trust overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNCLI_")}
    env.update(
        {
            "NNCLI_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "COLUMNS": "400",
            "NO_COLOR": "1",
            "PYTHONPATH": str(ROOT),
            "MPLBACKEND": "Agg",
        }
    )
    env.update(extra)
    return env


def nncli_command() -> list[str]:
    """The ``nncli`` console script beside this interpreter (``python -m nncli`` without one)."""
    script = Path(sys.executable).parent / "nncli"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "nncli"]


def prepare(case: Case, folder: Path) -> list[str]:
    """Write the case's files into ``folder``, run its set-up, return the full command line."""
    folder.mkdir(parents=True, exist_ok=True)
    for rel, content in case.files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    if case.setup is not None:
        case.setup(folder)
    return nncli_command() + [word.replace("{tmp}", str(folder)) for word in case.argv]


def json_document(stdout: str) -> bool:
    """True when stdout is exactly one JSON document (whitespace around it allowed)."""
    if not stdout.strip():
        return False
    try:
        json.loads(stdout)
    except ValueError:
        return False
    return True


def run_case(case: Case, folder: Path, nproc: int | None = None) -> Outcome:
    """Run one case in ``folder`` and record its outcome (the folder is left for inspection)."""
    argv = prepare(case, folder)
    limit = nproc if nproc is not None else user_processes() + EXTRA_PROCESSES
    start = time.monotonic()
    proc = subprocess.Popen(
        limited(argv, limit),
        cwd=folder,
        env=case_env(case.env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    code, out, err = _wait(proc, case.signal_after)
    seconds = time.monotonic() - start
    json_valid = json_document(out) if case.json else None
    return Outcome(case, code, seconds, TRACEBACK in err, json_valid, out, err)


def _wait(proc: subprocess.Popen, signal_after: float | None) -> tuple[int | None, str, str]:
    """Wait for ``proc`` (SIGTERM after ``signal_after`` s); kill its group after the hang limit."""
    try:
        if signal_after is not None:
            try:
                proc.wait(timeout=signal_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=HANG_SECONDS)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return None, out, err


def run_all(cases: list[Case], root: Path, workers: int = 2) -> list[Outcome]:
    """Run ``cases`` (``workers`` at a time), each in ``root/<id>``; outcomes in the cases' order."""
    nproc = user_processes() + EXTRA_PROCESSES

    def one(case: Case) -> Outcome:
        folder = root / case.id
        if folder.exists():
            shutil.rmtree(folder)
        return run_case(case, folder, nproc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, cases))


def figures(outcomes: list[Outcome]) -> dict:
    """Per category and in total: cases, exit 3s, hangs, invalid JSON, unexpected outcomes."""
    table: dict[str, dict[str, int]] = {}
    for o in outcomes:
        row = table.setdefault(
            o.case.category, {"cases": 0, "exit_3": 0, "hangs": 0, "invalid_json": 0, "tracebacks": 0, "unexpected": 0}
        )
        row["cases"] += 1
        row["exit_3"] += o.code == 3
        row["hangs"] += o.hang
        row["invalid_json"] += o.json_valid is False
        row["tracebacks"] += o.traceback
        row["unexpected"] += not o.ok
    total = {key: sum(row[key] for row in table.values()) for key in next(iter(table.values()), {})}
    return {"categories": table, "total": total}
