"""Event models: field rules and their messages, strict writing, tolerant reading, registry."""

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from contracts import (
    AUDIT_EVENT_TYPE,
    NOTIFICATION_EVENT_TYPE,
    AuditEnvelope,
    AuditEvent,
    ContractViolation,
    DeadLetterReason,
    NotificationEnvelope,
    NotificationEvent,
    lookup,
    new_envelope,
    parse_envelope,
    supported_versions,
)
from contracts.registry import REGISTRY, current_spec, event_types, specs

AUDIT: dict[str, Any] = {
    "actor": {"id": "u-1", "type": "user", "display_name": "Ada"},
    "action": "invoice.approve",
    "resource": {"type": "invoice", "id": "INV-1"},
    "outcome": "failure",
    "occurred_at": "2026-11-21T10:00:00Z",
}
NOTIFICATION: dict[str, Any] = {
    "channel": "email",
    "recipient": "ada@example.com",
    "subject": "Hello",
    "body": "Hi",
}


def test_audit_event_carries_tenant_reason_and_changes() -> None:
    event = AuditEvent.model_validate(
        {
            **AUDIT,
            "tenant_id": "acme",
            "reason": "  insufficient funds ",
            "changes": [{"field": "status", "before": "open", "after": "closed"}],
        }
    )
    assert event.tenant_id == "acme"
    assert event.reason == "insufficient funds"
    assert event.changes[0].before == "open"
    assert event.changes[0].after == "closed"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"outcome": "maybe"}, "'success', 'failure' or 'denied'"),
        ({"action": "login"}, "String should match pattern"),
        ({"actor": {"id": "has space"}}, "must not contain whitespace"),
        ({"actor": {"id": "u", "type": "robot"}}, "'user', 'service' or 'system'"),
        ({"source_ip": "999.1.1.1"}, "source_ip"),
        ({"reason": ""}, "at least 1 character"),
        ({"tenant_id": "x" * 129}, "at most 128 characters"),
        ({"changes": [{"before": 1}]}, "changes.0.field"),
        ({"changes": [{"field": "f"}] * 101}, "at most 100 items"),
        ({"occurred_at": "2026-11-21T10:00:00"}, "timezone"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_audit_fields_are_named(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        AuditEvent.model_validate({**AUDIT, **fields})


@pytest.mark.parametrize(
    "locale", ["en", "en-GB", "zh-Hant-TW", "es-419", "de-CH-1996", "en-a-bbb-x-private"]
)
def test_well_formed_locales_are_accepted(locale: str) -> None:
    assert NotificationEvent.model_validate({**NOTIFICATION, "locale": locale}).locale == locale


@pytest.mark.parametrize("locale", ["", "e", "english", "en_GB", "en-", "x-private", "a" * 36])
def test_malformed_locales_are_rejected(locale: str) -> None:
    with pytest.raises(ValidationError, match="locale"):
        NotificationEvent.model_validate({**NOTIFICATION, "locale": locale})


def test_deliver_at_window_is_checked_when_the_event_is_created() -> None:
    now = datetime.now(UTC)
    soon = NotificationEvent.model_validate(
        {**NOTIFICATION, "deliver_at": now - timedelta(minutes=4)}
    )
    assert soon.deliver_at is not None

    with pytest.raises(ValidationError, match="in the past by more than 5 minutes"):
        NotificationEvent.model_validate({**NOTIFICATION, "deliver_at": now - timedelta(minutes=6)})
    with pytest.raises(ValidationError, match="more than 365 days in the future"):
        NotificationEvent.model_validate({**NOTIFICATION, "deliver_at": now + timedelta(days=366)})
    with pytest.raises(ValidationError, match="timezone"):
        NotificationEvent.model_validate({**NOTIFICATION, "deliver_at": "2030-01-01T00:00:00"})


def test_a_past_deliver_at_is_accepted_when_read_back_from_a_queue() -> None:
    envelope = new_envelope(
        NotificationEvent.model_validate(
            {**NOTIFICATION, "deliver_at": datetime.now(UTC) + timedelta(minutes=1)}
        ),
        source="/tests",
    )
    document = json.loads(envelope.model_dump_json())
    document["data"]["deliver_at"] = "2020-01-01T00:00:00Z"  # e.g. replayed from the DLQ

    parsed = parse_envelope(json.dumps(document))

    assert isinstance(parsed, NotificationEnvelope)
    assert parsed.data.deliver_at == datetime(2020, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"template": "t", "body": None, "parameters": {"a": 1}, "idempotency_key": "k"}, None),
        ({"parameters": {"a": 1}}, "'parameters' requires 'template'"),
        ({"idempotency_key": "has space"}, "idempotency_key"),
        ({"idempotency_key": "ключ"}, "idempotency_key"),
        ({"priority": "urgent"}, "'low', 'normal' or 'high'"),
        ({"subject": "  "}, "must not be empty or only whitespace"),
        (
            {"parameters": {str(i): i for i in range(101)}, "template": "t", "body": None},
            "at most 100",
        ),
    ],
)
def test_notification_rules(fields: dict[str, Any], message: str | None) -> None:
    document = {**NOTIFICATION, **fields}
    document = {key: value for key, value in document.items() if value is not None}
    if message is None:
        NotificationEvent.model_validate(document)
        return
    with pytest.raises(ValidationError, match=re.escape(message)):
        NotificationEvent.model_validate(document)


