"""The network an export writes: a run folder's checkpoint, or a spec's initial weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncli.errors import InputError


@dataclass
class Source:
    """A built network in eval mode on the CPU, with what an exported file should remember.

    What is exported is :attr:`model`: the network behind a run's input normalisation (a
    :class:`~nncli.modules.TrainedNetwork`), so every exported file takes raw inputs. A spec's
    network has no normalisation in front (its ``normalize`` is the identity)."""

    kind: str  # "run" or "spec"
    path: str  # the run folder or the spec file
    built: Any  # nncli.build.Built
    spec_text: str
    spec_dir: str | None  # where the spec's Custom layers' Python files are found
    checkpoint: str | None = None  # the checkpoint file of a run
    epoch: int | None = None
    normalization: dict | None = None  # {"mean": [...], "std": [...]} of a run's training data
    classes: list | None = None
    wrapped: Any = None  # the TrainedNetwork that is exported

    @property
    def model(self):
        if self.wrapped is None:
            from nncli.modules.preprocess import trained_network

            self.wrapped = trained_network(self.built.model, None).eval()
        return self.wrapped


def file_metadata(source) -> dict:
    """What an exported file records beside the network: the spec, the class names, and the
    normalisation the model applies itself (``nncli.input_normalization``, for reading only:
    the file's inputs are raw)."""
    meta = {"nncli.spec": source.spec_text, "nncli.inputs": "raw"}
    if source.normalization is not None:
        meta["nncli.input_normalization"] = json.dumps(dict(source.normalization, applied_by_model=True))
    if source.classes:
        meta["nncli.classes"] = json.dumps(source.classes)
    return meta


def load_source(path, *, seed: int = 0, checkpoint: str = "best", allow_custom: bool = True) -> Source:
    """A run folder (has ``run.yaml``) with its ``checkpoint`` weights, else a spec file built
    with ``seed``; ``allow_custom`` False refuses Custom layers (``--no-custom``).

    Raises:
        InputError / SpecError: no such path, a damaged run, a bad spec (exit 2).
    """
    from nncli.build import build_model
    from nncli.spec import load_spec

    path = Path(path)
    if path.is_dir():
        return _run_source(path, checkpoint, allow_custom)
    if not path.is_file():
        raise InputError(f"no such run folder or spec file: {path}")
    spec = load_spec(path, allow_custom=allow_custom)
    built = build_model(spec, device="cpu", seed=seed)
    built.model.eval()
    text = path.read_text(encoding="utf-8-sig")
    return Source("spec", str(path), built, text, str(path.resolve().parent))


def _run_source(path: Path, checkpoint: str, allow_custom: bool) -> Source:
    from nncli.train.trained import load_trained, open_run

    run = open_run(path, allow_custom=allow_custom)
    trained = load_trained(run, checkpoint, "cpu")
    norm = trained.normalization
    normalization = None
    if norm.get("mean") is not None:
        from nncli.modules.preprocess import statistics_as_lists

        normalization = statistics_as_lists(norm)
    spec_dir = run.spec_dir
    source = Source(
        "run",
        str(run.run_dir),
        trained.built,
        run.spec_text,
        str(spec_dir) if spec_dir else None,
        str(trained.path),
        trained.checkpoint.get("epoch"),
        normalization,
        run.classes,
    )
    source.wrapped = trained.raw_input_model(run.classes)
    return source
