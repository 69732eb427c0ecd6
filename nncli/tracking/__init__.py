"""Experiment tracking: training runs and sweeps logged to an MLflow tracking store.

Nothing is logged unless asked (``nncli train --tracking``, ``--tracking-uri URI``,
``--experiment NAME`` or ``MLFLOW_TRACKING_URI``; see :func:`tracking_options`). A run is logged
by a training callback, :class:`MLflowTracking`, which any library user can pass to
``run_training(callbacks=[...])``; a sweep opens a parent run (:class:`SweepTracking`) and each
trial is a child of it; :func:`tracked_runs` reads the runs back for ``nncli compare``.

The store is MLflow's (the ``nncli[mlflow]`` extra): a local ``sqlite:///`` file needs no server,
and an ``http://`` URI is an ``mlflow server`` shared by many machines. mlflow is imported only
when a store is opened, in the process that writes it. The rooms: ``options`` (what was asked),
``store`` (the guarded background client), ``content`` (what a run logs), ``callback``,
``sweeps`` and ``listing``.
"""

from nncli.tracking.callback import TRACKING_FILE, MLflowTracking, read_tracking, trial_tracking
from nncli.tracking.listing import tracked_runs
from nncli.tracking.options import TrackingOptions, local_uri, tracking_options
from nncli.tracking.sweeps import SweepTracking

__all__ = [
    "TRACKING_FILE",
    "MLflowTracking",
    "SweepTracking",
    "TrackingOptions",
    "local_uri",
    "read_tracking",
    "tracked_runs",
    "tracking_options",
    "trial_tracking",
]


def require_mlflow() -> None:
    """Exit 2, before anything runs, when the mlflow package is missing."""
    import importlib.util

    from nncli.errors import InputError

    if importlib.util.find_spec("mlflow") is None:
        raise InputError(
            "tracking needs the mlflow package, which is not installed",
            hint="pip install 'nncli[mlflow]', or leave tracking off",
            param="tracking_uri",
        )
