"""Report objects -> rich tables or JSON. The only module that formats for the terminal.

Every command's result object has ``to_json()``; the human view is a function here taking a
console and that object, so the table and ``--json`` are fed by the same numbers. Human output
goes to stdout through rich, which honours NO_COLOR and plain (non-TTY) streams; progress and
errors go to stderr.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from nncli.formatting import fmt_bytes, fmt_float, fmt_int, fmt_shape, fmt_si, jsonable, plain_value

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _color_system() -> str | None:
    # rich's own NO_COLOR handling drops colours but still writes bold/italic escapes on a
    # terminal; no-color.org users (and screen readers, log files) want plain text.
    return None if os.environ.get("NO_COLOR") else "auto"


def stdout_console() -> Console:
    # Piped or redirected output is read by scripts and diffs: do not wrap it at 80 columns.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "200"))
    return Console(highlight=False, soft_wrap=False, width=width, color_system=_color_system())


def stderr_console() -> Console:
    # soft_wrap: a located error is one line (rich would cut `file:line: spec.path` at 80
    # columns on a non-TTY, where CI logs and `2> err.txt` read it).
    return Console(stderr=True, highlight=False, soft_wrap=True, color_system=_color_system())


def emit(result: Any, as_json: bool, human: Callable[[Console, Any], None],
         console: Console | None = None) -> None:
    """Print ``result``: one JSON document on stdout, or the human view."""
    if as_json:
        print_json(result.to_json())
    else:
        human(console or stdout_console(), result)


def print_json(doc: Any, file=None) -> None:
    """Write ``doc`` as one strict JSON document (cleaned by :func:`jsonable`) and flush."""
    file = file or sys.stdout
    file.write(json.dumps(jsonable(doc), indent=2, allow_nan=False) + "\n")
    file.flush()


def error(err, as_json: bool) -> None:
    """Report an NncliError: a located message on stderr; with --json also a JSON document."""
    stderr_console().print(f"[bold red]error:[/] {_escape(str(err))}")
    if as_json:
        print_json(err.to_json())


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def table(title: str | None = None, **kwargs) -> Table:
    return Table(title=title, title_justify="left", header_style="bold", **kwargs)


# -- check -------------------------------------------------------------------------------------
def findings(console: Console, items) -> None:
    """Lint findings, one per line, with severity, location and the fix."""
    for f in items:
        style = _SEVERITY_STYLE.get(f.severity, "")
        where = f" {f.location}" if f.location else ""
        console.print(f"[{style}]{f.severity}[/] {_escape(f'[{f.code}]')}{_escape(where)}: {_escape(f.message)}")
        if f.hint:
            console.print(f"    hint: {_escape(f.hint)}", highlight=False)


def layer_rows_table(title: str, rows) -> Table:
    t = table(title)
    for col, just in (("#", "right"), ("name", "left"), ("type", "left"), ("output shape", "left"),
                      ("params", "right")):
        t.add_column(col, justify=just)
    for r in rows:
        t.add_row(str(r.index), _escape(r.name), _escape(r.type), fmt_shape(r.output_shape), fmt_int(r.params))
    return t


def check(console: Console, result) -> None:
    console.print(layer_rows_table(
        f"{result.name}: input {fmt_shape(result.input_shape)} -> output {fmt_shape(result.output_shape)}",
        result.layers))
    console.print(f"total parameters: {fmt_int(result.total_params)}")
    if result.findings:
        findings(console, result.findings)
    counts = result.counts()
    console.print(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s)")


# -- params ------------------------------------------------------------------------------------
def params(console: Console, report) -> None:
    t = table(f"{report.name}: input {fmt_shape(report.input_shape)} -> output {fmt_shape(report.output_shape)}")
    for col, just in (("#", "right"), ("name", "left"), ("type", "left"), ("output shape", "left"),
                      ("params", "right"), ("trainable", "right"), ("buffers", "right"), ("FLOPs", "right")):
        t.add_column(col, justify=just)
    for row in report.layers:
        indent = "  " * row.depth
        t.add_row(row.index_label, indent + _escape(row.name), _escape(row.type), fmt_shape(row.output_shape),
                  fmt_int(row.params), fmt_int(row.trainable), fmt_int(row.buffers), fmt_si(row.flops))
    console.print(t)
    m = report.memory
    summary = table(show_header=False, box=None)
    summary.add_column(justify="left")
    summary.add_column(justify="right")
    for label, value in (
        ("total parameters", fmt_int(report.total)),
        ("trainable", fmt_int(report.trainable)),
        ("non-trainable", fmt_int(report.non_trainable)),
        ("buffers", fmt_int(report.buffers)),
        (f"FLOPs per example (forward)", fmt_si(report.flops_per_example)),
        (f"FLOPs for batch {m.batch_size} (forward)", fmt_si(report.flops)),
        (f"weights ({m.dtype})", fmt_bytes(m.weights)),
        (f"buffers ({m.dtype})", fmt_bytes(m.buffers)),
        (f"activations kept for backward (batch {m.batch_size})", fmt_bytes(m.activations)),
        ("gradients", fmt_bytes(m.gradients)),
        (f"optimizer state ({m.optimizer})", fmt_bytes(m.optimizer_state)),
        ("total training memory (estimate)", fmt_bytes(m.total)),
    ):
        summary.add_row(label, value)
    console.print(summary)
    for gate in report.gates:
        status = "[green]ok[/]" if gate.ok else "[bold red]EXCEEDED[/]"
        console.print(f"gate {gate.name}: {status} ({_escape(gate.message)})")


# -- diagram -----------------------------------------------------------------------------------
def diagram(console: Console, result) -> None:
    """One line: the file written, its format and the size of the graph."""
    d = result.diagram
    console.print(f"wrote {_escape(str(result.output))} ({result.format}, {d.view} view of {_escape(d.name)}): "
                  f"{result.node_count:,} nodes, {result.edge_count:,} edges")


# -- probe -------------------------------------------------------------------------------------
_VERDICT_STYLE = {"healthy": "bold green", "vanishing": "bold yellow", "exploding": "bold red",
                  "non-finite": "bold red"}
_EIGHTHS = " ▏▎▍▌▋▊▉"


def log_bars(values, width: int = 40, min_decades: int = 4) -> tuple[list[str], float, float]:
    """Bars proportional to log10 of positive values, on a shared axis of whole decades.

    The axis spans at least ``min_decades`` so that a healthy net's near-equal gradients show as
    near-equal bars (a min..max axis would blow small wobbles up to full width). Zero, NaN and inf
    get a marker instead of a bar.

    Returns:
        (bars, low, high): one string per value, and the axis ends as powers of ten.
    """
    logs = [math.log10(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if not logs:
        return ["(no positive value)" for _ in values], 0.0, 0.0
    high = math.ceil(max(logs))
    low = min(math.floor(min(logs)), high - min_decades)
    bars = []
    for v in values:
        if v is None or not math.isfinite(v) or v <= 0:
            bars.append("0" if v == 0 else str(v))
            continue
        eighths = round((math.log10(v) - low) / (high - low) * width * 8)
        eighths = max(eighths, 1)
        bars.append("█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else ""))
    return bars, float(low), float(high)


def probe_bar_chart(console: Console, rows, title: str, width: int = 40) -> None:
    """Terminal bar chart of ||dL/dh|| per main-path layer, log scale."""
    bars, low, high = log_bars([r.grad_norm for r in rows], width=width)
    t = table(f"{title}: ||dL/dh|| per layer, log scale 1e{low:.0f} .. 1e{high:.0f}", box=None,
              pad_edge=False)
    t.add_column("#", justify="right")
    t.add_column("layer", justify="left")
    t.add_column("", justify="left", no_wrap=True, min_width=width)
    t.add_column("||dL/dh||", justify="right")
    for r, bar in zip(rows, bars):
        t.add_row(str(r.index), _escape(f"{r.name} ({r.type})"), bar, fmt_float(r.grad_norm))
    console.print(t)


def _probe_table(result, title: str) -> Table:
    t = table(title)
    for col, just in (("#", "right"), ("name", "left"), ("type", "left"), ("act mean", "right"),
                      ("act std", "right"), ("dead", "right"), ("saturated", "right"),
                      ("||dL/dh||", "right"), ("||dL/dW||", "right"), ("||dL/dW||/||W||", "right")):
        t.add_column(col, justify=just)

    def pct(x):
        return "-" if x is None else f"{x:.0%}" if x in (0, 1) else f"{x:.1%}"

    def add(r, depth):
        style = "dim" if depth else None
        t.add_row("" if r.index is None else str(r.index), "  " * depth + _escape(r.name), _escape(r.type),
                  fmt_float(r.act_mean), fmt_float(r.act_std), pct(r.dead_frac), pct(r.saturated_frac),
                  fmt_float(r.grad_norm), fmt_float(r.weight_grad_norm), fmt_float(r.weight_grad_ratio),
                  style=style)
        for c in r.inner:
            add(c, depth + 1)

    for r in result.layers:
        add(r, 0)
    return t


def _probe_verdict(console: Console, result, label: str) -> None:
    v = result.verdict.value
    console.print(f"verdict {label}: [{_VERDICT_STYLE.get(v, '')}]{v.upper()}[/]  "
                  f"R = {fmt_float(result.ratio)}  gamma = {fmt_float(result.gamma)} per layer "
                  f"(L = {result.depth})  forward growth G = {fmt_float(result.growth)}")
    console.print("  per seed R: " + ", ".join(f"{s.seed}: {fmt_float(s.ratio)} ({s.verdict.value})"
                                                for s in result.seeds))
    console.print(f"  why: {_escape(result.explanation)}")
    if result.hint:
        console.print(f"  hint: {_escape(result.hint)}")


def probe(console: Console, report) -> None:
    """``nncli probe``: per-layer table, bar chart, verdict; after --steps and a sweep when run."""
    th = report.thresholds
    console.print(f"[bold]{_escape(report.name)}[/]: seeds {', '.join(map(str, report.seeds))}; inputs "
                  f"{_escape(report.inputs)}; device {report.device}")
    console.print(f"loss: {_escape(report.loss)}")
    console.print(_probe_table(report.init, "at initialisation (mean over seeds; gradient norms: geometric mean)"))
    probe_bar_chart(console, report.init.layers, "at initialisation")
    _probe_verdict(console, report.init, "at init")
    if report.after is not None:
        tr = report.training
        console.print(f"\n[bold]after {tr.steps} training steps[/] ({tr.optimizer}, lr {tr.lr:g}, "
                      f"{_escape(tr.loss)}; loss {fmt_float(tr.loss_first)} -> {fmt_float(tr.loss_last)})")
        console.print(_probe_table(report.after, f"after {tr.steps} steps"))
        probe_bar_chart(console, report.after.layers, f"after {tr.steps} steps")
        _probe_verdict(console, report.after, f"after {tr.steps} steps")
    if report.sweep is not None:
        probe_sweep(console, report.sweep)
    gates = (f"healthy when {th.min_ratio:g} <= R <= {th.max_ratio:g} and 1/{th.max_growth:g} <= G <= "
             f"{th.max_growth:g}")
    if th.min_gamma is not None or th.max_gamma is not None:
        gates += (f" and {th.min_gamma if th.min_gamma is not None else 0:g} <= gamma <= "
                  f"{th.max_gamma if th.max_gamma is not None else math.inf:g}")
    console.print(f"[dim]{gates} (--min-ratio, --max-ratio, --max-growth, --min-gamma, --max-gamma)[/]")


def probe_sweep(console: Console, sweep) -> None:
    """R against depth, with the fitted exponential law and where it breaks."""
    bars, low, high = log_bars([p.ratio for p in sweep.points], width=30)
    t = table(f"\nR against depth (copies of {sweep.repeat}); bars: log scale 1e{low:.0f} .. 1e{high:.0f}")
    for col, just in (("copies", "right"), ("layers L", "right"), ("R", "right"), ("gamma", "right"),
                      ("growth G", "right"), ("verdict", "left"), ("off fit (decades)", "right"),
                      ("", "left")):
        t.add_column(col, justify=just)
    for p, bar in zip(sweep.points, bars):
        t.add_row(str(p.times), str(p.depth), fmt_float(p.ratio), fmt_float(p.gamma), fmt_float(p.growth),
                  f"[{_VERDICT_STYLE.get(p.verdict.value, '')}]{p.verdict.value}[/]",
                  "-" if p.residual is None else f"{p.residual:+.2f}", bar)
    console.print(t)
    if sweep.log10_ratio_per_copy is not None:
        r2 = "" if sweep.r2 is None else f", r^2 = {sweep.r2:.3f}"
        console.print(f"exponential law: R ~ 10^({sweep.intercept:.2f}) * {fmt_float(sweep.gamma_per_copy)}^copies "
                      f"(log10 R changes by {sweep.log10_ratio_per_copy:+.2f} per copy{r2})")
    for b in sweep.breaks:
        console.print(f"  law breaks: {_escape(b)}")


# -- train / evaluate / predict ----------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


class TrainProgress:
    """Progress of ``nncli train`` on stderr: an epoch bar, a step bar with loss, accuracy,
    samples/s and ETA, and one printed line per epoch. An observer for
    :func:`nncli.train.run_training` (duck-typed: on_start, on_step, on_epoch, on_message).
    On a non-terminal stderr the bars stay silent and only the epoch lines appear."""

    def __init__(self, console: Console | None = None) -> None:
        # one line per run, never wrapped: logs are read (and grepped) line by line
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.progress = None

    def __enter__(self) -> "TrainProgress":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def on_start(self, info: dict) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        sizes = info["sizes"]
        what = "resuming" if info["resumed"] else "training"
        extras = [x for x in (f"amp {info['amp']}" if info["amp"] != "none" else "",
                              "compiled" if info["compile"] else "",
                              f"{info['world_size']} processes" if info["world_size"] > 1 else "") if x]
        self.console.print(
            f"{what} {_escape(info['spec'])} ({fmt_int(info['params'])} parameters) on {info['device']}"
            + (f" [{', '.join(extras)}]" if extras else "")
            + f": {sizes['train']:,} train / {sizes['val']:,} val / {sizes['test']:,} test examples"
            + f"\n  run folder: {_escape(info['run_dir'])}")
        if info["resumed"]:
            self.console.print(f"  continuing at epoch {info['epoch'] + 1}, step {info['step_in_epoch']}")
        self.epochs = info["epochs"]
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                                 console=self.console, transient=True, auto_refresh=False)
        # no refresh thread: the trainer calls on_step a few times a second at most, and a
        # background thread would compete with torch's own threads for the CPU and the GIL
        self.progress.start()
        self.epoch_task = self.progress.add_task("epochs", total=info["epochs"], completed=info["epoch"], stats="")
        self.step_task = self.progress.add_task(f"epoch {info['epoch'] + 1}/{info['epochs']}",
                                                total=info["steps_per_epoch"], completed=info["step_in_epoch"],
                                                stats="")

    def on_step(self, info: dict) -> None:
        if self.progress is None:
            return
        stats = f"loss {fmt_float(info['loss'], 4)}"
        if info.get("accuracy") is not None:
            stats += f"  acc {_pct(info['accuracy'])}"
        if info.get("samples_per_s"):
            stats += f"  {info['samples_per_s']:,.0f} samples/s"
        self.progress.update(self.step_task, completed=info["step"], stats=stats,
                             description=f"epoch {info['epoch']}/{info['epochs']}")
        self.progress.refresh()

    def on_epoch(self, record: dict) -> None:
        line = (f"epoch {record['epoch']:>3}/{record['epochs']}  train loss {fmt_float(record['train_loss'], 4)}"
                + (f" acc {_pct(record['train_accuracy'])}" if record.get("train_accuracy") is not None else ""))
        if record.get("val_loss") is not None:
            line += f"  val loss {fmt_float(record['val_loss'], 4)}"
            if record.get("val_accuracy") is not None:
                line += f" acc {_pct(record['val_accuracy'])}"
        line += f"  lr {fmt_float(record['lr'], 3)}  {record['samples_per_s']:,.0f} samples/s"
        if record.get("improved") and record.get("val_loss") is not None:
            line += "  *"
        self.console.print(line, highlight=False, soft_wrap=True)
        if self.progress is not None:
            self.progress.update(self.epoch_task, completed=record["epoch"])
            self.progress.reset(self.step_task, description=f"epoch {record['epoch'] + 1}/{self.epochs}", stats="")
            self.progress.refresh()

    def on_message(self, text: str) -> None:
        self.console.print(_escape(text))


def train(console: Console, result) -> None:
    """The final report of a training run: where, how fast, and the metrics per split."""
    style = {"completed": "green", "early_stopped": "green", "interrupted": "yellow", "nonfinite": "bold red"}
    status = f"[{style.get(result.status, '')}]{result.status}[/]"
    best = f", best epoch {result.best_epoch}" if result.best_epoch else ""
    console.print(f"{_escape(result.spec)}: {status} after {result.epochs}/{result.planned_epochs} epochs{best} "
                  f"({result.global_step:,} steps, {result.duration_s:.1f} s)")
    procs = f", {result.world_size} processes" if result.world_size > 1 else ""
    console.print(f"device {result.device}{procs}; {result.samples_per_s:,.0f} samples/s")
    if any(result.__dict__[s]["loss"] is not None for s in ("train", "val", "test")):
        t = table(None)
        for col, just in (("split", "left"), ("examples", "right"), ("loss", "right"), ("accuracy", "right")):
            t.add_column(col, justify=just)
        for split in ("train", "val", "test"):
            m = getattr(result, split)
            t.add_row(split, fmt_int(m.get("n")), fmt_float(m.get("loss"), 4), _pct(m.get("accuracy")))
        console.print(t)
    if result.message:
        console.print(_escape(result.message))
    console.print(f"run folder: {_escape(result.run_dir)}")
    if result.plot:
        console.print(f"plot: {_escape(result.plot)}")


def train_plot(result, path) -> None:
    """Loss (and accuracy, for classification) per epoch, train and validation, to ``path``."""
    from nncli.plot import new_figure, save_figure

    history = result.history
    epochs = [r["epoch"] for r in history]
    has_acc = any(r.get("train_accuracy") is not None for r in history)
    fig, axes = new_figure(ncols=2 if has_acc else 1, figsize=(10 if has_acc else 6, 4))
    panels = [("loss", axes[0])] + ([("accuracy", axes[1])] if has_acc else [])
    for metric, ax in panels:
        for split, style in (("train", "-"), ("val", "--")):
            values = [r.get(f"{split}_{metric}") for r in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [float("nan") if v is None else v for v in values], style, marker="o",
                        markersize=3, label=split)
        if result.best_epoch:
            ax.axvline(result.best_epoch, color="grey", linewidth=0.8, linestyle=":", label="best")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        if metric == "loss" and all((r.get("train_loss") or 0) > 0 for r in history):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{result.spec}: {result.status}, test accuracy {_pct(result.test.get('accuracy'))}"
                 if result.test.get("accuracy") is not None else f"{result.spec}: {result.status}")
    fig.tight_layout()
    save_figure(fig, path)


def evaluation(console: Console, result) -> None:
    """Metrics of a checkpoint per split."""
    console.print(f"{_escape(result.checkpoint)} ({result.kind}, after epoch {result.epoch}) on {result.device}")
    t = table(None)
    for col, just in (("split", "left"), ("examples", "right"), ("loss", "right"), ("accuracy", "right")):
        t.add_column(col, justify=just)
    for split, m in result.splits.items():
        t.add_row(split, fmt_int(m["n"]), fmt_float(m["loss"], 4), _pct(m["accuracy"]))
    console.print(t)


def predictions(console: Console, result, limit: int = 20) -> None:
    """The first rows of a prediction, with the model's confidence."""
    t = table(f"{result.n:,} predictions ({result.task})")
    t.add_column("#", justify="right")
    t.add_column("prediction", justify="right")
    if result.labels is not None:
        t.add_column("label")
    if result.probabilities is not None:
        t.add_column("confidence", justify="right")
    for i, pred in enumerate(result.predictions[:limit]):
        row = [str(i), _escape(str([round(v, 4) for v in pred] if isinstance(pred, list) else
                                   (round(pred, 4) if isinstance(pred, float) else pred)))]
        if result.labels is not None:
            row.append(_escape(str(result.labels[i])))
        if result.probabilities is not None:
            p = result.probabilities[i]
            row.append(_pct(max(p) if isinstance(p, list) else (p if pred else 1 - p)))
        t.add_row(*row)
    console.print(t)
    if result.n > limit:
        console.print(f"... {result.n - limit:,} more rows" + ("" if result.out else " (write them all with --out FILE)"))
    if result.out:
        console.print(f"wrote {_escape(result.out)}")


