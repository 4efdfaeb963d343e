"""Service Bus mapping: properties, both content modes, size limit, and a real broker trip."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage

from contracts import (
    AUDIT_EVENT_TYPE,
    AuditEvent,
    ContractViolation,
    DeadLetterReason,
    MessageTooLarge,
    NotificationEvent,
    new_envelope,
)
from contracts.servicebus import (
    MAX_TIME_TO_LIVE,
    PREMIUM_TIER_MAX_MESSAGE_SIZE,
    STANDARD_TIER_MAX_MESSAGE_SIZE,
    ContentMode,
    encoded_size,
    from_servicebus_message,
    to_servicebus_message,
)
from tests.conftest import NOTIFICATIONS_QUEUE
from tests.contracts.wire import as_received

AUDIT = AuditEvent.model_validate(
    {
        "actor": {"id": "u-1", "display_name": "Ada"},
        "action": "invoice.approve",
        "resource": {"type": "invoice", "id": "INV-1"},
        "outcome": "success",
        "occurred_at": "2026-11-21T10:00:00+01:00",
    }
)


def notification(**fields: object) -> NotificationEvent:
    return NotificationEvent.model_validate(
        {"channel": "email", "recipient": "a@example.com", "subject": "s", "body": "b", **fields}
    )


def test_binary_mode_maps_attributes_to_cloudevents_application_properties() -> None:
    envelope = new_envelope(AUDIT, source="/tests", subject="invoice/INV-1", correlationid="r-1")

    received = as_received(to_servicebus_message(envelope, mode=ContentMode.BINARY))

    assert received.content_type == "application/json"
    assert json.loads(b"".join(received.body)) == envelope.data.model_dump(
        mode="json", exclude_none=True
    )
    properties = received.application_properties or {}
    assert properties[b"cloudEvents:id"] == envelope.id.encode()
    assert properties[b"cloudEvents:type"] == AUDIT_EVENT_TYPE.encode()
    assert properties[b"cloudEvents:specversion"] == b"1.0"
    assert properties[b"cloudEvents:subject"] == b"invoice/INV-1"
    assert properties[b"cloudEvents:correlationid"] == b"r-1"
    assert properties[b"cloudEvents:schemaversion"] == b"1"
    # time is a native AMQP timestamp: milliseconds since the epoch.
    assert properties[b"cloudEvents:time"] == int(envelope.time.timestamp() * 1000)
    assert b"cloudEvents:datacontenttype" not in properties
    assert properties[b"eventType"] == AUDIT_EVENT_TYPE.encode()
    assert from_servicebus_message(received) == envelope


def test_legacy_underscore_prefix_and_string_time_are_read() -> None:
    envelope = new_envelope(AUDIT, source="/tests")
    message = ServiceBusMessage(
        envelope.data.model_dump_json(),
        content_type="application/json; charset=utf-8",
        application_properties={
            "cloudEvents_specversion": "1.0",
            "cloudEvents_id": envelope.id,
            "cloudEvents_source": "/tests",
            "cloudEvents_type": AUDIT_EVENT_TYPE,
            "cloudEvents_time": envelope.time.isoformat(),
        },
    )

    assert from_servicebus_message(as_received(message)) == envelope


def test_notification_deliver_at_becomes_the_scheduled_enqueue_time() -> None:
    deliver_at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    envelope = new_envelope(notification(deliver_at=deliver_at), source="/tests")

    message = to_servicebus_message(envelope, session_id="tenant-7", time_to_live=timedelta(days=3))

    assert message.scheduled_enqueue_time_utc == deliver_at
    received = as_received(message)
    assert received.scheduled_enqueue_time_utc == deliver_at
    assert received.session_id == "tenant-7"
    assert received.time_to_live == timedelta(days=3)


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(milliseconds=500), MAX_TIME_TO_LIVE * 2])
def test_unrepresentable_time_to_live_is_refused(ttl: timedelta) -> None:
    with pytest.raises(ValueError, match="time_to_live must be from"):
        to_servicebus_message(new_envelope(AUDIT, source="/t"), time_to_live=ttl)


@pytest.mark.parametrize("mode", list(ContentMode))
def test_oversized_message_raises_message_too_large(mode: ContentMode) -> None:
    envelope = new_envelope(notification(body="x" * 100_000), source="/tests")

    with pytest.raises(MessageTooLarge) as caught:
        to_servicebus_message(envelope, mode=mode, max_size=64 * 1024)

    assert caught.value.event_id == envelope.id
    assert caught.value.limit == 64 * 1024
    assert 100_000 < caught.value.size < 110_000
    assert str(caught.value).startswith(f"event {envelope.id}: the Service Bus message is ")


def test_size_limit_counts_properties_and_defaults_to_standard_tier() -> None:
    body = "€" * 90_000  # 270,000 bytes of UTF-8: over 256 KB, though under 100,000 characters
    envelope = new_envelope(notification(body=body), source="/tests")

    with pytest.raises(MessageTooLarge) as caught:
        to_servicebus_message(envelope)
    assert caught.value.limit == STANDARD_TIER_MAX_MESSAGE_SIZE == 262_144

    message = to_servicebus_message(envelope, max_size=PREMIUM_TIER_MAX_MESSAGE_SIZE)
    assert encoded_size(message) > len(body.encode()) + len(envelope.id)


@pytest.mark.parametrize("max_size", [4 * 1024, 16 * 1024, 40 * 1024, 60 * 1024])
@pytest.mark.parametrize("fill", ["x", "\U0001f600"])
def test_no_message_over_the_limit_is_returned_even_unmeasured(max_size: int, fill: str) -> None:
    # Small bodies skip the precise AMQP encode: with every property at its longest and
    # four bytes per character, a message either fits or is refused, never sent over.
    longest = fill * 128
    for length in range(1, max_size // 4, 7):
        envelope = new_envelope(
            notification(body=fill * length), source="/tests", correlationid=longest
        ).model_copy(update={"id": longest})
        try:
            message = to_servicebus_message(envelope, max_size=max_size)
        except MessageTooLarge:
            continue  # refused after measuring: what the limit asks for
        assert encoded_size(message) <= max_size


@pytest.mark.parametrize(
    ("content_type", "properties", "reason", "mentions"),
    [
        ("text/plain", {}, DeadLetterReason.UNSUPPORTED_CONTENT_TYPE, "text/plain"),
        (
            "application/cloudevents+avro",
            {},
            DeadLetterReason.UNSUPPORTED_CONTENT_TYPE,
            "cloudevents+avro",
        ),
        (
            "application/xml",
            {"cloudEvents:type": AUDIT_EVENT_TYPE},
            DeadLetterReason.UNSUPPORTED_CONTENT_TYPE,
            "application/xml",
        ),
        (
            "application/json",
            {"cloudEvents:type": "com.example.other"},
            DeadLetterReason.UNKNOWN_EVENT_TYPE,
            "com.example.other",
        ),
        (
            None,
            {"cloudEvents:type": AUDIT_EVENT_TYPE, "cloudEvents:schemaversion": "2"},
            DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION,
            "supported: 1",
        ),
        (
            "application/json",
            {"cloudEvents:type": AUDIT_EVENT_TYPE, "cloudEvents:source": "/x"},
            DeadLetterReason.SCHEMA_VALIDATION_FAILED,
            "id: Field required",
        ),
        (
            "application/json",
            {"cloudEvents:id": "e-1", "cloudEvents:source": "/x"},
            DeadLetterReason.SCHEMA_VALIDATION_FAILED,
            "type: Field required; specversion: Field required",
        ),
        (
            "application/json",
            {"cloudEvents:type": 7, "cloudEvents:source": "/x"},
            DeadLetterReason.SCHEMA_VALIDATION_FAILED,
            "type: Input should be a valid string",
        ),
    ],
)
def test_unreadable_messages_raise_contract_violation(
    content_type: str | None,
    properties: dict[str | bytes, Any],
    reason: DeadLetterReason,
    mentions: str,
) -> None:
    body = AUDIT.model_dump_json()
    message = ServiceBusMessage(
        body, content_type=content_type, application_properties=properties or None
    )

    with pytest.raises(ContractViolation) as caught:
        from_servicebus_message(as_received(message))

    assert caught.value.reason is reason
    assert mentions in caught.value.description


def test_binary_mode_data_that_is_not_json_is_invalid_json() -> None:
    message = ServiceBusMessage(
        b"\x00not json",
        content_type="application/json",
        application_properties={"cloudEvents:type": AUDIT_EVENT_TYPE},
    )
    with pytest.raises(ContractViolation) as caught:
        from_servicebus_message(as_received(message))
    assert caught.value.reason is DeadLetterReason.INVALID_JSON
    assert caught.value.description.startswith("data: ")


def test_structured_message_without_content_type_is_read_as_before() -> None:
    envelope = new_envelope(AUDIT, source="/tests")
    message = ServiceBusMessage(envelope.model_dump_json())
    assert from_servicebus_message(as_received(message)) == envelope


def test_both_modes_survive_the_emulator(connection_string: str) -> None:
    """A real AMQP trip through the project's emulator, with the unmodified SDK."""
    sent = {
        ContentMode.STRUCTURED: new_envelope(notification(locale="en-GB"), source="/t"),
        ContentMode.BINARY: new_envelope(
            notification(idempotency_key="k-1"), source="/t", correlationid="r-9"
        ),
    }
    with ServiceBusClient.from_connection_string(connection_string) as client:
        with client.get_queue_sender(NOTIFICATIONS_QUEUE) as sender:
            sender.send_messages(
                [to_servicebus_message(envelope, mode=mode) for mode, envelope in sent.items()]
            )
        with client.get_queue_receiver(NOTIFICATIONS_QUEUE, max_wait_time=5) as receiver:
            received: list[ServiceBusReceivedMessage] = []
            while len(received) < len(sent):
                batch = receiver.receive_messages(max_message_count=2, max_wait_time=5)
                assert batch, "messages did not arrive"
                for message in batch:
                    receiver.complete_message(message)
                received.extend(batch)

    by_id = {message.message_id: message for message in received}
    for envelope in sent.values():
        message = by_id[envelope.id]
        assert message.subject == envelope.type
        assert message.correlation_id == envelope.correlationid
        assert from_servicebus_message(message) == envelope
