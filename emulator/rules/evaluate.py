"""Compile filter and action trees into Python closures over a :class:`MessageView`.

Compiled once per rule, so matching a message walks no tree and parses nothing (topics
evaluate every subscription's rules on every send). Three-valued logic as documented in
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-filter#property-evaluation-semantics:
a missing or null property is *unknown* (``None``); arithmetic, comparison and ``LIKE`` on
unknown give unknown; ``IN`` is unknown when its left side is; ``AND``/``OR``/``NOT`` follow
the documented truth tables (``AND`` stops at a false left side, ``OR`` at a true one); a
filter matches only when its condition is true.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from emulator.rules import nodes
from emulator.rules.errors import RuleEvaluationError
from emulator.rules.message import MessageView, canonical_system_property, find_user_key
from emulator.rules.values import OperandError, arithmetic, compare, like_pattern, negate

__all__ = ["Truth", "Value", "compile_condition", "compile_expression", "read_property"]

#: A compiled value: the message in, the value out (``None`` is unknown).
Value = Callable[[MessageView], object]
#: A compiled condition: ``True``, ``False`` or ``None`` (unknown).
Truth = Callable[[MessageView], bool | None]


def read_property(view: MessageView, scope: str, name: str) -> object:
    """The value of ``scope.name`` (``name`` canonical for ``sys``), ``None`` if not set."""
    if scope == "sys":
        return view.system.get(name)
    user = view.user
    if name in user:
        return user[name]
    key = find_user_key(user, name)
    return None if key is None else user[key]


def _property_by_name(view: MessageView, text: str, position: int) -> object:
    """``property(name)``: ``name`` is ``[sys.|user.]property`` as in the filter text."""
    scope, dot, rest = text.partition(".")
    if dot and scope.casefold() == "sys":
        canonical = canonical_system_property(rest)
        if canonical is None:
            raise RuleEvaluationError(f"unknown system property '{rest}'", position)
        return view.system.get(canonical)
    if dot and scope.casefold() == "user":
        return read_property(view, "user", rest)
    return read_property(view, "user", text)


def _constant(value: object) -> Value:
    return lambda view: value


def _property(node: nodes.Property) -> Value:
    scope, name = node.scope, node.name
    if scope == "sys":
        return lambda view: view.system.get(name)
    return lambda view: read_property(view, "user", name)


def _function(node: nodes.Function) -> Value:
    if node.name == "newid":
        return lambda view: uuid.uuid4()
    argument, position = compile_expression(node.arguments[0]), node.position

    def by_name(view: MessageView) -> object:
        name = argument(view)
        if name is None:
            return None
        if not isinstance(name, str):
            raise RuleEvaluationError("property() needs a string name", position)
        return _property_by_name(view, name, position)

    return by_name


def _negation(node: nodes.Negation) -> Value:
    operand, position = compile_expression(node.operand), node.position

    def run(view: MessageView) -> object:
        try:
            return negate(operand(view))
        except OperandError as error:
            raise RuleEvaluationError(str(error), position) from None

    return run


def _arithmetic(node: nodes.Arithmetic) -> Value:
    op, position = node.operator, node.position
    left, right = compile_expression(node.left), compile_expression(node.right)

    def run(view: MessageView) -> object:
        try:
            return arithmetic(op, left(view), right(view))
        except OperandError as error:
            raise RuleEvaluationError(str(error), position) from None

    return run


def compile_expression(node: nodes.Expression) -> Value:
    """A closure computing the value of ``node`` for a message.

    The closure raises :class:`RuleEvaluationError` when operand types do not combine.
    """
    if isinstance(node, nodes.Constant | nodes.Parameter):
        return _constant(node.value)
    if isinstance(node, nodes.Property):
        return _property(node)
    if isinstance(node, nodes.Function):
        return _function(node)
    if isinstance(node, nodes.Negation):
        return _negation(node)
    return _arithmetic(node)


def _comparison(node: nodes.Comparison) -> Truth:
    op, position = node.operator, node.position
    left, right = compile_expression(node.left), compile_expression(node.right)

    def run(view: MessageView) -> bool | None:
        try:
            return compare(op, left(view), right(view))
        except OperandError as error:
            raise RuleEvaluationError(str(error), position) from None

    return run


def _in(node: nodes.In) -> Truth:
    operand, negated, position = compile_expression(node.operand), node.negated, node.position
    items = tuple(compile_expression(item) for item in node.items)

    def run(view: MessageView) -> bool | None:
        value = operand(view)
        if value is None:
            return None
        found = False
        try:
            for item in items:
                candidate = item(view)
                if candidate is not None and compare("=", value, candidate):
                    found = True
                    break
        except OperandError as error:
            raise RuleEvaluationError(str(error), position) from None
        return found != negated

    return run


def _like(node: nodes.Like) -> Truth:
    operand, pattern = compile_expression(node.operand), compile_expression(node.pattern)
    escape = None if node.escape is None else compile_expression(node.escape)
    negated, position = node.negated, node.position

    def run(view: MessageView) -> bool | None:
        value, text = operand(view), pattern(view)
        escape_char = None if escape is None else escape(view)
        if value is None or text is None or (escape is not None and escape_char is None):
            return None
        if not (
            isinstance(value, str)
            and isinstance(text, str)
            and (escape_char is None or isinstance(escape_char, str))
        ):
            names = ", ".join(type(v).__name__ for v in (value, text, escape_char) if v is not None)
            raise RuleEvaluationError(f"LIKE needs strings, not {names}", position)
        try:
            regex = like_pattern(text, escape_char)
        except OperandError as error:
            raise RuleEvaluationError(str(error), position) from None
        return (regex.fullmatch(value) is not None) != negated

    return run


def _is_null(node: nodes.IsNull) -> Truth:
    value, negated = _property(node.operand), node.negated
    return lambda view: (value(view) is None) != negated


def _exists(node: nodes.Exists) -> Truth:
    scope, name = node.operand.scope, node.operand.name
    if scope == "sys":
        return lambda view: name in view.system
    return lambda view: find_user_key(view.user, name) is not None


def _not(node: nodes.Not) -> Truth:
    operand = compile_condition(node.operand)

    def run(view: MessageView) -> bool | None:
        result = operand(view)
        return None if result is None else not result

    return run


def _logical(node: nodes.Logical) -> Truth:
    left, right = compile_condition(node.left), compile_condition(node.right)
    decisive = node.operator == "OR"  # the value that settles the result on its own

    def run(view: MessageView) -> bool | None:
        first = left(view)
        if first is decisive:
            return decisive
        second = right(view)
        if second is decisive:
            return decisive
        if first is None or second is None:
            return None
        return not decisive

    return run


def compile_condition(node: nodes.Condition) -> Truth:
    """A closure computing ``True``/``False``/``None`` (unknown) for a message.

    The closure raises :class:`RuleEvaluationError` when operand types do not combine.
    """
    if isinstance(node, nodes.Comparison):
        return _comparison(node)
    if isinstance(node, nodes.In):
        return _in(node)
    if isinstance(node, nodes.Like):
        return _like(node)
    if isinstance(node, nodes.IsNull):
        return _is_null(node)
    if isinstance(node, nodes.Exists):
        return _exists(node)
    if isinstance(node, nodes.Not):
        return _not(node)
    return _logical(node)
