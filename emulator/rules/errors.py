"""Errors of the rule engine: one refused at configuration time, one raised while matching.

Azure refuses a rule whose SQL does not parse when the rule is created, and raises a
``FilterException`` when a filter fails while a message is evaluated (see
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-filter#property-evaluation-semantics);
a subscription with ``EnableDeadLetteringOnFilterEvaluationExceptions`` then dead-letters
the message.
"""

from __future__ import annotations

__all__ = ["RuleEvaluationError", "RuleSyntaxError"]


def _one_line(expression: str) -> str:
    """The expression as it appears in an error: on one line, control characters escaped."""
    return expression.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def _where(expression: str, position: int) -> str:
    """``at position N``, plus line and column when the expression spans several lines."""
    if "\n" not in expression:
        return f"at position {position}"
    line = expression.count("\n", 0, position) + 1
    column = position - (expression.rfind("\n", 0, position) + 1) + 1
    return f"at position {position} (line {line}, column {column})"


class RuleSyntaxError(ValueError):
    """A SQL filter or SQL rule action that does not parse or names something invalid.

    Raised when the rule is built (configuration time), never while matching. ``str()`` is
    one readable line, e.g. ``SqlFilter "user.color = = 'red'": unexpected '=' at position 13``.

    Attributes:
        kind: ``"SqlFilter"`` or ``"SqlRuleAction"``.
        expression: The text as given.
        position: 0-based character offset of the fault in ``expression``.
        line: 1-based line of ``position``.
        column: 1-based column of ``position``.
        reason: What is wrong, without the position (e.g. ``unexpected '='``).
    """

    def __init__(self, kind: str, expression: str, position: int, reason: str) -> None:
        self.kind = kind
        self.expression = expression
        self.position = position
        self.line = expression.count("\n", 0, position) + 1
        self.column = position - (expression.rfind("\n", 0, position) + 1) + 1
        self.reason = reason
        super().__init__(
            f'{kind} "{_one_line(expression)}": {reason} {_where(expression, position)}'
        )


class RuleEvaluationError(Exception):
    """A filter or action failed on one message (Azure's ``FilterException``).

    Raised for operands of types that do not combine (``'a' = 1``, ``TRUE + 1``), an integer
    division by zero, a ``LIKE`` escape that is not one character, or ``property(name)``
    naming an unknown system property. The topic decides what happens to the message
    (skip the subscription, or dead-letter it when the subscription asks for that).

    Attributes:
        reason: What failed.
        position: 0-based offset in the expression of the operation that failed.
        kind: ``"SqlFilter"`` or ``"SqlRuleAction"`` once known, else ``None``.
        expression: The rule's text once known, else ``None``.
    """

    def __init__(
        self,
        reason: str,
        position: int,
        kind: str | None = None,
        expression: str | None = None,
    ) -> None:
        self.reason = reason
        self.position = position
        self.kind = kind
        self.expression = expression
        super().__init__(self._render())

    def _render(self) -> str:
        if self.kind is None or self.expression is None:
            return f"{self.reason} at position {self.position}"
        return (
            f'{self.kind} "{_one_line(self.expression)}": {self.reason} '
            f"{_where(self.expression, self.position)}"
        )

    def with_source(self, kind: str, expression: str) -> RuleEvaluationError:
        """The same error naming the rule text it came from."""
        return RuleEvaluationError(self.reason, self.position, kind, expression)
