"""Which handler (and retry policy) takes each event type: one registry for the consumer.

Handlers are kept in one dict keyed by event type (and optionally schema version), as
cosmicpython's message bus keeps them. An entry is a *route factory*: given the process's
:class:`HandlerDependencies` (opened once at start-up) it returns the
:class:`~consumer.runtime.routing.Route` for the type, or a
:data:`~consumer.runtime.routing.Router` when the route depends on the envelope
(notifications go to the e-mail or webhook route by channel, each with its own retry
policy). Adding an event type is one :func:`register` call (``docs/extending.md``).
"""

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from consumer.handlers.audit import AuditHandler
from consumer.handlers.delivery import DeliveryLog, NotificationHandler, Sender
from consumer.runtime.routing import Route, Router, by_event_type
from consumer.settings import ConsumerSettings
from consumer.stores.audit import AuditStore
from consumer.stores.deliveries import DeliveryStore
from contracts import (
    AUDIT_EVENT_TYPE,
    NOTIFICATION_EVENT_TYPE,
    EventEnvelope,
    NotificationChannel,
    NotificationEnvelope,
)


@dataclass(frozen=True)
class HandlerDependencies:
    """What route factories build handlers from; opened once per process.

    Attributes:
        settings: The consumer's settings (retry policies, timeouts).
        audit_store: The append-only audit store.
        deliveries: Delivery records of notifications (their idempotency inbox).
        delivery_log: Optional JSON-lines log of deliveries.
        http: The shared HTTP client; ``None`` in the ``log`` delivery mode.
        send_email: Builds and submits one e-mail per notification.
        send_webhook: POSTs one signed webhook request per notification.
    """

    settings: ConsumerSettings
    audit_store: AuditStore
    deliveries: DeliveryStore
    delivery_log: DeliveryLog | None
    http: httpx.AsyncClient | None
    send_email: Sender
    send_webhook: Sender


RouteFactory = Callable[[HandlerDependencies], Route | Router]
"""Builds the route of an event type (or a router choosing one per envelope)."""

_FACTORIES: dict[tuple[str, str | None], RouteFactory] = {}


def register(event_type: str, factory: RouteFactory, *, version: str | None = None) -> RouteFactory:
    """Make ``factory`` build the route of ``event_type`` in every consumer built from now on.

    Args:
        event_type: CloudEvents ``type`` (registered in ``contracts.registry``).
        factory: Builds the route (or router) from the process's dependencies.
        version: Only this ``schemaversion``; ``None``: every version without an entry
            of its own.

    Returns:
        ``factory``, so this can be used as a decorator-like call.

    Raises:
        ValueError: the type (and version) already has a handler.
    """
    key = (event_type, version)
    if key in _FACTORIES:
        raise ValueError(f"{event_type} (version {version or 'any'}) already has a handler")
    _FACTORIES[key] = factory
    return factory


def unregister(event_type: str, *, version: str | None = None) -> None:
    """Remove a registration (tests).

    Raises:
        KeyError: there is none for this type and version.
    """
    del _FACTORIES[(event_type, version)]


def build_router(dependencies: HandlerDependencies) -> Router:
    """Build every registered route once and dispatch on the envelope's type and version."""
    routers = {key: _as_router(factory(dependencies)) for key, factory in _FACTORIES.items()}
    return by_event_type(routers)


def _as_router(built: Route | Router) -> Router:
    if isinstance(built, Route):
        return lambda _envelope: built
    return built


def audit_route(dependencies: HandlerDependencies) -> Route:
    """Audit events: appended to the audit store."""
    settings = dependencies.settings
    return Route("audit", AuditHandler(dependencies.audit_store), settings.audit_retry)


def notification_router(dependencies: HandlerDependencies) -> Router:
    """Notifications: by channel, to the e-mail or the webhook route."""
    settings, deliveries, log = (
        dependencies.settings,
        dependencies.deliveries,
        dependencies.delivery_log,
    )
    email = Route(
        "email",
        NotificationHandler(
            "email",
            dependencies.send_email,
            deliveries,
            log,
            attempt_timeout=settings.smtp.timeout.total_seconds(),
        ),
        settings.email_retry,
    )
    webhook = Route(
        "webhook",
        NotificationHandler(
            "webhook",
            dependencies.send_webhook,
            deliveries,
            log,
            attempt_timeout=settings.webhook.timeout.total_seconds(),
        ),
        settings.webhook_retry,
    )

    def route(envelope: EventEnvelope) -> Route:
        assert isinstance(envelope, NotificationEnvelope)
        return email if envelope.data.channel is NotificationChannel.EMAIL else webhook

    return route


register(AUDIT_EVENT_TYPE, audit_route)
register(NOTIFICATION_EVENT_TYPE, notification_router)
