"""``nncli train``, ``evaluate`` and ``predict``: training runs and what is done with them."""

from __future__ import annotations

from enum import Enum
from functools import partial
from pathlib import Path

import typer

from nncli.cli.app import DEVICE_HELP, SPEC_HELP, Optimizer, app, fail_check, json_flag, render
from nncli.cli.flags import FLAGS
from nncli.cli.options import options_of
from nncli.cli.run_options import (
    complete_run,
    complete_spec,
    load_spec_with_sets,
    set_option,
    threads_for_run,
    threads_option,
)
from nncli.cli.tracking import (
    experiment_option,
    tracking_callbacks,
    tracking_option,
    tracking_uri_option,
    train_tracking,
)
from nncli.errors import ExitCode, InputError
from nncli.seeds import SEED_MAX
from nncli.status import RunStatus
from nncli.train.config import AMP_MODES, LOSSES, SCHEDULES

Loss = Enum("Loss", {v: v for v in LOSSES}, type=str)
Schedule = Enum("Schedule", {v: v for v in SCHEDULES}, type=str)
Amp = Enum("Amp", {v: v for v in AMP_MODES}, type=str)


class Split(str, Enum):
    train = "train"
    val = "val"
    test = "test"
    all = "all"


class CheckpointKind(str, Enum):
    best = "best"
    last = "last"


def parse_train_sets(items: list[str], overrides: dict) -> list[str]:
    """``--set train.X=V`` / ``data.X=V`` go into ``overrides`` (as --lr does: the run's spec.yaml
    stays the file's text, run.yaml records them); the others (layers, ...) are returned, for the
    spec itself."""
    from nncli.cli.run_options import parse_sets

    rest = []
    for item in items:
        ((key, value),) = parse_sets([item]).items()
        section, dot, field = key.partition(".")
        if section in ("train", "data") and dot and field.isidentifier():
            current = overrides.setdefault(section, {})
            if not isinstance(current, dict):  # --data NAME was given: it stays a source
                current = overrides[section] = {"source": current}
            current[field] = value
        else:
            rest.append(item)
    return rest


def plot_callbacks(plot: Path | None, tracking=None) -> list:
    """``--plot``: the curves drawn when the run ends (and remembered for a resume); then the
    MLflow logging of ``tracking`` (after the plot: the plot is one of its files)."""
    from nncli.train.callbacks import Plot

    return ([Plot(plot)] if plot is not None else []) + tracking_callbacks(tracking)


def rank_callbacks(plot: Path | None, tracking=None) -> list:
    """A DDP worker's callbacks (picklable through ``functools.partial``): progress, ``--plot``
    and tracking; each acts on rank 0 only."""
    from nncli.train.callbacks import Progress

    return [Progress(render.train.TrainProgress()), *plot_callbacks(plot, tracking)]


