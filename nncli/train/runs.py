"""Run folders: what ``nncli train`` writes (:mod:`nncli.runs` reads them back).

A run folder holds ``run.yaml`` (the resolved ``data:``/``train:`` sections and where the run
came from), ``spec.yaml`` (the spec verbatim), ``metrics.jsonl``/``metrics.csv`` (one row per
epoch), ``checkpoints/last.pt`` and ``best.pt`` and, at the end, ``report.json`` (a
:class:`TrainResult`). Every file is written atomically (temp name, then rename), so a kill never
leaves a torn one, and checkpoints are read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml

from nncli.errors import InputError
from nncli.files import write_atomic
from nncli.formatting import jsonable
from nncli.runs import CHECKPOINT_DIR, METRICS_FILE, REPORT_FILE, RUN_FILE, SPEC_FILE, read_report, spec_digest
from nncli.train.config import TrainConfig
from nncli.train.writer import BackgroundFiles, snapshot

METRICS_COLUMNS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "epoch_time_s",
    "samples_per_s",
]


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
    tracking: dict | None = None  # the MLflow run it was logged to, and how that went (nncli.tracking)

    def to_json(self) -> dict:
        return jsonable(asdict(self))


# -- reading ------------------------------------------------------------------------------------


def atomic_torch_save(obj, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue(), durable=True)


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

        for name in (REPORT_FILE, METRICS_FILE, "metrics.csv", f"{CHECKPOINT_DIR}/best.pt"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
        return
    if setup.resume is None and any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        raise InputError(
            f"{run_dir} already holds a run (another process wrote it meanwhile)",
            hint=f"resume {run_dir} to continue it, or pick another folder",
        )


def check_tensorboard() -> None:
    """``--tensorboard`` needs the tensorboard package: say so before anything runs (exit 2)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise InputError(
            "the tensorboard package is not installed",
            param="tensorboard",
            hint="pip install tensorboard, or train without TensorBoard logging",
        ) from None


def _package_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("nncli")
    except Exception:
        return None


def _normalization_note(dataset) -> dict:
    """How the inputs were standardised: ``{"by": "channel" | "feature" | "none", ...}``."""
    from nncli.data.dataset import describe_normalization

    if getattr(dataset, "mean", None) is None:
        return {"by": "none"}
    return getattr(dataset, "normalization", None) or describe_normalization(tuple(dataset.x_train.shape[1:]))


def _custom_dir(spec) -> dict:
    """``{"custom_dir": folder}`` where the spec's Custom file targets resolve against another
    folder than the spec file's own (a sweep trial's); else nothing."""
    from nncli.spec.model import CustomSpec

    own = Path(spec.path).resolve().parent if spec.path is not None else None
    for layer in spec.walk():
        if isinstance(layer, CustomSpec) and layer.base_dir is not None and Path(layer.base_dir).resolve() != own:
            return {"custom_dir": str(Path(layer.base_dir).resolve())}
    return {}


class RunFiles:
    """The files of one run folder, as the process that owns them writes them.

    Checkpoints and metrics go through one background thread, in the order submitted, so that
    pickling and fsync overlap the next training steps; :meth:`wait` blocks until they are on
    disk. Only DDP rank 0 writes: on the other ranks (``enabled=False``) every method does nothing.
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / CHECKPOINT_DIR
        self.enabled = enabled
        self.background = BackgroundFiles()

    def write_start(self, setup, cfg: TrainConfig, device, world: int, resumed: bool) -> None:
        """``run.yaml`` (and ``spec.yaml`` for a new run); a resumed run appends the time it resumed."""
        if not self.enabled:
            return
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.run_dir / RUN_FILE
        if resumed:
            meta = yaml.safe_load(meta_path.read_text())
            meta.setdefault("resumed", []).append(_dt.datetime.now().isoformat(timespec="seconds"))
            meta["train"] = cfg.to_dict()
        else:
            import nncli

            meta = {
                "nncli": getattr(nncli, "__version__", None) or _package_version(),
                "created": _dt.datetime.now().isoformat(timespec="seconds"),
                "spec": {
                    "name": setup.spec.name,
                    "path": setup.spec_path,
                    "sha256": spec_digest(setup.spec_text),
                    **_custom_dir(setup.spec),
                },
                "data": setup.data_cfg.to_dict(),
                "train": cfg.to_dict(),
                "device": str(device),
                "world_size": world,
                "torch": str(torch.__version__),
                "sizes": setup.dataset.sizes(),
                "classes": setup.dataset.classes,
                "normalization": _normalization_note(setup.dataset),
            }
            write_atomic(self.run_dir / SPEC_FILE, setup.spec_text)
        write_atomic(meta_path, yaml.safe_dump(jsonable(meta), sort_keys=False))

    def write_metrics(self, history: list) -> None:
        """``metrics.jsonl`` and ``metrics.csv``, in the background."""
        if not self.enabled:
            return
        rows = list(history)
        self.background.submit(
            write_atomic, self.run_dir / METRICS_FILE, "".join(json.dumps(jsonable(r)) + "\n" for r in rows)
        )
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRICS_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in METRICS_COLUMNS})
        self.background.submit(write_atomic, self.run_dir / "metrics.csv", buffer.getvalue())

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
            write_atomic(self.run_dir / REPORT_FILE, json.dumps(result.to_json(), indent=2) + "\n")

    def existing_checkpoints(self) -> dict:
        """``{"best": path, "last": path}`` for the checkpoint files that exist."""
        return {k: str(self.ckpt_dir / f"{k}.pt") for k in ("best", "last") if (self.ckpt_dir / f"{k}.pt").is_file()}

    def wait(self) -> None:
        """Block until every background write is on disk; re-raise a failed one."""
        self.background.wait()

    def close(self) -> None:
        """Finish the background writes and stop the writer thread.

        A failed write is not raised here: a run that ended cleanly called :meth:`wait` first,
        which raised it, and otherwise the error already propagating says more.
        """
        try:
            self.background.close()
        except Exception:
            pass


# -- the plot a run was drawn to (``train --plot``), remembered so that a resume redraws it -------


def remembered_plot(run_dir: str | Path | None) -> Path | None:
    """The plot a run was last drawn to, if its ``report.json`` names one (``plot``)."""
    if run_dir is None:
        return None
    try:
        plot = (read_report(run_dir) or {}).get("plot")
    except InputError:  # a damaged report just forgets it; the resume itself says what is wrong
        return None
    return Path(plot) if isinstance(plot, str) and plot else None


def remember_plot(run_dir: str | Path, plot: str | Path) -> None:
    """Record ``plot`` (absolute) as the ``plot`` entry of the run's ``report.json``, so that
    a resume (usually typed without ``--plot``) redraws the same file over the whole history.
    Best effort: a damaged report just forgets it."""
    path = Path(run_dir) / REPORT_FILE
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(report, dict):
            return
        report["plot"] = str(Path(plot).resolve())
        write_atomic(path, json.dumps(report, indent=2) + "\n")
    except (OSError, ValueError):
        pass
