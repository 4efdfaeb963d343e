"""The models accept exactly what their published JSON Schema accepts.

Each case is one field value sent as JSON: the model (as the producer validates an HTTP
body) and the event's JSON Schema (as a non-Python writer, a reader, or schemathesis
checks it: ``jsonschema_rs``, Draft 2020-12, formats checked, ECMA-262 patterns) must
both accept it or both refuse it, and the case says which. Rules JSON Schema cannot state
(``deliver_at`` against the clock, years after UTC conversion) are the documented
exceptions and have their own tests.
"""

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema_rs
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts import AuditEvent, NotificationEvent
from contracts._types import NO_WHITESPACE, WHITESPACE, Identifier, ShortText
from contracts.envelope import AUDIT_EVENT_TYPE, NOTIFICATION_EVENT_TYPE
from contracts.examples import example_json
from contracts.registry import lookup
from contracts.schema_export import envelope_schema

AUDIT: dict[str, Any] = {
    "actor": {"id": "u-42", "type": "user"},
    "action": "invoice.approve",
    "resource": {"type": "invoice", "id": "INV-1042"},
    "outcome": "success",
    "occurred_at": "2026-11-21T09:30:00Z",
}
EMAIL: dict[str, Any] = {
    "channel": "email",
    "recipient": "grace@example.com",
    "subject": "Invoice approved",
    "body": "INV-1042 is approved.",
}
WEBHOOK: dict[str, Any] = {
    **EMAIL,
    "channel": "webhook",
    "recipient": "https://hooks.example.com/x",
}


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``base`` with the dotted ``path`` set to ``value`` (``...`` removes it)."""
    data = copy.deepcopy(base)
    *parents, name = path.split(".")
    target = data
    for parent in parents:
        target = target[parent]
    if value is ...:
        target.pop(name, None)
    else:
        target[name] = value
    return data


def _schema_accepts(event_type: str, data: dict[str, Any]) -> bool:
    spec = lookup(event_type, "1")
    envelope = {**example_json(spec), "data": data}
    validator = jsonschema_rs.Draft202012Validator(envelope_schema(spec), validate_formats=True)
    return bool(validator.is_valid(envelope))


def _model_accepts(model: type[BaseModel], data: dict[str, Any]) -> bool:
    try:
        model.model_validate_json(json.dumps(data))  # what arrives is JSON
        model.model_validate(data)  # what FastAPI passes on: the parsed JSON
    except ValidationError:
        return False
    return True


AUDIT_CASES = [
    # A JSON boolean or number is not an IP address (pydantic's IPvAnyAddress took false
    # as 0.0.0.0); nor is an IPv6 address with a zone index, which the format refuses.
    ("source_ip", False, False),
    ("source_ip", 0, False),
    ("source_ip", 3232235777, False),
    ("source_ip", "fe80::1%eth0", False),
    ("source_ip", "192.0.2.10", True),
    ("source_ip", "2001:db8::1", True),
    # RFC 3339 only: pydantic alone also read Unix times, a space and minutes-only times.
    ("occurred_at", "1700000000", False),
    ("occurred_at", "2026-11-21 09:30:00Z", False),
    ("occurred_at", "2026-11-21T09:30Z", False),
    ("occurred_at", "2026-11-21T09:30:00", False),
    ("occurred_at", "2026-11-21t09:30:00.5z", True),
    ("occurred_at", "2026-11-21T09:30:00.123456+05:30", True),
    # No whitespace in identifiers, in both regex dialects: padded ids were stripped and
    # accepted by the model; U+0085 and U+FEFF were refused by one dialect each.
    ("actor.id", " u-42", False),
    ("actor.id", "u-42\n", False),
    ("actor.id", "u\u300042", False),
    ("actor.id", "u\u008542", True),
    ("actor.id", "u\ufeff42", True),
    ("resource.id", "INV 1042", False),
    ("tenant_id", "\tacme", False),
    ("action", " invoice.approve", False),
    # Free text: not all whitespace (the schema allowed " "), at most N characters as sent
    # (the model measured after stripping).
    ("reason", " ", False),
    ("reason", "\u2003\u3000", False),
    ("reason", "x" + " " * 1000, False),
    ("reason", " denied by policy P-7 ", True),
    ("actor.display_name", " ", False),
    ("actor.display_name", "Grace Hopper", True),
    ("changes", [{"field": " "}], False),
    ("changes", [{"field": "status", "before": 1, "after": 2}], True),
]


@pytest.mark.parametrize(("path", "value", "accepted"), AUDIT_CASES)
def test_audit_model_and_schema_agree(path: str, value: Any, accepted: bool) -> None:
    data = _with(AUDIT, path, value)

    assert _model_accepts(AuditEvent, data) is accepted
    assert _schema_accepts(AUDIT_EVENT_TYPE, data) is accepted


NOTIFICATION_CASES = [
    # Exactly one of body and template; parameters only with a template.
    (EMAIL, "template", "invoice-approved", False),
    (EMAIL, "body", ..., False),
    (EMAIL, "body", None, False),
    (_with(EMAIL, "body", None), "template", "invoice-approved", True),
    (_with(EMAIL, "body", ...), "template", "invoice-approved", True),
    (EMAIL, "parameters", {"invoice": "INV-1042"}, False),
    (EMAIL, "parameters", {}, True),
    (_with(EMAIL, "body", ...), "template", " invoice-approved", False),
    # The recipient matches the channel.
    (EMAIL, "recipient", "not-an-address", False),
    (EMAIL, "recipient", "grace@example.test", False),
    (EMAIL, "recipient", "grace@LOCALHOST", False),
    (EMAIL, "recipient", "grace@example", False),
    (EMAIL, "recipient", " grace@example.com", False),
    (EMAIL, "recipient", "https://hooks.example.com/x", False),
    (EMAIL, "recipient", "g.r+ace@mail.example.co.uk", True),
    (EMAIL, "recipient", "grâce@bücher.example", True),
    (WEBHOOK, "recipient", "grace@example.com", False),
    (WEBHOOK, "recipient", "ftp://files.example.com/x", False),
    (WEBHOOK, "recipient", "https://hooks.example.com/x?y=1", True),
    (WEBHOOK, "recipient", "HTTP://hooks.example.com", True),
    (WEBHOOK, "recipient", "https://bücher.example/hook", True),
    (WEBHOOK, "recipient", "https://hooks.example.com/a b", False),
    (WEBHOOK, "recipient", "https://hooks.example.com/{id}", False),
    (EMAIL, "subject", "\u00a0", False),
    (EMAIL, "subject", " Invoice approved ", True),
]


@pytest.mark.parametrize(("base", "path", "value", "accepted"), NOTIFICATION_CASES)
def test_notification_model_and_schema_agree(
    base: dict[str, Any], path: str, value: Any, accepted: bool
) -> None:
    data = _with(base, path, value)

    assert _model_accepts(NotificationEvent, data) is accepted
    assert _schema_accepts(NOTIFICATION_EVENT_TYPE, data) is accepted


def test_a_boolean_source_ip_is_refused_with_a_message_naming_it() -> None:
    with pytest.raises(ValidationError) as caught:
        AuditEvent.model_validate({**AUDIT, "source_ip": False})

    (error,) = caught.value.errors()
    assert error["loc"] == ("source_ip",)
    assert "IPv4 or IPv6 address string" in error["msg"]


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_a_time_outside_the_utc_calendar_is_a_validation_error(when: str) -> None:
    # Valid RFC 3339, but not a datetime once converted to UTC: a 422 naming the field,
    # not an OverflowError (a 500 in the producer, a crashed read in the consumer).
    with pytest.raises(ValidationError) as caught:
        AuditEvent.model_validate({**AUDIT, "occurred_at": when})

    (error,) = caught.value.errors()
    assert error["loc"] == ("occurred_at",)
    assert "years 0001-9999" in error["msg"]


def test_free_text_is_stored_without_surrounding_whitespace() -> None:
    event = AuditEvent.model_validate(
        {**AUDIT, "actor": {"id": "u-42", "display_name": "\u3000Grace Hopper\n"}}
    )

    assert event.actor.display_name == "Grace Hopper"


def test_the_no_whitespace_pattern_means_the_same_in_every_dialect() -> None:
    # Every BMP character, through pydantic's regex (Rust), Python's re and the JSON
    # Schema validator's ECMA-262: each refuses exactly the WHITESPACE characters.
    characters = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    identifier: TypeAdapter[str] = TypeAdapter(Identifier)
    schema = jsonschema_rs.Draft202012Validator({"type": "string", "pattern": NO_WHITESPACE})
    expected = set(WHITESPACE)

    def refused_by_pydantic(char: str) -> bool:
        try:
            identifier.validate_python(f"a{char}b")
        except ValidationError:
            return True
        return False

    assert {c for c in characters if refused_by_pydantic(c)} == expected
    assert {c for c in characters if not schema.is_valid(f"a{c}b")} == expected


def test_short_text_strips_exactly_the_whitespace_its_pattern_names() -> None:
    text: TypeAdapter[str] = TypeAdapter(ShortText)

    assert text.validate_python(f"{WHITESPACE}x{WHITESPACE}") == "x"
    assert text.validate_python("\u0085x\ufeff") == "\u0085x\ufeff"


def test_the_schema_states_the_deliver_at_window_it_cannot_check() -> None:
    # JSON Schema cannot compare with the clock, so the window is in the description, and
    # the model enforces it when the event is created.
    spec = lookup(NOTIFICATION_EVENT_TYPE, "1")
    field = envelope_schema(spec)["$defs"]["NotificationEvent"]["properties"]["deliver_at"]
    later = datetime.now(UTC) + timedelta(days=400)

    assert "5 minutes in the past and 365 days in the future" in field["description"]
    assert _schema_accepts(NOTIFICATION_EVENT_TYPE, {**EMAIL, "deliver_at": later.isoformat()})
    assert not _model_accepts(NotificationEvent, {**EMAIL, "deliver_at": later.isoformat()})
