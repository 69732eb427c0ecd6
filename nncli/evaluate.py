"""``nncli evaluate`` and ``nncli predict``: use a finished (or interrupted) run folder.

Both rebuild the network from the run's own copy of the spec (``spec.yaml``), load a checkpoint
with ``weights_only=True`` and apply the run's normalisation statistics, so a prediction sees
its inputs exactly as training did.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from nncli import data as data_mod
from nncli.data.multi import Inputs, feed, first_output, load_spec_dataset, read_multi_inputs, several_inputs
from nncli.errors import InputError
from nncli.files import write_atomic
from nncli.formatting import jsonable
from nncli.train.task import evaluate_model, prepare_targets
from nncli.train.trained import load_trained, open_run

SPLITS = ("train", "val", "test")


@dataclass
class EvalResult:
    """Metrics of one checkpoint of a run on one or more splits."""

    run_dir: str
    checkpoint: str  # the file evaluated
    kind: str  # best or last
    epoch: int | None  # epochs trained when the checkpoint was written
    device: str
    loss: str  # the loss function's name
    # split -> {"loss", "accuracy", "n"}, and for regression "rmse", "mae", "r2", for classification
    # "per_class" (precision, recall, f1, support per label) and "confusion" (rows: true label)
    splits: dict = field(default_factory=dict)
    classes: list | None = None  # the class names the run was trained with (label i is classes[i])

    def to_json(self) -> dict:
        return jsonable(asdict(self))


@dataclass
class PredictResult:
    """Predictions for the rows of an input file."""

    run_dir: str
    checkpoint: str
    input: str
    n: int
    task: str  # classification, binary, multilabel, regression or sequence
    predictions: list  # class index, 0/1, the regression output (a number or a list), or a sequence's class indices
    labels: list | None = None  # class names of the predictions, when the data had names
    probabilities: list | None = None  # softmax (classification) or sigmoid (binary) per row
    classes: list | None = None
    out: str | None = None  # the file written, if any
    files: list | None = None  # the image files predicted, in row order (image inputs only)

    def to_json(self) -> dict:
        return jsonable(asdict(self))


def _open_run(run_dir, checkpoint: str, device: str, allow_custom: bool):
    """The run, its network with the ``checkpoint`` weights in eval mode, and the device."""
    from nncli.device import resolve_device

    dev = resolve_device(device)
    run = open_run(run_dir, allow_custom=allow_custom)
    return run, load_trained(run, checkpoint, dev), dev


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    *,
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int = 512,
    allow_custom: bool = True,
    data: str | Path | None = None,
) -> EvalResult:
    """Loss and accuracy of a run's checkpoint on its data splits, or on a new labelled file.

    The data is reloaded from the run's resolved ``data:`` section (same seed, same split) and fed
    raw to the trained model, whose first module applies the training statistics; if statistics
    taken afresh no longer match the checkpoint's, the data changed since training and the
    command refuses (exit 2). With ``data``, every row of that file is scored instead (split
    ``data``), read as the run's data section reads its own file (same target column).

    Args:
        run_dir: a folder written by ``nncli train``.
        split: ``train``, ``val``, ``test`` or ``all``.
        checkpoint: ``best`` (the default, what the final report used) or ``last``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        allow_custom: False refuses a run whose spec has Custom layers (``--no-custom``).
        data: a labelled ``.csv``/``.npz``/``.pt`` file to score (``split`` is then ignored).

    Returns:
        EvalResult.

    Example:
        >>> evaluate_run("runs/moons", "test").splits["test"]["accuracy"]
        0.995
    """
    if split not in SPLITS + ("all",):
        raise InputError(f"expected one of train, val, test, all, found {split!r}", param="split")
    run, trained, dev = _open_run(run_dir, checkpoint, device, allow_custom)
    built, ckpt = trained.built, trained.checkpoint
    ds = _raw_dataset(run, data)
    if data is None:
        _check_statistics(run, ds.x_train, trained.normalization)
    prepare_targets(
        ds,
        run.train.loss,
        tuple(built.output_shape),
        lambda message, hint=None: InputError(f"data {ds.name}: {message}", hint=hint),
    )
    model = trained.raw_input_model(run.classes)  # raw inputs in: the run's normalisation is its first module
    options = {"batch_size": batch_size, "device": dev, "output_shape": tuple(built.output_shape)}
    results = {}
    for name in ("data",) if data is not None else SPLITS if split == "all" else (split,):
        x, y = _all_rows(ds) if name == "data" else ds.split(name)
        results[name] = evaluate_model(model, x, y, run.train.loss, **options)
    return EvalResult(
        run_dir=str(run.run_dir),
        checkpoint=str(trained.path),
        kind=checkpoint,
        epoch=ckpt.get("epoch"),
        device=str(dev),
        loss=run.train.loss,
        splits=results,
        classes=run.classes,
    )


def _raw_dataset(run, data):
    """The run's data (or the file ``data``, all of its rows in the train split), un-normalised
    and in the network's input shape."""
    config = dataclasses.replace(run.data, normalize=False)
    if data is not None:
        config = data_mod.resolve_data_config(run.meta["data"], {"path": str(data)})
        params = {k: v for k, v in config.params.items() if k != "per_class"}  # every row is scored
        config = dataclasses.replace(config, normalize=False, val=0.0, test=0.0, limit=None, params=params)
    ds = load_spec_dataset(config, run.spec)
    if data is not None:
        _labels_as_the_run_numbers_them(ds, run, data)
    return ds