# -- sweep -------------------------------------------------------------------------------------
def _sweep_value(value) -> str:

    v = plain_value(value)
    return fmt_float(v, 3) if isinstance(v, float) else str(v)


def _mean_std(val: dict, std: dict, key: str) -> str:
    if key not in val:
        return "-"
    text = fmt_float(val[key], 4)
    if std.get(key):
        text += f" ± {fmt_float(std[key], 2)}"
    return text


class SweepProgress:
    """Progress of ``nncli sweep`` on stderr, one line per finished run (a callable for run_sweep)."""

    def __init__(self, console: Console | None = None) -> None:
        # one line per run, never wrapped: logs are read (and grepped) line by line
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)

    def __call__(self, event) -> None:
        if event.kind == "plan":
            self.console.print(f"sweep: {_escape(event.message)}")
        elif event.kind == "done":
            run = event.run
            seed = f" seed {run.seed}" if run.seed is not None else ""
            head = f"[{event.done:>{len(str(event.total))}}/{event.total}] {_escape(event.trial)}{seed}:"
            secs = f" ({run.seconds:.1f} s)" if run.seconds is not None else ""
            if run.status == "ok":
                metric = "accuracy" if "accuracy" in run.val else "loss"
                self.console.print(f"{head} [green]ok[/] val {metric} {fmt_float(run.val.get(metric), 4)}{secs}")
            else:
                first = (run.error or "failed").splitlines()[0]
                self.console.print(f"{head} [bold red]failed[/] {_escape(first)}{secs}")


