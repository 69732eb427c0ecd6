"""The tracking options of ``nncli train``, ``sweep`` and ``compare`` (``--tracking``,
``--tracking-uri``, ``--experiment``), and what train and sweep make of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

TRACKING_URI_HELP = (
    "Log to this MLflow tracking store (sqlite:///file.db, http://host:5000, ...); default: "
    "MLFLOW_TRACKING_URI, else sqlite:///mlflow.db beside the runs. Turns tracking on (nncli[mlflow])."
)
EXPERIMENT_HELP = (
    "MLflow experiment to log to (default: MLFLOW_EXPERIMENT_NAME, else the spec's name). Turns tracking on."
)
TRACKING_HELP = (
    "Log to MLflow (the store of --tracking-uri or MLFLOW_TRACKING_URI, else a local sqlite:///mlflow.db "
    "beside the runs); --no-tracking: never, whatever the environment says."
)


def tracking_uri_option(help_text: str = TRACKING_URI_HELP) -> Any:
    return typer.Option(None, "--tracking-uri", metavar="URI", help=help_text)


def experiment_option(help_text: str = EXPERIMENT_HELP) -> Any:
    return typer.Option(None, "--experiment", metavar="NAME", help=help_text)


def tracking_option() -> Any:
    return typer.Option(None, "--tracking/--no-tracking", help=TRACKING_HELP)


def train_tracking(uri: str | None, experiment: str | None, enabled: bool | None, out, resume):
    """The :class:`~nncli.tracking.TrackingOptions` of a train command, or None.

    A resumed run that was tracked goes on logging to the same store and MLflow run unless
    ``--no-tracking`` (as ``--plot`` is remembered). The local store goes beside the run folder.
    """
    from nncli.tracking import TrackingOptions, read_tracking, require_mlflow, tracking_options

    folder = resume if resume is not None else out
    beside = Path(folder).resolve().parent if folder is not None else Path("runs")
    options = tracking_options(uri, experiment, enabled, beside=beside)
    if options is None and resume is not None and enabled is not False:
        previous = read_tracking(resume)
        if previous is not None:
            options = TrackingOptions(previous["uri"], previous.get("experiment"))
    if options is not None:
        require_mlflow()
        from nncli.tracking.store import warm_up

        warm_up(options.uri)  # mlflow's import and the store's opening overlap the data's loading
    return options


def tracking_callbacks(options) -> list:
    """The MLflow callback for ``options`` (none for None)."""
    if options is None:
        return []
    from nncli.tracking import MLflowTracking

    return [MLflowTracking(options)]


def sweep_tracking(uri: str | None, experiment: str | None, enabled: bool | None, out):
    """The :class:`~nncli.tracking.TrackingOptions` of a sweep command, or None; the local store
    goes beside the sweep folder (default ``runs/``)."""
    from nncli.tracking import require_mlflow, tracking_options

    beside = Path(out).resolve().parent if out is not None else Path("runs")
    options = tracking_options(uri, experiment, enabled, beside=beside)
    if options is not None:
        require_mlflow()
    return options


def compared_tracking(uri: str | None, experiment: str | None) -> list:
    """``compare --tracking-uri URI [--experiment NAME]``: the store's runs (none without a URI;
    ``--experiment`` alone reads the store of MLFLOW_TRACKING_URI)."""
    import os

    from nncli.errors import InputError

    uri = uri or (os.environ.get("MLFLOW_TRACKING_URI") if experiment is not None else None)
    if uri is None:
        if experiment is not None:
            raise InputError("--experiment: name the store with --tracking-uri (or MLFLOW_TRACKING_URI)")
        return []
    from nncli.tracking import require_mlflow, tracked_runs

    require_mlflow()
    return tracked_runs(uri, experiment)