def _labels_as_the_run_numbers_them(ds, run, data) -> None:
    """A new file's named classes renumbered as the run numbered its own (a file without some of
    the classes, or in another order, numbers them otherwise); a class the run never saw is exit 2."""
    if not ds.classes or not run.classes or ds.classes == run.classes:
        return
    unknown = [c for c in ds.classes if c not in run.classes]
    if unknown:
        raise InputError(
            f"{data}: classes the run was not trained on: {', '.join(map(str, unknown[:5]))}",
            hint="the run knows: " + ", ".join(map(str, run.classes)),
        )
    index = torch.tensor([run.classes.index(c) for c in ds.classes])
    for split in SPLITS:
        y = getattr(ds, f"y_{split}")
        setattr(ds, f"y_{split}", index[y] if len(y) else y)
    ds.classes = list(run.classes)


def _file_layout(run):
    """The run's training data in its file's own layout (how older runs took their statistics)."""
    if run.data.name == "images":  # an image folder is decoded in the input's shape, then as now
        return _raw_dataset(run, None)
    config = dataclasses.replace(run.data, normalize=False)
    return data_mod.load_dataset(config, integer_inputs=getattr(run.spec, "integer_input", False))


def _all_rows(ds) -> tuple:
    """Every example of a dataset, whatever split it fell in."""
    if isinstance(ds.x_train, Inputs):
        return ds.x_train.cat([ds.x_val, ds.x_test]), torch.cat([ds.split(s)[1] for s in SPLITS])
    return tuple(torch.cat([ds.split(s)[i] for s in SPLITS]) for i in (0, 1))


def _check_statistics(run, x_train, stored: dict) -> None:
    """Refuse a run whose data changed since training: statistics taken afresh from the raw
    training split must be the checkpoint's (as statistics are taken now, or in the data file's
    layout, as older runs took them)."""
    changed = False
    if isinstance(x_train, Inputs):
        changed = _inputs_changed(x_train, stored) if run.data.normalize else False
    elif run.data.normalize and x_train.is_floating_point():
        if stored.get("mean") is None:
            changed = True
        else:
            mean, std = data_mod.normalization_stats(x_train)
            if mean.shape != stored["mean"].shape:  # an older run: statistics in the data file's layout
                mean, std = data_mod.normalization_stats(_file_layout(run).x_train)
            changed = mean.numel() != stored["mean"].numel() or not (
                torch.allclose(mean.flatten(), stored["mean"].flatten())
                and torch.allclose(std.flatten(), stored["std"].flatten())
            )
    if changed:
        raise InputError(
            f"the data of {run.run_dir} changed since training: its normalisation statistics differ "
            "from the checkpoint's",
            hint="evaluate on the data the run was trained with, or score a new file with --data FILE",
        )


