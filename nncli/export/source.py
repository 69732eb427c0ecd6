"""The network an export writes: a run folder's checkpoint, or a spec's initial weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncli.errors import InputError


@dataclass
class Source:
    """A built network in eval mode on the CPU, with what an exported file should remember."""

    kind: str  # "run" or "spec"
    path: str  # the run folder or the spec file
    built: Any  # nncli.build.Built
    spec_text: str
    spec_dir: str | None  # where the spec's Custom layers' Python files are found
    checkpoint: str | None = None  # the checkpoint file of a run
    epoch: int | None = None
    normalization: dict | None = None  # {"mean": [...], "std": [...]} of a run's training data
    classes: list | None = None

    @property
    def model(self):
        return self.built.model


def load_source(path, *, seed: int = 0, checkpoint: str = "best") -> Source:
    """A run folder (has ``run.yaml``) with its ``checkpoint`` weights, else a spec file built
    with ``seed``.

    Raises:
        InputError / SpecError: no such path, a damaged run, a bad spec (exit 2).
    """
    from nncli.build import build_model
    from nncli.spec import load_spec

    path = Path(path)
    if path.is_dir():
        from nncli.train.runs import load_checkpoint, load_run

        if checkpoint not in ("best", "last"):
            raise InputError(f"--checkpoint: expected best or last, found {checkpoint!r}")
        run = load_run(path)
        ckpt_path = run.run_dir / "checkpoints" / f"{checkpoint}.pt"
        ckpt = load_checkpoint(ckpt_path)
        built = build_model(run.spec, device="cpu", seed=run.train.seed, transfer_weights=False)
        try:
            built.model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise InputError(f"{ckpt_path} does not fit the run's spec: {str(exc).splitlines()[0][:300]}") from None
        built.model.eval()
        norm = ckpt.get("normalization") or {}
        normalization = None
        if norm.get("mean") is not None:
            normalization = {"mean": norm["mean"].flatten().tolist(), "std": norm["std"].flatten().tolist()}
        origin = run.meta.get("spec", {}).get("path")
        return Source("run", str(run.run_dir), built, run.spec_text,
                      str(Path(origin).parent) if origin else None, str(ckpt_path), ckpt.get("epoch"),
                      normalization, run.meta.get("classes"))
    if not path.is_file():
        raise InputError(f"no such run folder or spec file: {path}")
    spec = load_spec(path)
    built = build_model(spec, device="cpu", seed=seed)
    built.model.eval()
    text = path.read_text(encoding="utf-8-sig")
    return Source("spec", str(path), built, text, str(path.resolve().parent))
