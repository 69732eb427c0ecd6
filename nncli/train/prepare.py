"""Everything a run needs before it starts: the spec, the resolved sections, the data with its
targets checked against the loss, and the run folder (a new one, or the run being resumed).

Bad input of any kind is raised here, before a run folder exists or an old one is modified.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from nncli import data as data_mod
from nncli.data.multi import load_spec_dataset, several_inputs
from nncli.errors import InputError
from nncli.runs import RUN_FILE, checkpoint_path, load_checkpoint, read_report
from nncli.train.config import TrainConfig, resolve_train_config, section_fail, split_overrides
from nncli.train.lock import LOCK_NAME, check_unlocked
from nncli.train.runs import new_run_dir
from nncli.train.task import prepare_targets
from nncli.train.trained import open_run


@dataclass
class Setup:
    """Everything a run needs, resolved and validated before any file is touched."""

    spec: Any
    spec_text: str
    spec_path: str | None
    data_cfg: data_mod.DataConfig
    cfg: TrainConfig
    dataset: data_mod.Dataset
    output_shape: tuple
    run_dir: Path
    resume: dict | None  # the loaded last checkpoint when resuming
    best_state: dict | None  # best.pt when resuming
    planned_epochs: int | None = None  # the epochs the resumed run was started with
    previous_s: float = 0.0  # wall time of the resumed run's earlier sessions
    built: Any = None  # the spec inferred on the meta device (shapes, counts): built once per run


def _load_spec_arg(spec):
    from nncli.spec import Spec, load_spec

    if spec is None or isinstance(spec, Spec):
        return spec
    return load_spec(Path(spec))


def _spec_text(spec) -> str:
    """The spec as YAML text for the run folder: the file verbatim (comments kept) when there is one."""
    if spec.path is not None and Path(spec.path).is_file():
        return Path(spec.path).read_text(encoding="utf-8-sig")
    if spec.document is not None and spec.document.data is not None:
        return yaml.safe_dump(spec.document.data, sort_keys=False)
    raise InputError(
        "the spec has no source text to store in the run folder",
        hint="load the spec with nncli.spec.load_spec(path) or parse_spec(text)",
    )


def prepare(
    spec,
    overrides=None,
    out_dir=None,
    *,
    resume=None,
    world_size: int = 1,
    runs_root: str | Path = "runs",
    writer: bool = True,
) -> Setup:
    """Resolve and validate everything a run needs, touching no file.

    Args are those of :func:`nncli.train.run_training`; ``world_size`` is the number of DDP
    processes the training set must be split across. ``writer`` False (a DDP node other than
    node 0, which never writes the run folder): the folder is neither checked for a lock nor for
    being new, since node 0 may already hold it and be writing it.
    """
    from nncli.build import infer

    spec = _load_spec_arg(spec)
    data_over, train_over = split_overrides(overrides)
    data_over = resolve_data_source(data_over)
    if resume is not None:
        part = _resumed_part(spec, resume, data_over, train_over, writer)
    else:
        part = _new_part(spec, data_over, train_over, out_dir if writer else None, runs_root)
    spec, data_cfg, cfg, run_dir = part["spec"], part["data_cfg"], part["cfg"], part["run_dir"]
    built = infer(spec)  # meta device: checks the spec and gives the output shape for free
    check_train_outputs(spec, cfg, built)
    dataset = _checked_dataset(spec, data_cfg, cfg, built.output_shape, world_size)
    if part["resume"] is not None:
        _check_resume_fits(part["resume"], run_dir)
    return Setup(
        spec,
        part["spec_text"],
        part["spec_path"],
        data_cfg,
        cfg,
        dataset,
        tuple(built.output_shape),
        run_dir,
        part["resume"],
        part["best_state"],
        part["planned_epochs"],
        previous_seconds(run_dir, part["resume"]) if resume is not None else 0.0,
        built,
    )


def _resumed_part(spec, resume, data_over: dict, train_over: dict, writer: bool = True) -> dict:
    """What a resumed run takes from its folder: spec, sections, checkpoints (checked against the
    changes asked for: only ``epochs`` may grow, and a few settings that leave the run the same)."""
    if writer:
        check_unlocked(resume)  # a run still being written is not resumed
    run = open_run(resume)
    if (
        spec is not None
        and spec.path is not None
        and Path(spec.path).is_file()
        and Path(spec.path).read_text(encoding="utf-8-sig") != run.spec_text
    ):
        raise InputError(
            f"{spec.path} differs from the spec the run in {run.run_dir} was started with",
            hint="resume without the SPEC argument to use the run's own copy (spec.yaml)",
        )
    allowed = {"epochs", "sync_every", "eval_batch_size", "compile"}
    changed = sorted(set(k for k, v in train_over.items() if v is not None) - allowed)
    changed += sorted(f"data.{k}" for k, v in data_over.items() if v is not None)
    if changed:
        raise InputError(
            f"continues a run exactly; cannot change {', '.join(changed)}",
            param="resume",
            hint="only epochs (to train longer), compile and the device may change",
        )
    cfg = TrainConfig(**{**asdict(run.train), **{k: v for k, v in train_over.items() if v is not None}})
    cfg = resolve_train_config(cfg.to_dict())
    if cfg.epochs < run.train.epochs:
        raise InputError(
            f"expected {run.train.epochs} or more, found {cfg.epochs}: the run was started for "
            f"{run.train.epochs} epochs, and resuming can only keep or extend that (a shorter run "
            "would change its learning-rate schedule, so it would not be the same run)",
            param="epochs",
            hint=f"resume with {run.train.epochs} epochs or more; to stop it where it is, "
            f"use its last checkpoint ({checkpoint_path(run.run_dir, 'last')})",
        )
    run_dir = run.run_dir
    # A run that died before its first checkpoint (out of memory, a bad batch) starts again
    # from scratch in place: its recorded config is the one resumed, so nothing changes.
    last, best = checkpoint_path(run_dir, "last"), checkpoint_path(run_dir, "best")
    _check_resumable(run_dir, last)
    return {
        "spec": run.spec,
        "spec_text": run.spec_text,
        "spec_path": run.meta.get("spec", {}).get("path"),
        "data_cfg": run.data,
        "cfg": cfg,
        "run_dir": run_dir,
        "planned_epochs": run.train.epochs,
        "resume": load_checkpoint(last) if last.exists() else None,
        "best_state": load_checkpoint(best) if best.is_file() else None,
    }


def _check_resumable(run_dir: Path, last: Path) -> None:
    """A finished run whose checkpoints were deleted is refused: starting it again from scratch
    would overwrite its report (only a run that died before its first checkpoint restarts)."""
    if not last.exists() and read_report(run_dir) is not None:
        raise InputError(
            f"the run in {run_dir} finished, but its last checkpoint {last} is gone: nothing to resume from",
            param="resume",
            hint="train it again into another folder; its report.json and metrics stay as they are",
        )


def _new_part(spec, data_over: dict, train_over: dict, out_dir, runs_root) -> dict:
    """A new run's spec text, resolved sections and run folder (new or empty)."""
    if spec is None:
        raise InputError("expected a spec to train, or a run folder to resume")
    spec_text = _spec_text(spec)
    base_dir = Path(spec.path).resolve().parent if spec.path is not None else Path.cwd()
    data_cfg = data_mod.resolve_data_config(spec.data, data_over, fail=section_fail(spec, "data"), base_dir=base_dir)
    cfg = resolve_train_config(spec.train, train_over, fail=section_fail(spec, "train"))
    if out_dir is not None:
        run_dir = Path(out_dir)
        check_unlocked(run_dir)  # a second writer hears about the first, not about its files
        if (run_dir / RUN_FILE).exists():
            raise InputError(
                f"{run_dir} already holds a run",
                hint=f"continue it with --resume {run_dir}, pick another --out, or add --force to replace it",
            )
        if run_dir.exists() and (not run_dir.is_dir() or any(p.name != LOCK_NAME for p in run_dir.iterdir())):
            raise InputError(
                f"{run_dir}: expected a new or empty folder, found "
                f"{'a file' if not run_dir.is_dir() else 'a folder with files in it'}",
                param="out_dir",
            )
    else:
        run_dir = new_run_dir(Path(runs_root), spec.name)
    return {
        "spec": spec,
        "spec_text": spec_text,
        "spec_path": str(Path(spec.path).resolve()) if spec.path is not None else None,
        "data_cfg": data_cfg,
        "cfg": cfg,
        "run_dir": run_dir,
        "planned_epochs": None,
        "resume": None,
        "best_state": None,
    }


