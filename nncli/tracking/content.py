"""What a run puts in the tracking store: its settings as params, its tags, its final metrics and
its files (the run folder's, the diagram and the trained model).

Params are the run's settings flattened as ``nncli compare`` flattens them (``train.lr``,
``data.name``, ``layers[0].Linear.out_features``), so a run read back from the store lines up
with a run folder. MLflow allows no brackets in a key: an index is written ``layers/0.Linear...``
and :func:`setting_of` turns it back.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from nncli.runs import REPORT_FILE, RUN_FILE, SPEC_FILE, read_meta, spec_digest

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "samples_per_s", "epoch_time_s")
STEP_METRICS = ("step_loss", "step_lr")
SPLITS = ("train", "val", "test")
_INDEX = re.compile(r"\[(\d+)\]")
_KEY_INDEX = re.compile(r"/(\d+)")
_BAD_KEY_CHARS = re.compile(r"[^\w.\- /:]")


def param_key(path: str) -> str:
    """A settings path as an MLflow param key: ``layers[0].Linear`` -> ``layers/0.Linear``."""
    return _BAD_KEY_CHARS.sub("_", _INDEX.sub(r"/\1", path))


def setting_of(key: str) -> str:
    """The settings path of a param key (:func:`param_key` undone)."""
    return _KEY_INDEX.sub(r"[\1]", key)


def param_value(value) -> str:
    """A setting as a param: strings as they are, anything else as JSON (read back as YAML)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def value_of(text: str):
    """A param read back: numbers, booleans, null, lists as they were; anything else a string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def run_params(run_dir: Path) -> list[tuple[str, str]]:
    """The run's resolved settings (``run.yaml`` after ``--set``, and its spec's network)."""
    from nncli.compare import settings

    spec_file = Path(run_dir) / SPEC_FILE
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8")) if spec_file.is_file() else None
    return [(param_key(k), param_value(v)) for k, v in settings(read_meta(run_dir), spec).items()]


def git_commit(path: str | None) -> str | None:
    """The commit checked out where ``path`` lies, when it lies in a git repository."""
    if not path or not Path(path).exists() or shutil.which("git") is None:
        return None
    folder = Path(path).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def run_tags(setup, info: dict, threads: int) -> dict[str, str]:
    """Tags: nncli's version, the device, torch's threads, the spec's name, digest and file (with
    the git commit it was trained from, when it lies in a repository) and the run folder."""
    tags = {
        "nncli.version": _version(),
        "nncli.device": info["device"],
        "nncli.world_size": str(info["world_size"]),
        "nncli.threads": str(threads),
        "nncli.spec": setup.spec.name,
        "nncli.spec_digest": spec_digest(setup.spec_text),
        "nncli.run_dir": str(Path(setup.run_dir).resolve()),
        "mlflow.source.type": "LOCAL",
    }
    if setup.spec_path:
        tags["mlflow.source.name"] = str(setup.spec_path)
    commit = git_commit(setup.spec_path)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nncli")
    except PackageNotFoundError:
        return "unknown"


def epoch_metrics(record: dict) -> list[tuple[str, float, int]]:
    """An epoch's row of ``metrics.jsonl`` as ``(key, value, epoch)``."""
    return [(k, record[k], record["epoch"]) for k in EPOCH_METRICS if isinstance(record.get(k), (int, float))]


def final_metrics(result) -> list[tuple[str, float, int]]:
    """The final metrics with the best checkpoint's weights: ``best_train_loss``,
    ``best_val_accuracy``, ``test_loss``, ``test_accuracy`` (and the test split's other scores:
    ``test_rmse``, ``test_macro_f1``, ...), at the best epoch; the run's time, ``duration_s``."""
    step = result.best_epoch or 0
    out = []
    for split in SPLITS:
        for key, value in (getattr(result, split) or {}).items():
            if key != "n" and isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append((f"{'test' if split == 'test' else 'best_' + split}_{key}", value, step))
    out.append(("duration_s", result.total_s if result.total_s is not None else result.duration_s, step))
    return out


def result_tags(result) -> list[tuple[str, str]]:
    """How the run ended, for the store: its status, epochs and best epoch."""
    tags = [("nncli.status", result.status), ("nncli.epochs", str(result.epochs))]
    if result.best_epoch is not None:
        tags.append(("nncli.best_epoch", str(result.best_epoch)))
    if result.status == "pruned":
        tags.append(("nncli.pruned", "true"))
    return tags


def run_files(run_dir: Path, plot: str | None) -> list[Path]:
    """The run folder's files that go to the store (``report.json`` goes last, on its own)."""
    files = [Path(run_dir) / SPEC_FILE, Path(run_dir) / RUN_FILE]
    if plot and Path(plot).is_file():
        files.append(Path(plot))
    return [f for f in files if f.is_file()]


def report_file(run_dir: Path) -> Path:
    return Path(run_dir) / REPORT_FILE


def start_diagram(spec, folder: Path) -> tuple[tuple | None, str | None]:
    """Start drawing the spec's diagram as SVG in ``folder``: the graph is built here and graphviz's
    ``dot`` lays it out in a process of its own while training goes on. A handle for
    :func:`diagram_file`; or None and why it is left out (no ``dot``, a diagram that cannot be
    drawn, or one too large to render)."""
    if shutil.which("dot") is None:
        return None, "skipped: graphviz's dot is not installed"
    from nncli.diagram import build_diagram, write_diagram
    from nncli.diagram.output import RENDER_NODE_LIMIT
    from nncli.errors import NncliError

    try:
        diagram = build_diagram(spec)  # shapes on the meta device: torch's random state is left alone
    except NncliError as err:
        return None, f"skipped: {err}"
    if len(diagram.nodes) > RENDER_NODE_LIMIT:
        return None, f"skipped: {len(diagram.nodes):,} nodes, more than dot renders ({RENDER_NODE_LIMIT:,})"
    source, out = folder / "diagram.dot", folder / "diagram.svg"
    write_diagram(diagram, source, "dot")  # the source `nncli diagram` renders
    with open(folder / "dot.err", "wb") as errors:
        proc = subprocess.Popen(["dot", "-Tsvg", "-o", str(out), str(source)], stdout=subprocess.DEVNULL, stderr=errors)
    return (proc, out), None


def diagram_file(handle: tuple) -> tuple[Path | None, str | None]:
    """The SVG that :func:`start_diagram` set ``dot`` drawing (waited for); or None and why not."""
    proc, out = handle
    code = proc.wait()
    if code != 0 or not out.is_file():
        detail = (out.parent / "dot.err").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return None, f"skipped: graphviz's dot failed (exit {code})" + (f": {detail[-1]}" if detail else "")
    return out, None


def model_file(run_dir: Path, folder: Path) -> tuple[Path | None, str | None]:
    """The trained model (best checkpoint) exported as safetensors in ``folder``: the weights with
    the spec, normalisation and classes in its metadata, so ``nncli.load`` rebuilds it from that
    file alone; or None and why it was left out."""
    from nncli.errors import NncliError
    from nncli.export import export_model

    out = folder / "model.safetensors"
    try:
        done = export_model(run_dir, "safetensors", out)
    except NncliError as err:
        return None, f"skipped: {err}"
    if not done.passed:
        return None, "skipped: the exported file did not read back bit for bit"
    return out, None
