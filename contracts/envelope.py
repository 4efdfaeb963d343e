"""The CloudEvents 1.0 envelope every message travels in.

Attribute names and meanings follow the CloudEvents spec, version 1.0.2
(https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md, section 3.1
"Context Attributes"); ``correlationid`` and ``schemaversion`` are extension attributes
(lower-case alphanumerics, as section 3.1.1 requires of attribute names). The JSON form is
the CloudEvents JSON event format
(https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md).
"""

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal, overload

from pydantic import ConfigDict, Field, StringConstraints

from contracts._base import ContractModel
from contracts._types import NO_WHITESPACE, NON_WHITESPACE_CLASS, UtcMillisecondDatetime, utc_now
from contracts.audit import AuditEvent
from contracts.notification import NotificationEvent

AUDIT_EVENT_TYPE: Final = "io.servicebus-events.audit.recorded"
NOTIFICATION_EVENT_TYPE: Final = "io.servicebus-events.notification.requested"
SCHEMA_VERSION: Final = "1"
"""Schema version of the event models this package writes today (every event type is at
version 1). ``contracts.registry`` lists every version readers accept."""

REQUIRED_ATTRIBUTES: Final = ("specversion", "id", "source", "type", "time")
"""Attributes every message must carry. CloudEvents makes ``time`` optional; this project's
contract requires it. ``schemaversion`` may be absent and then means ``"1"``."""


def _require_attributes(schema: dict[str, Any]) -> None:
    """Mark attributes that have Python-side defaults as required in the JSON Schema."""
    required = schema.setdefault("required", [])
    for name in REQUIRED_ATTRIBUTES:
        if name not in required:
            required.append(name)
    order = list(schema.get("properties", {}))
    required.sort(key=lambda name: order.index(name) if name in order else len(order))


class Envelope(ContractModel):
    """CloudEvents context attributes common to every event.

    Construct typed envelopes (:class:`AuditEnvelope`, :class:`NotificationEnvelope`)
    with :func:`new_envelope`; read them with :func:`contracts.parsing.parse_envelope`.
    """

    model_config = ConfigDict(json_schema_extra=_require_attributes)

    specversion: Literal["1.0"] = "1.0"
    """CloudEvents spec version; always ``1.0``."""
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        default_factory=lambda: str(uuid.uuid4())
    )
    """Unique event id (a UUID4 string unless given); also the Service Bus message id, so
    queue duplicate detection drops re-sends of the same event. 1-128 characters (the
    Service Bus MessageId limit)."""
    source: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NO_WHITESPACE)]
    """URI-reference naming the producing context, e.g. ``/producer``; 1-256 characters."""
    type: str
    """Event type (reverse-DNS name), fixed per event model."""
    time: UtcMillisecondDatetime = Field(default_factory=utc_now, validate_default=True)
    """When the event was accepted: RFC 3339, UTC, whole milliseconds."""
    subject: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    """Subject of the event within the source, e.g. ``invoice/INV-1042``; 1-256 characters."""
    datacontenttype: Literal["application/json"] = "application/json"
    """Media type of ``data``; always ``application/json``."""
    dataschema: (
        Annotated[
            str,
            StringConstraints(
                max_length=512, pattern=rf"^[A-Za-z][A-Za-z0-9+.-]*:{NON_WHITESPACE_CLASS}+$"
            ),
        ]
        | None
    ) = None
    """Absolute URI of the schema ``data`` adheres to, if the producer names one."""
    correlationid: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    """Id tying the event to a request or business flow (extension attribute); becomes the
    Service Bus correlation id. 1-128 characters."""
    schemaversion: str = SCHEMA_VERSION
    """Version of the schema of ``data`` (extension attribute); absent means ``"1"``."""


class AuditEnvelope(Envelope):
    """An :class:`~contracts.audit.AuditEvent` (version 1) in its envelope."""

    type: Literal["io.servicebus-events.audit.recorded"] = AUDIT_EVENT_TYPE
    """Always ``io.servicebus-events.audit.recorded``."""
    schemaversion: Literal["1"] = "1"
    """Version of the schema of ``data``: ``"1"``."""
    data: AuditEvent
    """The audit event."""


class NotificationEnvelope(Envelope):
    """A :class:`~contracts.notification.NotificationEvent` (version 1) in its envelope."""

    type: Literal["io.servicebus-events.notification.requested"] = NOTIFICATION_EVENT_TYPE
    """Always ``io.servicebus-events.notification.requested``."""
    schemaversion: Literal["1"] = "1"
    """Version of the schema of ``data``: ``"1"``."""
    data: NotificationEvent
    """The notification to deliver."""


EventEnvelope = AuditEnvelope | NotificationEnvelope
"""Any envelope this package reads or writes (every registered type and version)."""

AnyEnvelope = Annotated[AuditEnvelope | NotificationEnvelope, Field(discriminator="type")]
"""Pydantic-validatable union of the *current* envelope of each event type, discriminated by
``type``. To read messages of any supported version use ``parse_envelope``."""


@overload
def new_envelope(
    data: AuditEvent,
    *,
    source: str,
    subject: str | None = ...,
    correlationid: str | None = ...,
    dataschema: str | None = ...,
    event_id: str | None = ...,
    time: datetime | None = ...,
) -> AuditEnvelope: ...
@overload
def new_envelope(
    data: NotificationEvent,
    *,
    source: str,
    subject: str | None = ...,
    correlationid: str | None = ...,
    dataschema: str | None = ...,
    event_id: str | None = ...,
    time: datetime | None = ...,
) -> NotificationEnvelope: ...
def new_envelope(
    data: AuditEvent | NotificationEvent,
    *,
    source: str,
    subject: str | None = None,
    correlationid: str | None = None,
    dataschema: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> EventEnvelope:
    """Wrap an event in its envelope (current schema version of its type).

    Args:
        data: The event.
        source: CloudEvents ``source``, e.g. ``/producer``.
        subject: CloudEvents ``subject``, e.g. ``invoice/INV-1042``.
        correlationid: Request or flow id (also the Service Bus correlation id).
        dataschema: Absolute URI of the data schema, if you publish one.
        event_id: Event id; a new UUID4 when omitted. Pass the same id when re-publishing
            the same event so Service Bus duplicate detection can drop the copy.
        time: Acceptance time (aware); now when omitted. Stored as UTC, whole milliseconds.

    Returns:
        The typed envelope.

    Raises:
        pydantic.ValidationError: an attribute breaks its constraint (e.g. empty source).
    """
    attributes: dict[str, Any] = {
        "source": source,
        "subject": subject,
        "correlationid": correlationid,
        "dataschema": dataschema,
    }
    if event_id is not None:
        attributes["id"] = event_id
    if time is not None:
        attributes["time"] = time
    if isinstance(data, AuditEvent):
        return AuditEnvelope(data=data, **attributes)
    return NotificationEnvelope(data=data, **attributes)


def parse_envelope(body: bytes | str) -> EventEnvelope:
    """Deprecated location of :func:`contracts.parsing.parse_envelope`; same behaviour."""
    from contracts.parsing import parse_envelope as parse  # here: contracts.parsing imports us

    return parse(body)