def sweep(console: Console, result) -> None:
    """The ranked trial table, the failures, and the winner with its test metric."""
    better = "higher" if result.goal == "max" else "lower"
    n_seeds = len(result.seeds) if result.seeds else 1
    t = table(f"sweep {result.name}: {len(result.trials)} configuration(s) x {n_seeds} seed(s), "
              f"ranked by validation {result.metric} ({better} is better)")
    t.add_column("rank", justify="right")
    t.add_column("trial")
    for axis in result.axes:
        t.add_column(_escape(axis))
    t.add_column(f"val {result.metric}" + (" (mean ± sd)" if n_seeds > 1 else ""), justify="right")
    other = "loss" if result.metric != "loss" else "accuracy"
    t.add_column(f"val {other}", justify="right")
    for col in ("params", "FLOPs", "time", "status"):
        t.add_column(col, justify="right" if col != "status" else "left")
    best_id = result.best["id"] if result.best else None
    for trial in result.trials:
        style = "bold green" if trial.id == best_id else None
        status = {"ok": "[green]ok[/]", "failed": "[bold red]failed[/]", "partial": "[yellow]partial[/]"}.get(
            trial.status, trial.status)
        if trial.runs and all(r.cached for r in trial.runs if r.status == "ok") and any(r.cached for r in trial.runs):
            status += " (cached)"
        t.add_row(str(trial.rank) if trial.rank else "-", _escape(trial.id),
                  *[_escape(_sweep_value(trial.overrides.get(a))) for a in result.axes],
                  _mean_std(trial.val, trial.val_std, result.metric), _mean_std(trial.val, trial.val_std, other),
                  fmt_int(trial.params), fmt_si(trial.flops), "-" if trial.seconds is None else f"{trial.seconds:.1f} s",
                  status, style=style)
    console.print(t)
    for trial in result.trials:
        if trial.error:
            console.print(f"[bold red]{_escape(trial.id)}[/]: {_escape(trial.error)}")
    if result.dry_run:
        console.print(f"dry run: nothing trained; {sum(len(t.runs) for t in result.trials)} run(s) planned "
                      f"in {_escape(result.out_dir)}")
        return
    if result.best:
        b = result.best
        spread = f" ± {fmt_float(b['val_std'].get(result.metric), 2)}" if b["seeds"] > 1 else ""
        test = ", ".join(f"{k} {fmt_float(v, 4)}" for k, v in b["test"].items() if k != "error") or "-"
        console.print(f"best: [bold]{_escape(b['id'])}[/] val {result.metric} {fmt_float(b['val'][result.metric], 4)}"
                      f"{spread}; test {test} (winner only{', mean of ' + str(b['seeds']) + ' seeds' if b['seeds'] > 1 else ''})")
        console.print(f"winner's spec: {_escape(b['spec_path'])}; run: {_escape(b['run_dir'])}")
    else:
        console.print("[bold red]no trial finished[/]: nothing to rank")
    console.print(f"{result.ran} run(s) trained now, {result.cached} read back from earlier, {result.failed} failed; "
                  f"{result.seconds:.1f} s; results: {_escape(result.out_dir)}/sweep.json"
                  + (f"; plot: {_escape(result.plot)}" if result.plot else ""))


