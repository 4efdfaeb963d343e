"""The entity blocks of ``Config.json``: queues, topics, subscriptions and their rules.

Names and shapes follow the official emulator's schema
(``ServiceBus-Emulator/Schema/Config-schema.json`` in
https://github.com/Azure/azure-service-bus-emulator-installer and
https://learn.microsoft.com/azure/service-bus-messaging/test-locally-with-service-bus-emulator).
Defaults follow Azure rather than the official emulator's caps
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-quotas): any positive
duration is accepted, so that tests can use short windows.

Rules are compiled when the file is read: a SQL filter or action that does not parse is
refused then, with the position and the reason, as Azure refuses it when the rule is created.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from emulator.durations import INFINITE, parse_duration
from emulator.rules import (
    CorrelationFilter,
    Rule,
    RuleFilter,
    RuleSyntaxError,
    SqlFilter,
    SqlRuleAction,
    default_rule,
)

__all__ = [
    "MAX_LOCK_DURATION",
    "ConfigModel",
    "QueueConfig",
    "QueueProperties",
    "RuleConfig",
    "RuleProperties",
    "SubscriptionConfig",
    "SubscriptionProperties",
    "TopicConfig",
    "TopicProperties",
]

#: Azure's upper bound for ``LockDuration``.
MAX_LOCK_DURATION = timedelta(minutes=5)

_ENTITY_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,258}[A-Za-z0-9])?$")
#: Subscription and rule names: 1-50 characters, no ``/`` (ARM's limits).
_CHILD_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,48}[A-Za-z0-9])?$")


def _to_duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    return value


#: A ``timedelta`` written in JSON as an ISO-8601 duration string (``"PT1M"``).
Duration = Annotated[timedelta, BeforeValidator(_to_duration)]


class ConfigModel(BaseModel):
    """Base of every ``Config.json`` block: unknown keys refused, PascalCase aliases, frozen."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _entity_name(kind: str, value: str) -> str:
    if not _ENTITY_NAME.match(value):
        raise ValueError(
            f"invalid {kind} name {value!r}: use letters, digits, '.', '-', '_', '/', "
            "starting and ending with a letter or digit"
        )
    return value


