"""Synthetic data sets (two moons, circles, spirals, XOR, Gaussian blobs, a regression curve).

Generated here from a seeded numpy ``Generator``, so the same seed gives the same points on every
platform and every version of scikit-learn.
"""

from __future__ import annotations

import numpy as np


def _split_counts(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def make_moons(rng, n: int, noise: float):
    """Two interleaving half circles (outer: label 0, inner: label 1) plus Gaussian noise."""
    n_out, n_in = _split_counts(n, 2)
    t_out = rng.uniform(0, np.pi, n_out)
    t_in = rng.uniform(0, np.pi, n_in)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], 1)
    inner = np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], 1)
    x = np.concatenate([outer, inner]) + rng.normal(0, noise, (n, 2))
    return x.astype(np.float32), np.repeat([0, 1], [n_out, n_in])


def make_circles(rng, n: int, noise: float, factor: float):
    """A circle of radius 1 (label 0) around one of radius ``factor`` (label 1)."""
    n_out, n_in = _split_counts(n, 2)
    t = rng.uniform(0, 2 * np.pi, n)
    radius = np.repeat([1.0, factor], [n_out, n_in])
    x = np.stack([radius * np.cos(t), radius * np.sin(t)], 1) + rng.normal(0, noise, (n, 2))
    return x.astype(np.float32), np.repeat([0, 1], [n_out, n_in])


def make_spirals(rng, n: int, noise: float, classes: int, turns: float):
    """``classes`` interleaved Archimedean spiral arms, ``turns`` revolutions each."""
    counts = _split_counts(n, classes)
    xs, ys = [], []
    for c, count in enumerate(counts):
        r = rng.uniform(0.05, 1.0, count)
        angle = 2 * np.pi * (turns * r + c / classes)
        xs.append(np.stack([r * np.cos(angle), r * np.sin(angle)], 1))
        ys.append(np.full(count, c))
    x = np.concatenate(xs) + rng.normal(0, noise, (n, 2))
    return x.astype(np.float32), np.concatenate(ys)


def make_xor(rng, n: int, noise: float):
    """Points in [-1, 1]^2 labelled by the XOR of the signs of their coordinates."""
    x = rng.uniform(-1, 1, (n, 2))
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)
    return (x + rng.normal(0, noise, (n, 2))).astype(np.float32), y


def make_blobs(rng, n: int, classes: int, features: int, spread: float):
    """Isotropic Gaussian blobs around centres drawn uniformly from [-5, 5]^features."""
    centres = rng.uniform(-5, 5, (classes, features))
    y = np.repeat(np.arange(classes), _split_counts(n, classes))
    x = centres[y] + rng.normal(0, spread, (n, features))
    return x.astype(np.float32), y


def make_regression(rng, n: int, noise: float, features: int):
    """``y = sum_i sin(x_i) / sqrt(features) + noise``, x uniform in [-3, 3]^features; y is (n, 1)."""
    x = rng.uniform(-3, 3, (n, features))
    y = np.sin(x).sum(1, keepdims=True) / np.sqrt(features) + rng.normal(0, noise, (n, 1))
    return x.astype(np.float32), y.astype(np.float32)


SYNTHETIC = {
    "moons": make_moons,
    "circles": make_circles,
    "spirals": make_spirals,
    "xor": make_xor,
    "blobs": make_blobs,
    "regression": make_regression,
}
