""":func:`export_model`, the library face of ``nncli export``, and its :class:`ExportResult`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from nncli.errors import InputError
from nncli.formatting import jsonable

FORMATS = ("onnx", "torchscript", "safetensors")
# The output file's suffix -> the format it names (.pt and .ts: what torch.jit.save files are called).
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".safetensors": "safetensors"}
# format -> (modules it needs, what to install)
NEEDS = {
    "onnx": (("onnx", "onnxruntime"), "nncli[export]"),
    "safetensors": (("safetensors",), "nncli[export]"),
    "torchscript": ((), None),
}


@dataclass
class ExportResult:
    """One exported file and the check run on it."""

    source: str  # the run folder or spec file
    source_kind: str  # run or spec
    checkpoint: str | None  # the run's checkpoint file (None for a spec)
    format: str  # onnx, torchscript or safetensors
    out: str  # the file written
    bytes: int
    params: int
    input_shape: list
    method: str  # how the file was made
    check: dict = field(default_factory=dict)  # max_abs_diff/scale/batch/runtime, or tensors/bit_exact/rebuilt
    passed: bool = True
    # a network with several inputs or outputs: [{"name", "shape"}] of each, in forward order (the
    # names the ONNX file gives them); None for one input and one output
    inputs: list | None = None
    outputs: list | None = None

    def to_json(self) -> dict:
        return jsonable(asdict(self))


def require_extra(fmt: str) -> None:
    """Exit 2 with the install line when a format's optional packages are missing."""
    import importlib.util

    modules, extra = NEEDS[fmt]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(
            f"{fmt} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
            hint=f"pip install '{extra}'",
            param="format",
        )


def resolve_format(out: Path, fmt: str | None) -> str:
    """The format to write: ``fmt`` if given (it must agree with a suffix that names a format),
    else the one the suffix of ``out`` names.

    Raises:
        InputError: an unknown ``fmt``, a ``fmt`` the suffix contradicts, or no ``fmt`` and a
            suffix that names none (exit 2).
    """
    suffix = out.suffix.lower()
    by_suffix = SUFFIXES.get(suffix)
    if fmt is None:
        if by_suffix is None:
            raise InputError(
                f"cannot tell the format of {out} from its suffix ({suffix or 'none'}); "
                "expected .onnx, .pt or .ts (TorchScript) or .safetensors",
                hint="use one of those suffixes, or name the format: --format onnx, torchscript or safetensors",
                param="format",
            )
        return by_suffix
    if fmt not in FORMATS:
        raise InputError(f"expected one of {', '.join(FORMATS)}, found {fmt!r}", param="format")
    if by_suffix is not None and by_suffix != fmt:
        wanted = next(s for s, f in SUFFIXES.items() if f == fmt)
        raise InputError(
            f"{fmt} but the output {out} ends in {suffix}, which means {by_suffix}",
            hint=f"name the file {out.with_suffix(wanted)}, or leave out the format (the suffix decides)",
            param="format",
        )
    return fmt


def export_model(
    source,
    fmt: str | None,
    out,
    *,
    seed: int = 0,
    checkpoint: str = "best",
    method: str = "trace",
    force: bool = False,
    allow_custom: bool = True,
) -> ExportResult:
    """Export a run's checkpoint (or a spec's initial weights) and check the file.

    Args:
        source: a run folder (its ``checkpoint``: best or last) or a spec file (built with ``seed``).
        fmt: onnx, torchscript or safetensors; None: from the suffix of ``out`` (.onnx, .pt or
            .ts, .safetensors), which a given ``fmt`` must not contradict.
        out: the file to write (atomically); an existing one only with ``force``.
        method: torchscript only: trace or script.
        allow_custom: False refuses a spec with Custom layers (``--no-custom``).

    Returns:
        ExportResult; ``passed`` is False when the exported model's outputs differ from torch's
        by more than the tolerance (the CLI exits 1), or a safetensors file does not read back
        bit for bit.

    Raises:
        InputError: unknown format, a format the suffix contradicts or cannot tell, missing
            package (names the extra), existing ``out``, a layer the format cannot express (exit 2).
    """
    from nncli.export.source import load_source

    out = Path(out)
    fmt = resolve_format(out, fmt)
    require_extra(fmt)
    if out.is_dir():
        raise InputError(f"{out}: expected a file name, found a folder", param="out")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputError(f"{out}: the folder {out.parent} does not exist", param="out")
    if out.exists() and not force:
        raise InputError(f"{out} already exists", hint="pass --force to replace it", param="out")
    if Path(source).exists() and out.resolve() == Path(source).resolve():
        raise InputError(f"{out} is the source itself", param="out")
    src = load_source(source, seed=seed, checkpoint=checkpoint, allow_custom=allow_custom)
    if fmt == "onnx":
        from nncli.export.onnx_file import export_onnx

        done = export_onnx(src, out)
    elif fmt == "torchscript":
        from nncli.export.torchscript_file import export_torchscript

        done = export_torchscript(src, out, method)
    else:
        from nncli.export.safetensors_file import export_safetensors

        done = export_safetensors(src, out)
    return ExportResult(
        source=src.path,
        source_kind=src.kind,
        checkpoint=src.checkpoint,
        format=fmt,
        out=str(out),
        bytes=out.stat().st_size,
        params=sum(p.numel() for p in src.model.parameters()),
        input_shape=list(src.built.input_shape),
        method=done["method"],
        check=done["check"],
        passed=bool(done["check"]["passed"]),
        inputs=[{"name": n, "shape": list(s)} for n, s, *_ in src.built.inputs] if src.built.graph else None,
        outputs=[{"name": n, "shape": list(s)} for n, s, *_ in src.built.outputs] if src.built.graph else None,
    )
