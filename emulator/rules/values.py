"""Operators on property values, with the C# binding Service Bus documents.

"Operators follow C# implicit conversion semantics whenever possible"
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-filter#operator-binding-semantics):
``int`` is Int64 (wrapping, truncating division), ``float`` is Double (IEEE division by
zero), an ``int`` meeting a ``float`` is widened to ``float``, and ``bool`` never mixes with
numbers. ``None`` is the unknown value and propagates. Strings compare by ordinal
(case-sensitive) and ``+`` concatenates two strings. Other types (``datetime``,
``timedelta``, ``UUID`` ...) use Python's operator for that pair, so ``DateTime - DateTime``
gives a ``TimeSpan`` as in C#. A pair with no operator raises :class:`OperandError`.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable
from typing import Any

__all__ = ["OperandError", "arithmetic", "compare", "like_pattern", "negate"]

_INT64 = 2**64
_INT64_MIN = -(2**63)


class OperandError(Exception):
    """Operands that no operator accepts; the caller adds the position."""


def _wrap(value: int) -> int:
    """Int64 two's-complement wrap-around (C# ``unchecked``, the default)."""
    return (value - _INT64_MIN) % _INT64 + _INT64_MIN


def _type_name(value: object) -> str:
    return type(value).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_divide(left: int, right: int) -> int:
    if right == 0:
        raise OperandError("integer division by zero")
    quotient = abs(left) // abs(right)
    return _wrap(quotient if (left < 0) == (right < 0) else -quotient)


def _int_remainder(left: int, right: int) -> int:
    if right == 0:
        raise OperandError("integer division by zero")
    remainder = abs(left) % abs(right)
    return -remainder if left < 0 else remainder


def _float_divide(left: float, right: float) -> float:
    if right == 0.0:
        if left == 0.0 or math.isnan(left):
            return math.nan
        return math.copysign(math.inf, left) * math.copysign(1.0, right)
    return left / right


def _float_remainder(left: float, right: float) -> float:
    if right == 0.0 or math.isinf(left) or math.isnan(left) or math.isnan(right):
        return math.nan
    if math.isinf(right):
        return left
    return math.fmod(left, right)


_INT_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: _wrap(a + b),
    "-": lambda a, b: _wrap(a - b),
    "*": lambda a, b: _wrap(a * b),
    "/": _int_divide,
    "%": _int_remainder,
}
_FLOAT_OPS: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _float_divide,
    "%": _float_remainder,
}
_PY_OPS: dict[str, Callable[[object, object], object]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
}


def arithmetic(op: str, left: object, right: object) -> object:
    """``left op right`` for ``op`` in ``+ - * / %``; ``None`` if either side is unknown.

    Raises:
        OperandError: The operand types do not combine, or an integer division by zero.
    """
    if left is None or right is None:
        return None
    if _is_number(left) and _is_number(right):
        if isinstance(left, int) and isinstance(right, int):
            return _INT_OPS[op](left, right)
        return _FLOAT_OPS[op](float(left), float(right))  # type: ignore[arg-type]
    if isinstance(left, str) and isinstance(right, str):
        if op == "+":
            return left + right
    elif not (isinstance(left, bool | str) or isinstance(right, bool | str)):
        try:  # datetime - datetime, datetime + timedelta ...
            return _PY_OPS[op](left, right)
        except (TypeError, ArithmeticError):
            pass
    raise OperandError(f"cannot apply {op} to {_type_name(left)} and {_type_name(right)}")


def negate(value: object) -> object:
    """Unary minus; ``None`` stays unknown.

    Raises:
        OperandError: ``value`` is not a number (or a ``timedelta``-like type).
    """
    if value is None:
        return None
    if _is_number(value):
        return _wrap(-value) if isinstance(value, int) else -value  # type: ignore[operator]
    if not isinstance(value, bool | str):
        try:
            return -value  # type: ignore[operator]
        except TypeError:
            pass
    raise OperandError(f"cannot negate {_type_name(value)}")


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def compare(op: str, left: object, right: object) -> bool | None:
    """``left op right`` for ``op`` in ``= <> > >= < <=``; ``None`` if either side is unknown.

    Raises:
        OperandError: The types cannot be compared (``'a' = 1``, ``TRUE > FALSE``).
    """
    if left is None or right is None:
        return None
    test = _COMPARE[op]
    if _is_number(left) and _is_number(right):
        if isinstance(left, int) and isinstance(right, int):
            return test(left, right)
        return test(float(left), float(right))  # type: ignore[arg-type]
    if isinstance(left, bool) or isinstance(right, bool):
        if isinstance(left, bool) and isinstance(right, bool) and op in ("=", "<>"):
            return test(left, right)
    elif isinstance(left, str) and isinstance(right, str):
        return test(left, right)
    elif not isinstance(left, int | float | str) and not isinstance(right, int | float | str):
        try:  # datetime, timedelta, UUID ...: Python's operator for the pair
            return test(left, right)
        except TypeError:
            pass
    raise OperandError(f"cannot compare {_type_name(left)} {op} {_type_name(right)}")


@functools.lru_cache(maxsize=512)
def like_pattern(pattern: str, escape: str | None) -> re.Pattern[str]:
    """The regular expression for a ``LIKE`` pattern: ``%`` any run, ``_`` any one character.

    Hand-written because no library translates SQL ``LIKE`` (``fnmatch`` is glob syntax);
    the result is matched with ``fullmatch``, case-sensitively.

    Raises:
        OperandError: ``escape`` is not one character, or the pattern ends with it.
    """
    if escape is not None and len(escape) != 1:
        raise OperandError(f"the LIKE escape must be one character, not {escape!r}")
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == escape:
            literal = next(chars, None)
            if literal is None:
                raise OperandError("the LIKE pattern ends with its escape character")
            parts.append(re.escape(literal))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)
