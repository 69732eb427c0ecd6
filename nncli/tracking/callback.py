""":class:`MLflowTracking`: a training run logged to an MLflow tracking store, as a callback.

What a run logs: its resolved settings as params, each epoch's row of ``metrics.jsonl`` at its
epoch number, each step's loss and learning rate (``step_loss``, ``step_lr``) at its global step,
the final metrics of the best checkpoint, tags (nncli's version, the device, the threads, the
spec's digest, the git commit), and as artifacts ``spec.yaml``, ``run.yaml``, ``report.json``,
the curves plot, the diagram and the trained model (``model/model.safetensors``).

The run folder stays the source of truth: the store is written by a child process (:class:`~nncli.tracking.store.ProcessStore`), and a
store that cannot be reached or refuses a write is a message, never a failed run; ``report.json``
says how tracking went under ``tracking`` (``uri``, ``experiment``, ``run_id``, ``status``: logged
or failed, ``error``). The MLflow run's id is also kept in ``<run>/tracking.json`` from the start,
so that ``--resume`` continues the same MLflow run (a killed run too). Under DDP only rank 0 logs.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from nncli.status import FINISHED, RunStatus
from nncli.tracking import content
from nncli.tracking.options import TrackingOptions
from nncli.tracking.store import ProcessStore, warm_up
from nncli.train.callbacks import Callback

TRACKING_FILE = "tracking.json"  # in the run folder: the store and the MLflow run it logs to
# an nncli status -> the MLflow run status it ends with
END_STATUS = {RunStatus.INTERRUPTED: "KILLED", RunStatus.NONFINITE: "FAILED"}


def read_tracking(folder: str | Path) -> dict | None:
    """``tracking.json`` of a run or sweep folder (None when absent or unreadable)."""
    try:
        doc = json.loads((Path(folder) / TRACKING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("run_id"), str) else None


class MLflowTracking(Callback):
    """Log the run to the store of ``options`` (see the module docstring).

    Args:
        options: the store's URI and the experiment (None: the spec's name).
        parent_run_id: a sweep's run: the trial is a child of this run.
        tags: more tags for the run (a sweep trial's id and seed).
        log_model: also log the trained model (best checkpoint, as safetensors).
    """

    def __init__(
        self,
        options: TrackingOptions,
        *,
        parent_run_id: str | None = None,
        tags: dict | None = None,
        log_model: bool = True,
    ) -> None:
        self.options = options
        self.parent_run_id = parent_run_id
        self.tags = dict(tags or {})
        self.log_model = log_model
        self.store: ProcessStore | None = None
        self.run_id: str | None = None
        self.experiment: str | None = None
        self.steps: list = []
        self.warned = False
        self.ended = False
        self.folder: tempfile.TemporaryDirectory | None = None
        self.diagram: tuple = (None, None)  # content.start_diagram's handle, or why not

    # -- the hooks ---------------------------------------------------------------------------
    def setup(self, trainer):
        if trainer.is_writer:  # mlflow imported and the store opened while the model is built
            warm_up(self.options.uri)

    def on_fit_start(self, trainer, info):
        if not trainer.is_writer:
            return
        import torch

        self.run_dir = Path(trainer.run_dir)
        self.experiment = self.options.experiment or trainer.s.spec.name
        previous = read_tracking(self.run_dir) if info["resumed"] else None
        if previous is not None and previous.get("uri") != self.options.uri:
            previous = None  # logged to another store before: this store gets a run of its own
        tags = {**content.run_tags(trainer.s, info, torch.get_num_threads()), **self.tags}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        opening = {"name": self.run_dir.name, "tags": tags, "run_dir": str(self.run_dir)}
        opening["record"] = str(self.run_dir / TRACKING_FILE)
        self.store = ProcessStore(self.options.uri)
        self.store.submit("open", self.experiment, self.options.uri, previous and previous["run_id"], opening)
        # the diagram and the model are made in a folder that lives until the store has them;
        # the diagram is drawn now, beside training
        self.folder = tempfile.TemporaryDirectory(prefix="nncli-tracking-")
        self.diagram = content.start_diagram(trainer.s.spec, Path(self.folder.name))

    def on_batch_end(self, trainer, batch):
        if self.store is not None and batch.synced:
            lr = trainer.optimizer.param_groups[0]["lr"]
            self.steps.append(("step_loss", float(batch.loss), batch.global_step))
            self.steps.append(("step_lr", lr, batch.global_step))

    def on_epoch_end(self, trainer, record, improved):
        if self.store is None:
            return
        metrics, self.steps = self.steps + content.epoch_metrics(record), []
        self.store.submit("log", metrics)
        self.store.poll()
        self._warn(trainer)

    def on_fit_end(self, trainer, result):
        if self.store is None:
            return
        trainer.files.wait()  # the best checkpoint is on disk before the model is exported
        metrics, self.steps = self.steps, []
        if result.status in FINISHED or result.status == RunStatus.PRUNED:
            metrics += content.final_metrics(result)
        self.store.submit("log", metrics, content.result_tags(result))
        self._files(result, Path(self.folder.name))
        self.store.poll()  # the child said the run's id when it opened the run
        if self.store.run_id is None and self.store.error is None:
            self.store.sync()  # not opened yet (a short run): wait for it
        self.run_id = self.store.run_id
        self._report(trainer, result)  # report.json names the MLflow run before it is uploaded
        self.store.submit("upload", [str(content.report_file(self.run_dir))], None)
        self.store.submit("end", END_STATUS.get(result.status, "FINISHED"))
        self.store.sync()
        self.ended = True
        self._forget_folder()
        if self.store.error is not None:
            self._report(trainer, result)
        self._warn(trainer)

    def close(self):
        if self.store is None:
            return
        if not self.ended:  # the run raised: the MLflow run ends failed rather than running forever
            self.store.submit("end", "FAILED")
        self.store.close()
        self._forget_folder()

    def _forget_folder(self) -> None:
        if self.diagram[0] is not None:
            self.diagram[0][0].wait()  # dot is done with the folder
        if self.folder is not None:
            self.folder.cleanup()
            self.folder = None

    def _files(self, result, folder: Path) -> None:
        """The run folder's files, the diagram and the model, made here and uploaded by the store;
        what was left out is said in a tag."""
        handle, why_not = self.diagram
        diagram, why_not = content.diagram_file(handle) if handle is not None else (None, why_not)
        notes = [("nncli.diagram", why_not)] if why_not else []
        files = content.run_files(self.run_dir, result.plot) + ([diagram] if diagram else [])
        self.store.submit("upload", [str(f) for f in files], None)
        if self.log_model and result.status in FINISHED and result.checkpoints.get("best"):
            model, why_not = content.model_file(self.run_dir, folder)
            if model is not None:
                self.store.submit("upload", [str(model)], "model")
            else:
                notes.append(("nncli.model", why_not))
        if notes:
            self.store.submit("log", [], notes)

    # -- on the main thread ---------------------------------------------------------------------
    def summary(self) -> dict:
        """What ``report.json`` says under ``tracking``."""
        failed = self.store is None or self.store.error is not None
        return {
            "uri": self.options.uri,
            "experiment": self.experiment,
            "run_id": self.run_id,
            "parent_run_id": self.parent_run_id,
            "status": "failed" if failed else "logged",
            "error": self.store.error if self.store is not None else None,
        }

    def _report(self, trainer, result) -> None:
        result.tracking = self.summary()
        trainer.files.write_report(result)
        if result.plot:  # as the plot callback records it: absolute, for a resume from elsewhere
            from nncli.train.runs import remember_plot

            remember_plot(result.run_dir, result.plot)

    def _warn(self, trainer) -> None:
        """Say once, on the main thread, that the store failed: the run goes on without it."""
        if self.store.error is None or self.warned:
            return
        self.warned = True
        trainer.message(
            f"tracking: the store at {self.options.uri} failed ({self.store.error}); "
            "training goes on and the run folder keeps everything"
        )


def trial_tracking(task: dict) -> MLflowTracking:
    """The callback of a sweep trial from its task's ``tracking`` (:meth:`SweepTracking.for_trials`
    with the trial's id and seed): a child run of the sweep's."""
    tags = {"nncli.trial": str(task.get("trial"))}
    if task.get("seed") is not None:
        tags["nncli.seed"] = str(task["seed"])
    options = TrackingOptions(task["uri"], task.get("experiment"))
    return MLflowTracking(options, parent_run_id=task.get("parent_run_id"), tags=tags)
