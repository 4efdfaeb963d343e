"""Property-based: every valid event round-trips; anything else is a ContractViolation."""

import json
from datetime import timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import (
    AuditEvent,
    ContractViolation,
    DeadLetterReason,
    EventEnvelope,
    NotificationEnvelope,
    NotificationEvent,
    parse_envelope,
)
from contracts.servicebus import ContentMode, from_servicebus_message, to_servicebus_message
from tests.contracts.strategies import JSON_VALUES, TEXT, envelopes
from tests.contracts.wire import as_received

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
MODES = st.sampled_from(list(ContentMode))


def _seconds(count: int) -> timedelta:
    return timedelta(seconds=count)


@SETTINGS
@given(envelopes())
def test_model_json_model_round_trip(envelope: EventEnvelope) -> None:
    assert parse_envelope(envelope.model_dump_json()) == envelope
    assert parse_envelope(envelope.model_dump_json(exclude_none=True)) == envelope


@SETTINGS
@given(
    envelopes(),
    MODES,
    st.none() | st.from_regex(r"\A[a-z0-9-]{1,64}\Z"),
    st.none() | st.integers(min_value=1, max_value=4_294_967).map(_seconds),
)
def test_model_servicebus_message_model_round_trip(
    envelope: EventEnvelope,
    mode: ContentMode,
    session_id: str | None,
    time_to_live: timedelta | None,
) -> None:
    message = to_servicebus_message(
        envelope, mode=mode, session_id=session_id, time_to_live=time_to_live
    )
    received = as_received(message)

    assert from_servicebus_message(received) == envelope
    assert received.message_id == envelope.id
    assert received.subject == envelope.type
    assert received.correlation_id == envelope.correlationid
    assert received.session_id == session_id
    assert received.time_to_live == time_to_live
    if isinstance(envelope, NotificationEnvelope) and envelope.data.deliver_at is not None:
        scheduled = received.scheduled_enqueue_time_utc
        assert scheduled is not None
        # Service Bus carries the scheduled enqueue time in whole milliseconds.
        assert abs(scheduled - envelope.data.deliver_at) < timedelta(milliseconds=1)


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_a_contract_violation(body: bytes) -> None:
    with pytest.raises(ContractViolation):
        parse_envelope(body)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["type", "id", "source", "data", "x"]) | TEXT, JSON_VALUES))
def test_arbitrary_json_objects_are_a_contract_violation(document: dict[str, Any]) -> None:
    with pytest.raises(ContractViolation) as caught:
        parse_envelope(json.dumps(document))
    assert caught.value.reason is not DeadLetterReason.INVALID_JSON


def _required_paths(document: dict[str, Any]) -> list[tuple[str, ...]]:
    data = document["data"]
    paths: list[tuple[str, ...]] = [
        (name,) for name in ("specversion", "id", "source", "type", "time", "data")
    ]
    if "actor" in data:
        paths += [("data", name) for name in ("actor", "action", "resource", "outcome")]
        paths += [("data", "actor", "id"), ("data", "resource", "type")]
    else:
        paths += [("data", name) for name in ("channel", "recipient", "subject")]
    return paths


@SETTINGS
@given(envelopes(), st.data())
def test_a_missing_required_field_is_named(envelope: EventEnvelope, data: st.DataObject) -> None:
    document = json.loads(envelope.model_dump_json(exclude_none=True))
    path = data.draw(st.sampled_from(_required_paths(document)))
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]

    with pytest.raises(ContractViolation) as caught:
        parse_envelope(json.dumps(document))

    assert caught.value.reason is DeadLetterReason.SCHEMA_VALIDATION_FAILED
    assert f"{'.'.join(path)}: Field required" in caught.value.description


@SETTINGS
@given(envelopes(), st.sampled_from(["id", "source", "time", "data"]), JSON_VALUES)
def test_a_wrongly_typed_attribute_is_rejected(
    envelope: EventEnvelope, name: str, value: Any
) -> None:
    document = json.loads(envelope.model_dump_json())
    if isinstance(value, str | dict) or value is None:
        value = [value]  # never a valid id, source, time or data
    document[name] = value

    with pytest.raises(ContractViolation) as caught:
        parse_envelope(json.dumps(document))

    assert caught.value.reason is DeadLetterReason.SCHEMA_VALIDATION_FAILED
    assert name in caught.value.description


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(
            ["cloudEvents:type", "cloudEvents:id", "cloudEvents_time", "cloudEvents:x"]
        ),
        st.text(max_size=20) | st.integers(-(2**31), 2**31 - 1) | st.booleans(),
        min_size=1,
    ),
    st.binary(max_size=100),
    st.sampled_from([None, "application/json", "text/plain", "application/cloudevents+json"]),
)
def test_arbitrary_binary_mode_messages_are_a_contract_violation(
    properties: dict[str | bytes, Any], body: bytes, content_type: str | None
) -> None:
    message = ServiceBusMessage(body, content_type=content_type, application_properties=properties)
    with pytest.raises(ContractViolation):
        from_servicebus_message(as_received(message))


@SETTINGS
@given(st.text(max_size=40).filter(lambda s: not s.isascii() or " " in s or s == ""))
def test_invalid_idempotency_keys_are_rejected(key: str) -> None:
    with pytest.raises(ValidationError, match="idempotency_key"):
        NotificationEvent(
            channel="email", recipient="a@example.com", subject="s", body="b", idempotency_key=key
        )


@SETTINGS
@given(st.from_regex(r"\A[A-Za-z0-9 ._-]{0,12}\Z").filter(lambda s: "." not in s.strip(" ")))
def test_actions_without_a_dot_are_rejected(action: str) -> None:
    with pytest.raises(ValidationError, match="action"):
        AuditEvent.model_validate(
            {
                "actor": {"id": "u-1"},
                "action": action,
                "resource": {"type": "t", "id": "1"},
                "outcome": "success",
                "occurred_at": "2026-01-01T00:00:00Z",
            }
        )
