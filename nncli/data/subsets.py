"""Class subsets of a labelled set: ``classes`` (keep these labels, renumbered 0..k-1) and
``per_class`` (keep only N training examples of each class).

Transfer learning's demonstration needs both: a network trained on digits 0-4, then one trained
on digits 5-9 with only N examples per class. ``per_class`` thins the *training* split only, after
the seeded split, so the test split (and its accuracy) stays the full one whatever N is.

Validation is torch-free (:func:`resolve_subset_params`); the selection works on numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

SUBSET_KEYS = {"classes": None, "per_class": None}


def resolve_subset_params(merged: dict, err: Callable[..., Exception], n_labels: int) -> dict[str, Any]:
    """``classes`` and ``per_class`` of a ``data:`` section, validated (absent keys stay absent)."""
    out: dict[str, Any] = {}
    classes = merged.get("classes")
    if classes is not None:
        if (
            not isinstance(classes, list)
            or len(classes) < 2
            or any(isinstance(c, bool) or not isinstance(c, int) for c in classes)
        ):
            raise err(
                "classes", f"expected a list of at least two class labels like [5, 6, 7, 8, 9], found {classes!r}"
            )
        bad = [c for c in classes if not 0 <= c < n_labels]
        if bad:
            raise err("classes", f"expected labels from 0 to {n_labels - 1}, found {bad[0]}")
        if len(set(classes)) != len(classes):
            raise err("classes", f"expected each label once, found {classes}")
        out["classes"] = list(classes)
    per_class = merged.get("per_class")
    if per_class is not None:
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise err("per_class", f"expected an integer >= 1 (training examples per class), found {per_class!r}")
        out["per_class"] = per_class
    return out


def select_classes(x: np.ndarray, y: np.ndarray, classes: list[int], names: list[str] | None):
    """Keep the examples of ``classes``, relabelled by their position in that list.

    Returns:
        ``(x, y, names)``: ``names[i]`` is the original name of new label ``i``.
    """
    keep = np.isin(y, classes)
    lookup = {c: i for i, c in enumerate(classes)}
    relabelled = np.asarray([lookup[int(v)] for v in y[keep]], dtype=np.int64)
    new_names = [names[c] if names and c < len(names) else str(c) for c in classes]
    return x[keep], relabelled, new_names


def per_class_subset(x: np.ndarray, y: np.ndarray, per_class: int, gen: np.random.Generator):
    """At most ``per_class`` examples of each label, drawn with ``gen``, in their original order."""
    keep = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        keep.append(idx if len(idx) <= per_class else gen.choice(idx, size=per_class, replace=False))
    order = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    return x[order], y[order]
