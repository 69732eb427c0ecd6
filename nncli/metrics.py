"""Metrics beyond loss and accuracy: RMSE, MAE and R² for regression; per-class precision, recall,
F1 and the confusion matrix for classification.

An evaluation pass adds up sums (the confusion counts; per-output sums of errors and targets)
batch by batch and across DDP ranks, so it keeps its one host sync; :func:`detail_report` turns
the totals into plain numbers at the end. The definitions are scikit-learn's defaults (several
regression outputs: the mean over outputs), except that a ratio whose denominator is 0 (precision
of a class never predicted, R² of a constant target) is undefined, None or left out of a mean,
rather than a made-up 0.
"""

from __future__ import annotations

import math

# A confusion matrix with more classes than this is not read by anyone (a character model's
# vocabulary, ImageNet): such runs keep loss and accuracy only.
MAX_CLASSES = 100


def detail_kind(loss: str, output_shape: tuple) -> tuple[str | None, int]:
    """``(kind, size)``: which detailed metrics a run gets and how many sums they take.

    ``classification`` for cross_entropy over ``[C]`` logits (C <= MAX_CLASSES) and for a single
    bce_with_logits output (two classes, 0 and 1); ``regression`` for mse; None otherwise
    (multi-label outputs, sequences), with size 0.
    """
    numel = math.prod(output_shape)
    if loss == "cross_entropy" and len(output_shape) == 1 and output_shape[0] <= MAX_CLASSES:
        return "classification", output_shape[0] ** 2
    if loss == "bce_with_logits" and numel == 1:
        return "classification", 4
    if loss == "mse":
        return "regression", 4 * numel
    return None, 0


def detail_sums(loss: str, output_shape: tuple, out, y):
    """The batch's sums for :func:`detail_report`, a flat float64 tensor (to add up and all-reduce).

    Classification: the confusion counts (row: true class, column: predicted). Regression: per
    output, the sums of squared error, absolute error, target and squared target.
    """
    import torch

    kind, size = detail_kind(loss, output_shape)
    if kind == "classification":
        classes = math.isqrt(size)
        if loss == "bce_with_logits":
            pred, true = (out.reshape(-1) > 0).long(), (y.reshape(-1) > 0.5).long()
        else:
            pred, true = out.argmax(1), y.reshape(-1).long()
        return torch.bincount(true * classes + pred, minlength=size).double()
    p = out.reshape(len(out), -1).double()
    t = y.reshape(len(y), -1).double()
    return torch.cat([(p - t).square().sum(0), (p - t).abs().sum(0), t.sum(0), t.square().sum(0)])


def detail_report(loss: str, output_shape: tuple, sums: list, n: int) -> dict:
    """Plain numbers from the totals of :func:`detail_sums` over ``n`` examples.

    Returns:
        regression: ``{"rmse", "mae", "r2"}``; classification: ``{"per_class": [{"precision",
        "recall", "f1", "support"} per label], "confusion": [[count] * C] * C}`` (rows: true label,
        columns: predicted); ``{}`` for the other tasks.
    """
    kind, size = detail_kind(loss, output_shape)
    if kind == "classification":
        classes = math.isqrt(size)
        return classification_report([[int(sums[r * classes + c]) for c in range(classes)] for r in range(classes)])
    if kind == "regression":
        return regression_report(sums, n)
    return {}


def classification_report(confusion: list) -> dict:
    """Per-class precision, recall, F1 and support from a confusion matrix (rows true, columns predicted)."""
    per_class = []
    for k, row in enumerate(confusion):
        tp, support = row[k], sum(row)
        predicted = sum(r[k] for r in confusion)
        per_class.append(
            {
                "precision": _ratio(tp, predicted),
                "recall": _ratio(tp, support),
                "f1": _ratio(2 * tp, predicted + support),  # 2TP / (2TP + FP + FN)
                "support": support,
            }
        )
    return {"per_class": per_class, "confusion": confusion}


def regression_report(sums: list, n: int) -> dict:
    """RMSE, MAE and R² (each the mean over outputs) from per-output sums over ``n`` examples.

    R² is undefined for an output whose target is constant on the split (an image's always-black
    border pixel): such outputs are left out of its mean, and it is None when every output is."""
    d = len(sums) // 4
    sse, sae, st, st2 = (sums[i * d : (i + 1) * d] for i in range(4))
    rmse = sum(math.sqrt(e / n) for e in sse) / d
    mae = sum(sae) / (n * d)
    r2 = []
    for e, s, s2 in zip(sse, st, st2):
        total = s2 - s * s / n  # the target's sum of squares about its mean
        if total > 1e-12 * max(s2, 1e-300):
            r2.append(1.0 - e / total)
    return {"rmse": rmse, "mae": mae, "r2": sum(r2) / len(r2) if r2 else None}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None
