"""The CloudEvents 1.0 envelope every message travels in.

Attribute names and meanings follow the CloudEvents spec, version 1.0.2
(https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md, section 3.1
"Context Attributes"); ``correlationid`` and ``schemaversion`` are extension attributes
(lower-case alphanumerics, as section 3.1.1 requires of attribute names). The JSON form is
the CloudEvents JSON event format
(https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md).
"""

import uuid
from typing import Annotated, Any, Final, Literal

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
    with :func:`contracts.writing.new_envelope`; read them with
    :func:`contracts.parsing.parse_envelope`.
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
"""Any envelope of the event types this package ships (every version), for static typing.

An event type registered at run time (``contracts.registry.register``) is read and written
the same way; its envelope is an :class:`Envelope` subclass outside this union."""

AnyEnvelope = Annotated[AuditEnvelope | NotificationEnvelope, Field(discriminator="type")]
"""Pydantic-validatable union of the *current* envelope of each event type, discriminated by
``type``. To read messages of any supported version use ``parse_envelope``."""
