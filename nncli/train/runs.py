"""Run folders: what ``nncli train`` writes and how it is read back.

A run folder holds ``run.yaml`` (the resolved ``data:``/``train:`` sections and where the run
came from), ``spec.yaml`` (the spec verbatim), ``metrics.jsonl``/``metrics.csv`` (one row per
epoch), ``checkpoints/last.pt`` and ``best.pt`` and, at the end, ``report.json`` (a
:class:`TrainResult`). Every file is written atomically (temp name, then rename), so a kill never
leaves a torn one, and checkpoints are read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from nncli import data as data_mod
from nncli.errors import InputError
from nncli.files import write_atomic
from nncli.formatting import jsonable
from nncli.train.config import TrainConfig, resolve_train_config
from nncli.train.writer import BackgroundFiles, snapshot

CHECKPOINT_FORMAT = "nncli-checkpoint"
CHECKPOINT_VERSION = 1
METRICS_COLUMNS = ["epoch", "step", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "epoch_time_s", "samples_per_s"]


@dataclass
class TrainResult:
    """What a training run produced (the same object feeds the rich summary and ``--json``)."""

    run_dir: str
    spec: str  # the spec's name
    device: str
    world_size: int
    epochs: int  # epochs completed
    planned_epochs: int
    best_epoch: int | None  # 1-based; the checkpoint the final metrics come from
    global_step: int
    samples_per_s: float  # training throughput (global samples / time in training steps)
    train: dict  # {"loss", "accuracy", "n"}: final metrics with the best weights, eval mode
    val: dict
    test: dict
    status: str  # completed, early_stopped, interrupted, nonfinite
    message: str | None = None
    history: list = field(default_factory=list)  # one record per epoch
    checkpoints: dict = field(default_factory=dict)  # {"best": path, "last": path}
    data: dict = field(default_factory=dict)  # name, sizes, classes
    config: dict = field(default_factory=dict)  # the resolved train: section
    duration_s: float = 0.0
    amp: str = "none"
    compile: bool = False
    channels_last: bool = False
    data_on_device: bool = False
    skipped_steps: int = 0
    nonfinite: dict | None = None  # {"step", "epoch", "batch", "value", "layer": {...}}
    plot: str | None = None
    total_s: float | None = None  # wall time of all sessions of the run (resumes included)
    threads: int | None = None  # torch's CPU threads (--threads, or nncli.threads' rule)

    def to_json(self) -> dict:
        return jsonable(asdict(self))


# -- reading ------------------------------------------------------------------------------------


def atomic_torch_save(obj, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue(), durable=True)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Read an nncli checkpoint with ``weights_only=True``; a clear InputError if it is not one.

    Raises:
        InputError: missing, truncated, corrupt, or not an nncli checkpoint (exit 2).
    """
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
class RunInfo:
    """A run folder read back: the spec and the resolved sections it was trained with."""

    run_dir: Path
    spec: Any  # nncli.spec.Spec
    spec_text: str
    data: data_mod.DataConfig
    train: TrainConfig
    meta: dict  # run.yaml as written


def load_run(run_dir: str | Path) -> RunInfo:
    """Read ``run.yaml`` and ``spec.yaml`` of a run folder.

    Raises:
        InputError: not a run folder, or its files are damaged (exit 2).
    """
    from nncli.spec import parse_spec

    run_dir = Path(run_dir)
    meta_path = run_dir / "run.yaml"
    if not run_dir.is_dir():
        raise InputError(f"no such run folder: {run_dir}")
    if not meta_path.is_file():
        raise InputError(f"{run_dir} is not an nncli run folder: no run.yaml in it")
    try:
        meta = yaml.safe_load(meta_path.read_text())
        spec_text = (run_dir / "spec.yaml").read_text()
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read the run folder {run_dir}: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("train"), dict) or not isinstance(meta.get("data"), dict):
        raise InputError(f"{meta_path}: expected the mapping nncli writes (data:, train:, ...)")
    origin = meta.get("spec", {}).get("path")
    base_dir = Path(origin).parent if origin and Path(origin).parent.is_dir() else run_dir
    spec = parse_spec(spec_text, file=str(run_dir / "spec.yaml"), base_dir=base_dir)
    data_cfg = data_mod.resolve_data_config(meta["data"])
    train_cfg = resolve_train_config(meta["train"])
    return RunInfo(run_dir, spec, spec_text, data_cfg, train_cfg, meta)


# -- writing ------------------------------------------------------------------------------------


def new_run_dir(root: Path, name: str) -> Path:
    """``root/<name>-<time>``, with a counter when two runs start in the same second."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "run"
    candidate = root / f"{safe}-{stamp}"
    n = 2
    while candidate.exists():
        candidate = root / f"{safe}-{stamp}-{n}"
        n += 1
    return candidate


def claim_run_folder(setup) -> None:
    """With the folder's lock held, before the first write: make sure the folder is still ours.

    A new run's folder was empty when :func:`~nncli.train.prepare.prepare` looked; another
    writer may have filled it since (it held the lock, then released it). A resumed run that
    died before its first checkpoint (``--resume`` found no ``last.pt``) starts again from
    scratch: what its dead attempt left (metrics, report, best.pt, tensorboard) is removed.

    Raises:
        InputError: the folder now holds another run (exit 2).
    """
    from nncli.train.lock import LOCK_NAME

    run_dir = Path(setup.run_dir)
    restart = setup.resume is None and setup.planned_epochs is not None
    if restart:
        import shutil

        for name in ("report.json", "metrics.jsonl", "metrics.csv", "checkpoints/best.pt"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
        return
    if setup.resume is None and any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        raise InputError(f"{run_dir} already holds a run (another process wrote it meanwhile)",
                         hint=f"continue it with --resume {run_dir}, or pick another --out")


def check_tensorboard() -> None:
    """``--tensorboard`` needs the tensorboard package: say so before anything runs (exit 2)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise InputError("--tensorboard: the tensorboard package is not installed",
                         hint="pip install tensorboard, or drop --tensorboard") from None


