"""Shared matplotlib helpers for ``--plot``: a figure without pyplot, and an atomic file write.

Figures are made with ``matplotlib.figure.Figure`` directly, not ``pyplot``: no global figure
registry, no GUI backend to pick (rendering goes through Agg), nothing left open after a run.
matplotlib is imported here, lazily, only by commands that plot.
"""

from __future__ import annotations

import io
from pathlib import Path

from nncli.errors import InputError
from nncli.files import write_atomic

FORMATS = (".png", ".svg", ".pdf")


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.2)):
    """A fresh Figure and a flat list of its axes.

    Example:
        >>> fig, axes = new_figure(ncols=2)
        >>> len(axes)
        2
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def check_plot_path(path: str | Path) -> Path:
    """Validate a ``--plot`` path before any work: known suffix, existing folder (InputError, exit 2)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"--plot: expected a file ending in {', '.join(FORMATS)}, found {path.name!r}",
                         hint="e.g. --plot grads.png")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--plot: the folder {parent} does not exist")
    return path


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically: a temporary name in the same folder, then a rename.

    The format follows the suffix (.png, .svg, .pdf). A reader never sees a half-written file,
    and a failed write leaves an existing file as it was.

    Returns:
        the path written.

    Raises:
        InputError: unknown suffix, missing folder, or the write failed (exit 2).
    """
    path = check_plot_path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lower()[1:], dpi=dpi)
    try:
        write_atomic(path, buffer.getvalue())
    except OSError as exc:
        raise InputError(f"--plot: cannot write {path}: {exc.strerror or exc}") from None
    return path
