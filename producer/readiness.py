"""Readiness: may this replica take traffic? (``GET /readyz``)

Container Apps stops routing to a replica whose readiness probe fails
(https://learn.microsoft.com/azure/container-apps/health-probes), so every check here is
one an operator can act on, and the body names what failed.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Any

from contracts._types import utc_now
from producer.outbox.records import Backlog
from producer.outbox.repository import OutboxRepository
from producer.settings import ProducerSettings
from producer.transport import ServiceBusHealth

READINESS_DB_TIMEOUT = 2.0
"""Seconds the readiness check gives the database."""


@dataclass(frozen=True)
class Check:
    """One readiness check: ``ok`` plus details for the response body."""

    ok: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Readiness:
    """The outcome of :func:`check_readiness`: ready when every check is ok."""

    ready: bool
    checks: dict[str, Check]


async def check_readiness(
    settings: ProducerSettings,
    repository: OutboxRepository,
    health: ServiceBusHealth,
    *,
    shutting_down: bool,
) -> Readiness:
    """Database reachable, Service Bus not failing, its queues exist, backlog below
    ``settings.readiness_max_backlog``, not shutting down.

    Every check is reported, including the backlog (count and oldest pending age in
    seconds), also when another fails. Never raises: a failing database is a failed check.
    """
    checks: dict[str, Check] = {}
    backlog: Backlog | None = None
    try:
        async with asyncio.timeout(READINESS_DB_TIMEOUT):
            backlog = await repository.backlog()
        checks["database"] = Check(True)
    except Exception as exc:
        checks["database"] = Check(False, {"error": f"{type(exc).__name__}: {exc}"[:300]})
    reachable = health.reachable
    checks["servicebus"] = Check(
        reachable is not False or not settings.readiness_requires_servicebus,
        {
            "reachable": reachable,
            "last_success_at": health.last_success_at,
            "last_failure_at": health.last_failure_at,
            "last_error": health.last_error if reachable is False else None,
        },
    )
    limit = settings.readiness_max_backlog
    if backlog is None:
        checks["outbox"] = Check(False, {"backlog": None, "max_backlog": limit})
    else:
        oldest = backlog.oldest_accepted_at
        checks["outbox"] = Check(
            backlog.count <= limit,
            {
                "backlog": backlog.count,
                "max_backlog": limit,
                "oldest_pending_age_seconds": (
                    None if oldest is None else round((utc_now() - oldest).total_seconds(), 3)
                ),
            },
        )
    missing = sorted(health.missing_queues)
    checks["queues"] = Check(
        not missing or not settings.readiness_requires_servicebus,
        {
            "missing": missing,
            "hint": (
                f"create {', '.join(missing)} in the namespace or point "
                "PRODUCER_AUDIT_QUEUE / PRODUCER_NOTIFICATIONS_QUEUE at existing queues"
                if missing
                else None
            ),
        },
    )
    checks["lifecycle"] = Check(not shutting_down, {"shutting_down": shutting_down})
    return Readiness(all(c.ok for c in checks.values()), checks)
