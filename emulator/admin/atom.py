"""ATOM XML as Service Bus's administration API writes it: entries, feeds and errors.

Shapes follow https://learn.microsoft.com/rest/api/servicebus/ (queues, topics,
subscriptions, rules) and what ``azure-servicebus``'s administration client reads: an ATOM
``entry`` whose ``content`` holds a ``QueueDescription`` / ``TopicDescription`` /
``SubscriptionDescription`` / ``RuleDescription`` in the
``http://schemas.microsoft.com/netservices/2010/10/servicebus/connect`` namespace, message
counts in ``CountDetails`` (``.../2011/06/servicebus`` namespace), typed key/values as
``KeyValueOfstringanyType`` with ``i:type="d6p1:<xs type>"``.

Written as text rather than with ``xml.etree``: Azure declares a default namespace per
element (ATOM on the entry, Service Bus on the description), which ElementTree cannot
express, and clients that match unprefixed names (the JavaScript SDK) need exactly that.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from emulator.config import QueueConfig, SubscriptionConfig, TopicConfig
from emulator.durations import INFINITE, format_duration, parse_duration
from emulator.rules import CorrelationFilter, FalseFilter, Rule, SqlFilter, TrueFilter

__all__ = [
    "ATOM_NS",
    "SB_NS",
    "XSI_NS",
    "Counts",
    "decode_typed",
    "encode_typed",
    "entry",
    "error",
    "feed",
    "namespace_info",
    "queue_description",
    "rule_description",
    "subscription_description",
    "topic_description",
]

ATOM_NS = "http://www.w3.org/2005/Atom"
SB_NS = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_COUNTS_NS = "http://schemas.microsoft.com/netservices/2011/06/servicebus"
_XS_NS = "http://www.w3.org/2001/XMLSchema"
#: ``TimeSpan.MaxValue`` as Azure writes it for "never".
_INFINITE_TEXT = "P10675199DT2H48M5.4775807S"
#: Service Bus reports these sizes for a Standard namespace.
_MAX_SIZE_MB = 1024


@dataclass(frozen=True, slots=True)
class Counts:
    """An entity's runtime counts (``MessageCountDetails``); sizes in bytes."""

    active: int = 0
    dead_letter: int = 0
    scheduled: int = 0
    size: int = 0

    @property
    def total(self) -> int:
        """``MessageCount``: every message, dead-lettered ones included."""
        return self.active + self.dead_letter + self.scheduled