def sweep_plot(result, path) -> str:
    """Validation metric against each swept value, one panel per axis; written atomically.

    Within a panel, configurations that agree on every *other* axis are joined by a line (one
    line per activation in a depth panel, say); error bars are the spread over seeds; the winner
    is a gold star.
    """
    from nncli.plot import new_figure, save_figure

    in_order = sorted(result.trials, key=lambda t: t.index)  # the grid's order, not the ranking
    trials = [t for t in in_order if result.metric in t.val]
    fig, panels = new_figure(1, len(result.axes), figsize=(4.2 * len(result.axes) + 0.8, 3.8))
    for panel, axis in zip(panels, result.axes):
        values: list = []
        for t in in_order:
            v = plain_value(t.overrides.get(axis))
            if v not in values:
                values.append(v)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            xs_of = {v: float(v) for v in values}
            if min(values) > 0 and max(values) / min(values) >= 20:
                panel.set_xscale("log")  # learning rates and weight decays lie decades apart
            if all(isinstance(v, int) for v in values) and len(values) <= 12:
                panel.set_xticks(sorted(values))  # depths and widths: ticks at the values swept
                panel.set_xticklabels([str(v) for v in sorted(values)])
        else:
            xs_of = {v: i for i, v in enumerate(values)}
            panel.set_xticks(range(len(values)))
            panel.set_xticklabels([str(v) for v in values], rotation=20 if len(values) > 4 else 0)
        groups: dict[str, list] = {}
        for t in trials:
            rest = ", ".join(f"{k}={plain_value(v)}" for k, v in t.overrides.items() if k != axis)
            groups.setdefault(rest, []).append(t)
        # too many lines to tell apart, or a random search (its draws rarely share the other axes'
        # values, and a line through two random draws says nothing): plain points in one colour
        many = result.search == "random" or len(groups) > 8 or all(len(m) == 1 for m in groups.values())
        if many:
            groups = {"": trials}
        for label, members in groups.items():
            members.sort(key=lambda t: xs_of[plain_value(t.overrides[axis])])
            errs = [t.val_std.get(result.metric, 0.0) for t in members]
            panel.errorbar([xs_of[plain_value(t.overrides[axis])] for t in members],
                           [t.val[result.metric] for t in members], yerr=errs if any(errs) else None,
                           marker="o", capsize=3, linestyle="none" if many else "-", alpha=0.7 if many else 1.0,
                           color="C0" if many else None, label=None if many or not label else label)
        if result.best:
            w = next((t for t in trials if t.id == result.best["id"]), None)
            if w is not None:
                panel.plot([xs_of[plain_value(w.overrides[axis])]], [w.val[result.metric]], marker="*",
                           markersize=16, color="gold", markeredgecolor="black", linestyle="none", zorder=5,
                           label="best")
        panel.set_xlabel(axis)
        panel.set_ylabel(f"validation {result.metric}")
        panel.grid(True, alpha=0.3)
        panel.legend(fontsize=7)
    fig.suptitle(f"sweep {result.name}: validation {result.metric} "
                 f"({'higher' if result.goal == 'max' else 'lower'} is better)")
    fig.tight_layout()
    return str(save_figure(fig, path))