def _package_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("nncli")
    except Exception:
        return None


class RunFiles:
    """The files of one run folder, as the process that owns them writes them.

    Checkpoints and metrics go through one background thread, in the order submitted, so that
    pickling and fsync overlap the next training steps; :meth:`wait` blocks until they are on
    disk. Only DDP rank 0 writes: on the other ranks (``enabled=False``) every method does nothing.
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.enabled = enabled
        self.background = BackgroundFiles()
        self.tb = None
        self.tb_logged = 0  # the last epoch logged to tensorboard

    def open_tensorboard(self) -> None:
        """Also log each epoch's metrics under ``<run>/tensorboard``."""
        if self.enabled:
            from torch.utils.tensorboard import SummaryWriter  # checked by check_tensorboard()

            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            self.tb_logged = 0

    def write_start(self, setup, cfg: TrainConfig, device, world: int, resumed: bool) -> None:
        """``run.yaml`` (and ``spec.yaml`` for a new run); a resumed run appends the time it resumed."""
        if not self.enabled:
            return
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.run_dir / "run.yaml"
        if resumed:
            meta = yaml.safe_load(meta_path.read_text())
            meta.setdefault("resumed", []).append(_dt.datetime.now().isoformat(timespec="seconds"))
            meta["train"] = cfg.to_dict()
        else:
            import nncli

            meta = {
                "nncli": getattr(nncli, "__version__", None) or _package_version(),
                "created": _dt.datetime.now().isoformat(timespec="seconds"),
                "spec": {"name": setup.spec.name, "path": setup.spec_path,
                         "sha256": hashlib.sha256(setup.spec_text.encode()).hexdigest()},
                "data": setup.data_cfg.to_dict(),
                "train": cfg.to_dict(),
                "device": str(device), "world_size": world,
                "torch": str(torch.__version__),
                "sizes": setup.dataset.sizes(),
                "classes": setup.dataset.classes,
            }
            write_atomic(self.run_dir / "spec.yaml", setup.spec_text)
        write_atomic(meta_path, yaml.safe_dump(jsonable(meta), sort_keys=False))

    def write_metrics(self, history: list) -> None:
        """``metrics.jsonl`` and ``metrics.csv`` (in the background), and the last row to tensorboard."""
        if not self.enabled:
            return
        rows = list(history)
        self.background.submit(write_atomic, self.run_dir / "metrics.jsonl",
                               "".join(json.dumps(jsonable(r)) + "\n" for r in rows))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRICS_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in METRICS_COLUMNS})
        self.background.submit(write_atomic, self.run_dir / "metrics.csv", buffer.getvalue())
        if self.tb is not None and rows:
            # every epoch not logged yet: metrics are written with checkpoints, which need not
            # come every epoch (checkpoint_seconds), and each epoch is a point of the curves
            for row in rows:
                if row["epoch"] <= self.tb_logged:
                    continue
                for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "samples_per_s"):
                    if row.get(key) is not None:
                        self.tb.add_scalar(key.replace("_", "/", 1), row[key], row["epoch"])
                self.tb_logged = row["epoch"]
            self.tb.flush()

    def save_best(self, state: dict) -> None:
        """``best.pt`` in the background (the caller hands over a copy it no longer changes)."""
        if self.enabled:
            self.background.submit(atomic_torch_save, state, self.ckpt_dir / "best.pt")

    def save_last(self, state: dict) -> None:
        """``last.pt`` in the background, from a CPU copy taken now: training goes on meanwhile.
        At most one is in flight: this waits for the previous writes first."""
        if self.enabled:
            self.background.wait()
            self.background.submit(atomic_torch_save, snapshot(state), self.ckpt_dir / "last.pt")

    def write_report(self, result: TrainResult) -> None:
        if self.enabled:
            write_atomic(self.run_dir / "report.json", json.dumps(result.to_json(), indent=2) + "\n")

    def existing_checkpoints(self) -> dict:
        """``{"best": path, "last": path}`` for the checkpoint files that exist."""
        return {k: str(self.ckpt_dir / f"{k}.pt") for k in ("best", "last") if (self.ckpt_dir / f"{k}.pt").is_file()}

    def wait(self) -> None:
        """Block until every background write is on disk; re-raise a failed one."""
        self.background.wait()

    def close(self) -> None:
        """Close tensorboard, finish the background writes and stop the writer thread.

        A failed write is not raised here: a run that ended cleanly called :meth:`wait` first,
        which raised it, and otherwise the error already propagating says more.
        """
        if self.tb is not None:
            self.tb.close()
        try:
            self.background.close()
        except Exception:
            pass
