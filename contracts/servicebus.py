"""Mapping between envelopes and Service Bus messages, in either CloudEvents content mode.

* **Structured mode** (default): the whole CloudEvent is the body, content type
  ``application/cloudevents+json; charset=utf-8`` (CloudEvents AMQP protocol binding,
  section 3.2; JSON event format, section 3).
* **Binary mode**: ``data`` is the body, ``datacontenttype`` is the AMQP ``content-type``,
  and every other attribute is an application property named ``cloudEvents:<attribute>``
  (AMQP protocol binding, sections 3.1.1-3.1.3,
  https://github.com/cloudevents/spec/blob/main/cloudevents/bindings/amqp-protocol-binding.md).
  ``time`` travels as a native AMQP timestamp (whole milliseconds). Readers also accept the
  ``cloudEvents_`` prefix of binding version 1.0.2.

In both modes the Service Bus properties are set from the envelope (``message_id`` = event
id, ``subject`` = event type, ``correlation_id``, scheduled enqueue time from a
notification's ``deliver_at``), plus application properties ``eventType`` and
``schemaVersion`` that subscription filters and tools can read without parsing the body.
Service Bus message properties:
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messages-payloads
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, cast

from azure.servicebus import ServiceBusMessage
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.amqp import AmqpMessageBodyType

from contracts.envelope import EventEnvelope, NotificationEnvelope
from contracts.errors import ContractViolation, DeadLetterReason, MessageTooLarge
from contracts.parsing import parse_binary, parse_envelope

CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"
"""Content type of a structured-mode CloudEvent (CloudEvents JSON format, section 3)."""
STRUCTURED_CONTENT_TYPE: Final = CONTENT_TYPE
CLOUDEVENTS_PROPERTY_PREFIX: Final = "cloudEvents:"
"""Prefix of CloudEvents attributes in application properties (binary mode)."""
_ACCEPTED_PREFIXES: Final = (CLOUDEVENTS_PROPERTY_PREFIX, "cloudEvents_")
_CLOUDEVENTS_MEDIA_TYPE: Final = "application/cloudevents"
_JSON_MEDIA_TYPES: Final = ("application/json", "application/cloudevents+json")

EVENT_TYPE_PROPERTY: Final = "eventType"
SCHEMA_VERSION_PROPERTY: Final = "schemaVersion"

STANDARD_TIER_MAX_MESSAGE_SIZE: Final = 256 * 1024
"""Largest message (body, system and application properties) a Standard-tier namespace
accepts, in bytes (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-quotas)."""
PREMIUM_TIER_MAX_MESSAGE_SIZE: Final = 100 * 1024 * 1024
"""Largest message a Premium-tier namespace can be configured to accept, in bytes."""
MIN_TIME_TO_LIVE: Final = timedelta(seconds=1)
"""Shortest per-message time to live: the SDK keeps whole seconds only, so less is lost."""
MAX_TIME_TO_LIVE: Final = timedelta(seconds=(2**32 - 1) // 1000)
"""Longest per-message time to live the AMQP header's ``ttl`` (a uint of milliseconds,
AMQP 1.0 messaging section 3.2.1) can carry: 4,294,967 s, about 49.7 days. Set longer
lifetimes on the queue (``DefaultMessageTimeToLive``) instead."""


class ContentMode(StrEnum):
    """CloudEvents content mode of a message (AMQP protocol binding, section 1.3)."""

    STRUCTURED = "structured"
    BINARY = "binary"


_STRUCTURED_HEADROOM: Final = 8 * 1024
"""Bytes a structured message can add around its body, with margin (properties, framing).

