"""A finished run opened again: its spec parsed, its sections resolved (:func:`open_run`), and its
network rebuilt with one checkpoint's weights (:func:`load_trained`); evaluate, predict, attack,
export and train's resume start so. The files themselves are read by :mod:`nncli.runs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncli.errors import InputError
from nncli.runs import SPEC_FILE, checkpoint_path, load_checkpoint, read_meta, read_report


def custom_dir(meta: dict) -> Path | None:
    """From ``run.yaml``: the folder the spec's Custom file targets resolve against."""
    spec = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    folder = spec.get("custom_dir") or (str(Path(spec["path"]).parent) if spec.get("path") else None)
    return Path(folder) if isinstance(folder, str) else None


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
        """The folder its Custom layers' files are relative to: the spec file's own, or the one
        ``run.yaml`` records where they differ (a sweep trial's spec lives in the sweep folder)."""
        return custom_dir(self.meta)

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
    base_dir = custom_dir(meta)
    base_dir = base_dir if base_dir is not None and base_dir.is_dir() else run_dir
    spec = parse_spec(spec_text, file=str(run_dir / SPEC_FILE), base_dir=base_dir, allow_custom=allow_custom)
    return RunInfo(
        run_dir, spec, spec_text, data_mod.resolve_data_config(meta["data"]), resolve_train_config(meta["train"]), meta
    )


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

    def raw_input_model(self, classes: list | None = None):
        """The network behind the run's input normalisation (a
        :class:`~nncli.modules.TrainedNetwork` in eval mode): it takes inputs as the data files
        hold them, as ``nncli.load(run_dir)`` and every export give it."""
        from nncli.modules.preprocess import trained_network

        names = [i.name for i in self.built.spec.input_specs]
        wrapped = trained_network(self.built.model, self.normalization, classes, tuple(self.built.input_shape), names)
        return wrapped.eval()


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
