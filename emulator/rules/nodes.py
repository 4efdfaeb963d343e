"""The syntax tree of SQL filters and actions, as :mod:`emulator.rules.sql` builds it.

Every node carries ``position``, the 0-based offset of its first character in the rule's
text, so that errors name where they come from. Values (``Expression``) and conditions
(``Condition``) are kept apart, as the documented grammar keeps ``<expression>`` and
``<predicate>`` apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Arithmetic",
    "Comparison",
    "Condition",
    "Constant",
    "Exists",
    "Expression",
    "Function",
    "In",
    "IsNull",
    "Like",
    "Logical",
    "Negation",
    "Not",
    "Parameter",
    "Property",
    "Remove",
    "Set",
    "Statement",
]

ArithmeticOperator = Literal["+", "-", "*", "/", "%"]
ComparisonOperator = Literal["=", "<>", ">", ">=", "<", "<="]


@dataclass(frozen=True, slots=True)
class Constant:
    """A literal: ``int`` (Int64), ``float`` (decimal, scientific), ``str``, ``bool``, ``None``."""

    value: object
    position: int


@dataclass(frozen=True, slots=True)
class Parameter:
    """``@name``, bound to the value supplied with the rule."""

    name: str
    value: object
    position: int


@dataclass(frozen=True, slots=True)
class Property:
    """``[sys.|user.]name``; for ``sys`` the name is canonical (see ``message``)."""

    scope: Literal["sys", "user"]
    name: str
    position: int


@dataclass(frozen=True, slots=True)
class Function:
    """``newid()`` or ``property(name)`` / ``p(name)``."""

    name: Literal["newid", "property"]
    arguments: tuple[Expression, ...]
    position: int


@dataclass(frozen=True, slots=True)
class Negation:
    """Unary ``-`` (unary ``+`` is dropped by the parser)."""

    operand: Expression
    position: int


@dataclass(frozen=True, slots=True)
class Arithmetic:
    """``left op right`` with ``op`` one of ``+ - * / %``."""

    operator: ArithmeticOperator
    left: Expression
    right: Expression
    position: int


Expression = Constant | Parameter | Property | Function | Negation | Arithmetic


@dataclass(frozen=True, slots=True)
class Comparison:
    """``left op right``; ``!=`` is parsed as ``<>``."""

    operator: ComparisonOperator
    left: Expression
    right: Expression
    position: int


@dataclass(frozen=True, slots=True)
class In:
    """``operand [NOT] IN (items...)``."""

    operand: Expression
    items: tuple[Expression, ...]
    negated: bool
    position: int


@dataclass(frozen=True, slots=True)
class Like:
    """``operand [NOT] LIKE pattern [ESCAPE escape]``."""

    operand: Expression
    pattern: Expression
    escape: Expression | None
    negated: bool
    position: int


@dataclass(frozen=True, slots=True)
class IsNull:
    """``property IS [NOT] NULL``."""

    operand: Property
    negated: bool
    position: int


@dataclass(frozen=True, slots=True)
class Exists:
    """``EXISTS(property)``."""

    operand: Property
    position: int


@dataclass(frozen=True, slots=True)
class Not:
    """``NOT condition``."""

    operand: Condition
    position: int


@dataclass(frozen=True, slots=True)
class Logical:
    """``left AND right`` / ``left OR right``."""

    operator: Literal["AND", "OR"]
    left: Condition
    right: Condition
    position: int


Condition = Comparison | In | Like | IsNull | Exists | Not | Logical


@dataclass(frozen=True, slots=True)
class Set:
    """``SET property = expression``."""

    target: Property
    value: Expression
    position: int


@dataclass(frozen=True, slots=True)
class Remove:
    """``REMOVE property``."""

    target: Property
    position: int


Statement = Set | Remove
