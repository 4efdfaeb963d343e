"""Reading the ATOM bodies clients ``PUT``: entity descriptions into ``Config.json`` models,
rule descriptions into :class:`~emulator.rules.Rule`.

A description names only the properties the client sets (a create) or every property it
read (an update, which sends back what ``GET`` returned): read-only and unsupported ones
(counts, times, ``EnablePartitioning``, ``AutoDeleteOnIdle`` ...) are ignored. Forwarding
targets arrive as absolute URIs (``sb://host/queue``) and become entity paths.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import unquote, urlsplit

from emulator.admin.atom import ATOM_NS, SB_NS, XSI_NS, decode_typed
from emulator.config import QueueConfig, SubscriptionConfig, TopicConfig
from emulator.errors import ArgumentError
from emulator.rules import (
    DEFAULT_RULE_NAME,
    CorrelationFilter,
    FalseFilter,
    Rule,
    RuleFilter,
    SqlFilter,
    SqlRuleAction,
    TrueFilter,
)

__all__ = [
    "parse_description",
    "parse_queue",
    "parse_rule",
    "parse_subscription",
    "parse_topic",
]

_TYPE = f"{{{XSI_NS}}}type"
_QUEUE_FIELDS = frozenset(
    {
        "LockDuration",
        "RequiresDuplicateDetection",
        "RequiresSession",
        "DefaultMessageTimeToLive",
        "DeadLetteringOnMessageExpiration",
        "DuplicateDetectionHistoryTimeWindow",
        "MaxDeliveryCount",
        "ForwardTo",
        "ForwardDeadLetteredMessagesTo",
        "MaxMessageSizeInKilobytes",
    }
)
_TOPIC_FIELDS = frozenset(
    {
        "DefaultMessageTimeToLive",
        "RequiresDuplicateDetection",
        "DuplicateDetectionHistoryTimeWindow",
        "MaxMessageSizeInKilobytes",
    }
)
_SUBSCRIPTION_FIELDS = frozenset(
    {
        "LockDuration",
        "RequiresSession",
        "DefaultMessageTimeToLive",
        "DeadLetteringOnMessageExpiration",
        "DeadLetteringOnFilterEvaluationExceptions",
        "MaxDeliveryCount",
        "ForwardTo",
        "ForwardDeadLetteredMessagesTo",
    }
)
_CORRELATION_FIELDS = {
    "CorrelationId": "correlation_id",
    "MessageId": "message_id",
    "To": "to",
    "ReplyTo": "reply_to",
    "Label": "subject",
    "SessionId": "session_id",
    "ReplyToSessionId": "reply_to_session_id",
    "ContentType": "content_type",
}


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_description(body: bytes) -> ET.Element:
    """The description inside an ATOM ``entry``'s ``content`` (or a bare description).

    Raises:
        ArgumentError: not XML, or no description.
    """
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ArgumentError(f"The request body is not valid XML: {exc}") from None
    if root.tag == f"{{{ATOM_NS}}}entry":
        content = root.find(f"{{{ATOM_NS}}}content")
        if content is None or len(content) == 0:
            raise ArgumentError("The ATOM entry has no content.")
        return content[0]
    return root


def _entity_path(text: str) -> str:
    return unquote(urlsplit(text).path).strip("/") if "://" in text else text.strip("/")


def _properties(element: ET.Element, allowed: frozenset[str]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for child in element:
        name = _local(child.tag)
        if name not in allowed:
            continue
        text = (child.text or "").strip()
        if name.startswith("Forward"):
            props[name] = _entity_path(text) if text else None
        elif text:
            props[name] = text
    return props


def parse_queue(name: str, element: ET.Element) -> QueueConfig:
    """A ``QueueDescription`` as a queue definition.

    Raises:
        pydantic.ValidationError: an invalid name or property value.
    """
    return QueueConfig.model_validate(
        {"Name": name, "Properties": _properties(element, _QUEUE_FIELDS)}
    )


def parse_topic(name: str, element: ET.Element) -> TopicConfig:
    """A ``TopicDescription`` as a topic definition (no subscriptions).

    Raises:
        pydantic.ValidationError: an invalid name or property value.
    """
    return TopicConfig.model_validate(
        {"Name": name, "Properties": _properties(element, _TOPIC_FIELDS)}
    )


def parse_subscription(name: str, element: ET.Element) -> tuple[SubscriptionConfig, Rule | None]:
    """A ``SubscriptionDescription`` as a subscription definition, and the rule its
    ``DefaultRuleDescription`` gives instead of ``$Default``, if any.

    Raises:
        pydantic.ValidationError: an invalid name or property value.
        ArgumentError: a malformed default rule.
        emulator.rules.RuleSyntaxError: a default rule whose SQL does not parse.
    """
    config = SubscriptionConfig.model_validate(
        {"Name": name, "Properties": _properties(element, _SUBSCRIPTION_FIELDS)}
    )
    default = element.find(f"{{{SB_NS}}}DefaultRuleDescription")
    if default is None:
        return config, None
    rule_name = (default.findtext(f"{{{SB_NS}}}Name") or DEFAULT_RULE_NAME).strip()
    return config, parse_rule(rule_name, default)


def _key_values(parent: ET.Element | None) -> dict[str, object]:
    values: dict[str, object] = {}
    if parent is None:
        return values
    for item in parent.findall(f"{{{SB_NS}}}KeyValueOfstringanyType"):
        key = item.findtext(f"{{{SB_NS}}}Key") or ""
        value = item.find(f"{{{SB_NS}}}Value")
        if value is None:
            raise ArgumentError(f"The key/value {key!r} has no Value.")
        try:
            values[key] = decode_typed(value.get(_TYPE, "string"), value.text or "")
        except ValueError as exc:
            raise ArgumentError(f"The value of {key!r}: {exc}") from None
    return values


def _rule_filter(element: ET.Element | None) -> RuleFilter:
    if element is None:
        return TrueFilter()
    kind = element.get(_TYPE, "SqlFilter").rpartition(":")[2]
    if kind == "TrueFilter":
        return TrueFilter()
    if kind == "FalseFilter":
        return FalseFilter()
    if kind == "CorrelationFilter":
        fields: dict[str, Any] = {}
        for child in element:
            field = _CORRELATION_FIELDS.get(_local(child.tag))
            if field is not None and child.text is not None:
                fields[field] = child.text
        properties = _key_values(element.find(f"{{{SB_NS}}}Properties"))
        return CorrelationFilter(**fields, properties=properties)
    if kind != "SqlFilter":
        raise ArgumentError(f"Unsupported filter type {kind!r}.")
    expression = element.findtext(f"{{{SB_NS}}}SqlExpression") or ""
    if not expression.strip():
        raise ArgumentError("A SqlFilter needs a SqlExpression.")
    parameters = _key_values(element.find(f"{{{SB_NS}}}Parameters"))
    return SqlFilter(expression, parameters)


def parse_rule(name: str, element: ET.Element) -> Rule:
    """A ``RuleDescription`` as a compiled rule named ``name``.

    Raises:
        ArgumentError: an unsupported filter or action type, or a malformed value.
        emulator.rules.RuleSyntaxError: SQL that does not parse (position and reason).
    """
    rule_filter = _rule_filter(element.find(f"{{{SB_NS}}}Filter"))
    action_element = element.find(f"{{{SB_NS}}}Action")
    action = None
    if action_element is not None:
        kind = action_element.get(_TYPE, "EmptyRuleAction").rpartition(":")[2]
        if kind == "SqlRuleAction":
            expression = action_element.findtext(f"{{{SB_NS}}}SqlExpression") or ""
            parameters = _key_values(action_element.find(f"{{{SB_NS}}}Parameters"))
            if expression.strip():
                action = SqlRuleAction(expression, parameters)
        elif kind != "EmptyRuleAction":
            raise ArgumentError(f"Unsupported action type {kind!r}.")
    return Rule(name, rule_filter, action)
