"""``nncli train``: the live progress on stderr (:class:`TrainProgress`) and the final report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from nncli.formatting import fmt_float, fmt_int
from nncli.render.console import escape, pct
from nncli.render.evaluate import split_table
from nncli.status import RunStatus

if TYPE_CHECKING:
    from nncli.train.runs import TrainResult


class TrainProgress:
    """Progress of ``nncli train`` on stderr: an epoch bar, a step bar with loss, accuracy,
    samples/s and ETA, and one printed line per epoch. An observer for
    :func:`nncli.train.run_training` (duck-typed: on_start, on_step, on_epoch, on_message).
    On a non-terminal stderr the bars stay silent and only the epoch lines appear."""

    def __init__(self, console: Console | None = None) -> None:
        # one line per run, never wrapped: logs are read (and grepped) line by line
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.progress = None

    def __enter__(self) -> TrainProgress:
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
        extras = [
            x
            for x in (
                f"amp {info['amp']}" if info["amp"] != "none" else "",
                "compiled" if info["compile"] else "",
                f"{info['world_size']} processes" if info["world_size"] > 1 else "",
            )
            if x
        ]
        self.console.print(
            f"{what} {escape(info['spec'])} ({fmt_int(info['params'])} parameters) on {info['device']}"
            + (f" [{', '.join(extras)}]" if extras else "")
            + f": {sizes['train']:,} train / {sizes['val']:,} val / {sizes['test']:,} test examples"
            + f"\n  run folder: {escape(info['run_dir'])}"
        )
        if info["resumed"] and info["epoch"] >= info["epochs"]:
            self.console.print(f"  nothing to do: all {info['epochs']} epochs are done")
        elif info["resumed"]:
            self.console.print(f"  continuing at epoch {info['epoch'] + 1}, step {info['step_in_epoch']}")
        self.epochs = info["epochs"]
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            auto_refresh=False,
        )
        # no refresh thread: the trainer calls on_step a few times a second at most, and a
        # background thread would compete with torch's own threads for the CPU and the GIL
        self.progress.start()
        self.epoch_task = self.progress.add_task("epochs", total=info["epochs"], completed=info["epoch"], stats="")
        self.step_task = self.progress.add_task(
            step_label(info["epoch"] + 1, info["epochs"]),
            total=info["steps_per_epoch"],
            completed=info["step_in_epoch"],
            stats="",
        )

    def on_step(self, info: dict) -> None:
        if self.progress is None:
            return
        stats = f"loss {fmt_float(info['loss'], 4)}"
        if info.get("accuracy") is not None:
            stats += f"  acc {pct(info['accuracy'])}"
        if info.get("samples_per_s"):
            stats += f"  {info['samples_per_s']:,.0f} samples/s"
        self.progress.update(
            self.step_task, completed=info["step"], stats=stats, description=step_label(info["epoch"], info["epochs"])
        )
        self.progress.refresh()

    def on_epoch(self, record: dict) -> None:
        line = f"epoch {record['epoch']:>3}/{record['epochs']}  train loss {fmt_float(record['train_loss'], 4)}" + (
            f" acc {pct(record['train_accuracy'])}" if record.get("train_accuracy") is not None else ""
        )
        if record.get("val_loss") is not None:
            line += f"  val loss {fmt_float(record['val_loss'], 4)}"
            if record.get("val_accuracy") is not None:
                line += f" acc {pct(record['val_accuracy'])}"
        line += f"  lr {fmt_float(record['lr'], 3)}  {record['samples_per_s']:,.0f} samples/s"
        if record.get("improved") and record.get("val_loss") is not None:
            line += "  *"
        self.console.print(line, highlight=False, soft_wrap=True)
        if self.progress is not None:
            self.progress.update(self.epoch_task, completed=record["epoch"])
            self.progress.reset(self.step_task, description=step_label(record["epoch"] + 1, self.epochs), stats="")
            self.progress.refresh()

    def on_message(self, text: str) -> None:
        self.console.print(escape(text))


def step_label(epoch: int, epochs: int) -> str:
    """The step bar's label for the 1-based ``epoch`` about to run. Past the last one (after the
    last epoch ends, or a resumed run that had finished) no epoch runs: the best checkpoint is
    being evaluated, and "epoch 4/3" would read as a fourth epoch of three."""
    return f"epoch {epoch}/{epochs}" if epoch <= epochs else "evaluating the best checkpoint"


def show(console: Console, result: TrainResult) -> None:
    """The final report of a training run: where, how fast, and the metrics per split."""
    style = {
        RunStatus.COMPLETED: "green",
        RunStatus.EARLY_STOPPED: "green",
        RunStatus.INTERRUPTED: "yellow",
        RunStatus.NONFINITE: "bold red",
    }
    status = f"[{style.get(result.status, '')}]{result.status}[/]"
    best = f", best epoch {result.best_epoch}" if result.best_epoch else ""
    total = result.total_s if result.total_s is not None else result.duration_s
    took = (
        f"{total:.1f} s in all, {result.duration_s:.1f} s of it now"
        if total - result.duration_s > 0.05
        else f"{result.duration_s:.1f} s"
    )  # a resumed run: the whole run's time, then this part's
    console.print(
        f"{escape(result.spec)}: {status} after {result.epochs}/{result.planned_epochs} epochs{best} "
        f"({result.global_step:,} steps, {took})"
    )
    procs = f", {result.world_size} processes" if result.world_size > 1 else ""
    console.print(f"device {result.device}{procs}; {result.samples_per_s:,.0f} samples/s")
    if any(result.__dict__[s]["loss"] is not None for s in ("train", "val", "test")):
        # evaluate's table: a regression run's RMSE, MAE and R² (test split) show here too
        console.print(split_table({split: getattr(result, split) for split in ("train", "val", "test")}))
    if result.message:
        console.print(escape(result.message))
    console.print(f"run folder: {escape(result.run_dir)}")
    if result.plot:
        console.print(f"plot: {escape(result.plot)}")
    tracked = result.tracking or {}
    if tracked.get("status") == "logged":  # a failed store was said as it failed
        console.print(
            f"MLflow run {escape(tracked['run_id'])} in experiment {escape(str(tracked['experiment']))} "
            f"at {escape(tracked['uri'])}"
        )
