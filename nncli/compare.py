"""``nncli compare``: finished training runs side by side.

Reads only what ``nncli train`` wrote into each run folder, never a checkpoint: ``run.yaml`` (the
resolved data and train sections), ``spec.yaml`` (the network), ``report.json`` (final metrics
with the best weights) and ``metrics.jsonl`` (one record per epoch, for the curves). What differs
between the runs is found by flattening all of that into ``path -> value`` pairs (``train.lr``,
``layers[0].Linear.out_features``) and keeping the paths whose values are not all equal, so the
table shows exactly the knobs that were turned and nothing else.

A sweep folder (``nncli sweep``'s output) may be given in place of runs: its trial runs are
compared. Runs read from an MLflow tracking store (:func:`nncli.tracking.tracked_runs`) come as
:class:`RunSummary` objects built from the same flattened settings (:func:`settings`) and line up
with folders alike. Pure Python and YAML; torch is never imported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nncli.errors import InputError
from nncli.formatting import jsonable
from nncli.runs import METRICS_FILE, SPEC_FILE, is_run_folder, read_meta, read_report
from nncli.spec.source import format_path
from nncli.status import RunStatus

# run.yaml entries that differ between any two runs without saying anything about them
_IGNORED = ("created", "resumed", "nncli", "spec.path", "spec.sha256", "spec.name", "sizes")
SPLITS = ("train", "val", "test")


@dataclass
class RunSummary:
    """One run folder, read back."""

    run_dir: str
    label: str  # short unique name for tables and legends (the folder name)
    name: str  # the spec's name
    status: str  # completed, early_stopped, nonfinite, interrupted, unfinished (no report.json)
    epochs: int | None
    best_epoch: int | None
    metrics: dict[str, dict]  # split -> {"loss", "accuracy"}
    seconds: float | None
    history: list[dict] = field(default_factory=list)  # metrics.jsonl records
    config: dict[str, Any] = field(default_factory=dict)  # flattened path -> value

    def to_json(self) -> dict:
        return {
            "run_dir": self.run_dir,
            "label": self.label,
            "name": self.name,
            "status": self.status,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "metrics": self.metrics,
            "seconds": self.seconds,
            "curves": {
                k: [r.get(k) for r in self.history]
                for k in ("epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy")
            },
        }


@dataclass
class CompareResult:
    """What ``nncli compare`` reports; ``to_json`` is its schema."""

    runs: list[RunSummary]
    differences: dict[str, list]  # path -> one value per run (None where a run lacks the path)
    same: int  # how many config entries are equal across every run
    best: dict[str, str | None]  # split metric ("val_accuracy") -> label of the best run
    plot: str | None = None

    def to_json(self) -> dict:
        return jsonable(
            {
                "runs": [r.to_json() for r in self.runs],
                "differences": self.differences,
                "same": self.same,
                "best": self.best,
                "plot": self.plot,
            }
        )


def compare_runs(paths: list[str | Path], *, tracked: Sequence[RunSummary] = ()) -> CompareResult:
    """Read run folders (or sweep folders) and line them up.

    Args:
        paths: run folders written by ``nncli train`` (or a sweep), or ``nncli sweep`` folders,
            whose trial runs are taken in their ranked order.
        tracked: runs read from a tracking store (:func:`nncli.tracking.tracked_runs`), after
            the folders.

    Returns:
        CompareResult: per-run metrics and curves, the configuration entries that differ.

    Raises:
        InputError: a path is not a run folder, or a run's files are damaged (exit 2).

    Example:
        >>> result = compare_runs(["runs/moons-a", "runs/moons-b"])
        >>> result.differences
        {'train.lr': [0.01, 0.001]}
    """
    folders: list[Path] = []
    for p in paths:
        for folder in _expand(Path(p)):
            if folder.resolve() not in [f.resolve() for f in folders]:
                folders.append(folder)
    if not folders and not tracked:
        raise InputError("expected at least one run folder")
    runs = [_read(folder) for folder in folders] + list(tracked)
    _label(runs)
    keys: list[str] = []
    for r in runs:
        keys.extend(k for k in r.config if k not in keys)
    differences = {}
    same = 0
    for k in keys:
        values = [r.config.get(k, _MISSING) for r in runs]
        if all(_equal(v, values[0]) for v in values[1:]):
            same += 1
        else:
            differences[k] = [None if v is _MISSING else v for v in values]
    best = {}
    for split in ("val", "test"):
        for metric, goal in (("accuracy", max), ("loss", min)):
            scored = [(r.metrics.get(split, {}).get(metric), r.label) for r in runs]
            scored = [(v, lab) for v, lab in scored if isinstance(v, (int, float)) and math.isfinite(v)]
            best[f"{split}_{metric}"] = goal(scored)[1] if len(scored) > 1 else None
    return CompareResult(runs, differences, same, best)


_MISSING = object()


def _equal(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _expand(path: Path) -> list[Path]:
    """A run folder -> itself; a sweep folder -> its trial runs; anything else -> InputError."""
    if not path.is_dir():
        raise InputError(
            f"no such run folder: {path}" if not path.exists() else f"expected a run folder, found a file: {path}"
        )
    if is_run_folder(path):
        return [path]
    sweep_json = path / "sweep.json"
    if sweep_json.is_file():
        try:
            doc = json.loads(sweep_json.read_text(encoding="utf-8"))
            dirs = [Path(r["run_dir"]) for t in doc["trials"] for r in t["runs"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{sweep_json}: cannot read the sweep's result: {exc}") from None
        dirs = [d if d.is_absolute() or d.is_dir() else path / d.name for d in dirs]
        found = [d for d in dirs if is_run_folder(d)]
        if found:
            return found
    found = sorted(d for d in path.iterdir() if d.is_dir() and is_run_folder(d))
    if found:
        return found
    raise InputError(
        f"{path} is not an nncli run folder: no run.yaml in it",
        hint="pass folders written by nncli train (or a sweep folder)",
    )


def _read(folder: Path) -> RunSummary:
    meta = read_meta(folder)
    spec_path = folder / SPEC_FILE
    spec = _load_yaml(spec_path) if spec_path.is_file() else None
    report = read_report(folder)
    history = _history(folder / METRICS_FILE)
    config = settings(meta, spec)
    if report is not None:
        metrics = {
            s: {
                k: report[s][k]
                for k in ("loss", "accuracy")
                if isinstance(report.get(s), dict) and report[s].get(k) is not None
            }
            for s in SPLITS
        }
        status, epochs, best_epoch = (
            report.get("status", RunStatus.COMPLETED),
            report.get("epochs"),
            report.get("best_epoch"),
        )
        seconds = report.get("duration_s")
    else:  # killed or still running: the last epoch's figures, marked as such
        last = history[-1] if history else {}
        metrics = {
            s: {k: last[f"{s}_{k}"] for k in ("loss", "accuracy") if last.get(f"{s}_{k}") is not None}
            for s in ("train", "val")
        }
        metrics["test"] = {}
        status, epochs, best_epoch, seconds = "unfinished", len(history) or None, None, None
    name = (meta.get("spec") or {}).get("name") if isinstance(meta.get("spec"), dict) else None
    return RunSummary(
        str(folder), folder.name, name or folder.name, status, epochs, best_epoch, metrics, seconds, history, config
    )


def settings(meta: dict, spec: Any) -> dict[str, Any]:
    """A run's settings as ``path -> value``: ``run.yaml`` (``meta``) and the network of its spec
    (``spec``, the parsed ``spec.yaml``), less the entries that say nothing about the run (its
    creation time, the spec's file name). What compare tells runs apart by, and what a tracking
    store records as the run's params."""
    config: dict[str, Any] = {}
    _flatten({k: v for k, v in meta.items()}, (), config)
    if isinstance(spec, dict):
        _flatten({k: v for k, v in spec.items() if k not in ("data", "train", "name", "description")}, (), config)
    return {k: v for k, v in config.items() if not any(k == i or k.startswith(i + ".") for i in _IGNORED)}


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None


def _history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise InputError(f"{path}:{i}: expected one JSON record per line") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _flatten(value: Any, path: tuple, out: dict) -> None:
    """Nested data -> ``{"train.lr": 0.01, "layers[0].Linear.out_features": 64, ...}``.

    A bare layer (``- ReLU``) and ``{ReLU: {}}`` flatten alike, so only real differences show.
    """
    if isinstance(value, dict):
        if not value and path:
            out[format_path(path)] = {}
        for k, v in value.items():
            _flatten(v, path + (str(k),), out)
    elif isinstance(value, list) and path and path[-1] in ("layers", "body", "shortcut"):
        for i, item in enumerate(value):
            if isinstance(item, str):
                out[format_path(path + (i,))] = item
            elif isinstance(item, dict) and len(item) == 1:
                ((kind, args),) = item.items()
                out[format_path(path + (i,))] = kind
                if isinstance(args, dict):
                    for k, v in args.items():
                        _flatten(v, path + (i, kind, str(k)), out)
            else:
                out[format_path(path + (i,))] = item
    else:
        out[format_path(path)] = value


def _label(runs: list[RunSummary]) -> None:
    """Folder names as labels; where two collide, their parent folder's name goes in front."""
    labels = [r.label for r in runs]
    for r in runs:
        if labels.count(r.label) > 1:
            r.label = f"{Path(r.run_dir).parent.name}/{r.label}"
    seen: dict[str, int] = {}
    for r in runs:
        n = seen.get(r.label, 0)
        seen[r.label] = n + 1
        if n:
            r.label = f"{r.label} ({n + 1})"
