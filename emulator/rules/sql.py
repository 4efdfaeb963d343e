"""Parse SQL filters and SQL rule actions into :mod:`.nodes`, refusing bad text with its position.

Grammar: :mod:`.grammar` (Lark, LALR). Beyond the syntax, this refuses at configuration
time what Azure refuses or can never evaluate: a condition where a value is needed and the
reverse, ``IS NULL``/``EXISTS`` on something that is not a property, an unknown ``sys.``
property or scope, an unknown function, an undefined ``@parameter``, an integer constant
outside Int64, and ``SET``/``REMOVE`` of a broker-assigned system property.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal, NoReturn

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.tree import Meta

from emulator.rules import nodes
from emulator.rules.errors import RuleSyntaxError
from emulator.rules.grammar import GRAMMAR
from emulator.rules.message import SETTABLE_SYSTEM_PROPERTIES, canonical_system_property
from emulator.rules.values import OperandError, like_pattern

__all__ = ["parse_action", "parse_filter"]

_INT64_MAX = 2**63 - 1
_CONDITIONS = (
    nodes.Comparison,
    nodes.In,
    nodes.Like,
    nodes.IsNull,
    nodes.Exists,
    nodes.Not,
    nodes.Logical,
)
_FUNCTIONS: dict[str, tuple[Literal["newid", "property"], int]] = {
    "newid": ("newid", 0),
    "property": ("property", 1),
    "p": ("property", 1),
}
#: What an unterminated token starts with, for a clearer message than "unexpected '\''".
_UNTERMINATED = {
    "'": "unterminated string constant",
    '"': "unterminated quoted identifier",
    "[": "unterminated delimited identifier",
}


class _Refused(Exception):
    """Raised inside the transformer; turned into :class:`RuleSyntaxError` with the text."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(reason)
        self.position = position
        self.reason = reason


@functools.cache
def _parser() -> Lark:
    # Built once per process (a few ms); both entry points share the tables.
    return Lark(
        GRAMMAR,
        parser="lalr",
        start=["filter", "actions"],
        propagate_positions=True,
        maybe_placeholders=True,
    )


#: Keywords a regular identifier cannot be (Lark's contextual lexer would otherwise read a
#: keyword as a name where the keyword cannot stand, e.g. ``and = 1``).
_KEYWORDS = frozenset(
    {"and", "or", "not", "in", "like", "escape", "is", "null", "exists", "true", "false"}
    | {"set", "remove"}
)


def _name(token: Token) -> str:
    """The property or function name a token stands for; reserved keywords are refused."""
    if token.type == "IDENT" and str(token).casefold() in _KEYWORDS:
        raise _Refused(
            token.start_pos or 0, f"'{token}' is a reserved keyword (write [{token}] for a name)"
        )
    return _unquote(token)


def _unquote(token: Token) -> str:
    """The name or string a quoted token stands for (doubled closing quotes collapse)."""
    text = str(token)
    if token.type == "STRING":
        return text[1:-1].replace("''", "'")
    if token.type == "QUOTED":
        return text[1:-1].replace('""', '"')
    if token.type == "DELIMITED":
        return text[1:-1].replace("]]", "]")
    return text


def _value(node: object) -> nodes.Expression:
    """``node`` if it is a value; a condition there is refused."""
    if isinstance(node, _CONDITIONS):
        raise _Refused(node.position, "a condition cannot be used as a value")
    return node  # type: ignore[return-value]


def _condition(node: object) -> nodes.Condition:
    """``node`` if it is a condition; a bare value there is refused."""
    if not isinstance(node, _CONDITIONS):
        position = getattr(node, "position", 0)
        raise _Refused(position, "expected a condition (a comparison, IN, LIKE, IS NULL or EXISTS)")
    return node


def _property(node: object, what: str) -> nodes.Property:
    if not isinstance(node, nodes.Property):
        raise _Refused(getattr(node, "position", 0), f"{what} applies to a property only")
    return node