def _time(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _duration(value: datetime.timedelta) -> str:
    return _INFINITE_TEXT if value >= INFINITE else format_duration(value)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _fields(pairs: Iterable[tuple[str, object]]) -> str:
    out = []
    for name, value in pairs:
        if value is None:
            continue
        if isinstance(value, bool):
            text = _bool(value)
        elif isinstance(value, datetime.timedelta):
            text = _duration(value)
        else:
            text = escape(str(value))
        out.append(f"<{name}>{text}</{name}>")
    return "".join(out)


def encode_typed(value: object) -> tuple[str, str]:
    """``(XML schema type, text)`` of a rule parameter or correlation property value.

    Raises:
        ValueError: a type Service Bus does not carry.
    """
    if isinstance(value, bool):
        return "boolean", _bool(value)
    if isinstance(value, int):
        return ("int" if -(2**31) <= value < 2**31 else "long"), str(value)
    if isinstance(value, float):
        return "double", repr(value)
    if isinstance(value, str):
        return "string", value
    if isinstance(value, datetime.datetime):
        return "dateTime", value.isoformat()
    if isinstance(value, datetime.timedelta):
        return "duration", format_duration(value)
    raise ValueError(f"unsupported value type {type(value).__name__}")


def decode_typed(kind: str, text: str) -> object:
    """The value of a ``KeyValueOfstringanyType`` of XML schema type ``kind``.

    Raises:
        ValueError: unknown type or malformed text.
    """
    kind = kind.rpartition(":")[2]
    if kind in ("int", "long", "short", "byte", "unsignedInt", "unsignedLong"):
        return int(text)
    if kind in ("double", "float", "decimal"):
        return float(text)
    if kind == "boolean":
        return text.strip().lower() == "true"
    if kind == "string":
        return text
    if kind == "dateTime":
        return datetime.datetime.fromisoformat(text)
    if kind == "duration":
        return parse_duration(text)
    raise ValueError(f"unsupported value type {kind!r}")


def _key_values(tag: str, values: Mapping[str, object]) -> str:
    if not values:
        return ""
    items = []
    for key, value in values.items():
        kind, text = encode_typed(value)
        items.append(
            f"<KeyValueOfstringanyType><Key>{escape(key)}</Key>"
            f'<Value i:type="d6p1:{kind}" xmlns:d6p1="{_XS_NS}">{escape(text)}</Value>'
            "</KeyValueOfstringanyType>"
        )
    return f"<{tag}>{''.join(items)}</{tag}>"


def _counts(counts: Counts) -> str:
    return (
        f'<CountDetails xmlns:d2p1="{_COUNTS_NS}">'
        f"<d2p1:ActiveMessageCount>{counts.active}</d2p1:ActiveMessageCount>"
        f"<d2p1:DeadLetterMessageCount>{counts.dead_letter}</d2p1:DeadLetterMessageCount>"
        f"<d2p1:ScheduledMessageCount>{counts.scheduled}</d2p1:ScheduledMessageCount>"
        "<d2p1:TransferMessageCount>0</d2p1:TransferMessageCount>"
        "<d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount>"
        "</CountDetails>"
    )


def _description(tag: str, body: str) -> str:
    return f'<{tag} xmlns="{SB_NS}" xmlns:i="{XSI_NS}">{body}</{tag}>'


def _forward(base: str, target: str | None) -> str | None:
    # Azure reports forwarding targets as absolute URIs.
    return None if not target else f"{base.replace('https://', 'sb://', 1)}/{target}"


def queue_description(
    config: QueueConfig, counts: Counts, created: float, updated: float, base: str
) -> str:
    """A ``QueueDescription``; ``base`` is ``https://host:port``."""
    p = config.properties
    times = [("CreatedAt", _time(created)), ("UpdatedAt", _time(updated))]
    body = _fields(
        [
            ("LockDuration", p.lock_duration),
            ("MaxSizeInMegabytes", _MAX_SIZE_MB),
            ("RequiresDuplicateDetection", p.requires_duplicate_detection),
            ("RequiresSession", p.requires_session),
            ("DefaultMessageTimeToLive", p.default_message_time_to_live),
            ("DeadLetteringOnMessageExpiration", p.dead_lettering_on_message_expiration),
            ("DuplicateDetectionHistoryTimeWindow", p.duplicate_detection_history_time_window),
            ("MaxDeliveryCount", p.max_delivery_count),
            ("EnableBatchedOperations", True),
            ("SizeInBytes", counts.size),
            ("MessageCount", counts.total),
            ("IsAnonymousAccessible", False),
            ("Status", "Active"),
            ("ForwardTo", _forward(base, p.forward_to)),
            *times,
            ("AccessedAt", _time(updated)),
            ("SupportOrdering", True),
        ]
    )
    body += _counts(counts)
    body += _fields(
        [
            ("AutoDeleteOnIdle", INFINITE),
            ("EnablePartitioning", False),
            ("EntityAvailabilityStatus", "Available"),
            ("EnableExpress", False),
            ("ForwardDeadLetteredMessagesTo", _forward(base, p.forward_dead_lettered_messages_to)),
            ("MaxMessageSizeInKilobytes", p.max_message_size_in_kilobytes),
        ]
    )
    return _description("QueueDescription", body)


def topic_description(
    config: TopicConfig, counts: Counts, subscriptions: int, created: float, updated: float
) -> str:
    """A ``TopicDescription`` with its number of subscriptions."""
    p = config.properties
    body = _fields(
        [
            ("DefaultMessageTimeToLive", p.default_message_time_to_live),
            ("MaxSizeInMegabytes", _MAX_SIZE_MB),
            ("RequiresDuplicateDetection", p.requires_duplicate_detection),
            ("DuplicateDetectionHistoryTimeWindow", p.duplicate_detection_history_time_window),
            ("EnableBatchedOperations", True),
            ("SizeInBytes", counts.size),
            ("FilteringMessagesBeforePublishing", False),
            ("IsAnonymousAccessible", False),
            ("Status", "Active"),
            ("CreatedAt", _time(created)),
            ("UpdatedAt", _time(updated)),
            ("AccessedAt", _time(updated)),
            ("SupportOrdering", True),
        ]
    )
    body += _counts(counts)
    body += _fields(
        [
            ("SubscriptionCount", subscriptions),
            ("AutoDeleteOnIdle", INFINITE),
            ("EnablePartitioning", False),
            ("EntityAvailabilityStatus", "Available"),
            ("EnableSubscriptionPartitioning", False),
            ("EnableExpress", False),
            ("MaxMessageSizeInKilobytes", p.max_message_size_in_kilobytes),
        ]
    )
    return _description("TopicDescription", body)


def subscription_description(
    config: SubscriptionConfig, counts: Counts, created: float, updated: float, base: str
) -> str:
    """A ``SubscriptionDescription``."""
    p = config.properties
    body = _fields(
        [
            ("LockDuration", p.lock_duration),
            ("RequiresSession", p.requires_session),
            ("DefaultMessageTimeToLive", p.default_message_time_to_live),
            ("DeadLetteringOnMessageExpiration", p.dead_lettering_on_message_expiration),
            (
                "DeadLetteringOnFilterEvaluationExceptions",
                p.dead_lettering_on_filter_evaluation_exceptions,
            ),
            ("MessageCount", counts.total),
            ("MaxDeliveryCount", p.max_delivery_count),
            ("EnableBatchedOperations", True),
            ("Status", "Active"),
            ("ForwardTo", _forward(base, p.forward_to)),
            ("CreatedAt", _time(created)),
            ("UpdatedAt", _time(updated)),
            ("AccessedAt", _time(updated)),
        ]
    )
    body += _counts(counts)
    body += _fields(
        [
            ("ForwardDeadLetteredMessagesTo", _forward(base, p.forward_dead_lettered_messages_to)),
            ("AutoDeleteOnIdle", INFINITE),
            ("EntityAvailabilityStatus", "Available"),
        ]
    )
    return _description("SubscriptionDescription", body)


def _filter(rule: Rule) -> str:
    f = rule.filter
    if isinstance(f, CorrelationFilter):
        body = _fields(
            [
                ("CorrelationId", f.correlation_id),
                ("MessageId", f.message_id),
                ("To", f.to),
                ("ReplyTo", f.reply_to),
                ("Label", f.subject),
                ("SessionId", f.session_id),
                ("ReplyToSessionId", f.reply_to_session_id),
                ("ContentType", f.content_type),
            ]
        )
        body += _key_values("Properties", f.properties)
        return f'<Filter i:type="CorrelationFilter">{body}</Filter>'
    kind = {TrueFilter: "TrueFilter", FalseFilter: "FalseFilter"}.get(type(f), "SqlFilter")
    parameters = f.parameters if isinstance(f, SqlFilter) else {}
    return (
        f'<Filter i:type="{kind}"><SqlExpression>{escape(f.sql_expression)}</SqlExpression>'
        f"<CompatibilityLevel>20</CompatibilityLevel>{_key_values('Parameters', parameters)}"
        "</Filter>"
    )


def rule_description(rule: Rule, created: float) -> str:
    """A ``RuleDescription``: filter, action, creation time and name."""
    if rule.action is None:
        action = '<Action i:type="EmptyRuleAction"/>'
    else:
        action = (
            '<Action i:type="SqlRuleAction">'
            f"<SqlExpression>{escape(rule.action.sql_expression)}</SqlExpression>"
            "<CompatibilityLevel>20</CompatibilityLevel>"
            f"{_key_values('Parameters', rule.action.parameters)}</Action>"
        )
    body = f"{_filter(rule)}{action}<CreatedAt>{_time(created)}</CreatedAt>"
    body += f"<Name>{escape(rule.name)}</Name>"
    return _description("RuleDescription", body)


def namespace_info(name: str, created: float) -> str:
    """A ``NamespaceInfo`` (``get_namespace_properties``)."""
    body = _fields(
        [
            ("CreatedTime", _time(created)),
            ("MessagingSKU", "Standard"),
            ("ModifiedTime", _time(created)),
            ("Name", name),
            ("NamespaceType", "Messaging"),
        ]
    )
    return f'<NamespaceInfo xmlns="{SB_NS}" xmlns:i="{XSI_NS}">{body}</NamespaceInfo>'


def entry(uri: str, title: str, published: float, updated: float, content: str) -> str:
    """An ATOM ``entry`` around a description; ``uri`` is the entity's absolute URI."""
    return (
        f'<entry xmlns="{ATOM_NS}"><id>{escape(uri)}</id>'
        f'<title type="text">{escape(title)}</title>'
        f"<published>{_time(published)}</published><updated>{_time(updated)}</updated>"
        f'<author><name>sbemulatorns</name></author><link rel="self" href={quoteattr(uri)}/>'
        f'<content type="application/xml">{content}</content></entry>'
    )


def feed(uri: str, title: str, entries: Iterable[str], next_uri: str | None, now: float) -> str:
    """An ATOM ``feed``; the client reads a second ``link`` as the next page."""
    links = f'<link rel="self" href={quoteattr(uri)}/>'
    if next_uri is not None:
        links += f'<link rel="next" href={quoteattr(next_uri)}/>'
    return (
        f'<feed xmlns="{ATOM_NS}"><title type="text">{escape(title)}</title>'
        f"<id>{escape(uri)}</id><updated>{_time(now)}</updated>{links}{''.join(entries)}</feed>"
    )


def error(code: int, detail: str) -> str:
    """Service Bus's error body: ``<Error><Code>..</Code><Detail>..</Detail></Error>``."""
    return f"<Error><Code>{code}</Code><Detail>{escape(detail)}</Detail></Error>"
