"""Validating one section of a spec (``data:``, ``train:``) with overrides applied on top.

The ``data:`` and ``train:`` resolvers share this: the merge of spec values and overrides (flags,
a sweep), errors located where the value came from, and the number check with its wording.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

# fail(path, message, hint, from_override) -> Exception; path is relative to the section.
Fail = Callable[[tuple, str, "str | None", bool], Exception]


def describe(value: Any) -> str:
    """How an error message names a found value: ``an integer (-5)``, ``a list``, ``nothing (null)``."""
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "nothing (null)",
    }.get(type(value), type(value).__name__)
    return kind if isinstance(value, (dict, list, type(None))) else f"{kind} ({value!r})"


class Section:
    """A spec section's values with overrides applied, and where each value came from.

    Args:
        spec_values: the section's mapping from the spec.
        overrides: values from flags or a sweep; ``None`` means "not given" and is skipped.
        fail: builds the located error (spec file and line for spec values, the flag for overrides).

    Example:
        >>> s = Section({"noise": 0.1}, {"n": 300}, fail)
        >>> s.number("n", integer=True, low=1), s.origin["n"]
        (300, True)
    """

    def __init__(self, spec_values: dict | None, overrides: dict | None, fail: Fail):
        self.fail = fail
        self.values: dict[str, Any] = {}
        self.origin: dict[str, bool] = {}  # key -> came from an override
        for key, value in (spec_values or {}).items():
            self.values[key], self.origin[key] = value, False
        for key, value in (overrides or {}).items():
            if value is not None:
                self.values[key], self.origin[key] = value, True

    def error(self, key: str, message: str, hint: str | None = None) -> Exception:
        """The located error for ``key`` (raise it)."""
        return self.fail((key,), message, hint, self.origin.get(key, False))

    def number(
        self,
        key: str,
        *,
        integer: bool = False,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        default: Any = None,
        optional: bool = False,
    ):
        """The value at ``key`` as a finite int/float within the bounds.

        Args:
            key: the key in this section.
            integer: require an integral value (``3`` or ``3.0``), returned as ``int``.
            low, high: inclusive bounds; ``low_open`` makes the low one exclusive.
            default: used when the key is absent (``None``: absent gives ``None``).
            optional: an explicit ``null`` is allowed and returned as ``None``.

        Raises:
            the section's error: not a number (booleans are not), NaN or infinite, out of bounds.
        """
        if key not in self.values and default is None:
            return None
        value = self.values.get(key, default)
        if value is None and optional:
            return None
        # isfinite: YAML's .inf / .nan are floats; they would pass the bounds and fail much later.
        # (only floats: math.isfinite(10**400) would raise OverflowError)
        ok = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and math.isfinite(value)
        if ok and integer:
            ok = isinstance(value, int) or value.is_integer()
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value <= high
        if not ok:
            bounds = ([f"{'>' if low_open else '>='} {low}"] if low is not None else []) + (
                [f"<= {high}"] if high is not None else []
            )
            raise self.error(
                key,
                f"expected {'an integer' if integer else 'a number'}"
                f"{' ' + ' and '.join(bounds) if bounds else ''}, found {describe(value)}",
            )
        return int(value) if integer else float(value)