def _check_constant_like(pattern: nodes.Expression, escape: nodes.Expression | None) -> None:
    """Refuse now a constant escape that is not one character, or a pattern ending in it."""
    if not (isinstance(escape, nodes.Constant) and isinstance(escape.value, str)):
        return
    text = pattern.value if isinstance(pattern, nodes.Constant) else ""
    try:
        like_pattern(text if isinstance(text, str) else "", escape.value)
    except OperandError as error:
        raise _Refused(escape.position, str(error)) from None


def _children(children: list[Any]) -> list[Any]:
    """Children without keyword tokens (kept by the grammar only for their positions)."""
    return [c for c in children if not isinstance(c, Token)]


@v_args(meta=True)
class _Builder(Transformer[Token, Any]):
    """Builds :mod:`.nodes` from Lark's tree, checking what the grammar alone cannot."""

    def __init__(self, parameters: Mapping[str, object]) -> None:
        super().__init__()
        self._parameters = parameters

    # -- entry points -------------------------------------------------------------------
    def filter(self, meta: Meta, children: list[Any]) -> nodes.Condition:
        return _condition(children[0])

    def actions(self, meta: Meta, children: list[Any]) -> tuple[nodes.Statement, ...]:
        return tuple(children)

    def set_(self, meta: Meta, children: list[Any]) -> nodes.Set:
        target = self._settable(children[1])
        return nodes.Set(target, _value(children[2]), meta.start_pos)

    def remove(self, meta: Meta, children: list[Any]) -> nodes.Remove:
        return nodes.Remove(self._settable(children[1]), meta.start_pos)

    @staticmethod
    def _settable(target: nodes.Property) -> nodes.Property:
        if target.scope == "sys" and target.name not in SETTABLE_SYSTEM_PROPERTIES:
            raise _Refused(target.position, f"sys.{target.name} is read-only")
        return target

    # -- conditions ---------------------------------------------------------------------
    def or_(self, meta: Meta, children: list[Any]) -> nodes.Logical:
        left, right = (_condition(c) for c in children)
        return nodes.Logical("OR", left, right, meta.start_pos)

    def and_(self, meta: Meta, children: list[Any]) -> nodes.Logical:
        left, right = (_condition(c) for c in children)
        return nodes.Logical("AND", left, right, meta.start_pos)

    def not_(self, meta: Meta, children: list[Any]) -> nodes.Not:
        return nodes.Not(_condition(children[1]), meta.start_pos)

    def _compare(
        self, op: nodes.ComparisonOperator, meta: Meta, children: list[Any]
    ) -> nodes.Comparison:
        return nodes.Comparison(op, _value(children[0]), _value(children[1]), meta.start_pos)

    def eq(self, meta: Meta, children: list[Any]) -> nodes.Comparison:
        return self._compare("=", meta, children)

    def ne(self, meta: Meta, children: list[Any]) -> nodes.Comparison:
        return self._compare("<>", meta, children)

    def gt(self, meta: Meta, children: list[Any]) -> nodes.Comparison:
        return self._compare(">", meta, children)

    def ge(self, meta: Meta, children: list[Any]) -> nodes.Comparison:
        return self._compare(">=", meta, children)

    def lt(self, meta: Meta, children: list[Any]) -> nodes.Comparison:
        return self._compare("<", meta, children)

    def le(self, meta: Meta, children: list[Any]) -> nodes.Comparison:
        return self._compare("<=", meta, children)

    def _in(self, meta: Meta, children: list[Any], negated: bool) -> nodes.In:
        operand, *items = (_value(c) for c in _children(children))
        return nodes.In(operand, tuple(items), negated, meta.start_pos)

    def in_(self, meta: Meta, children: list[Any]) -> nodes.In:
        return self._in(meta, children, negated=False)

    def not_in(self, meta: Meta, children: list[Any]) -> nodes.In:
        return self._in(meta, children, negated=True)

    def _like(self, meta: Meta, children: list[Any], negated: bool) -> nodes.Like:
        operand, pattern, escape = _children(children)
        pattern, escape = _value(pattern), None if escape is None else _value(escape)
        _check_constant_like(pattern, escape)
        return nodes.Like(_value(operand), pattern, escape, negated, meta.start_pos)

    def like(self, meta: Meta, children: list[Any]) -> nodes.Like:
        return self._like(meta, children, negated=False)

    def not_like(self, meta: Meta, children: list[Any]) -> nodes.Like:
        return self._like(meta, children, negated=True)

    def is_null(self, meta: Meta, children: list[Any]) -> nodes.IsNull:
        return nodes.IsNull(_property(children[0], "IS NULL"), False, meta.start_pos)

    def is_not_null(self, meta: Meta, children: list[Any]) -> nodes.IsNull:
        return nodes.IsNull(_property(children[0], "IS NOT NULL"), True, meta.start_pos)

    def exists(self, meta: Meta, children: list[Any]) -> nodes.Exists:
        return nodes.Exists(_property(children[1], "EXISTS"), meta.start_pos)

    # -- values -------------------------------------------------------------------------
    def _arithmetic(
        self, op: nodes.ArithmeticOperator, meta: Meta, children: list[Any]
    ) -> nodes.Arithmetic:
        return nodes.Arithmetic(op, _value(children[0]), _value(children[1]), meta.start_pos)

    def add(self, meta: Meta, children: list[Any]) -> nodes.Arithmetic:
        return self._arithmetic("+", meta, children)

    def sub(self, meta: Meta, children: list[Any]) -> nodes.Arithmetic:
        return self._arithmetic("-", meta, children)

    def mul(self, meta: Meta, children: list[Any]) -> nodes.Arithmetic:
        return self._arithmetic("*", meta, children)

    def div(self, meta: Meta, children: list[Any]) -> nodes.Arithmetic:
        return self._arithmetic("/", meta, children)

    def mod(self, meta: Meta, children: list[Any]) -> nodes.Arithmetic:
        return self._arithmetic("%", meta, children)

    def neg(self, meta: Meta, children: list[Any]) -> nodes.Negation:
        return nodes.Negation(_value(children[1]), meta.start_pos)

    def integer(self, meta: Meta, children: list[Any]) -> nodes.Constant:
        value = int(children[0])
        if value > _INT64_MAX:
            raise _Refused(meta.start_pos, "integer constant out of the Int64 range")
        return nodes.Constant(value, meta.start_pos)

    def decimal(self, meta: Meta, children: list[Any]) -> nodes.Constant:
        return nodes.Constant(float(children[0]), meta.start_pos)

    approx = decimal

    def string(self, meta: Meta, children: list[Any]) -> nodes.Constant:
        return nodes.Constant(_unquote(children[0]), meta.start_pos)

    def true_(self, meta: Meta, children: list[Any]) -> nodes.Constant:
        return nodes.Constant(True, meta.start_pos)

    def false_(self, meta: Meta, children: list[Any]) -> nodes.Constant:
        return nodes.Constant(False, meta.start_pos)

    def null(self, meta: Meta, children: list[Any]) -> nodes.Constant:
        return nodes.Constant(None, meta.start_pos)

    def parameter(self, meta: Meta, children: list[Any]) -> nodes.Parameter:
        name = str(children[0])
        key = name[1:].casefold()
        if key not in self._parameters:
            raise _Refused(meta.start_pos, f"parameter {name} is not defined")
        return nodes.Parameter(name, self._parameters[key], meta.start_pos)

    def scoped(self, meta: Meta, children: list[Any]) -> nodes.Property:
        scope, name = str(children[0]).casefold(), _name(children[1])
        if scope == "user":
            return nodes.Property("user", name, meta.start_pos)
        if scope != "sys":
            raise _Refused(meta.start_pos, f"unknown scope '{children[0]}' (use sys or user)")
        canonical = canonical_system_property(name)
        if canonical is None:
            raise _Refused(children[1].start_pos, f"unknown system property '{name}'")
        return nodes.Property("sys", canonical, meta.start_pos)

    def unscoped(self, meta: Meta, children: list[Any]) -> nodes.Property:
        return nodes.Property("user", _name(children[0]), meta.start_pos)

    def function(self, meta: Meta, children: list[Any]) -> nodes.Function:
        name, *arguments = children
        _name(name)
        known = _FUNCTIONS.get(str(name).casefold())
        if known is None:
            raise _Refused(meta.start_pos, f"unknown function '{name}'")
        canonical, arity = known
        if len(arguments) != arity:
            raise _Refused(meta.start_pos, f"{name}() takes {arity} argument(s)")
        return nodes.Function(canonical, tuple(_value(a) for a in arguments), meta.start_pos)


