"""The builder's view of ``vars`` and expressions: which names are in scope where, and the value
of a layer argument written as ``width``, ``"in_channels * expansion"`` or ``"min(64, c // 2)"``.

Scopes nest like the spec: the top-level ``vars`` first, then each enclosing block's, evaluated
when the block is entered with that block's incoming shape; inner names shadow outer ones. Every
layer also sees ``in_channels`` (dim 1 of the batched tensor) and ``in_features`` (its last dim).
Pure Python (no torch): shapes come in as tuples of ints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

from nncli.errors import did_you_mean
from nncli.spec.expr import MAX_VALUE, SHAPE_NAMES, ExprError, evaluate, is_identifier, looks_like_expression, names_in
from nncli.spec.source import Where


def shape_names(shape: tuple) -> dict[str, int]:
    """``in_channels`` and ``in_features`` of a per-example shape (no batch dim)."""
    if not shape:  # a scalar per example: neither exists
        return {}
    return {"in_channels": shape[0], "in_features": shape[-1]}


class Scope:
    """The vars visible at one point of a build (a stack of frames, innermost last)."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = [{}]

    def names(self, shape: tuple) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for frame in self.frames:
            out.update(frame)
        out.update(shape_names(shape))
        return out

    @contextmanager
    def entered(
        self,
        values: Mapping[str, Any] | None,
        where: Mapping[str, Where],
        shape: tuple,
        fallback: Where,
        caller: frozenset[str] | tuple = (),
    ):
        """Context: a block's ``vars``, evaluated in order against its incoming ``shape``.

        Names in ``caller`` (a template's arguments as written where it is used) are evaluated in
        the enclosing scope alone, so ``{c: c}`` passes the caller's ``c`` whatever the template's
        own params are called; the others see the vars before them in this frame too.
        """
        frame: dict[str, Any] = {}
        pending: dict[str, Any] = {}
        for name in caller:  # before the new frame exists: the caller's names only
            if values and name in values:
                pending[name] = self.number(values[name], where.get(name, fallback), shape, what=f"var {name!r}")
        self.frames.append(frame)
        try:
            for name, value in (values or {}).items():
                if name in pending:
                    frame[name] = pending[name]
                    continue
                frame[name] = self.number(value, where.get(name, fallback), shape, what=f"var {name!r}")
            yield frame
        finally:
            self.frames.pop()

    @contextmanager
    def bound(self, values: Mapping[str, Any]):
        """Context: names bound to values already computed (a Repeat's ``index``, an ``each`` copy)."""
        self.frames.append(dict(values))
        try:
            yield
        finally:
            self.frames.pop()

    def number(self, value: Any, where: Where, shape: tuple, *, what: str, integer: bool = False) -> Any:
        """A var's value or an expression's: numbers pass, strings are evaluated."""
        if isinstance(value, str):
            value = self._evaluate(value, where, shape, what)
        _check_bounded(value, where, what)
        if integer:
            value = _whole(value, where, what, source=None)
        return value

    def argument(
        self, key: str, value: Any, where: Where, shape: tuple, type_name: str, *, integer: bool, keep_strings: bool
    ) -> Any:
        """The value of a layer argument, with expressions (also inside lists) evaluated.

        Args:
            integer: torch wants an integer here (a fraction is an error).
            keep_strings: the argument takes words (``mode: nearest-exact``): strings stay strings.
        """
        if isinstance(value, list):
            return [
                self.argument(key, v, where, shape, type_name, integer=integer, keep_strings=keep_strings)
                for v in value
            ]
        if not isinstance(value, str) or keep_strings:
            return value
        names = self.names(shape)
        what = f"{type_name}: `{key}`"
        if looks_like_expression(value, names):
            result = self._evaluate(value, where, shape, what)
            return _whole(result, where, what, source=value) if integer else result
        text = value.strip()
        if integer and is_identifier(text):
            hint = did_you_mean(text, [n for n in names if n not in SHAPE_NAMES])
            if hint:  # `out_channels: widht` with a var `width`: say so instead of "found a string"
                raise where.error(f"{what}: unknown name {text!r}", hint=hint)
        return value

    def loose_argument(self, key: str, value: Any, where: Where, shape: tuple, what: str) -> Any:
        """A value whose type nncli does not know (a Custom argument, an init scheme's keyword):
        lists and mappings item by item; a string is evaluated when it is exactly a name in scope
        or an expression over names in scope, and otherwise reaches the layer as written
        (``"relu-like"``, ``"a/b.txt"``). An expression over known names that fails (a division
        by zero) is a located error."""
        if isinstance(value, list):
            return [self.loose_argument(key, v, where, shape, what) for v in value]
        if isinstance(value, Mapping):
            return {k: self.loose_argument(k, v, where, shape, what) for k, v in value.items()}
        if not isinstance(value, str):
            return value
        names = self.names(shape)
        if not looks_like_expression(value, names):
            return value
        try:
            used = names_in(value)
        except ExprError:
            return value
        if any(name not in names for name in used):
            return value
        return self._evaluate(value, where, shape, f"{what}: `{key}`")

    def _evaluate(self, text: str, where: Where, shape: tuple, what: str) -> Any:
        names = self.names(shape)
        try:
            return evaluate(text, names)
        except ExprError as err:
            sizes = ", ".join(f"{k}={v}" for k, v in shape_names(shape).items())
            raise where.error(
                f"{what}: bad expression {text!r}: {err.message}",
                hint=f"names here: {', '.join(sorted(names))}" + (f" ({sizes})" if sizes else ""),
            ) from None


def _check_bounded(value: Any, where: Where, what: str) -> None:
    """A var written as a YAML number obeys the expressions' bounds (``.inf`` or 10**400 as a width
    would fail deep inside torch, or build a huge integer, instead of here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise where.error(f"{what}: expected a finite number, found {value}")
    if abs(value) > MAX_VALUE:
        raise where.error(f"{what}: expected a value within 2**63 in magnitude, found one beyond it")


def _whole(value: Any, where: Where, what: str, source: str | None) -> Any:
    _check_bounded(value, where, what)
    if isinstance(value, float) and value != int(value):
        shown = f"{source!r} is {value:g}" if source else f"{value:g}"
        raise where.error(
            f"{what}: {shown}, a fraction where an integer is needed", hint="use // for whole-number division"
        )
    return int(value) if isinstance(value, float) else value
