"""Hypothesis strategies that build valid events and envelopes from their constraints."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from contracts import (
    AuditEnvelope,
    AuditEvent,
    EventEnvelope,
    NotificationEnvelope,
    NotificationEvent,
    new_envelope,
)

OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
VISIBLE_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Zs", "Zl", "Zp", "Cc"]),
    min_size=1,
    max_size=30,
)
IDENTIFIERS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,30}\Z")
ACTIONS = st.from_regex(r"\A[a-z][a-z0-9_-]{0,8}(\.[a-z][a-z0-9_-]{0,8}){1,3}\Z")
TIMESTAMPS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=OFFSETS
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
JSON_OBJECTS = st.dictionaries(TEXT, JSON_VALUES, max_size=4)
EMAILS = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"\A[a-z0-9]{1,10}(\.[a-z0-9]{1,8})?\Z"),
    st.from_regex(r"\A[a-z][a-z0-9]{0,10}\Z"),
    st.sampled_from(["com", "org", "net", "de"]),
)
WEBHOOKS = st.builds(
    "https://{}.{}/{}".format,
    st.from_regex(r"\A[a-z][a-z0-9]{0,10}\Z"),
    st.sampled_from(["com", "io"]),
    st.from_regex(r"\A[a-z0-9/_-]{0,20}\Z"),
)
LOCALES = st.sampled_from(
    ["en", "en-GB", "pt-BR", "zh-Hant-TW", "de-CH-1996", "es-419", "sr-Latn-RS"]
)
IDEMPOTENCY_KEYS = st.from_regex(r"\A[\x21-\x7e]{1,40}\Z")


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def audit_events(draw: st.DrawFn) -> AuditEvent:
    return AuditEvent.model_validate(
        {
            "actor": {
                "id": draw(IDENTIFIERS),
                "type": draw(st.sampled_from(["user", "service", "system"])),
                "display_name": draw(optional(VISIBLE_TEXT)),
            },
            "action": draw(ACTIONS),
            "resource": {"type": draw(IDENTIFIERS), "id": draw(IDENTIFIERS)},
            "outcome": draw(st.sampled_from(["success", "failure", "denied"])),
            "occurred_at": draw(TIMESTAMPS),
            "reason": draw(optional(VISIBLE_TEXT)),
            "tenant_id": draw(optional(IDENTIFIERS)),
            "source_ip": draw(optional(st.ip_addresses())),
            "user_agent": draw(optional(TEXT)),
            "changes": draw(
                st.lists(
                    st.fixed_dictionaries(
                        {"field": IDENTIFIERS, "before": JSON_VALUES, "after": JSON_VALUES}
                    ),
                    max_size=3,
                )
            ),
            "details": draw(JSON_OBJECTS),
        }
    )


@st.composite
def notification_events(draw: st.DrawFn) -> NotificationEvent:
    channel = draw(st.sampled_from(["email", "webhook"]))
    fields: dict[str, Any] = {
        "channel": channel,
        "recipient": draw(EMAILS if channel == "email" else WEBHOOKS),
        "subject": draw(VISIBLE_TEXT),
        "locale": draw(optional(LOCALES)),
        "priority": draw(st.sampled_from(["low", "normal", "high"])),
        "idempotency_key": draw(optional(IDEMPOTENCY_KEYS)),
    }
    if draw(st.booleans()):
        fields["body"] = draw(VISIBLE_TEXT)
    else:
        fields["template"] = draw(IDENTIFIERS)
        fields["parameters"] = draw(JSON_OBJECTS)
    if draw(st.booleans()):
        ahead = draw(st.integers(min_value=0, max_value=300 * 24 * 3600 * 1000))
        fields["deliver_at"] = datetime.now(UTC) + timedelta(milliseconds=ahead)
    return NotificationEvent.model_validate(fields)


@st.composite
def envelopes(draw: st.DrawFn) -> EventEnvelope:
    data: AuditEvent | NotificationEvent = draw(audit_events() | notification_events())
    envelope = new_envelope(
        data,
        source=draw(st.sampled_from(["/producer", "urn:example:svc", "https://example.com/x"])),
        subject=draw(optional(VISIBLE_TEXT)),
        correlationid=draw(optional(IDENTIFIERS)),
        event_id=draw(optional(IDENTIFIERS)),
        time=draw(optional(TIMESTAMPS)),
    )
    assert isinstance(envelope, AuditEnvelope | NotificationEnvelope)
    return envelope