def _checked_dataset(spec, data_cfg, cfg, output_shape, world_size: int):
    """The data loaded, shaped to the spec's input and checked against the spec and the loss."""
    several = several_inputs(spec)
    dataset = load_spec_dataset(data_cfg, spec)
    dataset = _check_labels(dataset, cfg, output_shape, spec, data_cfg)
    if dataset.sizes()["train"] < world_size:
        raise InputError(f"{dataset.sizes()['train']} training examples cannot be split across {world_size} processes")
    if several and (data_cfg.crop or data_cfg.flip):
        raise InputError("data.augment (crop/flip) works on one image input; this spec has several inputs")
    if (data_cfg.crop or data_cfg.flip) and len(spec.input) != 3:
        raise InputError(
            f"data.augment (crop/flip) needs image inputs [C, H, W], the spec's input is {list(spec.input)}"
        )
    if cfg.patience and dataset.sizes()["val"] == 0:
        raise InputError("early stopping (patience) needs a validation split: data.val is 0")
    return dataset


def previous_seconds(run_dir: Path, ckpt: dict | None) -> float:
    """Wall time of a run's earlier sessions: its last report's total (every session that ended
    writes report.json), else the epoch times of its history (a session that was killed)."""
    try:
        report = read_report(run_dir) or {}
    except InputError:  # a damaged report: the history still knows the epoch times
        report = {}
    total = report.get("total_s", report.get("duration_s"))
    if isinstance(total, (int, float)):
        return float(total)
    history = (ckpt or {}).get("history") or []
    return float(sum(r.get("epoch_time_s") or 0.0 for r in history if isinstance(r, dict)))