def test_models_are_frozen() -> None:
    event = AuditEvent.model_validate(AUDIT)
    with pytest.raises(ValidationError, match="frozen"):
        event.action = "user.logout"  # type: ignore[misc]


def test_envelope_time_is_utc_whole_milliseconds() -> None:
    local = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC).astimezone()
    envelope = new_envelope(AuditEvent.model_validate(AUDIT), source="/t", time=local)
    assert envelope.time == datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert new_envelope(AuditEvent.model_validate(AUDIT), source="/t").time.microsecond % 1000 == 0


def test_writing_is_strict_reading_is_tolerant() -> None:
    envelope = new_envelope(AuditEvent.model_validate(AUDIT), source="/tests")
    document = json.loads(envelope.model_dump_json())
    document["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    document["data"]["added_in_a_later_release"] = {"optional": True}
    document["data"]["actor"]["department"] = "finance"

    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        AuditEnvelope.model_validate(document)
    assert parse_envelope(json.dumps(document)) == envelope
    # Each model's known field names are cached after the first read: reading a clean
    # document, then the tolerant one again, still drops exactly the unknown fields, and
    # writing stays strict.
    assert parse_envelope(envelope.model_dump_json()) == envelope
    assert parse_envelope(json.dumps(document)) == envelope
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        AuditEnvelope.model_validate(document)


@pytest.mark.parametrize(
    ("attribute", "value", "mentions"),
    [
        ("source", "has space", "source"),
        ("dataschema", "relative/path", "dataschema"),
        ("specversion", "0.3", "specversion"),
        ("datacontenttype", "text/plain", "datacontenttype"),
        ("time", "yesterday", "time"),
        ("time", 0, "time"),  # not read as Unix time (found by hypothesis)
        ("time", 1763726400.5, "time"),
    ],
)
def test_invalid_envelope_attributes_are_named(
    attribute: str, value: str | float, mentions: str
) -> None:
    envelope = new_envelope(AuditEvent.model_validate(AUDIT), source="/tests")
    document = {**json.loads(envelope.model_dump_json()), attribute: value}
    with pytest.raises(ContractViolation) as caught:
        parse_envelope(json.dumps(document))
    assert caught.value.reason is DeadLetterReason.SCHEMA_VALIDATION_FAILED
    assert caught.value.description.startswith(f"{mentions}: ")


def test_registry_is_keyed_by_type_and_version() -> None:
    assert event_types() == (AUDIT_EVENT_TYPE, NOTIFICATION_EVENT_TYPE)
    assert supported_versions(AUDIT_EVENT_TYPE) == ("1",)
    assert lookup(AUDIT_EVENT_TYPE, "1").envelope is AuditEnvelope
    assert current_spec(NOTIFICATION_EVENT_TYPE).envelope is NotificationEnvelope
    for spec in specs():
        fields = spec.envelope.model_fields
        assert fields["type"].default == spec.event_type
        assert fields["schemaversion"].default == spec.version
        assert spec.key in REGISTRY


@pytest.mark.parametrize(
    ("event_type", "version", "reason", "message"),
    [
        (
            "com.example.x",
            "1",
            DeadLetterReason.UNKNOWN_EVENT_TYPE,
            "unknown event type 'com.example.x'",
        ),
        (
            ["not", "hashable"],
            "1",
            DeadLetterReason.SCHEMA_VALIDATION_FAILED,
            'type: must be a string, not ["not", "hashable"]',
        ),
        (None, "1", DeadLetterReason.SCHEMA_VALIDATION_FAILED, "type: must be a string, not null"),
        (
            AUDIT_EVENT_TYPE,
            "2",
            DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION,
            "'2' of io.servicebus-events.audit.recorded is not supported (supported: 1)",
        ),
        (
            AUDIT_EVENT_TYPE,
            1,
            DeadLetterReason.SCHEMA_VALIDATION_FAILED,
            "schemaversion: must be a string, not 1",
        ),
        ("com.example.x", 1, DeadLetterReason.UNKNOWN_EVENT_TYPE, "'com.example.x'"),
    ],
)
def test_lookup_failures_are_dead_letter_reasons(
    event_type: object, version: object, reason: DeadLetterReason, message: str
) -> None:
    with pytest.raises(ContractViolation) as caught:
        lookup(event_type, version)
    assert caught.value.reason is reason
    assert message in caught.value.description