def _describe(parser: Lark, error: UnexpectedInput, text: str) -> tuple[int, str]:
    """Position and reason for one of Lark's parse errors."""
    if isinstance(error, UnexpectedCharacters):
        position = error.pos_in_stream or 0
        char = text[position]
        return position, _UNTERMINATED.get(char, f"unexpected character {char!r}")
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        token = error.token
        shown = str(token) if len(token) <= 24 else f"{str(token)[:21]}..."
        return token.start_pos or 0, f"unexpected '{shown}'"
    expected = sorted(getattr(error, "expected", ()) or ())
    literals = []
    for name in expected:
        pattern = parser.get_terminal(name).pattern
        if pattern.type != "str":
            break
        literals.append(f"'{pattern.value}'")
    else:
        if 0 < len(literals) <= 3:
            return len(text), f"unexpected end of expression, expected {' or '.join(literals)}"
    return len(text), "unexpected end of expression"


def _parse(kind: str, start: str, expression: str, parameters: Mapping[str, object] | None) -> Any:
    bound = {name.removeprefix("@").casefold(): v for name, v in (parameters or {}).items()}
    parser = _parser()
    try:
        tree = parser.parse(expression, start=start)
    except UnexpectedInput as error:
        position, reason = _describe(parser, error, expression)
        raise RuleSyntaxError(kind, expression, position, reason) from None
    try:
        return _Builder(bound).transform(tree)
    except VisitError as error:
        refused = error.orig_exc
        if isinstance(refused, _Refused):
            raise RuleSyntaxError(kind, expression, refused.position, refused.reason) from None
        raise


