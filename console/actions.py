"""The console's actions as audit records: who did what to which queue, and how it ended.

Each replay, purge and verification is appended to the audit chain
(:meth:`console.sources.consumer_store.ConsumerStore.append`; why directly and not through
the producer: see that module) as an ``io.servicebus-events.audit.recorded`` event with
source ``/console``, the signed-in principal as actor and the figures in ``details``.
"""

import ipaddress
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from console.auth import Principal
from console.sources.consumer_store import ConsumerStore
from contracts import AuditEnvelope
from contracts.audit import Actor, ActorType, AuditEvent, AuditOutcome, Resource
from contracts.writing import new_envelope

SOURCE = "/console"


def action_envelope(
    principal: Principal,
    action: str,
    resource: tuple[str, str],
    outcome: AuditOutcome,
    details: dict[str, Any],
    request: Request | None = None,
    reason: str | None = None,
) -> AuditEnvelope:
    """The audit event for one console action.

    Args:
        principal: Who did it.
        action: ``console.dlq.replay``, ``console.dlq.purge`` or ``console.audit.verify``.
        resource: ``(type, id)``, e.g. ``("dlq", "audit")``.
        outcome: Success, or failure (it stopped early or did not all of it).
        details: Figures: how many were selected, replayed, purged, failed.
        request: The HTTP request (client address and User-Agent), if any.
        reason: Why it failed, one line.
    """
    source_ip = user_agent = None
    if request is not None:
        user_agent = (request.headers.get("user-agent") or "")[:512] or None
        host = request.client.host if request.client else None
        try:
            source_ip = str(ipaddress.ip_address(host)) if host else None
        except ValueError:  # a test client's "testclient"
            source_ip = None
    event = AuditEvent(
        actor=Actor(
            id=principal.name,
            type=ActorType.USER if principal.kind == "entra" else ActorType.SERVICE,
            display_name=f"{principal.name} ({principal.role}, {principal.kind})",
        ),
        action=action,
        resource=Resource(type=resource[0], id=resource[1]),
        outcome=outcome,
        occurred_at=datetime.now(UTC),
        reason=reason[:1000] if reason else None,
        source_ip=source_ip,
        user_agent=user_agent,
        details=details,
    )
    return new_envelope(event, source=SOURCE, subject=f"{resource[0]}/{resource[1]}")


async def record(
    store: ConsumerStore,
    principal: Principal,
    action: str,
    resource: tuple[str, str],
    outcome: AuditOutcome,
    details: dict[str, Any],
    request: Request | None = None,
    reason: str | None = None,
) -> AuditEnvelope:
    """Append the action's audit event to the chain; returns it."""
    envelope = action_envelope(principal, action, resource, outcome, details, request, reason)
    await store.append(envelope)
    return envelope
