"""nncli's command line: parse -> call one library function -> render -> exit code.

Thin on purpose. Each command imports its tool lazily (torch takes ~2 s to load and
``nncli --help`` must not pay it), calls one function returning a result object, and hands it
to :mod:`nncli.render`. Errors are caught once, in :func:`main`: an ``NncliError`` prints its
located message and exits with its code (2 bad input, 1 a failed check); ``--traceback`` (or
``NNCLI_TRACEBACK=1``) re-raises instead, for bug reports.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from nncli.errors import CheckFailed, ExitCode, InputError, NncliError
from nncli.gradcheck.options import (
    DEFAULT_ATOL, DEFAULT_BATCH, DEFAULT_DIRECTIONS, DEFAULT_EPS, DEFAULT_RTOL, MODES, OBJECTIVES,
)
from nncli.sweep.options import METRICS
from nncli.train.config import AMP_MODES, LOSSES, OPTIMIZERS, SCHEDULES


class _Lazy:
    """A module imported on first attribute access: `--help` must not pay for rich's tables."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        import importlib

        return getattr(importlib.import_module(self._name), attr)


render = _Lazy("nncli.render")

app = typer.Typer(
    name="nncli",
    help="Network diagrams, checks and experiments from YAML specs.\n\n"
         "A spec lists layers (torch.nn names, Residual, Repeat, Custom, Step); nncli builds it as a "
         "torch.nn.Sequential, then checks, counts, draws, gradchecks, probes and trains it.\n\n"
         "Exit codes: 0 ok; 1 a check found a problem; 2 bad input; 3 a bug in nncli; 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich's markdown renderer costs ~0.15 s at start-up
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"traceback": os.environ.get("NNCLI_TRACEBACK", "") not in ("", "0"), "json": False}

JSON_HELP = "Print one JSON document on stdout (nothing else there); logs go to stderr."
SPEC_HELP = "The network spec (YAML)."


# The training choices live once, in the torch-free nncli.train.config.
Optimizer = Enum("Optimizer", {v: v for v in OPTIMIZERS}, type=str)


class DType(str, Enum):
    float32 = "float32"
    float64 = "float64"
    float16 = "float16"
    bfloat16 = "bfloat16"


def _json_flag() -> bool:
    return typer.Option(False, "--json", help=JSON_HELP)