Bodies are bounded by ``4 * len(body)`` (UTF-8 needs at most four bytes per character)."""


def to_servicebus_message(
    envelope: EventEnvelope,
    *,
    mode: ContentMode = ContentMode.STRUCTURED,
    session_id: str | None = None,
    time_to_live: timedelta | None = None,
    max_size: int = STANDARD_TIER_MAX_MESSAGE_SIZE,
) -> ServiceBusMessage:
    """Build the Service Bus message for an envelope.

    Args:
        envelope: The event to send.
        mode: Structured (default: the body is the whole CloudEvent) or binary (the body
            is ``data``, attributes are ``cloudEvents:``-prefixed application properties).
        session_id: Session for ordered processing on a session-enabled queue (at most
            128 characters); messages of one session are delivered in order to one
            receiver at a time.
        time_to_live: How long the message may wait in the queue before it expires,
            from 1 s to :data:`MAX_TIME_TO_LIVE`; the SDK sends whole seconds (fractions
            are dropped). Omitted: the queue's default (which also caps it).
        max_size: Largest encoded message accepted, in bytes; the Standard tier's 256 KB
            by default (use :data:`PREMIUM_TIER_MAX_MESSAGE_SIZE` or the queue's configured
            maximum on Premium).

    Returns:
        The message: ``message_id`` is the event id (so duplicate detection drops
        re-sends), ``subject`` the event type, ``correlation_id`` the envelope's
        ``correlationid``, ``scheduled_enqueue_time_utc`` a notification's ``deliver_at``.

    Raises:
        MessageTooLarge: the AMQP-encoded message (body and properties, as the SDK sends
            it) is larger than ``max_size``.
        ValueError: ``time_to_live`` is outside 1 s to :data:`MAX_TIME_TO_LIVE`.
    """
    if time_to_live is not None and not MIN_TIME_TO_LIVE <= time_to_live <= MAX_TIME_TO_LIVE:
        raise ValueError(
            f"time_to_live must be from {MIN_TIME_TO_LIVE} to {MAX_TIME_TO_LIVE} "
            f"(AMQP ttl is a 32-bit count of milliseconds), got {time_to_live}"
        )
    properties: dict[str | bytes, str | datetime] = {
        EVENT_TYPE_PROPERTY: envelope.type,
        SCHEMA_VERSION_PROPERTY: envelope.schemaversion,
    }
    if mode is ContentMode.BINARY:
        attributes = envelope.model_dump(exclude={"data", "datacontenttype"}, exclude_none=True)
        for name, value in attributes.items():
            properties[f"{CLOUDEVENTS_PROPERTY_PREFIX}{name}"] = value
        body = envelope.data.model_dump_json(exclude_none=True)
        content_type: str = envelope.datacontenttype
    else:
        body = envelope.model_dump_json(exclude_none=True)
        content_type = STRUCTURED_CONTENT_TYPE
    scheduled = envelope.data.deliver_at if isinstance(envelope, NotificationEnvelope) else None
    message = ServiceBusMessage(
        body,
        message_id=envelope.id,
        subject=envelope.type,
        content_type=content_type,
        correlation_id=envelope.correlationid,
        session_id=session_id,
        time_to_live=time_to_live,
        scheduled_enqueue_time_utc=scheduled,
        # The SDK's AMQP encoder writes a datetime as an AMQP timestamp, which is what the
        # binding asks for; its type hints just do not list datetime.
        application_properties=cast(dict[str | bytes, Any], properties),
    )
    # Measuring means AMQP-encoding the whole message, which costs about as much as
    # building it (and the batch encodes it again when sending). In structured mode
    # everything outside the body is bounded by the envelope's constraints (ids and
    # correlation id at most 128 characters), so a body this far below the limit cannot
    # push the message over it; only messages near the limit are measured.
    if mode is not ContentMode.STRUCTURED or len(body) * 4 + _STRUCTURED_HEADROOM > max_size:
        size = encoded_size(message)
        if size > max_size:
            raise MessageTooLarge(envelope.id, size, max_size)
    return message


def encoded_size(message: ServiceBusMessage) -> int:
    """Size of the message as AMQP puts it on the wire, in bytes.

    Uses the SDK's own encoder (the one ``ServiceBusMessageBatch`` measures with), so the
    number includes the body, the system properties and the application properties.
    """
    amqp_message = PyamqpTransport.to_outgoing_amqp_message(message.raw_amqp_message)
    return PyamqpTransport.get_message_encoded_size(amqp_message)


def from_servicebus_message(message: ServiceBusMessage) -> EventEnvelope:
    """Read the envelope from a message, in either content mode.

    The mode is chosen as the AMQP binding (section 3) says: a content type starting with
    ``application/cloudevents`` is structured; otherwise application properties with the
    ``cloudEvents:`` (or ``cloudEvents_``) prefix mean binary. A message with neither but a
    JSON (or no) content type is read as a structured body, as earlier versions sent.

    Args:
        message: A received message (``ServiceBusReceivedMessage``); an outgoing
            ``ServiceBusMessage`` is read the same way.

    Raises:
        ContractViolation: ``UnsupportedContentType`` (not JSON, or a CloudEvents format
            other than JSON), ``InvalidJson`` (body not UTF-8 JSON, or not an AMQP data
            body), or any reason of :func:`contracts.parsing.parse_envelope`.
    """
    content_type = message.content_type or ""
    media_type = content_type.split(";")[0].strip().lower()
    body = _body_bytes(message)
    attributes = _cloudevents_attributes(message.application_properties or {})
    if media_type.startswith(_CLOUDEVENTS_MEDIA_TYPE) or not attributes:
        if media_type and media_type not in _JSON_MEDIA_TYPES:
            raise ContractViolation(
                DeadLetterReason.UNSUPPORTED_CONTENT_TYPE,
                f"content type {content_type!r} is not JSON",
            )
        return parse_envelope(body)
    if media_type and media_type != "application/json":
        raise ContractViolation(
            DeadLetterReason.UNSUPPORTED_CONTENT_TYPE,
            f"binary-mode datacontenttype {content_type!r} is not application/json",
        )
    return parse_binary(attributes, body)


def _body_bytes(message: ServiceBusMessage) -> bytes:
    body_type = message.body_type
    if body_type == AmqpMessageBodyType.DATA:
        return b"".join(message.body)
    body = message.body
    if body_type == AmqpMessageBodyType.VALUE and isinstance(body, bytes | str):
        return body.encode() if isinstance(body, str) else body
    raise ContractViolation(
        DeadLetterReason.INVALID_JSON,
        f"body: an AMQP {body_type.value} body section, not JSON text",
    )


def _cloudevents_attributes(properties: Mapping[str | bytes, object]) -> dict[str, object]:
    """CloudEvents attributes from application properties, decoded to Python values."""
    found: dict[str, object] = {}
    for raw_key, raw_value in properties.items():
        key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else raw_key
        prefix = next((p for p in _ACCEPTED_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            continue
        name = key[len(prefix) :]
        if name in found and prefix != CLOUDEVENTS_PROPERTY_PREFIX:
            continue  # the spec's current prefix wins over the legacy one
        found[name] = _decode_value(key, name, raw_value)
    return found


def _decode_value(key: str, name: str, value: object) -> object:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ContractViolation(
                DeadLetterReason.SCHEMA_VALIDATION_FAILED, f"{key}: not UTF-8 text"
            ) from None
    if name == "time" and isinstance(value, int) and not isinstance(value, bool):
        # AMQP timestamp: milliseconds since the Unix epoch (AMQP 1.0 types, 1.6.23).
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ContractViolation(
                DeadLetterReason.SCHEMA_VALIDATION_FAILED, f"{key}: timestamp out of range"
            ) from None
    return value


__all__ = [
    "CLOUDEVENTS_PROPERTY_PREFIX",
    "CONTENT_TYPE",
    "EVENT_TYPE_PROPERTY",
    "MAX_TIME_TO_LIVE",
    "MIN_TIME_TO_LIVE",
    "PREMIUM_TIER_MAX_MESSAGE_SIZE",
    "SCHEMA_VERSION_PROPERTY",
    "STANDARD_TIER_MAX_MESSAGE_SIZE",
    "STRUCTURED_CONTENT_TYPE",
    "ContentMode",
    "MessageTooLarge",
    "encoded_size",
    "from_servicebus_message",
    "to_servicebus_message",
]
