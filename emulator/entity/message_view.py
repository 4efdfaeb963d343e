"""A stored message as the rule engine sees it, and a rule action's changes written back.

System property names are those of :mod:`emulator.rules.message` (``BrokeredMessage``
names); they map onto AMQP fields as
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide#message-properties
lists them: ``properties`` fields, ``header.ttl`` and the ``x-opt-*`` message annotations.
Application properties keep their AMQP types unless an action changed them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from proton import symbol, timestamp

from emulator.codec import (
    X_OPT_PARTITION_KEY,
    X_OPT_SCHEDULED_ENQUEUE_TIME,
    Header,
    MessageContent,
)
from emulator.rules import MessageView

__all__ = ["apply_view", "message_view"]

_X_OPT_VIA_PARTITION_KEY = symbol("x-opt-via-partition-key")

#: ``properties`` field index -> system property.
_PROPERTY_FIELDS = {
    0: "MessageId",
    2: "To",
    3: "Label",
    4: "ReplyTo",
    5: "CorrelationId",
    6: "ContentType",
    10: "SessionId",
    12: "ReplyToSessionId",
}
_ANNOTATIONS = {
    "PartitionKey": X_OPT_PARTITION_KEY,
    "ViaPartitionKey": _X_OPT_VIA_PARTITION_KEY,
}


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000.0, UTC)


def _plain(value: Any) -> Any:
    """An application property value as rules compare it."""
    if isinstance(value, timestamp):
        return _from_ms(value)
    if isinstance(value, symbol):
        return str(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def _amqp(value: Any) -> Any:
    """A value an action set, as an AMQP application property value."""
    if isinstance(value, datetime):
        return timestamp(round(value.timestamp() * 1000))
    if isinstance(value, timedelta):
        # AMQP has no duration type; .NET clients send TimeSpan as ticks (100 ns).
        return round(value.total_seconds() * 10_000_000)
    return value


def message_view(content: MessageContent, now: float) -> MessageView:
    """The view of ``content`` arriving at a topic at ``now`` (seconds since the epoch)."""
    system: dict[str, object] = {}
    fields = content.properties or ()
    for index, name in _PROPERTY_FIELDS.items():
        if index < len(fields) and fields[index] is not None:
            system[name] = _text(fields[index])
    if content.header.ttl_ms:
        system["TimeToLive"] = timedelta(milliseconds=content.header.ttl_ms)
    for name, key in _ANNOTATIONS.items():
        if content.annotations.get(key) is not None:
            system[name] = _text(content.annotations[key])
    scheduled_ms = content.scheduled_enqueue_time_ms
    if scheduled_ms is not None:
        system["ScheduledEnqueueTimeUtc"] = _from_ms(scheduled_ms)
    system["EnqueuedTimeUtc"] = datetime.fromtimestamp(now, UTC)
    system["DeliveryCount"] = 0
    system["Size"] = content.encoded_size
    user = {str(k): _plain(v) for k, v in content.application_properties_dict().items()}
    return MessageView(system, user)


def _system_changes(content: MessageContent, before: MessageView, after: MessageView) -> Any:
    fields = list(content.properties or (None,) * 13)
    annotations = dict(content.annotations)
    header = content.header
    for index, name in _PROPERTY_FIELDS.items():
        value = after.system.get(name)
        if value != before.system.get(name):
            if name == "ContentType" and value is not None:
                value = symbol(str(value))
            elif name == "MessageId" and value is not None:
                value = str(value)
            fields[index] = value
    for name, key in _ANNOTATIONS.items():
        value = after.system.get(name)
        if value != before.system.get(name):
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = str(value)
    scheduled = after.system.get("ScheduledEnqueueTimeUtc")
    if scheduled != before.system.get("ScheduledEnqueueTimeUtc"):
        if isinstance(scheduled, datetime):
            annotations[X_OPT_SCHEDULED_ENQUEUE_TIME] = timestamp(
                round(scheduled.timestamp() * 1000)
            )
        else:
            annotations.pop(X_OPT_SCHEDULED_ENQUEUE_TIME, None)
    ttl = after.system.get("TimeToLive")
    if ttl != before.system.get("TimeToLive"):
        ttl_ms = round(ttl.total_seconds() * 1000) if isinstance(ttl, timedelta) else None
        header = Header(
            durable=header.durable,
            priority=header.priority,
            ttl_ms=ttl_ms if ttl_ms else None,
            first_acquirer=header.first_acquirer,
        )
    return replace(content, properties=tuple(fields), annotations=annotations, header=header)


def apply_view(content: MessageContent, before: MessageView, after: MessageView) -> MessageContent:
    """``content`` with the differences between ``before`` (from :func:`message_view`) and
    ``after`` (what a rule action returned) written back.

    Unchanged application properties keep their AMQP types; a property set to ``NULL`` is
    left out (AMQP application properties may hold null, but the copy stays simple).
    """
    if after.system != before.system:
        content = _system_changes(content, before, after)
    if after.user != before.user:
        raw = content.application_properties_dict()
        raw_by_name = {str(k): v for k, v in raw.items()}
        updated: dict[str, Any] = {}
        for name, value in after.user.items():
            if name in before.user and before.user[name] is value and name in raw_by_name:
                updated[name] = raw_by_name[name]
            else:
                updated[name] = _amqp(value)
        content = replace(content, application_properties=None).with_application_properties(updated)
    return content
