"""Arithmetic expressions in a spec: ``"in_channels * expansion"``, ``"min(64, width // 2)"``.

A small recursive-descent parser over a fixed grammar: nothing is ever passed to ``eval``, so a
spec cannot run code (``__import__('os')`` is a syntax error here, not a call). Pure Python.

Grammar, loosest first::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/" | "//" | "%") unary)*
    unary  := ("+" | "-") unary | power
    power  := atom ("**" unary)?                 # right-associative; -2 ** 2 is -4, as in Python
    atom   := NUMBER | NAME | FUNCTION "(" expr ("," expr)* ")" | "(" expr ")"

Functions: ``min`` and ``max`` (two or more values), ``abs``, ``round`` (half to even, as Python's),
``floor``, ``ceil`` (one value each) and ``make_divisible(v, d)`` (torchvision's channel rounding).

Bounds, so that a spec cannot make the parser or the arithmetic run away: every value, literal
or intermediate, lies within +-2**63 and is finite; an exponent is an integer of at most 64 in
magnitude; operators and parentheses nest at most :data:`MAX_NESTING` deep. Each is an
:class:`ExprError` at the character where it happens.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

# The names every layer may use besides the vars in scope: sizes of its incoming tensor.
SHAPE_NAMES = ("in_channels", "in_features")
FUNCTIONS = ("min", "max", "abs", "round", "floor", "ceil", "make_divisible")
# Largest magnitude of any value an expression computes: sizes and counts are int64 in torch.
MAX_VALUE = 2**63
# Largest magnitude of an exponent: 2 ** 64 already passes MAX_VALUE; a larger one only wastes time.
MAX_EXPONENT = 64
# Nested parentheses, unary signs and powers: far beyond any real spec, far below Python's
# recursion limit, which a hostile expression would otherwise reach (RecursionError).
MAX_NESTING = 100
_OPERATOR_CHARS = set("+-*/%()")
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>//|\*\*|[-+*/%(),]))"
)
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
        self.depth = 0  # open parentheses, unary signs, powers and calls around the current token

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

    def bounded(self, value, pos: int):
        """``value`` if it is finite and within +-:data:`MAX_VALUE`, else a located error."""
        if isinstance(value, float) and not math.isfinite(value):
            raise ExprError(f"the value here is {value}, not a finite number", pos)
        if abs(value) > MAX_VALUE:
            raise ExprError("a value here is beyond 2**63 in magnitude (sizes and counts are int64)", pos)
        return value

    def nested(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExprError(f"the expression nests more than {MAX_NESTING} levels deep", pos)

    def expr(self):
        value = self.term()
        while (tok := self.peek()) is not None and tok[1] in ("+", "-"):
            self.i += 1
            rhs = self.term()
            value = self.bounded(value + rhs if tok[1] == "+" else value - rhs, tok[2])
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
            value = self.bounded(value, tok[2])
        return value

    def unary(self):
        tok = self.peek()
        if tok is not None and tok[1] in ("+", "-"):
            self.i += 1
            self.nested(tok[2])
            value = self.unary()
            self.depth -= 1
            return -value if tok[1] == "-" else value
        return self.power()

    def power(self):
        base = self.atom()
        tok = self.peek()
        if tok is None or tok[1] != "**":
            return base
        self.i += 1
        self.nested(tok[2])
        exponent = self.unary()
        self.depth -= 1
        if isinstance(exponent, float) and exponent == int(exponent):
            exponent = int(exponent)
        if not isinstance(exponent, int) or abs(exponent) > MAX_EXPONENT:
            raise ExprError(
                f"an exponent must be a whole number from -{MAX_EXPONENT} to {MAX_EXPONENT}, found {exponent:g}", tok[2]
            )
        if base == 0 and exponent < 0:
            raise ExprError("division by zero (0 to a negative power)", tok[2])
        if abs(base) > 1 and exponent > 0 and exponent * math.log2(abs(base)) > 64:
            raise ExprError("a value here is beyond 2**63 in magnitude (sizes and counts are int64)", tok[2])
        return self.bounded(base**exponent, tok[2])

    def atom(self):
        kind, tok, pos = self.take()
        if kind == "num":
            return self.number(tok, pos)
        if kind == "name":
            nxt = self.peek()
            if nxt is not None and nxt[1] == "(":
                return self.call(tok, pos)
            if tok not in self.scope:
                from nncli.errors import did_you_mean

                known = sorted(self.scope)
                hint = did_you_mean(tok, known)
                raise ExprError(
                    f"unknown name {tok!r}" + (f" ({hint})" if hint else f"; known here: {', '.join(known)}"), pos
                )
            value = self.scope[tok]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return self.bounded(value, pos)
            return value
        if tok == "(":
            self.nested(pos)
            value = self.expr()
            self.expect(")")
            self.depth -= 1
            return value
        raise ExprError(f"unexpected {tok!r}", pos)

    def number(self, tok: str, pos: int):
        if any(c in tok for c in ".eE"):
            return self.bounded(float(tok), pos)
        if len(tok.lstrip("0")) > 19:  # longer than 2**63 has digits: never converted
            raise ExprError("a value here is beyond 2**63 in magnitude (sizes and counts are int64)", pos)
        return self.bounded(int(tok), pos)

    def call(self, name: str, pos: int):
        if name not in FUNCTIONS:
            raise ExprError(f"unknown function {name!r}: expressions may call only {', '.join(FUNCTIONS)}", pos)
        self.i += 1
        self.nested(pos)
        args = [self.expr()]
        while (sep := self.peek()) is not None and sep[1] == ",":
            self.i += 1
            args.append(self.expr())
        self.expect(")")
        self.depth -= 1
        return self.bounded(_apply(name, args, pos), pos)


def _apply(name: str, args: list, pos: int):
    """The value of function ``name`` on ``args`` (already evaluated)."""
    if name in ("min", "max"):
        if len(args) < 2:
            raise ExprError(f"{name}() needs at least two values", pos)
        return min(args) if name == "min" else max(args)
    wanted = 2 if name == "make_divisible" else 1
    if len(args) != wanted:
        raise ExprError(f"{name}() takes {wanted} value{'s' if wanted > 1 else ''}, found {len(args)}", pos)
    if name == "abs":
        return abs(args[0])
    if name == "round":
        return round(args[0])
    if name == "floor":
        return math.floor(args[0])
    if name == "ceil":
        return math.ceil(args[0])
    return make_divisible(*args, pos=pos)


def make_divisible(value, divisor, pos: int = 0) -> int:
    """torchvision's channel rounding (MobileNet, EfficientNet): ``value`` to the nearest multiple of
    ``divisor``, at least ``divisor``, and never more than 10 % below ``value``.

    Example:
        >>> make_divisible(16 * 0.75, 8), make_divisible(240 * 0.25, 8), make_divisible(36, 8)
        (16, 64, 40)
    """
    if divisor != int(divisor) or divisor <= 0:
        raise ExprError(f"make_divisible(v, d) needs a whole number d > 0, found {divisor:g}", pos)
    divisor = int(divisor)
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded
