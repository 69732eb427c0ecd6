""":func:`tracked_runs`: the runs of a tracking store read back as ``nncli compare`` reads folders.

Each MLflow run nncli logged becomes a :class:`~nncli.compare.RunSummary`: its params are the
flattened settings compare tells runs apart by, its final metrics the train/val/test columns, its
epoch metrics the curves. A sweep's parent run is left out (its trials are listed).
"""

from __future__ import annotations

from nncli.compare import RunSummary
from nncli.errors import InputError
from nncli.tracking import content
from nncli.tracking.store import describe, open_client

MAX_RUNS = 1000
CURVES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


def tracked_runs(uri: str, experiment: str | None = None, *, curves: bool = True) -> list[RunSummary]:
    """The runs nncli logged to the store at ``uri`` (in ``experiment``, else every experiment),
    oldest first.

    Args:
        curves: also read each run's epoch metrics (one call per metric and run).

    Raises:
        InputError: the store cannot be read, the experiment does not exist, or it holds no
            nncli run (exit 2).
    """
    try:
        client = open_client(uri)
        experiments = _experiments(client, uri, experiment)
        found = client.search_runs(
            [e.experiment_id for e in experiments],
            filter_string="tags.`nncli.run_dir` != ''",
            max_results=MAX_RUNS,
            order_by=["attributes.start_time ASC"],
        )
        runs = [_summary(client, run, curves) for run in found]
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read the tracking store at {uri}: {describe(exc)}", param="tracking_uri") from None
    if not runs:
        where = f"experiment {experiment!r}" if experiment else "any experiment"
        raise InputError(f"no nncli run in {where} of the tracking store at {uri}", param="tracking_uri")
    return runs


def _experiments(client, uri: str, name: str | None) -> list:
    if name is None:
        return client.search_experiments()
    found = client.get_experiment_by_name(name)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise InputError(f"no experiment {name!r} in the tracking store at {uri} (it has: {names})", param="experiment")
    return [found]


def _summary(client, run, curves: bool) -> RunSummary:
    tags, data = run.data.tags, run.data.metrics
    metrics = {"train": {}, "val": {}, "test": {}}
    for split in metrics:
        prefix = "test" if split == "test" else f"best_{split}"
        for key in ("loss", "accuracy"):
            if f"{prefix}_{key}" in data:
                metrics[split][key] = data[f"{prefix}_{key}"]
    config = {content.setting_of(k): content.value_of(v) for k, v in sorted(run.data.params.items())}
    return RunSummary(
        run_dir=tags.get("nncli.run_dir") or run.info.artifact_uri,
        label=run.info.run_name or run.info.run_id,
        name=tags.get("nncli.spec") or run.info.run_name or run.info.run_id,
        status=tags.get("nncli.status") or run.info.status.lower(),
        epochs=_int(tags.get("nncli.epochs")),
        best_epoch=_int(tags.get("nncli.best_epoch")),
        metrics=metrics,
        seconds=data.get("duration_s"),
        history=_history(client, run.info.run_id) if curves else [],
        config=config,
    )


def _history(client, run_id: str) -> list[dict]:
    """The epoch metrics as ``metrics.jsonl``-like rows, one per epoch."""
    rows: dict[int, dict] = {}
    for key in CURVES:
        for m in client.get_metric_history(run_id, key):
            rows.setdefault(m.step, {"epoch": m.step})[key] = m.value
    return [rows[e] for e in sorted(rows)]


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