# -- compare -----------------------------------------------------------------------------------
def compare(console: Console, result) -> None:
    """Runs side by side (best value per column in bold), then the settings that differ."""
    t = table(f"{len(result.runs)} run(s)")
    for col, just in (("run", "left"), ("spec", "left"), ("status", "left"), ("epochs", "right")):
        t.add_column(col, justify=just)
    cols = [(s, m) for s in ("train", "val", "test") for m in ("loss", "accuracy")
            if any(m in r.metrics.get(s, {}) for r in result.runs)]
    for s, m in cols:
        t.add_column(f"{s} {'acc' if m == 'accuracy' else m}", justify="right")
    t.add_column("time", justify="right")
    for r in result.runs:
        cells = []
        for s, m in cols:
            v = r.metrics.get(s, {}).get(m)
            text = fmt_float(v, 4)
            cells.append(f"[bold]{text}[/]" if result.best.get(f"{s}_{m}") == r.label else text)
        epochs = "-" if r.epochs is None else f"{r.epochs}" + (f" (best {r.best_epoch})" if r.best_epoch else "")
        t.add_row(_escape(r.label), _escape(r.name), r.status, epochs, *cells,
                  "-" if r.seconds is None else f"{r.seconds:.1f} s")
    console.print(t)
    if not result.differences:
        console.print(f"settings: the runs agree on all {result.same} entries (spec, data, train)")
        return
    d = table(f"settings that differ ({len(result.differences)}; {result.same} agree)")
    d.add_column("setting")
    for r in result.runs:
        d.add_column(_escape(r.label))
    for key, values in result.differences.items():
        d.add_row(_escape(key), *["-" if v is None else _escape(str(v)) for v in values])
    console.print(d)
    if result.plot:
        console.print(f"curves: {_escape(result.plot)}")


