"""``nncli check`` and ``nncli params``: validate a spec, count what it costs."""

from __future__ import annotations

from pathlib import Path

import typer

from nncli.cli.app import SPEC_HELP, DType, Optimizer, app, fail_check, json_flag, render
from nncli.cli.run_options import complete_spec, load_spec_with_sets, set_option


@app.command()
def check(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., help=SPEC_HELP, autocompletion=complete_spec),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too, not only on errors."),
    set_: list[str] = set_option(),
    json_out: bool = json_flag(),
) -> None:
    """Validate a spec: print the layer table and lint findings; load its data section (when local
    and small) to check the target column, the input shape and the labels against the network.

    Lints: affine layers with no nonlinearity between them (just a linear predictor), Softmax
    before a cross-entropy loss (which takes logits), deep sigmoid/tanh stacks without
    normalisation or skips, a bias right before BatchNorm, Dropout right before BatchNorm.
    Exit 1 on an error-level finding (on any warning with --strict), 2 on a bad spec.
    """
    from nncli.lint import check_spec
    from nncli.train.sections import check_data, validate_sections

    loaded = load_spec_with_sets(ctx, spec, set_)
    validate_sections(loaded)  # data:/train: exactly as `nncli train` reads them
    result = check_spec(loaded)
    result.data = check_data(loaded, tuple(result.output_shape))
    render.emit(result, json_out, render.check.show)
    counts = result.counts()
    if counts["error"] or (strict and counts["warning"]):
        fail_check(
            f"{counts['error']} error(s), {counts['warning']} warning(s)"
            + (" (--strict)" if strict and not counts["error"] else "")
        )


@app.command()
def params(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., help=SPEC_HELP, autocompletion=complete_spec),
    depth: int = typer.Option(
        1, "--depth", min=0, help="How deep to open nested blocks (Residual, Repeat): 0 = top level only."
    ),
    batch_size: int = typer.Option(1, "--batch-size", "-b", min=1, help="Batch size for FLOPs and activation memory."),
    dtype: DType = typer.Option(DType.float32, "--dtype", help="Element type for memory figures."),
    optimizer: Optimizer = typer.Option(
        Optimizer.adam,
        "--optimizer",
        help="Optimizer whose state is counted (sgd: momentum buffer; adam/adamw: two moments).",
    ),
    max_params: str | None = typer.Option(
        None, "--max-params", help="Gate: exit 1 if total parameters exceed this (e.g. 25M, 1.5e9)."
    ),
    max_flops: str | None = typer.Option(
        None, "--max-flops", help="Gate: exit 1 if forward FLOPs for the batch exceed this (e.g. 4G)."
    ),
    max_memory: str | None = typer.Option(
        None, "--max-memory", help="Gate: exit 1 if estimated training memory exceeds this (e.g. 2GiB, 500MB)."
    ),
    set_: list[str] = set_option(),
    json_out: bool = json_flag(),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Also say how the FLOPs were counted and the shapes learnt (`flops_method` and each layer's `shape_method` in --json).",
    ),
) -> None:
    """Count parameters, buffers, FLOPs and memory per layer, without allocating weights.

    Counting runs on meta tensors: a 100-billion-parameter spec takes seconds and little memory.
    FLOPs come from torch's own FLOP counter (a multiply-add counts 2). Memory is an estimate
    for one training step: weights, buffers, activations saved for backward, gradients and the
    optimizer's state. Budget gates (--max-params, --max-flops, --max-memory) exit 1 when
    exceeded and say by how much.
    """
    from nncli.params import Budget, count

    budget = Budget.parse(max_params=max_params, max_flops=max_flops, max_memory=max_memory)
    report = count(
        load_spec_with_sets(ctx, spec, set_),
        batch_size=batch_size,
        dtype=dtype.value,
        optimizer=optimizer.value,
        depth=depth,
        budget=budget,
    )
    render.emit(report, json_out, render.params.show)
    if verbose and not json_out:
        typer.echo(f"flops_method: {report.flops_method}")
        methods = [r.shape_method for r in report.layers if r.shape_method]
        typer.echo("shape_method: " + ", ".join(f"{m} x{methods.count(m)}" for m in dict.fromkeys(methods)))
    failed = [g for g in report.gates if not g.ok]
    if failed:
        fail_check("; ".join(f"{g.name}: {g.message}" for g in failed))