def _inputs_changed(x_train: Inputs, stored: dict) -> bool:
    """Whether any float input's statistics differ from those the checkpoint holds for it."""
    means, stds = stored.get("mean") or {}, stored.get("std") or {}
    for name, x in zip(x_train.names, x_train.tensors):
        if not x.is_floating_point():
            continue
        if name not in means:
            return True
        mean, std = data_mod.normalization_stats(x)
        if mean.shape != means[name].shape or not (
            torch.allclose(mean, means[name]) and torch.allclose(std, stds[name])
        ):
            return True
    return False


def predict(
    run_dir: str | Path,
    input_path: str | Path,
    *,
    out: str | Path | None = None,
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int = 512,
    force: bool = False,
    allow_custom: bool = True,
) -> PredictResult:
    """Predict the rows of an ``.npz``/``.npy``/``.csv``/``.pt`` file with a run's network.

    Inputs are reshaped to the spec's input where that is a plain flatten/unflatten and
    normalised with the run's training statistics. Classification gives the class and the softmax
    probabilities; ``bce_with_logits`` gives 0/1 and the sigmoid; ``mse`` the raw outputs.

    Args:
        run_dir: a folder written by ``nncli train``.
        input_path: the inputs, one example per row (CSV: features only, header optional).
        out: also write the predictions to this ``.csv`` or ``.npz`` (atomically).
        checkpoint: ``best`` or ``last``.
        force: replace ``out`` if it exists (never allowed when it is the input file itself).
        allow_custom: False refuses a run whose spec has Custom layers (``--no-custom``).

    Returns:
        PredictResult.

    Raises:
        InputError: missing/unreadable input, shape not matching the spec, non-finite values (exit 2).
    """
    _check_out(out, input_path, force)
    run, trained, dev = _open_run(run_dir, checkpoint, device, allow_custom)
    x, files = _read_inputs(run, Path(input_path))
    model = trained.raw_input_model(run.classes)  # raw inputs in: the run's normalisation is its first module
    outputs = []
    with torch.no_grad():
        for lo in range(0, len(x), batch_size):
            # several outputs: the first is the prediction (further ones are auxiliary heads)
            outputs.append(first_output(feed(model, x[lo : lo + batch_size].to(dev))).float().cpu())
    output_shape = tuple(trained.built.output_shape)
    logits = torch.cat(outputs) if outputs else torch.zeros((0,) + output_shape)
    classes = run.classes
    task, predictions, labels, probabilities = _interpret(logits, run.train.loss, classes, output_shape)
    result = PredictResult(
        run_dir=str(run.run_dir),
        checkpoint=str(trained.path),
        input=str(input_path),
        n=len(x),
        task=task,
        predictions=predictions,
        labels=labels,
        probabilities=probabilities,
        classes=classes,
    )
    result.files = files
    if out is not None:
        _write_predictions(Path(out), result)
        result.out = str(out)
    return result


def _check_out(out, input_path, force: bool) -> None:
    """``out`` must be a .csv/.npz in an existing folder; never the input, another file only with ``force``."""
    if out is None:
        return
    out = Path(out)
    if out.suffix.lower() not in (".csv", ".npz"):
        raise InputError(f"expected a .csv or .npz file, found {out.name!r}", param="out")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputError(f"the folder {out.parent} does not exist", param="out")
    if out.exists():
        if Path(input_path).exists() and out.resolve() == Path(input_path).resolve():
            raise InputError(f"{out} is the input file itself: refusing to overwrite your data", param="out")
        if not force:
            raise InputError(f"{out} already exists", hint="pass --force to replace it", param="out")


