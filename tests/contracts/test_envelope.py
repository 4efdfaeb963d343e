"""Contracts: envelopes round-trip, bad bodies are rejected with the right reason."""

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from contracts import (
    AUDIT_EVENT_TYPE,
    AuditEnvelope,
    AuditEvent,
    ContractViolation,
    DeadLetterReason,
    NotificationEnvelope,
    NotificationEvent,
    new_envelope,
    parse_envelope,
)
from contracts.servicebus import CONTENT_TYPE, to_servicebus_message


def audit_event(**overrides: object) -> AuditEvent:
    fields: dict[str, object] = {
        "actor": {"id": "u-1", "display_name": "Ada Lovelace"},
        "action": "invoice.approve",
        "resource": {"type": "invoice", "id": "INV-1"},
        "outcome": "success",
        "occurred_at": "2026-11-21T10:00:00+01:00",
        "source_ip": "192.0.2.10",
        "user_agent": "curl/8.5",
        "details": {"amount": 120},
    }
    fields.update(overrides)
    return AuditEvent.model_validate(fields)


def test_audit_envelope_round_trips_through_json() -> None:
    envelope = new_envelope(audit_event(), source="/tests", correlationid="req-1")

    parsed = parse_envelope(envelope.model_dump_json())

    assert parsed == envelope
    assert isinstance(parsed, AuditEnvelope)
    assert parsed.data.occurred_at == datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    assert parsed.time.tzinfo is not None
    assert parsed.time.utcoffset() == timedelta(0)


def test_notification_email_recipient_is_normalised() -> None:
    event = NotificationEvent(
        channel="email", recipient="Ada@Example.COM", subject="Hi", body="Hello"
    )
    assert event.recipient == "Ada@example.com"
    envelope = new_envelope(event, source="/tests")
    assert isinstance(parse_envelope(envelope.model_dump_json()), NotificationEnvelope)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"channel": "email", "recipient": "not-an-address"}, "valid e-mail"),
        ({"channel": "webhook", "recipient": "ftp://example.com/x"}, "http(s) URL"),
        ({"channel": "email", "recipient": "a@example.com", "template": "t"}, "exactly one"),
        ({"channel": "sms", "recipient": "a@example.com"}, "channel"),
    ],
)
def test_invalid_notifications_name_the_problem(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        NotificationEvent.model_validate({"subject": "s", "body": "b", **fields})


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        audit_event(occurred_at="2026-11-21T10:00:00")


def test_other_timezones_are_normalised_to_utc() -> None:
    local = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5)))
    assert audit_event(occurred_at=local).occurred_at.hour == 17


@pytest.mark.parametrize(
    ("body", "reason", "mentions"),
    [
        (b"\xff\xfe", DeadLetterReason.INVALID_JSON, "body"),
        (b"[1, 2]", DeadLetterReason.SCHEMA_VALIDATION_FAILED, "body: a CloudEvents JSON event"),
        (b"null", DeadLetterReason.SCHEMA_VALIDATION_FAILED, "must be an object, not null"),
        (b'"text"', DeadLetterReason.SCHEMA_VALIDATION_FAILED, "must be an object, not a string"),
        (
            b'{"hello": 1}',
            DeadLetterReason.SCHEMA_VALIDATION_FAILED,
            "type: Field required; specversion: Field required; id: Field required",
        ),
        (b'{"type": 5}', DeadLetterReason.SCHEMA_VALIDATION_FAILED, "type: Input should be"),
        (b'{"type": null}', DeadLetterReason.SCHEMA_VALIDATION_FAILED, "type: Input should be"),
        (b'{"type": "com.example.other"}', DeadLetterReason.UNKNOWN_EVENT_TYPE, "other"),
        (
            json.dumps({"type": AUDIT_EVENT_TYPE, "schemaversion": "2"}).encode(),
            DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION,
            "'2'",
        ),
        (
            json.dumps(
                {"type": AUDIT_EVENT_TYPE, "source": "/x", "data": {"action": "x"}}
            ).encode(),
            DeadLetterReason.SCHEMA_VALIDATION_FAILED,
            "data.actor",
        ),
    ],
)
def test_bad_bodies_raise_contract_violation(
    body: bytes, reason: DeadLetterReason, mentions: str
) -> None:
    with pytest.raises(ContractViolation) as caught:
        parse_envelope(body)
    assert caught.value.reason is reason
    assert mentions in caught.value.description


def test_service_bus_message_carries_routing_properties() -> None:
    envelope = new_envelope(audit_event(), source="/tests", correlationid="req-7")

    message = to_servicebus_message(envelope)

    assert message.message_id == envelope.id
    assert message.subject == AUDIT_EVENT_TYPE
    assert message.content_type == CONTENT_TYPE
    assert message.correlation_id == "req-7"
    assert message.application_properties == {
        "eventType": AUDIT_EVENT_TYPE,
        "schemaVersion": "1",
    }
    assert json.loads(str(message))["id"] == envelope.id
