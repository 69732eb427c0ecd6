"""Plain values for reports: JSON cleaning and number formatting, shared by tools and renderers.

Neutral ground: tools (train, sweep, diagram, ...) clean the documents they write to disk here,
and the terminal renderers format numbers here, so neither has to import the other. Pure Python:
no torch, no rich.
"""

from __future__ import annotations

import math
from typing import Any

import yaml


def jsonable(obj: Any) -> Any:
    """A copy of ``obj`` that strict JSON (``allow_nan=False``) and ``yaml.safe_dump`` accept.

    NaN and infinities become ``None`` (JSON has no spelling for them), tuples become lists,
    dict keys become strings, paths and other unknown objects their ``str``; objects with a
    ``to_json()`` are replaced by its (cleaned) result.

    Args:
        obj: a result document: dicts, lists, tuples, numbers, strings, paths.

    Returns:
        the cleaned document; ``obj`` itself is not changed.

    Example:
        >>> jsonable({"loss": float("nan"), "shape": (1, 2)})
        {'loss': None, 'shape': [1, 2]}
    """
    # bool and int before float: bool is an int, and neither can be non-finite.
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "to_json"):
        return jsonable(obj.to_json())
    return str(obj)


def plain_value(value: Any) -> Any:
    """Hashable, printable form of an override value (a layer mapping becomes its YAML flow text)."""
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return value


# -- number formats -----------------------------------------------------------------------------
def fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def fmt_si(n: float | None, unit: str = "") -> str:
    """1_234_567 -> '1.23 M' (decimal prefixes, as FLOP counts are quoted)."""
    if n is None:
        return "-"
    if n == 0:
        return f"0 {unit}".strip()
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}{unit}".strip()
    return f"{n:g} {unit}".strip()


def fmt_bytes(n: float | None) -> str:
    """Bytes in binary units: 1536 -> '1.50 KiB'."""
    if n is None:
        return "-"
    for prefix, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}"
    return f"{int(n)} B"


def fmt_shape(shape) -> str:
    """An example shape as a batched one: (3, 32, 32) -> '[N, 3, 32, 32]'."""
    if shape is None:
        return "-"
    return "[" + ", ".join(["N", *map(str, shape)]) + "]"


def fmt_float(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"