def _print_version(value: bool) -> None:
    # An eager option callback: runs while parsing, so `nncli --version` needs no command
    # (checked inside _root it never ran: the group first failed with "Missing command").
    if value:
        from importlib.metadata import version as pkg_version

        typer.echo(f"nncli {pkg_version('nncli')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    traceback: bool = typer.Option(False, "--traceback", help="Show the Python traceback of an error (for bug reports)."),
    version: bool = typer.Option(False, "--version", help="Print nncli's version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    _state["traceback"] = _state["traceback"] or traceback


def _load(spec: Path):
    from nncli.spec import load_spec

    return load_spec(spec)


def _fail_check(message: str) -> None:
    """A check ran and found a problem: exit 1 after the report was printed."""
    raise CheckFailed(message)


# -- check ----------------------------------------------------------------------------------------
@app.command()
def check(
    spec: Path = typer.Argument(..., help=SPEC_HELP),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too, not only on errors."),
    json_out: bool = _json_flag(),
) -> None:
    """Validate a spec: print the layer table and lint findings.

    Lints: affine layers with no nonlinearity between them (just a linear predictor), Softmax
    before a cross-entropy loss (which takes logits), deep sigmoid/tanh stacks without
    normalisation or skips, a bias right before BatchNorm, Dropout right before BatchNorm.
    Exit 1 on an error-level finding (on any warning with --strict), 2 on a bad spec.
    """
    _state["json"] = json_out
    from nncli.lint import check_spec

    result = check_spec(_load(spec))
    render.emit(result, json_out, render.check.show)
    counts = result.counts()
    if counts["error"] or (strict and counts["warning"]):
        _fail_check(f"{counts['error']} error(s), {counts['warning']} warning(s)"
                    + (" (--strict)" if strict and not counts["error"] else ""))


# -- params ---------------------------------------------------------------------------------------
@app.command()
def params(
    spec: Path = typer.Argument(..., help=SPEC_HELP),
    depth: int = typer.Option(1, "--depth", min=0, help="How deep to open nested blocks (Residual, Repeat): 0 = top level only."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", min=1, help="Batch size for FLOPs and activation memory."),
    dtype: DType = typer.Option(DType.float32, "--dtype", help="Element type for memory figures."),
    optimizer: Optimizer = typer.Option(Optimizer.adam, "--optimizer", help="Optimizer whose state is counted (sgd: momentum buffer; adam/adamw: two moments)."),
    max_params: Optional[str] = typer.Option(None, "--max-params", help="Gate: exit 1 if total parameters exceed this (e.g. 25M, 1.5e9)."),
    max_flops: Optional[str] = typer.Option(None, "--max-flops", help="Gate: exit 1 if forward FLOPs for the batch exceed this (e.g. 4G)."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="Gate: exit 1 if estimated training memory exceeds this (e.g. 2GiB, 500MB)."),
    json_out: bool = _json_flag(),
) -> None:
    """Count parameters, buffers, FLOPs and memory per layer, without allocating weights.

    Counting runs on meta tensors: a 100-billion-parameter spec takes seconds and little memory.
    FLOPs come from torch's own FLOP counter (a multiply-add counts 2). Memory is an estimate
    for one training step: weights, buffers, activations saved for backward, gradients and the
    optimizer's state. Budget gates (--max-params, --max-flops, --max-memory) exit 1 when
    exceeded and say by how much.
    """
    _state["json"] = json_out
    from nncli.params import Budget, count

    budget = Budget.parse(max_params=max_params, max_flops=max_flops, max_memory=max_memory)
    report = count(_load(spec), batch_size=batch_size, dtype=dtype.value, optimizer=optimizer.value,
                   depth=depth, budget=budget)
    render.emit(report, json_out, render.params.show)
    failed = [g for g in report.gates if not g.ok]
    if failed:
        _fail_check("; ".join(f"{g.name}: {g.message}" for g in failed))


# -- diagram --------------------------------------------------------------------------------------
class DiagramView(str, Enum):
    layers = "layers"
    neurons = "neurons"


class DiagramFormat(str, Enum):
    svg = "svg"
    png = "png"
    pdf = "pdf"
    dot = "dot"


class Rankdir(str, Enum):
    TB = "TB"
    LR = "LR"


@app.command()
def diagram(
    spec: Path = typer.Argument(..., help=SPEC_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="File to write (replaced if it exists); its extension picks the format: .svg, .png, .pdf, .dot."),
    fmt: Optional[DiagramFormat] = typer.Option(None, "--format", "-f", help="Output format, when the extension does not say (must agree with it when it does)."),
    view: DiagramView = typer.Option(DiagramView.layers, "--view", help="layers: a node per layer, edges labelled with shapes. neurons: a node per unit and an edge per weight (small MLPs only)."),
    expand: bool = typer.Option(False, "--expand", help="Unroll every Repeat (by default one box marked xN)."),
    depth: Optional[int] = typer.Option(None, "--depth", min=0, help="How many levels of nested blocks open: 0 draws each Residual/Repeat as one box. Default: all."),
    rankdir: Optional[Rankdir] = typer.Option(None, "--rankdir", help="Layout direction: TB (top to bottom) or LR. Default TB for layers, LR for neurons."),
    weights: bool = typer.Option(False, "--weights", help="Neuron view: colour (sign) and width (size) edges by the initial weights (seeded)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the initial weights shown with --weights."),
    json_out: bool = _json_flag(),
) -> None:
    """Draw the network with graphviz: a diagram from which anyone can rebuild it.

    Layer view: a node per layer with its type, defining arguments and parameter count; edges
    carry the tensor shape (batch as N); a Residual is a fork, its body, its shortcut (a red skip
    edge when it is the identity) and an add node; a Repeat is one xN box unless --expand.
    Neuron view (--view neurons): the classical MLP picture, refused above 200 units or 2,000
    weights. DOT is written without graphviz's `dot` program; svg/png/pdf need it, and where it is
    missing the .dot source is written next to the output and the command exits 2 saying how to
    install graphviz. --json prints the graph (nodes, edges, clusters).
    """
    _state["json"] = json_out
    from nncli.diagram import draw

    result = draw(_load(spec), output, fmt=fmt.value if fmt else None, view=view.value, expand=expand,
                  depth=depth, rankdir=rankdir.value if rankdir else None, weights=weights, seed=seed)
    render.emit(result, json_out, render.diagram.show)


# -- probe ----------------------------------------------------------------------------------------
def _parse_int_list(text: str, flag: str, *, low: int = 0) -> list[int]:
    """'2,4,8' -> [2, 4, 8]; InputError (exit 2) on anything else."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        values = [int(t) for t in items]
    except ValueError:
        values = []
    if not values or any(v < low for v in values):
        raise InputError(f"{flag}: expected a comma-separated list of integers >= {low}, found {text!r}",
                         hint=f"e.g. {flag} 2,4,8,16")
    return values


@app.command()
def probe(
    spec: Path = typer.Argument(..., help=SPEC_HELP),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds: one build (weights) and one random batch per seed; results are aggregated over them."),
    batch_size: int = typer.Option(128, "--batch-size", "-b", min=2, help="Examples in each probe batch (and in each training step of --steps)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Probe on inputs from this file (.npz, .npy, .csv, .pt; shaped like the spec's input) instead of N(0, 1) noise."),
    steps: int = typer.Option(0, "--steps", min=0, help="Also train each seed's network N optimizer steps (the spec's train: section; default adam, lr 1e-3) on random targets, probe again and show both."),
    optimizer: Optional[Optimizer] = typer.Option(None, "--optimizer", help="Optimizer for --steps (overrides the spec's train.optimizer)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate for --steps (overrides the spec's train.lr)."),
    sweep_depth: Optional[str] = typer.Option(None, "--sweep-depth", help="Comma-separated copy counts for the spec's first Repeat, e.g. 2,4,8,16,32: R against depth, with the exponential law fitted."),
    min_ratio: float = typer.Option(1e-3, "--min-ratio", help="Vanishing when R (first/last activation-gradient norm) is below this."),
    max_ratio: float = typer.Option(1e3, "--max-ratio", help="Exploding when R is above this."),
    max_growth: float = typer.Option(1e3, "--max-growth", help="Exploding (vanishing) when the forward RMS grows (shrinks) by more than this from the first layer to the output."),
    min_gamma: Optional[float] = typer.Option(None, "--min-gamma", help="Also vanishing when the per-layer factor gamma = R^(1/(L-1)) is below this (off by default)."),
    max_gamma: Optional[float] = typer.Option(None, "--max-gamma", help="Also exploding when gamma is above this (off by default)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a plot (.png, .svg, .pdf): ||dL/dh|| per layer on a log scale; with --sweep-depth also R against depth."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (auto picks CUDA when present)."),
    json_out: bool = _json_flag(),
) -> None:
    """Probe for vanishing and exploding gradients, layer by layer, at initialisation.

    Per layer of the main path (Repeats expanded, each Residual one row with its own layers
    below it), over several seeds: activation mean/std, dead ReLU units, saturated sigmoid/tanh
    outputs, ||dL/dh|| of the layer's output, ||dL/dW|| and ||dL/dW||/||W||. The loss is a fixed
    random projection of the output, so dL/dh measures the backward Jacobians alone.
    Verdict from R = ||dL/dh_first|| / ||dL/dh_last||, gamma = R^(1/(L-1)) and the forward
    growth G: healthy, vanishing, exploding or non-finite, with the reason and a hint.
    Exit 0 when healthy, 1 when not (at init or after --steps), 2 on bad input.
    """
    _state["json"] = json_out
    from nncli.probe import Thresholds, probe as run_probe
    from nncli.render.plots import check_plot_path, probe_plot

    if plot is not None:
        check_plot_path(plot)
    thresholds = Thresholds(min_ratio=min_ratio, max_ratio=max_ratio, max_growth=max_growth,
                            min_gamma=min_gamma, max_gamma=max_gamma)
    report = run_probe(
        _load(spec), seeds=_parse_int_list(seeds, "--seeds"), batch_size=batch_size, data=data, steps=steps,
        sweep_depths=_parse_int_list(sweep_depth, "--sweep-depth", low=1) if sweep_depth else None,
        thresholds=thresholds, device=device, optimizer=optimizer.value if optimizer else None, lr=lr)
    if plot is not None:
        report.plot = str(probe_plot(report, plot))
    render.emit(report, json_out, render.probe.show)
    if plot is not None and not json_out:
        render.stderr_console().print(f"wrote {render.escape(str(plot))}")
    if not report.ok:
        bad = [f"{label}: {res.verdict.value}" for label, res in (("at init", report.init), ("after steps", report.after))
               if res is not None and not res.healthy]
        _fail_check("gradients not healthy (" + "; ".join(bad) + ")")


# -- train / evaluate / predict -------------------------------------------------------------------
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


DEVICE_HELP = "auto, cpu, cuda or cuda:N (auto picks CUDA when present)."


@app.command()
def train(
    spec: Optional[Path] = typer.Argument(None, help=SPEC_HELP + " Optional with --resume."),
    data: Optional[str] = typer.Option(None, "--data", help="Data set (moons, circles, spirals, xor, blobs, regression, digits) or a .npz/.csv/.pt file; overrides the spec's data:."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs to train (with --resume: train longer)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (the peak for onecycle)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1, help="Global batch size (split across DDP processes)."),
    optimizer: Optional[Optimizer] = typer.Option(None, "--optimizer", help="sgd (with --momentum, --nesterov), adam or adamw."),
    loss: Optional[Loss] = typer.Option(None, "--loss", help="cross_entropy (on logits), mse or bce_with_logits."),
    schedule: Optional[Schedule] = typer.Option(None, "--schedule", help="Learning-rate schedule, stepped every batch."),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", min=0, help="Linear warmup steps before the schedule."),
    momentum: Optional[float] = typer.Option(None, "--momentum", help="SGD momentum."),
    nesterov: Optional[bool] = typer.Option(None, "--nesterov/--no-nesterov", help="Nesterov momentum (sgd)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Weight decay (decoupled for adamw)."),
    clip_grad_norm: Optional[float] = typer.Option(None, "--clip-grad-norm", help="Clip the global gradient norm to this."),
    patience: Optional[int] = typer.Option(None, "--patience", min=1, help="Early stopping: epochs without validation improvement."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Seed for weights, dropout, data order, augmentation."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    amp: Optional[Amp] = typer.Option(None, "--amp", help="Mixed precision: bf16, or fp16 with a gradient scaler."),
    compile_model: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", min=0, help="Also checkpoint every N steps inside an epoch."),
    skip_nonfinite: Optional[bool] = typer.Option(None, "--skip-nonfinite/--stop-nonfinite", help="Skip batches with a non-finite loss instead of stopping."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (new or empty); default runs/<spec>-<time>."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder exactly where it stopped."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write loss and accuracy curves to this .png/.svg/.pdf."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log to <run>/tensorboard (needs the tensorboard package)."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", min=1, help="Processes per node for DDP (gloo on CPU, nccl on CUDA, one GPU each)."),
    nnodes: int = typer.Option(1, "--nnodes", min=1, help="Nodes taking part (multi-node DDP)."),
    node_rank: int = typer.Option(0, "--node-rank", min=0, help="This node's rank, 0..nnodes-1."),
    master_addr: str = typer.Option("127.0.0.1", "--master-addr", help="Address of the node with rank 0 (multi-node)."),
    master_port: int = typer.Option(29500, "--master-port", help="Port for the rendezvous on the master node."),
    json_out: bool = _json_flag(),
) -> None:
    """Train a spec: data, loss, optimizer and schedule from its data:/train: sections and flags.

    Writes a run folder: run.yaml (resolved config), spec.yaml, metrics.jsonl/.csv,
    checkpoints/best.pt and last.pt, report.json. Progress goes to stderr; --json prints the
    final summary on stdout. Ctrl-C saves a checkpoint and exits 130 (continue with --resume).
    A non-finite loss stops training with the step and the first layer whose output went
    non-finite, keeps the last good checkpoint and exits 1 (or --skip-nonfinite).
    """
    _state["json"] = json_out
    from nncli.train import launch_distributed, run_training

    if plot is not None:
        from nncli.render.plots import check_plot_path

        check_plot_path(plot)
    values = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "optimizer": optimizer, "loss": loss,
              "schedule": schedule, "warmup_steps": warmup_steps, "momentum": momentum, "nesterov": nesterov,
              "weight_decay": weight_decay, "clip_grad_norm": clip_grad_norm, "patience": patience,
              "seed": seed, "amp": amp, "compile": compile_model, "checkpoint_every": checkpoint_every,
              "skip_nonfinite": skip_nonfinite}
    overrides = {"train": {k: (v.value if isinstance(v, Enum) else v) for k, v in values.items() if v is not None}}
    if data is not None:
        overrides["data"] = data
    loaded = _load(spec) if spec is not None else None
    if nproc_per_node > 1 or nnodes > 1:
        if node_rank >= nnodes:
            raise InputError(f"--node-rank {node_rank}: expected a rank below --nnodes {nnodes}")
        result = launch_distributed(
            loaded, overrides, out, nproc_per_node=nproc_per_node, nnodes=nnodes, node_rank=node_rank,
            master_addr=master_addr, master_port=master_port, device=device, resume=resume,
            observer_factory=render.train.TrainProgress, tensorboard=tensorboard)
        if result is None:
            render.stderr_console().print(f"node {node_rank}: workers finished; rank 0 writes the run and its report")
            return
    else:
        with render.train.TrainProgress() as progress:
            result = run_training(loaded, overrides, out, device=device, resume=resume, observer=progress,
                                  tensorboard=tensorboard)
    if plot is not None and result.history:
        render.plots.train_plot(result, plot)
        result.plot = str(plot)
    render.emit(result, json_out, render.train.show)
    if result.status == "nonfinite":
        _fail_check(result.message)
    if result.status == "interrupted":
        raise typer.Exit(int(ExitCode.INTERRUPTED))


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder written by nncli train."),
    split: Split = typer.Option(Split.test, "--split", help="Which split to evaluate (all: train, val and test)."),
    checkpoint: CheckpointKind = typer.Option(CheckpointKind.best, "--checkpoint", help="best (by validation) or last."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    json_out: bool = _json_flag(),
) -> None:
    """Loss and accuracy of a run's checkpoint on a data split (same data, split and normalisation)."""
    _state["json"] = json_out
    from nncli.evaluate import evaluate_run

    result = evaluate_run(run_dir, split.value, checkpoint=checkpoint.value, device=device)
    render.emit(result, json_out, render.evaluate.show)


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder written by nncli train."),
    input_path: Path = typer.Argument(..., metavar="INPUT", help="Inputs, one example per row: .npz, .npy, .csv (features only) or .pt."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the predictions to this .csv or .npz."),
    checkpoint: CheckpointKind = typer.Option(CheckpointKind.best, "--checkpoint", help="best (by validation) or last."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists (never the input file)."),
    json_out: bool = _json_flag(),
) -> None:
    """Predict with a trained run: classes and probabilities, or regression outputs."""
    _state["json"] = json_out
    from nncli.evaluate import predict as run_predict

    result = run_predict(run_dir, input_path, out=out, checkpoint=checkpoint.value, device=device,
                         force=force)
    render.emit(result, json_out, render.evaluate.predictions)


# -- sweep / compare ------------------------------------------------------------------------------
SweepMetric = Enum("SweepMetric", {v: v for v in METRICS}, type=str)


def _parse_set(items: List[str]) -> dict:
    """``--set train.epochs=3`` -> ``{"train.epochs": 3}`` (the value read as YAML)."""
    import yaml

    out = {}
    for item in items:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise InputError(f"--set {item!r}: expected PATH=VALUE, e.g. --set train.epochs=5")
        try:
            out[path.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise InputError(f"--set {item!r}: the value is not valid YAML") from None
    return out


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., metavar="SWEEP", help="The sweep file (YAML): a base spec and the fields to vary."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Sweep folder; default runs/sweep-<name>. Rerunning into the same folder resumes: finished trials are not run again."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Trials trained in parallel, each in its own process (1: in this process)."),
    trials: Optional[int] = typer.Option(None, "--trials", "-n", min=1, help="Random search: this many configurations drawn from the grid / distributions."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the random search (default: the file's search_seed, else 0)."),
    metric: Optional[SweepMetric] = typer.Option(None, "--metric", help="Validation metric to rank by (default: the file's, else accuracy for classification, loss otherwise)."),
    set_: List[str] = typer.Option([], "--set", help="PATH=VALUE applied to every trial, e.g. --set train.epochs=5 (repeatable)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP + " Every trial uses it."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write validation metric against each swept value to this .png/.svg/.pdf."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List and validate the trials (with parameters and FLOPs); train nothing."),
    json_out: bool = _json_flag(),
) -> None:
    """Train variants of a spec and rank them by validation metric; the winner's spec is written.

    The sweep file names a base spec (`base: file.yaml`, an inline `spec:`, or `specs: [...]`) and
    a `grid:` or `random:` section over any spec field by path (layers[2].Repeat.times,
    layers[0].Linear.out_features, train.lr, data.noise), `replace:ReLU: [ReLU, Tanh]` to swap a
    layer type, `seeds: [0, 1, 2]` for repeats (mean ± sd) and `set:` for fixed values. Each run is
    a normal train run folder inside the sweep folder; a failing trial is recorded and the others
    go on. Test metrics are reported for the winner only. Exit 0 when a winner was found, 1 when
    no trial finished, 2 on a bad sweep file.
    """
    _state["json"] = json_out
    from nncli.device import resolve_device
    from nncli.sweep import load_sweep, run_sweep

    resolve_device(device)  # a bad or absent device is one input error (exit 2), not N failed trials
    if plot is not None:
        from nncli.render.plots import check_plot_path

        check_plot_path(plot)
    plan = load_sweep(sweep_file, trials=trials, search_seed=seed, extra_set=_parse_set(set_),
                      metric=metric.value if metric else None)
    try:
        result = run_sweep(plan, out, workers=workers, device=device, dry_run=dry_run,
                           progress=render.sweep.SweepProgress())
    except KeyboardInterrupt:
        render.stderr_console().print("interrupted: finished runs are kept and a run in progress saved a "
                                      "checkpoint; rerun the same command to resume")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    if plot is not None and result.best is not None:
        result.plot = render.plots.sweep_plot(result, plot)
    render.emit(result, json_out, render.sweep.show)
    if not dry_run and result.best is None:
        _fail_check(f"no trial of the sweep finished ({result.failed} run(s) failed)")


@app.command()
def compare(
    runs: List[Path] = typer.Argument(..., metavar="RUN...", help="Run folders (nncli train) or sweep folders (their trial runs)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the loss and accuracy curves of every run, in one figure, to this .png/.svg/.pdf."),
    json_out: bool = _json_flag(),
) -> None:
    """Finished runs side by side: metrics per split, the settings that differ, curves in one plot.

    Settings are read from each run's run.yaml and spec.yaml and flattened to paths (train.lr,
    layers[0].Linear.out_features); only the ones that differ are listed. The best value of each
    metric column is bold.
    """
    _state["json"] = json_out
    from nncli.compare import compare_runs

    if plot is not None:
        from nncli.render.plots import check_plot_path

        check_plot_path(plot)
    result = compare_runs(runs)
    if plot is not None:
        result.plot = render.plots.compare_plot(result, plot)
    render.emit(result, json_out, render.compare.show)


# -- gradcheck ------------------------------------------------------------------------------------
GradObjective = Enum("GradObjective", {v: v for v in OBJECTIVES}, type=str)
GradMode = Enum("GradMode", {v: v for v in MODES}, type=str)


@app.command()
def gradcheck(
    spec: Path = typer.Argument(..., help=SPEC_HELP),
    batch: int = typer.Option(DEFAULT_BATCH, "--batch", "-b", min=1, help="Examples in the fixed batch every evaluation uses."),
    data: Optional[Path] = typer.Option(None, "--data", help="Take the batch from this file (.npz/.npy with an `x` array, .pt, .csv) instead of N(0, 1) inputs."),
    objective: GradObjective = typer.Option(GradObjective.projection, "--objective", help="What the end-to-end check differentiates: a fixed random projection <R, f(x)> of the output, or cross-entropy with random targets (loss). Never a plain sum: its gradient through BatchNorm is zero."),
    mode: GradMode = typer.Option(GradMode.train, "--mode", help="Check in train mode (BatchNorm batch statistics, Dropout on, its mask replayed) or eval mode; the model's own modes are restored."),
    exhaustive: bool = typer.Option(False, "--exhaustive", help="Check every coordinate of every tensor (perturbations vectorised with torch.func.vmap) instead of random directions."),
    directions: int = typer.Option(DEFAULT_DIRECTIONS, "--directions", "-k", min=1, help="Random Gaussian directions per tensor (default mode)."),
    rtol: float = typer.Option(DEFAULT_RTOL, "--rtol", help="Relative tolerance: fail when |<g,v> - D| > atol + rtol |g|."),
    atol: float = typer.Option(DEFAULT_ATOL, "--atol", help="Absolute tolerance (matters where the gradient is ~0)."),
    eps: float = typer.Option(DEFAULT_EPS, "--eps", help="Finite-difference step h (float64)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the weights, inputs, projection, directions and the replayed RNG."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    json_out: bool = _json_flag(),
) -> None:
    """Check every layer's gradients against finite differences and name the broken layer.

    float64, a fixed batch. Each layer (nested ones inside Residual/Repeat too) is checked in
    isolation, as Caffe's checker does, on the real input that reaches it and a random upstream
    gradient G (objective <G, layer(x)>), so a wrong backward is pinned to its layer; then the
    whole model once, end to end. For each parameter tensor and each layer input, k Gaussian
    directions v: the central difference D = (F(w + h v) - F(w - h v)) / 2h against <g, v>;
    relative error |<g, v> - D| / |g|; a tensor fails when |<g, v> - D| > atol + rtol |g|.

    Detection bound: a gradient error e shows as <e, v> ~ N(0, |e|^2), so k directions all miss
    it with probability erf(rtol |g| / (|e| sqrt 2))^k <= (0.8 rtol |g| / |e|)^k. Defaults
    (rtol 1e-5, k 3): an error of 0.1% of |g| escapes with probability 5.1e-7, 0.01% with 5.1e-4,
    2% with 6.3e-11.

    Kinks (ReLU at 0, max-pool ties, Step, abs) are told apart from errors by halving the step and
    comparing one-sided slopes; they are retried along new directions (then at a slightly jittered
    input) and reported as "kink", never as FAIL. Custom layers also get structural checks: two
    backward passes agree, a zero upstream gradient gives zero, backward is linear in it.
    Dropout and other RNG use replay one seed per evaluation; weights, BatchNorm statistics, RNG
    state and train/eval mode are restored. A spec too big for float64 in this machine's memory
    is refused before anything is allocated (exit 2). Exit 0 when nothing fails, 1 on any FAIL.
    """
    _state["json"] = json_out
    from nncli.device import resolve_device
    from nncli.gradcheck import gradcheck as run_gradcheck

    report = run_gradcheck(_load(spec), batch=batch, data=data, objective=objective.value, mode=mode.value,
                           exhaustive=exhaustive, directions=directions, rtol=rtol, atol=atol, eps=eps,
                           seed=seed, device=resolve_device(device))
    render.emit(report, json_out, render.gradcheck.show)
    if not report.ok:
        _fail_check(report.diagnosis)


# -- entry point ----------------------------------------------------------------------------------
def main(argv: List[str] | None = None) -> int:
    """Console-script entry point: run the app, map errors to exit codes."""
    try:  # typer >= 0.26 vendors click; older releases depend on it
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click import ClickException

    args = sys.argv[1:] if argv is None else list(argv)
    # Per call, not per process: tests and embedding programs call main() many times.
    _state["traceback"] = ("--traceback" in args
                           or os.environ.get("NNCLI_TRACEBACK", "") not in ("", "0"))
    _state["json"] = False
    try:
        rv = app(args=args, prog_name="nncli", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except NncliError as err:
        if _state["traceback"]:
            raise
        if isinstance(err, CheckFailed):
            render.stderr_console().print(f"[bold red]check failed:[/] {render.escape(str(err))}")
            code = int(err.exit_code)
        else:
            render.error(err, _state["json"])
            code = int(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        render.stderr_console().print("interrupted")
        code = int(ExitCode.INTERRUPTED)
    except ClickException as exc:  # bad flag or argument: typer/click's own message
        exc.show()
        code = int(ExitCode.BAD_INPUT)
    except typer.Exit as exc:
        code = exc.exit_code
    except BrokenPipeError:  # `nncli params ... | head`
        code = 0
    except Exception as exc:  # a bug in nncli, not a user mistake: say so briefly
        if _state["traceback"]:
            raise
        render.stderr_console().print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {render.escape(str(exc))}\n"
            "  this is a bug in nncli; run again with --traceback and report it")
        code = int(ExitCode.INTERNAL)
    sys.stdout.flush()
    return code


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
