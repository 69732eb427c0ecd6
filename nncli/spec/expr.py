"""Arithmetic expressions in a spec: ``"in_channels * expansion"``, ``"min(64, width // 2)"``.

A small recursive-descent parser over a fixed grammar (numbers, names, ``+ - * / // %``, unary
``+``/``-``, parentheses, ``min(...)``/``max(...)``): nothing is ever passed to ``eval``, so a
spec cannot run code (``__import__('os')`` is a syntax error here, not a call). Pure Python.

Grammar, loosest first::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/" | "//" | "%") unary)*
    unary  := ("+" | "-") unary | atom
    atom   := NUMBER | NAME | ("min" | "max") "(" expr ("," expr)+ ")" | "(" expr ")"
"""

from __future__ import annotations

import math
import re
from typing import Mapping

# The names every layer may use besides the vars in scope: sizes of its incoming tensor.
SHAPE_NAMES = ("in_channels", "in_features")
FUNCTIONS = ("min", "max")
_OPERATOR_CHARS = set("+-*/%()")
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op>//|[-+*/%(),]))")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ExprError(ValueError):
    """A bad expression: ``message`` says what, ``position`` the 0-based character it is at."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def looks_like_expression(text: str, names) -> bool:
    """The contract's rule: an operator or parenthesis, or exactly a known name.

    Any other string (``same``, ``gelu``) stays a string.
    """
    stripped = text.strip()
    return bool(_OPERATOR_CHARS & set(stripped)) or stripped in names


def is_identifier(text: str) -> bool:
    return bool(_IDENT.match(text))


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """``(kind, text, position)`` tokens; kind is num, name or op."""
    tokens = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            start = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise ExprError(f"unexpected character {text[start]!r}", start)
        kind = m.lastgroup
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return tokens


def names_in(text: str) -> list[str]:
    """The variable names an expression uses (functions excluded), in order of appearance."""
    tokens = tokenize(text)
    out = []
    for i, (kind, tok, _) in enumerate(tokens):
        calls = i + 1 < len(tokens) and tokens[i + 1][1] == "("
        if kind == "name" and not (tok in FUNCTIONS and calls) and tok not in out:
            out.append(tok)
    return out


def evaluate(text: str, scope: Mapping[str, float | int]) -> int | float:
    """The value of expression ``text`` with the names in ``scope``.

    A whole-number result is an ``int`` (``"26.0"`` -> 26; ``"7 / 2"`` -> 3.5).

    Raises:
        ExprError: a syntax error, an unknown name (with a did-you-mean), a division by zero.

    Example:
        >>> evaluate("in_channels * 6 // 4", {"in_channels": 32})
        48
    """
    value = _Parser(text, scope).parse()
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return value


class _Parser:
    def __init__(self, text: str, scope: Mapping) -> None:
        self.text = text
        self.scope = scope
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise ExprError("the expression ends too early", len(self.text))
        self.i += 1
        return tok

    def expect(self, op: str) -> None:
        tok = self.peek()
        if tok is None or tok[1] != op:
            where = tok[2] if tok else len(self.text)
            found = repr(tok[1]) if tok else "the end"
            raise ExprError(f"expected {op!r}, found {found}", where)
        self.i += 1

    def parse(self):
        if not self.tokens:
            raise ExprError("empty expression", 0)
        value = self.expr()
        tok = self.peek()
        if tok is not None:
            raise ExprError(f"unexpected {tok[1]!r}", tok[2])
        return value

    def expr(self):
        value = self.term()
        while (tok := self.peek()) is not None and tok[1] in ("+", "-"):
            self.i += 1
            rhs = self.term()
            value = value + rhs if tok[1] == "+" else value - rhs
        return value

    def term(self):
        value = self.unary()
        while (tok := self.peek()) is not None and tok[1] in ("*", "/", "//", "%"):
            self.i += 1
            rhs = self.unary()
            if tok[1] == "*":
                value = value * rhs
            elif rhs == 0:
                raise ExprError(f"division by zero ({tok[1]} by a value that is 0)", tok[2])
            elif tok[1] == "/":
                value = value / rhs
            elif tok[1] == "//":
                value = value // rhs
            else:
                value = value % rhs
        return value

    def unary(self):
        tok = self.peek()
        if tok is not None and tok[1] in ("+", "-"):
            self.i += 1
            value = self.unary()
            return -value if tok[1] == "-" else value
        return self.atom()

    def atom(self):
        kind, tok, pos = self.take()
        if kind == "num":
            return float(tok) if any(c in tok for c in ".eE") else int(tok)
        if kind == "name":
            nxt = self.peek()
            if nxt is not None and nxt[1] == "(":
                if tok not in FUNCTIONS:
                    raise ExprError(f"unknown function {tok!r}: expressions may call only min and max", pos)
                self.i += 1
                args = [self.expr()]
                while (sep := self.peek()) is not None and sep[1] == ",":
                    self.i += 1
                    args.append(self.expr())
                self.expect(")")
                if len(args) < 2:
                    raise ExprError(f"{tok}() needs at least two values", pos)
                return min(args) if tok == "min" else max(args)
            if tok not in self.scope:
                from nncli.errors import did_you_mean

                known = sorted(self.scope)
                hint = did_you_mean(tok, known)
                raise ExprError(f"unknown name {tok!r}" + (f" ({hint})" if hint else
                                f"; known here: {', '.join(known)}"), pos)
            return self.scope[tok]
        if tok == "(":
            value = self.expr()
            self.expect(")")
            return value
        raise ExprError(f"unexpected {tok!r}", pos)
