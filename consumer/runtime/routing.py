"""Which handler (and retry policy) processes an envelope."""

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


def by_event_type(routes: Mapping[str, Route]) -> Router:
    """A router dispatching on the envelope's ``type``."""

    def route(envelope: EventEnvelope) -> Route | None:
        return routes.get(envelope.type)

    return route
