"""Report objects -> rich tables, JSON or figures. The only package that formats for the terminal.

Every command's result object has ``to_json()``; its human view is ``show(console, result)`` in
the module named for the tool (``render.params.show``, ``render.probe.show``, ...), so the table
and ``--json`` are fed by the same numbers. :mod:`nncli.render.console` holds what they share
(the consoles, :func:`emit`, :func:`print_json`, :func:`error`, tables, escaping) and is
re-exported here; :mod:`nncli.render.plots` holds every ``--plot`` figure.

A renderer names result types for annotations only (under ``TYPE_CHECKING``) and never runs a
tool's logic. Importing this package loads rich, not torch or matplotlib.
"""

from __future__ import annotations

from nncli.render import (
    check,
    compare,
    config,
    diagram,
    evaluate,
    export,  # noqa: E402  (nncli export)
    gradcheck,
    params,
    plots,
    probe,
    sweep,
    train,
)
from nncli.render.console import emit, error, escape, findings, pct, print_json, stderr_console, stdout_console, table

__all__ = [
    "check",
    "compare",
    "config",
    "diagram",
    "evaluate",
    "gradcheck",
    "params",
    "plots",
    "probe",
    "sweep",
    "train",
    "emit",
    "error",
    "escape",
    "findings",
    "pct",
    "print_json",
    "stderr_console",
    "stdout_console",
    "table",
]
