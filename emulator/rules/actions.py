"""Apply parsed SQL rule actions (``SET``/``REMOVE``) to a message's properties.

Semantics from https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-rule-action#considerations:
statements run in order, each seeing the changes of the ones before; ``SET`` creates or
updates a property and converts implicitly where C# would (an ``int`` stored into a
property that holds a ``float`` becomes a ``float``); ``REMOVE`` deletes it; user property
names are case-insensitive (an existing key keeps its spelling); a missing user property
reads as unknown, so ``SET x = missing`` stores ``None``. System properties take their own
type (``str`` ids, a ``UUID`` from ``newid()`` becomes its string); ``None`` unsets them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from emulator.rules import nodes
from emulator.rules.errors import RuleEvaluationError
from emulator.rules.evaluate import Value, compile_expression
from emulator.rules.message import SETTABLE_SYSTEM_PROPERTIES, MessageView, find_user_key

__all__ = ["compile_action"]

#: One compiled statement: the view to read, then the system and user dicts to change.
_Step = Callable[[MessageView, dict[str, object], dict[str, object]], None]

_SYSTEM_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "bool": bool,
    "datetime": dt.datetime,
    "timedelta": dt.timedelta,
}


def _system_value(name: str, value: object, position: int) -> object:
    """``value`` converted to what ``sys.name`` holds, or :class:`RuleEvaluationError`."""
    kind = SETTABLE_SYSTEM_PROPERTIES[name]
    if kind == "str" and isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, _SYSTEM_TYPES[kind]):
        return value
    raise RuleEvaluationError(
        f"sys.{name} takes a {kind} value, not {type(value).__name__}", position
    )


def _user_value(current: object, value: object) -> object:
    """C# implicit conversion into an existing property's type, where one exists."""
    widen = isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool)
    return float(value) if widen else value  # type: ignore[arg-type]


def _set(node: nodes.Set) -> _Step:
    scope, name, position = node.target.scope, node.target.name, node.position
    value: Value = compile_expression(node.value)

    def run(view: MessageView, system: dict[str, object], user: dict[str, object]) -> None:
        result = value(view)
        if scope == "sys":
            if result is None:
                system.pop(name, None)
            else:
                system[name] = _system_value(name, result, position)
            return
        key = find_user_key(user, name) or name
        user[key] = _user_value(user.get(key), result)

    return run


def _remove(node: nodes.Remove) -> _Step:
    scope, name = node.target.scope, node.target.name

    def run(view: MessageView, system: dict[str, object], user: dict[str, object]) -> None:
        if scope == "sys":
            system.pop(name, None)
            return
        key = find_user_key(user, name)
        if key is not None:
            del user[key]

    return run


def compile_action(statements: tuple[nodes.Statement, ...]) -> Callable[[MessageView], MessageView]:
    """A function applying ``statements`` to a message; the input view is never changed.

    The returned function raises :class:`RuleEvaluationError` when an expression fails or a
    system property is given a value of the wrong type.
    """
    steps = tuple(_set(s) if isinstance(s, nodes.Set) else _remove(s) for s in statements)

    def apply(view: MessageView) -> MessageView:
        system, user = dict(view.system), dict(view.user)
        current = MessageView(system, user)
        for step in steps:
            step(current, system, user)
        return current

    return apply
