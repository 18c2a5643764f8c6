"""The small grammar for constraints and conditions; strings from a study are parsed, never eval'd.

Grammar (whitespace free)::

    constraint := linear OP linear
    linear     := term (('+' | '-') term)*
    term       := ['-'] (NUMBER ['*'] NAME | NAME ['*' NUMBER] | NUMBER)
    OP         := '<=' | '>=' | '<' | '>' | '=='

So ``max_stress_mpa <= 120``, ``dgeba + tgddm + dds + pes == 1``, ``delta_bmax > 0.2`` and
``2*a - 0.5 b >= c`` all parse; anything else is a clear error naming the position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from reflow.errors import UserInputError

OPS = ("<=", ">=", "==", "<", ">")
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|<|>)|(?P<sym>[-+*]))"
)


class ExpressionError(UserInputError):
    """A constraint or condition string does not follow the grammar."""


@dataclass(frozen=True)
class LinearConstraint:
    """``sum(coefficients[n] * n) OP rhs``, everything moved to the left except the constant."""

    coefficients: dict[str, float]
    op: str
    rhs: float
    text: str

    @property
    def names(self) -> list[str]:
        return list(self.coefficients)

    def lhs(self, values: Any) -> np.ndarray:
        """The left-hand side for ``values`` (a mapping or Dataset of arrays or scalars)."""
        total = 0.0
        for name, coef in self.coefficients.items():
            total = total + coef * np.asarray(values[name], dtype=float)
        return np.asarray(total, dtype=float)

    def holds(self, values: Any, tol: float = 1e-9) -> np.ndarray:
        """Boolean array: does the constraint hold for ``values``?"""
        lhs = self.lhs(values)
        return {
            "<=": lhs <= self.rhs + tol,
            ">=": lhs >= self.rhs - tol,
            "<": lhs < self.rhs,
            ">": lhs > self.rhs,
            "==": np.abs(lhs - self.rhs) <= tol * max(1.0, abs(self.rhs)),
        }[self.op]

    def slack(self, values: Any) -> np.ndarray:
        """Signed distance to the boundary, positive where the constraint holds (for ``==``: -|gap|)."""
        lhs = self.lhs(values)
        if self.op in ("<=", "<"):
            return self.rhs - lhs
        if self.op in (">=", ">"):
            return lhs - self.rhs
        return -np.abs(lhs - self.rhs)

    def __str__(self) -> str:
        return self.text


def parse_constraint(text: str) -> LinearConstraint:
    """Parse ``text`` into a :class:`LinearConstraint`, or raise :class:`ExpressionError`."""
    if not isinstance(text, str):
        raise ExpressionError(f"a constraint must be a string like 'x <= 3', got {text!r}")
    tokens = _tokenize(text)
    ops = [i for i, (kind, _) in enumerate(tokens) if kind == "op"]
    if len(ops) != 1:
        raise ExpressionError(
            f"{text!r}: a constraint needs exactly one of {', '.join(OPS)} (like 'max_stress_mpa <= 120')"
        )
    i = ops[0]
    left_coefs, left_const = _linear(tokens[:i], text)
    right_coefs, right_const = _linear(tokens[i + 1:], text)
    coefs = dict(left_coefs)
    for name, c in right_coefs.items():
        coefs[name] = coefs.get(name, 0.0) - c
    coefs = {n: c for n, c in coefs.items() if c != 0.0}
    if not coefs:
        raise ExpressionError(f"{text!r}: the constraint names no variable")
    if not all(np.isfinite(c) for c in [*coefs.values(), right_const - left_const]):
        raise ExpressionError(f"{text!r}: numbers must be finite (one overflows a float)")
    return LinearConstraint(coefs, tokens[i][1], right_const - left_const, text.strip())


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if not m or m.end() == pos:
            pos += len(stripped[pos:]) - len(stripped[pos:].lstrip())  # point at the character, not a space
            raise ExpressionError(
                f"{text!r}: unexpected {stripped[pos:].strip()[:10]!r} at position {pos}; allowed are names, "
                "numbers, + - * and one comparison"
            )
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _linear(tokens: list[tuple[str, str]], text: str) -> tuple[dict[str, float], float]:
    if not tokens:
        raise ExpressionError(f"{text!r}: a side of the comparison is empty")
    coefs: dict[str, float] = {}
    const = 0.0
    i = 0
    sign = 1.0
    expect_term = True
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "sym" and value in "+-":
            if value == "-":
                sign = -sign
            i += 1
            expect_term = True
            continue
        if not expect_term:
            raise ExpressionError(f"{text!r}: expected + or - before {value!r}")
        coef, name, i = _term(tokens, i, text)
        if name is None:
            const += sign * coef
        else:
            coefs[name] = coefs.get(name, 0.0) + sign * coef
        sign = 1.0
        expect_term = False
    if expect_term:
        raise ExpressionError(f"{text!r}: the expression ends with an operator")
    return coefs, const


def _term(tokens: list[tuple[str, str]], i: int, text: str) -> tuple[float, str | None, int]:
    kind, value = tokens[i]
    if kind == "num":
        coef = float(value)
        i += 1
        if i < len(tokens) and tokens[i] == ("sym", "*"):
            i += 1
        if i < len(tokens) and tokens[i][0] == "name":
            return coef, tokens[i][1], i + 1
        if i > 0 and tokens[i - 1] == ("sym", "*"):
            raise ExpressionError(f"{text!r}: '*' must be followed by a name")
        return coef, None, i
    if kind == "name":
        name = value
        i += 1
        if i < len(tokens) and tokens[i] == ("sym", "*"):
            if i + 1 < len(tokens) and tokens[i + 1][0] == "num":
                return float(tokens[i + 1][1]), name, i + 2
            raise ExpressionError(f"{text!r}: only a number may multiply {name!r} (the grammar is linear)")
        return 1.0, name, i
    raise ExpressionError(f"{text!r}: unexpected {value!r}")


def validate_condition(value: str | None) -> str | None:
    """A pydantic field validator body for an optional condition string (``"delta_bmax > 0.2"``): parse it now so
    that a study with a bad condition fails validation, and keep the text."""
    if value is not None:
        try:
            parse_constraint(value)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
    return value
