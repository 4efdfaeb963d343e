"""Which (event type, schema version) pairs exist, and the model that reads each.

The registry is keyed by ``(type, schemaversion)``: a v2 of an event type is a new entry
next to v1, with its own envelope model, so readers keep accepting v1 messages still in a
queue (or replayed from a dead-letter queue) while writers move to v2. Dropping a version
is removing its entry. See ``docs/contracts.md``, "Versioning policy".

The shipped event types are registered when this module is imported; another event type
is one :func:`register` call next to its model (``docs/extending.md``). Producer and
consumer read the registry when they start (HTTP routes, queue membership), so register
before building them.
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
    Envelope,
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
        envelope: The envelope model that validates messages of this type and version
            (an :class:`~contracts.envelope.Envelope` subclass with ``type``,
            ``schemaversion`` and ``data`` fields).
        queue: Queue the event travels on, by its default name (:data:`AUDIT_QUEUE` or
            :data:`NOTIFICATIONS_QUEUE`; settings may rename the queue itself). Every
            version of a type travels on the same queue.
        title: Short human title, for documentation.
        http_path: Path under the producer's ``/v1`` that accepts the event's ``data``
            (``POST <path>``, and up to 100 at once at ``POST <path>:batch``), e.g.
            ``/audit-events``; only the newest version's counts. ``None``: the producer
            does not accept it over HTTP.
    """

    event_type: str
    version: str
    envelope: type[Envelope]
    queue: str
    title: str
    http_path: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """``(type, version)``."""
        return (self.event_type, self.version)

    @property
    def data_model(self) -> type[BaseModel]:
        """The model of the envelope's ``data``."""
        field = self.envelope.model_fields.get("data")
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise TypeError(f"{self.envelope.__name__}.data is not a model")
        return annotation


_REGISTRY: Final[dict[tuple[str, str], EventSpec]] = {}
_QUEUES: Final[dict[str, str]] = {}
"""Event type -> its queue (a per-message lookup on the producer's accept path)."""
_WRITTEN: Final[dict[type[BaseModel], EventSpec]] = {}
"""Data model -> the newest version carrying it: what :func:`spec_for_data` answers per
event written, without sorting the registry."""

REGISTRY: Final[Mapping[tuple[str, str], EventSpec]] = MappingProxyType(_REGISTRY)
"""Every supported ``(type, schemaversion)`` -> its :class:`EventSpec` (a read-only live
view: it shows later registrations too)."""


def register(spec: EventSpec) -> EventSpec:
    """Add one version of one event type; readers accept it and writers produce it from now on.

    Args:
        spec: The version to add.

    Returns:
        ``spec``, so a module can keep it as a constant.

    Raises:
        ValueError: this ``(type, version)`` is already registered, ``version`` is not a
            positive integer, the envelope model has no ``data`` model or does not default
            ``type`` and ``schemaversion`` to this key, or another version of the type
            travels on a different queue.
    """
    if spec.key in _REGISTRY:
        raise ValueError(f"{spec.event_type} v{spec.version} is already registered")
    if not spec.version.isdigit() or int(spec.version) < 1:
        raise ValueError(f"schemaversion must be a positive integer, not {spec.version!r}")
    try:
        spec.data_model  # noqa: B018  # fails early, not on the first message
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    fields = spec.envelope.model_fields
    if (fields["type"].default, fields["schemaversion"].default) != spec.key:
        raise ValueError(
            f"{spec.envelope.__name__} must default type to {spec.event_type!r} and "
            f"schemaversion to {spec.version!r}"
        )
    queue = _QUEUES.setdefault(spec.event_type, spec.queue)
    if queue != spec.queue:
        raise ValueError(f"every version of {spec.event_type} must travel on queue {queue!r}")
    _REGISTRY[spec.key] = spec
    _index_writers()
    return spec


def unregister(spec: EventSpec) -> None:
    """Remove a version registered with :func:`register` (tests, retired versions).

    Raises:
        KeyError: it is not registered.
    """
    del _REGISTRY[spec.key]
    if not supported_versions(spec.event_type):
        del _QUEUES[spec.event_type]
    _index_writers()


def _index_writers() -> None:
    _WRITTEN.clear()
    _WRITTEN.update((spec.data_model, spec) for spec in specs())  # newest version last


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


def queue_of(event_type: str) -> str:
    """The queue (default name) events of ``event_type`` travel on.

    Raises:
        KeyError: unknown event type.
    """
    return _QUEUES[event_type]


def event_types_on(queue: str) -> frozenset[str]:
    """Event types that travel on ``queue`` (default name; empty if none)."""
    return frozenset(event_type for event_type, on in _QUEUES.items() if on == queue)


def spec_for_data(data: BaseModel) -> EventSpec:
    """The newest registered version whose ``data`` model is exactly ``type(data)``.

    Raises:
        KeyError: no registered version carries this model.
    """
    try:
        return _WRITTEN[type(data)]
    except KeyError:
        raise KeyError(f"no registered event type carries {type(data).__name__}") from None


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


# The shipped event types; the producer's existing routes are generated from http_path.
register(
    EventSpec(
        AUDIT_EVENT_TYPE,
        "1",
        AuditEnvelope,
        AUDIT_QUEUE,
        "Audit event recorded",
        http_path="/audit-events",
    )
)
register(
    EventSpec(
        NOTIFICATION_EVENT_TYPE,
        "1",
        NotificationEnvelope,
        NOTIFICATIONS_QUEUE,
        "Notification requested",
        http_path="/notifications",
    )
)
