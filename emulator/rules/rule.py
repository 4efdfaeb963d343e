"""Subscription rules: a filter, an optional SQL action, and what a subscription stores.

From https://learn.microsoft.com/azure/service-bus-messaging/topic-filters: a rule is a
filter (SQL, boolean or correlation) plus an optional action; a new subscription has the
``$Default`` rule with the true filter; matching rules without an action together yield one
copy of the message, and each matching rule with an action yields its own copy, carrying a
``RuleName`` property with the rule's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from emulator.rules.actions import compile_action
from emulator.rules.correlation import CorrelationFilter
from emulator.rules.errors import RuleEvaluationError
from emulator.rules.evaluate import Truth, compile_condition
from emulator.rules.message import MessageView

__all__ = [
    "DEFAULT_RULE_NAME",
    "RULE_NAME_PROPERTY",
    "FalseFilter",
    "Rule",
    "RuleFilter",
    "SqlFilter",
    "SqlRuleAction",
    "TrueFilter",
    "default_rule",
    "subscription_copies",
]

DEFAULT_RULE_NAME = "$Default"
#: Application property naming the rule whose action produced a copy.
RULE_NAME_PROPERTY = "RuleName"


@dataclass(frozen=True, slots=True)
class TrueFilter:
    """Selects every message (``TrueRuleFilter``, SQL ``1=1``)."""

    sql_expression = "1=1"

    def matches(self, message: MessageView) -> bool:
        """Always ``True``."""
        return True


@dataclass(frozen=True, slots=True)
class FalseFilter:
    """Selects no message (``FalseRuleFilter``, SQL ``1=0``)."""

    sql_expression = "1=0"

    def matches(self, message: MessageView) -> bool:
        """Always ``False``."""
        return False


@dataclass(frozen=True, slots=True)
class SqlFilter:
    """A ``SqlRuleFilter``: parsed and compiled when built.

    Grammar and semantics:
    https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-filter.

    Attributes:
        sql_expression: The filter text, e.g. ``"color = 'blue' AND quantity = 10"``.
        parameters: Values for ``@name`` references (keys with or without ``@``).

    Raises:
        RuleSyntaxError: On construction, when the text does not parse.
    """

    sql_expression: str
    parameters: Mapping[str, object] = field(default_factory=dict)
    _truth: Truth = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Imported here so that Lark loads only once a SQL rule is configured (start-up time).
        from emulator.rules.sql import parse_filter

        condition = parse_filter(self.sql_expression, self.parameters)
        object.__setattr__(self, "_truth", compile_condition(condition))

    def matches(self, message: MessageView) -> bool:
        """Whether the condition is true for ``message`` (unknown does not match).

        Raises:
            RuleEvaluationError: Operands of types that do not combine (Azure's
                ``FilterException``).
        """
        try:
            return self._truth(message) is True
        except RuleEvaluationError as error:
            raise error.with_source("SqlFilter", self.sql_expression) from None


RuleFilter = TrueFilter | FalseFilter | SqlFilter | CorrelationFilter


@dataclass(frozen=True, slots=True)
class SqlRuleAction:
    """A ``SqlRuleAction`` (``SET``/``REMOVE`` statements), parsed and compiled when built.

    Grammar and semantics:
    https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-rule-action.

    Raises:
        RuleSyntaxError: On construction, when the text does not parse or changes a
            read-only system property.
    """

    sql_expression: str
    parameters: Mapping[str, object] = field(default_factory=dict)
    _apply: Callable[[MessageView], MessageView] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from emulator.rules.sql import parse_action

        statements = parse_action(self.sql_expression, self.parameters)
        object.__setattr__(self, "_apply", compile_action(statements))

    def apply(self, message: MessageView) -> MessageView:
        """A new view with the statements applied; ``message`` is not changed.

        Raises:
            RuleEvaluationError: An expression failed, or a system property was given a
                value of the wrong type.
        """
        try:
            return self._apply(message)
        except RuleEvaluationError as error:
            raise error.with_source("SqlRuleAction", self.sql_expression) from None


@dataclass(frozen=True, slots=True)
class Rule:
    """A subscription rule (``RuleProperties``).

    Attributes:
        name: The rule name; ``$Default`` for the rule every new subscription gets.
        filter: Which messages the rule selects.
        action: Applied to the copy the rule selects, if any.
    """

    name: str = DEFAULT_RULE_NAME
    filter: RuleFilter = field(default_factory=TrueFilter)
    action: SqlRuleAction | None = None

    def matches(self, message: MessageView) -> bool:
        """Whether the filter selects ``message`` (see :meth:`SqlFilter.matches`)."""
        return self.filter.matches(message)

    def apply(self, message: MessageView) -> MessageView:
        """``message`` after the action (the same view when there is none)."""
        return message if self.action is None else self.action.apply(message)


def default_rule() -> Rule:
    """The ``$Default`` rule: true filter, no action."""
    return Rule()


def subscription_copies(rules: Sequence[Rule], message: MessageView) -> list[MessageView]:
    """The copies of ``message`` a subscription with ``rules`` stores, in rule order.

    One unchanged copy if any rule without an action matches (first), then one copy per
    matching rule with an action, that action applied and ``RuleName`` set to the rule's
    name. An empty list means the subscription does not take the message.

    Raises:
        RuleEvaluationError: A filter or action failed; the topic decides whether the
            message is dead-lettered (``EnableDeadLetteringOnFilterEvaluationExceptions``).
    """
    plain = False
    annotated: list[MessageView] = []
    for rule in rules:
        if rule.action is None:
            plain = plain or rule.matches(message)
        elif rule.matches(message):
            copy = rule.action.apply(message)
            user = dict(copy.user)
            user[RULE_NAME_PROPERTY] = rule.name
            annotated.append(MessageView(copy.system, user))
    return [message, *annotated] if plain else annotated
