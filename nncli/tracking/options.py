"""Whether a run is tracked, and where: :class:`TrackingOptions` and :func:`tracking_options`.

Nothing is logged unless asked. Tracking is on when a store is named (``--tracking-uri``, or
MLflow's own ``MLFLOW_TRACKING_URI`` environment variable), when an experiment is named
(``--experiment``), or with ``--tracking``; ``--no-tracking`` turns it off whatever the
environment says. Without a URI the store is a local SQLite file, ``mlflow.db``, beside the runs
(in the folder that holds the run or sweep folder), which needs no server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from nncli.errors import InputError

ENV_URI = "MLFLOW_TRACKING_URI"
ENV_EXPERIMENT = "MLFLOW_EXPERIMENT_NAME"
LOCAL_DB = "mlflow.db"
# Where a local SQLite store keeps run artifacts, beside the database file (MLflow's own default
# is ./mlruns in whatever folder the process started in).
LOCAL_ARTIFACTS = "mlartifacts"


@dataclass(frozen=True)
class TrackingOptions:
    """Where runs are logged: ``uri`` (any MLflow tracking URI: ``sqlite:///path.db``,
    ``http://host:5000``, ``databricks``, ...) and ``experiment`` (None: the spec's name, or the
    sweep's)."""

    uri: str
    experiment: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def local_uri(folder: str | Path) -> str:
    """The local store beside the runs: ``sqlite:///<folder>/mlflow.db`` (absolute, so that a
    sweep's worker processes and Ray trials, started elsewhere, find the same file)."""
    return "sqlite:///" + str((Path(folder) / LOCAL_DB).resolve())


def tracking_options(
    uri: str | None = None,
    experiment: str | None = None,
    enabled: bool | None = None,
    *,
    beside: str | Path = "runs",
    environ: Mapping[str, str] | None = None,
) -> TrackingOptions | None:
    """What the command line asked for, as :class:`TrackingOptions`; None when nothing is tracked.

    Args:
        uri: ``--tracking-uri``; else ``MLFLOW_TRACKING_URI``; else the local store in ``beside``.
        experiment: ``--experiment``; else ``MLFLOW_EXPERIMENT_NAME``; else None (the spec's name).
        enabled: ``--tracking`` (True) / ``--no-tracking`` (False); None: on when a URI or an
            experiment was named (flag or environment).
        beside: the folder that holds the runs (where the local store goes).

    Raises:
        InputError: an empty URI or experiment name (exit 2).
    """
    environ = os.environ if environ is None else environ
    if enabled is False:
        return None
    for name, value in (("tracking_uri", uri), ("experiment", experiment)):
        if value is not None and not value.strip():
            raise InputError(f"{name}: expected a non-empty value", param=name)
    uri = uri or environ.get(ENV_URI) or None
    experiment = experiment or environ.get(ENV_EXPERIMENT) or None
    if uri is None and experiment is None and not enabled:
        return None
    return TrackingOptions(uri or local_uri(beside), experiment)


def local_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for any other store)."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))
