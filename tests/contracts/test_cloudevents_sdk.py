"""Interoperability with the CloudEvents Python SDK, in both directions and both modes."""

from datetime import UTC, datetime
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import amqp
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from contracts import (
    AUDIT_EVENT_TYPE,
    NOTIFICATION_EVENT_TYPE,
    AuditEnvelope,
    AuditEvent,
    EventEnvelope,
    NotificationEnvelope,
    NotificationEvent,
    new_envelope,
)
from contracts.servicebus import ContentMode, from_servicebus_message, to_servicebus_message
from tests.contracts.wire import as_received

AUDIT = AuditEvent.model_validate(
    {
        "actor": {"id": "u-1", "type": "service"},
        "action": "user.login",
        "resource": {"type": "session", "id": "s-1"},
        "outcome": "denied",
        "reason": "MFA required",
        "occurred_at": "2026-11-21T10:00:00.123456+02:00",
        "changes": [{"field": "status", "before": None, "after": {"locked": True}}],
    }
)
NOTIFICATION = NotificationEvent(
    channel="webhook",
    recipient="https://hooks.example.com/x",
    subject="Hi",
    template="welcome",
    parameters={"name": "Ada"},
    locale="en-GB",
)


def _envelopes() -> list[EventEnvelope]:
    return [
        new_envelope(AUDIT, source="/producer", subject="session/s-1", correlationid="r-1"),
        new_envelope(NOTIFICATION, source="/producer", dataschema="urn:example:schema:1"),
    ]


def _assert_same_event(event: BaseCloudEvent, envelope: EventEnvelope) -> None:
    assert event.get_specversion() == "1.0"
    assert event.get_id() == envelope.id
    assert event.get_source() == envelope.source
    assert event.get_type() == envelope.type
    assert event.get_time() == envelope.time
    assert event.get_subject() == envelope.subject
    assert event.get_dataschema() == envelope.dataschema
    assert event.get_extension("schemaversion") == envelope.schemaversion
    assert event.get_extension("correlationid") == envelope.correlationid
    data = event.get_data()
    if isinstance(data, str):
        data = data.encode()
    if isinstance(data, bytes):
        data = JSONFormat().read_data(data, "application/json")
    assert data == envelope.data.model_dump(mode="json", exclude_none=True)


def _as_amqp_message(message: ServiceBusMessage) -> amqp.AMQPMessage:
    """What any AMQP 1.0 library hands over: content-type, application properties, data."""
    received = as_received(message)
    properties: dict[str, Any] = {}
    for key, value in (received.application_properties or {}).items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        properties[name] = value.decode() if isinstance(value, bytes) else value
    return amqp.AMQPMessage(
        properties={"content-type": received.content_type},
        application_properties=properties,
        application_data=b"".join(received.body),
    )


@pytest.mark.parametrize("envelope", _envelopes(), ids=["audit", "notification"])
def test_structured_body_parses_with_the_sdk_json_format(envelope: EventEnvelope) -> None:
    body = envelope.model_dump_json(exclude_none=True).encode()
    _assert_same_event(JSONFormat().read(None, body), envelope)


@pytest.mark.parametrize("mode", list(ContentMode))
@pytest.mark.parametrize("envelope", _envelopes(), ids=["audit", "notification"])
def test_servicebus_message_parses_with_the_sdk_amqp_binding(
    envelope: EventEnvelope, mode: ContentMode
) -> None:
    message = to_servicebus_message(envelope, mode=mode)
    _assert_same_event(amqp.from_amqp(_as_amqp_message(message), JSONFormat()), envelope)


def _sdk_event(event_type: str, data: dict[str, Any]) -> CloudEvent:
    return CloudEvent(
        attributes={
            "id": "evt-1",
            "source": "/other-producer",
            "type": event_type,
            "time": datetime(2026, 11, 21, 9, 0, 0, 250000, tzinfo=UTC),
            "datacontenttype": "application/json",
            "correlationid": "flow-3",
        },
        data=data,
    )


@pytest.mark.parametrize("binary", [False, True], ids=["structured", "binary"])
@pytest.mark.parametrize(
    ("event_type", "data", "model"),
    [
        (AUDIT_EVENT_TYPE, AUDIT.model_dump(mode="json"), AuditEnvelope),
        (NOTIFICATION_EVENT_TYPE, NOTIFICATION.model_dump(mode="json"), NotificationEnvelope),
    ],
)
def test_events_written_by_the_sdk_are_read(
    event_type: str, data: dict[str, Any], model: type[EventEnvelope], binary: bool
) -> None:
    event = _sdk_event(event_type, data)
    written = amqp.to_binary_event(event) if binary else amqp.to_structured_event(event)
    properties: dict[str | bytes, Any] = {}
    properties.update(written.application_properties)
    if "cloudEvents_time" in properties:
        # The SDK's library-neutral AMQPMessage holds the timestamp as int milliseconds;
        # azure-servicebus writes an AMQP timestamp when given a datetime.
        milliseconds = properties["cloudEvents_time"]
        properties["cloudEvents_time"] = datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
    message = ServiceBusMessage(
        written.application_data,
        content_type=written.properties["content-type"],
        application_properties=properties or None,
    )

    envelope = from_servicebus_message(as_received(message))

    assert isinstance(envelope, model)
    assert envelope.id == "evt-1"
    assert envelope.source == "/other-producer"
    assert envelope.time == datetime(2026, 11, 21, 9, 0, 0, 250000, tzinfo=UTC)
    assert envelope.correlationid == "flow-3"
    assert envelope.schemaversion == "1"  # absent means version 1
    assert envelope.data.model_dump(mode="json") == data
