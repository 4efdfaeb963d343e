"""Which handler (and retry policy) processes an envelope.

The routes themselves are registered per event type in :mod:`consumer.handlers.registry`.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from consumer.retry import RetryPolicy
from contracts import EventEnvelope

HandlerFunc = Callable[[EventEnvelope], Awaitable[bool | None]]
"""Applies an event. Returns ``False`` when it skipped a duplicate (seen event id),
``True`` or ``None`` otherwise. Raises to say what went wrong (``consumer.errors``)."""


@dataclass(frozen=True)
class Route:
    """A handler and its retry policy; ``name`` labels logs."""

    name: str
    handler: HandlerFunc
    policy: RetryPolicy


Router = Callable[[EventEnvelope], Route | None]
"""Returns the route for an envelope, or ``None`` when no handler takes it."""


def by_event_type(routers: Mapping[tuple[str, str | None], Router]) -> Router:
    """A router dispatching on the envelope's ``(type, schemaversion)``.

    Args:
        routers: Router per ``(type, version)``; a ``(type, None)`` entry takes every
            version of the type without an entry of its own.
    """
    exact = {key: router for key, router in routers.items() if key[1] is not None}
    any_version = {key[0]: router for key, router in routers.items() if key[1] is None}

    def route(envelope: EventEnvelope) -> Route | None:
        found = exact.get((envelope.type, envelope.schemaversion)) if exact else None
        if found is None:
            found = any_version.get(envelope.type)
        return found(envelope) if found is not None else None

    return route