def _read_inputs(run, input_path: Path) -> tuple:
    """The raw inputs shaped as the spec's input (a CSV's label column dropped, as the run's data
    section names it), and the image files they came from (None for an array file)."""
    from nncli.data.images import is_image_input, read_image_inputs

    files = None
    if several_inputs(run.spec):  # one array per input name
        return read_multi_inputs(input_path, run.spec), None
    if is_image_input(input_path):  # image files or a folder of them, sized as in training
        x, files = read_image_inputs(input_path, run.spec.input, run.data.params)
    else:
        x = data_mod.read_inputs(input_path, target=run.data.target, n_features=math.prod(run.spec.input))
    x = data_mod.fit_input_shape(x, run.spec.input, what=input_path.name)
    if getattr(run.spec, "integer_input", False):  # token ids: checked, never normalised
        return data_mod.check_token_ids(x, run.spec.input_high, input_path.name), files
    return x, files


def _interpret(logits, loss: str, classes, output_shape: tuple) -> tuple:
    """``(task, predictions, labels, probabilities)`` from the network's outputs and the run's loss."""
    probabilities = labels = None
    if loss == "cross_entropy" and logits.dim() > 2:
        # A sequence output [L, V]: the class of every position (for the text set, the
        # predicted next character after each prefix); [N, L, V] probabilities are left out.
        predictions = logits.argmax(-1).tolist()
        if classes:
            labels = ["".join(classes[i] if i < len(classes) else "?" for i in row) for row in predictions]
        return "sequence", predictions, labels, None
    if loss == "cross_entropy":
        probs = torch.softmax(logits, dim=1)
        predictions = probs.argmax(1).tolist()
        if classes:
            labels = [classes[i] if i < len(classes) else str(i) for i in predictions]
        return "classification", predictions, labels, probs.tolist()
    if loss == "bce_with_logits":
        probs = torch.sigmoid(logits)
        task = "binary" if math.prod(output_shape) == 1 else "multilabel"
        if task == "binary":
            probs = probs.reshape(len(probs))
        return task, (probs > 0.5).long().tolist(), None, probs.tolist()
    flat = logits.reshape(len(logits), -1)
    return "regression", (flat[:, 0].tolist() if flat.shape[1] == 1 else flat.tolist()), None, probabilities


def _write_predictions(path: Path, result: PredictResult) -> None:
    """CSV: index, prediction[, predicted_label], one probability column per class; NPZ: the same arrays.

    The class name column is ``predicted_label``: a plain ``label`` next to ``prediction`` reads
    as the ground truth, which predict never knows."""
    if path.suffix.lower() == ".npz":
        arrays = {"predictions": np.asarray(result.predictions)}
        if result.probabilities is not None:
            arrays["probabilities"] = np.asarray(result.probabilities, dtype=np.float32)
        if result.labels is not None:
            arrays["predicted_labels"] = np.asarray(result.labels, dtype=str)
        if result.files is not None:
            arrays["files"] = np.asarray(result.files, dtype=str)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(path, buffer.getvalue(), durable=True)
        return
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    first = result.predictions[0] if result.predictions else None
    width = len(first) if isinstance(first, list) else 1
    header = (
        ["index"]
        + (["file"] if result.files is not None else [])
        + (["prediction"] if width == 1 else [f"prediction_{j}" for j in range(width)])
    )
    if result.labels is not None:
        header.append("predicted_label")
    probs = result.probabilities
    if probs is not None and probs and isinstance(probs[0], list):
        names = result.classes if result.classes and len(result.classes) == len(probs[0]) else range(len(probs[0]))
        header += [f"p_{name}" for name in names]
    elif probs is not None:
        header.append("probability")
    writer.writerow(header)
    for i, pred in enumerate(result.predictions):
        row = (
            [i] + ([result.files[i]] if result.files is not None else []) + (pred if isinstance(pred, list) else [pred])
        )
        if result.labels is not None:
            row.append(result.labels[i])
        if probs is not None:
            row += probs[i] if isinstance(probs[i], list) else [probs[i]]
        writer.writerow(row)
    write_atomic(path, text.getvalue(), durable=True)