@app.command()
def train(
    ctx: typer.Context,
    spec: Path | None = typer.Argument(None, help=SPEC_HELP + " Optional with --resume.", autocompletion=complete_spec),
    data: str | None = typer.Option(
        None,
        "--data",
        help="Data set (moons, circles, spirals, xor, blobs, regression, digits, text) or a .npz/.csv/.pt file or an image folder; overrides the spec's data:.",
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Epochs to train (with --resume: train longer)."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (the peak for onecycle)."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", "-b", min=1, help="Global batch size (split across DDP processes)."
    ),
    optimizer: Optimizer | None = typer.Option(
        None, "--optimizer", help="sgd (with --momentum, --nesterov), adam or adamw."
    ),
    loss: Loss | None = typer.Option(None, "--loss", help="cross_entropy (on logits), mse or bce_with_logits."),
    schedule: Schedule | None = typer.Option(None, "--schedule", help="Learning-rate schedule, stepped every batch."),
    warmup_steps: int | None = typer.Option(
        None, "--warmup-steps", min=0, help="Linear warmup steps before the schedule."
    ),
    momentum: float | None = typer.Option(None, "--momentum", help="SGD momentum."),
    nesterov: bool | None = typer.Option(None, "--nesterov/--no-nesterov", help="Nesterov momentum (sgd)."),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="Weight decay (decoupled for adamw)."),
    clip_grad_norm: float | None = typer.Option(
        None, "--clip-grad-norm", help="Clip the global gradient norm to this."
    ),
    patience: int | None = typer.Option(
        None, "--patience", min=1, help="Early stopping: epochs without validation improvement."
    ),
    seed: int | None = typer.Option(
        None, "--seed", min=0, max=SEED_MAX, help="Seed for weights, dropout, data order, augmentation."
    ),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    amp: Amp | None = typer.Option(None, "--amp", help="Mixed precision: bf16, or fp16 with a gradient scaler."),
    compile_model: bool | None = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every", min=0, help="Also checkpoint every N steps inside an epoch."
    ),
    skip_nonfinite: bool | None = typer.Option(
        None, "--skip-nonfinite/--stop-nonfinite", help="Skip batches with a non-finite loss instead of stopping."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (new or empty); default runs/<spec>-<time>."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replace the run already in --out (deleted once the new run starts; kept if the new one is refused).",
    ),
    set_: list[str] = set_option(),
    threads: int | None = threads_option(),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue the run in this folder exactly where it stopped."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Write loss and accuracy curves to this .png/.svg/.pdf."),
    tensorboard: bool = typer.Option(
        False, "--tensorboard", help="Also log to <run>/tensorboard (needs the tensorboard package)."
    ),
    tracking: bool | None = tracking_option(),
    tracking_uri: str | None = tracking_uri_option(),
    experiment: str | None = experiment_option(),
    nproc_per_node: int = typer.Option(
        1, "--nproc-per-node", min=1, help="Processes per node for DDP (gloo on CPU, nccl on CUDA, one GPU each)."
    ),
    nnodes: int = typer.Option(1, "--nnodes", min=1, help="Nodes taking part (multi-node DDP)."),
    node_rank: int = typer.Option(0, "--node-rank", min=0, help="This node's rank, 0..nnodes-1."),
    master_addr: str = typer.Option("127.0.0.1", "--master-addr", help="Address of the node with rank 0 (multi-node)."),
    master_port: int = typer.Option(
        29500, "--master-port", min=1, max=65535, help="Port for the rendezvous on the master node."
    ),
    sync_batchnorm: bool = typer.Option(
        True,
        "--sync-batchnorm/--no-sync-batchnorm",
        help="DDP on CUDA: BatchNorm as SyncBatchNorm (statistics over the global batch), or per rank.",
    ),
    json_out: bool = json_flag(),
) -> None:
    """Train a spec: data, loss, optimizer and schedule from its data:/train: sections and flags.

    Writes a run folder: run.yaml (resolved config), spec.yaml, metrics.jsonl/.csv, checkpoints/best.pt and last.pt,
    report.json. Progress goes to stderr; --json prints the final summary on stdout. Ctrl-C saves a checkpoint and
    exits 130 (continue with --resume). A non-finite loss stops training with the step and the first layer whose
    output went non-finite, keeps the last good checkpoint and exits 1 (or --skip-nonfinite).
    """
    plot, track = _checked_plot(plot, resume), train_tracking(tracking_uri, experiment, tracking, out, resume)
    overrides = _train_overrides(
        {
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "optimizer": optimizer,
            "loss": loss,
            "schedule": schedule,
            "warmup_steps": warmup_steps,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "clip_grad_norm": clip_grad_norm,
            "patience": patience,
            "seed": seed,
            "amp": amp,
            "compile": compile_model,
            "checkpoint_every": checkpoint_every,
            "skip_nonfinite": skip_nonfinite,
        },
        data,
    )
    sets = parse_train_sets(set_, overrides)
    loaded = load_spec_with_sets(ctx, spec, sets, detach=True) if spec is not None else None
    _check_resume(ctx, resume, sets)
    distributed = _distributed(nproc_per_node, nnodes, node_rank)
    replacing = _replaced_out(spec, out, force, resume, node_rank)
    if distributed:
        result = _train_distributed(
            loaded,
            overrides,
            out,
            replacing,
            plot,
            tracking=track,
            device=device,
            resume=resume,
            tensorboard=tensorboard,
            nproc_per_node=nproc_per_node,
            nnodes=nnodes,
            node_rank=node_rank,
            master_addr=master_addr,
            master_port=master_port,
            sync_batchnorm=sync_batchnorm,
            json_out=json_out,
        )
        if result is None:  # a node other than 0: its workers finished, rank 0 reports
            return
    else:
        result = _train_here(loaded, overrides, out, replacing, plot, device, resume, tensorboard, threads, track)
    _finish(result, json_out)