class _ReceivableProperties(ConfigModel):
    """What queues and subscriptions share: locks, delivery count, expiry, sessions,
    forwarding. Durations are ``timedelta``; in JSON ISO-8601 strings.

    Locks: https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement;
    dead-lettering: https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues;
    forwarding: https://learn.microsoft.com/azure/service-bus-messaging/service-bus-auto-forwarding.
    """

    max_delivery_count: int = Field(10, alias="MaxDeliveryCount", ge=1, le=2_147_483_647)
    lock_duration: Duration = Field(timedelta(minutes=1), alias="LockDuration")
    default_message_time_to_live: Duration = Field(INFINITE, alias="DefaultMessageTimeToLive")
    dead_lettering_on_message_expiration: bool = Field(
        False, alias="DeadLetteringOnMessageExpiration"
    )
    requires_session: bool = Field(False, alias="RequiresSession")
    #: Queue or topic every arriving message moves to (``""`` in ``Config.json``: none).
    forward_to: str | None = Field(None, alias="ForwardTo")
    #: Queue or topic every dead-lettered message moves to, instead of the DLQ.
    forward_dead_lettered_messages_to: str | None = Field(
        None, alias="ForwardDeadLetteredMessagesTo"
    )

    @field_validator("lock_duration")
    @classmethod
    def _lock_duration_range(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0) or value > MAX_LOCK_DURATION:
            raise ValueError("must be greater than 0 and at most PT5M")
        return value

    @field_validator("default_message_time_to_live")
    @classmethod
    def _positive_ttl(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be greater than 0")
        return value

    @field_validator("forward_to", "forward_dead_lettered_messages_to")
    @classmethod
    def _forward_target(cls, value: str | None) -> str | None:
        if not value:
            return None
        return _entity_name("forwarding target", value.strip("/"))

    @property
    def time_to_live_is_infinite(self) -> bool:
        """Whether ``DefaultMessageTimeToLive`` means "never expires"."""
        return self.default_message_time_to_live >= INFINITE


class QueueProperties(_ReceivableProperties):
    """A queue's ``Properties`` block. Field aliases are the JSON (PascalCase) names.

    Duplicate detection: https://learn.microsoft.com/azure/service-bus-messaging/duplicate-detection.
    """

    requires_duplicate_detection: bool = Field(False, alias="RequiresDuplicateDetection")
    duplicate_detection_history_time_window: Duration = Field(
        timedelta(minutes=10), alias="DuplicateDetectionHistoryTimeWindow"
    )
    #: Largest message accepted, in KiB. Azure: 256 on Standard, up to 102400 on Premium.
    max_message_size_in_kilobytes: int = Field(
        256, alias="MaxMessageSizeInKilobytes", ge=1, le=102400
    )

    @field_validator("duplicate_detection_history_time_window")
    @classmethod
    def _positive_window(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be greater than 0")
        return value


class QueueConfig(ConfigModel):
    """One queue: its ``Name`` (letters, digits, ``.``, ``-``, ``_``, ``/``; case-insensitive)."""

    name: str = Field(alias="Name")
    properties: QueueProperties = Field(default_factory=QueueProperties, alias="Properties")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _entity_name("queue", value)


class TopicProperties(ConfigModel):
    """A topic's ``Properties``: expiry and duplicate detection apply before fan-out.

    A subscription's messages expire after the smaller of the topic's and the subscription's
    ``DefaultMessageTimeToLive`` (and the message's own TTL).
    """

    default_message_time_to_live: Duration = Field(INFINITE, alias="DefaultMessageTimeToLive")
    requires_duplicate_detection: bool = Field(False, alias="RequiresDuplicateDetection")
    duplicate_detection_history_time_window: Duration = Field(
        timedelta(minutes=10), alias="DuplicateDetectionHistoryTimeWindow"
    )
    max_message_size_in_kilobytes: int = Field(
        256, alias="MaxMessageSizeInKilobytes", ge=1, le=102400
    )

    @field_validator("default_message_time_to_live", "duplicate_detection_history_time_window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be greater than 0")
        return value

    @property
    def time_to_live_is_infinite(self) -> bool:
        """Whether ``DefaultMessageTimeToLive`` means "never expires"."""
        return self.default_message_time_to_live >= INFINITE


class _SqlExpression(ConfigModel):
    sql_expression: str = Field("", alias="SqlExpression")


def _filter_type(value: Any) -> Any:
    # The schema spells them "Sql" and "Correlation"; accept any case.
    if isinstance(value, str):
        return {"sql": "Sql", "correlation": "Correlation"}.get(value.lower(), value)
    return value


class RuleProperties(ConfigModel):
    """A rule's ``Properties``: ``FilterType`` with its filter, and an optional ``Action``.

    Filters: https://learn.microsoft.com/azure/service-bus-messaging/topic-filters.
    """

    filter_type: Annotated[Literal["Sql", "Correlation"], BeforeValidator(_filter_type)] = Field(
        alias="FilterType"
    )
    sql_filter: _SqlExpression | None = Field(None, alias="SqlFilter")
    correlation_filter: dict[str, Any] | None = Field(None, alias="CorrelationFilter")
    action: _SqlExpression | None = Field(None, alias="Action")


class RuleConfig(ConfigModel):
    """One rule, compiled when the configuration is read (see :attr:`rule`)."""

    name: str = Field(alias="Name")
    properties: RuleProperties = Field(alias="Properties")
    _rule: Rule = PrivateAttr()

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if value != "$Default" and not _CHILD_NAME.match(value):
            raise ValueError(f"invalid rule name {value!r}: 1-50 letters, digits, '.', '-', '_'")
        return value

    @model_validator(mode="after")
    def _compile(self) -> RuleConfig:
        props = self.properties
        rule_filter: RuleFilter
        try:
            if props.filter_type == "Sql":
                if props.sql_filter is None or not props.sql_filter.sql_expression.strip():
                    raise ValueError("FilterType Sql needs SqlFilter.SqlExpression")
                rule_filter = SqlFilter(props.sql_filter.sql_expression)
            else:
                if not props.correlation_filter:
                    raise ValueError("FilterType Correlation needs a non-empty CorrelationFilter")
                rule_filter = CorrelationFilter.from_config(props.correlation_filter)
            action = None
            if props.action is not None and props.action.sql_expression.strip():
                action = SqlRuleAction(props.action.sql_expression)
        except RuleSyntaxError as exc:  # a ValueError whose text is one line
            raise ValueError(str(exc)) from None
        self._rule = Rule(self.name, rule_filter, action)
        return self

    @property
    def rule(self) -> Rule:
        """The compiled rule."""
        return self._rule


class SubscriptionProperties(_ReceivableProperties):
    """A subscription's ``Properties``: as a queue's, plus what to do when a filter fails.

    ``DeadLetteringOnFilterEvaluationExceptions`` (ARM and JavaScript name;
    ``EnableDeadLetteringOnFilterEvaluationExceptions`` in .NET) defaults to true as in
    Azure (https://learn.microsoft.com/dotnet/api/azure.messaging.servicebus.administration.subscriptionproperties.enabledeadletteringonfilterevaluationexceptions):
    the message is dead-lettered in the subscription; when false it is dropped for it.
    """

    dead_lettering_on_filter_evaluation_exceptions: bool = Field(
        True,
        alias="DeadLetteringOnFilterEvaluationExceptions",
        validation_alias=AliasChoices(
            "DeadLetteringOnFilterEvaluationExceptions",
            "EnableDeadLetteringOnFilterEvaluationExceptions",
            "dead_lettering_on_filter_evaluation_exceptions",
        ),
    )


class SubscriptionConfig(ConfigModel):
    """One subscription; with no ``Rules`` it gets ``$Default`` (the true filter)."""

    name: str = Field(alias="Name")
    properties: SubscriptionProperties = Field(
        default_factory=SubscriptionProperties, alias="Properties"
    )
    rule_configs: tuple[RuleConfig, ...] = Field((), alias="Rules")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _CHILD_NAME.match(value):
            raise ValueError(
                f"invalid subscription name {value!r}: 1-50 letters, digits, '.', '-', '_'"
            )
        return value

    @field_validator("rule_configs")
    @classmethod
    def _unique_rules(cls, value: tuple[RuleConfig, ...]) -> tuple[RuleConfig, ...]:
        seen: set[str] = set()
        for rule in value:
            if rule.name.lower() in seen:
                raise ValueError(f"duplicate rule name {rule.name!r}")
            seen.add(rule.name.lower())
        return value

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The compiled rules, or ``($Default,)`` when none is configured."""
        return tuple(r.rule for r in self.rule_configs) or (default_rule(),)


class TopicConfig(ConfigModel):
    """One topic and its subscriptions (names unique within the topic, case-insensitively)."""

    name: str = Field(alias="Name")
    properties: TopicProperties = Field(default_factory=TopicProperties, alias="Properties")
    subscriptions: tuple[SubscriptionConfig, ...] = Field((), alias="Subscriptions")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _entity_name("topic", value)

    @field_validator("subscriptions")
    @classmethod
    def _unique_subscriptions(
        cls, value: tuple[SubscriptionConfig, ...]
    ) -> tuple[SubscriptionConfig, ...]:
        seen: set[str] = set()
        for subscription in value:
            if subscription.name.lower() in seen:
                raise ValueError(f"duplicate subscription name {subscription.name!r}")
            seen.add(subscription.name.lower())
        return value
