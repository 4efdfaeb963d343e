"""Property-based: random filters over a few properties, the engine against a reference.

Hypothesis builds a small syntax tree (tuples), renders it as filter text with minimal
parentheses (so the parser's precedence is tested too) and random keyword case and name
spellings, and compares the engine's three-valued result with a plain recursive evaluator
written here from the documented semantics: unknown propagates, Kleene AND/OR/NOT,
Int64 arithmetic truncating towards zero, Int64 meeting Double widens, mismatched types
are an evaluation error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from emulator.rules import MessageView, RuleEvaluationError, RuleSyntaxError, SqlFilter
from emulator.rules.evaluate import compile_condition
from emulator.rules.sql import parse_filter

Node = tuple[Any, ...]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ("a", "b", "c")
TEXT = st.text(alphabet="xyY'%_!", max_size=4)


class RefError(Exception):
    """What the reference raises where the engine must raise RuleEvaluationError."""


# -- generation -------------------------------------------------------------------------
properties = st.one_of(
    st.tuples(st.just("prop"), st.just("user"), st.sampled_from(NAMES)),
    st.tuples(st.just("prop"), st.just("sys"), st.just("Label")),
)
leaves = st.one_of(
    st.tuples(st.just("int"), st.integers(0, 20)),
    st.tuples(st.just("float"), st.sampled_from([("0.5", 0.5), ("2.5", 2.5), ("1E1", 10.0)])),
    st.tuples(st.just("str"), TEXT),
    st.just(("null",)),
    properties,
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.tuples(st.just("neg"), inner),
        st.tuples(st.just("arith"), st.sampled_from("+-*/%"), inner, inner),
    ),
    max_leaves=6,
)
predicates = st.one_of(
    st.tuples(
        st.just("cmp"), st.sampled_from(["=", "<>", "!=", ">", ">=", "<", "<="]), values, values
    ),
    st.tuples(st.just("in"), values, st.lists(values, min_size=1, max_size=3), st.booleans()),
    st.tuples(
        st.just("like"),
        values,
        st.one_of(st.tuples(st.just("str"), TEXT), values),
        st.sampled_from([None, "!"]),
        st.booleans(),
    ),
    st.tuples(st.just("isnull"), properties, st.booleans()),
    st.tuples(st.just("exists"), properties),
)
conditions = st.recursive(
    predicates,
    lambda inner: st.one_of(
        st.tuples(st.just("not"), inner),
        st.tuples(st.sampled_from(["and", "or"]), inner, inner),
    ),
    max_leaves=5,
)
user_values = st.one_of(st.integers(-20, 20), TEXT, st.sampled_from([0.5, -2.5, 3.0]), st.none())
messages = st.builds(
    lambda user, label: MessageView(
        system={} if label is None else {"Label": label},
        user={name: value for name, (present, value) in zip(NAMES, user, strict=True) if present},
    ),
    st.tuples(*(st.tuples(st.booleans(), user_values) for _ in NAMES)),
    st.one_of(st.none(), TEXT),
)


# -- rendering --------------------------------------------------------------------------
LEVEL = {"or": 1, "and": 2, "not": 3, "pred": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}


def level(node: Node) -> int:
    kind = node[0]
    if kind in ("or", "and", "not"):
        return LEVEL[kind]
    if kind in ("cmp", "in", "like", "isnull", "exists"):
        return LEVEL["pred"]
    if kind == "arith":
        return LEVEL[node[1]]
    return 7 if kind == "neg" else 8


class Renderer:
    """Filter text for a tree; keyword case and name spellings vary with ``style``."""

    def __init__(self, style: tuple[Callable[[str], str], int]) -> None:
        self.keyword, self.spelling = style

    def wrap(self, node: Node, minimum: int) -> str:
        text = self.render(node)
        return f"({text})" if level(node) < minimum else text

    def prop(self, node: Node) -> str:
        _, scope, name = node
        name = str(name)
        if scope == "sys":
            return ["sys.Label", "SYS.label", "sys.Subject"][self.spelling % 3]
        return [name, f"user.{name}", f"[{name}]", f'"{name}"', name.upper()][self.spelling % 5]

    def render(self, node: Node) -> str:
        kw, kind = self.keyword, node[0]
        if kind == "int":
            return str(node[1])
        if kind == "float":
            return str(node[1][0])
        if kind == "str":
            return "'" + str(node[1]).replace("'", "''") + "'"
        if kind == "null":
            return kw("null")
        if kind == "prop":
            return self.prop(node)
        if kind == "neg":
            return "- " + self.wrap(node[1], 7)
        if kind == "arith":
            op, left, right = node[1:]
            return f"{self.wrap(left, LEVEL[op])} {op} {self.wrap(right, LEVEL[op] + 1)}"
        if kind == "cmp":
            return f"{self.wrap(node[2], 5)} {node[1]} {self.wrap(node[3], 5)}"
        if kind == "in":
            items = ", ".join(self.wrap(item, 5) for item in node[2])
            return f"{self.wrap(node[1], 5)} {kw('not in') if node[3] else kw('in')} ({items})"
        if kind == "like":
            text = f"{self.wrap(node[1], 5)} {kw('not like') if node[4] else kw('like')} "
            text += self.wrap(node[2], 5)
            return text + (f" {kw('escape')} '{node[3]}'" if node[3] else "")
        if kind == "isnull":
            return f"{self.prop(node[1])} {kw('is not null') if node[2] else kw('is null')}"
        if kind == "exists":
            return f"{kw('exists')}({self.prop(node[1])})"
        if kind == "not":
            return f"{kw('not')} {self.wrap(node[1], 3)}"
        op = LEVEL[kind]
        return f"{self.wrap(node[1], op)} {kw(kind)} {self.wrap(node[2], op + 1)}"


styles = st.tuples(st.sampled_from([str.upper, str.lower, str.title]), st.integers(0, 14))


# -- the reference evaluator ------------------------------------------------------------
def wrap64(value: int) -> int:
    return (value + 2**63) % 2**64 - 2**63


def lookup(message: MessageView, node: Node) -> tuple[bool, object]:
    """(present, value) of a property node."""
    _, scope, name = node
    if scope == "sys":
        return ("Label" in message.system, message.system.get("Label"))
    return (name in message.user, message.user.get(name))


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def ref_value(node: Node, message: MessageView) -> object:
    kind = node[0]
    if kind in ("int", "str"):
        return node[1]
    if kind == "float":
        return node[1][1]
    if kind == "null":
        return None
    if kind == "prop":
        return lookup(message, node)[1]
    if kind == "neg":
        value = ref_value(node[1], message)
        if value is None:
            return None
        if not is_number(value):
            raise RefError
        return wrap64(-value) if isinstance(value, int) else -value  # type: ignore[operator]
    op = node[1]
    left, right = ref_value(node[2], message), ref_value(node[3], message)
    if left is None or right is None:
        return None
    if isinstance(left, str) and isinstance(right, str) and op == "+":
        return left + right
    if not (is_number(left) and is_number(right)):
        raise RefError
    if isinstance(left, int) and isinstance(right, int):
        if op in "/%":
            if right == 0:
                raise RefError
            quotient = math.trunc(Fraction(left, right))
            return wrap64(quotient) if op == "/" else left - right * quotient
        return wrap64({"+": left + right, "-": left - right, "*": left * right}[op])
    x, y = float(left), float(right)  # type: ignore[arg-type]
    if op in "/%" and y == 0.0:
        reject()  # IEEE division by zero is covered by the unit tests
    if op == "/":
        return x / y
    if op == "%":
        return math.fmod(x, y)
    return x + y if op == "+" else x - y if op == "-" else x * y


def ref_compare(op: str, left: object, right: object) -> bool | None:
    if left is None or right is None:
        return None
    if is_number(left) and is_number(right):
        if not (isinstance(left, int) and isinstance(right, int)):
            left, right = float(left), float(right)  # type: ignore[arg-type]
    elif not (isinstance(left, str) and isinstance(right, str)):
        raise RefError
    results = {
        "=": left == right,
        "<>": left != right,
        "!=": left != right,
        ">": left > right,  # type: ignore[operator]
        ">=": left >= right,  # type: ignore[operator]
        "<": left < right,  # type: ignore[operator]
        "<=": left <= right,  # type: ignore[operator]
    }
    return results[op]


def ref_like(text: str, pattern: str, escape: str | None) -> bool:
    """SQL LIKE by recursive descent over pattern tokens (no regular expressions)."""
    tokens: list[tuple[str, str]] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == escape:
            if index + 1 == len(pattern):
                raise RefError
            tokens.append(("literal", pattern[index + 1]))
            index += 2
            continue
        tokens.append(
            ("any", "") if char == "%" else ("one", "") if char == "_" else ("literal", char)
        )
        index += 1

    @cache
    def match(i: int, j: int) -> bool:
        if i == len(tokens):
            return j == len(text)
        kind, char = tokens[i]
        if kind == "any":
            return match(i + 1, j) or (j < len(text) and match(i, j + 1))
        if j == len(text):
            return False
        return (kind == "one" or char == text[j]) and match(i + 1, j + 1)

    return match(0, 0)


def ref_condition(node: Node, message: MessageView) -> bool | None:
    kind = node[0]
    if kind == "cmp":
        return ref_compare(node[1], ref_value(node[2], message), ref_value(node[3], message))
    if kind == "in":
        value = ref_value(node[1], message)
        if value is None:
            return None
        found = False
        for item in node[2]:
            candidate = ref_value(item, message)
            if candidate is not None and ref_compare("=", value, candidate):
                found = True
                break
        return found != bool(node[3])
    if kind == "like":
        value, pattern = ref_value(node[1], message), ref_value(node[2], message)
        if value is None or pattern is None:
            return None
        if not (isinstance(value, str) and isinstance(pattern, str)):
            raise RefError
        return ref_like(value, pattern, node[3]) != bool(node[4])
    if kind == "isnull":
        return (lookup(message, node[1])[1] is None) != bool(node[2])
    if kind == "exists":
        return lookup(message, node[1])[0]
    if kind == "not":
        result = ref_condition(node[1], message)
        return None if result is None else not result
    left = ref_condition(node[1], message)
    if kind == "and":
        if left is False:
            return False
        right = ref_condition(node[2], message)
        if right is False:
            return False
        return None if None in (left, right) else True
    if left is True:
        return True
    right = ref_condition(node[2], message)
    if right is True:
        return True
    return None if None in (left, right) else False


def reference(node: Node, message: MessageView) -> bool | type[RefError] | None:
    try:
        return ref_condition(node, message)
    except RefError:
        return RefError


def refused_when_built(node: Node) -> bool:
    """Whether a LIKE has a constant pattern ending in its escape (refused at parse time)."""
    kind = node[0]
    if kind == "not":
        return refused_when_built(node[1])
    if kind in ("and", "or"):
        return refused_when_built(node[1]) or refused_when_built(node[2])
    if kind == "like" and node[2][0] == "str" and node[3] is not None:
        try:
            ref_like("", node[2][1], node[3])
        except RefError:
            return True
    return False


def engine(text: str, message: MessageView) -> bool | type[RefError] | None:
    truth = compile_condition(parse_filter(text))
    try:
        return truth(message)
    except RuleEvaluationError:
        return RefError


# -- the properties ---------------------------------------------------------------------
@SETTINGS
@given(conditions, messages, styles)
def test_engine_agrees_with_the_reference(
    tree: Node, message: MessageView, style: tuple[Callable[[str], str], int]
) -> None:
    text = Renderer(style).render(tree)
    if refused_when_built(tree):
        with pytest.raises(RuleSyntaxError, match="the LIKE pattern ends with its escape"):
            SqlFilter(text)
        return
    expected = reference(tree, message)
    assert engine(text, message) == expected, text
    if expected is not RefError:
        assert SqlFilter(text).matches(message) is (expected is True), text


@SETTINGS
@given(conditions, messages)
def test_parentheses_and_spacing_do_not_change_the_result(tree: Node, message: MessageView) -> None:
    text = Renderer((str.upper, 0)).render(tree)
    if refused_when_built(tree):
        return
    assert engine(f"( {text} )", message) == engine(f"\n{text}\t", message)


@SETTINGS
@given(conditions, st.data())
def test_a_damaged_filter_is_refused_with_a_position_inside_it(
    tree: Node, data: st.DataObject
) -> None:
    text = Renderer((str.upper, 0)).render(tree)
    cut = data.draw(st.integers(0, len(text)))
    damaged = (
        text[:cut] + data.draw(st.sampled_from(["= =", "(", ")", "#", "'", "AND"])) + text[cut:]
    )
    refused: RuleSyntaxError | None = None
    try:  # a damaged filter may still parse (e.g. "= =" inside a string constant)
        SqlFilter(damaged)
    except RuleSyntaxError as error:
        refused = error
    if refused is not None:
        assert 0 <= refused.position <= len(damaged)
        assert "\n" not in str(refused)
        assert str(refused).startswith('SqlFilter "')