def _distributed(nproc_per_node: int, nnodes: int, node_rank: int) -> bool:
    """Whether the run is a DDP one (several processes or nodes); a node rank beyond them is exit 2."""
    distributed = nproc_per_node > 1 or nnodes > 1
    if distributed and node_rank >= nnodes:
        raise InputError(f"--node-rank {node_rank}: expected a rank below --nnodes {nnodes}")
    return distributed


def _other_node_document(node_rank: int, nnodes: int) -> dict:
    """``--json`` on a node other than 0: its workers finished; node 0 holds the run and its report."""
    return {
        "node_rank": node_rank,
        "nnodes": nnodes,
        "status": "workers_finished",
        "run_dir": None,
        "message": f"node {node_rank}: workers finished; rank 0 (on node 0) writes the run and its report",
    }


def _replaced_out(spec: Path | None, out: Path | None, force: bool, resume: Path | None, node_rank: int):
    """The context that replaces the run already in ``--out`` (``--force``) once the new run starts."""
    from nncli.train.replace import replaced_run_folder

    if force and out is not None and node_rank == 0:  # --force never moves a folder another process is writing
        from nncli.train.lock import check_unlocked

        check_unlocked(out)
    # Only node 0 writes --out (a distributed run's rank 0); the other nodes leave it alone.
    return replaced_run_folder(
        out, force and resume is None and node_rank == 0, (spec,), names={p: FLAGS[p] for p in ("out", "force")}
    )


def _train_distributed(
    loaded, overrides: dict, out: Path | None, replacing, plot: Path | None, tracking=None, json_out=False, **launch
):
    """Launch the DDP workers of this node; None (after saying so, as a JSON document under
    ``--json``) on a node that is not rank 0's."""
    from nncli.train import launch_distributed

    factory = partial(rank_callbacks, plot, tracking)
    with replacing:
        result = launch_distributed(loaded, overrides, out, callbacks_factory=factory, **launch)
    if result is None:
        document = _other_node_document(launch["node_rank"], launch["nnodes"])
        if json_out:
            render.print_json(document)
        else:
            render.stderr_console().print(document["message"])
    return result


def _train_here(
    loaded, overrides: dict, out, replacing, plot, device: str, resume, tensorboard: bool, threads, tracking=None
):
    """Train in this process, progress shown on stderr."""
    from nncli.train import run_training

    with render.train.TrainProgress() as progress, replacing:
        return run_training(
            loaded,
            overrides,
            out,
            device=device,
            resume=resume,
            observer=progress,
            callbacks=plot_callbacks(plot, tracking),
            tensorboard=tensorboard,
            threads=threads,
        )


def _finish(result, json_out: bool) -> None:
    """Show the run's summary, then exit 1 on a non-finite loss or 130 when interrupted."""
    render.emit(result, json_out, render.train.show)
    if result.status == RunStatus.NONFINITE:
        fail_check(result.message)
    if result.status == RunStatus.INTERRUPTED:
        raise typer.Exit(int(ExitCode.INTERRUPTED))