def compare_plot(result, path) -> str:
    """Loss and accuracy per epoch of every run in one figure (train dashed, validation solid)."""
    from nncli.plot import new_figure, save_figure

    has_acc = any(row.get("val_accuracy") is not None or row.get("train_accuracy") is not None
                  for r in result.runs for row in r.history)
    fig, panels = new_figure(1, 2 if has_acc else 1, figsize=(11.0 if has_acc else 6.4, 4.2))
    keys = [("loss", panels[0])] + ([("accuracy", panels[1])] if has_acc else [])
    colors = [f"C{i % 10}" for i in range(len(result.runs))]
    for metric, panel in keys:
        for color, r in zip(colors, result.runs):
            for split, style in (("val", "-"), ("train", "--")):
                pts = [(row["epoch"], row[f"{split}_{metric}"]) for row in r.history
                       if row.get("epoch") is not None and row.get(f"{split}_{metric}") is not None]
                if pts:  # one legend entry per run: the colour names it, the style the split
                    panel.plot(*zip(*pts), style, color=color, marker="o" if len(pts) < 30 else None,
                               markersize=3, label=r.label if split == "val" else None)
        from matplotlib.ticker import MaxNLocator

        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.set_xlabel("epoch")
        panel.set_ylabel(metric)
        if metric == "loss":
            panel.set_yscale("log")
        panel.grid(True, alpha=0.3)
        panel.legend(fontsize=7)
    fig.suptitle("runs compared: validation solid, training dashed")
    fig.tight_layout()
    return str(save_figure(fig, path))