def _refuse(kind: str, expression: str, reason: str) -> NoReturn:
    raise RuleSyntaxError(kind, expression, 0, reason)


def parse_filter(
    expression: str, parameters: Mapping[str, object] | None = None
) -> nodes.Condition:
    """Parse a SQL filter (``SqlRuleFilter.SqlExpression``).

    Args:
        expression: The filter text, e.g. ``"sys.Label LIKE '%bus%' AND quantity > 10"``.
        parameters: Values for ``@name`` references; keys with or without the ``@``,
            matched case-insensitively (``SqlRuleFilter.Parameters``).

    Returns:
        The root condition.

    Raises:
        RuleSyntaxError: The text does not parse or names something invalid.
    """
    if not isinstance(expression, str):
        _refuse("SqlFilter", str(expression), "the expression must be a string")
    result: nodes.Condition = _parse("SqlFilter", "filter", expression, parameters)
    return result


def parse_action(
    expression: str, parameters: Mapping[str, object] | None = None
) -> tuple[nodes.Statement, ...]:
    """Parse a SQL rule action (``SqlRuleAction.SqlExpression``).

    Statements are ``SET property = expression`` and ``REMOVE property``, each optionally
    ended by ``;``, separated by ``;``, ``,`` or white space.

    Raises:
        RuleSyntaxError: The text does not parse, names something invalid, or sets or
            removes a read-only system property.
    """
    if not isinstance(expression, str):
        _refuse("SqlRuleAction", str(expression), "the expression must be a string")
    result: tuple[nodes.Statement, ...] = _parse("SqlRuleAction", "actions", expression, parameters)
    return result
