"""Run folders, read back: one way to open what ``nncli train`` wrote.

A run folder holds ``run.yaml`` (the resolved ``data:``/``train:`` sections and where the run came
from), ``spec.yaml`` (the spec as trained), ``metrics.jsonl``/``metrics.csv``, ``checkpoints/``
(``best.pt``, ``last.pt``) and, once the run ended, ``report.json``. Every command that reads a
run (evaluate, predict, attack, export, compare, a spec's ``transfer:``, a sweep's resume) goes
through here; the writing side is :mod:`nncli.train.runs`.

- :func:`open_run`: a validated run folder with its spec and resolved sections (exit 2 otherwise);
- :func:`spec_digest`: the fingerprint ``run.yaml`` records for the spec text;
- :func:`read_meta`, :func:`read_report`: ``run.yaml`` and ``report.json`` on their own;
- :func:`load_checkpoint`, :func:`checkpoint_path`, :func:`load_trained`: the weights.

Torch is imported only by the checkpoint readers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    except (OSError, yaml.YAMLError) as exc:
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


@dataclass
class RunInfo:
    """A run folder opened: its spec and the resolved sections it was trained with."""

    run_dir: Path
    spec: Any  # nncli.spec.Spec
    spec_text: str
    data: Any  # nncli.data.DataConfig
    train: Any  # nncli.train.config.TrainConfig
    meta: dict  # run.yaml as written

    @property
    def spec_dir(self) -> Path | None:
        """The folder of the spec file the run was trained from (its Custom layers' files)."""
        origin = (self.meta.get("spec") or {}).get("path") if isinstance(self.meta.get("spec"), dict) else None
        return Path(origin).parent if origin else None

    @property
    def classes(self) -> list | None:
        return self.meta.get("classes")

    def checkpoint(self, kind: str = "best") -> Path:
        """The path of its ``best`` or ``last`` checkpoint (which need not exist)."""
        return checkpoint_path(self.run_dir, kind)

    def report(self) -> dict | None:
        return read_report(self.run_dir)


def open_run(run_dir: str | Path, *, allow_custom: bool = True) -> RunInfo:
    """Open a run folder: ``run.yaml`` and ``spec.yaml`` read, the spec parsed, its sections resolved.

    Args:
        run_dir: a folder written by ``nncli train``.
        allow_custom: False refuses a spec with Custom layers (``--no-custom``) before any is imported.

    Raises:
        InputError: not a run folder, or its files are damaged (exit 2).
        SpecError: its spec.yaml does not parse, or holds a Custom layer that is refused.
    """
    from nncli import data as data_mod
    from nncli.spec import parse_spec
    from nncli.train.config import resolve_train_config

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    try:
        spec_text = (run_dir / SPEC_FILE).read_text()
    except OSError as exc:
        raise InputError(f"cannot read the run folder {run_dir}: {exc}") from None
    origin = (meta.get("spec") or {}).get("path") if isinstance(meta.get("spec"), dict) else None
    base_dir = Path(origin).parent if origin and Path(origin).parent.is_dir() else run_dir
    spec = parse_spec(spec_text, file=str(run_dir / SPEC_FILE), base_dir=base_dir, allow_custom=allow_custom)
    return RunInfo(run_dir, spec, spec_text, data_mod.resolve_data_config(meta["data"]),
                   resolve_train_config(meta["train"]), meta)


# -- the weights: checkpoints read back with torch.load(weights_only=True), and the network rebuilt
# from the run's spec with them (evaluate, predict, attack and export all start so).

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
        raise InputError(f"corrupt checkpoint {path}: {first[:200]}",
                         hint="the file is truncated or not a checkpoint; the run's other files are untouched") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "model" not in ckpt:
        raise InputError(f"{path} is not an nncli checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"{path}: checkpoint version {ckpt.get('version')} is not supported "
                         f"(this nncli writes version {CHECKPOINT_VERSION})")
    return ckpt


@dataclass
class TrainedModel:
    """A run's network with one checkpoint's weights loaded, in eval mode."""

    path: Path  # the checkpoint file
    checkpoint: dict  # as :func:`load_checkpoint` read it (normalisation, epoch, ...)
    built: Any  # nncli.build.Built

    @property
    def model(self):
        return self.built.model

    @property
    def normalization(self) -> dict:
        """``{"mean": tensor, "std": tensor}`` of the run's training data, or ``{}``."""
        return self.checkpoint.get("normalization") or {}


def load_trained(run, kind: str = "best", device="cpu") -> TrainedModel:
    """Rebuild ``run``'s network (an opened :class:`~nncli.runs.RunInfo`) on ``device`` and load
    its ``kind`` checkpoint; the model is in eval mode.

    The checkpoint holds every weight, so a ``transfer:`` source run need not exist any more.

    Raises:
        InputError: a bad ``kind``, a missing or damaged checkpoint, or one that does not fit the
            run's spec (exit 2).
    """
    from nncli.build import build_model

    path = checkpoint_path(run.run_dir, kind)
    ckpt = load_checkpoint(path)
    built = build_model(run.spec, device=device, seed=run.train.seed, transfer_weights=False)
    try:
        built.model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise InputError(f"{path} does not fit the run's spec: {str(exc).splitlines()[0][:300]}") from None
    built.model.eval()
    return TrainedModel(path, ckpt, built)
