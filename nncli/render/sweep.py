"""``nncli sweep``: one progress line per finished run (:class:`SweepProgress`) and the ranked table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from nncli.formatting import fmt_float, fmt_int, fmt_si, plain_value
from nncli.render.console import escape, table
from nncli.render.console import metric as metric_text
from nncli.status import TrialStatus

if TYPE_CHECKING:
    from rich.table import Table

    from nncli.sweep.results import SweepEvent, SweepResult, TrialResult


def _sweep_value(value) -> str:
    """An axis value as a table cell: floats to three significant digits."""
    v = plain_value(value)
    return fmt_float(v, 3) if isinstance(v, float) else str(v)


def _mean_std(val: dict, std: dict, key: str) -> str:
    if key not in val:
        return "-"
    return metric_text(key, val[key], std.get(key))


class SweepProgress:
    """Progress of ``nncli sweep`` on stderr, one line per finished run (a callable for run_sweep)."""

    def __init__(self, console: Console | None = None) -> None:
        # one line per run, never wrapped: logs are read (and grepped) line by line
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)

    def __call__(self, event: SweepEvent) -> None:
        if event.kind == "plan":
            self.console.print(f"sweep: {escape(event.message)}")
        elif event.kind == "done":
            run = event.run
            seed = f" seed {run.seed}" if run.seed is not None else ""
            head = f"[{event.done:>{len(str(event.total))}}/{event.total}] {escape(event.trial)}{seed}:"
            secs = f" ({run.seconds:.1f} s)" if run.seconds is not None else ""
            metric = "accuracy" if "accuracy" in run.val else "loss"
            if run.status in (TrialStatus.OK, TrialStatus.PRUNED):  # a pruned run stopped early on purpose
                label = "[green]ok[/]" if run.status == TrialStatus.OK else "[yellow]pruned[/]"
                self.console.print(f"{head} {label} val {metric} {metric_text(metric, run.val.get(metric))}{secs}")
            else:
                first = (run.error or "failed").splitlines()[0]
                self.console.print(f"{head} [bold red]failed[/] {escape(first)}{secs}")


def show(console: Console, result: SweepResult) -> None:
    """The ranked trial table, the failures, and the winner with its test metric."""
    console.print(_trial_table(result))
    for trial in result.trials:
        if trial.error:
            console.print(f"[bold red]{escape(trial.id)}[/]: {escape(trial.error)}")
    if result.dry_run:
        console.print(
            f"dry run: nothing trained; {sum(len(t.runs) for t in result.trials)} run(s) planned "
            f"in {escape(result.out_dir)}"
        )
        return
    _print_best(console, result)
    console.print(
        f"{result.ran} run(s) trained now, {result.cached} read back from earlier, {result.failed} failed; "
        f"{result.seconds:.1f} s; results: {escape(result.out_dir)}/sweep.json"
        + (f"; plot: {escape(result.plot)}" if result.plot else "")
    )


def _trial_table(result: SweepResult) -> Table:
    """One row per trial in rank order: its axis values, validation metrics, size, time and status."""
    better = "higher" if result.goal == "max" else "lower"
    n_seeds = len(result.seeds) if result.seeds else 1
    t = table(
        f"sweep {result.name}: {len(result.trials)} configuration(s) x {n_seeds} seed(s), "
        f"ranked by validation {result.metric} ({better} is better)"
    )
    t.add_column("rank", justify="right")
    t.add_column("trial")
    for axis in result.axes:
        t.add_column(escape(axis))
    t.add_column(f"val {result.metric}" + (" (mean ± sd)" if n_seeds > 1 else ""), justify="right")
    other = "loss" if result.metric != "loss" else "accuracy"
    t.add_column(f"val {other}", justify="right")
    for col in ("params", "FLOPs", "time", "status"):
        t.add_column(col, justify="right" if col != "status" else "left")
    best_id = result.best["id"] if result.best else None
    for trial in result.trials:
        t.add_row(
            str(trial.rank) if trial.rank else "-",
            escape(trial.id),
            *[escape(_sweep_value(trial.overrides.get(a))) for a in result.axes],
            _mean_std(trial.val, trial.val_std, result.metric),
            _mean_std(trial.val, trial.val_std, other),
            fmt_int(trial.params),
            fmt_si(trial.flops),
            "-" if trial.seconds is None else f"{trial.seconds:.1f} s",
            _status_cell(trial),
            style="bold green" if trial.id == best_id else None,
        )
    return t


def _status_cell(trial: TrialResult) -> str:
    """A trial's status, coloured, with "(cached)" when every finished run was read back."""
    status = {
        TrialStatus.OK: "[green]ok[/]",
        TrialStatus.FAILED: "[bold red]failed[/]",
        TrialStatus.PARTIAL: "[yellow]partial[/]",
    }.get(trial.status, str(trial.status))
    if (
        trial.runs
        and all(r.cached for r in trial.runs if r.status == TrialStatus.OK)
        and any(r.cached for r in trial.runs)
    ):
        status += " (cached)"
    return status


def _print_best(console: Console, result: SweepResult) -> None:
    """The winner's validation and test metrics and where its spec and run lie, or that none finished."""
    if result.best:
        b = result.best
        spread = b["val_std"].get(result.metric) if b["seeds"] > 1 else None
        test = ", ".join(f"{k} {metric_text(k, v)}" for k, v in b["test"].items() if k != "error") or "-"
        console.print(
            f"best: [bold]{escape(b['id'])}[/] val {result.metric} {metric_text(result.metric, b['val'][result.metric], spread)}"
            f"; test {test} (winner only{', mean of ' + str(b['seeds']) + ' seeds' if b['seeds'] > 1 else ''})"
        )
        console.print(f"winner's spec: {escape(b['spec_path'])}; run: {escape(b['run_dir'])}")
    else:
        console.print("[bold red]no trial finished[/]: nothing to rank")
