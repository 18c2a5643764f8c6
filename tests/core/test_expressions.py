"""The constraint/condition grammar: linear sums compared with a number, parsed and never eval'd."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reflow.errors import UserInputError
from reflow.expressions import ExpressionError, LinearConstraint, parse_constraint


@pytest.mark.parametrize(
    ("text", "coefficients", "op", "rhs"),
    [
        ("name <= 3.5", {"name": 1.0}, "<=", 3.5),
        ("a + b + c == 1", {"a": 1.0, "b": 1.0, "c": 1.0}, "==", 1.0),
        ("delta_bmax > 0.2", {"delta_bmax": 1.0}, ">", 0.2),
        ("max_stress_mpa < 120", {"max_stress_mpa": 1.0}, "<", 120.0),
        ("b10_cycles >= 3000", {"b10_cycles": 1.0}, ">=", 3000.0),
        ("2*a + 3 b <= 4", {"a": 2.0, "b": 3.0}, "<=", 4.0),
        ("x * 2.5 >= 1", {"x": 2.5}, ">=", 1.0),
        ("-x < -1", {"x": -1.0}, "<", -1.0),
        ("a - 0.5 b - c >= 0", {"a": 1.0, "b": -0.5, "c": -1.0}, ">=", 0.0),
        ("- - a <= 1", {"a": 1.0}, "<=", 1.0),
        ("1.5e3 x + 2E-2*y <= 4e-1", {"x": 1500.0, "y": 0.02}, "<=", 0.4),
        (".5x >= 1", {"x": 0.5}, ">=", 1.0),
        ("x <= y", {"x": 1.0, "y": -1.0}, "<=", 0.0),
        ("3 <= x", {"x": -1.0}, "<=", -3.0),
        ("2*a - 0.5 b >= c + 1", {"a": 2.0, "b": -0.5, "c": -1.0}, ">=", 1.0),
        ("a + 1 <= 2 + b", {"a": 1.0, "b": -1.0}, "<=", 1.0),
        ("a + a <= 4", {"a": 2.0}, "<=", 4.0),
        ("a - a + b <= 1", {"b": 1.0}, "<=", 1.0),
        ("  dgeba+tgddm+dds+pes==1  ", {"dgeba": 1.0, "tgddm": 1.0, "dds": 1.0, "pes": 1.0}, "==", 1.0),
        ("_x9 > 0", {"_x9": 1.0}, ">", 0.0),
    ],
)
def test_grammar(text, coefficients, op, rhs):
    c = parse_constraint(text)
    assert isinstance(c, LinearConstraint)
    assert c.coefficients == pytest.approx(coefficients)
    assert set(c.names) == set(coefficients)
    assert c.op == op
    assert c.rhs == pytest.approx(rhs)
    assert str(c) == text.strip()


def test_holds_and_slack_on_scalars_and_arrays():
    c = parse_constraint("max_stress_mpa <= 120")
    values = {"max_stress_mpa": np.array([100.0, 120.0, 130.0])}
    assert c.holds(values).tolist() == [True, True, False]
    assert c.slack(values).tolist() == [20.0, 0.0, -10.0]
    assert bool(c.holds({"max_stress_mpa": 50})) is True

    ge = parse_constraint("2*a + b >= 3")
    vals = {"a": np.array([1.0, 0.0]), "b": np.array([1.0, 1.0])}
    assert ge.holds(vals).tolist() == [True, False]
    assert ge.slack(vals).tolist() == [0.0, -2.0]

    strict = parse_constraint("delta_bmax > 0.2")
    assert strict.holds({"delta_bmax": np.array([0.2, 0.25])}).tolist() == [False, True]
    assert strict.slack({"delta_bmax": 0.5}) == pytest.approx(0.3)
    assert parse_constraint("x < 1").holds({"x": 1.0}).item() is False


def test_equality_holds_within_tolerance_and_slack_is_minus_the_gap():
    c = parse_constraint("a + b + c == 1")
    vals = {"a": np.array([0.2, 0.5]), "b": np.array([0.3, 0.5]), "c": np.array([0.5 + 1e-12, 0.5])}
    assert c.holds(vals).tolist() == [True, False]
    assert c.slack(vals) == pytest.approx([0.0, -0.5], abs=1e-9)


def test_works_on_an_xarray_dataset():
    import xarray as xr

    ds = xr.Dataset({"a": ("trial", [1.0, 2.0]), "b": ("trial", [0.0, 5.0])})
    assert parse_constraint("a + b <= 3").holds(ds).tolist() == [True, False]


def test_missing_name_in_values_is_a_key_error():
    with pytest.raises(KeyError):
        parse_constraint("a <= 1").holds({"b": 1.0})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("__import__('os')", "unexpected"),
        ("__import__('os').system('true') <= 1", "unexpected"),
        ("a * b <= 1", "only a number may multiply 'a'"),
        ("a ** 2 <= 1", "only a number may multiply"),
        ("a <= ", "a side of the comparison is empty"),
        ("<= 3", "a side of the comparison is empty"),
        ("0 < a < 1", "exactly one of"),
        ("a <= b <= c", "exactly one of"),
        ("", "exactly one of"),
        ("   ", "exactly one of"),
        ("a", "exactly one of"),
        ("a = 1", "unexpected"),
        ("a != 1", "unexpected"),
        ("a => 1", "unexpected"),
        ("a + <= 1", "ends with an operator"),
        ("a <= -", "ends with an operator"),
        ("* a <= 1", "unexpected '*'"),
        ("a <= 2 *", "'*' must be followed by a name"),
        ("2 3 <= a", "expected + or - before '3'"),
        ("a <= 1.2.3", "expected + or -"),
        ("a.b <= 1", "unexpected"),
        ("α <= 1", "unexpected"),
        ("1 <= 2", "names no variable"),
        ("a - a <= 1", "names no variable"),
        ("a <= 1e400", "finite"),
        ("1e400 a <= 1", "finite"),
        ("a / 2 <= 1", "unexpected"),
        ("(a + b) <= 1", "unexpected"),
        ("a; import os <= 1", "unexpected"),
        ("lambda: 0 <= 1", "unexpected"),
    ],
)
def test_bad_strings_give_a_clear_expression_error(text, fragment):
    with pytest.raises(ExpressionError) as info:
        parse_constraint(text)
    message = str(info.value)
    assert fragment in message
    assert repr(text) in message  # the message quotes what was written
    assert isinstance(info.value, UserInputError)


@pytest.mark.parametrize("value", [None, 3, 1.5, ["a <= 1"], {"a": 1}])
def test_non_strings_are_rejected(value):
    with pytest.raises(ExpressionError, match="must be a string"):
        parse_constraint(value)


def test_position_of_the_bad_character_is_named():
    with pytest.raises(ExpressionError, match="position 4"):
        parse_constraint("a + $b <= 1")


def test_never_evaluates(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec/compile must not be used")

    for name in ("eval", "exec", "compile", "__import__"):
        monkeypatch.setattr(builtins, name, forbidden)
    assert parse_constraint("a + 2*b <= 3").coefficients == {"a": 1.0, "b": 2.0}
    with pytest.raises(ExpressionError):
        parse_constraint("__import__('os').system('echo hacked') <= 1")


# --- property: random linear constraints written as text parse back to the same coefficients -------

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
COEFS = st.one_of(
    st.integers(-1000, 1000).filter(bool).map(float),
    st.floats(min_value=1e-6, max_value=1e6, allow_nan=False).flatmap(lambda x: st.sampled_from([x, -x])),
)


def _number(x: float, style: int) -> str:
    x = abs(x)
    return [repr(x), f"{x:.17e}", f"{x:g}" if float(f"{x:g}") == x else repr(x)][style]


def _term(coef: float, name: str, style: int) -> tuple[str, str]:
    """(sign, unsigned text) for ``coef * name`` in one of several spellings."""
    sign = "-" if coef < 0 else "+"
    if abs(coef) == 1.0 and style == 0:
        return sign, name
    num = _number(coef, style % 3)
    body = [f"{num}*{name}", f"{num} * {name}", f"{num} {name}", f"{name} * {num}"][style % 4]
    return sign, body


@st.composite
def linear_constraints(draw):
    names = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    coefs = {n: draw(COEFS) for n in names}
    const_left = draw(st.one_of(st.just(0.0), COEFS))
    const_right = draw(st.one_of(st.just(0.0), COEFS))
    op = draw(st.sampled_from(["<=", ">=", "==", "<", ">"]))
    right_side = {n for n in names if draw(st.booleans())}
    if len(right_side) == len(names):
        right_side.discard(names[0])
    styles = {n: draw(st.integers(0, 11)) for n in names}

    def side(entries: list[tuple[float, str | None]]) -> str:
        text = ""
        for coef, name in entries:
            if name is None:
                sign, body = ("-" if coef < 0 else "+"), _number(coef, 0)
            else:
                sign, body = _term(coef, name, styles[name])
            if not text:
                text = ("-" if sign == "-" else "") + body
            else:
                text += f" {sign} {body}"
        return text or "0"

    left = [(coefs[n], n) for n in names if n not in right_side]
    right = [(-coefs[n], n) for n in names if n in right_side]  # moved across: sign flips
    if const_left:
        left.append((const_left, None))
    if const_right:
        right.insert(draw(st.integers(0, len(right))), (const_right, None))
    text = f"{side(left)} {op} {side(right)}"
    return text, coefs, op, const_right - const_left


@settings(max_examples=300, deadline=None)
@given(linear_constraints())
def test_random_linear_constraints_round_trip(case):
    text, coefs, op, rhs = case
    c = parse_constraint(text)
    assert c.op == op
    assert set(c.coefficients) == set(coefs)
    for name, coef in coefs.items():
        assert c.coefficients[name] == pytest.approx(coef, rel=1e-6)
    assert c.rhs == pytest.approx(rhs, rel=1e-9, abs=1e-9)
    # the parsed form evaluates the same as the written one at a random point
    point = {n: float(i + 1) / 7 for i, n in enumerate(coefs)}
    lhs = sum(coefs[n] * point[n] for n in coefs)
    expected = {"<=": rhs - lhs, "<": rhs - lhs, ">=": lhs - rhs, ">": lhs - rhs, "==": -abs(lhs - rhs)}[op]
    assert float(c.slack(point)) == pytest.approx(expected, rel=1e-6, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_arbitrary_text_parses_or_raises_expression_error(text):
    try:
        c = parse_constraint(text)
    except ExpressionError as exc:
        assert str(exc)
    else:
        assert c.coefficients and c.op in ("<=", ">=", "==", "<", ">")
