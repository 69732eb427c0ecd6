"""The learning task: targets checked against the loss, the losses, accuracy, and evaluation.

cross_entropy takes integer class labels and one logit per class; for a sequence output
``[L, V]`` (a character model) it takes ``[L]`` labels and is taken over the last dimension, with
accuracy counted per token. bce_with_logits takes 0/1 targets shaped like the output; mse takes
float targets. Losses are summed over a batch with the
per-element losses of one example averaged first, so that a split's mean loss does not depend on
the batch size.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from functools import partial

import torch
import torch.nn.functional as F

from nncli import data as data_mod
from nncli.data.multi import feed, first_output


def _class_labels(y, fail):
    """Labels as cross_entropy takes them: integers, one per example (``[N]``; ``[N, 1]`` is read
    so), none negative; float labels only when they are such integers."""
    if y.is_floating_point():
        if len(y) and (
            y.dim() > 2 or (y.dim() == 2 and y.shape[1] != 1) or not torch.equal(y, y.round()) or y.min() < 0
        ):
            raise fail(
                f"cross_entropy needs integer class labels, found float targets of shape "
                f"{list(y.shape[1:])}" + (f" (e.g. {y.flatten()[0].item():g})" if len(y) else ""),
                "use `loss: mse` for regression targets",
            )
        return y.reshape(len(y)).long()
    if not len(y):
        return y
    if y.dim() == 2 and y.shape[1] == 1:
        y = y.reshape(len(y))
    if y.dim() != 1:
        raise fail(
            f"cross_entropy needs one integer class label per example, found labels of shape {list(y.shape[1:])}",
            "for several 0/1 labels per example use `loss: bce_with_logits` with one output each",
        )
    if y.min() < 0:
        raise fail(
            f"cross_entropy needs class labels 0..C-1, found {y.min().item()}",
            "a label too large for 64 bits reads as a negative number: check the label column",
        )
    return y


def prepare_targets(ds: data_mod.Dataset, loss: str, output_shape: tuple, fail) -> None:
    """Check the labels against the loss and the output layer; convert them in place.

    cross_entropy: integer class labels, fewer classes than outputs. bce_with_logits: 0/1
    targets shaped like the output. mse: float targets with as many values as the output.

    Raises:
        InputError: exit 2 with what the data has and what the network gives.
    """
    out_numel = math.prod(output_shape)
    if loss == "cross_entropy" and len(output_shape) >= 2:
        _prepare_token_targets(ds, output_shape, fail)
        return
    if loss == "cross_entropy":
        if len(output_shape) != 1:
            raise fail(
                f"cross_entropy expects the network to output one logit per class (shape [C]), "
                f"found output shape {list(output_shape)}"
            )
        for split in ("train", "val", "test"):
            setattr(ds, f"y_{split}", _class_labels(getattr(ds, f"y_{split}"), fail))
        need = ds.num_classes or 0
        if need > output_shape[0]:
            raise fail(
                f"label count does not fit the output layer: the data has {need} classes "
                f"(labels 0..{need - 1}), the network outputs {output_shape[0]} logits",
                f"set the last layer's out_features to {need}",
            )
        if output_shape[0] == 1:
            raise fail(
                "cross_entropy over a single logit is always 0: expected >= 2 outputs",
                "for two classes use 2 outputs, or one output with `loss: bce_with_logits`",
            )
        return
    for split in ("train", "val", "test"):
        y = getattr(ds, f"y_{split}").float()
        if len(y) and math.prod(y.shape[1:]) != out_numel:
            what = "targets" if loss == "mse" else "0/1 labels"
            raise fail(
                f"{loss}: the data has {math.prod(y.shape[1:])} {what} per example "
                f"(shape {list(y.shape[1:])}), the network outputs {out_numel} (shape {list(output_shape)})",
                "for class labels 0..C-1 use `loss: cross_entropy` with C outputs" if loss != "cross_entropy" else None,
            )
        if loss == "bce_with_logits" and len(y) and ((y < 0) | (y > 1)).any():
            raise fail(
                f"bce_with_logits needs targets in [0, 1], found values from {y.min().item():g} to {y.max().item():g}",
                "for several classes use `loss: cross_entropy`",
            )
        setattr(ds, f"y_{split}", y.reshape((len(y),) + tuple(output_shape)))


def _prepare_token_targets(ds: data_mod.Dataset, output_shape: tuple, fail) -> None:
    """cross_entropy over the last dimension: ``[*S, V]`` outputs need integer ``[*S]`` targets."""
    want = tuple(output_shape[:-1])
    for split in ("train", "val", "test"):
        y = getattr(ds, f"y_{split}")
        if y.is_floating_point():
            if len(y) and not torch.equal(y, y.round()):
                raise fail(
                    f"cross_entropy needs integer class labels, found float targets of shape {list(y.shape[1:])}",
                    "use `loss: mse` for regression targets",
                )
            y = y.long()
        if len(y) and tuple(y.shape[1:]) != want:
            raise fail(
                f"cross_entropy over the last dimension: the network outputs {list(output_shape)} "
                f"(one logit per class for each of {list(want)} positions), so each example needs "
                f"{list(want)} labels; the data has {list(y.shape[1:])}",
                "for one label per example, end the network in one logit per class (shape [C])",
            )
        if len(y) and y.min() < 0:
            raise fail(f"class labels must be >= 0, found {int(y.min())}")
        setattr(ds, f"y_{split}", y)
    need = ds.num_classes or 0
    if need > output_shape[-1]:
        raise fail(
            f"label count does not fit the output layer: the data has {need} classes "
            f"(labels 0..{need - 1}), the network outputs {output_shape[-1]} logits per position",
            f"set the last layer's out_features to {need}",
        )


def _loss_sum(loss: str, out, y):
    """Summed loss over the batch; per-element losses are averaged within an example first."""
    if loss == "cross_entropy" and out.dim() > 2:
        # [N, *S, V] logits vs [N, *S] labels: mean over the positions of an example, summed.
        per_example = y[0].numel() if len(y) else 1
        return F.cross_entropy(out.flatten(0, -2), y.flatten(), reduction="sum") / per_example
    if loss == "cross_entropy":
        return F.cross_entropy(out, y, reduction="sum")
    per_example = math.prod(out.shape[1:])
    if loss == "mse":
        return F.mse_loss(out, y, reduction="sum") / per_example
    return F.binary_cross_entropy_with_logits(out, y, reduction="sum") / per_example


def loss_mean(loss: str, out, y):
    """Mean loss over the batch (per-element losses averaged within an example first): the same
    number as ``_loss_sum / len(y)``, computed the way a hand-written loop does."""
    if loss == "cross_entropy" and out.dim() > 2:
        return F.cross_entropy(out.flatten(0, -2), y.flatten())
    if loss == "cross_entropy":
        return F.cross_entropy(out, y)
    if loss == "mse":
        return F.mse_loss(out, y)
    return F.binary_cross_entropy_with_logits(out, y)


def outputs_loss(loss: str, out, y, aux: tuple = ()):
    """The training loss of a batch: :func:`loss_mean` of the first output (the only one of a
    network with one output), plus ``weight`` times that of each further output ``(index,
    weight)`` in ``aux`` (``train.outputs``: auxiliary heads trained on the same labels)."""
    if not isinstance(out, (tuple, list)):
        return loss_mean(loss, out, y)
    total = loss_mean(loss, out[0], y)
    for index, weight in aux:
        total = total + weight * loss_mean(loss, out[index], y)
    return total


def _correct(loss: str, out, y):
    """Correct predictions in the batch (a fraction per example for multi-label bce and for
    sequences, so accuracy is per token); None for mse."""
    if loss == "cross_entropy" and out.dim() > 2:
        return (out.argmax(-1) == y).float().flatten(1).mean(1).sum()
    if loss == "cross_entropy":
        return (out.argmax(1) == y).sum()
    if loss == "bce_with_logits":
        return ((out > 0) == (y > 0.5)).float().flatten(1).mean(1).sum()
    return None


@torch.no_grad()
def evaluate_model(
    model,
    x,
    y,
    loss: str,
    *,
    batch_size: int = 512,
    device=None,
    autocast=None,
    fetch=None,
    shard: tuple[int, int] = (0, 1),
    reduce=None,
    mode_owner=None,
    output_shape: tuple | None = None,
) -> dict:
    """Loss and accuracy of ``model`` on ``(x, y)`` in eval mode; sums stay on the device, one sync.

    Args:
        model: the network (its train/eval mode is restored afterwards).
        x, y: inputs ``(N, ...)`` and targets prepared by :func:`prepare_targets`.
        loss: the run's loss name (accuracy is None for mse).
        fetch: ``fetch(x, y, idx) -> (xb, yb)`` on the device (default: index and move).
        shard, reduce: ``(rank, world)`` and an all-reduce for DDP: each rank takes every
            world-th example and the sums are added up.
        mode_owner: the module whose mode to flip (the raw model when ``model`` is a wrapper).
        output_shape: the network's output shape; given, the split also gets the metrics of
            :func:`nncli.metrics.detail_report` (RMSE, MAE, R²; per-class scores, confusion).

    Returns:
        ``{"loss": mean loss, "accuracy": fraction or None, "n": examples}`` (and the detailed
        metrics' keys with ``output_shape``).
    """
    from nncli.metrics import detail_kind, detail_report, detail_sums

    n = len(y)
    if n == 0:
        return {"loss": None, "accuracy": None, "n": 0}
    device = device or next(model.parameters()).device
    owner = mode_owner if mode_owner is not None else model
    fetch = fetch or (lambda xs, ys, idx: (xs[idx].to(device), ys[idx].to(device)))
    rank, world = shard
    extra = detail_kind(loss, output_shape)[1] if output_shape is not None else 0
    detail = partial(detail_sums, loss, output_shape) if extra else None
    # sums of loss, correct, then the detailed metrics' sums: one tensor, one reduce, one sync
    totals = torch.zeros(2 + extra, dtype=torch.float64, device=device)
    was_training = owner.training
    owner.eval()
    try:
        local = torch.arange(rank, n, world, device=x.device)
        _add_batches(model, (x, y), loss, totals, local, batch_size, fetch, autocast, detail)
    finally:
        owner.train(was_training)
    if reduce is not None:
        totals = reduce(totals)
    sums = totals.tolist()
    result = {"loss": sums[0] / n, "accuracy": sums[1] / n if loss != "mse" else None, "n": n}
    if extra:
        result.update(detail_report(loss, output_shape, sums[2:], n))
    return result


def _add_batches(model, data: tuple, loss: str, totals, local, batch_size: int, fetch, autocast, detail) -> None:
    """Add each batch's loss sum, correct count and detailed sums into ``totals`` (on the device)."""
    for lo in range(0, len(local), batch_size):
        xb, yb = fetch(*data, local[lo : lo + batch_size])
        with autocast() if autocast is not None else nullcontext():
            out = first_output(feed(model, xb))  # further outputs are for training only
        out = out.float()
        totals[0] += _loss_sum(loss, out, yb).double()
        correct = _correct(loss, out, yb)
        if correct is not None:
            totals[1] += correct.double()
        if detail is not None:
            totals[2:] += detail(out, yb)