def _check_labels(dataset, cfg, output_shape, spec, data_cfg):
    def fail(message, hint=None):
        return InputError(f"data {dataset.name}: {message}", hint=hint)

    prepare_targets(dataset, cfg.loss, tuple(output_shape), fail)
    return dataset


def check_train_outputs(spec, cfg: TrainConfig, built) -> None:
    """``train.outputs`` names outputs of the spec other than the first (which is always trained),
    each shaped as the first: all of them are trained against the same labels."""
    if not cfg.outputs:
        return
    outputs = list(getattr(spec, "outputs", ()) or ())
    shapes = {name: tuple(shape) for name, shape, _ in built.outputs}
    for name in cfg.outputs:
        if name in outputs[1:] and shapes[name] != shapes[outputs[0]]:
            raise InputError(
                f"train.outputs: output {name!r} has shape {list(shapes[name])}, the first output "
                f"{outputs[0]!r} {list(shapes[outputs[0]])}: both are trained against the same labels"
            )
        if name not in outputs[1:]:
            found = f"its outputs are {', '.join(outputs)}" if outputs else "it has one output"
            raise InputError(
                f"train.outputs: expected the name of one of the spec's further outputs, found {name!r} ({found}; "
                "the first output is always trained against the labels)",
                hint=None if outputs else "list the network's outputs at the spec's top level: `outputs: [main, aux]`",
            )


def _check_resume_fits(ckpt: dict, run_dir: Path) -> None:
    for key in ("optimizer", "epoch", "step_in_epoch", "global_step", "history", "rng"):
        if key not in ckpt:
            raise InputError(f"corrupt checkpoint {checkpoint_path(run_dir, 'last')}: no {key!r} entry")


def resolve_data_source(data_over: dict) -> dict:
    """The ``source`` that :func:`~nncli.train.config.split_overrides` keeps for ``--data``,
    replaced by the ``name`` or ``path`` it means; a name or path given after it wins."""
    if "source" not in data_over:
        return data_over
    out = dict(data_over)
    for key, value in _data_source(out.pop("source")).items():
        if out.get(key) is None:
            out[key] = value
    return out


def _data_source(value) -> dict:
    """``--data`` value: a built-in set name, or a path to a file or folder."""
    text = str(value)
    path = Path(text).expanduser()
    if path.suffix.lower() in data_mod.FILE_SUFFIXES or "/" in text or os.sep in text or path.exists():
        # a folder is an image folder (MNIST / CIFAR-10 folders need `name:` in the spec)
        return {"path": text, "name": None}
    return {"name": text, "path": None}
