"""What an earlier invocation left in a trial's run folder: a finished run (read back, not run
again), a run killed mid-way (continued from its last checkpoint), or a stale folder (another
spec, or no checkpoint yet: removed and trained afresh). The trial spec's digest, which
``run.yaml`` records (:func:`nncli.runs.spec_digest`), tells the same trial from a changed one.
"""

from __future__ import annotations

from pathlib import Path

from nncli.errors import InputError
from nncli.runs import (
    CHECKPOINT_DIR,
    METRICS_FILE,
    REPORT_FILE,
    RUN_FILE,
    SPEC_FILE,
    checkpoint_path,
    read_meta,
    read_report,
    spec_digest,
)
from nncli.status import FINISHED, RunStatus
from nncli.sweep.results import TRIAL_FILE

_DONE = FINISHED + (
    RunStatus.NONFINITE,
    RunStatus.PRUNED,
)  # statuses that end a trial for good: a rerun does not repeat them


def _run_state(run_dir: Path, text: str, *, clear: bool = True) -> dict:
    """What the run folder says: finished (with its report), resumable, or to start afresh
    (a stale folder is then removed, unless ``clear`` is false: a dry run changes nothing)."""
    meta = _or_none(read_meta, run_dir)  # a damaged folder is stale, not an error
    same = (
        isinstance(meta, dict)
        and isinstance(meta.get("spec"), dict)
        and meta["spec"].get("sha256") == spec_digest(text)
    )
    if same:
        report = _or_none(read_report, run_dir)
        if isinstance(report, dict) and report.get("status") in _DONE:
            return {"finished": True, "report": report}
    if same and checkpoint_path(run_dir, "last").is_file():
        return {"finished": False, "resume": True}  # killed mid-run: continue from its last checkpoint
    if run_dir.exists() and clear:
        _clear_run_dir(run_dir)
    return {"finished": False, "resume": False}


def _or_none(read, run_dir: Path):
    try:
        return read(run_dir)
    except InputError:
        return None


def _clear_run_dir(run_dir: Path) -> None:
    """Remove a stale trial folder (another spec, or a run killed before its first checkpoint).

    Only folders that look like nncli run folders are removed: this is the sweep's own output.
    """
    import shutil

    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: expected a trial run folder, found a file")
    names = {p.name for p in run_dir.iterdir()}
    if (
        names
        - {RUN_FILE, SPEC_FILE, CHECKPOINT_DIR, METRICS_FILE, "metrics.csv", REPORT_FILE, TRIAL_FILE, "tensorboard"}
        - {n for n in names if n.startswith(".")}
    ):
        raise InputError(
            f"{run_dir} holds files nncli did not write; refusing to replace it",
            hint="move it away, or give the sweep another folder",
        )
    shutil.rmtree(run_dir)
