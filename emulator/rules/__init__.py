"""Service Bus subscription rules: SQL filters, SQL actions, correlation and boolean filters.

A library the emulator's topics call; it knows nothing of AMQP or of the emulator's own
message type. The topic adapts each message to a :class:`MessageView` (system properties by
canonical name, application properties as sent), asks :func:`subscription_copies` which
copies a subscription stores, and turns the views back into messages.

Build rules at configuration time: :class:`SqlFilter` and :class:`SqlRuleAction` parse and
compile their text when constructed and raise :class:`RuleSyntaxError` (a ``ValueError``
whose ``str()`` is one line with the position and the reason). Matching raises
:class:`RuleEvaluationError` only when operand types do not combine (Azure's
``FilterException``).

Docs mirrored:
https://learn.microsoft.com/azure/service-bus-messaging/topic-filters,
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-filter,
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-rule-action.
"""

from emulator.rules.correlation import CorrelationFilter
from emulator.rules.errors import RuleEvaluationError, RuleSyntaxError
from emulator.rules.message import (
    SETTABLE_SYSTEM_PROPERTIES,
    SYSTEM_PROPERTIES,
    MessageView,
    canonical_system_property,
)
from emulator.rules.rule import (
    DEFAULT_RULE_NAME,
    RULE_NAME_PROPERTY,
    FalseFilter,
    Rule,
    RuleFilter,
    SqlFilter,
    SqlRuleAction,
    TrueFilter,
    default_rule,
    subscription_copies,
)

__all__ = [
    "DEFAULT_RULE_NAME",
    "RULE_NAME_PROPERTY",
    "SETTABLE_SYSTEM_PROPERTIES",
    "SYSTEM_PROPERTIES",
    "CorrelationFilter",
    "FalseFilter",
    "MessageView",
    "Rule",
    "RuleEvaluationError",
    "RuleFilter",
    "RuleSyntaxError",
    "SqlFilter",
    "SqlRuleAction",
    "TrueFilter",
    "canonical_system_property",
    "default_rule",
    "subscription_copies",
]
