"""Audit events: who did what to which resource, and how it ended (schema version 1)."""

from enum import StrEnum
from typing import Annotated

from pydantic import Field, JsonValue, StringConstraints

from contracts._base import ContractModel
from contracts._types import (
    Identifier,
    IpAddress,
    JsonObject,
    ShortText,
    UtcDatetime,
    free_text,
)

Action = Annotated[
    str,
    StringConstraints(
        min_length=3,
        max_length=100,
        pattern=r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+$",
    ),
]
"""A dotted, lower-case verb phrase such as ``user.login`` or ``invoice.approve``."""

Reason = Annotated[str, *free_text(1000)]
"""1-1000 characters, not all whitespace; stored without surrounding whitespace."""


class ActorType(StrEnum):
    """What kind of principal acted."""

    USER = "user"
    SERVICE = "service"
    SYSTEM = "system"


class AuditOutcome(StrEnum):
    """How the action ended: done, attempted and failed, or refused by authorisation."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class Actor(ContractModel):
    """The principal that performed the action."""

    id: Identifier
    """Stable id of the principal (user id, service principal id); 1-128 characters, no
    whitespace."""
    type: ActorType = ActorType.USER
    """``user`` (default), ``service`` or ``system``."""
    display_name: ShortText | None = None
    """Human-readable name at the time of the action; 1-200 characters, not all whitespace
    (surrounding whitespace is removed)."""


class Resource(ContractModel):
    """The thing acted upon, e.g. ``{"type": "invoice", "id": "INV-1042"}``."""

    type: Identifier
    """Resource type, e.g. ``invoice``; 1-128 characters, no whitespace."""
    id: Identifier
    """Resource id within its type; 1-128 characters, no whitespace."""


class FieldChange(ContractModel):
    """One attribute of the resource that the action changed."""

    field: ShortText
    """Name or dotted path of the attribute, e.g. ``status`` or ``address.city``."""
    before: JsonValue = None
    """Value before the action (any JSON value; ``null`` when it did not exist)."""
    after: JsonValue = None
    """Value after the action (any JSON value; ``null`` when it was removed)."""


class AuditEvent(ContractModel):
    """One auditable action (``io.servicebus-events.audit.recorded``, version 1).

    Raises:
        pydantic.ValidationError: on construction, naming each field that breaks a
            constraint (missing, too long, bad pattern, naive timestamp, unknown field).
    """

    actor: Actor
    """Who acted."""
    action: Action
    """Dotted, lower-case verb phrase, e.g. ``user.login``; 3-100 characters."""
    resource: Resource
    """What was acted upon."""
    outcome: AuditOutcome
    """``success``, ``failure`` or ``denied``."""
    occurred_at: UtcDatetime
    """When the action happened: RFC 3339 timestamp with seconds and an offset, stored as
    UTC (so it must lie within years 0001-9999 in UTC; a leap second ``:60`` is refused)."""
    reason: Reason | None = None
    """Why the outcome happened, e.g. the policy that denied access; 1-1000 characters, not
    all whitespace (surrounding whitespace is removed)."""
    tenant_id: Identifier | None = None
    """Tenant (customer, organisation) the action belongs to, in multi-tenant systems."""
    source_ip: IpAddress | None = None
    """IPv4 or IPv6 address of the caller, if known, as a string (no IPv6 zone index)."""
    user_agent: Annotated[str, StringConstraints(max_length=512)] | None = None
    """The caller's User-Agent header, if known; at most 512 characters."""
    changes: Annotated[list[FieldChange], Field(max_length=100)] = Field(default_factory=list)
    """Attributes the action changed, each with its value before and after; at most 100."""
    details: JsonObject = Field(default_factory=dict)
    """Free-form context (JSON object with at most 100 keys)."""
