"""Run folders, read back: one way to read the files ``nncli train`` wrote.

A run folder holds ``run.yaml`` (the resolved ``data:``/``train:`` sections and where the run came
from), ``spec.yaml`` (the spec as trained), ``metrics.jsonl``/``metrics.csv``, ``checkpoints/``
(``best.pt``, ``last.pt``) and, once the run ended, ``report.json``. Every command that reads a
run (evaluate, predict, attack, export, compare, a spec's ``transfer:``, a sweep's resume, train's
resume) reads it through here; the writing side is :mod:`nncli.train.runs`.

- :func:`spec_digest`: the fingerprint ``run.yaml`` records for the spec text;
- :func:`read_meta`, :func:`read_report`: ``run.yaml`` and ``report.json``;
- :func:`checkpoint_path`, :func:`load_checkpoint`: the weights.

A run opened whole, its spec parsed, its sections resolved and its network rebuilt with a
checkpoint's weights, is :func:`nncli.train.trained.open_run` and
:func:`~nncli.train.trained.load_trained`: they need the trainer's configuration and the builder,
and this module sits below both (the builder's ``transfer:`` reads a run through it). Torch is
imported only by :func:`load_checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nncli.errors import InputError

RUN_FILE = "run.yaml"
SPEC_FILE = "spec.yaml"
REPORT_FILE = "report.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"


def spec_digest(text: str) -> str:
    """The fingerprint ``run.yaml`` records (``spec.sha256``) for a run's spec text: a sweep's rerun
    tells the same trial from a changed one by it."""
    return hashlib.sha256(text.encode()).hexdigest()


def is_run_folder(path: str | Path) -> bool:
    """True for a folder ``nncli train`` wrote (it holds ``run.yaml``)."""
    return (Path(path) / RUN_FILE).is_file()


def read_meta(run_dir: str | Path) -> dict:
    """``run.yaml`` of a run folder, checked to be the mapping nncli writes.

    Raises:
        InputError: no such folder, not a run folder, or ``run.yaml`` is damaged (exit 2).
    """
    import yaml

    run_dir = Path(run_dir)
    meta_path = run_dir / RUN_FILE
    if not run_dir.is_dir():
        raise InputError(f"no such run folder: {run_dir}")
    if not meta_path.is_file():
        raise InputError(f"{run_dir} is not an nncli run folder: no {RUN_FILE} in it")
    try:
        meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: not UTF-8 text
        raise InputError(f"cannot read the run folder {run_dir}: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("train"), dict) or not isinstance(meta.get("data"), dict):
        raise InputError(f"{meta_path}: expected the mapping nncli writes (data:, train:, ...)")
    return meta


def read_report(run_dir: str | Path) -> dict | None:
    """``report.json`` of a run folder; None when the run has none (killed, or still running).

    Raises:
        InputError: the file is there but cannot be read as the JSON object nncli writes (exit 2).
    """
    path = Path(run_dir) / REPORT_FILE
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read it: {exc}") from None
    if not isinstance(report, dict):
        raise InputError(f"{path}: expected the JSON object nncli writes, found {type(report).__name__}")
    return report


# -- the weights: checkpoints read back with torch.load(weights_only=True)

CHECKPOINT_FORMAT = "nncli-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINTS = ("best", "last")


def checkpoint_path(run_dir: str | Path, kind: str = "best") -> Path:
    """``<run>/checkpoints/<kind>.pt`` for ``kind`` best or last (the file need not exist).

    Raises:
        InputError: another kind (``param="checkpoint"``, exit 2).
    """
    if kind not in CHECKPOINTS:
        raise InputError(f"expected best or last, found {kind!r}", param="checkpoint")
    return Path(run_dir) / CHECKPOINT_DIR / f"{kind}.pt"


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read an nncli checkpoint with ``weights_only=True``; a clear InputError if it is not one.

    Raises:
        InputError: missing, truncated, corrupt, or not an nncli checkpoint (exit 2).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}", hint="a run folder keeps checkpoints/last.pt and best.pt")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip/pickle/EOF errors of a truncated or foreign file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(
            f"corrupt checkpoint {path}: {first[:200]}",
            hint="the file is truncated or not a checkpoint; the run's other files are untouched",
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "model" not in ckpt:
        raise InputError(f"{path} is not an nncli checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise InputError(
            f"{path}: checkpoint version {ckpt.get('version')} is not supported "
            f"(this nncli writes version {CHECKPOINT_VERSION})"
        )
    return ckpt