def _checked_plot(plot: Path | None, resume: Path | None) -> Path | None:
    """``--plot``, or the figure a resumed run was drawn to (redrawn over the whole history, not
    left stale); refused before any work when it cannot be written."""
    from nncli.train.runs import remembered_plot

    if plot is None and resume is not None:
        plot = remembered_plot(resume)
    if plot is not None:
        from nncli.render.plots import check_plot_path

        check_plot_path(plot)
    return plot


def _train_overrides(values: dict, data: str | None) -> dict:
    """The flags given, as overrides of the spec's train: and data: sections."""
    overrides = {"train": {k: (v.value if isinstance(v, Enum) else v) for k, v in values.items() if v is not None}}
    if data is not None:
        overrides["data"] = data
    return overrides


def _check_resume(ctx: typer.Context, resume: Path | None, sets: list) -> None:
    """``--resume`` continues a run exactly: no --set; under --no-custom its own spec is refused
    like a file's."""
    if resume is None:
        return
    if sets:
        raise InputError(
            f"--resume continues a run exactly; cannot apply --set {', '.join(sets)}",
            hint="only --epochs (to train longer), --compile and the device may change",
        )
    if not options_of(ctx).allow_custom:
        from nncli.train.trained import open_run

        open_run(resume, allow_custom=False)


@app.command()
def evaluate(
    ctx: typer.Context,
    run_dir: Path = typer.Argument(
        ..., metavar="RUN", help="A run folder written by nncli train.", autocompletion=complete_run
    ),
    split: Split = typer.Option(Split.test, "--split", help="Which split to evaluate (all: train, val and test)."),
    checkpoint: CheckpointKind = typer.Option(
        CheckpointKind.best, "--checkpoint", help="best (by validation) or last."
    ),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write the confusion matrix (test split with --split all) to this .png/.svg/.pdf."
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Score every row of this labelled .csv/.npz/.pt instead (read as the run's data section reads its file).",
    ),
    threads: int | None = threads_option(),
    json_out: bool = json_flag(),
) -> None:
    """Loss and accuracy of a run's checkpoint on a data split (same data, split and normalisation),
    with RMSE, MAE and R² for regression, per-class precision, recall and F1 and the confusion
    matrix for classification."""
    if plot is not None:
        render.plots.check_plot_path(plot)
    threads_for_run(run_dir, device, threads=threads)
    from nncli.evaluate import evaluate_run

    result = evaluate_run(
        run_dir,
        split.value,
        checkpoint=checkpoint.value,
        device=device,
        allow_custom=options_of(ctx).allow_custom,
        data=data,
    )
    if plot is not None:
        render.plots.confusion_plot(result, plot)
    render.emit(result, json_out, render.evaluate.show)
    if plot is not None and not json_out:
        render.stderr_console().print(f"wrote {render.escape(str(plot))}")


@app.command()
def predict(
    ctx: typer.Context,
    run_dir: Path = typer.Argument(
        ..., metavar="RUN", help="A run folder written by nncli train.", autocompletion=complete_run
    ),
    input_path: Path = typer.Argument(
        ...,
        metavar="INPUT",
        help="Inputs, one example per row: .npz, .npy, .csv (a label column the run knows is dropped) or .pt.",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the predictions to this .csv or .npz."),
    checkpoint: CheckpointKind = typer.Option(
        CheckpointKind.best, "--checkpoint", help="best (by validation) or last."
    ),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists (never the input file)."),
    threads: int | None = threads_option(),
    json_out: bool = json_flag(),
) -> None:
    """Predict with a trained run: classes and probabilities, or regression outputs."""
    threads_for_run(run_dir, device, threads=threads)
    from nncli.evaluate import predict as run_predict

    result = run_predict(
        run_dir,
        input_path,
        out=out,
        checkpoint=checkpoint.value,
        device=device,
        force=force,
        allow_custom=options_of(ctx).allow_custom,
    )
    render.emit(result, json_out, render.evaluate.predictions)
