"""Message contracts shared by the producer and the consumer.

Every message on the ``audit`` and ``notifications`` queues is a CloudEvents 1.0 event
whose ``data`` is one of the event models registered here (``contracts.registry``),
identified by its ``type`` and ``schemaversion``. Producer and consumer import only this
package to build and read messages; ``contracts.servicebus`` maps them to and from Service
Bus messages. Versioning rules and the event catalogue: ``docs/contracts.md``; adding an
event type: ``docs/extending.md``.
"""

from contracts._base import ContractModel
from contracts.audit import Actor, ActorType, AuditEvent, AuditOutcome, FieldChange, Resource
from contracts.envelope import (
    AUDIT_EVENT_TYPE,
    NOTIFICATION_EVENT_TYPE,
    SCHEMA_VERSION,
    AnyEnvelope,
    AuditEnvelope,
    Envelope,
    EventEnvelope,
    NotificationEnvelope,
)
from contracts.errors import ContractViolation, DeadLetterReason, MessageTooLarge
from contracts.notification import NotificationChannel, NotificationEvent, NotificationPriority
from contracts.parsing import parse_envelope
from contracts.registry import EventSpec, lookup, register, supported_versions
from contracts.writing import new_envelope

__all__ = [
    "AUDIT_EVENT_TYPE",
    "NOTIFICATION_EVENT_TYPE",
    "SCHEMA_VERSION",
    "Actor",
    "ActorType",
    "AnyEnvelope",
    "AuditEnvelope",
    "AuditEvent",
    "AuditOutcome",
    "ContractModel",
    "ContractViolation",
    "DeadLetterReason",
    "Envelope",
    "EventEnvelope",
    "EventSpec",
    "FieldChange",
    "MessageTooLarge",
    "NotificationChannel",
    "NotificationEnvelope",
    "NotificationEvent",
    "NotificationPriority",
    "Resource",
    "lookup",
    "new_envelope",
    "parse_envelope",
    "register",
    "supported_versions",
]
