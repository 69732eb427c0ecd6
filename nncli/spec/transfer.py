"""The spec's ``transfer:`` section: start a network from a finished run's weights.

::

    transfer:
      from: ../runs/digits-0-4   # a run folder written by `nncli train` (relative to this spec)
      layers: "0:9"              # the layers whose weights are copied: "a:b", N (= "0:N") or a name
      freeze: true               # copied layers keep their weights and stay in eval mode
      checkpoint: best           # or last

Validated here, torch-free, into a :class:`TransferSpec`; the builder copies the weights
(:mod:`nncli.transfer`). A ``layers`` name means every layer up to and including the top-level
layer with that ``name``. Write a slice in quotes: YAML 1.1 reads an unquoted ``0:9`` as the
base-60 number 9.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncli.errors import did_you_mean
from nncli.spec.source import Document, Where

TRANSFER_KEYS = ("from", "layers", "freeze", "checkpoint")
CHECKPOINTS = ("best", "last")
_SLICE = re.compile(r"^\s*(?:layers)?\s*\[?\s*(\d*)\s*:\s*(\d*)\s*\]?\s*$")
EXAMPLE = 'transfer: {from: ../runs/digits-0-4, layers: "0:9", freeze: true}'


@dataclass(frozen=True)
class TransferSpec:
    """Copy the weights of top-level layers ``start:stop`` from a run's checkpoint."""

    source: Path  # the run folder, resolved against the spec's folder
    start: int
    stop: int  # exclusive
    freeze: bool
    checkpoint: str  # best or last
    where: Where  # the `transfer` section
    from_where: Where  # its `from` value (a missing or foreign run folder points here)
    layers_where: Where  # its `layers` value

    @property
    def indices(self) -> range:
        return range(self.start, self.stop)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)
    return kind if isinstance(value, (dict, list)) else f"{kind} ({value!r})"


def parse_transfer(value: Any, doc: Document, layers: tuple, base_dir: Path) -> TransferSpec:
    """Validate the raw ``transfer:`` mapping against the spec's top-level ``layers``.

    Raises:
        SpecError: located at the offending key or value.
    """
    path = ("transfer",)

    def fail(sub: tuple, message: str, hint: str | None = None, *, key: bool = False):
        return doc.where(path + sub, key=key).error(message, hint)

    if not isinstance(value, dict):
        raise fail((), f"expected a mapping with `from` and `layers`, found {_describe(value)}", EXAMPLE)
    for key in value:
        if key not in TRANSFER_KEYS:
            raise fail(
                (key,),
                f"unknown key {key!r} in transfer",
                did_you_mean(str(key), TRANSFER_KEYS) or "allowed: " + ", ".join(TRANSFER_KEYS),
                key=True,
            )
    for required in ("from", "layers"):
        if required not in value:
            raise fail((), f"transfer needs `{required}`", EXAMPLE)
    source = value["from"]
    if not isinstance(source, str) or not source.strip():
        raise fail(("from",), f"expected a run folder (a path), found {_describe(source)}")
    resolved = Path(source).expanduser()
    if not resolved.is_absolute():
        resolved = base_dir / resolved
    start, stop = _layer_range(value["layers"], layers, fail)
    freeze = value.get("freeze", False)
    if not isinstance(freeze, bool):
        raise fail(("freeze",), f"expected true or false, found {_describe(freeze)}")
    checkpoint = value.get("checkpoint", "best")
    if checkpoint not in CHECKPOINTS:
        raise fail(("checkpoint",), f"expected best or last, found {_describe(checkpoint)}")
    return TransferSpec(
        source=resolved.resolve(),
        start=start,
        stop=stop,
        freeze=freeze,
        checkpoint=checkpoint,
        where=doc.where(path),
        from_where=doc.where(path + ("from",)),
        layers_where=doc.where(path + ("layers",)),
    )


def _layer_range(value: Any, layers: tuple, fail) -> tuple[int, int]:
    """``layers`` -> ``(start, stop)`` among the spec's top-level layers."""
    count = len(layers)
    names = [layer.name for layer in layers if layer.name]
    form = '"a:b" (quoted), an integer N for "0:N", [a, b], or a top-level layer name'
    if isinstance(value, bool):
        raise fail(("layers",), f"expected {form}, found {_describe(value)}")
    if isinstance(value, int):
        start, stop = 0, value
    elif (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        start, stop = value
    elif isinstance(value, str) and _SLICE.match(value):
        a, b = _SLICE.match(value).groups()
        start, stop = int(a or 0), int(b) if b else count
    elif isinstance(value, str) and value.strip():
        matches = [i for i, layer in enumerate(layers) if layer.name == value]
        if not matches:
            raise fail(
                ("layers",),
                f"no top-level layer is named {value!r}",
                did_you_mean(value, names)
                or (
                    "named layers: " + ", ".join(names)
                    if names
                    else 'name a layer with `name: trunk` in its arguments, or write "0:N"'
                ),
            )
        start, stop = 0, matches[0] + 1
    else:
        raise fail(("layers",), f"expected {form}, found {_describe(value)}")
    if not 0 <= start < stop <= count:
        raise fail(
            ("layers",),
            f"expected a non-empty range of the spec's {count} top-level layers "
            f"(0 <= a < b <= {count}), found {start}:{stop}",
        )
    return start, stop