# -- gradcheck ---------------------------------------------------------------------------------
_GC_VERDICT_STYLE = {"ok": "green", "FAIL": "bold red", "kink": "yellow"}


def _gc_error(t) -> str:
    """A tensor's error cell: relative to |g|, or absolute where the gradient is ~0."""
    if t.max_rel_error is not None:
        return fmt_float(t.max_rel_error, 2)
    if t.max_abs_error is not None:
        return f"abs {fmt_float(t.max_abs_error, 2)}"
    return "-"


def gradcheck(console: Console, report) -> None:
    """Per layer and tensor: numel, max relative error, verdict; the suspect in bold red."""
    how = ("every coordinate" if report.exhaustive else
           f"{report.directions} random direction{'s' if report.directions != 1 else ''} per tensor")
    t = table(f"{_escape(report.name)}: gradient check, float64, batch {report.batch}, {report.mode} mode, "
              f"{report.objective} objective, {how}")
    for col, just in (("#", "right"), ("layer", "left"), ("type", "left"), ("tensor", "left"),
                      ("numel", "right"), ("max rel. error", "right"), ("verdict", "left")):
        t.add_column(col, justify=just)

    def rows(layer) -> None:
        suspect = report.suspect_id is not None and layer.id == report.suspect_id
        style = "bold red" if suspect else None
        name = "  " * layer.depth + _escape(layer.name) + ("  <- suspect" if suspect else "")
        verdict = f"[{_GC_VERDICT_STYLE[layer.verdict.value]}]{layer.verdict.value}[/]"
        broken = [s for s in layer.structural if not s.ok]
        if not layer.tensors:
            t.add_row(layer.id, name, _escape(layer.type), "-", "-", "-", verdict, style=style)
        for i, tc in enumerate(layer.tensors):
            t.add_row(layer.id if i == 0 else "", name if i == 0 else "", _escape(layer.type) if i == 0 else "",
                      _escape(tc.name), fmt_int(tc.numel), _gc_error(tc),
                      f"[{_GC_VERDICT_STYLE[tc.verdict.value]}]{tc.verdict.value}[/]"
                      + (f" ({tc.kinks} kinked)" if tc.kinks and tc.verdict.value != "kink" else ""),
                      style=style)
        for s in broken:
            t.add_row("", "" if layer.tensors else name, "", f"structural: {_escape(s.name)}", "", "",
                      "[bold red]FAIL[/]", style=style)
        for child in layer.children:
            rows(child)

    for layer in report.layers:
        rows(layer)
    t.add_section()  # the end-to-end check below the layers
    rows(report.end_to_end)
    console.print(t)
    for layer in [*report.leaves(), report.end_to_end]:
        for s in layer.structural:
            if not s.ok:
                console.print(f"[bold red]{_escape(layer.id)} {_escape(layer.name)}: {_escape(s.name)}[/]: "
                              f"{_escape(s.detail)}")
        notes = [layer.note] + [f"{tc.name}: {tc.note}" for tc in layer.tensors if tc.note]
        for note in filter(None, notes):
            console.print(f"note: {_escape(layer.id)} {_escape(layer.name)}: {_escape(note)}")
    counts = report.counts()
    status = "[green]ok[/]" if report.ok else "[bold red]FAIL[/]"
    console.print(f"{status}: {_escape(report.diagnosis)}")
    console.print(f"{counts['ok']} ok, {counts['FAIL']} FAIL, {counts['kink']} kink (inconclusive); "
                  f"rtol {report.rtol:g}, atol {report.atol:g}, eps {report.eps:g}; {report.seconds:.2f} s")
    if not report.exhaustive:
        pairs = report.detection()
        console.print(f"detection ({report.directions} directions, rtol {report.rtol:g}): an error of "
                      + " / ".join(f"{r:.2%}" for r, _ in pairs) + " of |g| escapes with probability "
                      + " / ".join(f"{p:.1e}" for _, p in pairs))
