"""Size limits checked before any work: spec file size, total layers after expanding ``Repeat``,
nesting depth. Pure Python (no torch), so ``check`` refuses a hostile spec in milliseconds.

Why each exists: a 67-byte ``Repeat: {times: 1000000000, layers: [ReLU]}`` would make the builder
allocate without end, nested Repeats multiply (1000**10 copies), and PyYAML composes a whole file
before any per-value bound can apply, so a 54 MB spec parses for minutes. The defaults are far
above real networks (a 10,000-layer spec works); each limit is raised with an environment
variable, named in the error's hint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from nncli.errors import SpecError


@dataclass(frozen=True)
class Limit:
    """One bound: its default, the environment variable that raises it and what it counts."""

    env: str
    default: int
    what: str

    def value(self) -> int:
        """The bound in force: the environment variable when it holds a positive integer."""
        text = os.environ.get(self.env, "").strip().replace("_", "")
        if text:
            try:
                number = int(text)
            except ValueError:
                number = 0
            if number > 0:
                return number
            from nncli.errors import InputError

            raise InputError(
                f"{self.env}={os.environ[self.env]!r}: expected a positive integer "
                f"({self.what}; default {self.default:,})"
            )
        return self.default

    def hint(self) -> str:
        return f"if the spec is meant to be this large, raise the limit: {self.env}=<n> nncli ..."


# A 10,000-layer flat spec is ~300 KB; ResNet-152 written out layer by layer ~100 KB.
MAX_SPEC_BYTES = Limit("NNCLI_MAX_SPEC_BYTES", 8 * 2**20, "bytes of spec text")
# Layers after expanding every Repeat (containers counted too): 10x the largest real spec we know.
MAX_LAYERS = Limit("NNCLI_MAX_LAYERS", 100_000, "layers after expanding every Repeat")
# Residual/Repeat/Block nesting: real networks nest 3-5 deep.
MAX_DEPTH = Limit("NNCLI_MAX_DEPTH", 64, "levels of nested Residual/Repeat")


def check_text_size(size: int, file=None) -> None:
    """Refuse spec text of ``size`` bytes over :data:`MAX_SPEC_BYTES`, before PyYAML sees it."""
    limit = MAX_SPEC_BYTES.value()
    if size > limit:
        raise SpecError(
            f"the spec is {size:,} bytes; the limit is {limit:,} bytes ({limit / 2**20:.0f} MiB)",
            file=file,
            line=1,
            column=1,
            hint=MAX_SPEC_BYTES.hint(),
        )


def _times(layer) -> int | None:
    """A Repeat's copy count when it is a plain integer (an expression is counted at build time)."""
    times = getattr(layer, "times", None)
    return times if isinstance(times, int) and not isinstance(times, bool) else None


def _children(layer) -> list:
    """The layer lists nested in ``layer`` (body/shortcut of Residual, layers of Repeat, ...)."""
    out = []
    for attr in ("body", "shortcut", "layers", "branches"):
        value = getattr(layer, attr, None)
        if isinstance(value, tuple) and value and isinstance(value[0], tuple):  # a list of branches
            out.extend(value)
        elif isinstance(value, tuple):
            out.append(value)
    return out


def expanded_count(layers) -> int:
    """Layers after expanding every Repeat, counted arithmetically (nothing is built or copied).

    Containers count as one layer each, plus their contents; a Repeat whose ``times`` is an
    expression counts once here (its copies are checked by :func:`check_copies` at build time).
    """
    total = 0
    for layer in layers:
        inner = sum(expanded_count(c) for c in _children(layer))
        total += 1 + (_times(layer) or 1) * inner
    return total


def depth(layers) -> int:
    """How deeply containers nest (a flat list is depth 1)."""
    deepest = 0
    for layer in layers:
        deepest = max(deepest, 1 + max((depth(c) for c in _children(layer)), default=0))
    return deepest


def _largest_repeat(layers, factor: int = 1):
    """``(expanded count, layer)`` of the Repeat contributing most: where to point the user."""
    best = (0, None)
    for layer in layers:
        times = _times(layer)
        for child in _children(layer):
            inner = (times or 1) * factor
            if times and times > 1:
                best = max(best, (inner * expanded_count(child), layer), key=lambda b: b[0])
            best = max(best, _largest_repeat(child, inner), key=lambda b: b[0])
    return best


def check_spec(spec) -> None:
    """Nesting depth, then the expanded layer count of a parsed spec; a located SpecError each.

    Raises:
        SpecError: exit 2, naming the figure, the limit and the Repeat that makes it.
    """
    limit = MAX_DEPTH.value()
    found = _depth_or_none(spec.layers, limit)
    if found is not None:
        raise found.where.error(
            f"layers nest more than {limit} levels deep (Residual/Repeat inside each other)", MAX_DEPTH.hint()
        )
    limit = MAX_LAYERS.value()
    total = expanded_count(spec.layers)
    if total > limit:
        _, layer = _largest_repeat(spec.layers)
        message = f"the spec expands to {total:,} layers; the limit is {limit:,}"
        if layer is None:
            raise SpecError(message, file=spec.document.file if spec.document else None, line=1, hint=MAX_LAYERS.hint())
        where = layer.arg_where.get("times", layer.where)
        raise where.error(f"{message} (Repeat times {layer.times:,} here)", MAX_LAYERS.hint())


def _depth_or_none(layers, limit: int, level: int = 1):
    """The first layer found nested deeper than ``limit``, or None (stops as soon as it is found)."""
    for layer in layers:
        if level > limit:
            return layer
        for child in _children(layer):
            found = _depth_or_none(child, limit, level + 1)
            if found is not None:
                return found
    return None


def check_copies(times: int, body, where, enclosing: int = 1) -> None:
    """For the builder, before it makes ``times`` copies of ``body``: refuse when the copies, times
    the copies of every enclosing Repeat, pass :data:`MAX_LAYERS`.

    Args:
        times: the evaluated copy count; body: the repeated layer specs; where: the Repeat's
            :class:`~nncli.spec.source.Where` (its ``times`` argument's, ideally); enclosing: the
            product of the enclosing Repeats' copy counts.
    """
    limit = MAX_LAYERS.value()
    total = enclosing * times * expanded_count(body)
    if total > limit:
        around = f" inside Repeats making {enclosing:,} copies" if enclosing > 1 else ""
        raise where.error(
            f"Repeat times {times:,}{around} expands to {total:,} layers; the limit is {limit:,}", MAX_LAYERS.hint()
        )
