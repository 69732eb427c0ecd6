"""``train --plot`` remembered by the run, so ``train --resume`` redraws the same figure.

A run started with ``--plot curves.png`` and interrupted left a figure of the part it trained;
its resume (usually typed without ``--plot``) redraws that file over the whole history. The path
is the ``plot`` entry of the run's ``report.json`` (the ``--json`` summary, which has that key):
written there, absolute, once the figure is drawn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional



def remembered_plot(run_dir: Optional[Path]) -> Optional[Path]:
    """The plot a run was last drawn to, if its report names one."""
    if run_dir is None:
        return None
    try:
        plot = json.loads((Path(run_dir) / "report.json").read_text(encoding="utf-8")).get("plot")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(plot) if isinstance(plot, str) and plot else None


def remember_plot(run_dir: str, plot: Path) -> None:
    """Record ``plot`` in the run's ``report.json`` (best effort: a damaged report just forgets it)."""
    from nncli.files import write_atomic  # here, not at start-up: `secrets` costs ~9 ms of --help

    path = Path(run_dir) / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(report, dict):
            return
        report["plot"] = str(Path(plot).resolve())
        write_atomic(path, json.dumps(report, indent=2) + "\n")
    except (OSError, ValueError):
        pass
