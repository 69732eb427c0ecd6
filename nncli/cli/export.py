"""``nncli export``: a run's checkpoint or a spec's initial weights as ONNX, TorchScript or safetensors."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from nncli.cli.app import app, fail_check, json_flag, render
from nncli.cli.options import options_of
from nncli.seeds import SEED_MAX


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    safetensors = "safetensors"


class TraceMethod(str, Enum):
    trace = "trace"
    script = "script"


@app.command()
def export(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="A run folder (its best checkpoint) or a spec file (its initial weights)."),
    fmt: ExportFormat | None = typer.Option(
        None,
        "--format",
        "-f",
        help="onnx, torchscript or safetensors; default: from the suffix of --out (.onnx, .pt or .ts, .safetensors).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The file to write."),
    seed: int = typer.Option(
        0, "--seed", min=0, max=SEED_MAX, help="A spec's initial weights are built with this seed."
    ),
    checkpoint: str = typer.Option("best", "--checkpoint", help="A run's checkpoint: best or last."),
    method: TraceMethod = typer.Option(TraceMethod.trace, "--method", help="TorchScript: trace (default) or script."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    json_out: bool = json_flag(),
) -> None:
    """Export a network and check the file; the format follows the suffix of --out unless --format names it.

    ONNX (dynamic batch dimension) is run in onnxruntime, TorchScript loaded back with
    torch.jit.load, each on a batch of 3 against the torch model: the largest absolute difference
    is printed, and the command exits 1 when it is above 1e-5 times max(1, largest output).
    safetensors holds the weights with the spec text in its metadata; it is read back and compared
    bit for bit, and the network rebuilt from the file alone (nncli.export.load_safetensors).
    onnx, onnxruntime and safetensors come with: pip install 'nncli[export]'.
    """
    from nncli.export import export_model

    result = export_model(
        source,
        fmt.value if fmt is not None else None,
        out,
        seed=seed,
        checkpoint=checkpoint,
        method=method.value,
        force=force,
        allow_custom=options_of(ctx).allow_custom,
    )
    render.emit(result, json_out, render.export.show)
    if not result.passed:
        fail_check(f"the exported {result.format} model differs from the torch model (see the check above)")
