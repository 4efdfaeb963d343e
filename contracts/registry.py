"""Which (event type, schema version) pairs exist, and the model that reads each.

The registry is keyed by ``(type, schemaversion)``: a v2 of an event type is a new entry
next to v1, with its own envelope model, so readers keep accepting v1 messages still in a
queue (or replayed from a dead-letter queue) while writers move to v2. Dropping a version
is removing its entry. See ``docs/contracts.md``, "Versioning policy".
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from pydantic import BaseModel

from contracts.envelope import (
    AUDIT_EVENT_TYPE,
    NOTIFICATION_EVENT_TYPE,
    AuditEnvelope,
    EventEnvelope,
    NotificationEnvelope,
)
from contracts.errors import ContractViolation, DeadLetterReason

AUDIT_QUEUE: Final = "audit"
NOTIFICATIONS_QUEUE: Final = "notifications"


@dataclass(frozen=True)
class EventSpec:
    """One version of one event type.

    Attributes:
        event_type: CloudEvents ``type``.
        version: ``schemaversion`` value, a positive integer as a string (``"1"``).
        envelope: The envelope model that validates messages of this type and version.
        queue: Default queue the event travels on.
        title: Short human title, for documentation.
    """

    event_type: str
    version: str
    envelope: type[EventEnvelope]
    queue: str
    title: str

    @property
    def key(self) -> tuple[str, str]:
        """``(type, version)``."""
        return (self.event_type, self.version)

    @property
    def data_model(self) -> type[BaseModel]:
        """The model of the envelope's ``data``."""
        annotation = self.envelope.model_fields["data"].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise TypeError(f"{self.envelope.__name__}.data is not a model")
        return annotation


_SPECS: Final = (
    EventSpec(AUDIT_EVENT_TYPE, "1", AuditEnvelope, AUDIT_QUEUE, "Audit event recorded"),
    EventSpec(
        NOTIFICATION_EVENT_TYPE,
        "1",
        NotificationEnvelope,
        NOTIFICATIONS_QUEUE,
        "Notification requested",
    ),
)

REGISTRY: Final[Mapping[tuple[str, str], EventSpec]] = MappingProxyType(
    {spec.key: spec for spec in _SPECS}
)
"""Every supported ``(type, schemaversion)`` -> its :class:`EventSpec`."""


def _version_order(version: str) -> int:
    return int(version)


def specs() -> tuple[EventSpec, ...]:
    """All supported specs, sorted by type, then version (numerically)."""
    return tuple(sorted(REGISTRY.values(), key=lambda s: (s.event_type, _version_order(s.version))))


def event_types() -> tuple[str, ...]:
    """All known event types, sorted."""
    return tuple(sorted({spec.event_type for spec in REGISTRY.values()}))


def supported_versions(event_type: str) -> tuple[str, ...]:
    """Versions of ``event_type`` readers accept, oldest first (empty if unknown)."""
    return tuple(spec.version for spec in specs() if spec.event_type == event_type)


def current_spec(event_type: str) -> EventSpec:
    """The newest version of ``event_type``: the one writers produce.

    Raises:
        KeyError: unknown event type.
    """
    versions = supported_versions(event_type)
    if not versions:
        raise KeyError(event_type)
    return REGISTRY[(event_type, versions[-1])]


def lookup(event_type: object, version: object) -> EventSpec:
    """The spec that reads a message with these ``type`` and ``schemaversion`` values.

    Args:
        event_type: The message's ``type`` attribute, as received (any JSON value).
        version: Its ``schemaversion`` attribute, as received (any JSON value).

    Raises:
        ContractViolation: ``UnknownEventType`` if no version of the type is registered,
            ``UnsupportedSchemaVersion`` if the type is known but not this version (e.g. a
            newer producer), ``SchemaValidationFailed`` if either is missing or not a
            string: the consumer dead-letters the message instead of crashing.
    """
    if isinstance(event_type, str) and isinstance(version, str):
        found = REGISTRY.get((event_type, version))
        if found is not None:
            return found  # the usual case, without sorting the registry per message
    if not isinstance(event_type, str):
        raise _not_a_string("type", event_type)
    if not supported_versions(event_type):
        raise ContractViolation(
            DeadLetterReason.UNKNOWN_EVENT_TYPE, f"unknown event type {event_type!r}"
        )
    if not isinstance(version, str):
        raise _not_a_string("schemaversion", version)
    spec = REGISTRY.get((event_type, version))
    if spec is None:
        raise ContractViolation(
            DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION,
            f"schemaversion {version!r} of {event_type} is not supported "
            f"(supported: {', '.join(supported_versions(event_type))})",
        )
    return spec


def _not_a_string(attribute: str, value: object) -> ContractViolation:
    """A malformed message, not an unknown type or version: say what is wrong."""
    try:
        shown = json.dumps(value)
    except (TypeError, ValueError):
        shown = repr(value)
    return ContractViolation(
        DeadLetterReason.SCHEMA_VALIDATION_FAILED, f"{attribute}: must be a string, not {shown}"
    )
